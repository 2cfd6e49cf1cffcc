"""The ``s3fsv`` argument parser. Each subcommand sets ``handler`` to a key of the command table
in ``cli.py``, so parsing and behaviour stay in separate, small modules."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

DESCRIPTION = """\
Versioned data repositories on S3 (or a local directory), mountable as a directory tree.

A store is s3://BUCKET/PREFIX or file:///PATH. It comes from --store, the
S3FSV_STORE environment variable, or `store = "..."` in $XDG_CONFIG_HOME/s3fsv/config.toml.
S3 credentials come from the standard AWS chain (environment, profile, instance role);
AWS_ENDPOINT_URL or --endpoint-url selects an S3-compatible server.

Addresses name data inside a store: REPO[@REF][:PATH], where REF is a branch, a tag, a full
commit id or a unique prefix of one (default: main), optionally followed by ~N for its N-th
first parent (main~1 is the commit before main's head).
"""

_WHOLE_BRANCH = (
    "the branch directory in a mount, or any path in it: the command acts on the whole branch"
)

EXAMPLES = """\
examples:
  s3fsv --store s3://bucket/data init
  s3fsv repo create cams
  s3fsv put ./images cams@main:images -m "ingest day 1"
  s3fsv ls -R cams@main:images
  s3fsv log cams --json
  s3fsv get cams@3f2a91c0:images ./pinned
  s3fsv mount s3://bucket/data /mnt/data --commit-on idle=60
  s3fsv commit /mnt/data/cams/branch/main -m "detections for day 1"
"""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text}")
    return value


def _message(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("a commit message must say something")
    return text


def _common(p: argparse.ArgumentParser, *, json: bool = False) -> None:
    if json:
        p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _global_options(p: argparse.ArgumentParser, defaults: dict[str, str] | None) -> None:
    """--store, --endpoint-url, --gateway, --token-file and --log-level; with ``defaults``
    None, absent ones set nothing (so a subcommand's parser does not undo what was given
    before the command)."""

    def default(name: str) -> object:
        return argparse.SUPPRESS if defaults is None else defaults.get(name)

    p.add_argument(
        "--store",
        metavar="URL",
        default=default("store"),
        help="store URL (default: $S3FSV_STORE)",
    )
    p.add_argument(
        "--endpoint-url",
        metavar="URL",
        default=default("endpoint_url"),
        help="S3-compatible endpoint (default: $AWS_ENDPOINT_URL)",
    )
    p.add_argument(
        "--gateway",
        metavar="URL",
        default=default("gateway"),
        help="reach the store through this access gateway (s3fsv serve), with no cloud "
        "credentials: it names the store and hands out short-lived ones (default: "
        "$S3FSV_GATEWAY)",
    )
    p.add_argument(
        "--token-file",
        metavar="FILE",
        default=default("token_file"),
        help="the token for --gateway (default: $S3FSV_TOKEN_FILE)",
    )
    p.add_argument(
        "--log-level",
        default=default("log_level"),
        choices=["debug", "info", "warning", "error"],
        help="logging detail on stderr (default: warning; info for mount, whose daemon logs "
        "mounts, commits and evictions)",
    )


class _Parser(argparse.ArgumentParser):
    """Options only by their full names: an abbreviation such as ``--lo`` is ambiguous, and
    one that works today would change meaning when an option is added."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """One line, as every s3fsv error is; the usage is one ``--help`` away."""
        self.exit(2, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


Handler = Callable[[argparse.Namespace], int]


class Commands(dict[str, Handler]):
    """A verb module's handlers by the name ``build_parser`` gives them (``"pipeline.run"``);
    ``@COMMANDS.register(name)`` adds one. ``app.main`` merges every module's table."""

    def register(self, name: str) -> Callable[[Handler], Handler]:
        def add(fn: Handler) -> Handler:
            self[name] = fn
            return fn

        return add


AddCommand = Callable[..., argparse.ArgumentParser]
"""``add(name, handler, help, group=...)``: what ``build_parser`` hands each verb module."""


def build_parser(
    exit_codes: str, version: str, verbs: Sequence[Callable[[AddCommand], None]] = ()
) -> argparse.ArgumentParser:
    """The whole command line: the store and mount verbs here, then each of ``verbs`` (a
    capability's ``add_verbs(add)``), which adds its commands with ``add``."""
    parser = _Parser(
        prog="s3fsv",
        description=DESCRIPTION,
        epilog=EXAMPLES + "\n" + exit_codes,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"s3fsv {version}")
    _global_options(parser, {})  # absent: main() picks the command's default level
    # The same options after a command (`s3fsv mount --log-level debug ...`); given there, they
    # win, and a command that does not give them keeps what was given before it.
    glob = argparse.ArgumentParser(add_help=False)
    _global_options(glob, None)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    def add(
        name: str, handler: str, help: str, group: Any = sub, **kw: object
    ) -> argparse.ArgumentParser:
        """A command (or, with ``group``, an action of repo, branch or tag), with the global
        options; a group given no action shows its own help."""
        p = group.add_parser(name, help=help, description=help, parents=[glob], **kw)
        p.set_defaults(handler=handler, help_parser=p)
        return p

    add("init", "init", "create the store if needed and check it supports conditional writes")

    repo = add("repo", "", "manage repos (create, list)")
    repo_sub = repo.add_subparsers(title="repo commands", metavar="ACTION")
    p = add("create", "repo.create", group=repo_sub, help="create a repo with an empty branch main")
    p.add_argument(
        "name",
        metavar="NAME",
        help="up to 100 letters, digits, '.', '_', '-', starting with a letter or digit",
    )
    p = add("list", "repo.list", group=repo_sub, help="list the repos of the store")
    _common(p, json=True)

    branch = add("branch", "", "manage branches (create, list, delete)")
    branch_sub = branch.add_subparsers(title="branch commands", metavar="ACTION")
    p = add("create", "branch.create", group=branch_sub, help="create a branch")
    p.add_argument("repo", metavar="REPO", help="repo name")
    p.add_argument("name", metavar="NAME", help="branch name")
    p.add_argument(
        "--from",
        dest="from_ref",
        default="main",
        metavar="REF",
        help="branch, tag or commit to start from (default: main)",
    )
    p = add("list", "branch.list", group=branch_sub, help="list branches and their head commits")
    p.add_argument("repo", metavar="REPO", help="repo name")
    _common(p, json=True)
    p = add(
        "delete",
        "branch.delete",
        group=branch_sub,
        help="delete a branch (its commits stay readable by id)",
    )
    p.add_argument("repo", metavar="REPO", help="repo name")
    p.add_argument("name", metavar="NAME", help="branch name")
    p.add_argument(
        "--force",
        action="store_true",
        help="allow deleting main, the default branch of every address",
    )

    tag = add("tag", "", "manage tags (create, list); a tag never moves")
    tag_sub = tag.add_subparsers(title="tag commands", metavar="ACTION")
    p = add("create", "tag.create", group=tag_sub, help="create a tag")
    p.add_argument("repo", metavar="REPO", help="repo name")
    p.add_argument("name", metavar="NAME", help="tag name")
    p.add_argument(
        "--from",
        dest="from_ref",
        default="main",
        metavar="REF",
        help="branch, tag or commit to tag (default: main)",
    )
    p = add("list", "tag.list", group=tag_sub, help="list tags and their commits")
    p.add_argument("repo", metavar="REPO", help="repo name")
    _common(p, json=True)

    p = add(
        "put",
        "put",
        "upload a file or directory tree as one commit (adds and replaces; deletes nothing)",
    )
    p.add_argument(
        "source",
        metavar="LOCAL",
        help="local file or directory (followed if a symlink; links inside it are kept as links)",
    )
    p.add_argument(
        "dest",
        metavar="REPO@BRANCH[:PATH]",
        help="where to put it; a directory's contents go below PATH, a file goes to PATH "
        "(into PATH when it ends with /)",
    )
    p.add_argument("-m", "--message", required=True, type=_message, help="commit message")
    p.add_argument(
        "-j", "--jobs", type=_positive, default=16, help="parallel uploads (default: 16)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _common(p, json=True)

    p = add("get", "get", "download a file or directory tree, verifying every file's SHA-256")
    p.add_argument(
        "source", metavar="REPO[@REF][:PATH]", help="what to download (default REF: main)"
    )
    p.add_argument(
        "dest",
        metavar="LOCAL",
        help="local file or directory (existing files there are overwritten); a file goes "
        "into LOCAL when LOCAL is a directory or ends with /",
    )
    p.add_argument(
        "-j", "--jobs", type=_positive, default=16, help="parallel downloads (default: 16)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    p = add(
        "mount",
        "mount",
        "mount a store, a repo, or one snapshot as a directory tree",
        epilog="The daemon logs to $XDG_STATE_HOME/s3fsv/logs/mount-<dir>-<id>.log (to stderr "
        "with --foreground). SIGTERM or SIGINT unmount it; files still open then fail with "
        "ENOTCONN, so unmount after the programs using the mount have finished.",
    )
    p.add_argument(
        "source",
        metavar="STORE[/REPO[@REF]]",
        help="e.g. s3://bucket/data, s3://bucket/data/cams or file:///srv/s/cams@v1; "
        "or just REPO[@REF] (e.g. cams@v1) in the store of --store or $S3FSV_STORE",
    )
    p.add_argument("mountpoint", metavar="MOUNTPOINT", help="an existing, empty directory")
    p.add_argument(
        "--foreground",
        action="store_true",
        help="stay attached (as under systemd); log to stderr as well as the log file: "
        "warnings on a terminal, INFO otherwise (--log-level sets both)",
    )
    p.add_argument("--read-only", action="store_true", help="refuse every write (EROFS)")
    p.add_argument(
        "--rw",
        action="store_true",
        help="make a REPO@BRANCH mount writable (branch/ directories always are)",
    )
    p.add_argument(
        "--cache-dir", metavar="DIR", help="shared object cache (default: $XDG_CACHE_HOME/s3fsv)"
    )
    p.add_argument(
        "--cache-size",
        default="10G",
        metavar="SIZE",
        help="cache bound: bytes, or with K, M, G or T (binary: 1K = 1024; 'MiB' and 'MB' "
        "read the same), e.g. 20G (default 10G); least recently used entries go first. "
        "Mounts sharing a cache each keep it within their own bound",
    )
    p.add_argument(
        "--ref-ttl",
        type=_seconds,
        default=5.0,
        metavar="SECONDS",
        help="how often branch heads are re-read (default: 5)",
    )
    p.add_argument(
        "--allow-other",
        action="store_true",
        help="let other users see the mount (needs user_allow_other in fuse.conf)",
    )
    p.add_argument(
        "--commit-on",
        default="manual",
        metavar="WHEN",
        help="commit staged writes by itself: manual (default; use `s3fsv commit`), unmount "
        "(after the mount ends), or idle=SECONDS (a branch with no write and no file open "
        "for writing for that long)",
    )
    p.add_argument(
        "--metrics-addr",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (none by default; port 0 "
        "picks a free one, which s3fsv status shows)",
    )
    p.add_argument("--daemonized", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--pinned-commit", metavar="ID", help=argparse.SUPPRESS)

    p = add("unmount", "unmount", "unmount a mount and wait for its daemon to stop")
    p.add_argument("mountpoint", metavar="MOUNTPOINT", help="where an s3fsv mount is")

    p = add("commit", "commit", "commit the staged writes of a mounted branch as a new commit")
    p.add_argument("path", metavar="PATH", help=_WHOLE_BRANCH)
    p.add_argument("-m", "--message", required=True, type=_message, help="commit message")
    p.add_argument("--author", metavar="NAME", help="commit author (default: the mount's user)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="after a conflict: commit anyway, the staged version of each conflicting path "
        "replacing the one another writer committed",
    )
    _common(p, json=True)

    p = add(
        "status",
        "status",
        "a mount's health (given its mountpoint), and a mounted branch's staged writes: "
        "A added, M modified, D deleted",
        epilog="For the mountpoint itself: whether the store answers and how fast, what the "
        "mount shows, cache use, staged changes, the last error, uptime and version (under "
        '"mount" with --json); for a path in a writable branch: that branch\'s staged writes. '
        "Given the mountpoint, it exits 8 (after the whole report) while the store is unreachable.",
    )
    p.add_argument("path", metavar="PATH", help="the mountpoint, or " + _WHOLE_BRANCH)
    _common(p, json=True)

    p = add("discard", "discard", "drop every staged write of a mounted branch (cannot be undone)")
    p.add_argument("path", metavar="PATH", help=_WHOLE_BRANCH)
    _common(p, json=True)

    p = add("ls", "ls", "list a directory of a commit")
    p.add_argument(
        "address", metavar="REPO[@REF][:PATH]", help="directory to list (default REF: main)"
    )
    p.add_argument("-R", "--recursive", action="store_true", help="list the whole tree")
    p.add_argument("-l", "--long", action="store_true", help="show type, mode, size and time")
    _common(p, json=True)

    p = add("cat", "cat", "write a file's content to standard output")
    p.add_argument(
        "address",
        metavar="REPO[@REF]:PATH",
        help="file to print (default REF: main); links inside the snapshot are followed",
    )

    p = add("log", "log", "show the history of a branch, tag or commit (newest first)")
    p.add_argument(
        "address", metavar="REPO[@REF][:PATH]", help="with :PATH, only commits that changed PATH"
    )
    p.add_argument("-n", "--max-count", type=_positive, metavar="N", help="show at most N commits")
    p.add_argument("--oneline", action="store_true", help="one line per commit")
    _common(p, json=True)

    p = add("show", "show", "show a commit: author, time, message, provenance and changes")
    p.add_argument(
        "address",
        metavar="REPO[@REF][:PATH]",
        help="the commit to show (default REF: main); with PATH, only changes at or below it",
    )
    _common(p, json=True)

    p = add(
        "diff",
        "diff",
        "list paths added (A), modified (M) and deleted (D) from OLD to NEW: files, links and "
        "empty directories",
        usage="%(prog)s [options] REPO OLD NEW\n       %(prog)s [options] REPO@OLD NEW",
    )
    p.add_argument("repo", metavar="REPO", help="repo name (or REPO@OLD, then only NEW follows)")
    ref_help = "branch, tag or commit (id or unique prefix), ~N allowed"
    p.add_argument("old", metavar="OLD", help=ref_help)
    p.add_argument("new", metavar="NEW", nargs="?", help=ref_help)
    p.add_argument("--exit-code", action="store_true", help="exit 1 when there are differences")
    _common(p, json=True)
    for add_verbs in verbs:
        add_verbs(add)
    return parser
