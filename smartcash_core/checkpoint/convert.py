"""``smartcash convert``: turn any loadable checkpoint (typically a classic YOLOv5 ``.pt``) into the
native format, so later loads skip unpickling entirely."""

from __future__ import annotations

from pathlib import Path

import torch

from smartcash_core.checkpoint import LoadedModel, load_model
from smartcash_core.checkpoint.metadata import loss_hyp_from
from smartcash_core.checkpoint.native import save_checkpoint
from smartcash_core.errors import CheckpointError


def convert_checkpoint(weights: str | Path, out: str | Path) -> tuple[LoadedModel, Path]:
    """Load ``weights`` on CPU (safely) and write it natively to ``out``; returns the source and the path.

    fp16 sources stay fp16 (lossless: fp16 -> fp32 -> fp16 is exact), fp32 sources stay fp32.
    """
    weights, out = Path(weights), Path(out)
    if out.resolve() == weights.resolve():
        raise CheckpointError(f"{out}: refusing to overwrite the source checkpoint")
    loaded = load_model(weights, torch.device("cpu"))
    half = is_fp16(loaded)
    epoch = loaded.metadata.get("epoch")
    written = save_checkpoint(
        out,
        loaded.model,
        class_table=loaded.class_table,
        imgsz=loaded.imgsz,
        epoch=epoch if isinstance(epoch, int) else 0,
        phase=loaded.metadata.get("phase"),
        metrics=loaded.metadata.get("metrics") or {},
        half=half,
        loss_hyp=loss_hyp_from(loaded.metadata.get("loss_hyp")),
        extra={"converted_from": weights.name, "source_sha256": loaded.sha256,
               "source_format": loaded.metadata.get("format", "unknown")},
    )
    return loaded, written


def is_fp16(loaded: LoadedModel) -> bool:
    """Whether the source stored fp16 weights (imported ``.pt``: ``weights_dtype``; native: ``dtype``)."""
    return loaded.metadata.get("weights_dtype", loaded.metadata.get("dtype")) == "float16"
