"""The embedded demo model: the trained checkpoint shipped in the package, or a stand-in until it exists."""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

log = logging.getLogger("smartcash.service")

DEMO_ASSET = "demo_yolov5n.safetensors"
DEMO_PRELOAD_KEYWORD = "demo"
DEMO_IMGSZ = 320


def packaged_demo_checkpoint() -> Path | None:
    """The trained demo checkpoint shipped in ``smartcash_core/assets``, if this build has one."""
    candidate = Path(str(resources.files("smartcash_core").joinpath("assets", DEMO_ASSET)))
    return candidate if candidate.is_file() else None


def ensure_demo_checkpoint(state_dir: Path) -> Path:
    """The packaged demo checkpoint, else an untrained yolov5n saved natively once under ``state_dir``.

    The stand-in gives near-zero mAP but exercises the whole pipeline (load, validate, metrics).
    """
    packaged = packaged_demo_checkpoint()
    if packaged is not None:
        return packaged
    stand_in = state_dir / "untrained_demo_yolov5n.safetensors"
    if not stand_in.is_file():
        from smartcash_core.checkpoint.native import save_checkpoint
        from smartcash_core.classes import default_class_table
        from smartcash_core.model.yolo import build_model

        log.warning("no trained demo checkpoint in this build; serving an untrained yolov5n stand-in")
        model = build_model("yolov5n", num_classes=default_class_table().num_fine)
        partial = stand_in.with_suffix(".partial")  # rename last, so a crash never leaves half a file
        save_checkpoint(partial, model.eval(), class_table=default_class_table(), imgsz=DEMO_IMGSZ)
        partial.replace(stand_in)
    return stand_in
