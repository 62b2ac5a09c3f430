"""Exact greedy NMS against a plain reference loop, and YOLOv5 candidate semantics."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from smartcash_core.ops import nms as nms_module
from smartcash_core.ops.boxes import xywh2xyxy
from smartcash_core.ops.greedy import greedy_few
from smartcash_core.ops.nms import greedy_nms, non_max_suppression


def reference_greedy(boxes: torch.Tensor, scores: torch.Tensor, iou_thres: float) -> list[int]:
    """Textbook greedy NMS over the whole list (no blocks), written from torchvision's CPU kernel.

    Walks candidates by decreasing score (``sorted`` is stable, as torchvision's sort, so ties keep index
    order); each kept box suppresses every later candidate whose float32 IoU exceeds the threshold compared
    in double (as C++ compares a float with a double). ``std::max(a, b)`` is ``b if a < b else a`` and
    ``std::min(a, b)`` is ``b if b < a else a``, which decides what a NaN coordinate does.
    """
    order = sorted(range(len(scores)), key=lambda index: -float(scores[index]))
    b = boxes.float().numpy()[order]
    with np.errstate(invalid="ignore", over="ignore"):
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    suppressed = np.zeros(len(order), dtype=bool)
    kept: list[int] = []
    for position in range(len(order)):
        if suppressed[position]:
            continue
        kept.append(order[position])
        i, rest = b[position], b[position + 1 :]
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            xx1 = np.where(i[0] < rest[:, 0], rest[:, 0], i[0])
            yy1 = np.where(i[1] < rest[:, 1], rest[:, 1], i[1])
            xx2 = np.where(rest[:, 2] < i[2], rest[:, 2], i[2])
            yy2 = np.where(rest[:, 3] < i[3], rest[:, 3], i[3])
            w = np.where(np.float32(0) < xx2 - xx1, xx2 - xx1, np.float32(0))
            h = np.where(np.float32(0) < yy2 - yy1, yy2 - yy1, np.float32(0))
            inter = w * h
            overlap = inter / (area[position] + area[position + 1 :] - inter)
        suppressed[position + 1 :] |= overlap.astype(np.float64) > iou_thres
    return kept


def random_boxes(generator: torch.Generator, count: int, spread: float) -> torch.Tensor:
    centers = torch.rand(count, 2, generator=generator) * spread
    sizes = torch.rand(count, 2, generator=generator) * 40 + 2
    return xywh2xyxy(torch.cat((centers, sizes), 1))


@pytest.mark.parametrize("seed", range(12))
def test_greedy_matches_reference_on_random_boxes(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nms_module, "BLOCK", [512, 64, 7][seed % 3])  # one block, several, many tiny ones
    generator = torch.Generator().manual_seed(seed)
    count = [5, 60, 700, 1200][seed % 4]  # 700 and 1200 span several blocks
    boxes = random_boxes(generator, count, spread=60 + count / 4)
    scores = torch.rand(count, generator=generator)
    iou = [0.3, 0.5, 0.6, 0.7][seed % 4]
    kept = greedy_nms(boxes, scores, iou).tolist()
    assert kept == reference_greedy(boxes, scores, iou)


@pytest.mark.parametrize("seed", range(4))
def test_ties_keep_the_earlier_box_like_a_stable_sort(seed: int) -> None:
    generator = torch.Generator().manual_seed(100 + seed)
    boxes = random_boxes(generator, 600, spread=120)
    scores = torch.randint(0, 5, (600,), generator=generator).float() / 4  # heavy ties
    boxes[10] = boxes[11]  # identical boxes with equal score: the lower index must win
    scores[10] = scores[11] = 2.0
    kept = greedy_nms(boxes, scores, 0.5).tolist()
    assert kept == reference_greedy(boxes, scores, 0.5)
    assert 10 in kept and 11 not in kept


def test_early_stop_keeps_the_greedy_prefix() -> None:
    generator = torch.Generator().manual_seed(7)
    boxes = random_boxes(generator, 2000, spread=400)
    scores = torch.rand(2000, generator=generator)
    full = greedy_nms(boxes, scores, 0.45).tolist()
    assert len(full) > 50
    assert greedy_nms(boxes, scores, 0.45, max_keep=50).tolist() == full[:50]


def test_empty_and_degenerate_inputs() -> None:
    assert greedy_nms(torch.zeros(0, 4), torch.zeros(0), 0.5).shape == (0,)
    # zero area: IoU is 0/0 = NaN, never > thres, so nothing is suppressed
    points = torch.tensor([[5.0, 5.0, 5.0, 5.0], [5.0, 5.0, 5.0, 5.0]])
    assert greedy_nms(points, torch.tensor([0.9, 0.8]), 0.5).tolist() == [0, 1]


def reference_yolov5_nms(
    prediction: torch.Tensor,
    conf: float,
    iou: float,
    max_det: int,
    multi_label: bool = True,
    max_nms: int = 30000,
) -> list[torch.Tensor]:
    """YOLOv5 7.0's candidate rule written out row by row, its unstable torch ``argsort`` (which orders
    equal scores), the ``max_nms`` cut, then the class-offset reference greedy and the ``max_det`` cut."""
    results = []
    for image_pred in prediction:
        rows = []
        for row in image_pred:
            if not row[4] > conf:
                continue
            box = xywh2xyxy(row[None, :4])[0]
            class_scores = row[5:] * row[4]
            classes = range(len(class_scores)) if multi_label else [int(class_scores.argmax())]
            for cls in classes:
                if class_scores[cls] > conf:
                    rows.append(torch.cat((box, class_scores[cls, None], torch.tensor([float(cls)]))))
        if not rows:
            results.append(torch.zeros(0, 6))
            continue
        table = torch.stack(rows)
        table = table[table[:, 4].argsort(descending=True)[:max_nms]]
        kept = reference_greedy(table[:, :4] + table[:, 5:6] * 7680, table[:, 4], iou)[:max_det]
        results.append(table[kept])
    return results


def make_prediction(seed: int, images: int = 2, anchors: int = 150, classes: int = 4) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    xy = torch.rand(images, anchors, 2, generator=generator) * 200
    wh = torch.rand(images, anchors, 2, generator=generator) * 60 + 4
    obj = torch.rand(images, anchors, 1, generator=generator)
    cls = torch.rand(images, anchors, classes, generator=generator)
    return torch.cat((xy, wh, obj, cls), 2)


@pytest.mark.parametrize("seed", range(3))
def test_non_max_suppression_matches_reference(seed: int) -> None:
    prediction = make_prediction(seed)
    ours = non_max_suppression(prediction, conf_thres=0.25, iou_thres=0.45, max_det=40)
    reference = reference_yolov5_nms(prediction, 0.25, 0.45, 40)
    assert len(ours) == 2
    for got, want in zip(ours, reference, strict=True):
        assert got.shape == want.shape and got.shape[1] == 6
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        assert bool((got[:-1, 4] >= got[1:, 4]).all())


def test_multi_label_emits_several_classes_per_box_and_single_label_one() -> None:
    prediction = torch.tensor([[[50.0, 50.0, 20.0, 20.0, 0.9, 0.8, 0.7, 0.0001]]])
    multi = non_max_suppression(prediction, conf_thres=0.01, iou_thres=0.5)[0]
    assert sorted(multi[:, 5].tolist()) == [0.0, 1.0]
    torch.testing.assert_close(multi[:, 4], torch.tensor([0.72, 0.63]))
    single = non_max_suppression(prediction, conf_thres=0.01, iou_thres=0.5, multi_label=False)[0]
    assert single[:, 5].tolist() == [0.0]
    torch.testing.assert_close(single[0, :4], torch.tensor([40.0, 40.0, 60.0, 60.0]))


def test_scores_equal_to_conf_thres_are_not_candidates() -> None:
    """YOLOv5 keeps obj > conf and obj * cls > conf, strictly (0.5 * 0.5 is exactly 0.25 in float32). The
    second row's products exceed conf (class scores above 1, as no sigmoid gives) but its obj does not."""
    prediction = torch.tensor(
        [[[50.0, 50.0, 20.0, 20.0, 0.5, 0.5, 0.75], [90.0, 50.0, 20.0, 20.0, 0.25, 2.0, 2.0]]]
    )
    (out,) = non_max_suppression(prediction, conf_thres=0.25, iou_thres=0.5)
    assert out[:, 4].tolist() == [0.375] and out[:, 5].tolist() == [1.0]


def test_classes_filter_max_nms_and_empty_images() -> None:
    prediction = make_prediction(5)
    only_two = non_max_suppression(prediction, conf_thres=0.1, classes=[2])
    assert all(bool((out[:, 5] == 2).all()) for out in only_two)
    assert all(out.shape[0] <= 3 for out in non_max_suppression(prediction, conf_thres=0.1, max_nms=3))
    empty = non_max_suppression(torch.zeros(1, 10, 9), conf_thres=0.5)
    assert empty[0].shape == (0, 6)
    with pytest.raises(ValueError, match="conf_thres"):
        non_max_suppression(prediction, conf_thres=1.5)
    with pytest.raises(ValueError, match="5 \\+ classes"):
        non_max_suppression(torch.zeros(1, 10, 5))
    with pytest.raises(ValueError, match="5 \\+ classes"):
        non_max_suppression(torch.zeros(10, 9))


def test_backend_reports_the_fallback_without_torchvision() -> None:
    expected = "torchvision" if nms_module._TORCHVISION_NMS is not None else "torch"
    assert nms_module.nms_backend() == expected


def test_many_candidates_stay_cheap() -> None:
    """30000 heavily overlapping candidates: the block scheme must finish fast (no N x N matrix)."""
    generator = torch.Generator().manual_seed(3)
    boxes = random_boxes(generator, 30000, spread=600)
    scores = torch.rand(30000, generator=generator)
    kept = greedy_nms(boxes, scores, 0.6, max_keep=300)
    assert kept.shape == (300,)
    assert kept.tolist() == reference_greedy_prefix(boxes, scores, 0.6, 300)


def reference_greedy_prefix(boxes: torch.Tensor, scores: torch.Tensor, iou: float, keep: int) -> list[int]:
    """Reference greedy on the shortest score-ordered prefix that yields ``keep`` boxes (fast enough)."""
    order = torch.sort(scores, descending=True, stable=True).indices
    prefix = 1000
    while True:
        head = order[:prefix]
        kept = [int(head[i]) for i in reference_greedy(boxes[head], scores[head], iou)]
        if len(kept) >= keep or prefix >= len(order):
            return kept[:keep]
        prefix *= 2


@pytest.mark.parametrize("multi_label", [True, False])
def test_torch_path_equals_numpy_path(monkeypatch: pytest.MonkeyPatch, multi_label: bool) -> None:
    """The torch path (CUDA, or torchvision present) keeps the same rows as the CPU numpy path."""
    prediction = make_prediction(9, anchors=400, classes=6)
    numpy_out = non_max_suppression(prediction, conf_thres=0.05, iou_thres=0.5, multi_label=multi_label)
    monkeypatch.setattr(nms_module, "_TORCHVISION_NMS", lambda b, s, t: greedy_nms(b, s, t))
    torch_out = non_max_suppression(prediction, conf_thres=0.05, iou_thres=0.5, multi_label=multi_label)
    for got, want in zip(torch_out, numpy_out, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert sum(len(out) for out in numpy_out) > 10


COORDINATES = st.one_of(
    st.integers(-4, 24).map(float),  # a coarse grid: identical, touching and nested boxes are common
    st.floats(-30, 60, width=32),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e30]),
)
SCORES = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]) | st.floats(0, 1, width=32)  # equal scores often
THRESHOLDS = st.sampled_from([0.0, 0.1, 0.3, 0.45, 0.5, 0.6, 1.0]) | st.floats(0, 1)


@contextmanager
def tuned(block: int, head: int) -> Iterator[None]:
    """Block and head sizes of the numpy path (hypothesis runs many examples per test call)."""
    saved = nms_module.BLOCK, nms_module.HEAD
    nms_module.BLOCK, nms_module.HEAD = block, head
    try:
        yield
    finally:
        nms_module.BLOCK, nms_module.HEAD = saved


@settings(max_examples=150, deadline=None)
@given(
    boxes=st.lists(st.tuples(*[COORDINATES] * 4), max_size=70),
    scores=st.lists(SCORES, min_size=70, max_size=70),
    iou=THRESHOLDS,
    block=st.sampled_from([3, 16, 512]),
)
def test_greedy_nms_equals_the_textbook_loop(
    boxes: list[tuple[float, ...]], scores: list[float], iou: float, block: int
) -> None:
    box_tensor = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    score_tensor = torch.tensor(scores[: len(boxes)], dtype=torch.float32)
    with tuned(block, nms_module.HEAD):
        kept = greedy_nms(box_tensor, score_tensor, iou).tolist()
    assert kept == reference_greedy(box_tensor, score_tensor, iou)


@settings(max_examples=150, deadline=None)
@given(boxes=st.lists(st.tuples(*[COORDINATES] * 4), max_size=64), iou=THRESHOLDS, limit=st.integers(1, 70))
def test_greedy_few_equals_the_textbook_loop(boxes: list[tuple[float, ...]], iou: float, limit: int) -> None:
    """The all-pairs path for a few boxes (given in score order), hostile coordinates included."""
    box_array = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = torch.linspace(1, 0, len(boxes) + 2)[1:-1]  # distinct and decreasing: the given order
    expected = reference_greedy(torch.from_numpy(box_array), scores, iou)[:limit]
    assert greedy_few(box_array, iou, limit).tolist() == expected


def test_greedy_few_refuses_more_than_64_boxes() -> None:
    with pytest.raises(ValueError, match="at most 64"):
        greedy_few(np.zeros((65, 4), dtype=np.float32), 0.5, 10)


@settings(max_examples=120, deadline=None)
@given(
    rows=st.integers(0, 60),
    classes=st.integers(1, 4),
    data=st.data(),
    iou=THRESHOLDS,
    max_det=st.sampled_from([1, 3, 300]),
    max_nms=st.sampled_from([5, 30000]),
    multi_label=st.booleans(),
    sizes=st.sampled_from([(3, 2), (16, 4), (512, 2048)]),
)
def test_non_max_suppression_equals_yolov5_written_out(
    rows: int,
    classes: int,
    data: st.DataObject,
    iou: float,
    max_det: int,
    max_nms: int,
    multi_label: bool,
    sizes: tuple[int, int],
) -> None:
    """Random head outputs on a coarse grid with quantised scores (so equal scores and equal boxes are
    everywhere): the numpy path, with tiny blocks and head sizes too, equals YOLOv5's steps written out."""
    grid = st.integers(0, 12).map(lambda v: v * 2.5)
    quantised = st.integers(0, 8).map(lambda v: v / 8)
    values = data.draw(
        st.lists(st.tuples(*[grid] * 4, *[quantised] * (1 + classes)), min_size=rows, max_size=rows)
    )
    prediction = torch.tensor(values, dtype=torch.float32).reshape(1, rows, 5 + classes)
    with tuned(*sizes):
        (got,) = non_max_suppression(
            prediction, 0.1, iou, multi_label=multi_label, max_det=max_det, max_nms=max_nms
        )
    (want,) = reference_yolov5_nms(prediction, 0.1, iou, max_det, multi_label and classes > 1, max_nms)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def counting_full_sorts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records the size of every full sort of the candidate scores the numpy path makes."""
    calls: list[int] = []
    full_sort = nms_module.yolov5_order

    def spy(scores: np.ndarray) -> np.ndarray:
        calls.append(len(scores))
        return full_sort(scores)

    monkeypatch.setattr(nms_module, "yolov5_order", spy)
    return calls


def test_partial_order_falls_back_on_ties_that_matter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many candidates whose best scores tie: the partial order cannot decide their order, so the answer
    must come from torch's full (unstable) sort, exactly as YOLOv5's argsort orders them."""
    full_sorts = counting_full_sorts(monkeypatch)
    generator = torch.Generator().manual_seed(11)
    prediction = make_prediction(11, images=1, anchors=3000, classes=6)
    prediction[..., 4:] = torch.randint(1, 9, prediction[..., 4:].shape, generator=generator) / 8
    (got,) = non_max_suppression(prediction, conf_thres=0.01, iou_thres=0.5, max_det=100)
    (want,) = reference_yolov5_nms_fast(prediction, 0.01, 0.5, 100)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert bool((got[:-1, 4] == got[1:, 4]).any())
    assert len(full_sorts) == 1 and full_sorts[0] > 2 * nms_module.HEAD  # tried the partial order first


def test_many_distinct_scores_need_no_full_sort(monkeypatch: pytest.MonkeyPatch) -> None:
    """The NMS-bound case: thousands of candidates with distinct scores are ordered only as far as NMS
    needs them, and the answer is still the full sort's."""
    full_sorts = counting_full_sorts(monkeypatch)
    prediction = make_prediction(12, images=2, anchors=3000, classes=6)
    got = non_max_suppression(prediction, conf_thres=0.01, iou_thres=0.5, max_det=100)
    want = reference_yolov5_nms_fast(prediction, 0.01, 0.5, 100)
    for image_got, image_want in zip(got, want, strict=True):
        torch.testing.assert_close(image_got, image_want, rtol=0, atol=0)
        assert len(image_got) == 100
    assert full_sorts == []


def reference_yolov5_nms_fast(
    prediction: torch.Tensor, conf: float, iou: float, max_det: int
) -> list[torch.Tensor]:
    """:func:`reference_yolov5_nms` for large inputs: the candidate rule vectorised (same float32 steps)."""
    results = []
    for image_pred in prediction:
        rows = image_pred[image_pred[:, 4] > conf]
        class_scores = rows[:, 5:] * rows[:, 4:5]
        box_index, cls = (class_scores > conf).nonzero(as_tuple=True)
        boxes = xywh2xyxy(rows[:, :4])[box_index]
        table = torch.cat((boxes, class_scores[box_index, cls, None], cls[:, None].float()), 1)
        table = table[table[:, 4].argsort(descending=True)[:30000]]
        kept = reference_greedy_prefix(table[:, :4] + table[:, 5:6] * 7680, table[:, 4], iou, max_det)
        results.append(table[kept])
    return results
