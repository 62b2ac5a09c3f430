"""Coverage of the comparison's intervals, by simulation: how often does the 95% interval of a paired mAP
difference contain the true difference?

The generating process (``tests/metrics/bootstrap_simulation.py``): objects with a latent difficulty shared
by two detectors, the candidate slightly worse; the true difference is its value on ``--truth-images``
images. Each of ``--datasets`` fresh datasets of ``--images`` images gets one bootstrap (``--resamples``)
and the interval of every method; the script prints coverage per method and number, and the bootstrap's
standard deviation against the spread of the estimates across datasets (a ratio below 1: intervals too
narrow). Recall at IoU 0.5, a smooth statistic, is the control: its ratio should be 1.

    .venv/bin/python tests/bench/bench_bootstrap_coverage.py [--datasets 300] [--images 300]
        [--resamples 500] [--truth-images 300000] [--protocol yolo]

The suite runs a smaller version (``tests/metrics/test_bootstrap_coverage.py``, slow-marked).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from smartcash_core.metrics import bootstrap
from smartcash_core.metrics.intervals import INTERVAL_METHODS, interval
from smartcash_core.metrics.resample_curves import prepare_view
from tests.metrics.bootstrap_simulation import (
    BASELINE,
    CANDIDATE,
    HARD_MISSES,
    Detector,
    comparable,
    evaluator_of,
    simulate,
    true_deltas,
)

NUMBERS = ("mapped.map50", "mapped.map50_95", "fine.map50", "fine.map50_95")


def replicate_deltas(
    images: int,
    resamples: int,
    seed: int,
    protocol: str,
    detectors: tuple[Detector, ...] = (BASELINE, CANDIDATE),
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """One simulated dataset: each number's full-sample difference and its bootstrap replicates."""
    parts = simulate(np.random.default_rng(seed), images, detectors)
    baseline, candidate = (comparable(evaluator_of(part, protocol)) for part in parts)
    columns, count = bootstrap.pair_images(baseline, candidate)
    curves = {
        (job, view): prepare_view(item.protocol_object(), item.state, view, column, count)
        for job, item, column in (("baseline", baseline, columns[0]), ("candidate", candidate, columns[1]))
        for view in ("mapped", "fine")
    }
    full = bootstrap.resampled_ap_all(curves, np.ones((count, 1)), threads=1)
    replicates = bootstrap.resampled_ap_all(curves, bootstrap._draws(count, resamples, seed), threads=2)
    points, draws = {}, {}
    for name in NUMBERS:
        view, metric = name.split(".")

        def value(source: dict, job: str, view: str = view, metric: str = metric) -> np.ndarray:
            ap = source[(job, view)]
            return bootstrap._map(ap[0] if metric == "map50" else ap.mean(axis=0))

        points[name] = float((value(full, "candidate") - value(full, "baseline"))[0])
        draws[name] = value(replicates, "candidate") - value(replicates, "baseline")
    return points, draws


def coverage(
    truth: dict[str, float],
    datasets: int,
    images: int,
    resamples: int,
    protocol: str,
    detectors: tuple[Detector, ...] = (BASELINE, CANDIDATE),
    first_seed: int = 1000,
) -> dict[str, dict[str, float]]:
    """Share of datasets whose interval holds the truth, per method and number; plus ``sd_ratio`` (mean
    bootstrap SD / SD of the estimates across datasets) per number."""
    hits = {method: dict.fromkeys(NUMBERS, 0) for method in INTERVAL_METHODS}
    estimates: dict[str, list[float]] = {name: [] for name in NUMBERS}
    spreads: dict[str, list[float]] = {name: [] for name in NUMBERS}
    for index in range(datasets):
        points, draws = replicate_deltas(images, resamples, first_seed + index, protocol, detectors)
        for name in NUMBERS:
            estimates[name].append(points[name])
            spreads[name].append(float(np.std(draws[name])))
            for method in INTERVAL_METHODS:
                low, high = interval(draws[name], points[name], 0.95, method)
                hits[method][name] += int(low is not None and high is not None and low <= truth[name] <= high)
    result: dict[str, dict[str, float]] = {
        method: {name: count / datasets for name, count in found.items()} for method, found in hits.items()
    }
    result["sd_ratio"] = {name: float(np.mean(spreads[name]) / np.std(estimates[name])) for name in NUMBERS}
    result["bias_sd"] = {  # mean estimate - truth, in units of the estimates' SD
        name: float((np.mean(estimates[name]) - truth[name]) / np.std(estimates[name])) for name in NUMBERS
    }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", type=int, default=300)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--resamples", type=int, default=500)
    parser.add_argument("--truth-images", type=int, default=300_000)
    parser.add_argument("--protocol", choices=("yolo", "coco"), default="yolo")
    parser.add_argument(
        "--hard-misses",
        action="store_true",
        help="objects beyond recall get no box at all (a harsher process)",
    )
    args = parser.parse_args()
    detectors = HARD_MISSES if args.hard_misses else (BASELINE, CANDIDATE)
    started = time.perf_counter()
    truth = true_deltas(np.random.default_rng(12345), args.truth_images, args.protocol, detectors)
    print(
        f"truth on {args.truth_images} images ({time.perf_counter() - started:.0f} s): "
        + ", ".join(f"{name} {value:+.5f}" for name, value in truth.items())
    )
    started = time.perf_counter()
    result = coverage(truth, args.datasets, args.images, args.resamples, args.protocol, detectors)
    print(
        f"{args.datasets} datasets of {args.images} images, {args.resamples} resamples, {args.protocol} "
        f"protocol ({time.perf_counter() - started:.0f} s); coverage of the 95% interval:"
    )
    for row, values in result.items():
        print(f"  {row:10s} " + "  ".join(f"{name} {value:.3f}" for name, value in values.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
