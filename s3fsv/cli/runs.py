"""The run verbs of ``s3fsv``: ``run``, ``reproduce`` and ``lineage``, and how ``log`` and
``show`` print a run record.

This module must not import ``s3fsv.cli.app``, which imports it: ``main`` merges
:data:`COMMANDS` into its command table, and hands :func:`add_verbs` to ``build_parser``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any

from s3fsv.cli.parser import AddCommand, Commands
from s3fsv.errors import NotFound, UsageError
from s3fsv.store.address import parse_address, shown_path

COMMANDS = Commands()
_command = COMMANDS.register

RUN_HELP = """\
Run COMMAND on pinned inputs and commit what it writes, with a record of how it ran.

Each --in is resolved to a commit id (printed) and shown to the command read-only: through
a FUSE mount of the store (one that is already mounted is used, else the run mounts it and
unmounts it afterwards), or, with --no-fuse or where FUSE cannot be used, downloaded and
verified into a local directory first (only PATH then). In COMMAND, {in} stands for the root
of the only input's commit, with PATH at its place below it ({in}/images for
cams@main:images), {in.NAME} for that of input NAME (default NAME: the repo's name), and
{out} for the directory to write outputs to; the command also gets them as S3FSV_IN,
S3FSV_IN_<NAME> and S3FSV_OUT, and S3FSV_RUN_ID.
It runs with this terminal's stdin, stdout, stderr, working directory and environment, and
SIGINT and SIGTERM are passed on to it; s3fsv run exits with its exit code.

On exit 0 the outputs are committed to --out as one commit: afterwards PATH (without PATH,
the whole branch) holds exactly what the command wrote; what else was there is deleted. The
commit records the run: inputs, output, argv, directory, exit code, times, user@host,
versions, and the identity of the code (SHA-256 of each file argv names, its git commit and
whether the checkout was dirty, and the installed Python packages of a Python command). Its
id is printed on stdout.

On failure nothing is committed; the outputs are kept under $XDG_STATE_HOME/s3fsv/runs/ID
for s3fsv run --commit ID (commit them anyway) or --discard ID. So are those of a run whose
s3fsv process was killed (its record then says "interrupted"), once its command has ended.
s3fsv run --list shows the runs that are not finished.
"""

RUN_EXAMPLES = """\
examples:
  s3fsv run --in cams@main:images --out detections@main:runs/2026-12-07 \\
      -- python detect.py {in}/images {out}
  s3fsv run --in img=cams@v1 --in cfg=configs@main:detect.toml --out det@main:v1 \\
      --record-file model.onnx -- ./detect.sh {in.img} {in.cfg}/detect.toml {out}
  s3fsv run --commit 20261207T100000Z-3f9a0c1e -m "kept despite 2 unreadable images"
"""


def _say(text: str) -> None:
    print(f"s3fsv: {text}", file=sys.stderr, flush=True)


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def _reach(args: argparse.Namespace, url: str | None = None) -> Any:
    """How this command reaches its store (``--store``, or ``--gateway`` with its token),
    worked out once. Through a gateway, the mounts a run starts inherit the gateway and the
    token through S3FSV_GATEWAY and S3FSV_TOKEN_FILE."""
    import os

    from s3fsv.access.connect import reach

    if getattr(args, "reached", None) is None:
        args.reached = reach(url or args.store, args.endpoint_url, args.gateway, args.token_file)
        if args.reached.client is not None:
            token = args.token_file or os.environ["S3FSV_TOKEN_FILE"]
            os.environ["S3FSV_GATEWAY"] = args.reached.client.url
            os.environ["S3FSV_TOKEN_FILE"] = os.path.abspath(os.path.expanduser(token))
    return args.reached


def _open(args: argparse.Namespace, url: str | None = None) -> Any:
    """The store, with its changes going to the audit trail (s3fsv.access.connect)."""
    from s3fsv.access.connect import command_store

    return command_store(_reach(args, url))


# -- parsers ---------------------------------------------------------------------------------


def add_verbs(add: AddCommand) -> None:
    """Add ``run``, ``reproduce`` and ``lineage`` with ``parser.build_parser``'s ``add``."""
    p = add(
        "run",
        "run",
        "run a command on pinned inputs and commit its outputs with a run record",
        usage="%(prog)s [options] --in [NAME=]REPO@REF[:PATH] ... --out REPO@BRANCH[:PATH] "
        "-- COMMAND [ARGS...]\n       %(prog)s --commit ID [-m MSG] | --discard ID | --list",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=RUN_EXAMPLES,
    )
    p.description = RUN_HELP
    p.add_argument(
        "--in",
        dest="inputs",
        action="append",
        default=[],
        metavar="[NAME=]REPO@REF[:PATH]",
        help="an input, pinned to the commit REF names now (default REF: main); repeatable",
    )
    p.add_argument("--out", metavar="REPO@BRANCH[:PATH]", help="where the outputs are committed")
    p.add_argument("-m", "--message", help="commit message (default: 'run: COMMAND')")
    p.add_argument(
        "--record-file",
        action="append",
        default=[],
        metavar="PATH",
        help="also record this file's SHA-256 (a lock file, a model); repeatable",
    )
    p.add_argument(
        "--no-fuse",
        action="store_true",
        help="download the inputs (verified) instead of mounting them",
    )
    p.add_argument(
        "--commit",
        dest="commit_run",
        metavar="ID",
        help="commit the outputs of a kept run (failed or interrupted)",
    )
    p.add_argument("--discard", dest="discard_run", metavar="ID", help="delete a kept run")
    p.add_argument(
        "--list",
        dest="list_runs",
        action="store_true",
        help="list the runs on this machine that are not finished: running, failed or "
        "interrupted (their outputs kept)",
    )
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")

    p = add(
        "reproduce",
        "reproduce",
        "run a commit's recorded command again on its recorded inputs and compare the outputs",
        epilog="The re-run commits to a new scratch branch (named on stderr), deleted "
        "afterwards unless --keep; the original branch never moves. Each output file is "
        "reported identical, different, missing (only in the original) or extra (only in the "
        "re-run), and a code identity that changed since the run (a script, a package "
        "version) is named. Exit 0 only when every file is identical.",
    )
    p.add_argument(
        "address",
        metavar="REPO@COMMIT",
        help="a commit made by s3fsv run (or just its id, looked for in every repo)",
    )
    p.add_argument("--keep", action="store_true", help="keep the scratch branch")
    p.add_argument(
        "--no-fuse", action="store_true", help="download the inputs instead of mounting them"
    )
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")

    p = add(
        "lineage",
        "lineage",
        "what a commit was made from (its inputs, back to ingests), what was made from it "
        "(--downstream), or which run last wrote a file (REPO@REF:PATH)",
    )
    p.add_argument(
        "address",
        nargs="?",
        metavar="REPO[@REF][:PATH]",
        help="a commit (default REF: main); with PATH, the commit and run that last wrote it",
    )
    p.add_argument(
        "--downstream",
        action="store_true",
        help="list every commit made from this one, directly or through other runs",
    )
    p.add_argument(
        "--reindex",
        action="store_true",
        help="rebuild the store's lineage index from every branch's and tag's history",
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


# -- run -------------------------------------------------------------------------------------


@_command("run")
def cmd_run(args: argparse.Namespace) -> int:
    from s3fsv.runs.execute import Terminated, sigterm_interrupts

    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if args.commit_run or args.discard_run or args.list_runs:
        if command or args.inputs or args.out:
            raise UsageError("--commit ID, --discard ID and --list take no command, --in or --out")
        if sum(map(bool, (args.commit_run, args.discard_run, args.list_runs))) > 1:
            raise UsageError("give one of --commit ID, --discard ID and --list")
        if args.list_runs:
            return _list_kept()
        return _commit_kept(args) if args.commit_run else _discard_kept(args.discard_run)
    if not command:
        raise UsageError("no command given: s3fsv run --in ... --out ... -- COMMAND [ARGS...]")
    if not args.out:
        raise UsageError("--out REPO@BRANCH[:PATH] is required: where the outputs go")
    if args.message is not None and not args.message.strip():
        raise UsageError("a commit message must say something")
    try:
        with sigterm_interrupts():
            return _leave(args, _run(args, command))
    except Terminated:
        _say("terminated")
        return 143


def _leave(args: argparse.Namespace, code: int) -> int:
    """Exit with ``code`` at once when this is the s3fsv command and the run is over (its
    store closed, its mount gone, everything said): tearing down the objects a run leaves
    (the store's clients and their models) took Python 0.3 s at exit, a tenth of a short
    run. A call from Python gets ``code`` back."""
    import os

    if not getattr(args, "console", False):
        return code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run(args: argparse.Namespace, command: list[str]) -> int:
    from s3fsv.runs.run import RunRequest, run
    from s3fsv.runs.spec import parse_input, parse_output

    request = RunRequest(
        inputs=[parse_input(text) for text in args.inputs],
        output=parse_output(args.out),
        argv=command,
        message=args.message,
        record_files=args.record_file,
        fuse=not args.no_fuse,
    )
    way = _reach(args)
    result = run(
        lambda: _open(args),  # opened while the run's mount starts
        request,
        say=_say,
        endpoint_url=way.endpoint_url,
        store_url=way.url,
        s3_options=way.s3,
    )
    seconds = result.record["duration_ms"] / 1000
    if result.commit is not None:
        _say(
            f"committed the outputs of run {result.run_id} to {request.output} "
            f"(exit 0 after {seconds:.1f} s, {result.record['mode']} mode)"
        )
        print(result.commit)
        return 0
    _say(f"the command exited with {result.exit_code} after {seconds:.1f} s: nothing committed")
    _tell_kept(result.run_id, result.kept)
    return result.exit_code


def _tell_kept(run_id: str, kept: Any) -> None:
    from s3fsv.runs.staging import kept_lines

    for line in kept_lines(run_id, kept):
        _say(line)


def _commit_kept(args: argparse.Namespace) -> int:
    from s3fsv.runs import staging
    from s3fsv.runs.spec import OutputSpec

    top, info = staging.kept_run(args.commit_run)
    try:
        output = OutputSpec(**info["output"])
        message, provenance, url = info["message"], info["provenance"], info["store"]
    except (KeyError, TypeError):
        raise UsageError(f"{top}/{staging.PENDING} is not a run description") from None
    if args.message is not None:
        if not args.message.strip():
            raise UsageError("a commit message must say something")
        message = args.message
    record = provenance.get("run") if isinstance(provenance, dict) else None
    record = record if isinstance(record, dict) else {}
    with staging.finishing(top), _open(args, url) as store:
        repo = store.repo(output.repo)
        done = staging.committed_as(repo, output.branch, record)
        if done is not None:  # its process ended between its commit and its clean-up
            staging.discard(top)
            _say(f"run {args.commit_run} was committed already, as {done}: its directory is gone")
            print(done)
            return 0
        if "interrupted" in record:
            _say(f"run {args.commit_run} was interrupted: {record['interrupted']}")
        cid = staging.commit_outputs(
            repo, output, top / "out", message=message, provenance=provenance, say=_say
        )
        staging.discard(top)
    code = record.get("exit_code")
    _say(f"committed the kept outputs of run {args.commit_run} (exit {code}) to {output}")
    print(cid)
    return 0


def _list_kept() -> int:
    from s3fsv.runs import staging

    runs = staging.kept_runs()
    if not runs:
        print("no unfinished runs", file=sys.stderr)
    for run_id, state, where in runs:
        print(f"{run_id}  {state:<12}  -> {where}")
    return 0


def _discard_kept(run_id: str) -> int:
    from s3fsv.runs import staging

    top, _info = staging.kept_run(run_id, discarding=True)
    with staging.finishing(top):
        staging.discard(top)
    _say(f"discarded the kept outputs of run {run_id} ({top})")
    return 0


# -- reproduce -------------------------------------------------------------------------------


@_command("reproduce")
def cmd_reproduce(args: argparse.Namespace) -> int:
    from s3fsv.runs.execute import Terminated, sigterm_interrupts
    from s3fsv.runs.reproduce import as_json, details, reproduce, summary

    try:
        with sigterm_interrupts(), _open(args) as store:
            repo, ref = _commit_address(store, args.address)
            rep = reproduce(
                store,
                repo,
                ref,
                keep=args.keep,
                fuse=not args.no_fuse,
                endpoint_url=_reach(args).endpoint_url,
                s3_options=_reach(args).s3,
                say=_say,
                warn=lambda line: _say(f"warning: {line}"),
            )
    except Terminated:
        _say("terminated")
        return 143
    if rep.result.exit_code != 0:
        _say(f"the re-run exited with {rep.result.exit_code}: its outputs are compared as they are")
        if rep.kept:
            _tell_kept(rep.result.run_id, rep.result.kept)
    if rep.kept:
        _say(f"scratch branch kept: {rep.repo}@{rep.branch}")
    else:
        _say(f"scratch branch {rep.repo}@{rep.branch} deleted (--keep keeps it)")
    if args.json:
        _print_json(as_json(rep))
    else:
        for line in details(rep.comparison):
            print(line)
        print(summary(rep.comparison))
    if rep.changes and not rep.comparison.all_identical:
        _say("warning: the code changed since the recorded run (see above)")
    return 0 if rep.comparison.all_identical and rep.result.exit_code == 0 else 1


def _commit_address(store: Any, text: str) -> tuple[str, str]:
    """``REPO@REF``, or a bare commit id (or unique prefix) looked for in every repo."""
    if "@" in text or ":" in text:
        addr = parse_address(text)
        if addr.ref is None:
            raise UsageError(f"reproduce needs a commit: {text}@COMMIT")
        if addr.path:
            raise UsageError(f"reproduce takes a commit, not a path: {addr.repo}@{addr.ref}")
        return addr.repo, addr.ref
    from s3fsv.store.objects import is_commit_prefix

    if not is_commit_prefix(text.lower()):
        raise UsageError(f"{text!r} is neither REPO@COMMIT nor a commit id")
    found = []
    for name in store.repos():
        try:
            found.append((name, store.repo(name).resolve(text)))
        except (NotFound, UsageError):
            continue
    if not found:
        raise NotFound(f"no repo of {store.url} has a commit {text}")
    if len(found) > 1:
        shown = ", ".join(f"{r}@{c[:12]}" for r, c in found)
        raise UsageError(f"commit {text} is ambiguous: {shown}; give REPO@COMMIT")
    return found[0]


# -- lineage ---------------------------------------------------------------------------------


@_command("lineage")
def cmd_lineage(args: argparse.Namespace) -> int:
    from s3fsv.runs import lineage

    if args.reindex:
        if args.address or args.downstream:
            raise UsageError("--reindex takes no address: it reads the whole store")
        with _open(args) as store:
            read, indexed = lineage.reindex(store)
        _say(f"read {read} commit(s); {indexed} with inputs are in the lineage index")
        return 0
    if not args.address:
        raise UsageError("lineage needs REPO[@REF][:PATH] (or --reindex)")
    addr = parse_address(args.address, default_ref="main")
    ref = addr.ref or "main"
    with _open(args) as store:
        if addr.path:
            if args.downstream:
                raise UsageError("--downstream follows commits: give REPO@REF without :PATH")
            found = lineage.blame(store, addr.repo, ref, addr.path)
            _print_json(found) if args.json else _print_blame(found)
        elif args.downstream:
            rows = lineage.downstream(store, addr.repo, ref)
            _print_json(rows) if args.json else _print_downstream(addr.repo, ref, rows)
        else:
            tree = lineage.upstream(store, addr.repo, ref)
            _print_json(tree) if args.json else _print_tree(tree)
    return 0


def _headline(node: dict[str, Any], where: str = "") -> str:
    text = f"{node['repo']}@{node['commit'][:12]}{where}  {node['time'][:19]}Z  {node['message']!r}"
    run = node.get("run")
    if run:
        line = shlex.join(run.get("argv") or [])
        text += f"  [run {run['id']}" + ("]" if line in node["message"] else f": {line}]")
        if run.get("reproduces"):
            text += f" (reproduction of {run['reproduces'][:12]})"
    return text


def _print_tree(
    node: dict[str, Any], prefix: str = "", last: bool = True, top: bool = True
) -> None:
    if top:
        line = _headline(node)
    else:
        branch = "└── " if last else "├── "
        where = f":{node['path']}" if node.get("path") else ""
        if node.get("missing"):
            line = f"{prefix}{branch}{node['repo']}@{node['commit'][:12]}{where}  (commit gone)"
        else:
            line = prefix + branch + _headline(node, where)
    if not node.get("missing") and not node.get("repeat") and not node.get("inputs"):
        line += "  (no recorded inputs: ingest)"
    if node.get("repeat"):
        line += "  (inputs shown above)"
    print(line)
    children = node.get("inputs") or []
    inner = prefix if top else prefix + ("    " if last else "│   ")
    for i, child in enumerate(children):
        _print_tree(child, inner, i == len(children) - 1, top=False)


def _print_downstream(repo: str, ref: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        print(f"nothing recorded {repo}@{ref} as an input", file=sys.stderr)
        return
    for row in rows:
        via = ", ".join(f"{f['repo']}@{f['commit'][:12]}" for f in row["from"])
        print(f"{row['depth']}  {_headline(row)}  <- {via}")


def _print_blame(found: dict[str, Any]) -> None:
    print(f"{shown_path(found['path'])}: last written by {_headline(found)}")
    print(f"  author {found['author']}, {found['time']}")
    record = found.get("record")
    if record:
        for line in run_lines(record):
            print(f"  {line}")
    elif found["inputs"]:
        print("  inputs (read through a mount):")
        for item in found["inputs"]:
            print(
                f"    {item['repo']}@{item['commit']}"
                + (f" via {item['via']}" if item["via"] else "")
            )
    else:
        print("  no recorded inputs (written by put or a mount that read nothing)")


# -- log and show ----------------------------------------------------------------------------


def run_lines(record: dict[str, Any]) -> list[str]:
    """A run record as ``log`` and ``show`` print it: what ran, on what, when, by whom, and
    the identity of its code (``--json`` shows every field)."""
    code = record.get("code") or {}
    argv = record.get("argv") or []
    lines = [
        f"run {record.get('id')} ({record.get('mode')} mode, exit {record.get('exit_code')})",
        f"  command:  {shown_path(shlex.join(str(a) for a in argv))}",
        f"  in dir:   {shown_path(str(record.get('cwd')))}",
    ]
    for item in record.get("inputs") or []:
        where = f":{item.get('path')}" if item.get("path") else ""
        given = item.get("ref")
        was = "" if given == item.get("commit") else f" (given as {given})"
        lines.append(
            f"  input:    {item.get('name')} = {item.get('repo')}@{item.get('commit')}{where}{was}"
        )
    out = record.get("output") or {}
    where = f":{out.get('path')}" if out.get("path") else ""
    lines.append(f"  output:   {out.get('repo')}@{out.get('branch')}{where}")
    ms = record.get("duration_ms")
    took = f"{ms / 1000:.1f} s" if isinstance(ms, int) and record.get("exit_code") != -1 else "?"
    lines.append(f"  time:     {record.get('start')} to {record.get('end')} ({took})")
    lines.append(
        f"  by:       {record.get('user')}@{record.get('host')}, s3fsv {record.get('s3fsv')}, "
        f"Python {record.get('python')}, {record.get('platform')}"
    )
    for item in code.get("files") or []:
        git = item.get("git")
        state = ""
        if git:
            dirty = "dirty" if git.get("dirty") else "clean"
            tracked = "" if git.get("tracked") else ", untracked"
            state = f", git {str(git.get('commit'))[:12]} ({dirty}{tracked})"
        lines.append(
            f"  code:     {item.get('named_by')} {shown_path(str(item.get('path')))} "
            f"sha256 {str(item.get('sha256'))[:16]}{state}"
        )
    python = code.get("python")
    if python:
        if python.get("error"):
            lines.append(f"  python:   {python.get('executable')} (not asked: {python['error']})")
        else:
            count = len(python.get("distributions") or {})
            lines.append(
                f"  python:   {python.get('executable')} {python.get('version')}, "
                f"{count} distributions (--json lists them)"
            )
    if code.get("error"):
        lines.append(f"  code:     not recorded ({code['error']})")
    if record.get("reproduces"):
        lines.append(f"  reproduces {record['reproduces']}")
    if record.get("interrupted"):
        lines.append(f"  interrupted: {record['interrupted']}")
    return lines
