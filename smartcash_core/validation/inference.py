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


def network_inputs(images: torch.Tensor, device: torch.device, half: bool = False) -> torch.Tensor:
    """A uint8 batch ``[B, 3, H, W]`` as the network's float input in [0, 1], on ``device``.

    The layout change to channels-last happens on the uint8 batch (4x fewer bytes); ``float()`` keeps it.
    """
    inputs = images.to(device, non_blocking=True)
    if uses_channels_last(device):
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    return (inputs.half() if half else inputs.float()) / 255


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


class Forward:
    """The forward stage of a pass: the fused network on the model's device (fp16 only on CUDA)."""

    def __init__(self, model: LoadedModel, half: bool) -> None:
        self.device = model_device(model)
        self.half = half and self.device.type == "cuda"
        network = inference_network(model)
        self.network = deepcopy(network).half() if self.half else network

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        """The uint8 batch as the network's input (the ``preprocess`` stage)."""
        return network_inputs(images, self.device, self.half)

    def run(self, inputs: torch.Tensor) -> HeadOutput:
        """One forward call (the ``inference`` stage); on CUDA it waits for the kernels, so the time lands
        in this stage and not in NMS."""
        with torch.inference_mode():
            raw = self.network(inputs)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
        if isinstance(raw, (tuple, list)):
            return HeadOutput(raw[0], raw[1] if len(raw) > 1 else None)
        return HeadOutput(raw, None)
