"""The request-log formats ``audit ingest`` reads, grouped as the trail records them."""

from __future__ import annotations

import json

from s3fsv.access.ingest import _events, _parse_line, summarize
from s3fsv.access.policy import Location

WHERE = Location.of("s3://bkt/st")


def _seaweed(who: str, op: str, key: str, status: int = 200, bucket: str = "bkt") -> str:
    return json.dumps(
        {
            "requester_arn": f"arn:aws:sts::000000000000:assumed-role/s3fsv-ceiling/{who}",
            "operation": op,
            "bucket": bucket,
            "key": key,
            "status": status,
            "time": 1_700_000_000,
        }
    )


def test_requests_are_grouped_by_principal_repo_kind_and_outcome() -> None:
    lines = [
        _seaweed("alice", "REST.GET.OBJECT", "st/cams/objects/aa/1"),
        _seaweed("alice", "REST.GET.OBJECT", "st/cams/objects/aa/2"),
        _seaweed("alice", "REST.GET.OBJECT", "st/camsB/repo.json", 403),
        _seaweed("alice", "REST.GET.OBJECT", "st/cams/missing", 404),
        _seaweed("alice", "REST.GET.OBJECT", "st/s3fsv.json"),  # the store marker: no repo
        _seaweed("alice", "REST.GET.OBJECT", ""),  # a listing
        _seaweed("cam-17", "REST.PUT.OBJECT", "st/_uploads/cams/incoming/cam-17/a.jpg"),
        _seaweed("alice", "REST.GET.OBJECT", "other/cams/x"),  # not this store
        _seaweed("alice", "REST.GET.OBJECT", "st/cams/x", bucket="elsewhere"),
        "not json",
    ]
    found = summarize([r for line in lines for r in _parse_line(line)], WHERE)
    brief = {(f["principal"], f["action"], f["repo"]): f["detail"] for f in found}
    assert set(brief) == {
        ("alice", "engine.read", "cams"),
        ("alice", "engine.read.refused", "camsB"),
        ("alice", "engine.read.failed", "cams"),
        ("alice", "engine.read", None),
        ("alice", "engine.list", None),
        ("cam-17", "engine.write", "cams"),
    }
    assert brief[("alice", "engine.read", "cams")]["keys"] == [
        "cams/objects/aa/1",
        "cams/objects/aa/2",
    ]
    assert brief[("alice", "engine.read", "cams")]["count"] == 2


def test_cloudtrail_and_fluent_forward_shapes() -> None:
    trail = {
        "Records": [
            {
                "eventName": "GetObject",
                "eventTime": "2026-05-01T10:00:00Z",
                "userIdentity": {"arn": "arn:aws:sts::1:assumed-role/s3fsv-ceiling/bob"},
                "requestParameters": {"bucketName": "bkt", "key": "st/detections/repo.json"},
            },
            {"eventName": "ListBuckets", "eventTime": "2026-05-01T10:00:00Z"},
        ]
    }
    found = list(_parse_line(json.dumps(trail)))
    assert found == [
        {
            "time": 1777629600,
            "principal": "bob",
            "op": "GetObject",
            "bucket": "bkt",
            "key": "st/detections/repo.json",
            "status": 200,
        }
    ]
    message = ["s3.access", 1, json.loads(_seaweed("alice", "REST.GET.OBJECT", "st/cams/x"))]
    assert list(_parse_line(json.dumps(message)))[0]["principal"] == "alice"
    forward = ["s3.access", [[1, {"a": 1}], [2, {"b": 2}]]]
    assert list(_events(forward)) == [{"a": 1}, {"b": 2}]
