"""Prometheus metrics of ``s3fsv pipeline watch --metrics-addr``: jobs by outcome, datums run,
skipped and failed, job durations, and watch rounds that failed (the store unreachable, a
lost lease). Recorded once per job, far from any read path, with ``prometheus_client``'s own
counters; served by the same endpoint as a mount's (``s3fsv.mount.metrics``)."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from s3fsv.mount.metrics import MetricsServer, registry_for
from s3fsv.mount.options import parse_listen_address

JOB_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0)


class PipelineMetrics:
    """The watcher's series, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = registry_for()
        kw: dict[str, Any] = {"registry": self.registry}
        self.jobs = Counter(
            "s3fsv_pipeline_jobs", "Jobs finished, by outcome", ["pipeline", "state"], **kw
        )
        self.datums = Counter(
            "s3fsv_pipeline_datums",
            "Datums of finished jobs: run, skipped (done before) or failed",
            ["pipeline", "result"],
            **kw,
        )
        self.failures = Counter(
            "s3fsv_pipeline_failures", "Jobs that failed (a datum or the job itself)",
            ["pipeline"], **kw,
        )  # fmt: skip
        self.seconds = Histogram(
            "s3fsv_pipeline_job_seconds", "Duration of jobs", ["pipeline"],
            buckets=JOB_BUCKETS, **kw,
        )  # fmt: skip
        self.last_job = Gauge(
            "s3fsv_pipeline_last_job_timestamp_seconds", "When a job last finished",
            ["pipeline"], **kw,
        )  # fmt: skip
        self.round_errors = Counter(
            "s3fsv_pipeline_watch_errors", "Watch rounds that failed (retried next round)", **kw
        )

    def job(self, result: dict[str, Any]) -> None:
        """Record one finished job (a result of ``runner.run_pending``)."""
        name = str(result.get("pipeline", "?"))
        state = str(result.get("state", "?"))
        self.jobs.labels(name, state).inc()
        failed = len(result.get("failed") or {})
        for label, n in (
            ("processed", result.get("processed", 0)),
            ("skipped", result.get("skipped", 0)),
            ("failed", failed),
        ):
            self.datums.labels(name, label).inc(int(n or 0))
        if state != "succeeded":
            self.failures.labels(name).inc()
        if result.get("ms") is not None:
            self.seconds.labels(name).observe(int(result["ms"]) / 1000)
        self.last_job.labels(name).set_to_current_time()

    def round_failed(self, err: BaseException) -> None:
        self.round_errors.inc()

    def serve(self, address: str) -> MetricsServer:
        host, port = parse_listen_address(address)
        return MetricsServer(host, port, self.registry)
