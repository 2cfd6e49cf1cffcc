"""``s3fsv import``, ``gc``, ``retention set|show``, ``purge`` and ``tombstones``."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from dataclasses import asdict
from typing import Any

from s3fsv.access.connect import attach_store, command_store, reach
from s3fsv.cli.parser import AddCommand, Commands
from s3fsv.config import cache_dir, parse_duration
from s3fsv.errors import UsageError
from s3fsv.ingest import tombstones
from s3fsv.ingest.gc import DEFAULT_GRACE_S, MIN_SAFE_GRACE_S, Collector, GcReport
from s3fsv.ingest.importer import Importer, ImportOptions, ImportReport, watch
from s3fsv.ingest.matching import Matcher, parse_meta
from s3fsv.ingest.purge import PurgeRequest, PurgeResult, purge
from s3fsv.ingest.retention import ANY_BRANCH, read_rules, set_rule
from s3fsv.ingest.retention import NAMESPACE as RETENTION
from s3fsv.ingest.source import DEFAULT_ATTRS, AttrRule, parse_origin
from s3fsv.store.address import parse_address
from s3fsv.store.cache import DiskCache
from s3fsv.store.records import Records
from s3fsv.store.repo import default_author
from s3fsv.store.store import Store

COMMANDS = Commands()
_command = COMMANDS.register

IMPORT_HELP = """Objects stay where they are: each file of the commit names its object (bucket,
key, version id or ETag) and the SHA-256 computed now, and every read is verified against it.
An original that is overwritten or deleted afterwards is a read error, never other data; use
--copy for buckets whose objects do not stay put. Metadata and tags that name a device or a
customer become file attributes (user.s3fsv.attr.NAME on a mount).

--watch keeps importing as objects arrive: one commit per --batch objects, or of what is
pending every --interval seconds. Any number of importers may watch the same prefix: each
object is imported exactly once, even when one is killed and restarted."""

GC_HELP = """Deletes the store objects that no branch, tag, retained commit or pipeline record
reaches, once older than --grace (objects a purge condemned go at once). Never deletes
anything outside the store's repos, such as the originals imported files refer to. A commit
made while gc runs keeps every object it refers to."""

PURGE_HELP = """Every commit of every branch that holds a matching file is rewritten without
it (new commits; each branch moves by compare-and-swap), the imported originals of purged
files are deleted, and a tombstone records what was purged, when, why and by whom (patterns
and counts, never content). Run gc afterwards to free the bytes. Tagged commits are rewritten
only with --include-tags. Pipeline outputs made from the purged files are listed; --cascade
purges them too."""


def add_verbs(add: AddCommand) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = add(
        "import",
        "import",
        "commit the objects below s3://BUCKET/PREFIX/ without copying them",
        epilog=IMPORT_HELP,
        formatter_class=fmt,
    )
    p.add_argument("source", metavar="s3://BUCKET/PREFIX/", help="the objects to import")
    p.add_argument("target", metavar="REPO@BRANCH[:PATH]", help="where they go")
    p.add_argument("--copy", action="store_true", help="copy the bytes into the store")
    p.add_argument("--watch", action="store_true", help="keep importing new objects")
    p.add_argument("--interval", type=float, default=60.0, help="--watch: seconds (60)")
    p.add_argument("--batch", type=int, help="objects per commit (watch: 1000; else all)")
    p.add_argument(
        "--attrs",
        metavar="NAME,...",
        help=f"metadata/tag names kept as attributes (default {','.join(DEFAULT_ATTRS)}; "
        "'*' for all)",
    )
    p.add_argument("--no-tags", action="store_true", help="do not read object tags")
    p.add_argument("--threads", type=int, default=32, help="objects read at once (32)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")

    p = add("gc", "gc", "delete store objects nothing reaches", epilog=GC_HELP, formatter_class=fmt)
    p.add_argument(
        "--grace",
        default=f"{DEFAULT_GRACE_S // 3600}h",
        metavar="DURATION",
        help="keep objects younger than this (default 24h; 30m, 2d, 0 ...); below 1h it is "
        "safe only while nothing else writes to the store",
    )
    p.add_argument("--dry-run", action="store_true", help="count what would be freed")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")

    group = add("retention", "", "how much history gc keeps per branch (set, show)")
    sub = group.add_subparsers(title="retention commands", metavar="ACTION")
    p = add("set", "retention.set", group=sub, help="set a branch's rule")
    p.add_argument("repo", metavar="REPO")
    p.add_argument(
        "--branch", default=ANY_BRANCH, help="the branch ('*': those without a rule; default)"
    )
    keep = p.add_mutually_exclusive_group(required=True)
    keep.add_argument("--days", type=int, help="keep this many days of history")
    keep.add_argument("--keep-all", action="store_true", help="keep all of it (the default)")
    p = add("show", "retention.show", group=sub, help="show a repo's rules")
    p.add_argument("repo", metavar="REPO")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")

    p = add(
        "purge",
        "purge",
        "erase matching files from every commit, with their originals",
        epilog=PURGE_HELP,
        formatter_class=fmt,
    )
    p.add_argument("repo", metavar="REPO")
    p.add_argument(
        "--match", action="append", default=[], metavar="GLOB", help="path pattern (repeatable)"
    )
    p.add_argument(
        "--meta", action="append", default=[], metavar="NAME=VALUE", help="attribute condition"
    )
    p.add_argument("--reason", required=True, help="why (kept in the tombstone)")
    p.add_argument("--dry-run", action="store_true", help="list what would be rewritten")
    p.add_argument("--cascade", action="store_true", help="purge pipeline outputs made from them")
    p.add_argument("--include-tags", action="store_true", help="rewrite tagged commits too")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")

    p = add("tombstones", "tombstones", "list the purges made in this store")
    p.add_argument("--repo", help="only purges of this repo")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def _store(args: argparse.Namespace) -> Store:
    """The store-layer store of ``--store`` (or ``--gateway``), its changes recorded in its
    audit trail when that is on."""
    way = reach(args.store, args.endpoint_url, args.gateway, args.token_file)
    store = Store.open(way.url, endpoint_url=way.endpoint_url, **way.s3)
    attach_store(store.events, store.backend, way.client)
    return store


def _bar(total: int | None, unit: str, desc: str, quiet: bool) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total, unit=unit, desc=desc, file=sys.stderr, leave=False, disable=quiet or None
    )


# -- import ---------------------------------------------------------------------------------
@_command("import")
def cmd_import(args: argparse.Namespace) -> int:
    origin = parse_origin(args.source)
    target = parse_address(args.target, default_ref="main")
    if args.batch is not None and args.batch < 1:
        raise UsageError("--batch must be at least 1")
    if args.interval <= 0 or args.threads < 1:
        raise UsageError("--interval and --threads must be positive")
    store = command_store(reach(args.store, args.endpoint_url, args.gateway, args.token_file))
    options = ImportOptions(
        args.copy, AttrRule.parse(args.attrs, tags=not args.no_tags), args.threads
    )
    bar = _bar(None, "obj", f"import {origin.url}", args.quiet or args.watch)
    importer = Importer(
        store, origin, target.repo, target.ref or "main", target.path, options, bar.update
    )
    where = f"{target.repo}@{target.ref}" + (f":{target.path}" if target.path else "")
    try:
        if args.watch:
            return _watch(args, importer, where)
        report = importer.run_once(args.batch)
    finally:
        bar.close()
        store.close()
    if args.json:
        _print_json(_report_json(report))
    else:
        print(_report_line(report, origin.url, where))
    return 0


def _watch(args: argparse.Namespace, importer: Importer, where: str) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"importing {importer.origin.url} into {where} as objects arrive", file=sys.stderr)

    def say(report: ImportReport) -> None:
        if args.json:
            print(json.dumps(_report_json(report)), flush=True)
        else:
            print(_report_line(report, importer.origin.url, where), flush=True)

    watch(importer, interval=args.interval, batch=args.batch or 1000, stop=stop, on_report=say)
    return 0


def _report_json(report: ImportReport) -> dict[str, Any]:
    return asdict(report)


def _report_line(report: ImportReport, source: str, where: str) -> str:
    commits = ", ".join(c[:12] for c in report.commits) or "no commit"
    line = (
        f"imported {report.imported} object(s), {report.bytes} bytes, from {source} into "
        f"{where}: {commits}"
    )
    if report.skipped:
        line += f"; {report.skipped} changed or deleted while read (imported when seen again)"
    if report.invalid:
        line += f"; {report.invalid} key(s) that cannot be paths were skipped"
    return line


# -- gc ---------------------------------------------------------------------------------------
@_command("gc")
def cmd_gc(args: argparse.Namespace) -> int:
    grace = parse_duration(args.grace)
    if grace < MIN_SAFE_GRACE_S and not args.dry_run:
        print(
            f"s3fsv: warning: a grace period of {args.grace} is safe only while nothing else "
            "writes to the store",
            file=sys.stderr,
        )
    store = _store(args)
    bar = _bar(None, "obj", "gc", args.quiet)
    try:
        report = Collector(store, grace_s=grace, dry_run=args.dry_run, progress=bar.update).run()
    finally:
        bar.close()
        store.close()
    if args.json:
        _print_json(_gc_json(report))
        return 0
    verb = "would delete" if report.dry_run else "deleted"
    for name, r in sorted(report.repos.items()):
        print(
            f"{name}: {r.objects} objects ({r.bytes} bytes): {r.live} live, {r.young} younger "
            f"than the grace period; {verb} {r.deleted} ({r.freed} bytes"
            + (f", {r.condemned} condemned by purges" if r.condemned else "")
            + ")"
            + (f"; {r.expired} of {r.commits} commits past retention" if r.expired else "")
            + (f"; rewrote {r.repacked} pack(s) ({r.written} bytes)" if r.repacked else "")
        )
    print(f"total: {verb} {report.deleted} object(s), {report.freed} bytes")
    return 0


def _gc_json(report: GcReport) -> dict[str, Any]:
    return {
        "dry_run": report.dry_run,
        "grace_s": report.grace_s,
        "deleted": report.deleted,
        "freed": report.freed,
        "probes": report.probes,
        "repos": {name: vars(r) for name, r in sorted(report.repos.items())},
    }


# -- retention --------------------------------------------------------------------------------
@_command("retention.set")
def cmd_retention_set(args: argparse.Namespace) -> int:
    store = _store(args)
    store.repo(args.repo)  # exists
    days = None if args.keep_all else args.days
    rules = set_rule(
        Records(store.backend, RETENTION), args.repo, args.branch, days, default_author()
    )
    _print_rules(args.repo, rules)
    return 0


@_command("retention.show")
def cmd_retention_show(args: argparse.Namespace) -> int:
    store = _store(args)
    store.repo(args.repo)
    rules = read_rules(Records(store.backend, RETENTION), args.repo)
    if args.json:
        _print_json({"repo": args.repo, "branches": rules, "tags": "forever"})
        return 0
    _print_rules(args.repo, rules)
    return 0


def _print_rules(repo: str, rules: dict[str, int | None]) -> None:
    for branch, days in sorted(rules.items()):
        what = "all history" if days is None else f"{days} day(s) of history"
        print(f"{repo}@{branch}: keep {what}")
    if ANY_BRANCH not in rules:
        print(f"{repo}@{ANY_BRANCH}: keep all history (no rule)")
    print(f"{repo} tags: kept for ever")


# -- purge ------------------------------------------------------------------------------------
@_command("purge")
def cmd_purge(args: argparse.Namespace) -> int:
    matcher = Matcher(tuple(args.match), parse_meta(args.meta))
    request = PurgeRequest(
        matcher, args.reason, default_author(), args.dry_run, args.include_tags, args.cascade
    )
    store = _store(args)
    try:
        result = purge(store, args.repo, request, DiskCache(cache_dir()))
    finally:
        store.close()
    if args.json:
        _print_json(_purge_json(result, args.dry_run))
        return 0
    _print_purge(result, args.dry_run)
    return 0


def _purge_json(result: PurgeResult, dry: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"tombstone": tombstones.summary(result.tombstone)}
    if dry:
        out.update(files=result.files, originals=result.originals)
        out["rewritten"] = result.tombstone["rewritten"]
    out["downstream"] = [vars(d) for d in result.downstream]
    out["cascaded"] = [_purge_json(c, dry) for c in result.cascaded]
    return out


def _print_purge(result: PurgeResult, dry: bool) -> None:
    t = result.tombstone
    c = t["counts"]
    if dry:
        print(f"purge of {result.repo} (dry run: nothing changed)")
        for path in result.files:
            print(f"  file      {path}")
        for old in t["rewritten"]:
            print(f"  commit    {old[:12]} (rewritten)")
        for url in result.originals:
            print(f"  original  {url}")
    else:
        print(f"purged {result.repo}: tombstone {t['id']}")
    print(
        f"  {c['files']} file(s), {c['bytes']} bytes, in {c['commits']} commit(s); branches: "
        f"{', '.join(t['branches']) or '-'}; tags: {', '.join(t['tags']) or '-'}; "
        f"{c.get('originals', 0)} original(s)"
        + (
            f" ({c['originals_left']} changed since import, left)"
            if c.get("originals_left")
            else ""
        )
        + f"; {c['relocated']} other file(s) moved out of shared packs"
    )
    for d in result.downstream:
        commits = ", ".join(x[:12] for x in d.commits) or "-"
        print(
            f"  downstream: pipeline {d.pipeline} -> {d.repo}@{d.branch}: {len(d.outputs)} "
            f"output(s) in commit(s) {commits}"
            + ("" if result.cascaded or dry else " (not purged: use --cascade)")
        )
    for child in result.cascaded:
        _print_purge(child, dry)
    if not dry and not result.cascaded:
        print("  run 's3fsv gc' to free the bytes")


@_command("tombstones")
def cmd_tombstones(args: argparse.Namespace) -> int:
    store = _store(args)
    found = [
        tombstones.summary(v)
        for _, v in tombstones.tombstones(store.backend)
        if args.repo is None or v.get("repo") == args.repo
    ]
    if args.json:
        _print_json(found)
        return 0
    for t in found:
        c = t.get("counts", {})
        print(
            f"{t['id']}  {t['repo']}  {t['state']}  by {t['by']}  match {t['match'] or '-'} "
            f"meta {t['meta'] or '-'}: {c.get('files', 0)} file(s), {c.get('bytes', 0)} bytes, "
            f"{c.get('commits', 0)} commit(s); reason: {t['reason']}"
        )
    return 0
