"""``s3fsv pipeline watch --metrics-addr``: jobs, datums and failures as Prometheus series."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from s3fsv.ops.pipeline_metrics import PipelineMetrics
from tests.mounting import S3FSV
from tests.pipelines.support import cli, hash_spec


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_watch_serves_job_and_datum_counts(pipeline_env: dict[str, str], tmp_path: Path) -> None:
    spec = hash_spec(tmp_path, batch=4)
    cli(pipeline_env, "pipeline", "create", "-f", str(spec))
    log = tmp_path / "watch.log"
    with log.open("w") as err:
        watcher = subprocess.Popen(
            [*S3FSV, "pipeline", "watch", "--interval", "0.3", "--quiet",
             "--metrics-addr", "127.0.0.1:0"],
            env=pipeline_env, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        address = None
        while address is None and time.monotonic() < deadline:
            found = re.search(r"metrics at http://(\S+)/metrics", log.read_text())
            address = found.group(1) if found else None
            time.sleep(0.1)
        assert address, log.read_text()
        key = ("s3fsv_pipeline_jobs_total", (("pipeline", "hash"), ("state", "succeeded")))
        seen: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        while seen.get(key, 0) < 1 and time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as answer:
                seen = samples(answer.read().decode())
            time.sleep(0.2)
        assert seen.get(key) == 1, log.read_text()
        processed = ("s3fsv_pipeline_datums_total", (("pipeline", "hash"), ("result", "processed")))
        assert seen[processed] == 8
        assert seen[("s3fsv_pipeline_job_seconds_count", (("pipeline", "hash"),))] == 1
    finally:
        watcher.terminate()
        watcher.wait(timeout=60)


def test_failed_jobs_and_rounds_are_counted() -> None:
    metrics = PipelineMetrics()
    metrics.job(
        {"pipeline": "p", "state": "failed", "processed": 3, "skipped": 1,
         "failed": {"a": "boom"}, "ms": 1500}
    )  # fmt: skip
    metrics.round_failed(RuntimeError("store down"))
    from prometheus_client import generate_latest

    seen = samples(generate_latest(metrics.registry).decode())
    assert seen[("s3fsv_pipeline_jobs_total", (("pipeline", "p"), ("state", "failed")))] == 1
    assert seen[("s3fsv_pipeline_failures_total", (("pipeline", "p"),))] == 1
    assert seen[("s3fsv_pipeline_datums_total", (("pipeline", "p"), ("result", "failed")))] == 1
    assert seen[("s3fsv_pipeline_datums_total", (("pipeline", "p"), ("result", "skipped")))] == 1
    assert seen[("s3fsv_pipeline_watch_errors_total", ())] == 1
    assert seen[("s3fsv_pipeline_job_seconds_sum", (("pipeline", "p"),))] == 1.5
