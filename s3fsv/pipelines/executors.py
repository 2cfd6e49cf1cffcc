"""Where batches run: threads of this process, each driving the command as a subprocess
(``local``), or the workers of a Dask cluster (``dask``). Both yield batch results as they
complete; the caller records them and makes the job's one output commit."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict
from typing import Any

from s3fsv.access.connect import command_store, reach
from s3fsv.api import Store
from s3fsv.errors import S3fsvError, UsageError
from s3fsv.pipelines.spec import PipelineSpec, spec_from_json
from s3fsv.pipelines.worker import BatchTask, Slots, run_batch


def run_local(
    store: Store, spec: PipelineSpec, tasks: list[BatchTask], workers: int
) -> Iterator[dict[str, Any]]:
    """Run ``tasks`` here, ``workers`` commands at once; yield each result as it completes.

    Twice ``workers`` batches are in flight, each on a thread, but a command holds one of
    ``workers`` slots only while it runs: the next batches' views are downloaded, and finished
    batches' outputs uploaded, while the commands run."""
    if not tasks:
        return
    workers = max(1, workers)
    slots = Slots.of(workers)
    # One batch ahead per worker: its view is ready when a command ends, even when downloads
    # are as slow as the commands.
    threads = min(len(tasks), 2 * workers)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="s3fsv-batch") as pool:
        futures = [pool.submit(run_batch, store, spec, task, slots) for task in tasks]
        try:
            for fut in as_completed(futures):
                yield fut.result()
        finally:
            for fut in futures:
                fut.cancel()


def run_dask(
    store: Store, spec: PipelineSpec, tasks: list[BatchTask], address: str
) -> Iterator[dict[str, Any]]:
    """Run ``tasks`` as tasks of the Dask scheduler at ``address``; each worker opens the
    store itself (its credentials come from its own environment)."""
    if not tasks:
        return
    try:
        from dask.distributed import Client
        from dask.distributed import as_completed as dask_completed
    except ImportError:
        raise UsageError(
            "the dask executor needs dask.distributed: pip install 's3fsv[dask]'"
        ) from None
    try:
        client = Client(address, timeout=30)
    except OSError as err:
        raise UsageError(f"cannot reach the Dask scheduler at {address}: {err}") from None
    with client:
        futures = [
            client.submit(dask_batch, store.url, store.endpoint_url, asdict(task), pure=False)
            for task in tasks
        ]
        for fut in dask_completed(futures):
            yield fut.result()


_stores: dict[tuple[str, str | None], Store] = {}
_stores_lock = threading.Lock()


def dask_batch(url: str, endpoint: str | None, task: dict[str, Any]) -> dict[str, Any]:
    """A batch on a Dask worker. The worker process keeps one store handle per store."""
    with _stores_lock:
        store = _stores.get((url, endpoint))
        if store is None:
            # A worker reaches the store as its own environment says: directly, or through
            # the gateway of S3FSV_GATEWAY with the token of S3FSV_TOKEN_FILE.
            store = command_store(reach(url, endpoint))
            _stores[(url, endpoint)] = store
    batch = BatchTask(**task)
    try:
        return run_batch(store, spec_from_json(batch.spec), batch)
    except S3fsvError as err:  # travels back as a plain error with its message
        raise RuntimeError(f"{type(err).__name__}: {err}") from None


def default_workers() -> int:
    return os.cpu_count() or 1
