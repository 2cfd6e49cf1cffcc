"""The mount's local control socket: ``s3fsv commit``, ``status`` and ``discard`` talk to the
daemon that owns the staged writes through it.

The socket is a unix stream socket under ``$XDG_STATE_HOME/s3fsv/mounts/`` (file 0600 in a
0700 directory); the mount's pid file names it. Only the daemon's own user (or root) may use it:
every connection's peer credentials are checked. The protocol is one JSON object per line, any
number of requests per connection, each answered by one line::

    -> {"op": "commit", "path": "/cams/branch/main", "message": "...", "author": null,
        "overwrite": false}
    <- {"ok": true, "result": "<commit id or null>"}
    <- {"ok": false, "error": "<one-line message>", "exit_code": 6, "paths": ["a/b"]}

``op`` is ``ping``, ``commit``, ``status`` or ``discard``; ``path`` is absolute inside the
mount; ``status`` of ``/`` also answers the mount's health report, under ``mount``. An error
answer carries the ``S3fsvError``'s exit code; :func:`request` raises it again as the same
class on the client side (``paths`` is only present for conflicts).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from s3fsv.config import private_dir
from s3fsv.errors import (
    AccessDenied,
    AlreadyExists,
    Conflict,
    CorruptObject,
    Interrupted,
    MountError,
    NotFound,
    PreconditionFailed,
    ReadOnly,
    S3fsvError,
    StoreUnavailable,
    UnsupportedStore,
    UsageError,
)
from s3fsv.mount.mounttable import is_dead
from s3fsv.mount.runtime_files import pid_file

log = logging.getLogger(__name__)

OPS = ("ping", "commit", "status", "discard")
MAX_REQUEST = 1 << 20  # bytes in one request line
REQUEST_IDLE_TIMEOUT = 60.0  # a connection that sends nothing for this long is closed
CONNECT_TIMEOUT = 5.0
# sun_path holds 108 bytes; longer paths are reached through /proc/self/fd/<dir fd>/<name>.
MAX_SUN_PATH = 100
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid

# Exit code -> the class that owns it, to raise a daemon's error again in the client.
_ERRORS: dict[int, type[S3fsvError]] = {
    cls.exit_code: cls
    for cls in (
        UsageError,
        NotFound,
        AlreadyExists,
        PreconditionFailed,
        Conflict,
        Interrupted,
        CorruptObject,
        StoreUnavailable,
        AccessDenied,
        UnsupportedStore,
        ReadOnly,
    )
}


class ControlledFilesystem(Protocol):
    """What the control socket needs from ``vfs.Filesystem``."""

    def commit(
        self, path: str, message: str, author: str | None = None, *, overwrite: bool = False
    ) -> str | None: ...

    def status(self, path: str) -> dict[str, Any]: ...

    immutable: bool  # a pinned mount: nothing is ever staged
    read_path_mode: str  # "passthrough" or "fuse"

    def discard(self, path: str) -> int: ...


@contextlib.contextmanager
def _address(path: Path) -> Iterator[str]:
    """A ``sun_path`` for ``path``, short enough for the kernel even when ``path`` is not."""
    text = str(path)
    if len(os.fsencode(text)) <= MAX_SUN_PATH:
        yield text
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "unknown error"


def _json_default(value: object) -> object:
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, tuple):
        return list(value)
    return str(value)


def error_answer(err: BaseException) -> dict[str, Any]:
    """The wire form of an exception."""
    if isinstance(err, S3fsvError):
        out: dict[str, Any] = {
            "ok": False,
            "error": _one_line(str(err)),
            "exit_code": err.exit_code,
        }
        if isinstance(err, Conflict):
            out["paths"] = list(err.paths)
        return out
    return {"ok": False, "error": _one_line(f"internal error: {err!r}"), "exit_code": 1}


def rebuild_error(answer: dict[str, Any]) -> S3fsvError:
    """The exception a daemon's error answer stands for (same class, same message)."""
    message = _one_line(str(answer.get("error") or "the daemon reported an error"))
    try:
        code = int(answer.get("exit_code", 1))
    except (TypeError, ValueError):
        code = 1
    cls = _ERRORS.get(code)
    if cls is None:
        err = S3fsvError(message)
        if code != S3fsvError.exit_code:
            err.exit_code = code
        return err
    # Bypass constructors with their own signatures (Conflict, CorruptObject): keep the message.
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    if isinstance(err, Conflict):
        paths = answer.get("paths")
        err.paths = sorted(str(p) for p in paths) if isinstance(paths, list) else []
        err.branch = ""
    elif isinstance(err, CorruptObject):
        err.key = ""
    return err


class ControlServer:
    """Serve control requests for ``fs`` on a unix socket at ``socket_path``."""

    def __init__(
        self,
        fs: ControlledFilesystem,
        socket_path: Path,
        health: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        """``health`` gives the mount's health report (``health.Health.report``), which a
        ``status`` request for the mount root (``/``) answers under ``mount``."""
        self.fs = fs
        self.health = health
        self.socket_path = Path(socket_path)
        self.uid = os.getuid()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Bind the socket (removing a stale one) and serve in a background thread."""
        private_dir(self.socket_path.parent)
        self._remove_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # Not by narrowing the umask around bind: that is process-wide, and a directory
            # another thread made meanwhile (the cache's) came out 0600. The socket's directory
            # is 0700, so nobody else can reach it before the chmod.
            with _address(self.socket_path) as addr:
                sock.bind(addr)
            os.chmod(self.socket_path, 0o600)
            sock.listen(16)
            sock.settimeout(0.2)  # lets the accept loop notice close()
        except OSError as err:
            sock.close()
            raise S3fsvError(
                f"cannot create control socket {self.socket_path}: {err.strerror or err}"
            ) from None
        self._sock = sock
        self._stop.clear()
        self._thread = threading.Thread(target=self._accept_loop, name="s3fsv-control", daemon=True)
        self._thread.start()
        log.info("control socket at %s", self.socket_path)

    def close(self) -> None:
        """Stop accepting, remove the socket file. Requests in progress finish on their own."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()

    def __enter__(self) -> ControlServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _remove_stale(self) -> None:
        """Remove a socket file nobody answers on; refuse to steal a live one."""
        if not os.path.lexists(self.socket_path):
            return
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            with _address(self.socket_path) as addr:
                probe.connect(addr)
        except OSError:
            log.info("removing stale control socket %s", self.socket_path)
            self.socket_path.unlink()
            return
        finally:
            probe.close()
        raise S3fsvError(f"another s3fsv daemon answers on {self.socket_path}")

    # -- serving ------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        assert self._sock is not None
        listener = self._sock
        while not self._stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError as err:
                if self._stop.is_set():
                    return
                log.error("control socket accept failed: %s", err)
                self._stop.wait(0.1)
                continue
            threading.Thread(
                target=self._serve_connection, args=(conn,), name="s3fsv-control-conn", daemon=True
            ).start()

    def _peer_allowed(self, conn: socket.socket) -> bool:
        raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        pid, uid, _gid = _UCRED.unpack(raw)
        if uid in (self.uid, 0):
            return True
        log.warning("control socket: refused a request from uid %d (pid %d)", uid, pid)
        return False

    def _serve_connection(self, conn: socket.socket) -> None:
        try:
            with conn:
                conn.settimeout(REQUEST_IDLE_TIMEOUT)
                if not self._peer_allowed(conn):
                    refused = AccessDenied("permission denied: the mount belongs to another user")
                    self._send(conn, error_answer(refused))
                    return
                with conn.makefile("rb") as reader:
                    while not self._stop.is_set():
                        line = reader.readline(MAX_REQUEST + 1)
                        if not line:
                            return
                        if len(line) > MAX_REQUEST:
                            self._send(conn, error_answer(UsageError("request too long")))
                            return
                        if line.strip():
                            self._send(conn, self.answer(line))
        except TimeoutError:
            log.debug("control connection idle for %.0fs: closed", REQUEST_IDLE_TIMEOUT)
        except (BrokenPipeError, ConnectionResetError):
            log.info("control client went away before its answer")
        except Exception:  # never let one connection take the server down
            log.exception("control connection failed")

    @staticmethod
    def _send(conn: socket.socket, answer: dict[str, Any]) -> None:
        data = json.dumps(answer, default=_json_default, ensure_ascii=False) + "\n"
        conn.sendall(data.encode())

    def answer(self, line: bytes) -> dict[str, Any]:
        """The answer to one request line (never raises)."""
        try:
            req = json.loads(line)
        except ValueError:
            return error_answer(UsageError("malformed request: not JSON"))
        if not isinstance(req, dict):
            return error_answer(UsageError("malformed request: not a JSON object"))
        op = req.get("op")
        try:
            result = self._dispatch(op, req)
        except S3fsvError as err:
            log.error("%s %s failed: %s", op, req.get("path"), err)
            return error_answer(err)
        except Exception as err:
            log.exception("%s %s failed", op, req.get("path"))
            return error_answer(err)
        return {"ok": True, "result": result}

    def _dispatch(self, op: object, req: dict[str, Any]) -> Any:
        if op not in OPS:
            raise UsageError(f"unknown request {op!r}: expected one of {', '.join(OPS)}")
        if op == "ping":
            return {"pid": os.getpid()}
        path = req.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            raise UsageError("request needs an absolute 'path' inside the mount")
        if op == "status":
            # Every answer says how the mount serves reads (FUSE passthrough or the daemon).
            if path != "/" or self.health is None:
                # A pinned mount has nothing staged.
                status = self.fs.status(path) if not self.fs.immutable else {}
                return {**status, "read_path": self.fs.read_path_mode}
            out = {"mount": self.health(), "read_path": self.fs.read_path_mode}
            with contextlib.suppress(UsageError):  # the root is no writable branch
                out.update(self.fs.status(path))
            return out
        if op == "discard":
            dropped = self.fs.discard(path)
            log.info("discarded %d staged paths under %s", dropped, path)
            return dropped
        message, author = req.get("message"), req.get("author")
        if not isinstance(message, str) or not message.strip():
            raise UsageError("a commit needs a non-empty message")
        if author is not None and not isinstance(author, str):
            raise UsageError("'author' must be a string")
        overwrite = req.get("overwrite", False)
        if not isinstance(overwrite, bool):
            raise UsageError("'overwrite' must be true or false")
        cid = self.fs.commit(path, message, author, overwrite=overwrite)
        log.info("commit of %s: %s", path, cid or "nothing staged")
        return cid


# -- client --------------------------------------------------------------------------------


def socket_of(mountpoint: Path) -> Path:
    """The control socket of the daemon serving ``mountpoint``, from its pid file."""
    mp = Path(mountpoint).absolute()
    try:
        info = json.loads(pid_file(mp).read_text())
        return Path(info["socket"])
    except (OSError, ValueError, KeyError, TypeError):
        raise MountError(_no_daemon(mp)) from None


def _no_daemon(mp: Path) -> str:
    if is_dead(mp):
        return (
            f"the daemon of {mp} has died; mounting there again replaces the dead mount "
            "and shows its staged writes ('s3fsv unmount' only removes it)"
        )
    return (
        f"no s3fsv daemon answers for {mp} (was it mounted by another user, "
        "with another XDG_STATE_HOME, or has its daemon died?)"
    )


def request(mountpoint: Path, payload: dict[str, Any], timeout: float | None = 600) -> Any:
    """Send one request to the daemon serving ``mountpoint``; return its result or raise the
    ``S3fsvError`` it answered with. ``timeout=None`` waits as long as the daemon works (a
    commit uploads everything staged); a daemon that dies still ends the wait."""
    mp = Path(mountpoint).absolute()
    path = socket_of(mp)
    data = (json.dumps(payload, ensure_ascii=False) + "\n").encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(CONNECT_TIMEOUT if timeout is None else min(timeout, CONNECT_TIMEOUT))
        try:
            with _address(path) as addr:
                sock.connect(addr)
        except OSError:
            raise MountError(_no_daemon(mp)) from None
        sock.settimeout(timeout)
        try:
            # A daemon that refuses the request answers and closes at once: still read that.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(data)
            with sock.makefile("rb") as reader:
                line = reader.readline()
        except TimeoutError:
            raise S3fsvError(
                f"the s3fsv daemon for {mp} did not answer within {timeout or 0:g}s"
            ) from None
        except OSError as err:
            raise MountError(
                f"lost the connection to the s3fsv daemon for {mp}: {err.strerror or err}"
            ) from None
    if not line:
        raise MountError(f"the s3fsv daemon for {mp} closed the connection without answering")
    try:
        answer = json.loads(line)
    except ValueError:
        raise S3fsvError(f"the s3fsv daemon for {mp} sent a malformed answer") from None
    if not isinstance(answer, dict):
        raise S3fsvError(f"the s3fsv daemon for {mp} sent a malformed answer")
    if answer.get("ok") is True:
        return answer.get("result")
    raise rebuild_error(answer)
