"""Rewriting packs most of whose members are dead, so that deleting files frees their bytes.

A pack is one object: it is deleted only when none of its members is reachable. A pack whose
reachable members add up to less than ``REPACK_BELOW`` of its size is rewritten by ``gc``:
its live members are copied (verified) into a new pack, a **moved record**
``<repo>/moved/<old pack id>`` says where each went (docs/format.md, 7.3), and the old pack is
deleted like dead objects are. Trees keep naming the old pack: commit ids never change, and
readers follow the record. Later gcs keep the record, and the new pack, while a reachable tree
names the old pack, and delete the record once none does.
"""

from __future__ import annotations

import logging

from s3fsv.errors import PreconditionFailed, S3fsvError
from s3fsv.store.objects import canonical_json
from s3fsv.store.objectstore import Member, Moved, ObjectStore
from s3fsv.store.repo import Repository

log = logging.getLogger(__name__)

REPACK_BELOW = 0.5  # rewrite a pack whose live members fill less than half of it

# pack -> offset -> (size, content id) of its reachable members
PackMembers = dict[str, dict[int, tuple[int, str]]]


def follow_moved(repo: Repository, packs: PackMembers, live: set[str]) -> set[str]:
    """For referenced packs that an earlier gc rewrote: make the packs their members moved to
    live (with those members), following chains. Returns the moved records to keep."""
    prefix = f"{repo.name}/moved/"
    recorded = {key[len(prefix) :] for key in repo.backend.list(prefix)}
    keep: set[str] = set()
    pending = [p for p in packs if p in recorded]
    while pending:
        pack = pending.pop()
        if repo.objects.moved_key(pack) in keep:
            continue
        moved = repo.objects.moved(pack)
        if moved is None:
            continue
        keep.add(repo.objects.moved_key(pack))
        live.add(moved.pack)
        target = packs.setdefault(moved.pack, {})
        for offset, (size, oid) in packs[pack].items():
            if offset in moved.members:
                target[moved.members[offset][0]] = (size, oid)
        if moved.pack in recorded:
            pending.append(moved.pack)
    return keep


def live_bytes(kept: dict[int, tuple[int, str]]) -> int:
    return sum(size for size, _ in kept.values())


def underused(size: int, kept: dict[int, tuple[int, str]]) -> bool:
    return live_bytes(kept) < REPACK_BELOW * size


def repack(objects: ObjectStore, pack: str, kept: dict[int, tuple[int, str]]) -> int | None:
    """Copy the ``kept`` members of ``pack`` into a new pack and record where they went.
    Returns the bytes written (0 when an earlier run's record covers them already), or None
    when the pack must stay (a member does not verify, or a record lacks a kept member)."""
    existing = objects.moved(pack)
    if existing is not None:
        return 0 if set(kept) <= set(existing.members) else None
    members = [Member(oid, pack, offset, size) for offset, (size, oid) in sorted(kept.items())]
    try:
        good, bad = objects.get_members(pack, members, fill_cache=False)
    except S3fsvError as err:
        log.warning("pack %s not rewritten: %s", pack, err)
        return None
    if bad:
        log.warning("pack %s not rewritten: %d member(s) do not match their hash", pack, len(bad))
        return None
    data = bytearray()
    where: dict[int, tuple[int, int]] = {}
    for m in members:
        where[m.offset] = (len(data), m.size)
        data += good[m.oid]
    record = Moved(objects.put_bytes(bytes(data), fill_cache=False), where)
    try:
        objects.backend.put(
            objects.moved_key(pack), canonical_json(record.to_json()), if_none_match=True
        )
    except PreconditionFailed:  # another gc rewrote it meanwhile: its record stands
        objects.note_moved(pack, None)
        found = objects.moved(pack)
        return 0 if found is not None and set(kept) <= set(found.members) else None
    objects.note_moved(pack, record)
    return len(data)
