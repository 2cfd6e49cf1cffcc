"""Pipeline benchmark: what a pipeline costs on top of the command it runs, measured in one run.

    .venv/bin/python bench/pipeline_bench.py            # the issue's sizes
    .venv/bin/python bench/pipeline_bench.py --quick    # a tenth of them, for checking a change

It starts its own SeaweedFS on 127.0.0.1 and runs every pipeline through the real CLI
(``s3fsv pipeline run``). Rows and their targets:

- overhead: a no-op command (``true``) over N datums in batches of 500; time per datum (2 ms);
- skip: one new file on top of the N processed; the whole job (2 s);
- detect: ``examples/detect.py`` over M images with the local executor (batch 64, workers the
  cores), against the same script alone over a local copy of the images (1.1x); the two
  alternate, ``--repeat`` times each, and the medians are compared;
- incremental: 10 new images on top of the M processed, against the full job (10%).

Wall times are the rows; the CPU time of each side (the command's process tree, and the
SeaweedFS server's for the pipeline) is reported beside them, since load does not inflate it.
Prints a table and a final JSON line; exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "examples"))

from common import s3_client, s3fsv_command, say  # noqa: E402
from s3server import SeaweedServer  # noqa: E402

import s3fsv  # noqa: E402


def run(env: dict[str, str], *args: str) -> float:
    """Seconds ``s3fsv ARGS`` took; fails loudly on a non-zero exit."""
    return timed([*s3fsv_command(), *args], env)[0]


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, of the whole process tree) ``argv`` took; fails
    loudly on a non-zero exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=3600)
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stdout}{done.stderr}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return took, cpu


def same_output(local: Path, names: list[str]) -> None:
    """Fail unless the first detect pipeline wrote what the script alone wrote into ``local``."""
    files = [f"{name}.json" for name in names]
    with s3fsv.open_store() as store:
        made = store.repo("detections").read_many("r0", files)
    if made != {f: (local / f).read_bytes() for f in files}:
        raise SystemExit("the detect pipeline's outputs differ from those of the script alone")


def server_cpu(pid: int) -> float:
    """CPU seconds the process ``pid`` has used (user + system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def images(dest: Path, count: int) -> dict[str, bytes]:
    """``count`` distinct small PNGs made from the sample photographs."""
    import cv2
    from sample_data import copy_samples

    samples = sorted(copy_samples(dest / "samples"))
    out = {}
    for i in range(count):
        img = cv2.imread(str(samples[i % len(samples)]))
        scale = 0.5 + 0.001 * (i // len(samples))  # about 300 px: a camera snapshot
        ok, png = cv2.imencode(".png", cv2.resize(img, None, fx=scale, fy=scale))
        assert ok
        out[f"img{i:05d}.png"] = png.tobytes()
    return out


@contextmanager
def server(work: Path) -> Iterator[dict[str, str]]:
    """The environment of a SeaweedFS store; ``S3FSV_BENCH_SERVER_PID`` names its process."""
    with SeaweedServer(work / "weed") as weed:
        s3_client(weed).create_bucket(Bucket="pipebench")
        assert weed._proc is not None
        env = {
            "S3FSV_BENCH_SERVER_PID": str(weed._proc.pid),
            **os.environ,
            **weed.env(),
            "S3FSV_STORE": "s3://pipebench/store",
            "XDG_STATE_HOME": str(work / "state"),
            "XDG_CACHE_HOME": str(work / "cache"),
            "XDG_CONFIG_HOME": str(work / "config"),
        }
        yield env


def spec(
    path: Path,
    name: str,
    input_: str,
    output: str,
    command: list[str],
    batch: int,
    workers: int = 0,
) -> str:
    lines = [
        f'name = "{name}"',
        f'input = "{input_}"',
        f'output = "{output}"',
        "command = [" + ", ".join(json.dumps(a) for a in command) + "]",
        f"batch = {batch}",
    ]
    if workers:
        lines.append(f"workers = {workers}")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes")
    parser.add_argument(
        "--workers", type=int, default=0, help="the detect pipeline's workers (the cores)"
    )
    parser.add_argument(
        "--repeat", type=int, help="runs of each row, the median reported (3; 1 with --quick)"
    )
    args = parser.parse_args()
    datums = 1_000 if args.quick else 10_000
    pictures = 100 if args.quick else 1_000
    repeat = args.repeat or (1 if args.quick else 3)
    work = Path(tempfile.mkdtemp(prefix="s3fsv-pipebench-"))
    rows: list[dict[str, object]] = []
    try:
        with server(work) as env:
            os.environ.update({k: env[k] for k in env if k.startswith(("AWS_", "XDG_", "S3FSV"))})
            run(env, "init")
            for repo in ("files", "cams", "noop", "detections"):
                run(env, "repo", "create", repo)
            store = s3fsv.open_store()
            say(f"committing {datums} small files")
            with store.repo("files").transaction("main", message="files") as tx:
                for i in range(datums):
                    tx.write(f"d/{i // 1000:02d}/f{i:05d}.txt", f"datum {i}\n".encode() * 10)
            noop = ["sh", "-c", "true", "{in}", "{out}"]
            times, skips = [], []
            for r in range(repeat):
                run(env, "branch", "create", "noop", f"r{r}")
                path = spec(
                    work / f"noop{r}.toml", f"noop{r}", "files@main:d/*/*", f"noop@r{r}", noop, 500
                )
                run(env, "pipeline", "create", "-f", path)
                took = run(env, "pipeline", "run", f"noop{r}", "--quiet")
                times.append(took)
                say(f"no-op over {datums} datums: {took:.2f} s")
                with store.repo("files").transaction("main", message="one more") as tx:
                    tx.write(f"d/new/f{r}.txt", b"one more\n")
                skip = run(env, "pipeline", "run", f"noop{r}", "--quiet")
                skips.append(skip)
                say(f"1 new datum on top of {datums}: {skip:.2f} s")
            per_datum = statistics.median(times) / datums * 1000
            rows.append(
                _row(
                    "overhead per datum (no-op, batch 500)",
                    per_datum,
                    "ms",
                    2.0,
                    per_datum <= 2.0,
                    times,
                )
            )
            skip = statistics.median(skips)
            rows.append(_row(f"1 new file on top of {datums}", skip, "s", 2.0, skip <= 2.0, skips))

            say(f"making {pictures} images")
            pics = images(work, pictures + 10)
            names = sorted(pics)
            local = work / "local" / "images"
            local.mkdir(parents=True)
            for name in names[:pictures]:
                (local / name).write_bytes(pics[name])
            with store.repo("cams").transaction("main", message="images") as tx:
                for name in names[:pictures]:
                    tx.write(f"images/{name}", pics[name])
            detect = [sys.executable, str(ROOT / "examples" / "detect.py")]
            weed = int(env["S3FSV_BENCH_SERVER_PID"])
            alones, alone_cpus, fulls, full_cpus, weed_cpus = [], [], [], [], []
            for r in range(repeat):  # alternating, so that both sides see the same load
                took, cpu = timed([*detect, str(local), str(work / f"local-out{r}")], env)
                alones.append(took)
                alone_cpus.append(cpu)
                say(f"detect.py alone over {pictures} local images: {took:.1f} s ({cpu:.1f} s CPU)")
                run(env, "branch", "create", "detections", f"r{r}")
                path = spec(
                    work / f"detect{r}.toml",
                    f"detect{r}",
                    "cams@main:images/*",
                    f"detections@r{r}",
                    [*detect, "{in}/images", "{out}"],
                    64,
                    args.workers,
                )
                run(env, "pipeline", "create", "-f", path)
                weed_before = server_cpu(weed)
                pipeline = [*s3fsv_command(), "pipeline", "run", f"detect{r}", "--quiet"]
                took, cpu = timed(pipeline, env)
                fulls.append(took)
                full_cpus.append(cpu)
                weed_cpus.append(server_cpu(weed) - weed_before)
                say(
                    f"detect pipeline over {pictures} images: {took:.1f} s ({cpu:.1f} s CPU, "
                    f"SeaweedFS {weed_cpus[-1]:.1f} s CPU)"
                )
            same_output(work / "local-out0", names[:pictures])
            alone, full = statistics.median(alones), statistics.median(fulls)
            workers = f", {args.workers} worker(s)" if args.workers else ""
            row = _row(
                f"detect.py over {pictures} images, local executor{workers}",
                full / alone,
                "x",
                1.1,
                full / alone <= 1.1,
                fulls,
                baseline=alones,
            )
            row["cpu_s"] = [round(c, 2) for c in full_cpus]
            row["server_cpu_s"] = [round(c, 2) for c in weed_cpus]
            row["baseline_cpu_s"] = [round(c, 2) for c in alone_cpus]
            rows.append(row)
            with store.repo("cams").transaction("main", message="10 more") as tx:
                for name in names[pictures:]:
                    tx.write(f"images/{name}", pics[name])
            mores = []
            for r in range(repeat):
                mores.append(run(env, "pipeline", "run", f"detect{r}", "--quiet"))
                say(f"10 new images on top of {pictures}: {mores[-1]:.1f} s")
            more = statistics.median(mores)
            rows.append(
                _row(
                    f"10 new images on top of {pictures}",
                    more / full * 100,
                    "%",
                    10,
                    more / full <= 0.10,
                    mores,
                    baseline=fulls,
                )
            )
            store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'row':<48} {'value':>10} {'target':>8}  result")
    for row in rows:
        print(
            f"{row['row']:<48} {row['value']:>8.3g}{row['unit']:<2} "
            f"{row['target']:>6}{row['unit']:<2}  {'PASS' if row['pass'] else 'FAIL'}"
        )
    print(json.dumps({"bench": "pipelines", "quick": args.quick, "rows": rows}))
    return 0 if all(r["pass"] for r in rows) else 1


def _row(
    name: str,
    value: float,
    unit: str,
    target: float,
    ok: bool,
    runs: list[float],
    baseline: list[float] | None = None,
) -> dict[str, object]:
    out: dict[str, object] = {
        "row": name,
        "value": round(value, 4),
        "unit": unit,
        "target": target,
        "pass": ok,
        "runs_s": [round(t, 3) for t in runs],
    }
    if baseline is not None:
        out["baseline_s"] = [round(t, 3) for t in baseline]
    return out


if __name__ == "__main__":
    sys.exit(main())
