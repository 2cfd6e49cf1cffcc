"""Pipeline specs: what runs, on which datums of which branch, into which output.

A spec is plain data with a canonical JSON form; its version is the SHA-256 of that form, so
two equal specs are the same version wherever they were written. TOML spelling::

    name = "detect"
    input = "cams@main:images/*"          # REPO@BRANCH:GLOB; "/" alone is one datum, the commit
    output = "detections@main"            # REPO@BRANCH[:PATH]
    command = ["python", "detect.py", "{in}/images", "{out}"]
    batch = 64                            # datums per invocation
    retries = 1                           # extra attempts of a failed batch before it is split
    executor = "local"                    # or "dask"; see Executor
    workers = 4                           # local: processes at once (default: cores)
    address = "tcp://127.0.0.1:8786"      # dask: the scheduler
    artifacts = "logs"                    # files of no single datum: "logs" or "output"
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from s3fsv.errors import UsageError
from s3fsv.store.objects import canonical_json, split_path
from s3fsv.store.refs import check_ref_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

EXECUTORS = ("local", "dask")
ARTIFACTS = ("logs", "output")
FIELDS = (
    "name",
    "input",
    "output",
    "command",
    "batch",
    "retries",
    "executor",
    "workers",
    "address",
    "artifacts",
)


@dataclass(frozen=True)
class PipelineSpec:
    """A validated spec. ``glob`` is ``""`` for the whole commit as one datum."""

    name: str
    input_repo: str
    input_branch: str
    glob: str
    output_repo: str
    output_branch: str
    output_path: str
    command: tuple[str, ...]
    batch: int = 1
    retries: int = 1
    executor: Literal["local", "dask"] = "local"
    workers: int = 0  # 0: the number of cores
    address: str = ""
    artifacts: Literal["logs", "output"] = "logs"

    @property
    def input(self) -> str:
        return f"{self.input_repo}@{self.input_branch}:{self.glob or '/'}"

    @property
    def output(self) -> str:
        path = f":{self.output_path}" if self.output_path else ""
        return f"{self.output_repo}@{self.output_branch}{path}"

    def to_json(self) -> dict[str, Any]:
        """The spec in its TOML/JSON spelling (the form its version is computed from)."""
        out: dict[str, Any] = {
            "name": self.name,
            "input": self.input,
            "output": self.output,
            "command": list(self.command),
            "batch": self.batch,
            "retries": self.retries,
            "executor": self.executor,
            "artifacts": self.artifacts,
        }
        if self.workers:
            out["workers"] = self.workers
        if self.address:
            out["address"] = self.address
        return out

    @property
    def version(self) -> str:
        return hashlib.sha256(canonical_json(self.to_json())).hexdigest()

    def local_workers(self) -> int:
        return self.workers or os.cpu_count() or 1


def parse_spec(data: dict[str, Any], *, origin: str = "spec") -> PipelineSpec:
    """A spec from its TOML/JSON fields; ``UsageError`` naming ``origin`` and the field for
    anything missing, unknown or malformed."""
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise UsageError(f"{origin}: unknown field {unknown[0]!r} (known: {', '.join(FIELDS)})")
    for required in ("name", "input", "output", "command"):
        if required not in data:
            raise UsageError(f"{origin}: the field {required!r} is missing")
    name = _text(data, "name", origin)
    try:
        check_ref_name(name, "pipeline")
    except Exception as err:
        raise UsageError(f"{origin}: {err}") from None
    in_repo, in_branch, glob = _split(_text(data, "input", origin), "input", origin)
    glob = "" if glob in ("", "/") else glob
    _check_glob(glob, origin)
    out_repo, out_branch, out_path = _split(_text(data, "output", origin), "output", origin)
    if out_path:
        try:
            out_path = "/".join(split_path(out_path))
        except Exception as err:
            raise UsageError(f"{origin}: bad output path: {err}") from None
    command = data["command"]
    if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
        raise UsageError(f"{origin}: 'command' must be a non-empty list of strings")
    if not any("{in" in a for a in command) or not any("{out}" in a for a in command):
        raise UsageError(f"{origin}: 'command' must name its input {{in}} and its output {{out}}")
    executor = data.get("executor", "local")
    if executor not in EXECUTORS:
        raise UsageError(f"{origin}: 'executor' must be one of {', '.join(EXECUTORS)}")
    artifacts = data.get("artifacts", "logs")
    if artifacts not in ARTIFACTS:
        raise UsageError(f"{origin}: 'artifacts' must be one of {', '.join(ARTIFACTS)}")
    address = data.get("address", "")
    if executor == "dask" and not address:
        raise UsageError(f"{origin}: the dask executor needs 'address' (tcp://HOST:PORT)")
    if (in_repo, in_branch) == (out_repo, out_branch):
        raise UsageError(f"{origin}: the output branch cannot be the input branch")
    return PipelineSpec(
        name=name,
        input_repo=in_repo,
        input_branch=in_branch,
        glob=glob,
        output_repo=out_repo,
        output_branch=out_branch,
        output_path=out_path,
        command=tuple(command),
        batch=_count(data, "batch", 1, origin, minimum=1),
        retries=_count(data, "retries", 1, origin, minimum=0),
        executor=executor,
        workers=_count(data, "workers", 0, origin, minimum=0),
        address=str(address),
        artifacts=artifacts,
    )


def load_spec_file(path: str | os.PathLike[str]) -> PipelineSpec:
    """A spec from a TOML file."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise UsageError(f"no such spec file: {path}") from None
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise UsageError(f"cannot read spec file {path}: {err}") from None
    return parse_spec(data, origin=str(Path(path)))


def _text(data: dict[str, Any], key: str, origin: str) -> str:
    value = data[key]
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{origin}: {key!r} must be a non-empty string")
    return value.strip()


def _count(data: dict[str, Any], key: str, default: int, origin: str, *, minimum: int) -> int:
    value = data.get(key, default)
    if type(value) is not int or value < minimum:
        raise UsageError(f"{origin}: {key!r} must be a whole number of at least {minimum}")
    return value


def _split(text: str, what: str, origin: str) -> tuple[str, str, str]:
    head, _, rest = text.partition(":")
    repo, at, branch = head.partition("@")
    if not at or not branch:
        raise UsageError(f"{origin}: {what} {text!r} must name a branch: REPO@BRANCH[:...]")
    try:
        check_ref_name(repo, "repo")
        check_ref_name(branch, "branch")
    except Exception as err:
        raise UsageError(f"{origin}: bad {what} {text!r}: {err}") from None
    return repo, branch, rest.strip("/") if rest != "/" else "/"


def _check_glob(glob: str, origin: str) -> None:
    if not glob:
        return
    for part in glob.split("/"):
        if part in ("", ".", "..") or "\0" in part or "**" in part:
            raise UsageError(
                f"{origin}: bad input glob {glob!r}: use one pattern per path component "
                "(such as images/*/*.jpg), or / for the whole commit"
            )


def spec_from_json(data: dict[str, Any]) -> PipelineSpec:
    """The spec stored by ``PipelineSpec.to_json``."""
    return parse_spec(dict(data), origin="stored spec")
