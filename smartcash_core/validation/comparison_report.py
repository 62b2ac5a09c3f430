"""The text table of a comparison (``smartcash compare``), from its JSON form (``Comparison.to_dict()`` or the
body of ``POST /v1/comparisons``): one row per number, with both values, the difference, its interval and
the verdict."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

HEADER = ("View", "Metric", "Baseline", "Candidate", "Delta", "CI", "Verdict")
_METRICS = (("map50", "mAP50"), ("map50_95", "mAP50-95"))


def format_comparison(result: Mapping[str, Any], per_class: bool = False) -> str:
    """The table (headline numbers of both views, then per class when asked) and a line on the method."""
    rows: list[tuple[str, ...]] = []
    for view in ("mapped", "fine"):
        for key, label in _METRICS:
            rows.append(_row(view, label, result[view][key]))
    if per_class:
        for view in ("mapped", "fine"):
            for item in result[view]["per_class"]:
                for key, label in (("ap50", "AP50"), ("ap50_95", "AP50-95")):
                    rows.append(_row(view, f"{item['name']} {label}", item[key]))
    widths = [max(len(row[column]) for row in (HEADER, *rows)) for column in range(len(HEADER))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (HEADER, *rows)
    ]
    lines.append(
        f"{result['method']}: {result['resamples']} resamples of {result['images']} images, seed "
        f"{result['seed']}, {result['confidence']:.0%} interval of candidate - baseline "
        f"({result['protocol']} protocol)"
    )
    return "\n".join(lines) + "\n"


def _row(view: str, label: str, estimate: Mapping[str, Any]) -> tuple[str, ...]:
    interval = estimate["ci"]
    ci = "n/a" if interval is None else f"[{interval[0]:+.4f}, {interval[1]:+.4f}]"
    return (
        view,
        label,
        f"{estimate['baseline']:.4f}",
        f"{estimate['candidate']:.4f}",
        f"{estimate['delta']:+.4f}",
        ci,
        str(estimate["verdict"]),
    )
