"""NMS against outputs recorded from YOLOv5 7.0 + torchvision 0.29 (tests/fixtures/nms/make_cases.py).

Pipeline cases replay YOLOv5's ``non_max_suppression`` on stored head outputs and must give the very same
rows, in the same order. Plain cases replay ``torchvision.ops.nms`` on stored boxes and scores and must
give the same kept indices. Among equal scores, YOLOv5's order is that of torch's unstable ``argsort``
(x86-simd-sort on AVX2/AVX-512 CPUs); a machine whose torch orders the stored tie canary differently would
make YOLOv5 itself answer differently there, so the tie-sensitive cases are skipped on it, not failed.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from smartcash_core.ops import nms as nms_module
from smartcash_core.ops.nms import greedy_nms, non_max_suppression

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "nms" / "torchvision_cases.npz"
RECORDED = dict(np.load(FIXTURE))
PIPELINE_CASES = sorted({key.split("/")[1] for key in RECORDED if key.startswith("pipe/")})
PLAIN_CASES = sorted({key.split("/")[1] for key in RECORDED if key.startswith("nms/")})
TIE_SENSITIVE = {"tied", "tied_maxdet7", "tied_small", "tied_single_label", "bf16_scores", "beyond_max_nms"}


def torch_sorts_ties_like_the_recording() -> bool:
    sizes = {key.split("/")[1] for key in RECORDED if key.startswith("canary/")}
    return all(
        np.array_equal(
            torch.from_numpy(RECORDED[f"canary/{size}/values"]).argsort(descending=True).numpy(),
            RECORDED[f"canary/{size}/order"],
        )
        for size in sizes
    )


def recorded_case(name: str) -> tuple[torch.Tensor, dict[str, Any], np.ndarray]:
    source = str(RECORDED[f"pipe/{name}/source"])
    kwargs = ast.literal_eval(str(RECORDED[f"pipe/{name}/kwargs"]))
    return torch.from_numpy(RECORDED[f"input/{source}"])[None], kwargs, RECORDED[f"pipe/{name}/output"]


def test_fixture_is_small_and_complete() -> None:
    assert FIXTURE.stat().st_size < 1_100_000
    assert len(PIPELINE_CASES) >= 20 and len(PLAIN_CASES) >= 7
    assert "torchvision 0.29" in str(RECORDED["meta/versions"])


@pytest.mark.parametrize("name", PIPELINE_CASES)
def test_pipeline_matches_yolov5_with_torchvision(name: str) -> None:
    if name in TIE_SENSITIVE and not torch_sorts_ties_like_the_recording():
        pytest.skip("this torch/CPU orders equal scores differently from the recording machine")
    prediction, kwargs, expected = recorded_case(name)
    (got,) = non_max_suppression(prediction, **kwargs)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    assert np.array_equal(got.numpy(), expected, equal_nan=True)


@pytest.mark.parametrize("name", ["tied", "tied_single_label", "bf16_scores", "dense"])
def test_pipeline_matches_on_the_torch_path_too(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The torch path (CUDA, or torchvision present) with the exact stand-in for torchvision's nms."""
    if name in TIE_SENSITIVE and not torch_sorts_ties_like_the_recording():
        pytest.skip("this torch/CPU orders equal scores differently from the recording machine")
    monkeypatch.setattr(nms_module, "_TORCHVISION_NMS", lambda b, s, t: greedy_nms(b, s, t))
    prediction, kwargs, expected = recorded_case(name)
    (got,) = non_max_suppression(prediction, **kwargs)
    assert np.array_equal(got.numpy(), expected, equal_nan=True)


def test_recorded_cases_cover_the_hard_parts() -> None:
    """The recording holds what it claims: many candidates, equal scores kept out of index order, a
    max_nms cut that changes the answer, and an IoU exactly float32(0.6) that torchvision suppresses."""
    _, _, dense = recorded_case("dense")
    assert len(dense) == 300
    _, _, tied = recorded_case("tied")
    equal_neighbours = tied[:-1, 4] == tied[1:, 4]
    assert equal_neighbours.sum() > 100
    _, _, beyond = recorded_case("beyond_max_nms")
    assert len(beyond) == 170 and bool((beyond[:, 0] < 1000).all())  # the late spots never made the cut
    _, _, at_06 = recorded_case("at_threshold")
    _, _, at_05 = recorded_case("at_threshold_iou0.5")
    assert len(at_06) == len(at_05) == 7
    assert bool(np.isin(np.float32(6), at_06[:, 3])) is False  # the 10 x 6 box: IoU float32(0.6) > 0.6


@pytest.mark.parametrize("name", PLAIN_CASES)
def test_greedy_nms_matches_torchvision_nms(name: str) -> None:
    boxes = torch.from_numpy(RECORDED[f"nms/{name}/boxes"])
    scores = torch.from_numpy(RECORDED[f"nms/{name}/scores"])
    iou = float(RECORDED[f"nms/{name}/iou"])
    kept = greedy_nms(boxes, scores, iou)
    assert kept.dtype == torch.int64
    assert kept.tolist() == RECORDED[f"nms/{name}/kept"].tolist()


@pytest.mark.parametrize("block", [7, 64, 512])
def test_block_size_never_changes_the_answer(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nms_module, "BLOCK", block)
    for name in ("model_conf0.001", "dense_iou0.3", "hostile", "at_threshold"):
        prediction, kwargs, expected = recorded_case(name)
        (got,) = non_max_suppression(prediction, **kwargs)
        assert np.array_equal(got.numpy(), expected, equal_nan=True), name


@pytest.mark.parametrize("head", [16, 300, 5000])
def test_partial_ordering_never_changes_the_answer(head: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ordering only the best candidates first, whatever their number, gives the full sort's answer."""
    monkeypatch.setattr(nms_module, "HEAD", head)
    for name in ("model_conf0.001", "dense", "dense_maxdet37", "dense_classes"):
        prediction, kwargs, expected = recorded_case(name)
        (got,) = non_max_suppression(prediction, **kwargs)
        assert np.array_equal(got.numpy(), expected, equal_nan=True), name
