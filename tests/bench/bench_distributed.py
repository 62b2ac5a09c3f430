"""Benchmark (not a test): single-process validation vs ``torchrun`` with 2 gloo ranks, and whether the
merged result equals the single-process one.

    .venv/bin/python tests/bench/bench_distributed.py [--runs 2]

Data: the YOLOv5 fixture (40 images 640x480, its trained yolov5n), imgsz 320, batch 8, CPU, one thread per
process in both runs (the thread count changes CPU convolution bits; see docs/DEPLOY.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "yolov5"
VOLATILE_KEYS = ("wall_s", "speed_ms_per_image", "cache", "distributed")


def validate(launcher: list[str], json_out: Path) -> dict[str, Any]:
    args = ["validate", "--weights", str(FIXTURE / "yolov5n_banknotes.pt"), "--data", str(FIXTURE / "val"),
            "--imgsz", "320", "--batch", "8", "--device", "cpu", "--workers", "1", "--json", str(json_out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([*launcher, *args], env=env, check=True, capture_output=True, timeout=600)
    return json.loads(json_out.read_text())


def stable(result: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if key not in VOLATILE_KEYS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    runs = parser.parse_args().runs
    torchrun = str(Path(sys.executable).parent / "torchrun")
    with tempfile.TemporaryDirectory() as scratch:
        for run in range(1, runs + 1):
            single = validate([sys.executable, "-m", "smartcash_core.cli"], Path(scratch, "single.json"))
            launcher = [torchrun, "--standalone", "--nproc-per-node", "2", "-m", "smartcash_core.cli"]
            merged = validate(launcher, Path(scratch, "merged.json"))
            print(f"run {run}: single {single['wall_s']:.2f} s | {describe(merged)} | "
                  f"equal to single-process: {stable(merged) == stable(single)}")


def describe(merged: dict[str, Any]) -> str:
    section = merged["distributed"]
    ranks = ", ".join(f"rank {r['rank']} {r['images']} img {r['wall_s']:.2f} s" for r in section["ranks"])
    return (f"2 ranks {merged['wall_s']:.2f} s ({ranks}) | wait {section['wait_s'] * 1000:.1f} ms "
            f"gather {section['gather_s'] * 1000:.2f} ms merge {section['merge_s'] * 1000:.2f} ms | "
            f"mAP50 {merged['metrics']['map50']:.6f}")

if __name__ == "__main__":
    main()
