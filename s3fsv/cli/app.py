"""The ``s3fsv`` command: argument parsing, dispatch, and the single place that turns errors
into one-line messages and exit codes."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from s3fsv.access.connect import attach_store, reach
from s3fsv.cli import access, ingest, ops, pipelines, runs
from s3fsv.cli.mount import COMMANDS as MOUNT_COMMANDS
from s3fsv.cli.parser import Commands, build_parser
from s3fsv.cli.runs import run_lines
from s3fsv.config import endpoint_url, store_url
from s3fsv.errors import InvalidName, NotFound, S3fsvError, UsageError
from s3fsv.store.address import parse_address, shown_path
from s3fsv.store.objects import Commit, TreeEntry, check_name
from s3fsv.store.provenance import provenance_context
from s3fsv.store.refs import check_ref_spec
from s3fsv.store.repo import Repository
from s3fsv.store.store import Store
from s3fsv.version import __version__

EXIT_CODES = """exit codes:
  0 success          1 other error       2 bad usage or name   3 not found
  4 already exists   5 lost a race       6 conflict            7 corrupt data
  8 store unreachable  9 access denied  10 unsupported store  11 read-only
 12 mount problem (mountpoint busy, no daemon answers)
 13 not committed: files left open for writing when a mount stopped may be incomplete
"""

_COMMANDS = Commands()
command = _COMMANDS.register


def _open_store(args: argparse.Namespace) -> Store:
    """The store of ``--store`` (or of ``--gateway``), its changes recorded in its audit
    trail (when that is on)."""
    way = reach(args.store, args.endpoint_url, args.gateway, args.token_file)
    store = Store.open(way.url, endpoint_url=way.endpoint_url, **way.s3)
    attach_store(store.events, store.backend, way.client)
    return store


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def _progress_bar(total: int, desc: str, quiet: bool) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=quiet or None,
        file=sys.stderr,
        leave=False,
    )


def entry_json(path: str, entry: TreeEntry) -> dict[str, Any]:
    out: dict[str, Any] = {
        "path": path,
        "type": entry.kind,
        "mode": f"{entry.mode:04o}",
        "mtime": _iso_utc(entry.mtime_ns),
    }
    if entry.kind == "file":
        out.update(size=entry.size, sha256=entry.sha256)
    elif entry.kind == "link":
        out["target"] = entry.target
    return out


def commit_json(cid: str, commit: Commit) -> dict[str, Any]:
    return {
        "id": cid,
        "parents": list(commit.parents),
        "tree": commit.tree,
        "author": commit.author,
        "time": commit.time,
        "message": commit.message,
        "provenance": commit.provenance,
    }


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _iso_utc(ns: int) -> str:
    """Machine-readable UTC time, in the form commit times take."""
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- store and repos -------------------------------------------------------------------------


@command("init")
def cmd_init(args: argparse.Namespace) -> int:
    store = Store.init(store_url(args.store), endpoint_url=endpoint_url(args.endpoint_url))
    if store.created_location:
        kind = "bucket" if store.url.startswith("s3://") else "directory"
        print(f"created the {kind} of {store.url}", file=sys.stderr)
    print(f"initialised {store.url}: conditional writes supported")
    return 0


@command("repo.create")
def cmd_repo_create(args: argparse.Namespace) -> int:
    repo = _open_store(args).create_repo(args.name)
    print(f"created repo {repo.name} with empty branch main")
    return 0


@command("repo.list")
def cmd_repo_list(args: argparse.Namespace) -> int:
    names = _open_store(args).repos()
    if args.json:
        _print_json(names)
    else:
        print("\n".join(names)) if names else None
    return 0


@command("branch.create")
def cmd_branch_create(args: argparse.Namespace) -> int:
    repo = _open_store(args).repo(args.repo)
    cid = repo.create_branch(args.name, args.from_ref)
    print(f"created branch {args.name} at {cid[:12]}")
    return 0


@command("branch.list")
def cmd_branch_list(args: argparse.Namespace) -> int:
    return _list_refs(_open_store(args).repo(args.repo).refs.branches(), args.json)


@command("branch.delete")
def cmd_branch_delete(args: argparse.Namespace) -> int:
    if args.name == "main" and not args.force:
        raise UsageError(
            "main is the branch every address without @REF uses; pass --force to delete it"
        )
    head = _open_store(args).repo(args.repo).refs.delete_branch(args.name)
    print(f"deleted branch {args.name} (was {head[:12]})")
    print(f"to undo: s3fsv branch create {args.repo} {args.name} --from {head}", file=sys.stderr)
    return 0


@command("tag.create")
def cmd_tag_create(args: argparse.Namespace) -> int:
    cid = _open_store(args).repo(args.repo).create_tag(args.name, args.from_ref)
    print(f"created tag {args.name} at {cid[:12]}")
    return 0


@command("tag.list")
def cmd_tag_list(args: argparse.Namespace) -> int:
    return _list_refs(_open_store(args).repo(args.repo).refs.tags(), args.json)


def _list_refs(refs: dict[str, str], as_json: bool) -> int:
    if as_json:
        _print_json(refs)
    else:
        for name in sorted(refs):
            print(f"{refs[name][:12]}  {name}")
    return 0


# -- transfer --------------------------------------------------------------------------------


@command("put")
def cmd_put(args: argparse.Namespace) -> int:
    from s3fsv.store import transfer

    addr = parse_address(args.dest, default_ref="main")
    assert addr.ref is not None
    source = Path(args.source)
    if args.dest.endswith("/") and addr.path and not source.is_dir():  # into that directory
        addr = replace(addr, path=f"{addr.path}/{check_name(source.name)}")
    repo = _open_store(args).repo(addr.repo)
    before = _branch_head(repo, addr.ref)
    # A directory is uploaded as a stream; only its totals are counted first (not listed).
    items = None if source.is_dir() else transfer.scan_local(source, addr.path)
    counts = transfer.count_local(source) if items is None else None
    total = counts.bytes if counts else sum(i.size for i in items or () if i.kind == "file")
    with _progress_bar(total, "upload", args.quiet) as bar:
        cid, files = transfer.put(
            repo,
            addr.ref,
            source,
            addr.path,
            args.message,
            threads=args.jobs,
            progress=bar.update,
            base=before,
            items=items,
            provenance={**provenance_context(), "uploaded": str(source.absolute())},
        )
    changed = cid != before
    if args.json:
        _print_json({"commit": cid, "files": files, "bytes": total, "changed": changed})
    else:
        print(cid)
        where = f"{addr.repo}@{addr.ref}"
        if changed:
            links = counts.links if counts else sum(1 for i in items or () if i.kind == "link")
            what = _count(files, "file") + (f" and {_count(links, 'link')}" if links else "")
            print(f"committed {what} ({total} bytes) to {where}", file=sys.stderr)
        else:
            print(f"nothing changed: {where} stays at {cid[:12]}", file=sys.stderr)
    return 0


def _branch_head(repo: Repository, ref: str) -> str:
    """The head of branch ``ref``; a tag or commit there gets an error that says so."""
    try:
        return repo.branch_head(ref).commit
    except (NotFound, InvalidName) as not_branch:  # main~1 is no branch name, yet a commit
        if ref in repo.refs.tags():
            what = f"{ref} is a tag"
        else:
            try:
                repo.resolve(ref)
            except S3fsvError as unresolved:
                if isinstance(not_branch, InvalidName):
                    raise unresolved from None  # says what main~9 lacks
                raise NotFound(
                    f"no branch {ref!r} in repo {repo.name!r} (s3fsv branch create "
                    f"{repo.name} {ref} makes one)"
                ) from None
            what = f"{ref} is a commit"
        raise UsageError(
            f"{what}, not a branch: put adds a commit to a branch (make one there with "
            f"s3fsv branch create {repo.name} NAME --from {ref})"
        ) from None


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


@command("get")
def cmd_get(args: argparse.Namespace) -> int:
    from s3fsv.store import transfer

    if args.dest == "-":
        raise UsageError("get writes files; s3fsv cat writes one to standard output")
    addr = parse_address(args.source, default_ref="main")
    repo = _open_store(args).repo(addr.repo)
    cid = repo.resolve(addr.ref or "main")
    plan = list(transfer.plan_get(repo, cid, addr.path))
    dest = Path(args.dest)
    into = addr.path and (args.dest.endswith("/") or dest.is_dir())
    if into and plan[0][1].kind != "dir":  # a file into a directory, as cp does
        dest = dest / addr.path.rsplit("/", 1)[-1]
    total = sum(e.size for _, e in plan if e.kind == "file")
    with _progress_bar(total, "download", args.quiet) as bar:
        files = transfer.get(
            repo, cid, addr.path, dest, threads=args.jobs, progress=bar.update, plan=plan
        )
    print(f"downloaded {_count(files, 'file')} ({total} bytes) from {cid[:12]}", file=sys.stderr)
    return 0


# -- inspection ------------------------------------------------------------------------------


@command("ls")
def cmd_ls(args: argparse.Namespace) -> int:
    addr = parse_address(args.address, default_ref="main")
    repo = _open_store(args).repo(addr.repo)
    cid = repo.resolve(addr.ref or "main")
    entry = repo.stat(cid, addr.path)
    prefix = f"{addr.path}/" if addr.path else ""
    if entry.kind != "dir":
        rows = [(addr.path, entry)]
    elif args.recursive:
        rows = list(repo.walk(cid, addr.path))
    else:
        rows = [(prefix + e.name, e) for e in repo.listdir(cid, addr.path)]
    if args.json:
        _print_json([entry_json(p, e) for p, e in rows])
        return 0
    for path, e in rows:
        shown = shown_path(path if args.recursive or entry.kind != "dir" else e.name)
        if e.kind == "link":
            shown += f" -> {shown_path(e.target)}"
        shown += "/" if e.kind == "dir" else ""
        if args.long:
            size = e.size if e.kind != "dir" else 0
            print(f"{e.kind[0]}{e.mode:04o} {size:>12} {_iso(e.mtime_ns)}  {shown}")
        else:
            print(shown)
    return 0


@command("cat")
def cmd_cat(args: argparse.Namespace) -> int:
    addr = parse_address(args.address, default_ref="main")
    repo = _open_store(args).repo(addr.repo)
    cid = repo.resolve(addr.ref or "main")
    entry = repo.file_entry(cid, addr.path, shown=args.address)
    out = sys.stdout.buffer
    for data in repo.read_file(entry):
        out.write(data)
    out.flush()
    return 0


@command("log")
def cmd_log(args: argparse.Namespace) -> int:
    addr = parse_address(args.address, default_ref="main")
    repo = _open_store(args).repo(addr.repo)
    rows = []
    shown = 0
    for n, (cid, commit) in enumerate(repo.log(addr.ref or "main", addr.path or None)):
        if args.max_count is not None and n >= args.max_count:
            break
        shown += 1
        if args.json:
            rows.append(commit_json(cid, commit))
        elif args.oneline:
            print(f"{cid[:12]} {commit.message.splitlines()[0] if commit.message else ''}")
        else:
            print(_format_commit(cid, commit))
    if args.json:
        _print_json(rows)
    elif not shown and addr.path:
        print(f"no commit of {addr.repo}@{addr.ref} touches {addr.path}", file=sys.stderr)
    return 0


def _format_commit(cid: str, commit: Commit) -> str:
    lines = [f"commit {cid}"]
    if commit.parents:
        lines.append("Parents: " + " ".join(p[:12] for p in commit.parents))
    lines += [f"Author: {commit.author}", f"Date:   {commit.time}", ""]
    lines += [f"    {line}" for line in (commit.message or "").splitlines()] or ["    "]
    if commit.provenance:
        lines += ["", "    Provenance:"]
        lines += [f"      {line}" for line in _provenance_lines(commit.provenance)]
    return "\n".join(lines) + "\n"


def _provenance_lines(prov: dict[str, Any]) -> list[str]:
    out = []
    for key in sorted(prov):
        value = prov[key]
        if key == "run" and isinstance(value, dict):
            out += run_lines(value)
        elif key == "inputs" and isinstance(value, list):
            out.append(f"inputs ({_inputs_how(prov, value)}):" + ("" if value else " none"))
            for item in value:
                if isinstance(item, dict):
                    where = f":{item['path']}" if item.get("path") else ""
                    via = f"  (via {item['via']})" if item.get("via") else ""
                    out.append(f"  {item.get('repo', '?')}@{item.get('commit', '?')}{where}{via}")
                else:
                    out.append(f"  {item}")
        elif key == "commands" and isinstance(value, list):
            how = "that made the commit" if "run" in prov else "that wrote through the mount"
            out.append(f"commands ({how}):")
            out += [f"  {shown_path(str(line))}" for line in value]
        else:
            out.append(f"{key}: {json.dumps(value, ensure_ascii=False)}")
    return out


_INPUTS_HOW = {
    "api": "read through the Python API",
    "pipeline": "the input commit of the pipeline job",
}


def _inputs_how(prov: dict[str, Any], inputs: list[Any]) -> str:
    """How a commit's recorded inputs were read, from the run record or the items' ``via``."""
    if "run" in prov:
        return "pinned by the run"
    vias = {item.get("via") for item in inputs if isinstance(item, dict)}
    if len(vias) == 1 and (how := _INPUTS_HOW.get(vias.pop() or "")):
        return how
    return "read through the mount"


@command("show")
def cmd_show(args: argparse.Namespace) -> int:
    addr = parse_address(args.address, default_ref="main")
    repo = _open_store(args).repo(addr.repo)
    cid = repo.resolve(addr.ref or "main")
    commit = repo.commit_object(cid)
    parent_tree = (
        repo.commit_object(commit.parents[0]).tree if commit.parents else repo.empty_tree()
    )
    diff = repo.diff_trees(parent_tree, commit.tree, empty_dirs=True)
    if addr.path:  # only the changes at or below PATH, as `git show REV -- PATH`
        here = addr.path

        def keep(paths: list[str]) -> list[str]:
            return [p for p in paths if p == here or p.startswith(here + "/")]

        diff = replace(
            diff, added=keep(diff.added), modified=keep(diff.modified), deleted=keep(diff.deleted)
        )
    if args.json:
        out = commit_json(cid, commit)
        out["changes"] = {"added": diff.added, "modified": diff.modified, "deleted": diff.deleted}
        _print_json(out)
        return 0
    print(_format_commit(cid, commit))
    _print_diff(diff)
    return 0


@command("diff")
def cmd_diff(args: argparse.Namespace) -> int:
    name, at, first = args.repo.partition("@")
    if at:  # REPO@OLD NEW
        if args.new is not None:
            raise UsageError("give REPO OLD NEW or REPO@OLD NEW, not both forms")
        old, new = first, args.old
    elif args.new is None:
        raise UsageError(f"diff needs two refs: s3fsv diff {name} OLD NEW (or {name}@OLD NEW)")
    else:
        old, new = args.old, args.new
    if "@" in new:  # REPO@NEW for symmetry with REPO@OLD
        other, _, new = new.partition("@")
        if other != name:
            raise UsageError(f"diff compares two refs of one repo, not {name!r} and {other!r}")
    for ref in (old, new):
        check_ref_spec(ref)  # a malformed ~N is a usage error (2), not a missing ref (3)
    repo = _open_store(args).repo(name)
    diff = repo.diff(old, new, empty_dirs=True)
    if args.json:
        _print_json({"added": diff.added, "modified": diff.modified, "deleted": diff.deleted})
    else:
        _print_diff(diff)
    return 0 if not diff.paths() or not args.exit_code else 1


def _print_diff(diff: Any) -> None:
    for mark, paths in (("A", diff.added), ("M", diff.modified), ("D", diff.deleted)):
        for path in paths:
            print(f"{mark}\t{shown_path(path)}")


_COMMANDS.update(MOUNT_COMMANDS)  # mount, unmount, commit, status, discard (cli/mount.py)
_COMMANDS.update(pipelines.COMMANDS)
_COMMANDS.update(ops.COMMANDS)
_COMMANDS.update(runs.COMMANDS)  # run, reproduce, lineage
_COMMANDS.update(access.COMMANDS)
_COMMANDS.update(ingest.COMMANDS)  # import, gc, retention, purge, tombstones
VERBS = [pipelines.add_verbs, ops.add_verbs, runs.add_verbs, access.add_verbs, ingest.add_verbs]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(EXIT_CODES, __version__, VERBS)
    args, extra = parser.parse_known_args(argv)
    if extra:  # named by the command they were given to, not by s3fsv as a whole
        getattr(args, "help_parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    mount = getattr(args, "handler", None) == "mount"
    # A mount's daemon logs at INFO by default (mounts, commits, evictions): to its log file,
    # and to stderr only where stderr is that file (a daemonized mount).
    level = getattr(logging, (args.log_level or ("info" if mount else "warning")).upper())
    logging.basicConfig(level=level, format="s3fsv: %(levelname)s: %(message)s", stream=sys.stderr)
    # A person at a terminal sees a foreground mount's warnings; a service manager's journal
    # gets its INFO lines too (mounts, commits).
    daemonized = getattr(args, "daemonized", False)
    if args.log_level is None and mount and not daemonized and sys.stderr.isatty():
        for stream in logging.getLogger().handlers:
            stream.setLevel(logging.WARNING)
    for library in ("botocore", "boto3", "s3transfer", "urllib3"):
        # Their debug output holds signed request headers (the access key id among them), and
        # their INFO is noise ("Found credentials..."); s3fsv's own lines say what is needed.
        quiet = logging.INFO if level <= logging.DEBUG else logging.WARNING
        logging.getLogger(library).setLevel(quiet)
    handler = _COMMANDS.get(args.handler) if hasattr(args, "handler") else None
    if handler is None:
        getattr(args, "help_parser", parser).print_help(sys.stderr)
        return 2
    try:
        return handler(args)
    except S3fsvError as err:
        print(f"s3fsv: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("s3fsv: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as err:
        print(
            f"s3fsv: error: {err.strerror or err}: {err.filename or ''}".rstrip(": "),
            file=sys.stderr,
        )
        return 1
