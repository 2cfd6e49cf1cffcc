"""The notebook example of docs/api.md, run as it is written against a real S3 server, so that
it can never rot: it reads a pinned commit and commits results, with provenance."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from api_support import init_store

import s3fsv

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
MARKER = "<!-- notebook example:"


def notebook_example() -> str:
    """The fenced Python block that follows the marker in docs/api.md."""
    text = DOC.read_text()
    found = re.search(re.escape(MARKER) + r".*?-->\n```python\n(.*?)\n```", text, re.S)
    assert found, f"no example after {MARKER!r} in {DOC}"
    return found.group(1) + "\n"


def test_every_public_name_is_documented() -> None:
    """docs/api.md covers ``s3fsv.__all__``, and every public member of its classes: named in
    backquotes (``name``, ``Class.name``), or a field in ``Class(..., name, ...)``."""
    text = DOC.read_text()
    missing = [name for name in s3fsv.__all__ if f"`{name}" not in text]
    for name in s3fsv.__all__:
        obj = getattr(s3fsv, name)
        if not isinstance(obj, type) or issubclass(obj, BaseException):
            continue
        fields = getattr(obj, "__dataclass_fields__", {})
        for member in [m for m in [*vars(obj), *fields] if not m.startswith("_") and m != "of"]:
            quoted = rf"`(\w+\.)?{member}\b"
            field = rf"`{name}\([^`]*\b{member}\b[^`]*\)`"
            if not re.search(quoted, text) and not re.search(field, text):
                missing.append(f"{name}.{member}")
    assert missing == []


def test_the_example_is_ten_lines() -> None:
    assert len(notebook_example().splitlines()) <= 10


def test_the_notebook_example_runs(s3_bucket_url: str, tmp_path: Path) -> None:
    init_store(s3_bucket_url, "cams")
    images = {f"images/{n:04d}.jpg": os.urandom(1000 + n) for n in range(5)}
    with s3fsv.open_store(s3_bucket_url, cache_dir=tmp_path / "setup-cache") as store:
        cams = store.repo("cams")
        with cams.transaction("main", message="ingest") as tx:
            for path, data in images.items():
                tx.write(path, data)
            tx.write("images/raw/ignored.bin", b"a directory's file is not listed")
        pinned = tx.commit_id
    script = tmp_path / "notebook.py"
    script.write_text(notebook_example())
    env = {
        **os.environ,  # the AWS variables that point at SeaweedFS
        "S3FSV_STORE": s3_bucket_url,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    run = subprocess.run(
        [sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    with s3fsv.open_store(s3_bucket_url, cache_dir=tmp_path / "check-cache") as store:
        cams = store.repo("cams")
        made = cams.commit("main")
        assert run.stdout.startswith(made.id)
        assert made.parents == (pinned,) and made.message == "image sizes"
        sizes = json.loads(cams.read_bytes(made.id, "stats/sizes.json"))
        assert sizes == {path: len(data) for path, data in images.items()}
        assert made.provenance["inputs"] == [{"repo": "cams", "commit": pinned, "via": "api"}]
        line = " ".join(shlex.quote(str(a)) for a in (sys.executable, script))
        assert made.provenance["commands"] == [f"cd {shlex.quote(str(tmp_path))} && {line}"]
