"""YOLOv5 7.0's NMS candidates of one image, in numpy float32, built lazily.

YOLOv5 keeps the rows whose objectness exceeds ``conf_thres``, multiplies the class scores by it, and takes
every (row, class) pair whose product exceeds ``conf_thres`` (``multi_label``, row-major ``nonzero`` order)
or each row's best class. Only the scores are needed to order the candidates; boxes are computed for the few
candidates NMS actually looks at, with the same float32 operations YOLOv5 uses on all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_WH = 7680  # YOLOv5's class offset: boxes of different classes are shifted apart so they never overlap


@dataclass(frozen=True)
class Candidates:
    """Candidates in YOLOv5's order. ``cells[k]`` is a flat index into the ``[len(rows), num_classes]``
    class block of the rows that passed the objectness test: candidate ``k`` is prediction row
    ``rows[cells[k] // num_classes]``, class ``cells[k] % num_classes``, confidence ``scores[k]``.
    ``prediction`` is the image's ``[N, 5 + nc]`` head output (boxes in its first four columns)."""

    scores: np.ndarray
    cells: np.ndarray
    rows: np.ndarray
    num_classes: int
    prediction: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def classes(self, index: np.ndarray) -> np.ndarray:
        return self.cells[index] % self.num_classes

    def xyxy(self, index: np.ndarray) -> np.ndarray:
        """``[k, 4]`` float32 corners of the candidates ``index``, as YOLOv5's ``xywh2xyxy``."""
        rows = np.take(self.prediction, self.rows[self.cells[index] // self.num_classes], axis=0)
        half_wh = rows[:, 2:4] / np.float32(2)
        return np.concatenate((rows[:, 0:2] - half_wh, rows[:, 0:2] + half_wh), axis=1)

    def offset_xyxy(self, index: np.ndarray, agnostic: bool) -> np.ndarray:
        """Corners shifted by ``class * MAX_WH`` (YOLOv5's class-aware trick, same float32 rounding).
        Class-agnostic NMS adds nothing."""
        boxes = self.xyxy(index)
        if not agnostic:
            boxes += (self.classes(index).astype(np.float32) * np.float32(MAX_WH))[:, None]
        return boxes

    def detections(self, index: np.ndarray) -> np.ndarray:
        """``[k, 6]`` float32 rows (x1, y1, x2, y2, conf, cls) of the candidates ``index``."""
        return np.concatenate(
            (self.xyxy(index), self.scores[index, None], self.classes(index)[:, None].astype(np.float32)),
            axis=1,
        )


def yolov5_candidates(
    image_pred: np.ndarray,
    conf_thres: float,
    multi_label: bool,
    num_classes: int,
    wanted: np.ndarray | None = None,
) -> Candidates:
    """``[N, 5 + nc]`` float32 head output of one image -> its candidates (``wanted``: allowed classes)."""
    image_pred = np.ascontiguousarray(image_pred)  # np.take copies a strided array whole on every call
    rows = np.flatnonzero(image_pred[:, 4] > conf_thres)
    passed_rows = np.take(image_pred, rows, axis=0)  # much faster than image_pred[rows, 5:]
    class_conf = passed_rows[:, 5 : 5 + num_classes] * passed_rows[:, 4:5]
    if multi_label:
        cells = np.flatnonzero(class_conf > conf_thres)  # row-major, as torch's nonzero
        scores = class_conf.reshape(-1)[cells]
    else:
        best = class_conf.argmax(1) if len(rows) else np.zeros(0, dtype=np.int64)
        best_conf = np.take_along_axis(class_conf, best[:, None], axis=1)[:, 0]
        passed = np.flatnonzero(best_conf > conf_thres)
        scores, cells = best_conf[passed], passed * num_classes + best[passed]
    if wanted is not None:
        allowed = np.isin(cells % num_classes, wanted)
        scores, cells = scores[allowed], cells[allowed]
    return Candidates(scores, cells, rows, num_classes, image_pred)
