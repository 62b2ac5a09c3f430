"""Synthetic detections for the bootstrap tests and the coverage bench.

A generating process with a known truth: every image holds a few ground-truth boxes (17 fine classes, the
default class table); each object has a latent difficulty shared by both detectors (that is what makes the
comparison paired), and each detector finds it or not, boxes it more or less tightly and scores it from that
difficulty plus its own noise; both also emit random false positives. The ``candidate`` detector is slightly
worse than the ``baseline`` one (lower recall, looser boxes, more false positives). The true difference of a
metric is its value on a very large sample (``true_deltas``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from smartcash_core.classes import default_class_table
from smartcash_core.metrics import DetectionEvaluator
from smartcash_core.metrics.bootstrap import ComparableState

SIZE = 640.0
NUM_CLASSES = 17


@dataclass(frozen=True)
class Detector:
    """How one detector behaves: ``recall`` (share of objects found with a confident box), ``tail`` (share
    of the other objects that still get a low-confidence, looser box, as at conf 0.001), ``jitter`` (box
    noise, relative to the box size), ``false_positives`` (mean random boxes per image, mostly low
    scores), ``score_noise``."""

    recall: float = 0.85
    tail: float = 0.7
    jitter: float = 0.06
    false_positives: float = 12.0
    score_noise: float = 0.12


BASELINE = Detector()
CANDIDATE = Detector(recall=0.83, jitter=0.065, false_positives=13.0)
# objects beyond ``recall`` are never boxed at all: recall stops at a hard ceiling (a harsher case)
HARD_MISSES = (
    Detector(tail=0.0, false_positives=4.0),
    Detector(recall=0.83, tail=0.0, jitter=0.065, false_positives=4.4),
)
Image = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def simulate(
    rng: np.random.Generator, num_images: int, detectors: tuple[Detector, ...] = (BASELINE, CANDIDATE)
) -> tuple[list[Image], ...]:
    """Per detector, per image: (pred_boxes, scores, classes, gt_boxes, gt_classes) in NMS order."""
    out: tuple[list[Image], ...] = tuple([] for _ in detectors)
    for _ in range(num_images):
        count = int(rng.poisson(2.5))
        centre = rng.uniform(60, SIZE - 60, (count, 2))
        half = rng.uniform(15, 90, (count, 2))
        gt = np.concatenate([centre - half, centre + half], axis=1)
        gt_classes = rng.integers(0, NUM_CLASSES, count)
        difficulty = rng.uniform(0, 1, count)  # shared by the detectors: the pairing
        for detector, images in zip(detectors, out, strict=True):
            images.append(_detect(rng, detector, gt, gt_classes, difficulty))
    return out


def _detect(
    rng: np.random.Generator,
    detector: Detector,
    gt: np.ndarray,
    gt_classes: np.ndarray,
    difficulty: np.ndarray,
) -> Image:
    confident = difficulty < detector.recall
    tail = ~confident & (rng.random(difficulty.size) < detector.tail)
    found = confident | tail
    size = np.concatenate([gt[:, 2:] - gt[:, :2]] * 2, axis=1)
    noise = detector.jitter * (0.5 + difficulty + tail)[:, None]
    boxes = gt + rng.normal(0.0, 1.0, gt.shape) * noise * size
    scores = 0.95 - 0.6 * difficulty + rng.normal(0.0, detector.score_noise, difficulty.size)
    scores = np.where(tail, rng.uniform(-0.4, 0.2, difficulty.size), scores)
    classes = np.where(
        rng.random(gt_classes.size) < 0.92, gt_classes, rng.integers(0, NUM_CLASSES, gt_classes.size)
    )
    extra = int(rng.poisson(detector.false_positives))
    corner = rng.uniform(0, SIZE - 100, (extra, 2))
    fp_boxes = np.concatenate([corner, corner + rng.uniform(20, 100, (extra, 2))], axis=1)
    boxes = np.concatenate([boxes[found], fp_boxes])
    raw = np.concatenate([scores[found], rng.uniform(-0.5, 0.5, extra)])
    scores = 0.001 + 0.998 / (1.0 + np.exp(-6.0 * (raw - 0.5)))  # monotone into (0.001, 0.999): no ties
    classes = np.concatenate([classes[found], rng.integers(0, NUM_CLASSES, extra)])
    boxes[:, [0, 2]] = np.sort(np.clip(boxes[:, [0, 2]], 0, SIZE), axis=1)
    boxes[:, [1, 3]] = np.sort(np.clip(boxes[:, [1, 3]], 0, SIZE), axis=1)
    order = np.argsort(-scores, kind="stable")
    return (
        boxes[order].astype(np.float32),
        scores[order].astype(np.float32),
        classes[order],
        gt.astype(np.float32),
        gt_classes,
    )


def untied(images: list[Image]) -> list[Image]:
    """The images with distinct scores in the same order (equal scores ordered by position): results then
    do not depend on how a sort breaks ties (e.g. on the order images were validated in)."""
    scores = np.concatenate([image[1] for image in images]).astype(np.float64)
    fresh = np.empty(scores.size)
    fresh[np.argsort(-scores, kind="stable")] = np.arange(scores.size, 0, -1) / (scores.size + 1)
    out, used = [], 0
    for boxes, image_scores, classes, gt, gt_classes in images:
        out.append(
            (boxes, fresh[used : used + len(image_scores)].astype(np.float32), classes, gt, gt_classes)
        )
        used += len(image_scores)
    return out


def evaluator_of(images: list[Image], protocol: str = "yolo") -> DetectionEvaluator:
    evaluator = DetectionEvaluator(NUM_CLASSES, protocol, default_class_table())
    if images:
        evaluator.update_batch(*(list(column) for column in zip(*images, strict=True)))
    return evaluator


def comparable(evaluator: DetectionEvaluator, keys: list[str] | None = None) -> ComparableState:
    state = evaluator.state_arrays()
    count = int(np.asarray(state["image_ids"]).size)
    names = keys if keys is not None else [f"image_{i:06d}.jpg" for i in range(count)]
    assert evaluator.class_table is not None
    return ComparableState(state, names, evaluator.protocol, evaluator.class_table)


def true_deltas(
    rng: np.random.Generator,
    num_images: int,
    protocol: str = "yolo",
    detectors: tuple[Detector, ...] = (BASELINE, CANDIDATE),
) -> dict[str, float]:
    """Candidate - baseline of mapped and fine mAP50 / mAP50-95 on ``num_images`` images (a proxy for the
    population values when large)."""
    base, cand = (evaluator_of(images, protocol).compute() for images in simulate(rng, num_images, detectors))
    assert base.mapped is not None and cand.mapped is not None
    return {
        "mapped.map50": cand.mapped.map50 - base.mapped.map50,
        "mapped.map50_95": cand.mapped.map50_95 - base.mapped.map50_95,
        "fine.map50": cand.map50 - base.map50,
        "fine.map50_95": cand.map50_95 - base.map50_95,
    }
