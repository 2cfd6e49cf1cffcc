"""Parsing of ``REPO[@REF][:PATH]`` addresses used throughout the CLI."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from s3fsv.errors import UsageError
from s3fsv.store.objects import split_path
from s3fsv.store.refs import check_ref_name, check_ref_spec


@dataclass(frozen=True)
class Address:
    repo: str
    ref: str | None
    path: str

    def __str__(self) -> str:
        out = self.repo + (f"@{self.ref}" if self.ref else "")
        return out + (f":{self.path}" if self.path else "")


def parse_address(text: str, *, default_ref: str | None = None) -> Address:
    """Parse ``repo``, ``repo@ref``, ``repo:path`` or ``repo@ref:path``.

    The ref and path are validated (a path never contains ``.``, ``..`` or empty components);
    a missing ref is ``default_ref``. Raises ``UsageError`` with the text in the message.
    """
    head, _, path = text.partition(":")
    repo, at, ref = head.partition("@")
    try:
        if at and not ref:
            raise UsageError("empty ref after '@'")
        check_ref_name(repo, "repo")
        if ref:
            check_ref_spec(ref)
        path = "/".join(split_path(path))
    except Exception as err:
        raise UsageError(f"bad address {text!r}: {err}") from None
    return Address(repo, ref or default_ref, path)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def shown_path(path: str) -> str:
    """``path`` for line-oriented output: as is, or JSON-quoted when it holds a control
    character (a newline in a name would otherwise read as two entries)."""
    return json.dumps(path, ensure_ascii=False) if _CONTROL.search(path) else path
