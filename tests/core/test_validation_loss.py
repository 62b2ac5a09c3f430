"""The optional validation loss: targets in the letterboxed input, and the loss it yields on real data."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from smartcash_core.checkpoint import LoadedModel, load_model
from smartcash_core.classes import default_class_table
from smartcash_core.data.loader import ImageMeta, ImageRef
from smartcash_core.model import build_model
from smartcash_core.validation.loss import letterboxed_targets
from smartcash_core.validation.params import ValidationParams
from smartcash_core.validation.runner import run_validation

FIXTURE_VAL = Path(__file__).resolve().parents[1] / "fixtures" / "yolov5" / "val"


def test_targets_follow_gain_and_padding_into_the_batch_input() -> None:
    """A 640x480 image at gain 0.5 in a 256x320 (H, W) input sits 8 px below the top edge."""
    metas = [
        ImageMeta(ImageRef(7, "a.jpg"), original_hw=(480, 640), gain=0.5, pad=(0.0, 8.0)),
        ImageMeta(ImageRef(9, "b.jpg"), original_hw=(480, 640), gain=0.5, pad=(0.0, 8.0)),
    ]
    labels = {7: np.array([[3, 0.5, 0.5, 0.25, 0.5]], dtype=np.float32), 9: np.zeros((0, 5), np.float32)}
    targets = letterboxed_targets(metas, labels, (256, 320))
    expected = torch.tensor([[0, 3, 0.5, (120 + 8) / 256, 0.25, 120 / 256]])
    torch.testing.assert_close(targets, expected)
    assert letterboxed_targets(metas[1:], labels, (256, 320)).shape == (0, 6)


@pytest.fixture(scope="module")
def trained() -> LoadedModel:
    return load_model(FIXTURE_VAL.parent / "yolov5n_banknotes.pt", "cpu")


def test_loss_is_reported_and_leaves_the_metrics_unchanged(trained: LoadedModel) -> None:
    params = ValidationParams(imgsz=320, batch_size=32, device="cpu", workers=1)
    plain = run_validation(trained, FIXTURE_VAL, params)
    with_loss = run_validation(trained, FIXTURE_VAL, replace(params, compute_loss=True))
    assert "loss" not in plain.metrics
    loss = with_loss.metrics["loss"]
    assert set(loss) == {"box", "obj", "cls", "total", "gains"}
    assert all(loss[part] > 0 for part in ("box", "obj", "cls", "total"))
    assert loss["total"] == pytest.approx(loss["box"] + loss["obj"] + loss["cls"])
    assert with_loss.metrics["map50_95"] == plain.metrics["map50_95"]
    assert with_loss.speed_ms_per_image["loss"] > 0


def test_a_trained_model_has_a_lower_loss_than_an_untrained_one(trained: LoadedModel) -> None:
    torch.manual_seed(0)
    untrained_net = build_model(trained.model.yaml, 17).eval()
    untrained = LoadedModel(
        model=untrained_net, class_table=default_class_table(), imgsz=320, stride=32, sha256="untrained",
        source=Path("untrained"), device=torch.device("cpu"), metadata={}, num_params=0,
    )
    params = ValidationParams(imgsz=320, batch_size=32, device="cpu", workers=1, compute_loss=True)
    trained_loss = run_validation(trained, FIXTURE_VAL, params).metrics["loss"]
    untrained_loss = run_validation(untrained, FIXTURE_VAL, params).metrics["loss"]
    for part in ("box", "obj", "cls", "total"):
        assert trained_loss[part] < untrained_loss[part], part
