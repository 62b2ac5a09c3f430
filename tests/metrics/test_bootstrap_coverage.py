"""Coverage of the comparison's 95% interval, by simulation (the suite's size of
``tests/bench/bench_bootstrap_coverage.py``): over 200 simulated datasets, the share whose interval holds the
true difference of the headline numbers must lie in 92-98%."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from tests.metrics.bootstrap_simulation import true_deltas

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from bench_bootstrap_coverage import coverage

DATASETS = 200
IMAGES = 200
RESAMPLES = 300
TRUTH_IMAGES = 40_000  # the truth's own sampling error is ~6% of a 200-image estimate's


@pytest.mark.slow
def test_the_95_percent_interval_covers_the_true_difference() -> None:
    truth = true_deltas(np.random.default_rng(12345), TRUTH_IMAGES)
    result = coverage(truth, DATASETS, IMAGES, RESAMPLES, "yolo")
    for name in ("mapped.map50", "mapped.map50_95"):
        assert 0.92 <= result["percentile"][name] <= 0.98, (name, result)
    # the bootstrap's spread of a difference against its spread across datasets: a few percent narrower
    # for mAP (AP's tail rests on the lowest-scored true positives, which resampling cannot go beyond)
    assert all(0.85 < ratio < 1.1 for ratio in result["sd_ratio"].values()), result
