"""The literal resample, the oracle of the bootstrap tests: a new evaluator state holding every drawn image's
predictions and ground truth (with their match outcomes), concatenated in draw order, each copy a new image
id; ``compute()`` on it is what the bootstrap's fast path must reproduce."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from smartcash_core.metrics import DetectionEvaluator
from smartcash_core.metrics.state import Rows


def literal_resample(evaluator: DetectionEvaluator, draws: Sequence[int] | np.ndarray) -> DetectionEvaluator:
    """``draws``: positions of images (in sorted image-id order of ``evaluator``), with repeats."""
    protocol = evaluator.detection_protocol
    state = protocol.image_ordered(evaluator.state_arrays())
    ids = np.sort(np.asarray(state["image_ids"], dtype=np.int64))
    draws = np.asarray(draws, dtype=np.int64)
    pred_take, pred_image = _rows_of(np.searchsorted(ids, state["pred_image"]), ids.size, draws)
    gt_take, gt_image = _rows_of(np.searchsorted(ids, state["gt_image"]), ids.size, draws)
    arrays: dict[str, np.ndarray] = {}
    for key in protocol.state_keys:
        values = np.asarray(state[key.name])
        if key.rows is Rows.IMAGES:
            arrays[key.name] = np.arange(draws.size, dtype=np.int64)
        elif key.rows is Rows.PREDICTIONS:
            arrays[key.name] = values[pred_take]
        elif key.rows is Rows.GROUND_TRUTH:
            arrays[key.name] = values[gt_take]
        else:  # sparse rows of the predictions with an outcome, per view
            view = key.name.split("_", 1)[0]
            has = np.asarray(state[f"{view}_has_outcome"], dtype=bool)
            sparse_row = np.cumsum(has) - 1
            arrays[key.name] = values[sparse_row[pred_take][has[pred_take]]]
    arrays["pred_image"], arrays["gt_image"] = pred_image, gt_image
    arrays["confusion"] = np.zeros_like(state["confusion"])
    return DetectionEvaluator.from_state_arrays(
        arrays, evaluator.num_classes, evaluator.protocol, evaluator.class_table
    )


def _rows_of(positions: np.ndarray, num_images: int, draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows (state order is image order) of each drawn image, concatenated; and their new image ids."""
    starts = np.searchsorted(positions, np.arange(num_images + 1), side="left")
    counts = starts[draws + 1] - starts[draws]
    take = np.concatenate([np.arange(starts[d], starts[d + 1]) for d in draws]) if draws.size else []
    return np.asarray(take, dtype=np.int64), np.repeat(np.arange(draws.size), counts)
