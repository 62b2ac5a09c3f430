"""Benchmark: the metrics engine (both protocols) against pycocotools, faster-coco-eval and hotcoco.

Workload (fixed seed): 5000 images of 640x640, 8 classes, 1-12 ground-truth boxes and up to 300
predictions per image (jittered copies of the ground truth plus random boxes), ~550k predictions.
Every evaluator starts from in-memory data (our engine: per-image numpy arrays; COCO tools: a GT dict and
an [N, 7] result array, built outside the timed region) and the COCO numbers of all of them must agree.
The engine runs in three call patterns (``CALL_PATTERNS``): one ``update_batch`` over all images, batches
of 16 (what the validation pass does) and one ``update()`` per image; all must give the same numbers.
Each tool runs ``--repeat`` times (tools slower than 10 s once), the repeats interleaved round by round so
every tool sees the same machine load; times are the best (min) and the median, ratios use the best.

    .venv/bin/python tests/bench/bench_metrics.py [--images 5000] [--repeat 3] [--skip pycocotools]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

from smartcash_core.metrics import DetectionEvaluator

NUM_CLASSES = 8
IMAGE_SIZE = 640.0
Workload = dict[str, list[np.ndarray]]


def make_workload(num_images: int, seed: int = 0) -> Workload:
    """Per-image arrays: pred boxes [N, 4] float32, scores [N] float32, classes [N] int64, GT likewise."""
    rng = np.random.default_rng(seed)
    work: Workload = {
        key: [] for key in ("pred_boxes", "pred_scores", "pred_classes", "gt_boxes", "gt_classes")
    }
    for _ in range(num_images):
        n_gt = int(rng.integers(1, 13))
        gt = _random_boxes(rng, n_gt)
        gt_classes = rng.integers(0, NUM_CLASSES, n_gt)
        copies = rng.integers(1, 5, n_gt)  # detections near each object, some with a wrong class
        near = np.repeat(gt, copies, axis=0)
        size = np.repeat(gt[:, 2:] - gt[:, :2], copies, axis=0)
        near = near + rng.normal(0.0, 0.08, near.shape) * np.concatenate([size, size], axis=1)
        near_classes = np.where(
            rng.random(near.shape[0]) < 0.85,
            np.repeat(gt_classes, copies),
            rng.integers(0, NUM_CLASSES, near.shape[0]),
        )
        n_random = int(rng.integers(0, 221 - near.shape[0]))
        boxes = np.concatenate([near, _random_boxes(rng, n_random)])
        boxes[:, [0, 2]] = np.sort(np.clip(boxes[:, [0, 2]], 0, IMAGE_SIZE), axis=1)
        boxes[:, [1, 3]] = np.sort(np.clip(boxes[:, [1, 3]], 0, IMAGE_SIZE), axis=1)
        scores = np.concatenate([rng.uniform(0.3, 1.0, near.shape[0]), rng.uniform(0.001, 0.6, n_random)])
        classes = np.concatenate([near_classes, rng.integers(0, NUM_CLASSES, n_random)])
        order = np.argsort(-scores, kind="stable")  # NMS emits confidence order
        work["pred_boxes"].append(boxes[order].astype(np.float32))
        work["pred_scores"].append(scores[order].astype(np.float32))
        work["pred_classes"].append(classes[order])
        work["gt_boxes"].append(gt.astype(np.float32))
        work["gt_classes"].append(gt_classes)
    return work


def _random_boxes(rng: np.random.Generator, count: int) -> np.ndarray:
    centre = rng.uniform(0, IMAGE_SIZE, (count, 2))
    size = np.exp(rng.uniform(np.log(8.0), np.log(400.0), (count, 2)))
    return np.clip(np.concatenate([centre - size / 2, centre + size / 2], axis=1), 0, IMAGE_SIZE)


def input_bytes(work: Workload) -> int:
    return sum(array.nbytes for arrays in work.values() for array in arrays)


CALL_PATTERNS = ("all", "b16", "image")  # one update_batch; batches of 16 (what the pass does); update()
_KEYS = ("pred_boxes", "pred_scores", "pred_classes", "gt_boxes", "gt_classes")


def run_engine(work: Workload, protocol: str, pattern: str = "all") -> DetectionEvaluator:
    """Feed the workload to a fresh evaluator in one of the ``CALL_PATTERNS``."""
    evaluator = DetectionEvaluator(NUM_CLASSES, protocol)
    if pattern == "all":
        evaluator.update_batch(*(work[key] for key in _KEYS))
    elif pattern == "b16":
        for start in range(0, len(work["pred_boxes"]), 16):
            evaluator.update_batch(*(work[key][start : start + 16] for key in _KEYS))
    else:
        for image in zip(*(work[key] for key in _KEYS), strict=True):
            evaluator.update(*image)
    return evaluator


def coco_inputs(work: Workload) -> tuple[dict[str, Any], np.ndarray]:
    """GT as a COCO dict and detections as [N, 7] (image_id, x, y, w, h, score, class) float64."""
    images, annotations, rows = [], [], []
    for image_id, (boxes, classes) in enumerate(zip(work["gt_boxes"], work["gt_classes"], strict=True)):
        images.append({"id": image_id, "width": IMAGE_SIZE, "height": IMAGE_SIZE})
        for box, cls in zip(boxes.astype(np.float64).tolist(), classes.tolist(), strict=True):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": cls,
                    "bbox": [box[0], box[1], w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
        pred = work["pred_boxes"][image_id].astype(np.float64)
        rows.append(
            np.column_stack(
                [
                    np.full(len(pred), image_id),
                    pred[:, :2],
                    pred[:, 2:] - pred[:, :2],
                    work["pred_scores"][image_id].astype(np.float64),
                    work["pred_classes"][image_id],
                ]
            )
        )
    gt = {"images": images, "annotations": annotations, "categories": [{"id": c} for c in range(NUM_CLASSES)]}
    return gt, np.concatenate(rows)


def run_pycocotools(gt: dict[str, Any], dets: np.ndarray) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(dets), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return np.asarray(evaluator.stats)


def run_faster_coco_eval(gt: dict[str, Any], dets: np.ndarray) -> np.ndarray:
    from faster_coco_eval import COCO, COCOeval_faster

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(gt)
        evaluator = COCOeval_faster(coco_gt, coco_gt.loadRes(dets), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return np.asarray(evaluator.stats)[:12]


def run_hotcoco(gt: dict[str, Any], dets: np.ndarray) -> np.ndarray:
    from hotcoco import COCO, COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(gt)
        evaluator = COCOeval(coco_gt, coco_gt.load_res(dets), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return np.asarray(evaluator.stats)[:12]


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def interleaved(
    functions: dict[str, Callable[[], Any]], repeat: int, slow_seconds: float = 10.0
) -> dict[str, tuple[list[float], Any]]:
    """Each function ``repeat`` times, round by round: {name: (seconds of every run, last value)}.
    A function whose first run took over ``slow_seconds`` runs once (pycocotools: ~1.5 min a run)."""
    runs: dict[str, tuple[list[float], Any]] = {name: ([], None) for name in functions}
    for round_index in range(repeat):
        for name, function in functions.items():
            if round_index and runs[name][0][0] > slow_seconds:
                continue
            seconds, value = timed(function)
            runs[name] = (runs[name][0] + [seconds], value)
    return runs


def _engine_name(protocol: str, pattern: str) -> str:
    """"engine coco" for one big update_batch (the name earlier runs printed), else with the pattern."""
    return f"engine {protocol}" if pattern == "all" else f"engine {protocol} {pattern}"


def _times(seconds: list[float]) -> str:
    return f"best {min(seconds):7.3f} s  median {float(np.median(seconds)):7.3f} s"


def peak_memory(function: Callable[[], Any]) -> int:
    gc.collect()
    tracemalloc.start()
    function()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--skip", nargs="*", default=[], help="competitors to skip (pycocotools, ...)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per tool (best and median reported)")
    args = parser.parse_args()
    work = make_workload(args.images)
    n_pred = sum(len(s) for s in work["pred_scores"])
    n_gt = sum(len(c) for c in work["gt_classes"])
    print(
        f"workload: {args.images} images, {NUM_CLASSES} classes, {n_pred} predictions, {n_gt} ground truth, "
        f"inputs {input_bytes(work) / 2**20:.1f} MiB"
    )
    gt, dets = coco_inputs(work)
    functions: dict[str, Callable[[], Any]] = {
        _engine_name(protocol, pattern): (lambda p=protocol, c=pattern: run_engine(work, p, c).compute())
        for pattern in CALL_PATTERNS
        for protocol in ("yolo", "coco")
    }
    competitors = {
        "pycocotools": run_pycocotools,
        "faster-coco-eval": run_faster_coco_eval,
        "hotcoco": run_hotcoco,
    }
    for name, function in competitors.items():
        if name in args.skip:
            continue
        try:
            __import__(name.replace("-", "_"))
        except ImportError as exc:
            print(f"{name:16s}: skipped ({exc})")
            continue
        functions[name] = lambda f=function: f(gt, dets)
    runs = interleaved(functions, args.repeat)
    best = {name: min(seconds) for name, (seconds, _) in runs.items()}
    engine_stats = runs["engine coco"][1].coco_stats
    for protocol in ("yolo", "coco"):
        reference = runs[_engine_name(protocol, "all")][1].to_dict()
        for pattern in CALL_PATTERNS:
            if runs[_engine_name(protocol, pattern)][1].to_dict() != reference:
                raise RuntimeError(f"{protocol}: call pattern {pattern!r} changed the result")
    for name, (seconds, value) in runs.items():
        if name.startswith("engine"):
            print(f"{name:22s}: {_times(seconds)}  map50={value.map50:.6f} map50_95={value.map50_95:.6f}")
        else:
            agree = np.abs(value - engine_stats).max()
            print(f"{name:22s}: {_times(seconds)}  max |stats - engine coco| = {agree:.2e}")
    for reference in ("hotcoco", "faster-coco-eval", "pycocotools"):
        if reference in best:
            base = best[reference]
            ratios = ", ".join(
                f"{protocol}/{pattern} {best[_engine_name(protocol, pattern)] / base:.3f}x"
                for protocol in ("coco", "yolo")
                for pattern in CALL_PATTERNS
            )
            print(f"ratios vs {reference} (best times): {ratios}")
    for protocol in ("yolo", "coco"):
        peak = peak_memory(lambda p=protocol: run_engine(work, p).compute())
        print(
            f"engine {protocol} peak traced memory: {peak / 2**20:.1f} MiB"
            f" = {peak / input_bytes(work):.2f}x inputs"
        )


if __name__ == "__main__":
    main()
