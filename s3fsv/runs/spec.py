"""What a run is asked for: ``--in [NAME=]REPO@REF[:PATH]``, ``--out REPO@BRANCH[:PATH]``,
and the placeholders ``{in}``, ``{in.NAME}`` and ``{out}`` in its command, with the variables
``S3FSV_IN``, ``S3FSV_IN_<NAME>`` and ``S3FSV_OUT`` that name the same paths."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from s3fsv.errors import UsageError
from s3fsv.store.address import parse_address

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_PLACEHOLDER = re.compile(r"\{(in(?:\.([^{}]*))?|out)\}")


@dataclass(frozen=True)
class InputSpec:
    """One ``--in``: ``name`` is what ``{in.NAME}`` calls it (default: the repo's name)."""

    name: str
    repo: str
    ref: str
    path: str

    def __str__(self) -> str:
        return f"{self.repo}@{self.ref}" + (f":{self.path}" if self.path else "")


@dataclass(frozen=True)
class PinnedInput:
    """An input resolved to the commit it is read from for the whole run."""

    spec: InputSpec
    commit: str

    def as_record(self) -> dict[str, str]:
        s = self.spec
        return {"name": s.name, "repo": s.repo, "ref": s.ref, "commit": self.commit, "path": s.path}

    def __str__(self) -> str:
        return f"{self.spec.repo}@{self.commit}" + (f":{self.spec.path}" if self.spec.path else "")


@dataclass(frozen=True)
class OutputSpec:
    repo: str
    branch: str
    path: str

    def as_record(self) -> dict[str, str]:
        return {"repo": self.repo, "branch": self.branch, "path": self.path}

    def __str__(self) -> str:
        return f"{self.repo}@{self.branch}" + (f":{self.path}" if self.path else "")


def parse_input(text: str) -> InputSpec:
    """``[NAME=]REPO[@REF][:PATH]`` (REF defaults to main). ``UsageError`` names the text."""
    name, eq, rest = text.partition("=")
    if not eq or "@" in name or ":" in name:  # an '=' inside a ref or path is not a name
        name, rest = "", text
    elif not _NAME.fullmatch(name):
        raise UsageError(
            f"bad --in {text!r}: NAME must be letters, digits and '_', not starting with a digit"
        )
    try:
        addr = parse_address(rest, default_ref="main")
    except UsageError as err:
        raise UsageError(f"bad --in {text!r}: {str(err).split(': ', 1)[-1]}") from None
    assert addr.ref is not None
    return InputSpec(name or _default_name(addr.repo), addr.repo, addr.ref, addr.path)


def parse_output(text: str) -> OutputSpec:
    """``REPO[@BRANCH][:PATH]`` (BRANCH defaults to main)."""
    try:
        addr = parse_address(text, default_ref="main")
    except UsageError as err:
        raise UsageError(f"bad --out {text!r}: {str(err).split(': ', 1)[-1]}") from None
    assert addr.ref is not None
    if "~" in addr.ref:
        raise UsageError(f"bad --out {text!r}: outputs go to a branch, not to {addr.ref}")
    return OutputSpec(addr.repo, addr.ref, addr.path)


def check_inputs(inputs: Sequence[InputSpec]) -> None:
    """Each input's name once: two inputs of one repo need ``NAME=`` to tell them apart."""
    seen: dict[str, InputSpec] = {}
    for item in inputs:
        key = item.name.lower()
        if key in seen:
            raise UsageError(
                f"two inputs are called {item.name!r} ({seen[key]} and {item}): name them, "
                "as in --in a=REPO@REF --in b=REPO@REF"
            )
        seen[key] = item


def substitute(argv: Sequence[str], inputs: Mapping[str, str], out: str) -> list[str]:
    """``argv`` with ``{in}`` (the only input), ``{in.NAME}`` and ``{out}`` replaced by the
    paths in ``inputs`` (name -> path) and ``out``. Other braces are left as they are.

    An input's path is the root of its pinned commit (its PATH lies below it, at the same
    place: ``--in cams@main:images`` is read as ``{in}/images``); ``{out}`` is the directory
    that becomes the output's PATH."""

    def one(match: re.Match[str]) -> str:
        if match.group(1) == "out":
            return out
        name = match.group(2)
        if name is None:
            if len(inputs) != 1:
                raise UsageError(
                    "{in} names the only input"
                    + (
                        f"; with several, say which: {', '.join('{in.' + n + '}' for n in inputs)}"
                        if inputs
                        else ", but the run has none (give --in)"
                    )
                )
            return next(iter(inputs.values()))
        for known, path in inputs.items():
            if known.lower() == name.lower():
                return path
        names = ", ".join(inputs) or "none"
        raise UsageError(f"{{in.{name}}} names no input (the inputs are: {names})")

    return [_PLACEHOLDER.sub(one, arg) for arg in argv]


def environment(inputs: Mapping[str, str], out: str, run_id: str) -> dict[str, str]:
    """The variables the command gets besides the caller's own: ``S3FSV_IN`` (when there is
    one input), ``S3FSV_IN_<NAME>`` for each (upper case), ``S3FSV_OUT`` and
    ``S3FSV_RUN_ID``."""
    env = {f"S3FSV_IN_{name.upper()}": path for name, path in inputs.items()}
    if len(inputs) == 1:
        env["S3FSV_IN"] = next(iter(inputs.values()))
    env["S3FSV_OUT"] = out
    env["S3FSV_RUN_ID"] = run_id
    return env


def _default_name(repo: str) -> str:
    """A repo's name as an input name: ``-`` and ``.`` become ``_``."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", repo)
    return name if _NAME.fullmatch(name) else f"in_{name}"[:64]
