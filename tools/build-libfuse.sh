#!/bin/sh
# Build libfuse >= 3.17 (for FUSE passthrough) from Debian trixie's source package and install
# the library as DEST (e.g. .venv/lib/s3fsv/libfuse3.so), where s3fsv's mounts load it.
#
#   tools/build-libfuse.sh DEST
#
# Debian 12 ships libfuse 3.14. The trixie source entry lives only in a temporary apt
# directory given to apt-get with -o options: the machine's apt configuration is not changed.
# Needs meson, ninja-build, pkg-config, gcc and dpkg-dev (`make passthrough` installs them).
set -eu

dest=$(realpath -m "$1")
work=$(mktemp -d /tmp/s3fsv-libfuse.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM

mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/src"
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]" \
    "http://deb.debian.org/debian trixie main" > "$work/sources.list"
apt_opts="-o Dir::Etc::SourceList=$work/sources.list -o Dir::Etc::SourceParts=/nonexistent
          -o Dir::State::Lists=$work/lists -o Dir::Cache=$work/cache -o APT::Sandbox::User=root -q"
# shellcheck disable=SC2086
apt-get $apt_opts update >/dev/null
cd "$work/src"
# shellcheck disable=SC2086
apt-get $apt_opts source --download-only fuse3 2>/dev/null >/dev/null
# The .dsc is checked against the Sources index apt verified; no keyring for its own signature.
dpkg-source -q -x ./fuse3_*.dsc fuse3 >/dev/null 2>&1
cd fuse3
meson setup build -Dexamples=false -Dutils=false -Dtests=false -Ddisable-mtab=true \
    --buildtype=release >/dev/null
ninja -C build >/dev/null
lib=$(ls build/lib/libfuse3.so.3.* | head -n 1)
mkdir -p "$(dirname "$dest")"
install -m 0644 "$lib" "$dest.tmp"
mv "$dest.tmp" "$dest"
echo "built $(basename "$lib") into $dest"
