"""Literal per-image reference implementations of both protocols, used as test oracles.

``yolo_reference`` follows YOLOv5 7.0 ``val.py`` step by step (``process_batch`` per image on float32
tensors, then ``ap_per_class`` over all images concatenated in image order); ``coco_reference`` runs
pycocotools itself. They are slow on purpose: one Python pass per image, exactly like the originals.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

Image = dict[
    str, Any
]  # {"width", "height", "gt": [[x1, y1, x2, y2, cls]], "pred": [[x1, y1, x2, y2, conf, cls]]}


def _box_iou32(labels: torch.Tensor, dets: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    (a1, a2), (b1, b2) = labels.unsqueeze(1).chunk(2, 2), dets.unsqueeze(0).chunk(2, 2)
    inter = (torch.min(a2, b2) - torch.max(a1, b1)).clamp(0).prod(2)
    return inter / ((a2 - a1).prod(2) + (b2 - b1).prod(2) - inter + eps)


def _process_batch(dets: torch.Tensor, labels: torch.Tensor, iouv: torch.Tensor) -> np.ndarray:
    correct = np.zeros((dets.shape[0], iouv.shape[0]), dtype=bool)
    iou = _box_iou32(labels[:, 1:], dets[:, :4])
    correct_class = labels[:, 0:1] == dets[:, 5]
    for i in range(len(iouv)):
        x = torch.where((iou >= iouv[i]) & correct_class)
        if x[0].shape[0]:
            matches = torch.cat((torch.stack(x, 1), iou[x[0], x[1]][:, None]), 1).cpu().numpy()
            if x[0].shape[0] > 1:
                matches = matches[matches[:, 2].argsort()[::-1]]
                matches = matches[np.unique(matches[:, 1], return_index=True)[1]]
                matches = matches[np.unique(matches[:, 0], return_index=True)[1]]
            correct[matches[:, 1].astype(int), i] = True
    return correct


def _smooth(y: np.ndarray, f: float = 0.05) -> np.ndarray:
    nf = round(len(y) * f * 2) // 2 + 1
    p = np.ones(nf // 2)
    yp = np.concatenate((p * y[0], y, p * y[-1]), 0)
    return np.convolve(yp, np.ones(nf) / nf, mode="valid")


def _compute_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    x = np.linspace(0, 1, 101)
    return float(np.trapezoid(np.interp(x, mrec, mpre), x))


def yolo_reference(images: Sequence[Image]) -> dict[str, Any]:
    """YOLOv5 7.0 val.py metrics for per-image xyxy inputs (see module docstring)."""
    iouv = torch.linspace(0.5, 0.95, 10)
    stats: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for image in images:
        labels = torch.tensor([[g[4], *g[:4]] for g in image["gt"]], dtype=torch.float32).reshape(-1, 5)
        pred = torch.tensor(image["pred"], dtype=torch.float32).reshape(-1, 6)
        if len(pred) == 0:
            if len(labels):
                stats.append(
                    (
                        np.zeros((0, 10), bool),
                        np.zeros(0, np.float32),
                        np.zeros(0, np.float32),
                        labels[:, 0].numpy(),
                    )
                )
            continue
        correct = _process_batch(pred, labels, iouv) if len(labels) else np.zeros((len(pred), 10), bool)
        stats.append((correct, pred[:, 4].numpy(), pred[:, 5].numpy(), labels[:, 0].numpy()))
    tp, conf, pred_cls, target_cls = (np.concatenate(x, 0) for x in zip(*stats, strict=True))
    if not tp.any():
        return {"map50": 0.0, "map50_95": 0.0}
    return _ap_per_class(tp, conf, pred_cls, target_cls)


def _ap_per_class(
    tp: np.ndarray, conf: np.ndarray, pred_cls: np.ndarray, target_cls: np.ndarray, eps: float = 1e-16
) -> dict[str, Any]:
    i = np.argsort(-conf)
    tp, conf, pred_cls = tp[i], conf[i], pred_cls[i]
    unique_classes, nt = np.unique(target_cls, return_counts=True)
    nc = unique_classes.shape[0]
    px = np.linspace(0, 1, 1000)
    ap, p, r = np.zeros((nc, tp.shape[1])), np.zeros((nc, 1000)), np.zeros((nc, 1000))
    for ci, c in enumerate(unique_classes):
        i = pred_cls == c
        n_l = nt[ci]
        n_p = i.sum()
        if n_p == 0 or n_l == 0:
            continue
        fpc = (1 - tp[i]).cumsum(0)
        tpc = tp[i].cumsum(0)
        recall = tpc / (n_l + eps)
        r[ci] = np.interp(-px, -conf[i], recall[:, 0], left=0)
        precision = tpc / (tpc + fpc)
        p[ci] = np.interp(-px, -conf[i], precision[:, 0], left=1)
        for j in range(tp.shape[1]):
            ap[ci, j] = _compute_ap(recall[:, j], precision[:, j])
    f1 = 2 * p * r / (p + r + eps)
    i = _smooth(f1.mean(0), 0.1).argmax()
    p, r, f1 = p[:, i], r[:, i], f1[:, i]
    return {
        "classes": unique_classes.astype(int).tolist(),
        "ap": ap.tolist(),
        "precision": p.tolist(),
        "recall": r.tolist(),
        "f1": f1.tolist(),
        "map50": float(ap[:, 0].mean()),
        "map50_95": float(ap.mean(1).mean()),
    }


def coco_reference(images: Sequence[Image], n_classes: int) -> dict[str, Any]:
    """pycocotools COCOeval bbox on the same inputs: stats[12] and per-class AP@[.5:.95] (-1: no GT)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_json: dict[str, Any] = {
        "images": [],
        "annotations": [],
        "categories": [{"id": c} for c in range(n_classes)],
    }
    results: list[dict[str, Any]] = []
    for image_id, image in enumerate(images):
        gt_json["images"].append({"id": image_id, "width": image["width"], "height": image["height"]})
        for x1, y1, x2, y2, cls in image["gt"]:
            w, h = x2 - x1, y2 - y1
            gt_json["annotations"].append(
                {
                    "id": len(gt_json["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": int(cls),
                    "bbox": [x1, y1, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
        for x1, y1, x2, y2, conf, cls in image["pred"]:
            results.append(
                {
                    "image_id": image_id,
                    "category_id": int(cls),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": conf,
                }
            )
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt_json
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results) if results else COCO()
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    precision = evaluator.eval["precision"][:, :, :, 0, 2]
    per_class = []
    for k in range(n_classes):
        s = precision[:, :, k]
        per_class.append(float(np.mean(s[s > -1])) if (s > -1).any() else -1.0)
    return {"stats": [float(v) for v in evaluator.stats], "per_class_ap50_95": per_class}


def true_positives_at_iou50_reference(state: dict[str, np.ndarray], view: str, protocol: str) -> np.ndarray:
    """Per-prediction true positive at IoU 0.5 read straight from the state layout, one branch per protocol
    (what ``plots.true_positives_at_iou50`` did before the protocols became objects): [N] bool."""
    if protocol == "yolo":
        return (np.asarray(state[f"{view}_hit_bits"]) & 1).astype(bool)
    has_outcome = np.asarray(state[f"{view}_has_outcome"], dtype=bool)
    bits = np.unpackbits(np.asarray(state[f"{view}_tp_bits"]), axis=1, count=40)
    hit = np.zeros(has_outcome.size, dtype=bool)
    hit[has_outcome] = bits.reshape(-1, 10, 4)[:, 0, 0] == 1  # threshold 0.5, area range "all"
    return hit
