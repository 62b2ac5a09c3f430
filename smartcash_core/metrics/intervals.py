"""Bootstrap confidence intervals of a paired difference, and the verdict they give.

``percentile`` (the default): the ``(1 - c) / 2`` and ``(1 + c) / 2`` quantiles of the replicates
(``np.quantile``'s linear interpolation). ``basic``: that interval reflected around the point estimate
(``2 d - q_hi, 2 d - q_lo``). ``bc``: bias-corrected percentile (Efron's BCa with acceleration 0): the
quantile levels are shifted by ``z0 = Phi^-1(share of replicates below d)``. The default is the one whose
coverage the simulation in ``tests/bench/bench_bootstrap_coverage.py`` checked (see docs/API.md).

A verdict reads the interval: ``better`` when it lies above 0, ``worse`` below 0, otherwise ``no significant
difference`` (an interval of exactly [0, 0], e.g. a checkpoint against itself, includes 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

IntervalMethod = Literal["percentile", "basic", "bc"]
INTERVAL_METHODS: tuple[IntervalMethod, ...] = ("percentile", "basic", "bc")
BETTER, WORSE, NO_DIFFERENCE = "better", "worse", "no significant difference"
_NORMAL = NormalDist()


@dataclass(frozen=True)
class DeltaEstimate:
    """One compared number: both values on all images, their difference (candidate - baseline), the
    interval of the difference (``None`` when no resample defined it), the verdict, and how many resamples
    defined it (a class without ground truth in a resample has no AP there)."""

    baseline: float
    candidate: float
    delta: float
    low: float | None
    high: float | None
    verdict: str
    resamples: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "candidate": self.candidate,
            "delta": self.delta,
            "ci": None if self.low is None or self.high is None else [self.low, self.high],
            "verdict": self.verdict,
            "resamples": self.resamples,
        }


def verdict(low: float | None, high: float | None) -> str:
    if low is not None and low > 0:
        return BETTER
    if high is not None and high < 0:
        return WORSE
    return NO_DIFFERENCE


def interval(
    replicates: np.ndarray, point: float, confidence: float, method: IntervalMethod = "percentile"
) -> tuple[float | None, float | None]:
    """The ``confidence`` interval of a difference from its bootstrap ``replicates`` (NaN entries: resamples
    where it is undefined, left out) and its full-sample value ``point``; ``(None, None)`` without any."""
    values = np.asarray(replicates, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None, None
    alpha = (1.0 - confidence) / 2.0
    if method == "percentile":
        low, high = np.quantile(values, [alpha, 1.0 - alpha])
    elif method == "basic":
        q_low, q_high = np.quantile(values, [alpha, 1.0 - alpha])
        low, high = 2.0 * point - q_high, 2.0 * point - q_low
    elif method == "bc":
        low, high = np.quantile(values, _bias_corrected_levels(values, point, alpha))
    else:
        raise ValueError(f"method must be one of {INTERVAL_METHODS}, got {method!r}")
    return float(low), float(high)


def _bias_corrected_levels(values: np.ndarray, point: float, alpha: float) -> list[float]:
    """Quantile levels of the bias-corrected percentile interval; the plain levels when every replicate is
    on one side of the point (z0 would be infinite)."""
    below = (np.count_nonzero(values < point) + 0.5 * np.count_nonzero(values == point)) / values.size
    if not 0.0 < below < 1.0:
        return [alpha, 1.0 - alpha]
    z0 = _NORMAL.inv_cdf(below)
    return [_NORMAL.cdf(2 * z0 + _NORMAL.inv_cdf(level)) for level in (alpha, 1.0 - alpha)]


def estimate(
    baseline: float,
    candidate: float,
    replicates: np.ndarray,
    confidence: float,
    method: IntervalMethod = "percentile",
) -> DeltaEstimate:
    delta = candidate - baseline
    low, high = interval(replicates, delta, confidence, method)
    return DeltaEstimate(
        baseline=baseline,
        candidate=candidate,
        delta=delta,
        low=low,
        high=high,
        verdict=verdict(low, high),
        resamples=int(np.count_nonzero(np.isfinite(replicates))),
    )
