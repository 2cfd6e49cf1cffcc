"""--in/--out parsing and the {in}/{in.NAME}/{out} placeholders with their variables."""

from __future__ import annotations

import pytest

from s3fsv.errors import UsageError
from s3fsv.runs.spec import (
    InputSpec,
    OutputSpec,
    check_inputs,
    environment,
    parse_input,
    parse_output,
    substitute,
)


def test_parse_input_forms() -> None:
    assert parse_input("cams") == InputSpec("cams", "cams", "main", "")
    assert parse_input("cams@v1:images/day1") == InputSpec("cams", "cams", "v1", "images/day1")
    assert parse_input("img=cams@main~2") == InputSpec("img", "cams", "main~2", "")
    assert parse_input("my-cams:x").name == "my_cams"
    assert str(parse_input("a=cams@v1:x")) == "cams@v1:x"


@pytest.mark.parametrize(
    "text",
    ["", "cams@", "cams@v1:../etc", "9x=cams", "a b=cams", "cams@v1:a//b", "ca/ms", "x=@v1"],
)
def test_bad_inputs_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="bad --in"):
        parse_input(text)


def test_parse_output() -> None:
    assert parse_output("det@main:runs/x") == OutputSpec("det", "main", "runs/x")
    assert parse_output("det") == OutputSpec("det", "main", "")
    for bad in ("det@main~1", "det@:x", "det@main:.."):
        with pytest.raises(UsageError, match="bad --out"):
            parse_output(bad)


def test_duplicate_names_refused() -> None:
    with pytest.raises(UsageError, match="two inputs are called 'cams'"):
        check_inputs([parse_input("cams@a"), parse_input("cams@b")])
    check_inputs([parse_input("a=cams@a"), parse_input("b=cams@b")])


def test_substitute() -> None:
    one = {"in": "/m/cams/commit/x/images"}
    assert substitute(["run", "{in}/a", "--o={out}", "{keep}", "{}"], one, "/o") == [
        "run",
        "/m/cams/commit/x/images/a",
        "--o=/o",
        "{keep}",
        "{}",
    ]
    two = {"img": "/i", "cfg": "/c"}
    assert substitute(["{in.img}:{in.CFG}"], two, "/o") == ["/i:/c"]
    with pytest.raises(UsageError, match=r"\{in\} names the only input.*\{in\.img\}"):
        substitute(["{in}"], two, "/o")
    with pytest.raises(UsageError, match="the run has none"):
        substitute(["{in}"], {}, "/o")
    with pytest.raises(UsageError, match=r"\{in\.nope\} names no input"):
        substitute(["{in.nope}"], two, "/o")


def test_environment() -> None:
    env = environment({"img": "/i"}, "/o", "r1")
    assert env == {"S3FSV_IN_IMG": "/i", "S3FSV_IN": "/i", "S3FSV_OUT": "/o", "S3FSV_RUN_ID": "r1"}
    assert "S3FSV_IN" not in environment({"a": "/a", "b": "/b"}, "/o", "r1")
