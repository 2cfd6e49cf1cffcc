"""Specs refuse what they cannot run, with one line naming the field; datums and the
attribution of outputs follow the documented rules."""

from __future__ import annotations

from pathlib import Path

import pytest

import s3fsv
from s3fsv.errors import UsageError
from s3fsv.pipelines.datums import AttributionError, Attributor, find_datums
from s3fsv.pipelines.spec import load_spec_file, parse_spec
from tests.pipelines.support import cli

GOOD = {
    "name": "detect",
    "input": "cams@main:images/*",
    "output": "detections@main",
    "command": ["python", "examples/detect.py", "{in}/images", "{out}"],
    "batch": 64,
}


def test_the_documented_spelling_parses(tmp_path: Path) -> None:
    path = tmp_path / "detect.toml"
    path.write_text(
        'name = "detect"\ninput = "cams@main:images/*"\noutput = "detections@main"\n'
        'command = ["python", "examples/detect.py", "{in}/images", "{out}"]\nbatch = 64\n'
    )
    spec = load_spec_file(path)
    assert (spec.input_repo, spec.input_branch, spec.glob) == ("cams", "main", "images/*")
    assert (spec.output_repo, spec.output_branch, spec.output_path) == ("detections", "main", "")
    assert spec.batch == 64 and spec.executor == "local"
    assert spec.version == parse_spec(GOOD).version  # same content, same version
    assert parse_spec({**GOOD, "batch": 8}).version != spec.version
    assert parse_spec({**GOOD, "input": "cams@main:/"}).glob == ""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "red"}, "unknown field 'colour'"),
        ({"input": "cams:images/*"}, "must name a branch"),
        ({"input": "cams@main:images/**"}, "one pattern per path component"),
        ({"input": "cams@main:../x"}, "one pattern per path component"),
        ({"output": "cams@main"}, "cannot be the input branch"),
        ({"command": "python detect.py"}, "non-empty list of strings"),
        ({"command": ["true"]}, "must name its input"),
        ({"batch": 0}, "'batch' must be a whole number of at least 1"),
        ({"executor": "dask"}, "needs 'address'"),
        ({"name": "../x"}, "invalid pipeline name"),
    ],
)
def test_bad_specs_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("*", r"\*").replace("(", r"\(")):
        parse_spec({**GOOD, **change})


def test_cli_errors_are_one_line(pipeline_env: dict[str, str], tmp_path: Path) -> None:
    env = pipeline_env
    missing = cli(env, "pipeline", "create", "-f", str(tmp_path / "none.toml"), check=False)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    no_branch = cli(
        env,
        "pipeline",
        "create",
        "--name",
        "x",
        "--input",
        "cams@dev:*",
        "--output",
        "out@main",
        "--",
        "cp",
        "-r",
        "{in}",
        "{out}",
        check=False,
    )
    assert no_branch.returncode == 2 and "has no branch 'dev'" in no_branch.stderr
    unknown = cli(env, "pipeline", "run", "nope", check=False)
    assert unknown.returncode == 3 and "no pipeline named 'nope'" in unknown.stderr
    for result in (missing, no_branch, unknown):
        assert "Traceback" not in result.stderr


def test_attribution_rule() -> None:
    owner = Attributor(["images/a.png", "images/a.png.bak", "houses/h1", "x/1.jpg", "y/1.jpg"])
    assert owner.datum_of("a.png.json") == "images/a.png"
    assert owner.datum_of("images/a.png.json") == "images/a.png"
    assert owner.datum_of("a.png.bak.json") == "images/a.png.bak"  # the longest tail wins
    assert owner.datum_of("h1/result.json") == "houses/h1"
    assert owner.datum_of("summary.json") is None  # a batch artifact
    assert owner.datum_of("x/1.jpg.json") == "x/1.jpg"
    with pytest.raises(AttributionError, match="x/1.jpg or y/1.jpg"):
        owner.datum_of("1.jpg.json")
    assert Attributor([""]).datum_of("anything/at/all") == ""


def test_datums_of_a_glob(store: s3fsv.Store) -> None:
    cams = store.repo("cams")
    with cams.transaction("main", message="houses") as tx:
        tx.write("houses/h1/a.jpg", b"1")
        tx.write("houses/h1/b.jpg", b"2")
        tx.write("houses/h2/a.jpg", b"3")
    head = cams.resolve("main")
    per_house = find_datums(cams, head, "houses/*")
    assert [(d.path, d.kind) for d in per_house] == [("houses/h1", "dir"), ("houses/h2", "dir")]
    per_file = find_datums(cams, head, "houses/*/*.jpg")
    assert [d.path for d in per_file] == ["houses/h1/a.jpg", "houses/h1/b.jpg", "houses/h2/a.jpg"]
    assert per_file[0].content == cams.stat(head, "houses/h1/a.jpg").sha256
    whole = find_datums(cams, head, "")
    assert [(d.path, d.content) for d in whole] == [("", cams.commit(head).tree)]
    with cams.transaction("main", message="touch h2") as tx:
        tx.write("houses/h2/a.jpg", b"changed")
    after = {d.path: d.content for d in find_datums(cams, "main", "houses/*")}
    before = {d.path: d.content for d in per_house}
    assert after["houses/h1"] == before["houses/h1"] and after["houses/h2"] != before["houses/h2"]
