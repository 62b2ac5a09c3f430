"""The bootstrap's fast path (``resample_ap``) against the literal resample (``compute()`` on the drawn images
concatenated in draw order), for both protocols and both views, with and without score ties."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from smartcash_core.classes import default_class_table
from smartcash_core.metrics import DetectionEvaluator, MetricsResult
from smartcash_core.metrics.resample_ap import (
    _COCO_TIE,
    _GRID,
    _YOLO_TIE,
    LevelTables,
    grid_count,
    resampled_ap,
)
from smartcash_core.metrics.resample_curves import prepare_view
from tests.metrics.bootstrap_simulation import evaluator_of, simulate, untied
from tests.metrics.helpers import random_images
from tests.metrics.resample_reference import literal_resample

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden"
TOLERANCE = 1e-12


def _distinct_scores(images: list[tuple[np.ndarray, ...]], seed: int) -> list[tuple[np.ndarray, ...]]:
    """The images with every score replaced by a distinct one (no ties anywhere), NMS order kept."""
    total = sum(len(image[1]) for image in images)
    values = (np.random.default_rng(seed).permutation(total) + 1) / (total + 1)
    out, used = [], 0
    for boxes, scores, classes, gt, gt_classes in images:
        new = values[used : used + len(scores)].astype(np.float32)
        used += len(scores)
        order = np.argsort(-new, kind="stable")
        out.append((boxes[order], new[order], classes[order], gt, gt_classes))
    return out


def _evaluator(images: list[tuple[np.ndarray, ...]], protocol: str) -> DetectionEvaluator:
    evaluator = DetectionEvaluator(17, protocol, default_class_table())
    evaluator.update_batch(*(list(column) for column in zip(*images, strict=True)))
    return evaluator


def _view_result(result: MetricsResult, view: str) -> MetricsResult:
    if view == "fine":
        return result
    assert result.mapped is not None
    return result.mapped


def _max_difference(fast: np.ndarray, literal: MetricsResult) -> float:
    """fast [T, C] (NaN: class absent) against the literal result's per-class AP [C', T]."""
    present = np.flatnonzero(~np.isnan(fast[0]))
    assert present.tolist() == literal.classes.tolist()
    return float(np.abs(fast[:, present].T - literal.ap).max(initial=0.0))


def _fast_ap(evaluator: DetectionEvaluator, view: str, draws: list[np.ndarray]) -> np.ndarray:
    state = evaluator.state_arrays()
    count = int(np.asarray(state["image_ids"]).size)
    curves = prepare_view(evaluator.detection_protocol, state, view, np.arange(count), count)
    weights = np.stack([np.bincount(d, minlength=count) for d in draws], axis=1)
    return resampled_ap(curves, weights)


def _draws(count: int, resamples: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, count, count) for _ in range(resamples)]  # in draw order, not sorted


# ------------------------------------------------------------------------------------------ grid counts
@pytest.mark.parametrize("protocol", ["yolo", "coco"])
def test_grid_count_is_exact(protocol: str) -> None:
    for n in range(1, 420):
        level = np.arange(n + 1, dtype=np.float64)
        if protocol == "yolo":
            expected = (_GRID[None, :] < (level / (n + 1e-16))[:, None]).sum(axis=1)
            got = grid_count(level, np.full(level.size, n + 1e-16), _YOLO_TIE)
        else:
            expected = (_GRID[None, :] <= (level / n)[:, None]).sum(axis=1)
            got = grid_count(level, np.full(level.size, float(n)), _COCO_TIE)
        assert np.array_equal(got, expected), n


@pytest.mark.parametrize("protocol", ["yolo", "coco"])
def test_level_tables_against_brute_force(protocol: str) -> None:
    counts = np.array([[1.0, 2.0, 3.0, 7.0], [50.0, 99.0, 100.0, 101.0], [0.0, 250.0, 333.0, 1000.0]])
    tables = LevelTables.build(protocol, counts)
    for (c, b), n in np.ndenumerate(tables.n):
        level = np.arange(int(n) + 2, dtype=np.float64)
        at = tables.base[c, b] + level.astype(np.int64)
        if protocol == "coco":
            expected = (_GRID[None, :] <= (level / n)[:, None]).sum(axis=1) * (level > 0)
            assert np.array_equal(tables.steps[at], expected)
            continue
        recall = level / (n + 1e-16)
        grid = (_GRID[None, :] < recall[:, None]).sum(axis=1)
        assert np.array_equal(tables.grid[at], grid)
        for k in range(int(n)):  # share of each piece's left end, point by point
            inside = (recall[k] <= _GRID) & (recall[k + 1] > _GRID) & (_GRID < 1.0)
            weights = np.trapezoid(
                np.eye(_GRID.size)[inside], _GRID, axis=1
            )  # trapezoid weight of each point
            share = (recall[k + 1] - _GRID[inside]) / (recall[k + 1] - recall[k])
            assert tables.entry[at[k]] == pytest.approx(float((weights * share).sum()), abs=1e-15)
    assert not tables.present[2, 0] and tables.present[2, 1]


# -------------------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("protocol", ["yolo", "coco"])
@pytest.mark.parametrize("view", ["fine", "mapped"])
def test_equals_the_literal_resample_without_ties(protocol: str, view: str) -> None:
    worst = 0.0
    for seed in range(8):
        evaluator = _evaluator(_distinct_scores(random_images(seed, 30), seed), protocol)
        count = evaluator.num_images
        draws = _draws(count, 8, seed)
        fast = _fast_ap(evaluator, view, draws)
        for b, drawn in enumerate(draws):
            literal = _view_result(literal_resample(evaluator, drawn).compute(), view)
            worst = max(worst, _max_difference(fast[:, :, b], literal))
    assert worst < TOLERANCE


@pytest.mark.parametrize("protocol", ["yolo", "coco"])
def test_equals_the_literal_resample_on_simulated_detections(protocol: str) -> None:
    """Many objects and false positives per class (more than 100 ground truths: one grid point per level)."""
    baseline, _ = simulate(np.random.default_rng(3), 300)
    evaluator = evaluator_of(untied(baseline), protocol)
    draws = _draws(evaluator.num_images, 6, 4)
    for view in ("fine", "mapped"):
        fast = _fast_ap(evaluator, view, draws)
        for b, drawn in enumerate(draws):
            literal = _view_result(literal_resample(evaluator, drawn).compute(), view)
            assert _max_difference(fast[:, :, b], literal) < TOLERANCE


@pytest.mark.parametrize("protocol", ["yolo", "coco"])
def test_every_image_once_equals_compute_even_with_ties(protocol: str) -> None:
    """All multiplicities 1: the fast path keeps the full sample's own sort, so ties fall as in compute()."""
    for seed in range(6):
        evaluator = _evaluator(random_images(seed, 30), protocol)  # scores on a 0.1 grid: many ties
        ones = [np.arange(evaluator.num_images)]
        result = evaluator.compute()
        for view in ("fine", "mapped"):
            assert (
                _max_difference(_fast_ap(evaluator, view, ones)[:, :, 0], _view_result(result, view))
                < TOLERANCE
            )


def _rescored(evaluator: DetectionEvaluator) -> DetectionEvaluator:
    """The same state with distinct scores that keep the full sample's sort order (ties broken as the fast
    path breaks them)."""
    protocol = evaluator.detection_protocol
    state = protocol.image_ordered(evaluator.state_arrays())
    scores = np.asarray(state["pred_score"])
    if evaluator.protocol == "yolo":
        order = np.argsort(-scores.astype(np.float32))  # YOLOv5's call: its tie order, split by class later
    else:
        order = np.argsort(-scores, kind="stable")  # pycocotools: ties in image order, then row order
    fresh = np.empty(scores.size, dtype=np.float32)
    fresh[order] = (scores.size - np.arange(scores.size)) / (scores.size + 1)
    state["pred_score"] = fresh
    return DetectionEvaluator.from_state_arrays(
        state, evaluator.num_classes, evaluator.protocol, evaluator.class_table
    )


@pytest.mark.parametrize("protocol", ["yolo", "coco"])
def test_ties_only_change_the_order_of_tied_predictions(protocol: str) -> None:
    """With score ties the fast path equals the literal resample whose ties are broken in the full sample's
    order; the literal resample itself (the engine's own tie order) differs on some resamples, so the data
    do exercise ties."""
    differs = 0
    for seed in range(6):
        evaluator = _evaluator(random_images(seed, 30), protocol)
        rescored = _rescored(evaluator)
        draws = _draws(evaluator.num_images, 6, seed)
        for view in ("fine", "mapped"):
            fast = _fast_ap(evaluator, view, draws)
            for b, drawn in enumerate(draws):
                broken = _view_result(literal_resample(rescored, drawn).compute(), view)
                assert _max_difference(fast[:, :, b], broken) < TOLERANCE
                engine = _view_result(literal_resample(evaluator, drawn).compute(), view)
                differs += _max_difference(fast[:, :, b], engine) > TOLERANCE
    assert differs > 0


@pytest.mark.parametrize("name", ["demo_native", "coco_square", "uploaded_batch"])
def test_golden_states_every_image_once(name: str) -> None:
    """Real detections of the demo model (both protocols): the fast path reproduces compute() exactly."""
    with np.load(GOLDEN / f"{name}_state.npz", allow_pickle=False) as arrays:
        state = dict(arrays)
    protocol = "coco" if "pred_area_bits" in state else "yolo"
    evaluator = DetectionEvaluator.from_state_arrays(state, 17, protocol, default_class_table())
    result = evaluator.compute()
    ones = [np.arange(evaluator.num_images)]
    for view in ("fine", "mapped"):
        assert (
            _max_difference(_fast_ap(evaluator, view, ones)[:, :, 0], _view_result(result, view)) < TOLERANCE
        )


def test_empty_and_degenerate_views() -> None:
    """No predictions at all, and images without ground truth: AP 0 where ground truth exists, NaN where
    a class has none."""
    images = [
        (
            np.zeros((0, 4)),
            np.zeros(0),
            np.zeros(0, dtype=np.int64),
            np.array([[0, 0, 10, 10.0]]),
            np.array([3]),
        ),
        (
            np.zeros((0, 4)),
            np.zeros(0),
            np.zeros(0, dtype=np.int64),
            np.zeros((0, 4)),
            np.zeros(0, dtype=np.int64),
        ),
    ]
    for protocol in ("yolo", "coco"):
        evaluator = _evaluator(images, protocol)
        fast = _fast_ap(evaluator, "fine", [np.array([0, 1]), np.array([1, 1])])
        assert np.all(fast[:, 3, 0] == 0.0) and np.isnan(fast[:, 3, 1]).all()
        assert np.isnan(fast[:, 0, :]).all()
