"""``s3fsv pipeline ...``: specs, running jobs, watching branches, status and logs."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from s3fsv.access.connect import command_store, reach
from s3fsv.api import Store
from s3fsv.cli.parser import AddCommand, Commands
from s3fsv.errors import UsageError
from s3fsv.pipelines import runner, status
from s3fsv.pipelines.registry import Registry
from s3fsv.pipelines.spec import PipelineSpec, load_spec_file, parse_spec

COMMANDS = Commands()
_command = COMMANDS.register

SPEC_HELP = """A spec is a TOML file (-f) or flags. For example detect.toml:

  name = "detect"
  input = "cams@main:images/*"       # REPO@BRANCH:GLOB, one datum per match; "/" = whole commit
  output = "detections@main"         # REPO@BRANCH[:PATH]
  command = ["python", "examples/detect.py", "{in}/images", "{out}"]
  batch = 64                         # datums per invocation of the command

Optional: retries (1), executor ("local" or "dask"), workers (local: default the cores),
address (dask scheduler, tcp://HOST:PORT), artifacts ("logs": files of no single datum are
kept with the job's logs; "output": committed too).
"""


def add_verbs(add: AddCommand) -> None:
    group = add("pipeline", "", "run unchanged scripts on every new commit, incrementally")
    sub = group.add_subparsers(title="pipeline commands", metavar="ACTION")
    for action, text in (
        ("create", "add a pipeline from a spec"),
        ("update", "set a new version of a pipeline's spec"),
    ):
        p = add(
            action,
            f"pipeline.{action}",
            group=sub,
            help=text,
            epilog=SPEC_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("-f", "--file", metavar="SPEC.toml", help="the spec as a TOML file")
        p.add_argument("--name", help="pipeline name")
        p.add_argument("--input", metavar="REPO@BRANCH:GLOB", help="input branch and datum glob")
        p.add_argument("--output", metavar="REPO@BRANCH[:PATH]", help="output branch")
        p.add_argument("--batch", type=int, help="datums per invocation (default 1)")
        p.add_argument("--retries", type=int, help="extra attempts of a failed batch (1)")
        p.add_argument("--executor", choices=("local", "dask"), help="where batches run")
        p.add_argument(
            "--workers", type=int, help="local executor: commands at once (default: the cores)"
        )
        p.add_argument("--address", help="dask executor: scheduler address")
        p.add_argument("command", nargs="*", metavar="-- COMMAND", help="argv with {in}, {out}")
    p = add("list", "pipeline.list", group=sub, help="list pipelines")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p = add("show", "pipeline.show", group=sub, help="show a pipeline's spec and its versions")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p = add("delete", "pipeline.delete", group=sub, help="delete a pipeline (history is kept)")
    p.add_argument("name", metavar="NAME")
    p = add("run", "pipeline.run", group=sub, help="run the pending jobs, then exit")
    p.add_argument("names", nargs="*", metavar="NAME", help="pipelines (default: all)")
    _run_options(p)
    p = add("watch", "pipeline.watch", group=sub, help="run new jobs as input commits arrive")
    p.add_argument("names", nargs="*", metavar="NAME", help="pipelines (default: all)")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between polls (5)")
    p.add_argument(
        "--metrics-addr",
        metavar="HOST:PORT",
        help="serve Prometheus metrics (jobs, datums, failures) at http://HOST:PORT/metrics",
    )
    _run_options(p)
    p = add("status", "pipeline.status", group=sub, help="recent jobs and their outcome")
    p.add_argument("names", nargs="*", metavar="NAME", help="pipelines (default: all)")
    p.add_argument("--limit", type=int, default=10, help="jobs per pipeline (10)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p = add("logs", "pipeline.logs", group=sub, help="stdout and stderr of a job's invocations")
    p.add_argument("name", metavar="NAME")
    p.add_argument("job", nargs="?", metavar="JOB", help="job id or prefix (default: newest)")
    p.add_argument("--datum", metavar="PATH", help="only the invocations that ran this datum")
    p = add("pending", "pipeline.pending", group=sub, help="input commits with no job yet")
    p.add_argument("name", metavar="NAME")
    p = add("work", "pipeline.work", group=sub, help="run one shard of a job's batches")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--job", required=True, metavar="ID", help="the job's input commit")
    p.add_argument("--shard", required=True, metavar="I/N", help="this shard, from 0 to N-1")
    _run_options(p)
    p = add("finish", "pipeline.finish", group=sub, help="commit a sharded job's output")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--job", required=True, metavar="ID", help="the job's input commit")


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="local executor: commands at once (default: the spec's, else the cores)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _store(args: argparse.Namespace) -> Store:
    return command_store(reach(args.store, args.endpoint_url, args.gateway, args.token_file))


def _spec_from_args(args: argparse.Namespace) -> PipelineSpec:
    if args.file:
        given = [f for f in ("name", "input", "output", "batch", "executor") if getattr(args, f)]
        if given or args.command:
            raise UsageError(
                f"give the spec with -f or with flags, not both (--{given[0]})"
                if given
                else "give the spec with -f or with flags, not both"
            )
        return load_spec_file(args.file)
    data: dict[str, Any] = {"command": list(args.command)}
    for field in ("name", "input", "output", "batch", "retries", "executor", "workers", "address"):
        value = getattr(args, field)
        if value is not None:
            data[field] = value
    return parse_spec(data, origin="pipeline spec")


@_command("pipeline.create")
def cmd_create(args: argparse.Namespace) -> int:
    spec = _spec_from_args(args)
    version = Registry(_store(args)).create(spec)
    print(f"created pipeline {spec.name} (spec {version[:12]}): {spec.input} -> {spec.output}")
    return 0


@_command("pipeline.update")
def cmd_update(args: argparse.Namespace) -> int:
    spec = _spec_from_args(args)
    version = Registry(_store(args)).update(spec)
    print(f"pipeline {spec.name} is at spec {version[:12]}")
    return 0


@_command("pipeline.list")
def cmd_list(args: argparse.Namespace) -> int:
    registry = Registry(_store(args))
    specs = [registry.get(n) for n in registry.names()]
    if args.json:
        _print_json([{**s.to_json(), "version": s.version} for s in specs])
        return 0
    for s in specs:
        print(f"{s.name}\t{s.input} -> {s.output}\t{' '.join(s.command)}")
    return 0


@_command("pipeline.show")
def cmd_show(args: argparse.Namespace) -> int:
    registry = Registry(_store(args))
    spec = registry.get(args.name)
    history = registry.history(args.name)
    if args.json:
        _print_json({"spec": spec.to_json(), "version": spec.version, "history": history})
        return 0
    for key, value in spec.to_json().items():
        print(f"{key:<10} {json.dumps(value) if isinstance(value, list) else value}")
    print(f"{'version':<10} {spec.version}")
    for event in history:
        print(f"  {event['time']}  {event['version'][:12] or '-':<12}  {event['by']}")
    return 0


@_command("pipeline.delete")
def cmd_delete(args: argparse.Namespace) -> int:
    Registry(_store(args)).delete(args.name)
    print(f"deleted pipeline {args.name} (its jobs and spec history are kept)")
    return 0


@_command("pipeline.run")
def cmd_run(args: argparse.Namespace) -> int:
    results = runner.run_pending(_store(args), args.names or None, _options(args))
    for result in results:
        print(_job_line(result))
    if not results:
        print("nothing pending")
    return 1 if any(r["state"] != "succeeded" for r in results) else 0


@_command("pipeline.watch")
def cmd_watch(args: argparse.Namespace) -> int:
    if args.interval <= 0:
        raise UsageError("--interval must be positive")
    store = _store(args)
    metrics = endpoint = None
    if args.metrics_addr:
        from s3fsv.ops.pipeline_metrics import PipelineMetrics

        metrics = PipelineMetrics()
        try:
            endpoint = metrics.serve(args.metrics_addr)
        except OSError as err:
            raise UsageError(
                f"cannot serve metrics at {args.metrics_addr}: {err.strerror or err}"
            ) from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    names = args.names or None
    shown = f"; metrics at http://{endpoint.address}/metrics" if endpoint else ""
    print(
        f"watching {', '.join(names) if names else 'every pipeline'}{shown} (Ctrl-C stops)",
        file=sys.stderr,
        flush=True,
    )

    def on_result(result: dict[str, Any]) -> None:
        if metrics is not None:
            metrics.job(result)
        print(_job_line(result), flush=True)

    try:
        runner.watch(
            store,
            names,
            _options(args),
            interval=args.interval,
            stop=stop,
            on_result=on_result,
            on_error=metrics.round_failed if metrics is not None else None,
        )
    finally:
        if endpoint is not None:
            endpoint.close()
    return 0


@_command("pipeline.status")
def cmd_status(args: argparse.Namespace) -> int:
    store = _store(args)
    names = args.names or Registry(store).names()
    table = {name: status.jobs(store, name, args.limit) for name in names}
    if args.json:
        _print_json(table if len(names) != 1 else {"pipeline": names[0], "jobs": table[names[0]]})
        return 0
    print(
        f"{'PIPELINE':<12} {'INPUT':<12} {'STATE':<10} {'DONE':>6} {'SKIPPED':>8} "
        f"{'FAILED':>6} {'TIME':>8}  OUTPUT"
    )
    for name, rows in table.items():
        for r in rows:
            took = f"{r['ms'] / 1000:.1f}s" if r.get("ms") is not None else "-"
            print(
                f"{name:<12} {r['job'][:12]:<12} {r['state']:<10} {r['processed']:>6} "
                f"{r['skipped']:>8} {len(r['failed']):>6} {took:>8}  "
                f"{(r['output_commit'] or '-')[:12]}"
            )
            for datum, tail in sorted(r["failed"].items()):
                last = tail.strip().splitlines()[-1:] or [""]
                print(f"    failed: {datum}: {last[0]}")
            if r.get("error"):
                print(f"    error: {r['error']}")
    return 0


@_command("pipeline.logs")
def cmd_logs(args: argparse.Namespace) -> int:
    store = _store(args)
    job = status.find_job(store, args.name, args.job, datum=args.datum)
    out = sys.stdout.buffer
    shown = 0
    for index, inv, stdout, stderr in status.invocations(store, args.name, job, args.datum):
        shown += 1
        head = f"== job {job[:12]} batch {index} ({len(inv['datums'])} datums), exit {inv['exit']}"
        out.write(f"{head}\n-- stdout\n".encode() + stdout + b"-- stderr\n" + stderr)
    out.flush()
    if not shown:
        raise UsageError(f"no invocation of job {job[:12]} ran datum {args.datum!r}")
    return 0


@_command("pipeline.pending")
def cmd_pending(args: argparse.Namespace) -> int:
    store = _store(args)
    for commit in runner.pending_inputs(store, Registry(store).get(args.name)):
        print(commit)
    return 0


@_command("pipeline.work")
def cmd_work(args: argparse.Namespace) -> int:
    shard, _, shards = args.shard.partition("/")
    if not (shard.isdigit() and shards.isdigit() and int(shards) > 0):
        raise UsageError(f"bad --shard {args.shard!r}: use I/N, such as 0/3")
    ran = runner.work_shard(
        _store(args), args.name, args.job, int(shard), int(shards), _options(args)
    )
    print(f"shard {args.shard}: ran {ran} batches")
    return 0


@_command("pipeline.finish")
def cmd_finish(args: argparse.Namespace) -> int:
    result = runner.finish_sharded(_store(args), args.name, args.job)
    print(_job_line(result))
    return 0 if result["state"] == "succeeded" else 1


def _options(args: argparse.Namespace) -> runner.RunOptions:
    if args.workers < 0:
        raise UsageError("--workers must be positive")
    progress = None if args.quiet else _progress_bar
    return runner.RunOptions(workers=args.workers, progress=progress)


def _progress_bar(spec: PipelineSpec, plan: dict[str, Any]) -> Callable[[int], None]:
    from tqdm import tqdm

    total = sum(len(b) for b in plan["batches"])
    bar = tqdm(
        total=total,
        desc=f"{spec.name} {plan['job'][:12]}",
        unit="datum",
        file=sys.stderr,
        leave=False,
        disable=None,
    )

    def update(n: int) -> None:
        bar.update(n)
        if bar.n >= total:
            bar.close()

    return update


def _job_line(r: dict[str, Any]) -> str:
    out = (r["output_commit"] or "-")[:12]
    line = (
        f"{r['pipeline']}: job {r['job'][:12]} {r['state']}: {r['processed']} run, "
        f"{r['skipped']} skipped, {len(r['failed'])} failed -> {out}"
    )
    if r["failed"]:
        line += f" (see: s3fsv pipeline status {r['pipeline']})"
    return line


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
