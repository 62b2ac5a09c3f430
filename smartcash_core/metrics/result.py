"""``MetricsResult``: the metrics of one view (fine, or mapped through a class table), numpy and JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np


class ViewMetrics(TypedDict):
    """What a protocol computes for one view; ``MetricsResult`` adds the view's counts and names."""

    classes: np.ndarray
    ap: np.ndarray
    precision: np.ndarray | None
    recall: np.ndarray | None
    f1: np.ndarray | None
    map50: float
    map50_95: float
    coco_stats: np.ndarray | None


@dataclass(frozen=True)
class MetricsResult:
    """Metrics of one view. Arrays are numpy; ``to_dict()`` gives plain JSON types.

    classes [C]: class ids that have ground truth; ap [C, 10]: AP at IoU 0.50:0.05:0.95;
    precision / recall / f1 [C]: at the max mean-F1 confidence (``yolo`` only, None for ``coco``);
    coco_stats [12]: ``COCOeval.stats`` (``coco`` only); confusion [K + 1, K + 1]: ``[predicted, true]``
    with background last. ``mapped`` holds the mapped view when the evaluator has a class table.
    """

    protocol: str
    view: str
    class_names: tuple[str, ...]
    classes: np.ndarray
    ap: np.ndarray
    precision: np.ndarray | None
    recall: np.ndarray | None
    f1: np.ndarray | None
    map50: float
    map50_95: float
    coco_stats: np.ndarray | None
    confusion: np.ndarray
    num_images: int
    num_predictions: int
    num_ground_truth: int
    mapped: MetricsResult | None = field(default=None)

    @property
    def ap50(self) -> np.ndarray:
        """AP at IoU 0.5 per class with ground truth: [C]."""
        return self.ap[:, 0]

    @property
    def ap50_95(self) -> np.ndarray:
        """AP averaged over the 10 IoU thresholds per class with ground truth: [C]."""
        return self.ap.mean(axis=1) if self.ap.size else np.zeros(0)

    @property
    def headline(self) -> MetricsResult:
        """The view the service reports first: mapped when there is one, else fine."""
        return self.mapped if self.mapped is not None else self

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable copy (floats, ints, lists; ``mapped`` nested)."""

        def floats(values: np.ndarray | None) -> list[Any] | None:
            return None if values is None else np.asarray(values, dtype=np.float64).tolist()

        return {
            "protocol": self.protocol,
            "view": self.view,
            "class_names": list(self.class_names),
            "classes": [int(c) for c in self.classes],
            "names": [self.class_names[int(c)] for c in self.classes],
            "ap": floats(self.ap),
            "ap50": floats(self.ap50),
            "ap50_95": floats(self.ap50_95),
            "precision": floats(self.precision),
            "recall": floats(self.recall),
            "f1": floats(self.f1),
            "map50": float(self.map50),
            "map50_95": float(self.map50_95),
            "coco_stats": floats(self.coco_stats),
            "confusion": self.confusion.astype(int).tolist(),
            "num_images": self.num_images,
            "num_predictions": self.num_predictions,
            "num_ground_truth": self.num_ground_truth,
            "mapped": None if self.mapped is None else self.mapped.to_dict(),
        }


def with_mapped(fine: MetricsResult, mapped: MetricsResult) -> MetricsResult:
    values = {name: getattr(fine, name) for name in fine.__dataclass_fields__}
    values["mapped"] = mapped
    return MetricsResult(**values)
