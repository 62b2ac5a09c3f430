"""Peak memory of real validation passes against ``estimate_pass_memory``: the data behind its factor.

Run: ``.venv/bin/python tests/bench/bench_pass_memory.py [--quick]``. Each configuration (model, imgsz,
batch size) runs in a fresh process: a checkpoint (the trained YOLOv5n fixture, or a randomly initialised
yolov5s/m: random heads score every anchor near 0.5, NMS's worst case), a dataset of ``batch`` square
images of ``imgsz`` (the fixture photo resized, so the whole set is one batch), a warm-up pass on a small
image, then the pass itself. The peak is ``VmHWM`` (reset through ``/proc/self/clear_refs`` before the
pass) minus ``VmRSS`` before it: what the pass added at its worst. Prints measured, estimated and their
ratio: where the pass added at least 100 MB, the estimate must stay >= 1x and <= ``MAX_OVERESTIMATE`` of
the measurement (smaller passes are dominated by fixed costs the estimate rounds up). Linux only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

# (model, imgsz, batch size, images): images > batch size runs several batches (the loader prefetches)
FULL = [
    ("trained-n", 320, 1, 1), ("trained-n", 320, 16, 16), ("trained-n", 640, 1, 1),
    ("trained-n", 640, 8, 8), ("trained-n", 640, 8, 32), ("trained-n", 1280, 4, 4),
    ("trained-n", 1280, 4, 16), ("trained-n", 2048, 2, 2), ("trained-n", 4096, 1, 1),
    ("yolov5s", 640, 1, 1), ("yolov5s", 640, 8, 8), ("yolov5s", 1280, 2, 2), ("yolov5m", 640, 4, 4),
]
QUICK = [("trained-n", 320, 8, 8), ("trained-n", 1280, 2, 6), ("yolov5s", 640, 4, 4)]
BAND_FROM_BYTES = 100 * 10**6  # below, fixed costs (NMS, the fused copy) dominate: no factor is promised

CHILD = r"""
import json, sys
from pathlib import Path
import numpy as np
from PIL import Image
from smartcash_core.checkpoint import load_model
from smartcash_core.validation.memory import estimate_pass_memory
from smartcash_core.validation.params import ValidationParams
from smartcash_core.validation.runner import run_validation

def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)

weights, imgsz, batch, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
folder, photo = Path(sys.argv[5]), sys.argv[6]
images = folder / "images" / "val"
images.mkdir(parents=True)
picture = Image.open(photo).convert("RGB").resize((imgsz, imgsz))
for number in range(count):
    picture.save(images / f"im{number:03d}.png")
small = folder / "small" / "images" / "val"
small.mkdir(parents=True)
picture.resize((64, 64)).save(small / "warm.png")
model = load_model(weights, "cpu")
params = ValidationParams(imgsz=imgsz, batch_size=batch, device="cpu", rect=False)
run_validation(model, folder / "small", ValidationParams(imgsz=64, device="cpu"))
before = status("VmRSS")
Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
result = run_validation(model, folder, params)
peak = status("VmHWM") - before
estimate = estimate_pass_memory(model, params)
print(json.dumps({"measured": peak, "estimated": estimate.total_bytes, "images": result.dataset["images"]}))
"""


def _weights(kind: str, folder: Path) -> Path:
    if kind == "trained-n":
        return ROOT / "tests" / "fixtures" / "yolov5" / "yolov5n_banknotes.pt"
    import torch

    from smartcash_core.checkpoint.native import save_checkpoint
    from smartcash_core.classes import default_class_table
    from smartcash_core.model import build_model

    path = folder / f"{kind}.safetensors"
    if not path.exists():
        torch.manual_seed(0)
        save_checkpoint(path, build_model(kind), class_table=default_class_table(), imgsz=640)
    return path


def measure(kind: str, imgsz: int, batch: int, images: int, folder: Path) -> dict[str, float]:
    photo = ROOT / "tests" / "fixtures" / "data" / "n5_00000.jpg"
    work = Path(tempfile.mkdtemp(dir=folder))
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(_weights(kind, folder)),
         *map(str, (imgsz, batch, images, work, photo))],
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three small configurations only")
    args = parser.parse_args()
    from smartcash_core.validation.memory import MAX_OVERESTIMATE

    ratios = []
    print(f"{'model':>10} {'imgsz':>6} {'batch':>6} {'images':>6} {'measured MB':>12} {'estimated MB':>13} "
          f"{'est/meas':>9}")
    with tempfile.TemporaryDirectory() as folder:
        for kind, imgsz, batch, images in QUICK if args.quick else FULL:
            found = measure(kind, imgsz, batch, images, Path(folder))
            ratio = found["estimated"] / max(found["measured"], 1)
            if found["measured"] >= BAND_FROM_BYTES:
                ratios.append(ratio)
            print(f"{kind:>10} {imgsz:>6} {batch:>6} {images:>6} {found['measured'] / 1e6:>12.0f} "
                  f"{found['estimated'] / 1e6:>13.0f} {ratio:>9.2f}", flush=True)
    low, high = min(ratios, default=1.0), max(ratios, default=1.0)
    band = BAND_FROM_BYTES // 10**6
    print(f"estimate / measured where the pass added >= {band} MB: {low:.2f} .. {high:.2f} "
          f"(must stay within 1 .. {MAX_OVERESTIMATE})")
    return 0 if low >= 1.0 and high <= MAX_OVERESTIMATE else 1


if __name__ == "__main__":
    raise SystemExit(main())
