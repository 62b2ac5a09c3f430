"""Benchmark of image decoding (issue 14, item 2): OpenCV's decoder and resize vs the PIL + numpy reader.

    .venv/bin/python tests/bench/bench_decode.py [--images 200] [--photos 8] [--repeats 3]
        [--data /tmp/smartcash-decode-bench]

The baseline is a frozen copy of the reader before OpenCV (``decode_baseline.py`` beside this file: PIL
decode and draft mode, ``ImageOps.exif_transpose``, a numpy port of cv2's INTER_AREA). Both decode the same
encoded bytes (read into memory first: no disk in the timing), interleaved round by round; each figure is
CPU time per image in one thread (``time.process_time``: other load on a shared machine hurts less) and
wall time per image with two threads decoding at once (the pass's loader), best and median of ``--repeats``
rounds, and the ratios new / old of the best. Workloads (made once under ``--data``):

- ``hd``: ``--images`` synthetic 1280x960 JPEGs (``domain="shifted"``: busy backgrounds) at imgsz 640, the
  issue's set: a 2x shrink;
- ``photos``: ``--photos`` 4032x3024 JPEGs (a 12 MP phone photo) at imgsz 640. The old exact path decoded
  these DCT-scaled (its draft policy from 4x, not bit-exact); the new exact path decodes them in full.

Paths: ``exact`` (the default: YOLOv5's pixels) and ``fast`` (``fast_decode``: JPEGs from 2x decoded
DCT-scaled). Also counts, per path, the pixels that differ from YOLOv5 7.0's ``load_image``
(``cv2.imread`` + ``cv2.resize``). Not a test: record what it prints in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import platform
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np

from smartcash_core.data.images import EXACT_DRAFT, FAST_DRAFT, decode_image
from smartcash_core.training.synthetic import generate_dataset

IMGSZ = 640
Decoder = Callable[[bytes], np.ndarray]


def load_baseline() -> ModuleType:
    """The frozen reader before OpenCV, ``decode_baseline.py`` beside this file."""
    path = Path(__file__).resolve().parent / "decode_baseline.py"
    spec = importlib.util.spec_from_file_location("decode_baseline", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def workload(root: Path, name: str, images: int, width: int, height: int) -> list[bytes]:
    """The encoded JPEGs of one workload, generated under ``root / name`` the first time."""
    folder = root / f"{name}_{width}x{height}_{images}"
    if not (folder / "data.yaml").exists():
        generate_dataset(folder, images=images, seed=7, width=width, height=height, domain="shifted")
    return [path.read_bytes() for path in sorted((folder / "images" / "val").glob("*.jpg"))]


def yolov5_load_image(data: bytes) -> np.ndarray:
    """YOLOv5 7.0 ``load_image`` (val): ``cv2.imread`` (here ``imdecode`` of the same bytes), long side to
    640 with ``math.ceil``, INTER_AREA when shrinking; as RGB."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    h0, w0 = image.shape[:2]
    ratio = IMGSZ / max(h0, w0)
    if ratio != 1:
        interpolation = cv2.INTER_LINEAR if ratio > 1 else cv2.INTER_AREA
        image = cv2.resize(image, (math.ceil(w0 * ratio), math.ceil(h0 * ratio)), interpolation=interpolation)
    return image[:, :, ::-1]


def cpu_ms_per_image(decoder: Decoder, encoded: list[bytes]) -> float:
    started = time.process_time()
    for data in encoded:
        decoder(data)
    return (time.process_time() - started) * 1000 / len(encoded)


def threads_wall_ms_per_image(decoder: Decoder, encoded: list[bytes], threads: int = 2) -> float:
    """Wall time per image with ``threads`` decoding at once, as the pass's loader does (both decoders
    release the GIL in their C code; numpy's resize only in its loops)."""
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(decoder, encoded):
            pass
    return (time.perf_counter() - started) * 1000 / len(encoded)


def differing_pixels(decoder: Decoder, encoded: list[bytes]) -> tuple[int, int]:
    """(values that differ from YOLOv5's ``load_image``, images with any difference)."""
    values = images = 0
    for data in encoded:
        ours, theirs = decoder(data), yolov5_load_image(data)
        different = int((ours != theirs).sum()) if ours.shape == theirs.shape else ours.size
        values += different
        images += different > 0
    return values, images


def measure(name: str, encoded: list[bytes], decoders: dict[str, Decoder], repeats: int) -> None:
    cpu: dict[str, list[float]] = {key: [] for key in decoders}
    wall: dict[str, list[float]] = {key: [] for key in decoders}
    for _ in range(repeats):  # interleaved: every decoder sees the same machine load
        for key, decoder in decoders.items():
            cpu[key].append(cpu_ms_per_image(decoder, encoded))
            wall[key].append(threads_wall_ms_per_image(decoder, encoded))
    print(
        f"{name}: {len(encoded)} images, imgsz {IMGSZ}; best / median of {repeats}: CPU ms/img in one "
        "thread, wall ms/img with 2 threads"
    )
    for key in decoders:
        values, images = differing_pixels(decoders[key], encoded)
        print(
            f"  {key:10s} CPU {min(cpu[key]):7.2f} / {float(np.median(cpu[key])):7.2f}"
            f"   2-thread wall {min(wall[key]):7.2f} / {float(np.median(wall[key])):7.2f}"
            f"   differs from YOLOv5 load_image: {values} values in {images} images"
        )
    for path in ("exact", "fast"):
        ratio = min(cpu[f"new {path}"]) / min(cpu[f"old {path}"])
        wall_ratio = min(wall[f"new {path}"]) / min(wall[f"old {path}"])
        print(f"  {path}: new / old = {ratio:.3f} (CPU), {wall_ratio:.3f} (2-thread wall)")


def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        lscpu = ""
    model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if "Model name" in line), "")
    return f"{model or platform.processor()}, {os.cpu_count()} CPUs; OpenCV {cv2.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="1280x960 JPEGs")
    parser.add_argument("--photos", type=int, default=8, help="4032x3024 JPEGs (0: skip)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, default=Path("/tmp/smartcash-decode-bench"))
    args = parser.parse_args()
    baseline = load_baseline()
    decoders: dict[str, Decoder] = {
        "old exact": lambda data: baseline.old_decode_image(data, IMGSZ, baseline.OLD_EXACT_DRAFT),
        "new exact": lambda data: decode_image(data, IMGSZ, EXACT_DRAFT),
        "old fast": lambda data: baseline.old_decode_image(data, IMGSZ, baseline.OLD_FAST_DRAFT),
        "new fast": lambda data: decode_image(data, IMGSZ, FAST_DRAFT),
    }
    print(machine())
    measure("hd 1280x960", workload(args.data, "hd", args.images, 1280, 960), decoders, args.repeats)
    if args.photos:
        photos = workload(args.data, "photos", args.photos, 4032, 3024)
        measure("photos 4032x3024", photos, decoders, args.repeats)


if __name__ == "__main__":
    main()
