"""Store objects that pipeline records refer to, for garbage collection.

A pipeline keeps some content only in its records (``_pipelines/jobs/``), never in a commit:
every invocation's stdout and stderr, the batch artifacts kept with the logs, and, until its
job's output commit is made, the outputs its workers uploaded. ``referenced_objects`` names
them so that ``gc`` keeps them. Outputs of a job that has a result are in its output commit
(or were replaced since): those references are not roots.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from s3fsv.errors import CorruptObject
from s3fsv.pipelines.registry import NAMESPACE
from s3fsv.store.objects import TreeEntry
from s3fsv.store.records import Records


def _objects_of(ref: Any) -> Iterator[str]:
    """The object ids one file reference (tree-entry JSON) stores its content in."""
    try:
        entry = TreeEntry.from_json(ref, "file reference")
    except CorruptObject:
        return
    if entry.kind == "file" and entry.source is None:
        yield from (entry.pack,) if entry.pack else entry.chunks


def referenced_objects(records: Records) -> set[str]:
    """Object ids (of the pipelines' output repos) that pipeline records keep alive.
    ``records`` is the pipelines' namespace (``Records(backend, "pipelines")``)."""
    if records.namespace != NAMESPACE:
        raise ValueError(f"not the pipelines' records: {records.namespace}")
    out: set[str] = set()
    for pipeline in records.children("jobs"):
        for job in records.children(pipeline):
            finished = records.find(f"{job}/result")
            if finished is not None:
                for ref in finished.value.get("artifacts", {}).values():
                    out.update(_objects_of(ref))
            for name in records.names(f"{job}/batches"):
                batch = records.get(name).value
                for call in batch.get("invocations", ()):
                    out.update(_objects_of(call.get("stdout")))
                    out.update(_objects_of(call.get("stderr")))
                for ref in batch.get("artifacts", {}).values():
                    out.update(_objects_of(ref))
                if finished is None:  # in flight: its outputs are in no commit yet
                    for ref in batch.get("outputs", {}).values():
                        out.update(_objects_of(ref))
    return out
