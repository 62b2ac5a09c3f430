"""``DetectionEvaluator``: update / merge / compute over per-prediction state arrays.

Matching happens in ``update`` (it needs the boxes); what is kept is small and per prediction (image id,
score, class, and the protocol's match outcome per IoU threshold), so shards merge by concatenation and
``compute`` sorts everything by image id first: a merged evaluator gives exactly the single-process
numbers, score ties included. The state is compact (about 14 bytes per prediction for ``yolo``, 15 plus
10 per matched prediction for ``coco``): int32 image ids and float32 scores where that loses nothing,
``yolo`` hits as one uint16 bit set, ``coco`` outcomes kept only for predictions that matched somewhere.

The evaluator stores, checks and merges; everything protocol-specific (state keys and how they merge,
matching, compute) belongs to its protocol object (``protocol.DetectionProtocol``: ``yolo.YoloProtocol``,
``coco.CocoProtocol``), reachable as ``detection_protocol``.

Updates are staged (``staging``): each call is checked and flattened at once, and images are matched a
chunk at a time (``chunk_images``) on a background thread, so one ``update()`` per image costs about what
one big ``update_batch`` does. Everything that reads the state matches what is staged first.

Views: the fine view uses the classes as given (``num_classes``, e.g. 17); with a class table the
mapped view maps predictions and ground truth (e.g. 17 -> 8) and matches again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from smartcash_core.classes import ClassTable
from smartcash_core.errors import MetricStateError
from smartcash_core.metrics.coco import CocoProtocol
from smartcash_core.metrics.inputs import ArrayLike, flatten_images, flatten_one_image
from smartcash_core.metrics.matching import YOLO_IOU_THRESHOLDS
from smartcash_core.metrics.protocol import NUM_IOU_THRESHOLDS, DetectionProtocol
from smartcash_core.metrics.result import MetricsResult
from smartcash_core.metrics.staging import ImageStage, MatchQueue, StagedPart
from smartcash_core.metrics.state import MergeRule, StateArrays, concat_parts, merge_state_arrays
from smartcash_core.metrics.yolo import YoloProtocol

PROTOCOL_TYPES: dict[str, type[DetectionProtocol]] = {"yolo": YoloProtocol, "coco": CocoProtocol}
PROTOCOLS = tuple(PROTOCOL_TYPES)

__all__ = ["PROTOCOLS", "PROTOCOL_TYPES", "DetectionEvaluator", "MetricsResult"]


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
        background: bool = True,
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
        self.background = background
        self.detection_protocol: DetectionProtocol = PROTOCOL_TYPES[protocol](num_classes, class_table)
        self._keys = {key.name: key for key in self.detection_protocol.state_keys}
        self.reset()

    # ----------------------------------------------------------------- state
    def reset(self) -> None:
        """Forget every image seen so far (chunks still being matched are dropped)."""
        self._parts: dict[str, list[np.ndarray]] = {name: [] for name in self._keys}
        self._confusion = self.detection_protocol.empty_confusion()
        self._seen_ids: set[int] = set()
        self._next_image_id = 0
        self._stage = ImageStage()
        self._matching = MatchQueue(self.detection_protocol.batch_state, self.background)

    def flush(self) -> None:
        """Match every staged image and keep the results (each read of the state does this first)."""
        self._matching.submit(self._stage.take())
        if not len(self._matching):
            return
        for state, confusion in self._matching.collect():
            for name, value in state.items():
                self._parts[name].append(value)
            self._confusion += confusion

    @property
    def num_images(self) -> int:
        return len(self._seen_ids)

    def merge_rules(self) -> dict[str, MergeRule]:
        """How each key of ``state_arrays()`` merges across ranks (concatenate, sum, image id)."""
        return self.detection_protocol.merge_rules()

    def state_arrays(self) -> StateArrays:
        """The whole state as named arrays (first axis: images, predictions or ground truth; plus
        ``confusion`` [K + 1, K + 1]). Merge the states of many ranks with ``merged_from_states`` (or
        concatenate them along axis 0, sum ``confusion``, and rebuild with ``from_state_arrays``); the
        result equals the single-process one exactly.

        Arrays use the smallest lossless dtype (int32 image ids when they fit, float32 scores when the
        scores are float32 values); concatenating shards promotes where needed.
        """
        self.flush()
        arrays: StateArrays = {}
        for name, parts in self._parts.items():
            arrays[name] = concat_parts(self._keys[name], parts)
            self._parts[name] = [arrays[name]]  # keep the concatenation (one key at a time: low peak memory)
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
        arrays = evaluator.detection_protocol.upgrade_state(arrays)
        missing = [key for key in evaluator.merge_rules() if key not in arrays]
        if missing:
            raise ValueError(
                f"state arrays lack {missing}; were they made with protocol={protocol!r} and "
                f"{'a' if class_table else 'no'} class table?"
            )
        ids = np.asarray(arrays["image_ids"], dtype=np.int64)
        if np.unique(ids).size != ids.size:
            raise ValueError("state arrays repeat image ids: shards must hold disjoint images")
        for name in evaluator._keys:
            evaluator._parts[name] = [np.asarray(arrays[name])]
        evaluator._confusion = np.asarray(arrays["confusion"], dtype=np.int64).copy()
        evaluator._seen_ids = set(ids.tolist())
        evaluator._next_image_id = int(ids.max()) + 1 if ids.size else 0
        return evaluator

    @classmethod
    def merged_from_states(
        cls, states: Sequence[Mapping[str, np.ndarray]], like: DetectionEvaluator
    ) -> DetectionEvaluator:
        """A new evaluator (configured as ``like``) holding the images of every rank's ``state_arrays()``,
        given in rank order.

        Ranks that already use global image ids (disjoint) are concatenated as they are; ranks that numbered
        their images locally (ids overlap) are rebased first (``state.rebase_local_image_ids``). Each key
        merges by the rule its protocol declares. Raises ``MetricStateError`` for no states or states of
        another configuration (missing keys).
        """
        if not states:
            raise MetricStateError("no evaluator state to merge: pass the state of at least one rank")
        rules = like.merge_rules()
        upgraded = [like.detection_protocol.upgrade_state(state) for state in states]
        declared = [{key: value for key, value in state.items() if key in rules} for state in upgraded]
        merged = merge_state_arrays(declared, rules)
        return cls.from_state_arrays(merged, like.num_classes, like.protocol, like.class_table)

    def merge(self, other: DetectionEvaluator) -> DetectionEvaluator:
        """Add the images of ``other`` (same configuration, disjoint image ids) to this evaluator."""
        if (other.num_classes, other.protocol, other.class_table) != (
            self.num_classes,
            self.protocol,
            self.class_table,
        ):
            raise ValueError("cannot merge evaluators with different num_classes, protocol or class table")
        self.flush()
        other.flush()
        overlap = self._seen_ids & other._seen_ids
        if overlap:
            raise ValueError(
                f"cannot merge: both evaluators hold image ids {sorted(overlap)[:5]}...; pass "
                "image_id / image_ids (e.g. dataset indices) to update so shards are disjoint"
            )
        for name, parts in other._parts.items():
            self._parts[name].extend(parts)
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

        Checked (``ValueError`` here) and copied at once, matched later with a chunk of other images.
        """
        # the default id without numpy calls: this is the per-image hot path
        claimed = self._next_image_id if image_id is None else int(self._claim_image_ids(1, [image_id])[0])
        part: StagedPart | None = flatten_one_image(
            pred_boxes, pred_scores, pred_classes, gt_boxes, gt_classes, claimed, self.num_classes
        )
        if part is None:  # not plain numpy, or a value to reject: the general path (and its messages)
            ids = np.array([claimed], dtype=np.int64)
            part = flatten_images(
                [pred_boxes], [pred_scores], [pred_classes], [gt_boxes], [gt_classes], ids, self.num_classes
            )
        self._stage_checked(part, [claimed])

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

        The images are checked and flattened a chunk of ``chunk_images`` at a time, and matched with the
        images staged before them. Bad input raises ``ValueError`` naming the argument and image id;
        nothing of the call is added then. Big calls keep at most a few flattened chunks alive.
        """
        ids = self._claim_image_ids(len(pred_boxes), image_ids)
        if len(ids) == 0:
            return
        if len(ids) > self.chunk_images:  # matched as it is flattened: committed once all are valid
            self._update_many(pred_boxes, pred_scores, pred_classes, gt_boxes, gt_classes, ids)
            return
        flat = flatten_images(
            pred_boxes, pred_scores, pred_classes, gt_boxes, gt_classes, ids, self.num_classes
        )
        self._stage_checked(flat, ids.tolist())

    def _update_many(
        self,
        pred_boxes: Sequence[ArrayLike],
        pred_scores: Sequence[ArrayLike],
        pred_classes: Sequence[ArrayLike],
        gt_boxes: Sequence[ArrayLike],
        gt_classes: Sequence[ArrayLike],
        ids: np.ndarray,
    ) -> None:
        """A call of more than one chunk: each chunk is matched once it is checked, in a queue of its own,
        and the results join the state only when every chunk passed its checks."""
        self.flush()  # the staged images come first
        own = MatchQueue(self.detection_protocol.batch_state, self.background)
        for s in range(0, len(ids), self.chunk_images):
            chunk = slice(s, s + self.chunk_images)
            # a ValueError leaves ``own`` behind: chunks already started finish, their results are dropped
            own.submit(
                [
                    flatten_images(
                        pred_boxes[chunk],
                        pred_scores[chunk],
                        pred_classes[chunk],
                        gt_boxes[chunk],
                        gt_classes[chunk],
                        ids[chunk],
                        self.num_classes,
                    )
                ]
            )
        self._matching = own  # every chunk passed: the queue (still matching) becomes the state's
        self._note_ids(ids.tolist())

    def _stage_checked(self, part: StagedPart, ids: list[int]) -> None:
        """Stage checked images; a full stage goes to matching as one chunk."""
        self._stage.add(part)
        self._note_ids(ids)
        if self._stage.num_images >= self.chunk_images:
            self._matching.submit(self._stage.take())

    def _note_ids(self, ids: list[int]) -> None:
        self._seen_ids.update(ids)
        if ids:
            self._next_image_id = max(self._next_image_id, max(ids) + 1)

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

    # --------------------------------------------------------------- compute
    def compute(self) -> MetricsResult:
        """Metrics of every image added so far: the fine view, with ``.mapped`` when there is a table."""
        protocol = self.detection_protocol
        state = protocol.image_ordered(self.state_arrays())  # matches what is staged: confusion complete
        return protocol.compute(state, self._confusion)

    def true_positives_at(self, iou_index: int = 0, view: str = "fine") -> np.ndarray:
        """Per prediction, in ``state_arrays()`` order: whether the protocol matched it to a ground truth at
        IoU threshold ``iou_index`` (0: 0.50, 1: 0.55, ..., 9: 0.95; ``coco``: area range "all") in ``view``
        ("fine", or "mapped" with a class table): [N] bool."""
        if isinstance(iou_index, bool) or not isinstance(iou_index, int | np.integer):
            raise ValueError(f"iou_index must be an integer 0..{NUM_IOU_THRESHOLDS - 1}, got {iou_index!r}")
        if not 0 <= iou_index < NUM_IOU_THRESHOLDS:
            raise ValueError(f"iou_index must be 0..{NUM_IOU_THRESHOLDS - 1}, got {iou_index}")
        self.detection_protocol.check_view(view)
        return self.detection_protocol.true_positives(self.state_arrays(), view, int(iou_index))

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
        hit = self.detection_protocol.true_positives(state, "fine", int(t[0]))
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
