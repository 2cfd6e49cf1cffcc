"""The spans each command takes, read by the one parser (``s3fsv.config.parse_duration``):
every spelling a command accepted before still means what it meant, and a bad one is a one-line
usage error."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from s3fsv.access.audit import parse_since
from s3fsv.cli.app import EXIT_CODES, VERBS
from s3fsv.cli.parser import build_parser
from s3fsv.config import parse_duration
from s3fsv.errors import UsageError
from s3fsv.ingest.gc import DEFAULT_GRACE_S


def parse(*argv: str) -> object:
    return build_parser(EXIT_CODES, "test", VERBS).parse_args(list(argv))


@pytest.mark.parametrize(
    ("span", "seconds"), [("1m", 60), ("90m", 5400), ("12h", 43200), ("90d", 7776000)]
)
def test_token_expires_takes_its_old_spellings(span: str, seconds: int) -> None:
    args = parse("access", "token", "create", "alice", "--expires", span)
    assert args.expires == timedelta(seconds=seconds)  # type: ignore[attr-defined]


def test_token_expires_takes_the_shared_grammar_too() -> None:
    args = parse("access", "token", "create", "alice", "--expires", "1.5h")
    assert args.expires == timedelta(hours=1.5)  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad", ["0m", "0", "soon", "-1d"])
def test_token_expires_refuses_bad_or_empty_spans(
    bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse("access", "token", "create", "alice", f"--expires={bad}")
    assert exited.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument --expires: bad duration {bad!r}" in last


def test_gc_grace_default_reads_as_the_default_grace() -> None:
    args = parse("gc")
    assert parse_duration(args.grace) == DEFAULT_GRACE_S  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("since", "seconds"), [("30s", 30), ("90m", 5400), ("12h", 43200), (" 7d ", 604800)]
)
def test_audit_since_spans_count_back_from_now(since: str, seconds: int) -> None:
    before = datetime.now(timezone.utc)
    got = parse_since(since)
    after = datetime.now(timezone.utc)
    assert before - timedelta(seconds=seconds) <= got <= after - timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("since", "when"),
    [
        ("2026-05-01", datetime(2026, 5, 1, tzinfo=timezone.utc)),
        ("2026-05-01T12:00:00Z", datetime(2026, 5, 1, 12, tzinfo=timezone.utc)),
        ("2026-05-01T12:00:00+02:00", datetime(2026, 5, 1, 10, tzinfo=timezone.utc)),
    ],
)
def test_audit_since_dates_and_times(since: str, when: datetime) -> None:
    assert parse_since(since) == when


@pytest.mark.parametrize("bad", ["", "soon", "7w", "2026-13-01"])
def test_audit_since_refuses_what_is_neither(bad: str) -> None:
    with pytest.raises(UsageError, match=r"^bad time .*: use 2026-05-01, an ISO time, or 90m"):
        parse_since(bad)
