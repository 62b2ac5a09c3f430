"""The image size a pass letterboxes to, chosen as YOLOv5's ``val.py`` chooses it.

- Not given (``ValidationParams.imgsz is None``): the checkpoint's own size (``LoadedModel.imgsz``: native
  metadata ``imgsz``; a YOLOv5 ``.pt``'s ``opt.imgsz``; 640 when the file records none). A detector scores
  best at the size it was trained at: the demo model (trained at 256) loses two thirds of its mAP at 640.
- Given but not a multiple of the model's largest stride: rounded up to one, never below the stride
  (YOLOv5's ``check_img_size``: ``make_divisible(imgsz, stride)``), with an ``imgsz_rounded`` warning, since
  letterboxed inputs must be stride multiples for the feature maps to line up.

Pure functions (no torch): the CLI prints the size before the pass, the service shows it at submit, the
runner resolves it once more at the start of the pass (the same answer, so every caller agrees).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, NamedTuple

from smartcash_core.validation.params import ValidationParams, ValidationWarning

if TYPE_CHECKING:
    from smartcash_core.checkpoint import LoadedModel

DEFAULT_IMGSZ = 640  # YOLOv5's default, for checkpoints that record no training size


class ChosenImageSize(NamedTuple):
    """The size used, where it came from (``"request"`` or ``"checkpoint"``), and a warning when rounded."""

    imgsz: int
    source: str
    warning: ValidationWarning | None


def round_up_to_stride(imgsz: int, stride: int) -> int:
    """The smallest multiple of ``stride`` that is at least ``imgsz`` and at least ``stride``."""
    step = max(int(stride), 1)
    return max(-(-int(imgsz) // step) * step, step)


def choose_imgsz(requested: int | None, checkpoint_imgsz: int | None, stride: int) -> ChosenImageSize:
    """The size a pass uses for ``requested`` (``None``: the checkpoint's) on a model of ``stride``."""
    if requested is None:
        base = checkpoint_imgsz or DEFAULT_IMGSZ
        return ChosenImageSize(round_up_to_stride(base, stride), "checkpoint", None)
    rounded = round_up_to_stride(requested, stride)
    if rounded == requested:
        return ChosenImageSize(requested, "request", None)
    message = (
        f"imgsz {requested} is not a multiple of the model's stride {stride}: validated at {rounded} "
        f"(rounded up, as YOLOv5 does); ask for {rounded} to silence this"
    )
    return ChosenImageSize(rounded, "request", ValidationWarning("imgsz_rounded", message))


def resolve_imgsz(params: ValidationParams, model: LoadedModel) -> tuple[ValidationParams, ChosenImageSize]:
    """``params`` with ``imgsz`` set to the size the pass uses on ``model``, and how it was chosen."""
    chosen = choose_imgsz(params.imgsz, model.imgsz, model.stride)
    return replace(params, imgsz=chosen.imgsz), chosen


def with_default_imgsz(params: ValidationParams, model: LoadedModel) -> ValidationParams:
    """``params`` with an unset ``imgsz`` filled in with the checkpoint's (a given one is left as asked:
    the pass rounds it and says so)."""
    if params.imgsz is not None:
        return params
    return replace(params, imgsz=choose_imgsz(None, model.imgsz, model.stride).imgsz)


def describe_imgsz(chosen: ChosenImageSize, requested: int | None) -> str:
    """``"256 (the checkpoint's)"``, ``"320"`` or ``"320 (asked 300, rounded up to the stride)"``."""
    if chosen.source == "checkpoint":
        return f"{chosen.imgsz} (the checkpoint's)"
    if requested is not None and requested != chosen.imgsz:
        return f"{chosen.imgsz} (asked {requested}, rounded up to the stride)"
    return str(chosen.imgsz)
