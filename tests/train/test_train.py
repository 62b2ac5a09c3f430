"""Demo trainer: letterbox geometry, augmentation, schedule, freezing, a real training step, the asset."""

from __future__ import annotations

import itertools
import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from smartcash_core.data.letterbox import labels_to_letterbox
from smartcash_core.training.train import (
    FROZEN_BACKBONE_LAYERS,
    CachedDataset,
    TrainConfig,
    WeightEma,
    augment_batch,
    learning_rate,
    load_cached_dataset,
    make_optimizer,
    set_backbone_frozen,
    train_phase,
    train_step,
)
from tests.geometry_reference import trainer_letterbox_square

ASSETS = Path(__file__).resolve().parents[2] / "smartcash_core" / "assets"
DEMO_CHECKPOINT = ASSETS / "demo_yolov5n.safetensors"


def _config(**overrides: object) -> TrainConfig:
    return TrainConfig(out=Path("unused.safetensors"), workdir=Path("unused"), **overrides)  # type: ignore[arg-type]


def test_cached_dataset_has_the_pixels_and_labels_of_the_trainer_before_the_shared_letterbox(
    tmp_path: Path,
) -> None:
    """The demo model was trained on these squares: the shared reader + letterbox must not move a pixel."""
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    rng = np.random.default_rng(3)
    sizes = {"wide.jpg": (200, 100), "big.png": (640, 480), "tiny.png": (31, 57), "odd.jpg": (333, 77)}
    for name, (width, height) in sizes.items():
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "images" / name)
        (tmp_path / "labels" / f"{Path(name).stem}.txt").write_text("3 0.5 0.5 0.5 0.25\n1 0.2 0.7 0.1 0.3\n")
    data = load_cached_dataset(tmp_path / "images", tmp_path / "labels", 64)
    for index, name in enumerate(sorted(sizes)):
        with Image.open(tmp_path / "images" / name) as image:
            square, scale, offset = trainer_letterbox_square(image, 64)
        assert torch.equal(data.images[index], torch.from_numpy(square).permute(2, 0, 1)), name
        raw = np.array([[3, 0.5, 0.5, 0.5, 0.25], [1, 0.2, 0.7, 0.1, 0.3]], dtype=np.float32)
        expected = labels_to_letterbox(raw, sizes[name], scale, offset, (64, 64))
        assert torch.equal(data.labels[index], torch.from_numpy(expected)), name


def test_cached_dataset_maps_labels_into_the_square(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    Image.new("RGB", (200, 100), (200, 0, 0)).save(tmp_path / "images" / "a.png")
    (tmp_path / "labels" / "a.txt").write_text("3 0.5 0.5 0.5 1.0\n")
    Image.new("RGB", (100, 100)).save(tmp_path / "images" / "b.png")  # no label file: background
    data = load_cached_dataset(tmp_path / "images", tmp_path / "labels", 64)
    assert data.images.shape == (2, 3, 64, 64) and data.images.dtype == torch.uint8
    # The 200x100 image fills rows 16..47 of 64: the full-height box becomes 0.5 high, still centred.
    assert torch.allclose(data.labels[0], torch.tensor([[3.0, 0.5, 0.5, 0.5, 0.5]]))
    assert data.labels[1].shape == (0, 5)


def test_augment_batch_flips_boxes_with_pixels() -> None:
    images = torch.zeros(8, 3, 32, 32, dtype=torch.uint8)
    images[:, :, :, :8] = 255  # a bright band on the left
    labels = [torch.tensor([[1.0, 0.125, 0.5, 0.25, 1.0]]) for _ in range(8)]
    batch, targets = augment_batch(images, labels, torch.Generator().manual_seed(3))
    assert batch.shape == (8, 3, 32, 32) and batch.min() >= 0.0 and batch.max() <= 1.0
    assert targets.shape == (8, 6)
    assert targets[:, 0].tolist() == list(range(8))
    for index in range(8):
        band_on_right = batch[index, :, :, 24:].mean() > batch[index, :, :, :8].mean()
        assert (targets[index, 2].item() == pytest.approx(0.875)) == bool(band_on_right)
    assert 0 < int((targets[:, 2] > 0.5).sum()) < 8  # with this seed both cases occur


def test_learning_rate_warms_up_then_decays_to_the_floor() -> None:
    config = _config(lr=0.01, warmup_steps=10, final_lr_fraction=0.1)
    assert learning_rate(0, 0.0, config) == pytest.approx(0.001)
    assert learning_rate(9, 0.09, config) == pytest.approx(0.01)
    assert learning_rate(10, 0.0, config) == pytest.approx(0.01)
    assert learning_rate(55, 0.5, config) == pytest.approx(0.01 * (0.1 + 0.9 * 0.5))
    assert learning_rate(100, 1.0, config) == pytest.approx(0.001)
    assert learning_rate(100, 1.7, config) == pytest.approx(0.001)  # past the end: stays at the floor
    values = [learning_rate(step, step / 100, config) for step in range(10, 101)]
    assert all(a >= b for a, b in itertools.pairwise(values))


@pytest.fixture(scope="module")
def small_model() -> torch.nn.Module:
    from smartcash_core.model import build_model

    torch.manual_seed(0)
    return build_model("yolov5n", 17)


def test_freezing_covers_exactly_the_backbone(small_model: torch.nn.Module) -> None:
    set_backbone_frozen(small_model, frozen=True)
    frozen = {name.split(".")[1] for name, p in small_model.named_parameters() if not p.requires_grad}
    assert frozen == {str(index) for index in range(FROZEN_BACKBONE_LAYERS)}
    optimizer = make_optimizer(small_model, _config())
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert all(p.requires_grad for p in small_model.parameters() if id(p) in in_optimizer)
    set_backbone_frozen(small_model, frozen=False)
    assert all(p.requires_grad for p in small_model.parameters())


def test_training_steps_reduce_the_loss_on_a_two_image_batch(small_model: torch.nn.Module) -> None:
    from smartcash_core.training.loss import YoloLoss

    torch.manual_seed(1)
    model = small_model
    model.train()
    set_backbone_frozen(model, frozen=False)
    images = torch.rand(2, 3, 64, 64)
    targets = torch.tensor([[0.0, 2.0, 0.5, 0.5, 0.5, 0.4], [1.0, 15.0, 0.3, 0.6, 0.2, 0.3]])
    loss_fn = YoloLoss.for_model(model, 64)
    optimizer = make_optimizer(model, _config(lr=0.002))
    ema = WeightEma(model, decay=0.9)
    first = train_step(model, loss_fn, optimizer, images, targets).sum().item()
    for _ in range(6):
        last = train_step(model, loss_fn, optimizer, images, targets).sum().item()
        ema.update(model)
    assert math.isfinite(first) and last < 0.9 * first
    assert ema.updates == 6
    key = "model.24.m.0.weight"
    assert not torch.equal(ema.shadow[key], model.state_dict()[key])  # an average, not a copy


def test_train_phase_counts_epochs_and_stops_on_the_time_budget(small_model: torch.nn.Module,
                                                                tmp_path: Path) -> None:
    images = torch.randint(0, 255, (4, 3, 64, 64), dtype=torch.uint8)
    labels = [torch.tensor([[float(i), 0.5, 0.5, 0.4, 0.3]]) for i in range(4)]
    data = CachedDataset(images, labels)
    config = TrainConfig(out=tmp_path / "out.safetensors", workdir=tmp_path, imgsz=64, batch_size=2,
                         warmup_steps=1)
    ema = WeightEma(small_model, decay=0.9)
    lines: list[str] = []
    report = train_phase(small_model, data, 2, 2, config, ema, lines.append)
    assert (report.steps, report.epochs, len(report.epoch_losses)) == (4, 2.0, 2)
    assert len(lines) == 2 and lines[0].startswith("phase 2 epoch 1.00/2")
    assert (tmp_path / "ema_last.safetensors").exists()
    cut = train_phase(small_model, data, 1, 5, config, ema, lines.append, time_budget_s=1e-6)
    assert (cut.steps, cut.epochs) == (1, 0.5)  # one step always runs, then the budget is spent
    assert not any(p.requires_grad for n, p in small_model.named_parameters() if n.startswith("model.0."))


def _safetensors_metadata(path: Path) -> dict[str, str]:
    with path.open("rb") as handle:
        (header_len,) = struct.unpack("<Q", handle.read(8))
        return json.loads(handle.read(header_len)).get("__metadata__", {})


def test_demo_checkpoint_loads_and_records_phase_two() -> None:
    from smartcash_core.checkpoint import load_model

    assert DEMO_CHECKPOINT.stat().st_size < 8 * 1024 * 1024
    loaded = load_model(DEMO_CHECKPOINT, device="cpu")
    assert loaded.class_table.num_fine == 17
    assert int(loaded.metadata["phase"]) == 2
    metrics = loaded.metadata["metrics"]
    assert int(loaded.metadata["epoch"]) == math.ceil(metrics["epochs_head"] + metrics["epochs_full"])
    assert metrics["epochs_full"] > 0 and metrics["epochs_head"] > 0
    with torch.no_grad():
        decoded, _raw = loaded.model(torch.zeros(1, 3, 320, 320))
    assert decoded.shape == (1, 6300, 22) and np.isfinite(decoded.numpy()).all()
    assert _safetensors_metadata(DEMO_CHECKPOINT)  # metadata travels in the safetensors header


def test_init_from_the_demo_checkpoint_carries_its_epochs() -> None:
    from smartcash_core.training.train import _initial_model

    model, prior = _initial_model(_config(init=DEMO_CHECKPOINT))
    assert model.training
    assert prior["epochs_full"] > 0 and len(prior["sha256"]) == 64
    assert model.state_dict()["model.24.anchors"].shape == (3, 3, 2)
