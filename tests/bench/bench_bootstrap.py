"""Benchmark: the paired bootstrap of ``compare_states`` (1000 resamples) against the naive way (build each
resampled state and call ``compute()``), both protocols.

Workload (fixed seed, ``bench_metrics.make_workload`` with 17 classes and the default class table): 1-12
ground-truth boxes and about 120 predictions per image (jittered copies of the ground truth and random boxes,
as at conf 0.001). The candidate is the baseline with 10% of its scores halved. The naive way is timed on
``--naive`` resamples and scaled to ``--resamples`` (it gives the same numbers, up to score-tie order); the
ratio is naive / fast in this run. Also printed: the saved state's size (what each job stores).

    .venv/bin/python tests/bench/bench_bootstrap.py [--images 500 5000] [--resamples 1000] [--threads 2]
        [--protocol yolo coco] [--naive 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import bench_metrics

from smartcash_core.classes import default_class_table
from smartcash_core.metrics import DetectionEvaluator
from smartcash_core.metrics.bootstrap import ComparableState, compare_states
from smartcash_core.validation.comparison_state import state_bytes
from tests.metrics.resample_reference import literal_resample


def evaluators(images: int, protocol: str) -> tuple[DetectionEvaluator, DetectionEvaluator]:
    bench_metrics.NUM_CLASSES = 17
    work = bench_metrics.make_workload(images, seed=0)
    rng = np.random.default_rng(1)
    made = []
    for halve in (0.0, 0.1):
        scores = [
            s * np.where(rng.random(s.size) < halve, 0.5, 1.0).astype(np.float32) for s in work["pred_scores"]
        ]
        evaluator = DetectionEvaluator(17, protocol, default_class_table())
        evaluator.update_batch(
            work["pred_boxes"], scores, work["pred_classes"], work["gt_boxes"], work["gt_classes"]
        )
        made.append(evaluator)
    return made[0], made[1]


def comparable(evaluator: DetectionEvaluator) -> ComparableState:
    state = evaluator.state_arrays()
    keys = [f"images/val/{i:06d}.jpg" for i in range(np.asarray(state["image_ids"]).size)]
    assert evaluator.class_table is not None
    return ComparableState(state, keys, evaluator.protocol, evaluator.class_table)


def naive_seconds(pair: tuple[DetectionEvaluator, DetectionEvaluator], resamples: int) -> float:
    """Seconds per resample the naive way: build both resampled states, compute both."""
    count = pair[0].num_images
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for _ in range(resamples):
        drawn = rng.integers(0, count, count)
        for evaluator in pair:
            literal_resample(evaluator, drawn).compute()
    return (time.perf_counter() - started) / resamples


def run(images: int, protocol: str, resamples: int, threads: int, naive: int) -> None:
    pair = evaluators(images, protocol)
    baseline, candidate = comparable(pair[0]), comparable(pair[1])
    predictions = int(np.asarray(baseline.state["pred_score"]).size)
    started, cpu = time.perf_counter(), time.process_time()
    result = compare_states(baseline, candidate, resamples=resamples, seed=0, threads=threads)
    fast = time.perf_counter() - started
    cpu = time.process_time() - cpu
    per_naive = naive_seconds(pair, naive)
    size = len(state_bytes(baseline))
    headline = result.views["mapped"].map50_95
    print(
        f"{protocol:4s} {images:5d} images ({predictions / images:.0f} predictions/image): "
        f"{resamples} resamples in {fast:.2f} s wall ({cpu:.2f} s CPU, {threads} threads); naive "
        f"{per_naive * resamples:.0f} s (x{per_naive * resamples / fast:.0f}); state "
        f"{size / 2**20:.2f} MiB ({size / predictions:.1f} B/prediction); mapped mAP50-95 delta "
        f"{headline.delta:+.4f} [{headline.low:+.4f}, {headline.high:+.4f}] {headline.verdict}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, nargs="+", default=[500, 5000])
    parser.add_argument("--protocol", nargs="+", choices=("yolo", "coco"), default=["yolo", "coco"])
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--naive", type=int, default=3, help="resamples timed the naive way")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    for images in args.images:
        for protocol in args.protocol:
            run(images, protocol, args.resamples, args.threads, args.naive)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
