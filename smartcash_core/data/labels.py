"""YOLO label files: ``cls cx cy w h`` lines, normalized, parsed and checked into ``[n, 5]`` float32 rows;
each skipped line becomes a :class:`ReportEntry` ``(file, line, reason)``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

COORDINATE_TOLERANCE = 1e-3
LABEL_COLUMNS = 5


@dataclass(frozen=True)
class ReportEntry:
    """One skipped thing: ``file`` (relative to the dataset root when possible), 1-based ``line`` or None."""

    file: str
    line: int | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "reason": self.reason}


def empty_labels() -> np.ndarray:
    """A ``[0, 5]`` float32 label array (a background image)."""
    return np.zeros((0, LABEL_COLUMNS), dtype=np.float32)


def parse_label_text(text: str, file: str, num_classes: int) -> tuple[np.ndarray, list[ReportEntry]]:
    """Parse YOLO label lines ``cls cx cy w h``; return ``[n, 5]`` float32 rows and the skipped lines.

    Box corners may stray outside [0, 1] by up to ``COORDINATE_TOLERANCE`` and are then clipped; further
    out, the line is skipped. Blank lines are ignored. Exact duplicate rows are dropped (reported), and
    then, like YOLOv5's ``np.unique``, the remaining rows come back sorted.
    """
    rows: list[list[float]] = []
    report: list[ReportEntry] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        row, reason = _parse_label_line(line, num_classes)
        if row is None:
            report.append(ReportEntry(file, number, reason))
        else:
            rows.append(row)
    if not rows:
        return empty_labels(), report
    labels = np.asarray(rows, dtype=np.float32)
    unique = np.unique(labels, axis=0)
    if len(unique) < len(labels):
        dropped = len(labels) - len(unique)
        report.append(ReportEntry(file, None, f"{dropped} duplicate label row(s) removed"))
        labels = unique  # YOLOv5 keeps ``lb[np.unique(..., return_index=True)[1]]``, i.e. sorted rows
    return labels, report


def _parse_label_line(line: str, num_classes: int) -> tuple[list[float] | None, str]:
    """One label line -> ``[cls, cx, cy, w, h]`` (clipped) or ``(None, reason)``."""
    fields = line.split()
    if len(fields) != LABEL_COLUMNS:
        return None, f"expected 5 columns 'cls cx cy w h', got {len(fields)}"
    try:
        values = [float(value) for value in fields]
    except ValueError:
        return None, f"non-numeric value in {line.strip()!r}"
    if not all(math.isfinite(value) for value in values):
        return None, f"NaN or infinite value in {line.strip()!r}"
    cls = values[0]
    if cls != int(cls):
        return None, f"class id {fields[0]} is not an integer"
    if not 0 <= cls < num_classes:
        return None, f"class id {int(cls)} is outside the class table (0..{num_classes - 1})"
    box, reason = _clip_box(*values[1:])
    if box is None:
        return None, reason
    return [cls, *box], ""


def _clip_box(cx: float, cy: float, w: float, h: float) -> tuple[list[float] | None, str]:
    if w <= 0 or h <= 0:
        return None, f"zero or negative box size (w={w:g}, h={h:g})"
    corners = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    if min(corners) < -COORDINATE_TOLERANCE or max(corners) > 1 + COORDINATE_TOLERANCE:
        return None, (
            f"box (cx={cx:g}, cy={cy:g}, w={w:g}, h={h:g}) lies outside the normalized image [0, 1] "
            "(labels must be normalized by image width/height)"
        )
    x0, y0, x1, y1 = (min(max(value, 0.0), 1.0) for value in corners)
    if x1 <= x0 or y1 <= y0:
        return None, "box has zero size after clipping to the image"
    return [(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], ""
