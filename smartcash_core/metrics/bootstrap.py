"""Is the candidate really better? A paired bootstrap over images of two validations of the same images.

``compare_states(baseline, candidate, resamples=1000, seed=0, confidence=0.95)`` pairs the images of two
evaluator states by their keys (dataset-relative file names, or content hashes), then draws ``resamples``
image lists of the same size with replacement (numpy ``default_rng(seed)``, one ``integers`` call per
resample). Both states are resampled with the same draws (paired), every drawn copy counted, and each
resample's AP per threshold and class is what the protocol computes on that image list
(``resample_ap``). For the mapped and the fine view it reports mAP50, mAP50-95 and per-class AP50 / AP50-95
of both, their difference (candidate - baseline), its interval and a verdict (``intervals``).

The work runs on blocks of resamples (a block is a matrix of multiplicities), on ``threads`` threads:
numpy releases the GIL in the array work. The result does not depend on the block size or thread count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from smartcash_core.classes import ClassTable
from smartcash_core.errors import ComparisonError
from smartcash_core.metrics.evaluator import DetectionEvaluator
from smartcash_core.metrics.intervals import DeltaEstimate, IntervalMethod, estimate
from smartcash_core.metrics.protocol import DetectionProtocol
from smartcash_core.metrics.resample_ap import LevelTables, resampled_ap
from smartcash_core.metrics.resample_curves import ViewCurves, prepare_view
from smartcash_core.metrics.result import MetricsResult

METHOD_DESCRIPTION = "paired bootstrap over images ({interval} interval)"
_BLOCK = 32  # resamples per block; 16 for large views (scans down rows of wider blocks leave the cache)
_LARGE_VIEW_ROWS = 8192  # rows at one threshold from which a view counts as large


@dataclass(frozen=True)
class ComparableState:
    """One validation's evaluator state, with a key per image (``image_keys[i]`` belongs to the i-th
    smallest image id) and the protocol and class table that made it."""

    state: Mapping[str, np.ndarray]
    image_keys: Sequence[str]
    protocol: str
    class_table: ClassTable

    def protocol_object(self) -> DetectionProtocol:
        evaluator = DetectionEvaluator(self.class_table.num_fine, self.protocol, self.class_table)
        return evaluator.detection_protocol

    def computed(self) -> MetricsResult:
        """``compute()`` of the whole state: the very numbers of the validation's own result."""
        table = self.class_table
        evaluator = DetectionEvaluator.from_state_arrays(self.state, table.num_fine, self.protocol, table)
        return evaluator.compute()


@dataclass(frozen=True)
class ClassComparison:
    id: int
    name: str
    ap50: DeltaEstimate
    ap50_95: DeltaEstimate

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "ap50": self.ap50.to_dict(),
            "ap50_95": self.ap50_95.to_dict(),
        }


@dataclass(frozen=True)
class ViewComparison:
    view: str
    map50: DeltaEstimate
    map50_95: DeltaEstimate
    per_class: tuple[ClassComparison, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "map50": self.map50.to_dict(),
            "map50_95": self.map50_95.to_dict(),
            "per_class": [item.to_dict() for item in self.per_class],
        }


@dataclass(frozen=True)
class Comparison:
    """The whole answer; ``to_dict()`` is the JSON of ``POST /v1/comparisons`` and ``smartcash compare``."""

    protocol: str
    interval: str
    resamples: int
    seed: int
    confidence: float
    images: int
    views: dict[str, ViewComparison] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return METHOD_DESCRIPTION.format(interval=self.interval)

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "method": self.method,
            "interval": self.interval,
            "resamples": self.resamples,
            "seed": self.seed,
            "confidence": self.confidence,
            "images": self.images,
            **{view: item.to_dict() for view, item in self.views.items()},
        }


def compare_states(
    baseline: ComparableState,
    candidate: ComparableState,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    interval: IntervalMethod = "percentile",
    threads: int = 2,
) -> Comparison:
    """The paired bootstrap comparison of two validations of the same images (see the module docstring).

    Raises ``ComparisonError`` when they cannot be compared (protocol, classes, images or labels differ)
    and ``ValueError`` for resamples < 1 or a confidence outside (0, 1).
    """
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")
    check_comparable(baseline, candidate)
    columns, num_images = pair_images(baseline, candidate)
    check_same_labels(baseline, candidate, columns, num_images)
    views = ("mapped", "fine")
    curves = {
        (job, view): prepare_view(item.protocol_object(), item.state, view, cols, num_images)
        for job, item, cols in (("baseline", baseline, columns[0]), ("candidate", candidate, columns[1]))
        for view in views
    }
    curves = _share_ground_truth(curves)
    exact = {"baseline": baseline.computed(), "candidate": candidate.computed()}
    replicates = resampled_ap_all(curves, _draws(num_images, resamples, seed), threads=threads)
    table = baseline.class_table
    names = {"mapped": table.mapped_names, "fine": table.fine_names}
    summary = {
        view: _view_comparison(
            view, names[view], curves[("baseline", view)], exact, replicates, confidence, interval
        )
        for view in views
    }
    return Comparison(baseline.protocol, interval, resamples, seed, confidence, num_images, summary)


# ------------------------------------------------------------------------------------------- checks
def check_comparable(baseline: ComparableState, candidate: ComparableState) -> None:
    if baseline.protocol != candidate.protocol:
        raise ComparisonError(
            "comparison_protocol_differs",
            f"the baseline was computed with protocol {baseline.protocol!r}, the candidate with "
            f"{candidate.protocol!r}: validate both with the same protocol",
        )
    if baseline.class_table != candidate.class_table:
        raise ComparisonError(
            "comparison_classes_differ",
            "the two checkpoints carry different class tables (names or fine -> mapped map): "
            "their APs are not about the same classes",
        )


def pair_images(baseline: ComparableState, candidate: ComparableState) -> tuple[tuple[np.ndarray, ...], int]:
    """The shared resampling column of each image of both states (columns: sorted keys; a key that repeats
    pairs its k-th occurrences), and the number of images. ``comparison_images_differ`` unless both hold
    the same keys the same number of times."""
    keys = [np.asarray(list(item.image_keys), dtype=object) for item in (baseline, candidate)]
    for item, item_keys in zip((baseline, candidate), keys, strict=True):
        if item_keys.size != np.asarray(item.state["image_ids"]).size:
            raise ComparisonError(
                "comparison_state_invalid",
                f"the state holds {np.asarray(item.state['image_ids']).size} images but "
                f"{item_keys.size} image keys",
            )
    orders = [np.argsort(item_keys.astype(str), kind="stable") for item_keys in keys]
    sorted_keys = [item_keys[order] for item_keys, order in zip(keys, orders, strict=True)]
    if sorted_keys[0].size != sorted_keys[1].size or not np.array_equal(sorted_keys[0], sorted_keys[1]):
        only_base = sorted(set(sorted_keys[0]) - set(sorted_keys[1]))[:3]
        only_cand = sorted(set(sorted_keys[1]) - set(sorted_keys[0]))[:3]
        raise ComparisonError(
            "comparison_images_differ",
            f"the validations cover different images ({sorted_keys[0].size} vs {sorted_keys[1].size}; "
            f"only in the baseline: {only_base}, only in the candidate: {only_cand}): compare two "
            "validations of the same dataset and split, or of the same uploaded images",
        )
    columns = []
    for order in orders:
        column = np.empty(order.size, dtype=np.int64)
        column[order] = np.arange(order.size)
        columns.append(column)
    return tuple(columns), int(orders[0].size)


def check_same_labels(
    baseline: ComparableState, candidate: ComparableState, columns: Sequence[np.ndarray], num_images: int
) -> None:
    """``comparison_labels_differ`` unless every paired image has the same ground-truth classes in both."""
    counts = []
    for item, column in zip((baseline, candidate), columns, strict=True):
        ids = np.sort(np.asarray(item.state["image_ids"], dtype=np.int64))
        gt_columns = column[np.searchsorted(ids, np.asarray(item.state["gt_image"], dtype=np.int64))]
        classes = np.asarray(item.state["gt_class"], dtype=np.int64)
        num_classes = item.class_table.num_fine
        counts.append(np.bincount(gt_columns * num_classes + classes, minlength=num_images * num_classes))
    if not np.array_equal(counts[0], counts[1]):
        raise ComparisonError(
            "comparison_labels_differ",
            "the same images have different ground truth in the two validations (labels changed between "
            "the runs?): validate both against the same labels",
        )


# --------------------------------------------------------------------------------------- resampling
def _draws(num_images: int, resamples: int, seed: int) -> list[np.ndarray]:
    """Each resample's drawn image columns, one ``integers`` call per resample (block-size independent)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, num_images, num_images) for _ in range(resamples)]


def _weights(num_images: int, draws: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Multiplicities [I, B] of a block of resamples (or ``draws`` already a weight matrix)."""
    if isinstance(draws, np.ndarray) and draws.ndim == 2:
        return draws.astype(np.float64)
    block = len(draws)
    offsets = np.arange(block)[:, None] * num_images
    flat = (np.asarray(draws) + offsets).ravel()
    counts = np.bincount(flat, minlength=block * num_images).reshape(block, num_images)
    return np.ascontiguousarray(counts.T, dtype=np.float64)


def resampled_ap_all(
    curves: Mapping[tuple[str, str], ViewCurves],
    draws: Sequence[np.ndarray] | np.ndarray,
    threads: int = 2,
) -> dict[tuple[str, str], np.ndarray]:
    """AP [T, C, B] of every (job, view) for every resample; ``draws``: per resample its drawn columns, or
    a weight matrix [I, B]."""
    num_images = next(iter(curves.values())).num_images
    total = draws.shape[1] if isinstance(draws, np.ndarray) and draws.ndim == 2 else len(draws)
    size = _block_size(curves.values())
    blocks = [slice(start, min(start + size, total)) for start in range(0, total, size)]

    def run(block: slice) -> dict[tuple[str, str], np.ndarray]:
        part = draws[:, block] if isinstance(draws, np.ndarray) and draws.ndim == 2 else draws[block]
        weights = _weights(num_images, part)
        tables: list[tuple[np.ndarray, LevelTables]] = []  # jobs with equal ground truth share them
        out = {}
        for key, item in curves.items():
            shared = next((t for gt, t in tables if gt is item.gt_counts), None)
            if shared is None:
                shared = LevelTables.build(item.protocol, item.gt_counts @ weights)
                tables.append((item.gt_counts, shared))
            out[key] = resampled_ap(item, weights, shared)
        return out

    if threads > 1 and len(blocks) > 1:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="smartcash-bootstrap") as pool:
            parts = list(pool.map(run, blocks))
    else:
        parts = [run(block) for block in blocks]
    return {key: np.concatenate([part[key] for part in parts], axis=2) for key in curves}


def _block_size(curves: Any) -> int:
    rows = max([0] + [rows.size for item in curves for rows in item.thresholds])
    return _BLOCK // 2 if rows > _LARGE_VIEW_ROWS else _BLOCK


def _share_ground_truth(curves: dict[tuple[str, str], ViewCurves]) -> dict[tuple[str, str], ViewCurves]:
    """Let the candidate's curves hold the baseline's ground-truth array when they are equal (always after
    ``check_same_labels``, except area-range corner cases), so both use the same level tables."""
    shared = dict(curves)
    for (job, view), item in curves.items():
        base = curves[("baseline", view)]
        if job != "baseline" and np.array_equal(item.gt_counts, base.gt_counts):
            shared[(job, view)] = replace(item, gt_counts=base.gt_counts)
    return shared


# ---------------------------------------------------------------------------------------- summaries
def _view_comparison(
    view: str,
    names: Sequence[str],
    curves: ViewCurves,
    exact: Mapping[str, MetricsResult],
    replicates: Mapping[tuple[str, str], np.ndarray],
    confidence: float,
    method: IntervalMethod,
) -> ViewComparison:
    def numbers(source: Mapping[tuple[str, str], np.ndarray], job: str) -> dict[str, np.ndarray]:
        ap = source[(job, view)]  # [T, C, B]
        return {"ap50": ap[0], "ap50_95": ap.mean(axis=0), "map50": _map(ap[0]), "map50_95": _map(ap.mean(0))}

    # the point values are the jobs' own results (compute() of each whole state), to the last digit
    point = {job: _point_values(exact[job], view, len(names)) for job in ("baseline", "candidate")}
    draws = {job: numbers(replicates, job) for job in ("baseline", "candidate")}

    def compared(metric: str, index: Any = ()) -> DeltaEstimate:
        base, cand = (float(point[job][metric][index][0]) for job in ("baseline", "candidate"))
        delta = draws["candidate"][metric][index] - draws["baseline"][metric][index]
        return estimate(base, cand, delta, confidence, method)

    per_class = tuple(
        ClassComparison(int(c), names[c], compared("ap50", c), compared("ap50_95", c))
        for c in curves.classes_with_gt
    )
    return ViewComparison(view, compared("map50"), compared("map50_95"), per_class)


def _point_values(result: MetricsResult, view: str, num_classes: int) -> dict[str, np.ndarray]:
    """What :func:`_view_comparison` reads, from a computed result: per class id (NaN: no ground truth)
    and the means, each with one "resample" (the whole sample)."""
    chosen = result.mapped if view == "mapped" and result.mapped is not None else result
    per_class = {"ap50": np.full((num_classes, 1), np.nan), "ap50_95": np.full((num_classes, 1), np.nan)}
    for position, class_id in enumerate(chosen.classes):
        per_class["ap50"][int(class_id), 0] = chosen.ap50[position]
        per_class["ap50_95"][int(class_id), 0] = chosen.ap50_95[position]
    means = {"map50": np.array([chosen.map50]), "map50_95": np.array([chosen.map50_95])}
    return {**per_class, **means}


def _map(ap: np.ndarray) -> np.ndarray:
    """Mean over the classes with ground truth in each resample ([C, B] -> [B]); 0 when none has any."""
    present = ~np.isnan(ap)
    count = present.sum(axis=0)
    total = np.where(present, ap, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)
