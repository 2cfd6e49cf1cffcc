"""Operations verbs: ``setup mount-helper`` (fstab and ``.mount`` units), ``fstab-mount``
(what that helper runs), and ``doctor`` (is this machine ready to mount?)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from s3fsv.cli.parser import AddCommand, Commands
from s3fsv.config import cache_dir, endpoint_url, parse_size, store_url
from s3fsv.errors import UsageError

COMMANDS = Commands()
_command = COMMANDS.register

FSTAB_HELP = """\
An fstab line (one line):
  s3://bucket/prefix/cams@main  /mnt/data  fuse.s3fsv
      _netdev,ro,cache_dir=/var/cache/s3fsv,allow_other  0 0

options (each is an option of s3fsv mount):
  ro, read_only         --read-only         writable       --rw (a REPO@BRANCH source)
  allow_other           --allow-other       cache_dir=DIR  --cache-dir
  cache_size=SIZE       --cache-size        ref_ttl=SECS   --ref-ttl
  commit_on=WHEN        --commit-on         metrics_addr=HOST:PORT  --metrics-addr
  store=URL             --store             endpoint_url=URL        --endpoint-url
  log_level=LEVEL       --log-level
  env_file=FILE         VAR=value lines (credentials, AWS_ENDPOINT_URL...), mode 0600
mount(8)'s and systemd's own: rw (the default, not --rw), _netdev, nofail, noauto, user,
x-systemd.*, ... An unknown option fails naming it (-s ignores it instead); foreground is
refused (use examples/systemd/s3fsv-mount@.service).
"""


def add_verbs(add: AddCommand) -> None:
    group = add("setup", "", "install what s3fsv needs outside its package")
    sub = group.add_subparsers(title="setup commands", metavar="ACTION")
    p = add(
        "mount-helper",
        "setup.mount-helper",
        group=sub,
        help="install /sbin/mount.fuse.s3fsv (as root), so fstab entries and .mount units of "
        "type fuse.s3fsv mount with this installation of s3fsv",
        epilog="mount(8) runs helpers with a reset PATH, so an s3fsv in a virtualenv is not "
        "found without it. Run it again after moving or reinstalling s3fsv.\n\n" + FSTAB_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--path", default="/sbin/mount.fuse.s3fsv", help=argparse.SUPPRESS)
    p.add_argument("--force", action="store_true", help="replace a file s3fsv did not write")
    p.add_argument("--uninstall", action="store_true", help="remove the helper instead")

    p = add(
        "fstab-mount",
        "fstab-mount",
        "mount an fstab entry: what /sbin/mount.fuse.s3fsv runs for mount(8)",
        usage="%(prog)s SOURCE MOUNTPOINT [-sfnv] [-o OPTIONS] [-t fuse.s3fsv]",
        epilog=FSTAB_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("helper_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    p = add(
        "doctor",
        "doctor",
        "check this machine before a first mount: FUSE, allow_other, credentials, the "
        "store's conditional writes, the clock, cache space; says what to fix",
    )
    p.add_argument(
        "source",
        nargs="?",
        metavar="STORE",
        help="the store to check (default: --store, $S3FSV_STORE or the config file)",
    )
    p.add_argument("--cache-dir", metavar="DIR", help="cache directory to check for space")
    p.add_argument("--cache-size", default="10G", metavar="SIZE", help="its bound (10G)")
    p.add_argument("--allow-other", action="store_true", help="mounts will use --allow-other")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


@_command("setup.mount-helper")
def cmd_setup_mount_helper(args: argparse.Namespace) -> int:
    from s3fsv.ops import helper

    path = Path(args.path)
    if args.uninstall:
        removed = helper.uninstall(path)
        print(f"removed {path}" if removed else f"no s3fsv mount helper at {path}")
        return 0
    helper.install(path, force=args.force)
    print(f"installed {path}: fstab entries of type fuse.s3fsv now mount with this s3fsv")
    return 0


@_command("fstab-mount")
def cmd_fstab_mount(args: argparse.Namespace) -> int:
    from s3fsv.mount.daemon import s3fsv_command
    from s3fsv.ops import fstab
    from s3fsv.ops.helper import SAFE_PATH

    call = fstab.parse_helper_args(args.helper_args)
    argv, extra_env, ignored = fstab.translate(call)
    for option in ignored:
        print(f"s3fsv: ignoring unknown option {option} (sloppy mount)", file=sys.stderr)
    if call.verbose or call.fake:
        print(f"s3fsv {shlex.join(argv)}", file=sys.stderr)
    if call.fake:
        return 0
    env = {**os.environ, **extra_env}
    env.setdefault("PATH", SAFE_PATH)
    command = [*s3fsv_command(), *argv]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, env)  # the mount command returns once the mount is usable


@_command("doctor")
def cmd_doctor(args: argparse.Namespace) -> int:
    from s3fsv.ops import doctor

    if args.source is not None and "://" not in args.source:
        raise UsageError(f"{args.source!r} is not a store URL (s3://BUCKET/PREFIX or file:///PATH)")
    try:
        url: str | None = args.source or store_url(args.store)
    except UsageError:
        url = None  # no store configured: the store checks say so
    findings = [
        *doctor.check_fuse(),
        doctor.check_allow_other(args.allow_other),
        doctor.check_cache(
            Path(os.path.abspath(args.cache_dir)) if args.cache_dir else cache_dir(),
            parse_size(args.cache_size),
        ),
        *doctor.check_store(url, endpoint_url(args.endpoint_url)),
    ]
    problems = [f for f in findings if f.ok is False]
    if args.json:
        json.dump([f.as_json() for f in findings], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for f in findings:
            mark = {True: "ok", False: "PROBLEM", None: "note"}[f.ok]
            print(f"{mark:<8}{f.check}: {f.detail}")
            if f.fix and f.ok is not True:
                print(f"{'':<8}fix: {f.fix}")
        print(
            f"{len(problems)} problem(s) to fix before mounting" if problems else "ready to mount",
            file=sys.stderr,
        )
    return 1 if problems else 0
