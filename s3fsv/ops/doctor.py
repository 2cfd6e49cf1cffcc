"""``s3fsv doctor``: check a machine before its first mount, and say what to fix.

Each check gives a :class:`Finding`: ``ok`` (True), a problem that would stop or spoil a mount
(False, with ``fix``), or a caveat worth knowing (None). The checks: FUSE (``/dev/fuse``,
``fusermount3``, libfuse3), ``user_allow_other`` when ``--allow-other`` is asked for, the store
(credentials, that it answers, its conditional writes), the clock against the store's, and free
space for the cache.
"""

from __future__ import annotations

import ctypes.util
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from s3fsv.errors import AccessDenied, S3fsvError
from s3fsv.store.store import MARKER, Store, probe_conditional_writes

FUSE_CONF = Path("/etc/fuse.conf")
SKEW_LIMIT = 60.0  # seconds: leases and commit times go by the clock; AWS refuses 15 min


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool | None  # None: a caveat, not a problem
    detail: str
    fix: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def check_fuse(dev: Path = Path("/dev/fuse")) -> list[Finding]:
    found = []
    if not dev.exists():
        found.append(
            Finding(
                "fuse device",
                False,
                f"{dev} is missing",
                "load the module (modprobe fuse); in a container, pass the device "
                "(docker run --device /dev/fuse --cap-add SYS_ADMIN)",
            )
        )
    else:
        try:
            os.close(os.open(dev, os.O_RDWR))
            found.append(Finding("fuse device", True, f"{dev} opens for reading and writing"))
        except OSError as err:
            found.append(
                Finding(
                    "fuse device",
                    False,
                    f"{dev} cannot be opened: {err.strerror}",
                    "give this user access to it (it is usually 0666), or run as root",
                )
            )
    tool = shutil.which("fusermount3")
    found.append(
        Finding("fusermount3", True, f"at {tool}")
        if tool
        else Finding("fusermount3", False, "not on PATH", "install the fuse3 package")
    )
    lib = ctypes.util.find_library("fuse3")
    found.append(
        Finding("libfuse3", True, f"{lib}")
        if lib
        else Finding("libfuse3", False, "not found", "install the fuse3 package (libfuse3)")
    )
    return found


def check_allow_other(asked: bool, conf: Path = FUSE_CONF) -> Finding:
    if not asked:
        return Finding("allow_other", True, "not asked for (mounts are private to their user)")
    if os.geteuid() == 0:
        return Finding("allow_other", True, "root may use it without user_allow_other")
    try:
        lines = conf.read_text().splitlines()
    except OSError:
        lines = []
    if any(line.split("#", 1)[0].strip() == "user_allow_other" for line in lines):
        return Finding("allow_other", True, f"user_allow_other is set in {conf}")
    return Finding(
        "allow_other",
        False,
        f"user_allow_other is not set in {conf}: --allow-other would fail for this user",
        f"add a line user_allow_other to {conf} (as root)",
    )


def check_cache(cache_dir: Path, cache_size: int) -> Finding:
    where = cache_dir
    while not where.exists() and where != where.parent:
        where = where.parent
    st = os.statvfs(where)
    free = st.f_bavail * st.f_frsize
    try:
        held = sum(f.stat().st_size for f in (cache_dir / "objects").rglob("*") if f.is_file())
    except OSError:
        held = 0
    room = free + held  # what the cache already holds counts toward its bound
    detail = f"{cache_dir}: {_gib(free)} free, the cache may grow to {_gib(cache_size)}"
    if room >= cache_size:
        return Finding("cache space", True, detail)
    return Finding(
        "cache space",
        False,
        detail,
        f"free space on that filesystem, or mount with --cache-size {int(room * 0.9) >> 20}M "
        "or a --cache-dir on a larger disk",
    )


def _gib(n: float) -> str:
    return f"{n / 1024**3:.1f} GiB"


def check_store(url: str | None, endpoint: str | None) -> list[Finding]:
    """Credentials, that the store answers and is initialised, conditional writes, clock."""
    if url is None:
        return [
            Finding(
                "store",
                None,
                "no store given: store checks skipped",
                "give one with --store, S3FSV_STORE or the config file",
            )
        ]
    found = []
    if url.startswith("s3://"):
        from s3fsv.store.backend.s3_credentials import credentials_method

        method = credentials_method()
        if method is None:
            return [
                Finding(
                    "credentials",
                    False,
                    "the AWS credential chain finds none",
                    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (an EnvironmentFile= under "
                    "systemd, env_file= in fstab), configure a profile in ~/.aws, or run "
                    "where an instance role or web identity provides them",
                )
            ]
        found.append(Finding("credentials", True, f"found ({method})"))
    started = time.monotonic()
    try:
        store = Store.open(url, endpoint_url=endpoint)
    except S3fsvError as err:
        return [*found, Finding("store", False, str(err), _store_fix(err))]
    try:
        took = (time.monotonic() - started) * 1000
        found.append(Finding("store", True, f"{store.url} answers ({took:.0f} ms to open)"))
        try:
            probe_conditional_writes(store.backend)
            found.append(Finding("conditional writes", True, "If-None-Match and If-Match work"))
        except AccessDenied:
            found.append(
                Finding(
                    "conditional writes",
                    None,
                    "not checked: these credentials may not write (fine for read-only mounts)",
                    "run s3fsv doctor with credentials that may write to check commits",
                )
            )
        except S3fsvError as err:
            found.append(
                Finding(
                    "conditional writes",
                    False,
                    str(err),
                    "use a store that honours If-None-Match and If-Match on PUT (AWS S3 "
                    "since 2024, SeaweedFS, MinIO); commits are unsafe without them",
                )
            )
        found.append(check_clock(store))
    finally:
        store.close()
    return found


def _store_fix(err: S3fsvError) -> str:
    text = str(err)
    if "s3fsv init" in text:
        return "run s3fsv init to create the store there"
    if isinstance(err, AccessDenied):
        return "check the credentials and that their policy allows this bucket and prefix"
    return "check the store URL, the endpoint (AWS_ENDPOINT_URL) and the network"


def check_clock(store: Store) -> Finding:
    """Local time against the store's ``Date`` header (whole seconds: a difference under 2 s
    is noise)."""
    server_time = getattr(store.backend, "server_time", None)
    if server_time is None:
        return Finding("clock", True, "a local store shares this machine's clock")
    before = time.time()
    try:
        theirs = server_time(MARKER)
    except S3fsvError as err:
        return Finding("clock", None, f"not checked: {err}")
    after = time.time()
    if theirs is None:
        return Finding("clock", None, "not checked: the store sends no Date header")
    skew = (before + after) / 2 - theirs
    detail = f"{abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} the store's clock"
    if abs(skew) <= SKEW_LIMIT:
        return Finding("clock", True, detail if abs(skew) >= 2 else "in step with the store's")
    return Finding(
        "clock",
        False,
        detail,
        "synchronise it (timedatectl set-ntp true, or chrony / systemd-timesyncd): S3 refuses "
        "requests 15 minutes off, and leases and commit times go by the clock",
    )
