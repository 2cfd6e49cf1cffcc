"""Render a ``bench/compare.py`` results file: a Markdown table of each system's ratio to the best
and a matplotlib chart (PNG) next to it.

    .venv/bin/python bench/report.py bench/results/2026-01-01-abcdef.json [--latest]

"Best" is the fastest median among the systems that read from S3 (s3fsv, the peers, boto3);
local disk and the Python passthrough are ceilings, shown with their ratio to that same best.
With ``--latest`` the table and chart are also copied to ``bench/results/latest.{md,png}``,
which the README shows.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

WORKLOADS = {
    "big-cold": "{big}, cold",
    "big-filled": "{big}, cache filled, fresh mount",
    "big-pagecache": "{big}, re-read on the same mount",
    "fio-cold": "fio random 4 KiB ({fio}), cold",
    "fio-warm": "fio random 4 KiB ({fio}), warm",
    "ttfb": "time to first byte",
    "small-cold": "{small} sorted, cold",
    "small-warm": "{small} sorted, warm",
    "find-2k": "`find`, {small_n} files",
    "lsr-2k": "`ls -lR`, {small_n} files",
    "find-100k": "`find`, {many_n} files",
    "lsr-100k": "`ls -lR`, {many_n} files",
    "write-small": "write {small}",
    "write-big": "write {big}",
    "detect": "detection example, cold",
}
REMOTE = ("s3fsv", "s3fs", "s3fs-cache", "rclone", "boto3")
PEERS = ("s3fs", "s3fs-cache", "rclone")
CEILINGS = ("local", "passthrough")
LABELS = {
    "s3fsv": "s3fsv",
    "s3fs": "s3fs-fuse",
    "s3fs-cache": "s3fs-fuse use_cache",
    "rclone": "rclone vfs full",
    "boto3": "boto3",
    "local": "local disk",
    "passthrough": "Python passthrough",
}
COLORS = {
    "s3fsv": "#d62728",
    "s3fs": "#1f77b4",
    "s3fs-cache": "#aec7e8",
    "rclone": "#2ca02c",
    "boto3": "#9467bd",
    "local": "#7f7f7f",
    "passthrough": "#c7c7c7",
}


def _size(n: int) -> str:
    return f"{n // 1024} GiB" if n >= 1024 and n % 1024 == 0 else f"{n} MiB"


def titles(meta: dict[str, Any]) -> dict[str, str]:
    sz = meta["sizes"]
    small_n = sz["dirs"] * sz["per_dir"]
    values = {
        "big": _size(sz["big_mib"]),
        "fio": f"{sz['fio_mib']} MiB",
        "small": f"{small_n:,} x 100 KB",
        "small_n": f"{small_n:,}",
        "many_n": f"{sz['many_dirs'] * sz['many_per_dir']:,}",
    }
    return {k: v.format(**values) for k, v in WORKLOADS.items()}


def summarise(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per workload: medians, min-max, the best remote system and everyone's ratio."""
    rows = []
    names = titles(data["meta"])
    for wl, title in names.items():
        per = data["samples"].get(wl, {})
        errors = data.get("errors", {}).get(wl, {})
        if not per and not errors:
            continue
        med = {s: statistics.median(v) for s, v in per.items() if v}
        remote = {s: t for s, t in med.items() if s in REMOTE}
        best = min(remote, key=remote.__getitem__) if remote else None
        rows.append(
            {
                "workload": wl,
                "title": title,
                "median": med,
                "range": {s: (min(v), max(v)) for s, v in per.items() if v},
                "n": {s: len(v) for s, v in per.items()},
                "errors": errors,
                "best": best,
                "ratio": {s: t / remote[best] for s, t in med.items()} if best else {},
            }
        )
    return rows


def markdown(data: dict[str, Any], rows: list[dict[str, Any]], chart: str | None) -> str:
    meta = data["meta"]
    systems = [s for s in (*REMOTE, *CEILINGS) if any(s in r["median"] or s in r["errors"]
                                                      for r in rows)]  # fmt: skip
    out = [
        f"# s3fsv against its peers: {meta['date']} (code {meta['code'].get('commit')}"
        f"{', quick' if meta.get('quick') else ''})",
        "",
        (
            ""
            if meta.get("finished", True)
            else f"**Interrupted** after {len(meta.get('load_avg_per_rep', []))} repetition(s). "
        )
        + f"Medians of up to {meta['repeat']} runs on {meta['cpus']} CPUs; load average "
        f"{meta['load_avg_start']} at the start, {meta.get('load_avg_end')} at the end. Each "
        "cell: time relative to the fastest system that reads from S3 (**bold**: that system), "
        "then the median in seconds. Lower is better. Local disk and the Python passthrough are "
        "ceilings, not competitors.",
        "",
    ]
    if chart:
        out += [f"![ratio to the best]({chart})", ""]

    def ratio(r: dict[str, Any], s: str) -> str:
        cell = f"{r['ratio'][s]:.2f}x"
        return f"{f'**{cell}**' if s == r['best'] else cell} ({r['median'][s]:.3g} s)"

    def spread(r: dict[str, Any], s: str) -> str:
        lo, hi = r["range"][s]
        return f"{r['median'][s]:.3g} ({lo:.3g}–{hi:.3g}, {r['n'][s]})"

    out += _table(rows, systems, ratio)
    out += ["", "Seconds, median (min–max, runs):", ""]
    out += _table(rows, systems, spread)
    out += ["", "Where s3fsv loses to a peer (s3fs-fuse, rclone):", ""]
    lost = False
    for r in rows:
        peers = {s: t for s, t in r["median"].items() if s in PEERS}
        if "s3fsv" not in r["median"] or not peers:
            continue
        peer = min(peers, key=peers.__getitem__)
        if peers[peer] < r["median"]["s3fsv"]:
            lost = True
            out.append(
                f"- {r['title']}: {r['median']['s3fsv'] / peers[peer]:.2f}x the time of "
                f"{LABELS[peer]} ({r['median']['s3fsv']:.3g} s against {peers[peer]:.3g} s)."
            )
    if not lost:
        out.append("- nowhere in this run.")
    behind = [r for r in rows if r["best"] == "boto3" and "s3fsv" in r["median"]]
    if behind:
        out += ["", "Where s3fsv is behind boto3 (which has no filesystem to serve):", ""]
        out += [
            f"- {r['title']}: {r['ratio']['s3fsv']:.2f}x ({r['median']['s3fsv']:.3g} s against "
            f"{r['median']['boto3']:.3g} s)."
            for r in behind
        ]
    failed = [(r["title"], s, e) for r in rows for s, e in r["errors"].items()]
    if failed:
        out += ["", "Failures:", ""]
        out += [f"- {t}, {LABELS.get(s, s)}: {e}" for t, s, e in failed]
    out += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()), ""]
    return "\n".join(out)


def _table(rows: list[dict[str, Any]], systems: list[str], cell: Any) -> list[str]:
    out = ["| Workload | " + " | ".join(LABELS[s] for s in systems) + " |"]
    out.append("|---|" + "---:|" * len(systems))
    for r in rows:
        cells = [
            cell(r, s) if s in r["median"] else "failed" if s in r["errors"] else "–"
            for s in systems
        ]
        out.append(f"| {r['title']} | " + " | ".join(cells) + " |")
    return out


def chart(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = [s for s in (*REMOTE, *CEILINGS) if any(s in r["ratio"] for r in rows)]
    rows = [r for r in rows if r["ratio"]]
    height = 0.8 / max(len(systems), 1)
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(rows) * max(len(systems), 4) / 4 + 1.5))
    for i, s in enumerate(systems):
        ys, xs, lo, hi = [], [], [], []
        for j, r in enumerate(rows):
            if s not in r["ratio"]:
                continue
            base = r["median"][r["best"]]
            ys.append(j + (i - (len(systems) - 1) / 2) * height)
            xs.append(r["ratio"][s])
            lo.append(r["ratio"][s] - r["range"][s][0] / base)
            hi.append(r["range"][s][1] / base - r["ratio"][s])
        ax.barh(ys, xs, height=height, color=COLORS[s], label=LABELS[s], xerr=[lo, hi],
                error_kw={"elinewidth": 0.6, "capsize": 1.5}, edgecolor="black",
                linewidth=0.6 if s == "s3fsv" else 0)  # fmt: skip
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r["title"].replace("`", "") for r in rows])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("time relative to the fastest S3 reader (log scale, lower is better)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def render(results: Path, *, latest: bool = False) -> str:
    """Write ``results`` rendered as ``.md`` and ``.png`` next to it; return the Markdown."""
    data = json.loads(results.read_text())
    rows = summarise(data)
    png = results.with_suffix(".png")
    meta = data["meta"]
    chart(rows, png, f"s3fsv and its peers, {meta['date'][:10]} (medians of {meta['repeat']})")
    md = markdown(data, rows, png.name)
    results.with_suffix(".md").write_text(md)
    if latest:
        shutil.copyfile(png, results.parent / "latest.png")
        (results.parent / "latest.md").write_text(markdown(data, rows, "latest.png"))
    return md


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a bench/results/*.json file")
    parser.add_argument("--latest", action="store_true", help="also update latest.{md,png}")
    args = parser.parse_args()
    print(render(args.results, latest=args.latest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
