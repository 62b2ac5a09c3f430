"""Checkpoints: the native safetensors format and the safe importer for classic YOLOv5 ``.pt`` files.

CONTRACT (issue 2 / issue 6):
- ``LoadedModel``: a model ready for inference plus what the checkpoint says about it.
- ``load_model(path, device="auto") -> LoadedModel`` picks the loader by content (safetensors or a
  YOLOv5 pickle) and raises ``CheckpointError`` naming the file and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from smartcash_core.errors import CheckpointError

if TYPE_CHECKING:
    from smartcash_core.classes import ClassTable
    from smartcash_core.model.yolo import DetectionModel

__all__ = ["LoadedModel", "checkpoint_kind", "load_model"]

_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"


@dataclass
class LoadedModel:
    """A detector in eval mode on ``device`` plus what its checkpoint says about it.

    ``stride`` is the model's largest stride (32 for YOLOv5 P5 models); letterboxing pads to a multiple of it.
    ``sha256`` is the hex digest of the checkpoint's weights (native) or of the whole file (imported ``.pt``).
    """

    model: DetectionModel
    class_table: ClassTable
    imgsz: int
    stride: int
    sha256: str
    source: Path
    device: torch.device
    metadata: dict[str, Any] = field(default_factory=dict)
    num_params: int = 0

    @property
    def num_classes(self) -> int:
        return self.class_table.num_fine


def checkpoint_kind(path: str | Path) -> str:
    """Classify a checkpoint by its first bytes: ``"native"`` (safetensors) or ``"yolov5"`` (torch zip).

    Raises ``CheckpointError`` when the file is missing, empty, or neither format.
    """
    path = Path(path)
    head = _read_head(path, 16)
    if head[:4] in (_ZIP_MAGIC, _EMPTY_ZIP_MAGIC):
        return "yolov5"
    if _looks_like_safetensors(head):
        return "native"
    if head[:1] == b"\x80":
        raise CheckpointError(
            f"{path}: not a checkpoint this library reads: a bare pickle (torch's legacy pre-1.6 format); "
            "re-save it with torch>=1.6 (zip format) or convert it to the native format"
        )
    raise CheckpointError(
        f"{path}: not a checkpoint (expected a native .safetensors file or a YOLOv5 .pt zip archive)"
    )


def load_model(
    path: str | Path, device: str | torch.device = "auto", *, max_params: int | None = None
) -> LoadedModel:
    """Load a native or classic YOLOv5 checkpoint onto ``device`` (``auto`` picks CUDA, MPS, then CPU).

    The loader is chosen by file content, not by suffix. Nothing pickled is ever executed. Metadata and
    architecture are checked against the bounds in ``checkpoint.limits`` before anything is built;
    ``max_params`` overrides the parameter cap (``limits.MAX_PARAMS``, 200 M; yolov5x has about 86 M).
    """
    from smartcash_core.checkpoint import limits
    from smartcash_core.device import select_device

    target = select_device(device)
    cap = limits.MAX_PARAMS if max_params is None else max_params
    if checkpoint_kind(path) == "native":
        from smartcash_core.checkpoint.native import load_native

        return load_native(path, target, max_params=cap)
    from smartcash_core.checkpoint.yolov5_import import load_yolov5

    return load_yolov5(path, target, max_params=cap)


def _read_head(path: Path, size: int) -> bytes:
    try:
        with path.open("rb") as handle:
            head = handle.read(size)
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: file does not exist") from exc
    except IsADirectoryError as exc:
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file") from exc
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if not head:
        raise CheckpointError(f"{path}: empty file, not a checkpoint")
    return head


def _looks_like_safetensors(head: bytes) -> bool:
    """safetensors starts with a little-endian u64 header length followed by a JSON object ``{``.

    Any length counts: the native loader refuses a header over its cap with a message that says so.
    """
    if len(head) < 9:
        return False
    return int.from_bytes(head[:8], "little") >= 2 and head[8:9] == b"{"
