"""The write benchmark's results: samples per workload, the table of ratios against the
baselines, and the final JSON line."""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass
from typing import Any

from common import say
from write_workloads import MiB


@dataclass(frozen=True)
class Row:
    title: str
    key: str  # samples key of the s3fsv total
    baseline: str
    baseline_label: str
    target: float
    main: bool
    parts: tuple[str, str] | None = None  # samples keys of (write, commit)


class Samples:
    """Wall times per key, and the CPU seconds spent meanwhile by the client (this process and
    its children: the writer, boto3, the s3fsv CLI, detect.py), the mount daemon and SeaweedFS.
    On a busy machine CPU seconds vary much less than wall times."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}
        self.cpu: dict[str, dict[str, list[float]]] = {}

    def add(self, key: str, seconds: float, cpu: dict[str, float] | None = None) -> None:
        self.times.setdefault(key, []).append(seconds)
        extra = ""
        if cpu:
            per = self.cpu.setdefault(key, {})
            for part, value in cpu.items():
                per.setdefault(part, []).append(value)
            extra = "  CPU " + ", ".join(f"{p} {v:.2f}" for p, v in cpu.items())
        say(f"  {key:<20} {seconds:8.3f} s{extra}")

    def median(self, key: str) -> float | None:
        values = self.times.get(key)
        return statistics.median(values) if values else None

    def parts_of_median(
        self, key: str, parts: tuple[str, str] | None
    ) -> tuple[float | None, float | None]:
        """(write, commit) of the repetition whose total is the (low) median, so that the
        parts shown add up to the total shown (for an odd number of repetitions)."""
        totals = self.times.get(key)
        if not parts or not totals:
            return None, None
        i = totals.index(statistics.median_low(totals))
        return self.times[parts[0]][i], self.times[parts[1]][i]

    def cpu_median(self, key: str, part: str) -> float | None:
        values = self.cpu.get(key, {}).get(part)
        return statistics.median(values) if values else None


def _fmt(value: float | None) -> str:
    return f"{value:8.2f}" if value is not None else f"{'-':>8}"


def report(samples: Samples, meta: dict[str, Any]) -> bool:
    """Print the table and the JSON line; True when every main target passes."""
    ok = True
    rows_json = []
    head = (
        f"{'workload':<32} {'write s':>8} {'commit s':>8} {'s3fsv s':>8} {'baseline':<11}"
        f" {'base s':>8} {'ratio':>6} {'target':>7}  result"
    )
    print(head)
    print("-" * len(head))
    names = {
        "small": f"{meta['small_files']}x{meta['small_bytes_each'] // 1024}KiB",
        "big": (
            f"{meta['big_bytes'] // 2**30} GiB"
            if meta["big_bytes"] % 2**30 == 0
            else f"{meta['big_bytes'] // MiB} MiB"
        ),
        "images": meta.get("detect_images", "?"),
    }
    for row in ROWS:
        title = row.title.format(**names)
        got, base = samples.median(row.key), samples.median(row.baseline)
        if got is None or base is None:
            continue
        write, commit = samples.parts_of_median(row.key, row.parts)
        ratio = got / base
        passed = ratio <= row.target
        ok &= passed or not row.main
        verdict = ("PASS" if passed else "FAIL") + ("" if row.main else " (secondary)")
        print(
            f"{title:<32} {_fmt(write)} {_fmt(commit)} {got:8.2f} {row.baseline_label:<11}"
            f" {base:8.2f} {ratio:5.2f}x {'<=' + format(row.target, 'g') + 'x':>7}  {verdict}"
        )
        rows_json.append(
            {
                "name": title,
                "main": row.main,
                "write_s": None if write is None else round(write, 3),
                "commit_s": None if commit is None else round(commit, 3),
                "s3fsv_s": round(got, 3),
                "baseline": row.baseline_label,
                "baseline_s": round(base, 3),
                "ratio": round(ratio, 3),
                "target": row.target,
                "pass": passed,
            }
        )
    if samples.cpu:
        print(f"\nCPU seconds during each step (median): {', '.join(CPU_PARTS)}, total")
        for key in sorted(samples.cpu):
            values = [samples.cpu_median(key, p) for p in CPU_PARTS]
            cells = " ".join(_fmt(v) for v in values)
            total = sum(v for v in values if v is not None)
            print(f"  {key:<20} wall {_fmt(samples.median(key))}   cpu {cells} {total:8.2f}")
    meta = {**meta, "load_avg_end": [round(x, 2) for x in os.getloadavg()]}
    code = meta["code"]
    dirty = f" + uncommitted s3fsv/ changes {code['s3fsv_diff']}" if code["s3fsv_diff"] else ""
    changed = " (CHANGED DURING THE RUN)" if meta.get("code_changed_during_run") else ""
    print(f"\ncode: commit {code['commit']}{dirty}{changed}", end="")
    print(
        f"\nmedian of {meta['repeat']} runs; load average at start {meta['load_avg_start']}, "
        f"at end {meta['load_avg_end']} ({os.cpu_count()} CPUs); elapsed {meta['elapsed_s']} s"
    )
    summary = {
        "bench": "write",
        "pass": ok,
        **meta,
        "rows": rows_json,
        "samples": {k: [round(x, 4) for x in v] for k, v in samples.times.items()},
        "cpu_s": {
            k: {p: [round(x, 3) for x in v] for p, v in per.items()}
            for k, per in samples.cpu.items()
        },
    }
    print(json.dumps(summary, sort_keys=True))
    return ok


ROWS = [
    Row("{small} mount write+commit", "small.mount", "small.boto3", "boto3 x16", 1.5, True,
        ("small.mount.write", "small.mount.commit")),
    Row("{big} mount write+commit", "big.mount", "big.boto3", "boto3 x16", 1.5, True,
        ("big.mount.write", "big.mount.commit")),
    Row("{small} s3fsv put (CLI)", "small.put", "small.boto3", "boto3 x16", 1.5, False),
    Row("{big} s3fsv put (CLI)", "big.put", "big.boto3", "boto3 x16", 1.5, False),
    Row("detect.py x{images} cold mount", "detect.cold", "detect.local", "local", 1.25, False),
    Row("detect.py x{images} warm mount", "detect.warm", "detect.local", "local", 1.25, False),
]  # fmt: skip


CPU_PARTS = ("client", "daemon", "server")
