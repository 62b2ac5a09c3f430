"""``DetectionEvaluator``: update / merge / compute over per-prediction state arrays.

Matching happens in ``update`` (it needs the boxes); what is kept is small and per prediction (image id,
score, class, and the protocol's match outcome per IoU threshold), so shards merge by concatenation and
``compute`` sorts everything by image id first: a merged evaluator gives exactly the single-process
numbers, score ties included. The state is compact (about 14 bytes per prediction for ``yolo``, 15 plus
10 per matched prediction for ``coco``): int32 image ids and float32 scores where that loses nothing,
``yolo`` hits as one uint16 bit set, ``coco`` outcomes kept only for predictions that matched somewhere.

Views: the fine view uses the classes as given (``num_classes``, e.g. 17); with a class table the
mapped view maps predictions and ground truth (e.g. 17 -> 8) and matches again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from smartcash_core.classes import ClassTable
from smartcash_core.metrics.coco import area_bits, coco_match, coco_metrics
from smartcash_core.metrics.confusion import confident_rows, confusion_from_grids, map_confusion
from smartcash_core.metrics.grid import ImageGrid, grid_iou_yolo, image_grids
from smartcash_core.metrics.inputs import ArrayLike, FlatBatch, flatten_images
from smartcash_core.metrics.matching import COCO_IOU_THRESHOLDS, COCO_MAX_DETS, YOLO_IOU_THRESHOLDS
from smartcash_core.metrics.yolo import yolo_hit_bits, yolo_metrics

PROTOCOLS = ("yolo", "coco")
_COCO_OUTCOMES = COCO_IOU_THRESHOLDS.size * 4  # thresholds x area ranges, bit-packed per prediction
_PRED_KEYS = ("pred_image", "pred_score", "pred_class")
_GT_KEYS = ("gt_image", "gt_class")
_N_T = YOLO_IOU_THRESHOLDS.size
_SPARSE_KEYS = ("matched_bits", "tp_bits")  # coco outcomes, stored only for predictions with any
_INT32 = np.iinfo(np.int32)


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


class DetectionEvaluator:
    """Accumulates detections of many images and computes ``yolo`` or ``coco`` metrics.

    Example::

        ev = DetectionEvaluator(num_classes=17, protocol="yolo", class_table=default_class_table())
        ev.update(pred_boxes, pred_scores, pred_classes, gt_boxes, gt_classes)  # one image, xyxy pixels
        result = ev.compute()  # fine view; result.mapped is the 8-class view

    Predictions of one image should be passed as NMS emits them (confidence descending): the ``yolo``
    protocol, like YOLOv5, lets the earlier row win a ground truth. Image ids decide the image order
    (which decides score ties); they default to a running counter and must be unique.
    """

    def __init__(
        self,
        num_classes: int,
        protocol: str = "yolo",
        class_table: ClassTable | None = None,
        chunk_images: int = 256,
    ) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        if class_table is not None and class_table.num_fine != num_classes:
            raise ValueError(
                f"class_table has {class_table.num_fine} fine classes but num_classes is "
                f"{num_classes}; pass the table the model was trained with"
            )
        if chunk_images < 1:
            raise ValueError(f"chunk_images must be >= 1, got {chunk_images}")
        self.num_classes = num_classes
        self.protocol = protocol
        self.class_table = class_table
        self.chunk_images = chunk_images
        self.reset()

    # ----------------------------------------------------------------- state
    def reset(self) -> None:
        """Forget every image seen so far."""
        self._parts: dict[str, list[np.ndarray]] = {key: [] for key in self._state_keys()}
        self._confusion = np.zeros((self.num_classes + 1, self.num_classes + 1), dtype=np.int64)
        self._seen_ids: set[int] = set()
        self._next_image_id = 0

    def _views(self) -> list[str]:
        return ["fine", "mapped"] if self.class_table is not None else ["fine"]

    def _state_keys(self) -> list[str]:
        keys = ["image_ids", *_PRED_KEYS, *_GT_KEYS]
        if self.protocol == "coco":
            keys += ["pred_area_bits", "gt_area_bits"]  # [N] / [M] uint8, bit a: inside area range a
            # per prediction: rank in its image and class (uint8, capped at 100) and whether it matched
            # anywhere; the packed outcomes [S, 5] uint8 only for those S predictions, in state order
            keys += [f"{view}_{name}" for view in self._views() for name in ("rank", "has_outcome")]
            keys += [f"{view}_{name}" for view in self._views() for name in _SPARSE_KEYS]
        else:
            keys += [f"{view}_hit_bits" for view in self._views()]  # [N] uint16, bit t: hit at threshold t
        return keys

    @property
    def num_images(self) -> int:
        return len(self._seen_ids)

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The whole state as named arrays (first axis: images, predictions or ground truth; plus
        ``confusion`` [K + 1, K + 1]). Gather them across ranks, concatenate along axis 0, and rebuild with
        ``from_state_arrays``; the result equals the single-process one exactly.

        Arrays use the smallest lossless dtype (int32 image ids when they fit, float32 scores when the
        scores are float32 values); concatenating shards promotes where needed.
        """
        arrays: dict[str, np.ndarray] = {}
        for key, parts in self._parts.items():
            arrays[key] = _concat_parts(key, parts)
            self._parts[key] = [arrays[key]]  # keep the concatenation (one key at a time: low peak memory)
        arrays["confusion"] = self._confusion.copy()
        return arrays

    @classmethod
    def from_state_arrays(
        cls,
        arrays: Mapping[str, np.ndarray],
        num_classes: int,
        protocol: str = "yolo",
        class_table: ClassTable | None = None,
    ) -> DetectionEvaluator:
        """Rebuild an evaluator from ``state_arrays()`` output (possibly concatenated over shards)."""
        evaluator = cls(num_classes, protocol, class_table)
        missing = [
            key for key in [*evaluator._state_keys(), "confusion"] if key not in _upgrade_legacy_hits(arrays)
        ]
        if missing:
            raise ValueError(
                f"state arrays lack {missing}; were they made with protocol={protocol!r} and "
                f"{'a' if class_table else 'no'} class table?"
            )
        ids = np.asarray(arrays["image_ids"], dtype=np.int64)
        if np.unique(ids).size != ids.size:
            raise ValueError("state arrays repeat image ids: shards must hold disjoint images")
        arrays = _upgrade_legacy_hits(arrays)
        for key in evaluator._state_keys():
            evaluator._parts[key] = [np.asarray(arrays[key])]
        evaluator._confusion = np.asarray(arrays["confusion"], dtype=np.int64).copy()
        evaluator._seen_ids = set(ids.tolist())
        evaluator._next_image_id = int(ids.max()) + 1 if ids.size else 0
        return evaluator

    def merge(self, other: DetectionEvaluator) -> DetectionEvaluator:
        """Add the images of ``other`` (same configuration, disjoint image ids) to this evaluator."""
        if (other.num_classes, other.protocol, other.class_table) != (
            self.num_classes,
            self.protocol,
            self.class_table,
        ):
            raise ValueError("cannot merge evaluators with different num_classes, protocol or class table")
        overlap = self._seen_ids & other._seen_ids
        if overlap:
            raise ValueError(
                f"cannot merge: both evaluators hold image ids {sorted(overlap)[:5]}...; pass "
                "image_id / image_ids (e.g. dataset indices) to update so shards are disjoint"
            )
        for key, parts in other._parts.items():
            self._parts[key].extend(parts)
        self._confusion += other._confusion
        self._seen_ids |= other._seen_ids
        self._next_image_id = max(self._next_image_id, other._next_image_id)
        return self

    # ---------------------------------------------------------------- update
    def update(
        self,
        pred_boxes: ArrayLike,
        pred_scores: ArrayLike,
        pred_classes: ArrayLike,
        gt_boxes: ArrayLike,
        gt_classes: ArrayLike,
        image_id: int | None = None,
    ) -> None:
        """Add one image: pred_boxes [N, 4] xyxy pixels, pred_scores [N], pred_classes [N], gt_boxes [M, 4],
        gt_classes [M]; numpy or torch (any device). ``image_id`` defaults to the next free id.
        """
        self.update_batch(
            [pred_boxes],
            [pred_scores],
            [pred_classes],
            [gt_boxes],
            [gt_classes],
            None if image_id is None else [image_id],
        )

    def update_batch(
        self,
        pred_boxes: Sequence[ArrayLike],
        pred_scores: Sequence[ArrayLike],
        pred_classes: Sequence[ArrayLike],
        gt_boxes: Sequence[ArrayLike],
        gt_classes: Sequence[ArrayLike],
        image_ids: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        """Add many images at once: one list entry per image, each shaped as in ``update``.

        All images are matched in one vectorized pass per chunk of ``chunk_images`` (bounded memory: a
        chunk's flat copy is dropped once its state is made). Bad input raises ``ValueError`` naming the
        argument and image id; nothing is added then (the chunks' state is staged until all are valid).
        """
        ids = self._claim_image_ids(len(pred_boxes), image_ids)
        staged: dict[str, list[np.ndarray]] = {key: [] for key in self._parts}
        confusion = np.zeros_like(self._confusion)
        for s in range(0, len(ids), self.chunk_images):
            batch = flatten_images(
                pred_boxes[s : s + self.chunk_images],
                pred_scores[s : s + self.chunk_images],
                pred_classes[s : s + self.chunk_images],
                gt_boxes[s : s + self.chunk_images],
                gt_classes[s : s + self.chunk_images],
                ids[s : s + self.chunk_images],
                self.num_classes,
            )
            confusion += self._batch_state(batch, staged)
        for key, parts in staged.items():
            self._parts[key].extend(parts)
        self._confusion += confusion
        self._seen_ids.update(ids.tolist())
        self._next_image_id = (
            max(self._next_image_id, int(ids.max()) + 1) if ids.size else self._next_image_id
        )

    def _claim_image_ids(self, count: int, image_ids: Sequence[int] | np.ndarray | None) -> np.ndarray:
        if image_ids is None:
            return np.arange(self._next_image_id, self._next_image_id + count, dtype=np.int64)
        ids = np.asarray(image_ids)
        if ids.shape != (count,) or (ids.size and ids.dtype.kind not in "iu"):
            raise ValueError(
                f"image_ids must be {count} integers (one per image), got shape {ids.shape} dtype {ids.dtype}"
            )
        ids = ids.astype(np.int64)
        repeated = (ids.size != np.unique(ids).size) or not self._seen_ids.isdisjoint(ids.tolist())
        if repeated:
            raise ValueError("image_ids repeat an image already in this evaluator (or within the batch)")
        return ids

    def _batch_state(self, batch: FlatBatch, staged: dict[str, list[np.ndarray]]) -> np.ndarray:
        """Append the state of one checked chunk to ``staged``; returns its confusion matrix.

        The float32 IoU of every prediction with the ground truth of its image is computed once
        (``grid``) and shared by the ``yolo`` matching of both views and the confusion matrix.
        """
        staged["image_ids"].append(batch.image_ids)
        staged["pred_image"].append(_compact_ids(batch.image_ids[batch.pred_image]))
        staged["pred_score"].append(_compact_scores(batch.pred_scores))
        staged["pred_class"].append(batch.pred_classes.astype(np.int32))
        staged["gt_image"].append(_compact_ids(batch.image_ids[batch.gt_image]))
        staged["gt_class"].append(batch.gt_classes.astype(np.int32))
        if self.protocol == "coco":
            staged["pred_area_bits"].append(area_bits(batch.pred_boxes))
            staged["gt_area_bits"].append(area_bits(batch.gt_boxes))
            rows = confident_rows(batch.pred_scores)  # the confusion matrix needs only these
        else:
            rows = np.arange(batch.pred_scores.shape[0])
        grids = image_grids(rows, batch.pred_image[rows], batch.gt_image, batch.num_images)
        gt32, pred32 = batch.gt_boxes.astype(np.float32), batch.pred_boxes.astype(np.float32)
        ious = [grid_iou_yolo(grid, gt32, pred32) for grid in grids]
        for view in self._views():
            for key, value in self._match_view(view, batch, grids, ious).items():
                staged[key].append(value)
        return confusion_from_grids(
            grids, ious, batch.pred_scores, batch.pred_classes, batch.gt_classes, self.num_classes
        )

    def _match_view(
        self, view: str, batch: FlatBatch, grids: list[ImageGrid], ious: list[np.ndarray]
    ) -> dict[str, np.ndarray]:
        pred_classes, gt_classes, n_classes = self._view_classes(view, batch.pred_classes, batch.gt_classes)
        if self.protocol == "yolo":
            bits = yolo_hit_bits(
                grids,
                ious,
                batch.pred_boxes,
                pred_classes,
                batch.pred_image,
                batch.gt_boxes,
                gt_classes,
                batch.gt_image,
            )
            return {f"{view}_hit_bits": bits}
        match = coco_match(
            batch.pred_boxes,
            batch.pred_scores,
            pred_classes,
            batch.pred_image,
            batch.gt_boxes,
            gt_classes,
            batch.gt_image,
            n_classes,
        )
        has_outcome = np.zeros(match.rank.shape[0], dtype=bool)
        has_outcome[match.rows] = True
        return {
            f"{view}_rank": np.minimum(match.rank, COCO_MAX_DETS[-1]).astype(np.uint8),
            f"{view}_has_outcome": has_outcome,
            f"{view}_matched_bits": np.packbits(match.matched, axis=1),
            f"{view}_tp_bits": np.packbits(match.tp, axis=1),
        }

    def _view_classes(
        self, view: str, pred_classes: np.ndarray, gt_classes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, int]:
        if view == "fine" or self.class_table is None:
            return pred_classes, gt_classes, self.num_classes
        table = self.class_table.map_array()
        return table[pred_classes], table[gt_classes], self.class_table.num_mapped

    # --------------------------------------------------------------- compute
    def compute(self) -> MetricsResult:
        """Metrics of every image added so far: the fine view, with ``.mapped`` when there is a table."""
        state = self._image_ordered_state()
        fine = self._compute_view("fine", state, self._confusion)
        if self.class_table is None:
            return fine
        mapped_confusion = map_confusion(
            self._confusion, self.class_table.map_array(), self.class_table.num_mapped
        )
        mapped = self._compute_view("mapped", state, mapped_confusion)
        return _with_mapped(fine, mapped)

    def _image_ordered_state(self) -> dict[str, np.ndarray]:
        """State with predictions (and ground truth) sorted by image id, stable inside an image."""
        state = self.state_arrays()
        pred_keys = [key for key in state if key.startswith(("pred_", "fine_", "mapped_"))]
        sparse = [f"{view}_{name}" for view in self._views() for name in _SPARSE_KEYS]
        pred_keys = [key for key in pred_keys if key not in sparse]
        gt_keys = [key for key in state if key.startswith("gt_")]
        for keys, image_key in ((pred_keys, "pred_image"), (gt_keys, "gt_image")):
            image = state[image_key]
            if image.size and np.any(image[1:] < image[:-1]):  # merged shards: restore image order
                order = np.argsort(image, kind="stable")
                if image_key == "pred_image":
                    self._reorder_sparse(state, order)
                for key in keys:
                    state[key] = state[key][order]
        return state

    def _reorder_sparse(self, state: dict[str, np.ndarray], order: np.ndarray) -> None:
        """Put the sparse ``coco`` outcomes in the order their predictions take under ``order``."""
        if self.protocol != "coco":
            return
        for view in self._views():
            has_outcome = state[f"{view}_has_outcome"]
            sparse_row = np.cumsum(has_outcome) - 1
            moved = sparse_row[order][has_outcome[order]]
            for name in _SPARSE_KEYS:
                state[f"{view}_{name}"] = state[f"{view}_{name}"][moved]

    def _compute_view(self, view: str, state: dict[str, np.ndarray], confusion: np.ndarray) -> MetricsResult:
        pred_classes, gt_classes, n_classes = self._view_classes(
            view, state["pred_class"], state["gt_class"]  # int32: no full-length int64 copies
        )
        common: dict[str, Any] = {
            "protocol": self.protocol,
            "view": view,
            "class_names": self._class_names(view, n_classes),
            "confusion": confusion,
            "num_images": int(state["image_ids"].size),
            "num_predictions": int(pred_classes.size),
            "num_ground_truth": int(gt_classes.size),
        }
        if self.protocol == "yolo":
            metrics = yolo_metrics(state[f"{view}_hit_bits"], state["pred_score"], pred_classes, gt_classes)
            return MetricsResult(
                classes=metrics.classes,
                ap=metrics.ap,
                precision=metrics.precision,
                recall=metrics.recall,
                f1=metrics.f1,
                map50=metrics.map50,
                map50_95=metrics.map50_95,
                coco_stats=None,
                **common,
            )
        return self._compute_coco_view(view, state, pred_classes, gt_classes, n_classes, common)

    def _compute_coco_view(
        self,
        view: str,
        state: dict[str, np.ndarray],
        pred_classes: np.ndarray,
        gt_classes: np.ndarray,
        n_classes: int,
        common: dict[str, Any],
    ) -> MetricsResult:
        rows = np.flatnonzero(state[f"{view}_has_outcome"])
        shape = (rows.size, COCO_IOU_THRESHOLDS.size, 4)
        matched, tp = (
            np.unpackbits(state[f"{view}_{name}"], axis=1, count=_COCO_OUTCOMES).astype(bool).reshape(shape)
            for name in _SPARSE_KEYS
        )
        metrics = coco_metrics(
            state["pred_score"],
            pred_classes,
            state[f"{view}_rank"],
            state["pred_area_bits"],
            rows,
            matched,
            tp,
            gt_classes,
            state["gt_area_bits"],
            n_classes,
        )
        stats = metrics.stats()
        classes = np.unique(gt_classes)
        ap = metrics.per_class_ap()[classes] if classes.size else np.zeros((0, COCO_IOU_THRESHOLDS.size))
        return MetricsResult(
            classes=classes,
            ap=ap,
            precision=None,
            recall=None,
            f1=None,
            map50=max(float(stats[1]), 0.0),
            map50_95=max(float(stats[0]), 0.0),
            coco_stats=stats,
            **common,
        )

    def _class_names(self, view: str, n_classes: int) -> tuple[str, ...]:
        if self.class_table is None:
            return tuple(str(c) for c in range(n_classes))
        return self.class_table.fine_names if view == "fine" else self.class_table.mapped_names

    # ------------------------------------------------------------ summaries
    def per_image_summary(self, iou: float = 0.5, conf: float = 0.25) -> dict[str, np.ndarray]:
        """Per image (fine view, sorted by image id): true/false positives and misses at one IoU threshold.

        A prediction counts when its score >= ``conf``; it is a true positive when the protocol matched it
        at IoU threshold ``iou`` (one of 0.50, 0.55, ..., 0.95; ``coco``: area "all"). ``fn`` is ground
        truth minus true positives. Returns ``image_id``, ``tp``, ``fp``, ``fn``, ``num_predictions``,
        ``num_ground_truth``: int64 arrays [B].
        """
        t = np.flatnonzero(np.isclose(YOLO_IOU_THRESHOLDS.astype(np.float64), iou, atol=1e-6))
        if t.size != 1:
            raise ValueError(f"iou must be one of 0.50, 0.55, ..., 0.95, got {iou!r}")
        state = self.state_arrays()
        image_ids = np.sort(state["image_ids"])
        if self.protocol == "yolo":
            hit = (state["fine_hit_bits"] >> t[0]) & 1 == 1
        else:
            bits = np.unpackbits(state["fine_tp_bits"], axis=1, count=_COCO_OUTCOMES).reshape(-1, 10, 4)
            hit = np.zeros(state["pred_score"].shape[0], dtype=bool)
            hit[state["fine_has_outcome"]] = bits[:, t[0], 0] == 1
        counted = state["pred_score"].astype(np.float64) >= conf
        pred_pos = np.searchsorted(image_ids, state["pred_image"])
        gt_pos = np.searchsorted(image_ids, state["gt_image"])
        n = image_ids.size
        tp = np.bincount(pred_pos[counted & hit], minlength=n)
        n_pred = np.bincount(pred_pos[counted], minlength=n)
        n_gt = np.bincount(gt_pos, minlength=n)
        return {
            "image_id": image_ids,
            "tp": tp,
            "fp": n_pred - tp,
            "fn": n_gt - tp,
            "num_predictions": n_pred,
            "num_ground_truth": n_gt,
        }


def _with_mapped(fine: MetricsResult, mapped: MetricsResult) -> MetricsResult:
    values = {name: getattr(fine, name) for name in fine.__dataclass_fields__}
    values["mapped"] = mapped
    return MetricsResult(**values)


def _concat_parts(key: str, parts: list[np.ndarray]) -> np.ndarray:
    if len(parts) == 1:
        return parts[0]
    if parts:
        return np.concatenate(parts)
    return _empty_state(key)


def _compact_ids(ids: np.ndarray) -> np.ndarray:
    """Image ids as int32 when they fit (half the state), else int64."""
    if ids.size == 0 or (int(ids.min()) >= _INT32.min and int(ids.max()) <= _INT32.max):
        return ids.astype(np.int32)
    return ids.astype(np.int64, copy=False)


def _compact_scores(scores: np.ndarray) -> np.ndarray:
    """Scores as float32 when that loses nothing (always for float32 input), else float64: ``yolo`` reads
    them as float32 like YOLOv5, ``coco`` as float64 like pycocotools, and both see the same values."""
    if scores.dtype == np.float32:
        return scores
    narrow = scores.astype(np.float32)
    return narrow if np.array_equal(narrow, scores) else scores.astype(np.float64, copy=False)


def _upgrade_legacy_hits(arrays: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
    """State from before hit flags were bit-packed (``{view}_hits`` [N, 10] bool) -> ``{view}_hit_bits``."""
    legacy = [key for key in arrays if key.endswith("_hits") and f"{key[:-5]}_hit_bits" not in arrays]
    if not legacy:
        return arrays
    upgraded = dict(arrays)
    weights = (1 << np.arange(_N_T)).astype(np.uint16)
    for key in legacy:
        hits = np.asarray(arrays[key], dtype=bool).reshape(-1, _N_T)
        upgraded[f"{key[:-5]}_hit_bits"] = (hits * weights).sum(axis=1, dtype=np.uint16)
    return upgraded


def _empty_state(key: str) -> np.ndarray:
    """A zero-length array with the dtype and trailing shape a state key has once filled."""
    if key.endswith("_hit_bits"):
        return np.zeros(0, dtype=np.uint16)
    if key.endswith(("_area_bits", "_rank")):
        return np.zeros(0, dtype=np.uint8)
    if key.endswith("_bits"):
        return np.zeros((0, _COCO_OUTCOMES // 8), dtype=np.uint8)
    if key.endswith("_has_outcome"):
        return np.zeros(0, dtype=bool)
    dtypes = {"pred_score": np.float32, "pred_class": np.int32, "gt_class": np.int32, "image_ids": np.int64}
    return np.zeros(0, dtype=dtypes.get(key, np.int32))
