"""Startup cost: import time of ``smartcash_core`` and build + load time of yolov5s.

Run: ``.venv/bin/python tests/bench/bench_startup.py [--repeats 5]``. Each import is measured in a fresh
interpreter (``python -c "import ..."``) so nothing is cached in-process; build and load are measured
in this process after a warm-up, median of the repeats.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMPORT_TARGETS = {
    "interpreter only": "pass",
    "import torch": "import torch",
    "import smartcash_core": "import smartcash_core",
    "import smartcash_core.checkpoint + model": "import smartcash_core.checkpoint, smartcash_core.model",
}


def time_fresh_import(statement: str, repeats: int) -> float:
    """Median wall seconds of ``python -c statement`` in a new interpreter."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], check=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def time_build_and_load(repeats: int) -> dict[str, float]:
    import torch

    from smartcash_core.checkpoint import load_model
    from smartcash_core.checkpoint.native import save_checkpoint
    from smartcash_core.classes import default_class_table
    from smartcash_core.model import build_model

    build, load, first_forward = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "yolov5s.safetensors"
        save_checkpoint(path, build_model("yolov5s"), class_table=default_class_table(), imgsz=640)
        load_model(path, "cpu")  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            build_model("yolov5s")
            build.append(time.perf_counter() - start)
            start = time.perf_counter()
            loaded = load_model(path, "cpu")
            load.append(time.perf_counter() - start)
            start = time.perf_counter()
            with torch.no_grad():
                loaded.model(torch.zeros(1, 3, 640, 640))
            first_forward.append(time.perf_counter() - start)
    return {
        "build_model('yolov5s')": statistics.median(build),
        "load_model(yolov5s.safetensors) (build + weights)": statistics.median(load),
        "forward 1x3x640x640 after load": statistics.median(first_forward),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for label, statement in IMPORT_TARGETS.items():
        print(f"{label:55s} {time_fresh_import(statement, args.repeats) * 1000:8.0f} ms")
    for label, seconds in time_build_and_load(args.repeats).items():
        print(f"{label:55s} {seconds * 1000:8.0f} ms")


if __name__ == "__main__":
    main()
