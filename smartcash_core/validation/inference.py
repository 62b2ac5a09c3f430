"""Forward: the network a pass runs (fused once per loaded model, channels-last where that is faster), its
inputs, and one forward call per batch.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from copy import deepcopy
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from smartcash_core.validation.params import Precision

if TYPE_CHECKING:
    from smartcash_core.checkpoint import LoadedModel

_FUSED: weakref.WeakKeyDictionary[nn.Module, nn.Module] = weakref.WeakKeyDictionary()
_FUSED_LOCK = threading.Lock()


def model_device(model: LoadedModel) -> torch.device:
    """Where the model's weights are (the device it was loaded on when it has none)."""
    try:
        return next(model.model.parameters()).device
    except StopIteration:
        return torch.device(model.device)


def uses_channels_last(device: torch.device) -> bool:
    """Whether the forward pass runs channels-last (NHWC) on ``device``.

    CPU only: measured on fused yolov5n/s at imgsz 320/640, batch 16 (2 threads), NHWC took 0.61-0.70x
    the NCHW time (median of 6 interleaved pairs per case, every pair faster). CUDA is left NCHW until
    measured there.
    """
    return device.type == "cpu"


def network_inputs(
    images: torch.Tensor, device: torch.device, half: bool = False, *, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """A uint8 batch ``[B, 3, H, W]`` as the network's input in [0, 1] (``dtype``: float32 by default,
    float16 with ``half``), on ``device``.

    The layout change to channels-last happens on the uint8 batch (4x fewer bytes); the conversion keeps it.
    The division runs in place on the converted batch (same values as ``x.float() / 255``, one buffer less).
    """
    inputs = images.to(device, non_blocking=True)
    if uses_channels_last(device):
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    target = dtype if dtype is not None else (torch.float16 if half else torch.float32)
    return inputs.to(target).div_(255)


def inference_network(model: LoadedModel) -> nn.Module:
    """An eval-mode copy of the model with Conv+BN fused (channels-last where that helps), made once per
    loaded model.

    A copy, because the loaded model stays unfused: it can still be saved, and other users see it as loaded.
    """
    with _FUSED_LOCK:
        network = _FUSED.get(model.model)
        if network is None:
            network = deepcopy(model.model)
            fuse = getattr(network, "fuse", None)
            if callable(fuse) and not getattr(network, "fused", False):
                fuse()
            network.eval()
            if uses_channels_last(model_device(model)):
                network = network.to(memory_format=torch.channels_last)
            _FUSED[model.model] = network
    return network


@dataclass(frozen=True)
class HeadOutput:
    """What the network returned for one batch.

    ``decoded``: ``[B, N, 5 + nc]`` candidate boxes (cx, cy, w, h in input pixels, objectness, class
    scores) before NMS. ``levels``: the raw per-level outputs ``[B, na, ny, nx, 5 + nc]`` the loss needs,
    or ``None`` when the network returns only the decoded tensor.
    """

    decoded: torch.Tensor
    levels: Sequence[torch.Tensor] | None


_INPUT_DTYPES: dict[Precision, torch.dtype] = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,  # uint8 -> bf16 is exact; half the bytes of the float32 batch to write
    "fp16": torch.float16,
}


class Forward:
    """The forward stage of a pass: the fused network on the model's device in ``precision`` (see
    :mod:`smartcash_core.validation.precision`; the caller has checked that the device offers it)."""

    def __init__(self, model: LoadedModel, precision: Precision = "fp32") -> None:
        self.device = model_device(model)
        self.precision: Precision = precision
        network = inference_network(model)
        self.network = deepcopy(network).half() if precision == "fp16" else network

    @property
    def half(self) -> bool:
        return self.precision == "fp16"

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        """The uint8 batch as the network's input (the ``preprocess`` stage)."""
        return network_inputs(images, self.device, dtype=_INPUT_DTYPES[self.precision])

    def run(self, inputs: torch.Tensor) -> HeadOutput:
        """One forward call (the ``inference`` stage); on CUDA it waits for the kernels, so the time lands
        in this stage and not in NMS."""
        with torch.inference_mode():
            raw = self._bf16_forward(inputs) if self.precision == "bf16" else self.network(inputs)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
        if isinstance(raw, (tuple, list)):
            return HeadOutput(raw[0], raw[1] if len(raw) > 1 else None)
        return HeadOutput(raw, None)

    def _bf16_forward(self, inputs: torch.Tensor) -> object:
        """Backbone and neck under bf16 autocast; the Detect head (1x1 convs, box decoding) in float32, so
        boxes keep float32 resolution and NMS gets float32."""
        network = self.network
        head = getattr(network, "detect", None)
        if head is None:  # not a DetectionModel: autocast the whole network, decoded output to float32
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                raw = network(inputs)
            return _to_float(raw)
        with torch.autocast(self.device.type, dtype=torch.bfloat16):
            features = network(inputs, features_only=True)
        return head([feature.float() for feature in features])


def _to_float(raw: object) -> object:
    if isinstance(raw, torch.Tensor):
        return raw.float()
    if isinstance(raw, (tuple, list)):
        return type(raw)(_to_float(item) for item in raw)
    return raw
