"""``smartcash train-demo``: a short two-phase trainer for the embedded demo model (not a product feature).

Phase 1 trains the neck and head with the backbone (layers 0-9) frozen, phase 2 fine-tunes everything, as
in SmartCash. It trains on this project's own synthetic scenes (train and val drawn with different seeds)
on CPU: every training image is decoded and letterboxed once into a uint8 tensor held in memory, batches
are augmented on tensors (horizontal flip, brightness / contrast / saturation jitter), the optimizer is
AdamW with linear warmup and cosine decay per phase, and an EMA of the weights is what gets saved.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from smartcash_core.classes import default_class_table
from smartcash_core.data.images import decode_image
from smartcash_core.data.letterbox import PAD_VALUE, labels_to_letterbox, letterbox_into
from smartcash_core.errors import DatasetError
from smartcash_core.training.loss import LossHyp, YoloLoss

FROZEN_BACKBONE_LAYERS = 10  # model.0 ... model.9: the YOLOv5 backbone including SPPF
VAL_SEED_OFFSET = 1000  # val scenes come from another seed than the training scenes
Log = Callable[[str], None]


@dataclass(frozen=True)
class TrainConfig:
    """Everything one demo training run needs; built from the ``train-demo`` arguments."""

    out: Path
    workdir: Path
    images: int = 1200
    val_images: int = 100
    imgsz: int = 320
    epochs_head: int = 3
    epochs_full: int = 20
    batch_size: int = 16
    lr: float = 0.002
    final_lr_fraction: float = 0.05
    weight_decay: float = 5e-4
    warmup_steps: int = 50
    ema_decay: float = 0.995
    seed: int = 0
    model_name: str = "yolov5n"
    threads: int = 2
    time_budget_min: float | None = None  # wall-clock cap for the whole run before evaluation (None: epochs)
    head_budget_fraction: float = 0.1  # share of the time budget phase 1 may use
    init: Path | None = None  # continue from this native checkpoint instead of random weights


@dataclass
class CachedDataset:
    """Letterboxed training images ``[N, 3, S, S]`` uint8 and labels per image ``[n_i, 5]`` (cls cx cy w h,
    normalized to the letterboxed square)."""

    images: Tensor
    labels: list[Tensor]

    def __len__(self) -> int:
        return int(self.images.shape[0])


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------
def _read_labels(path: Path) -> np.ndarray:
    """YOLO label file -> ``[n, 5]`` float32 (missing file: a background image)."""
    if not path.exists():
        return np.zeros((0, 5), dtype=np.float32)
    rows = [line.split() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return np.asarray(rows, dtype=np.float32).reshape(-1, 5)


def load_cached_dataset(image_dir: Path, label_dir: Path, size: int) -> CachedDataset:
    """Decode and letterbox every image of a YOLO split once (the training loop never decodes again).

    Each image goes through the shared reader and letterbox: decoded upright, scaled (PIL bilinear, up or
    down) so its long side is ``size`` and centred in a grey ``size x size`` square, the geometry the demo
    model was trained with.
    """
    paths = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not paths:
        raise DatasetError(f"no training images in {image_dir}")
    images = torch.full((len(paths), 3, size, size), PAD_VALUE, dtype=torch.uint8)
    labels: list[Tensor] = []
    for slot, path in zip(images, paths, strict=True):
        pixels = decode_image(path)
        placed = letterbox_into(slot, torch.from_numpy(pixels.transpose(2, 0, 1).copy()), scaleup=True)
        original_wh = (pixels.shape[1], pixels.shape[0])
        raw = _read_labels(label_dir / f"{path.stem}.txt")
        letterboxed = labels_to_letterbox(raw, original_wh, placed.scale, placed.offset, (size, size))
        labels.append(torch.from_numpy(letterboxed))
    return CachedDataset(images, labels)


def augment_batch(images: Tensor, labels: list[Tensor], generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """uint8 ``[B, 3, S, S]`` + labels -> float ``[B, 3, S, S]`` in [0, 1] and targets ``[n, 6]``
    (image index, cls, cx, cy, w, h).

    Horizontal flips and mild photometric jitter; hue is left alone because it encodes denomination.
    """
    batch = images.float() / 255.0
    count = batch.shape[0]
    flip = torch.rand(count, generator=generator) < 0.5
    batch[flip] = batch[flip].flip(-1)
    brightness = 1 + (torch.rand(count, 1, 1, 1, generator=generator) - 0.5) * 0.5
    contrast = 1 + (torch.rand(count, 1, 1, 1, generator=generator) - 0.5) * 0.4
    saturation = 1 + (torch.rand(count, 1, 1, 1, generator=generator) - 0.5) * 0.6
    grey = batch.mean(1, keepdim=True)
    batch = grey + (batch - grey) * saturation
    mean = batch.mean((1, 2, 3), keepdim=True)
    batch = ((batch - mean) * contrast + mean) * brightness
    rows = []
    for index, image_labels in enumerate(labels):
        boxes = image_labels.clone()
        if flip[index]:
            boxes[:, 1] = 1.0 - boxes[:, 1]
        rows.append(torch.cat((torch.full((len(boxes), 1), float(index)), boxes), 1))
    return batch.clamp_(0, 1), torch.cat(rows) if rows else torch.zeros((0, 6))


def iterate_batches(data: CachedDataset, batch_size: int, generator: torch.Generator) -> Iterator[
    tuple[Tensor, Tensor]
]:
    """One epoch of shuffled, augmented batches (the last partial batch is dropped)."""
    order = torch.randperm(len(data), generator=generator)
    for start in range(0, len(order) - batch_size + 1, batch_size):
        picked = order[start : start + batch_size]
        yield augment_batch(data.images[picked], [data.labels[i] for i in picked.tolist()], generator)


# --------------------------------------------------------------------------------------------------
# Optimisation
# --------------------------------------------------------------------------------------------------
class WeightEma:
    """Exponential moving average of weights and BN buffers; the decay ramps up over the first steps
    (as YOLOv5's ``ModelEMA``) so the average does not remember the random initialisation."""

    def __init__(self, model: nn.Module, decay: float, ramp_steps: float = 200.0) -> None:
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.decay, self.ramp_steps, self.updates = decay, ramp_steps, 0

    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = self.decay * (1 - math.exp(-self.updates / self.ramp_steps))
        with torch.no_grad():
            for key, value in model.state_dict().items():
                if value.dtype.is_floating_point:
                    self.shadow[key].mul_(decay).add_(value.detach(), alpha=1 - decay)
                else:
                    self.shadow[key].copy_(value)

    def copy_to(self, model: nn.Module) -> None:
        model.load_state_dict(self.shadow)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over trainable parameters; weight decay only on conv weights (not BN, not biases)."""
    decayed = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    plain = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [
        {"params": decayed, "weight_decay": config.weight_decay},
        {"params": plain, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.937, 0.999))


def learning_rate(step: int, progress: float, config: TrainConfig) -> float:
    """Linear warmup over the first ``warmup_steps``, then cosine decay to ``final_lr_fraction * lr`` as
    ``progress`` (fraction of the phase done, by steps or by time budget) goes from 0 to 1."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, progress))))
    return config.lr * (config.final_lr_fraction + (1 - config.final_lr_fraction) * cosine)


def set_backbone_frozen(model: nn.Module, frozen: bool) -> None:
    """Phase 1 freezes ``model.0`` ... ``model.9`` (YOLOv5's ``--freeze 10``); phase 2 frees everything."""
    frozen_prefixes = tuple(f"model.{index}." for index in range(FROZEN_BACKBONE_LAYERS))
    for name, parameter in model.named_parameters():
        parameter.requires_grad = not (frozen and name.startswith(frozen_prefixes))


def train_step(model: nn.Module, loss_fn: YoloLoss, optimizer: torch.optim.Optimizer, images: Tensor,
               targets: Tensor) -> Tensor:
    """One forward/backward/update; returns the detached ``(box, obj, cls)`` loss parts."""
    total, parts = loss_fn(model(images), targets)
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    nn.utils.clip_grad_norm_(model.parameters(), max_norm=10.0)
    optimizer.step()
    return parts


@dataclass
class PhaseReport:
    """What one phase did: optimizer steps, epochs completed (fractional when a time budget cut it)."""

    steps: int
    epochs: float
    epoch_losses: list[float]


def train_phase(model: nn.Module, data: CachedDataset, phase: int, epochs: int, config: TrainConfig,
                ema: WeightEma, log: Log, time_budget_s: float | None = None) -> PhaseReport:
    """Run one phase for ``epochs`` epochs or until ``time_budget_s`` is spent, whichever comes first.

    The cosine schedule follows whichever of the two is further along, so a budget-cut phase still ends
    at the low learning rate (the machine is shared; its speed is not known in advance).
    """
    set_backbone_frozen(model, frozen=phase == 1)
    model.train()
    optimizer = make_optimizer(model, config)
    loss_fn = YoloLoss.for_model(model, config.imgsz)
    generator = torch.Generator().manual_seed(config.seed * 100 + phase)
    steps_per_epoch = len(data) // config.batch_size
    total_steps, step, epoch_losses = epochs * steps_per_epoch, 0, []
    phase_started = time.perf_counter()

    def progress() -> float:
        by_steps = step / max(1, total_steps)
        by_time = (time.perf_counter() - phase_started) / time_budget_s if time_budget_s else 0.0
        return max(by_steps, by_time)

    while step == 0 or progress() < 1.0:  # at least one step, so every phase leaves a trace
        started, running, epoch_steps = time.perf_counter(), torch.zeros(3), 0
        for images, targets in iterate_batches(data, config.batch_size, generator):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, progress(), config)
            running += train_step(model, loss_fn, optimizer, images, targets)
            ema.update(model)
            step, epoch_steps = step + 1, epoch_steps + 1
            if progress() >= 1.0:
                break
        mean = running / max(1, epoch_steps)
        epoch_losses.append(float(mean.sum()))
        log(f"phase {phase} epoch {step / steps_per_epoch:.2f}/{epochs}: loss {mean.sum():.4f} "
            f"(box {mean[0]:.4f} obj {mean[1]:.4f} cls {mean[2]:.4f}) "
            f"lr {optimizer.param_groups[0]['lr']:.5f} {time.perf_counter() - started:.0f}s")
        _save_state(ema.shadow, config.workdir / "ema_last.safetensors")  # lets a cut-short run be used
    return PhaseReport(steps=step, epochs=round(step / steps_per_epoch, 2), epoch_losses=epoch_losses)


# --------------------------------------------------------------------------------------------------
# Evaluation and the run
# --------------------------------------------------------------------------------------------------
def evaluate_map50(model: nn.Module, val_root: Path, imgsz: int) -> dict[str, float]:
    """Mapped (8-class) and fine mAP50 of ``model`` on a YOLO val set through the validation pass."""
    from smartcash_core.checkpoint import LoadedModel
    from smartcash_core.validation.params import ValidationParams
    from smartcash_core.validation.runner import run_validation

    model.eval()
    loaded = LoadedModel(model=model, class_table=default_class_table(), imgsz=imgsz,  # type: ignore[arg-type]
                         stride=int(model.stride.max()), sha256="", source=val_root,  # type: ignore[operator]
                         device=torch.device("cpu"))
    result = run_validation(loaded, val_root, ValidationParams(imgsz=imgsz, device="cpu", workers=0))
    metrics = result.metrics
    return {"map50": float(metrics["map50"]), "map50_95": float(metrics["map50_95"]),
            "fine_map50": float(metrics["fine"]["map50"])}


def prepare_datasets(config: TrainConfig, log: Log) -> tuple[Path, Path]:
    """Generate (once) the training scenes and a val set with another seed under the work directory."""
    from smartcash_core.training.synthetic import generate_dataset

    train_root = config.workdir / f"data-s{config.seed}-n{config.images}"
    val_root = config.workdir / f"val-s{config.seed + VAL_SEED_OFFSET}-n{config.val_images}"
    for root, count, seed, split in ((train_root, config.images, config.seed, "train"),
                                     (val_root, config.val_images, config.seed + VAL_SEED_OFFSET, "val")):
        if not (root / "data.yaml").exists():
            started = time.perf_counter()
            generate_dataset(root, count, seed, split=split)
            log(f"generated {count} {split} scenes (seed {seed}) in {time.perf_counter() - started:.0f}s")
    return train_root, val_root


def _save_state(state: dict[str, Tensor], path: Path) -> None:
    """Plain safetensors state dict in the work directory: survives a failure in the steps after training."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({key: value.detach().contiguous() for key, value in state.items()}, str(path))


def save_demo_checkpoint(model: nn.Module, path: Path, config: TrainConfig, metrics: dict[str, Any]) -> None:
    """Write the native checkpoint (fp16) whose metadata records phase 2 and both phases' epochs."""
    from smartcash_core.checkpoint.native import save_checkpoint

    path.parent.mkdir(parents=True, exist_ok=True)
    epochs_done = math.ceil(metrics["epochs_head"] + metrics["epochs_full"])
    gains = YoloLoss.for_model(model, config.imgsz).hyp  # what train_phase trained with, already scaled
    save_checkpoint(path, model, class_table=default_class_table(), imgsz=config.imgsz, epoch=epochs_done,
                    phase=2, metrics=metrics, half=True, loss_hyp=_loss_fields(gains))


def _loss_fields(hyp: LossHyp) -> dict[str, float]:
    """The scalar gains (``balance`` follows from the level count, as in YOLOv5)."""
    return {key: value for key, value in dataclasses.asdict(hyp).items() if key != "balance"}


def _initial_model(config: TrainConfig) -> tuple[nn.Module, dict[str, Any]]:
    """A fresh model, or the weights of ``config.init`` plus what its metadata says was trained so far."""
    from smartcash_core.model import build_model

    if config.init is None:
        return build_model(config.model_name, default_class_table().num_fine), {}
    from smartcash_core.checkpoint import load_model

    loaded = load_model(config.init, device="cpu")
    prior = dict(loaded.metadata.get("metrics", {}))
    prior["sha256"] = loaded.sha256
    return loaded.model.float().train(), prior


def _seconds_left(deadline: float) -> float:
    return max(1.0, deadline - time.perf_counter())


def train_demo(config: TrainConfig, log: Log = print) -> dict[str, Any]:
    """The whole run: data, phase 1, phase 2, evaluation of the EMA weights, checkpoint."""
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    started = time.perf_counter()
    train_root, val_root = prepare_datasets(config, log)
    data = load_cached_dataset(train_root / "images" / "train", train_root / "labels" / "train", config.imgsz)
    log(f"cached {len(data)} letterboxed images ({data.images.numel() / 1e6:.0f} MB)")
    model, prior = _initial_model(config)
    ema = WeightEma(model, config.ema_decay)
    deadline = started + config.time_budget_min * 60 if config.time_budget_min else None
    head_budget = _seconds_left(deadline) * config.head_budget_fraction if deadline else None
    head = PhaseReport(steps=0, epochs=0.0, epoch_losses=[])
    if config.epochs_head > 0:
        head = train_phase(model, data, 1, config.epochs_head, config, ema, log, head_budget)
    full_budget = _seconds_left(deadline) if deadline else None
    full = train_phase(model, data, 2, config.epochs_full, config, ema, log, full_budget)
    ema.copy_to(model)
    _save_state(model.state_dict(), config.workdir / "ema_final.safetensors")
    metrics: dict[str, Any] = {
        "epochs_head": round(prior.get("epochs_head", 0) + head.epochs, 2),
        "epochs_full": round(prior.get("epochs_full", 0) + full.epochs, 2),
        "steps_head": prior.get("steps_head", 0) + head.steps,
        "steps_full": prior.get("steps_full", 0) + full.steps,
        "batch_size": config.batch_size, "train_images": len(data),
        "imgsz": config.imgsz, "seed": config.seed, "time_budget_min": config.time_budget_min,
        "final_train_loss": (full.epoch_losses or head.epoch_losses)[-1],
    }
    if config.init is not None:
        metrics["continued_from"] = {key: prior.get(key) for key in ("epochs_head", "epochs_full", "sha256")}
    try:
        metrics["val"] = evaluate_map50(model, val_root, config.imgsz)
    except (ImportError, NotImplementedError) as exc:  # the validation pass is optional for training
        log(f"validation skipped: {exc}")
    metrics["train_wall_s"] = round(time.perf_counter() - started, 1)
    log(f"val (seed {config.seed + VAL_SEED_OFFSET}, {config.val_images} images): {metrics.get('val')}")
    save_demo_checkpoint(model, config.out, config, metrics)
    log(f"wrote {config.out} after {metrics['train_wall_s']:.0f}s")
    return metrics
