"""Checkpoints for comparison tests: the trained demo model and a copy with noise on its Detect head."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from service.demo_model import DEMO_IMGSZ, packaged_demo_checkpoint
from smartcash_core.checkpoint import load_model
from smartcash_core.checkpoint.native import save_checkpoint

DETECT_HEAD = "model.24.m."  # the three 1x1 output convolutions of YOLOv5's Detect


def demo_checkpoints(root: Path, noise: float = 0.05, seed: int = 0) -> tuple[str, str]:
    """Write ``demo.safetensors`` (the packaged trained model) and ``degraded.safetensors`` (its Detect-head
    weights plus Gaussian noise of ``noise`` times each tensor's standard deviation) under ``root``; returns
    their names."""
    source = packaged_demo_checkpoint()
    assert source is not None, "this build ships no trained demo checkpoint"
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, root / "demo.safetensors")
    loaded = load_model(source, "cpu")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in loaded.model.named_parameters():
            if name.startswith(DETECT_HEAD) and name.endswith("weight"):
                noise_values = torch.randn(parameter.shape, generator=generator) * noise * parameter.std()
                parameter.add_(noise_values)
    save_checkpoint(
        root / "degraded.safetensors", loaded.model, class_table=loaded.class_table, imgsz=DEMO_IMGSZ
    )
    return "demo.safetensors", "degraded.safetensors"
