"""``--loss`` uses the loss gains the checkpoint trained with (issue 13), not scratch-low at the validated
size.

The YOLOv5 fixture was trained at 320 with hyp.scratch-low: its ``model.hyp`` holds the gains train.py
scaled (obj 0.25 = 1.0 * (320/640)^2). Validating it at 640 must keep them; a checkpoint without gains falls
back to scratch-low scaled for its own training size, with a ``loss_gains_default`` warning.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from smartcash_core.checkpoint import LoadedModel, load_model
from smartcash_core.checkpoint.convert import convert_checkpoint
from smartcash_core.checkpoint.native import save_checkpoint
from smartcash_core.classes import default_class_table
from smartcash_core.errors import CheckpointError, CheckpointMetadataError
from smartcash_core.model.yolo import build_model
from smartcash_core.training.loss import LossHyp, YoloLoss
from smartcash_core.validation.params import ValidationParams
from smartcash_core.validation.runner import run_validation

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "yolov5"
WEIGHTS = FIXTURES / "yolov5n_banknotes.pt"
VAL = FIXTURES / "val"
SCRATCH_LOW_AT_320 = {"box": 0.05, "obj": 0.25, "cls": 0.10625, "anchor_t": 4.0, "label_smoothing": 0.0}


@pytest.fixture(scope="module")
def trained() -> LoadedModel:
    return load_model(WEIGHTS, "cpu")


def _loss(model: LoadedModel, imgsz: int) -> tuple[dict, list[dict]]:
    params = ValidationParams(imgsz=imgsz, batch_size=40, device="cpu", workers=1, compute_loss=True)
    result = run_validation(model, VAL, params)
    return result.metrics["loss"], result.warnings


def test_a_yolov5_checkpoint_brings_its_own_gains_whatever_the_validation_size(trained: LoadedModel) -> None:
    assert trained.metadata["loss_hyp_from"] == "model.hyp"
    loss, warnings = _loss(trained, 640)
    gains = loss["gains"]
    assert gains["source"] == "checkpoint" and gains["from"] == "model.hyp"
    assert {key: gains[key] for key in SCRATCH_LOW_AT_320} == SCRATCH_LOW_AT_320  # not obj 1.0 (640)
    assert warnings == []


def test_the_stored_gains_are_the_ones_applied(trained: LoadedModel) -> None:
    """Doubling ``obj`` in the checkpoint doubles the obj term and leaves box and cls alone; label
    smoothing changes cls only."""
    base, _ = _loss(trained, 160)
    hyp = dict(trained.metadata["loss_hyp"])
    doubled = dataclasses.replace(trained, metadata={**trained.metadata, "loss_hyp": {**hyp, "obj": 0.5}})
    loss, _ = _loss(doubled, 160)
    assert loss["obj"] == pytest.approx(2 * base["obj"], rel=1e-6)
    assert (loss["box"], loss["cls"]) == pytest.approx((base["box"], base["cls"]), rel=1e-9)
    smoothed = {**trained.metadata, "loss_hyp": {**hyp, "label_smoothing": 0.1}}
    loss, _ = _loss(dataclasses.replace(trained, metadata=smoothed), 160)
    assert loss["cls"] != pytest.approx(base["cls"], rel=1e-3) and loss["obj"] == pytest.approx(base["obj"])
    assert loss["gains"]["label_smoothing"] == 0.1


def _native(path: Path, imgsz: int, loss_hyp: dict | None) -> Path:
    torch.manual_seed(0)
    model = build_model("yolov5n", num_classes=17).eval()
    return save_checkpoint(path, model, class_table=default_class_table(), imgsz=imgsz, loss_hyp=loss_hyp)


def test_a_native_checkpoint_stores_gains_and_one_without_gets_documented_defaults(tmp_path: Path) -> None:
    stored = {**SCRATCH_LOW_AT_320, "obj": 0.7, "fl_gamma": 1.5}  # scratch-high-like, focal loss
    with_gains = load_model(_native(tmp_path / "with.safetensors", 320, stored), "cpu")
    loss, warnings = _loss(with_gains, 128)
    assert loss["gains"]["source"] == "checkpoint" and loss["gains"]["from"] == "metadata loss_hyp"
    assert (loss["gains"]["obj"], loss["gains"]["fl_gamma"]) == (0.7, 1.5) and warnings == []
    without = load_model(_native(tmp_path / "without.safetensors", 320, None), "cpu")
    loss, warnings = _loss(without, 128)
    # scratch-low scaled for the checkpoint's training size (320), not for the validation size (128)
    assert loss["gains"]["source"] == "default" and loss["gains"]["obj"] == pytest.approx(0.25)
    assert "imgsz 320" in loss["gains"]["from"]
    assert [warning["code"] for warning in warnings] == ["loss_gains_default"]


def test_converting_a_yolov5_checkpoint_keeps_its_gains(tmp_path: Path, trained: LoadedModel) -> None:
    _, written = convert_checkpoint(WEIGHTS, tmp_path / "converted.safetensors")
    converted = load_model(written, "cpu")
    assert converted.metadata["loss_hyp"] == trained.metadata["loss_hyp"]


@pytest.mark.parametrize(
    ("field", "value"), [("obj", -1.0), ("box", float("inf")), ("cls", "0.5"), ("label_smoothing", 2.0)]
)
def test_bad_stored_gains_are_refused_on_save_and_on_load(tmp_path: Path, field: str, value: object) -> None:
    with pytest.raises(CheckpointError, match=f"loss_hyp.{field}"):
        _native(tmp_path / "bad.safetensors", 320, {**SCRATCH_LOW_AT_320, field: value})
    path = _native(tmp_path / "ok.safetensors", 320, SCRATCH_LOW_AT_320)
    raw = path.read_bytes()
    hacked = raw.replace(b'\\"label_smoothing\\": 0.0', b'\\"label_smoothing\\": 5.0')
    assert hacked != raw
    (tmp_path / "hacked.safetensors").write_bytes(hacked)
    with pytest.raises(CheckpointMetadataError, match=r"loss_hyp\.label_smoothing"):
        load_model(tmp_path / "hacked.safetensors", "cpu")


def test_focal_loss_and_positive_weights_follow_yolov5s_formulas() -> None:
    """YOLOv5's FocalLoss(BCEWithLogits(pos_weight), gamma, alpha=0.25), written out by hand."""
    torch.manual_seed(1)
    logits, target = torch.randn(50), (torch.rand(50) > 0.7).float()
    loss = YoloLoss(torch.ones(3, 3, 2), 17, LossHyp(fl_gamma=1.5, obj_pw=2.0))
    probability = torch.sigmoid(logits)
    bce = -(2.0 * target * torch.log(probability) + (1 - target) * torch.log(1 - probability))
    p_t = target * probability + (1 - target) * (1 - probability)
    alpha = target * 0.25 + (1 - target) * 0.75
    expected = (bce * alpha * (1 - p_t) ** 1.5).mean()
    torch.testing.assert_close(loss._bce(logits, target, 2.0), expected, rtol=1e-5, atol=1e-7)
    plain = YoloLoss(torch.ones(3, 3, 2), 17, LossHyp())
    torch.testing.assert_close(
        plain._bce(logits, target, 1.0), torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    )
