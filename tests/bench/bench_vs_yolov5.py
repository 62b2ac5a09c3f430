"""End to end against YOLOv5 7.0's own ``val.py`` (issue 14, item 7): whole-process wall, start-up included.

    .venv/bin/python tests/bench/bench_vs_yolov5.py --yolov5-python /work/scratch/tv/bin/python \\
        [--workdir /work/scratch/vs_yolov5] [--rounds 3] [--sets fixture a b] [--fast bf16]

YOLOv5 runs in a scratch venv outside the project (never a project dependency): torch + torchvision, the
``yolov5==7.0.13`` package installed with ``--no-deps``, and what its ``val.py`` imports
(``opencv-python-headless pandas pyyaml tqdm matplotlib seaborn psutil requests 'setuptools<81'``, and
``ultralytics --no-deps`` for the one ``check_requirements`` import). It runs through a small harness written
into the work dir: offline (the hub look-up for local weights and the font download are skipped), numpy 2's
``np.trapezoid`` standing in for the ``np.trapz`` it renamed, plots off (ours makes none by default either),
and its returned metrics printed as JSON with full precision. Nothing else of val.py changes.

Sets (generated once into the work dir, outside the repository: val.py writes label caches beside them):
* ``fixture``: the 40 images of ``tests/fixtures/yolov5/val`` at 320, batch 32 (metrics must agree exactly);
* ``a``: 300 synthetic banknote scenes (640x480, seed 14) at 320, batch 32;
* ``b``: 200 JPEGs 1280x960 of ``--domain shifted`` scenes (seed 15) at 640, batch 16: a trained model on
  unfamiliar images, thousands of candidates at conf 0.001 (val.py's NMS time limit may fire: counted).
All with the YOLOv5 fixture ``tests/fixtures/yolov5/yolov5n_banknotes.pt`` on CPU.

Each round runs val.py, ``smartcash validate`` with the exact defaults, and ``smartcash validate --precision
<fast>``, in an order that rotates every round, each a fresh process timed from spawn to exit. Printed per
set: wall (best and median), the ratio of ours to val.py's (best vs best, median vs median), per-image
stages (val.py's pre-process / inference / NMS; ours decode / preprocess / inference / NMS / metrics),
start-up (ours: process wall minus the pass's own ``wall_s``: interpreter, imports, checkpoint load, report;
val.py: wall minus its three timed stages), and the metrics of both with their largest difference.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smartcash_core.classes import default_class_table
from smartcash_core.training.synthetic import generate_dataset
from smartcash_core.validation.precision import cpu_bf16_flags

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "yolov5"
WEIGHTS = FIXTURES / "yolov5n_banknotes.pt"

HARNESS = '''"""YOLOv5 7.0 val.py, offline, no plots; prints its returned metrics as JSON."""
import json, sys
import numpy as np
if not hasattr(np, "trapz"):
    np.trapz = np.trapezoid  # numpy 2 renamed it; same function
import yolov5.models.common as common
import yolov5.utils.downloads as downloads
import yolov5.utils.general as general
common.attempt_download_from_hub = downloads.attempt_download_from_hub = lambda *args, **kwargs: None
general.check_font = lambda *args, **kwargs: None  # a font download, for plots only
from yolov5 import val
sys.argv = ["val.py", *sys.argv[1:]]
opt = val.parse_opt()
(mp, mr, map50, map5095, *_), maps, map50s, speed = val.run(**vars(opt), plots=False)
print("VALPY_RESULT " + json.dumps({"precision": float(mp), "recall": float(mr), "map50": float(map50),
      "map50_95": float(map5095), "maps": [float(v) for v in maps], "map50s": [float(v) for v in map50s],
      "speed_ms": [float(v) for v in speed]}))
'''


@dataclass(frozen=True)
class BenchSet:
    name: str
    data: Path  # our --data (a YOLO dataset dir)
    yaml: Path  # val.py's --data
    imgsz: int
    batch: int


@dataclass
class Runs:
    walls: list[float] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    nms_limit_hits: int = 0


def prepare_sets(workdir: Path, names: list[str]) -> list[BenchSet]:
    sets = []
    for name in names:
        root = workdir / name
        if name == "fixture":
            if not root.exists():
                shutil.copytree(FIXTURES / "val", root)
            sets.append(BenchSet(name, root, write_yolov5_yaml(root), 320, 32))
            continue
        shape = {"a": (300, 14, 640, 480, "standard"), "b": (200, 15, 1280, 960, "shifted")}[name]
        images, seed, width, height, domain = shape
        if not (root / "data.yaml").exists():
            generate_dataset(root, images=images, seed=seed, width=width, height=height, domain=domain)
        imgsz, batch = (320, 32) if name == "a" else (640, 16)
        sets.append(BenchSet(name, root, write_yolov5_yaml(root), imgsz, batch))
    return sets


def write_yolov5_yaml(root: Path) -> Path:
    """val.py resolves a relative ``path`` against its own package, so it gets an absolute one."""
    names = "\n".join(f"  {i}: {name}" for i, name in enumerate(default_class_table().fine_names))
    path = root / "yolov5_data.yaml"
    path.write_text(f"path: {root}\ntrain: images/val\nval: images/val\nnames:\n{names}\n", encoding="utf-8")
    return path


def run_valpy(python: str, bench: BenchSet, workdir: Path) -> tuple[float, dict[str, Any], int]:
    command = [
        python, str(workdir / "run_val.py"), "--weights", str(WEIGHTS), "--data", str(bench.yaml),
        "--img", str(bench.imgsz), "--batch-size", str(bench.batch), "--device", "cpu",
        "--project", str(workdir / "runs"), "--name", bench.name, "--exist-ok",
    ]
    env = {**os.environ, "YOLO_OFFLINE": "true", "YOLO_AUTOINSTALL": "false",
           "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}  # YOLOv5's own trusted fixture, in the scratch venv
    wall, output = timed_process(command, env)
    line = next((line for line in output.splitlines() if line.startswith("VALPY_RESULT ")), None)
    if line is None:
        raise RuntimeError(f"val.py failed:\n{output[-3000:]}")
    return wall, json.loads(line.split(" ", 1)[1]), output.count("NMS time limit")


def run_ours(bench: BenchSet, workdir: Path, precision: str) -> tuple[float, dict[str, Any]]:
    out = workdir / f"ours_{bench.name}_{precision}.json"
    command = [
        sys.executable, "-m", "service.cli", "validate", "--weights", str(WEIGHTS), "--data", str(bench.data),
        "--imgsz", str(bench.imgsz), "--batch", str(bench.batch), "--device", "cpu",
        "--precision", precision, "--json", str(out),
    ]
    wall, output = timed_process(command, dict(os.environ))
    if not out.exists():
        raise RuntimeError(f"smartcash validate failed:\n{output[-3000:]}")
    result = json.loads(out.read_text(encoding="utf-8"))
    out.unlink()
    return wall, result


def timed_process(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    return time.perf_counter() - started, done.stdout + done.stderr


def bench_set(bench: BenchSet, args: argparse.Namespace) -> None:
    kinds = ["val.py", "fp32", *([args.fast] if args.fast else [])]
    runs = {kind: Runs() for kind in kinds}
    for number in range(args.rounds):
        shift = number % len(kinds)
        for kind in kinds[shift:] + kinds[:shift]:
            if kind == "val.py":
                wall, output, hits = run_valpy(args.yolov5_python, bench, args.workdir)
                runs[kind].nms_limit_hits += hits
            else:
                wall, output = run_ours(bench, args.workdir, kind)
            runs[kind].walls.append(wall)
            runs[kind].outputs.append(output)
    report(bench, runs)


def report(bench: BenchSet, runs: dict[str, Runs]) -> None:
    valpy = runs["val.py"]
    images = runs["fp32"].outputs[0]["dataset"]["images"]
    print(f"\nset {bench.name}: {images} images, imgsz {bench.imgsz}, batch {bench.batch}, {bench.data}")
    base_best, base_median = min(valpy.walls), statistics.median(valpy.walls)
    for kind, run in runs.items():
        best, median = min(run.walls), statistics.median(run.walls)
        ratio = f"  ratio best {best / base_best:.3f} median {median / base_median:.3f}"
        ratio = "" if kind == "val.py" else ratio
        print(f"  {kind:7s} wall best {best:6.2f} s median {median:6.2f} s ({len(run.walls)} runs){ratio}")
    stage_runs = zip(*(output["speed_ms"] for output in valpy.outputs), strict=True)
    speed = [statistics.median(values) for values in stage_runs]
    outside = statistics.median(valpy.walls) - sum(speed) * images / 1000
    print(
        f"  val.py  ms/img pre-process {speed[0]:.1f}, inference {speed[1]:.1f}, NMS {speed[2]:.1f}; "
        f"outside its timed stages {outside:.2f} s; NMS time limit fired {valpy.nms_limit_hits} times"
    )
    for kind in runs:
        if kind != "val.py":
            report_ours(kind, runs[kind])
    if valpy.nms_limit_hits:
        print("  val.py's NMS time limit fired: detections cut short, metrics not comparable")
    compare_metrics(valpy.outputs[0], runs["fp32"].outputs[0], "fp32")
    for kind in runs:
        if kind not in ("val.py", "fp32"):
            compare_metrics(valpy.outputs[0], runs[kind].outputs[0], kind)


def report_ours(kind: str, run: Runs) -> None:
    stages = ("decode", "preprocess", "inference", "nms", "metrics", "loader_wait")
    speed = {s: statistics.median(o["speed_ms_per_image"][s] for o in run.outputs) for s in stages}
    startup = statistics.median(wall - o["wall_s"] for wall, o in zip(run.walls, run.outputs, strict=True))
    pass_s = statistics.median(o["wall_s"] for o in run.outputs)
    line = ", ".join(f"{stage} {value:.1f}" for stage, value in speed.items())
    print(f"  {kind:7s} ms/img {line}; pass {pass_s:.2f} s, start-up + exit {startup:.2f} s")


def compare_metrics(valpy: dict[str, Any], ours: dict[str, Any], kind: str) -> None:
    fine = ours["metrics"]["fine"]
    pairs = [(valpy[key], fine[key]) for key in ("precision", "recall", "map50", "map50_95")]
    pairs += [(valpy["maps"][row["id"]], row["ap50_95"]) for row in fine["per_class"]]
    pairs += [(valpy["map50s"][row["id"]], row["ap50"]) for row in fine["per_class"]]
    largest = max(abs(a - b) for a, b in pairs)
    exact = all(a == b for a, b in pairs)
    def numbers(source: dict[str, Any]) -> str:
        return " ".join(f"{key} {source[key]:.10f}" for key in ("precision", "recall", "map50", "map50_95"))

    print(f"  metrics {kind}: ours {numbers(fine)} | val.py {numbers(valpy)}")
    print(
        f"    max |diff| {largest:.2e}{' (identical)' if exact else ''} over P, R, mAP50, mAP50-95 and "
        f"per-class AP50 and AP50-95 of {len(fine['per_class'])} classes"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--yolov5-python", default="/work/scratch/tv/bin/python")
    parser.add_argument("--workdir", type=Path, default=Path("/work/scratch/vs_yolov5"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sets", nargs="+", default=["fixture", "a", "b"], choices=["fixture", "a", "b"])
    default_fast = "bf16" if cpu_bf16_flags() else None
    parser.add_argument("--fast", default=default_fast, help="the fast precision to time too (none: skip)")
    args = parser.parse_args()
    args.fast = None if args.fast in (None, "none") else args.fast
    args.workdir = args.workdir.resolve()
    if REPO in args.workdir.parents or args.workdir == REPO:
        parser.error("--workdir must be outside the repository (val.py writes caches and runs/ there)")
    args.workdir.mkdir(parents=True, exist_ok=True)
    (args.workdir / "run_val.py").write_text(HARNESS, encoding="utf-8")
    load = os.getloadavg()
    print(f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} CPUs")
    for bench in prepare_sets(args.workdir, args.sets):
        bench_set(bench, args)
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
