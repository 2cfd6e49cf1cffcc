"""The foundation's parsers: ``parse_duration`` reads every span a command takes."""

from __future__ import annotations

import pytest

from s3fsv.config import parse_duration
from s3fsv.errors import UsageError

# What each command accepted before they shared one parser, with the seconds it meant.
GC_GRACE = {"0": 0, "90": 90, "90s": 90, "30m": 1800, "24h": 86400, "2d": 172800}
GC_GRACE |= {"1.5h": 5400, " 24h ": 86400, "10 m": 600, "0.5": 0.5}
TOKEN_EXPIRES = {"1m": 60, "90m": 5400, "12h": 43200, "30d": 2592000, "90d": 7776000}
AUDIT_SINCE = {"30s": 30, "90m": 5400, "1h": 3600, "12h": 43200, "7d": 604800, "007d": 604800}


@pytest.mark.parametrize(
    ("text", "seconds"), [*GC_GRACE.items(), *TOKEN_EXPIRES.items(), *AUDIT_SINCE.items()]
)
def test_every_old_spelling_still_reads(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "bad", ["", " ", "soon", "h", "7w", "-1h", "1e3", ".5h", "1,5h", "1h30m", "7D", "7 days"]
)
def test_bad_durations_are_one_line_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_duration(bad)
    message = str(caught.value)
    assert message.startswith(f"bad duration {bad!r}: use e.g.") and "\n" not in message
