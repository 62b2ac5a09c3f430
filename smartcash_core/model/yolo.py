"""YOLOv5 (v6/v7 layout) built from the standard YOLOv5 model YAML.

Module names, attribute names and buffer layout follow YOLOv5 exactly, so ``state_dict`` keys and shapes
(``model.0.conv.weight`` ... ``model.24.anchors`` ... ``model.24.m.2.bias``) move both ways between this
project and YOLOv5, and a model loaded with YOLOv5's weights gives YOLOv5's outputs. The blocks live in
``modules.py``, the YAML reading in ``config.py``; this module assembles the detector.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from smartcash_core.errors import ModelConfigError
from smartcash_core.model.config import MODEL_NAMES, load_model_config, parse_model
from smartcash_core.model.modules import Conv, Detect

__all__ = ["MODEL_NAMES", "DetectionModel", "build_model", "load_model_config"]


def _stride_factor(layer: nn.Module) -> float:
    """How many input cells of ``layer`` one output cell covers: a strided Conv divides the size, Upsample
    multiplies it; C3, SPPF, Bottleneck and Concat keep it (their convs and pools have stride 1)."""
    if isinstance(layer, Conv):
        return float(layer.conv.stride[0])
    if isinstance(layer, nn.Upsample):
        scale = layer.scale_factor
        scale = scale[0] if isinstance(scale, tuple) else scale
        if not scale:
            raise ModelConfigError(f"layer {getattr(layer, 'i', '?')}: Upsample needs a scale factor")
        return 1.0 / float(scale)
    if isinstance(layer, nn.Sequential):  # a YAML row repeated n times
        factor = 1.0
        for inner in layer:
            factor *= _stride_factor(inner)
        return factor
    return 1.0


class DetectionModel(nn.Module):
    """YOLOv5 detector. ``model`` is the layer ``Sequential`` (hence the ``model.N.`` state_dict keys).

    Attributes: ``yaml`` (model dict), ``nc``, ``stride`` (``[nl]`` float tensor), ``detect`` (the head),
    ``names`` (class names, may be empty).
    """

    def __init__(self, cfg: Mapping[str, Any], in_channels: int = 3) -> None:
        super().__init__()
        self.yaml: dict[str, Any] = copy.deepcopy(dict(cfg))
        self.model, self.save = parse_model(self.yaml, in_channels)
        self.nc = int(self.yaml["nc"])
        self.names: list[str] = []
        detect = self.detect
        detect.stride = self._probe_strides(in_channels)
        _fix_anchor_order(detect)
        detect.anchors /= detect.stride.view(-1, 1, 1)
        _initialize_biases(detect)
        self.fused = False

    @property
    def detect(self) -> Detect:
        return cast(Detect, self.model[-1])  # parse_model guarantees the last layer is Detect

    @property
    def stride(self) -> torch.Tensor:
        return self.detect.stride

    def forward(
        self, x: torch.Tensor, features_only: bool = False
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """``x`` ``[B, 3, H, W]`` (H, W multiples of the max stride).

        Eval: ``(decoded [B, N, 5+nc] xywh in input pixels, raw [[B, na, h, w, 5+nc]] * nl)``;
        train: the raw list only. ``features_only``: Detect's inputs, one ``[B, C, h, w]`` per level.
        """
        features = self._features(x)
        return features if features_only else self.detect(features)

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Run every layer but Detect; returns Detect's inputs (one feature map per level)."""
        outputs: list[torch.Tensor | None] = []
        for layer in self.model[:-1]:
            if layer.f != -1:
                x = outputs[layer.f] if isinstance(layer.f, int) else [
                    x if j == -1 else outputs[j] for j in layer.f
                ]
            x = layer(x)
            outputs.append(x if layer.i in self.save else None)
        sources = self.detect.f
        return [x if j == -1 else outputs[j] for j in sources]  # type: ignore[misc]

    def _probe_strides(self, in_channels: int) -> torch.Tensor:
        """Stride per level: what YOLOv5's dry forward measures (input size / feature map size), computed
        from the layers' own strides and scale factors instead of running them.

        A forward, even a small one, initialises torch's CPU kernels for shapes the pass never uses, and one
        on the ``meta`` device makes torch import its symbolic-shape and compiler machinery (sympy,
        ``torch._dynamo``): seconds of start-up in every process that builds a model. Exact for inputs that
        are multiples of the largest stride, which is what the dry forward uses too.
        """
        del in_channels  # strides do not depend on the channel count
        factors: list[float] = []  # input pixels per feature-map cell after each layer
        for layer in self.model[:-1]:
            first = layer.f if isinstance(layer.f, int) else layer.f[0]  # Concat inputs share a size
            incoming = 1.0 if first == -1 and not factors else factors[first]
            factors.append(incoming * _stride_factor(layer))
        sources = self.detect.f if isinstance(self.detect.f, list) else [self.detect.f]
        return torch.tensor([factors[source] for source in sources], dtype=torch.float32)

    def fuse(self) -> DetectionModel:
        """Fold every Conv's BatchNorm into its conv for faster inference (eval use only)."""
        for module in self.modules():
            if isinstance(module, Conv):
                module.fuse_bn()
        self.fused = True
        return self

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _fix_anchor_order(detect: Detect) -> None:
    """Anchors must grow with stride (YOLOv5's ``check_anchor_order``); flip them when they do not."""
    area = detect.anchors.prod(-1).mean(-1).view(-1)
    area_delta = area[-1] - area[0]
    stride_delta = detect.stride[-1] - detect.stride[0]
    if area_delta and area_delta.sign() != stride_delta.sign():
        detect.anchors[:] = detect.anchors.flip(0)


def _initialize_biases(detect: Detect) -> None:
    """YOLOv5's prior: ~8 objects per 640 image for objectness, 0.6/nc for each class."""
    with torch.no_grad():
        for conv, stride in zip(detect.m, detect.stride, strict=True):
            bias = conv.bias.view(detect.na, -1)
            bias[:, 4] += math.log(8 / (640 / float(stride)) ** 2)
            bias[:, 5 : 5 + detect.nc] += math.log(0.6 / (detect.nc - 0.99999))


def build_model(name_or_yaml: str | Path | Mapping[str, Any], num_classes: int | None = 17) -> DetectionModel:
    """Build a YOLOv5 detector in train mode with fresh weights.

    ``num_classes`` overrides the YAML's ``nc`` (``None`` keeps it). Raises ``ModelConfigError``.
    """
    cfg = load_model_config(name_or_yaml)
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ModelConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
        cfg["nc"] = num_classes
    return DetectionModel(cfg)
