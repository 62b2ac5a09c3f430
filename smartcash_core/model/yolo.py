"""YOLOv5 (v6/v7 layout) built from the standard YOLOv5 model YAML.

Module names, attribute names and buffer layout follow YOLOv5 exactly, so ``state_dict`` keys and shapes
(``model.0.conv.weight`` ... ``model.24.anchors`` ... ``model.24.m.2.bias``) move both ways between this
project and YOLOv5, and a model loaded with YOLOv5's weights gives YOLOv5's outputs.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, cast

import torch
import yaml
from torch import nn

from smartcash_core.cache import tensor_cache
from smartcash_core.errors import ModelConfigError

MODEL_NAMES = ("yolov5n", "yolov5s", "yolov5m", "yolov5l", "yolov5x")

# YOLOv5's BatchNorm settings (utils/torch_utils.initialize_weights); weights trained there assume them.
BN_EPS = 1e-3
BN_MOMENTUM = 0.03
# Image size of the dry forward that measures each level's stride (YOLOv5 uses 256 too).


# --------------------------------------------------------------------------------------------------
# Decode grids, cached in the project's ``tensor`` cache (reported by ``get_cache_info()``)
# --------------------------------------------------------------------------------------------------
def decode_grid(ny: int, nx: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Cell offsets minus 0.5, ``[1, 1, ny, nx, 2]`` holding (x, y), like YOLOv5's ``_make_grid``.

    A grid depends only on the feature-map shape, device and dtype, so one cached grid serves every model.
    """
    key = ("detect_grid", ny, nx, str(device), dtype)
    return tensor_cache().get_or_create(key, lambda: _make_grid(ny, nx, device, dtype))


def _make_grid(ny: int, nx: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    ys = torch.arange(ny, device=device, dtype=dtype)
    xs = torch.arange(nx, device=device, dtype=dtype)
    yv, xv = torch.meshgrid(ys, xs, indexing="ij")
    return (torch.stack((xv, yv), 2) - 0.5).view(1, 1, ny, nx, 2)


# --------------------------------------------------------------------------------------------------
# Building blocks (names and attributes exactly as in YOLOv5 models/common.py)
# --------------------------------------------------------------------------------------------------
def autopad(kernel: int, padding: int | None = None) -> int:
    """'Same' padding for odd kernels when no explicit padding is given."""
    return kernel // 2 if padding is None else padding


class Conv(nn.Module):
    """Conv2d (no bias) + BatchNorm2d + SiLU. After :meth:`fuse_bn` the BN is folded into the conv."""

    def __init__(
        self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1, act: bool = True
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p), groups=g, bias=False)
        self.bn: nn.BatchNorm2d | None = nn.BatchNorm2d(c2, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act: nn.Module = nn.SiLU(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.bn is not None:
            y = self.bn(y)
        return self.act(y)

    def fuse_bn(self) -> None:
        """Fold the BatchNorm (eval statistics) into the conv weight and a new bias."""
        if self.bn is None:
            return
        self.conv = fuse_conv_and_bn(self.conv, self.bn)
        self.bn = None


class Bottleneck(nn.Module):
    """1x1 conv, 3x3 conv, optional residual when input and output widths match."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    """CSP bottleneck with 3 convolutions."""

    def __init__(
        self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5
    ) -> None:
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(c1, hidden, 1, 1)
        self.cv3 = Conv(2 * hidden, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(hidden, hidden, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling (fast): three chained max-pools concatenated with their input."""

    def __init__(self, c1: int, c2: int, k: int = 5) -> None:
        super().__init__()
        hidden = c1 // 2
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class Concat(nn.Module):
    """Concatenate a list of tensors along ``d`` (channels)."""

    def __init__(self, dimension: int = 1) -> None:
        super().__init__()
        self.d = dimension

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(x, self.d)


class Detect(nn.Module):
    """YOLOv5 detection head: a 1x1 conv per level, ``na`` anchors per cell, ``5 + nc`` outputs per anchor.

    ``anchors`` (buffer ``[nl, na, 2]``) is in grid units (pixels divided by the level's stride), as in
    YOLOv5. ``stride`` (``[nl]``) is set by :class:`DetectionModel` after a dry forward.
    """

    def __init__(self, nc: int, anchors: Sequence[Sequence[float]], ch: Sequence[int]) -> None:
        super().__init__()
        self.nc = nc
        self.no = nc + 5
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).view(self.nl, -1, 2))
        self.stride = torch.ones(self.nl)
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)

    def forward(
        self, x: list[torch.Tensor]
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Train mode: raw ``[B, na, h, w, 5+nc]`` per level. Eval: ``(decoded [B, N, 5+nc], raw list)``."""
        raw: list[torch.Tensor] = []
        decoded: list[torch.Tensor] = []
        for level, conv in enumerate(self.m):
            y = conv(x[level])
            batch, _, ny, nx = y.shape
            y = y.view(batch, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            raw.append(y)
            if not self.training:
                decoded.append(self._decode(y, level).view(batch, self.na * ny * nx, self.no))
        return raw if self.training else (torch.cat(decoded, 1), raw)

    def _decode(self, y: torch.Tensor, level: int) -> torch.Tensor:
        """Raw ``[B, na, h, w, no]`` -> sigmoid + xywh in input pixels (same op order as YOLOv5)."""
        _, _, ny, nx, _ = y.shape
        grid = decode_grid(ny, nx, y.device, y.dtype)
        stride = self.stride[level].to(device=y.device, dtype=y.dtype)
        anchor_grid = (self.anchors[level] * stride).view(1, self.na, 1, 1, 2).to(y.dtype)
        xy, wh, conf = y.sigmoid().split((2, 2, self.nc + 1), 4)
        xy = (xy * 2 + grid) * stride
        wh = (wh * 2) ** 2 * anchor_grid
        return torch.cat((xy, wh, conf), 4)

    def _apply(self, fn: Any, recurse: bool = True) -> Detect:
        # Keep the plain-attribute stride on the same device as the buffers (YOLOv5 does the same).
        super()._apply(fn, recurse)
        self.stride = fn(self.stride)
        return self


# --------------------------------------------------------------------------------------------------
# YAML -> layers
# --------------------------------------------------------------------------------------------------
_CONV_LIKE: dict[str, type[nn.Module]] = {"Conv": Conv, "C3": C3, "SPPF": SPPF, "Bottleneck": Bottleneck}
_REPEAT_INSIDE = {"C3"}  # modules that take the repeat count as an argument instead of being stacked
_UPSAMPLE_NAMES = {"nn.Upsample", "Upsample", "torch.nn.Upsample"}
_KNOWN_MODULES = set(_CONV_LIKE) | _UPSAMPLE_NAMES | {"Concat", "Detect"}


def make_divisible(x: float, divisor: int = 8) -> int:
    """Smallest multiple of ``divisor`` that is >= ``x``."""
    return int(math.ceil(x / divisor) * divisor)


def _resolve_arg(value: Any, nc: int, anchors: Any) -> Any:
    """YOLOv5 ``eval``s string args; only the names its configs use are resolved here (no eval)."""
    if not isinstance(value, str):
        return value
    names = {"None": None, "nc": nc, "anchors": anchors, "True": True, "False": False}
    if value in names:
        return names[value]
    if value in {"nearest", "bilinear", "bicubic"}:
        return value
    raise ModelConfigError(f"unsupported argument {value!r} in model YAML")


@dataclass(frozen=True)
class LayerSpec:
    """One YAML row resolved to constructor arguments, before anything is allocated.

    ``args`` are the module's constructor arguments with channels filled in (``Conv(c1, c2, k, ...)``);
    ``repeats`` copies are stacked in a ``Sequential`` (1: the module itself). ``in_channels`` are the
    channel counts of the inputs named by ``source``; ``out_channels`` feeds the next rows.
    """

    index: int
    source: int | list[int]
    module_name: str
    args: tuple[Any, ...]
    repeats: int
    in_channels: tuple[int, ...]
    out_channels: int


def _plan_layer(index: int, row: Sequence[Any], channels: list[int], cfg: Mapping[str, Any]) -> LayerSpec:
    if not isinstance(row, Sequence) or len(row) != 4:
        raise ModelConfigError(f"layer {index}: expected [from, number, module, args], got {row!r}")
    source, repeats, module_name, raw_args = row
    if module_name not in _KNOWN_MODULES:
        known = sorted(_KNOWN_MODULES)
        raise ModelConfigError(f"layer {index}: unknown module {module_name!r} (known: {known})")
    nc, anchors = int(cfg["nc"]), cfg["anchors"]
    args = [_resolve_arg(a, nc, anchors) for a in raw_args]
    repeats = max(round(repeats * float(cfg["depth_multiple"])), 1) if repeats > 1 else repeats
    sources = [source] if isinstance(source, int) else list(source)
    try:
        inputs = [channels[s] for s in sources]
    except IndexError as exc:
        raise ModelConfigError(f"layer {index}: 'from' {source!r} refers to a missing layer") from exc

    if module_name in _CONV_LIKE:
        out_channels = make_divisible(args[0] * float(cfg["width_multiple"]), 8)
        args = [inputs[0], out_channels, *args[1:]]
        if module_name in _REPEAT_INSIDE:
            args.insert(2, repeats)
            repeats = 1
    elif module_name in _UPSAMPLE_NAMES:
        out_channels = inputs[0]
    elif module_name == "Concat":
        out_channels = sum(inputs)
    else:
        out_channels = 0
        if isinstance(args[1], int):  # number of anchors only: placeholder anchors like YOLOv5
            args[1] = [list(range(args[1] * 2))] * len(sources)
        args = [args[0], args[1], inputs]
    return LayerSpec(index, source, module_name, tuple(args), repeats, tuple(inputs), out_channels)


def layer_specs(cfg: Mapping[str, Any], in_channels: int = 3) -> list[LayerSpec]:
    """Every row of a YOLOv5 model dict resolved to constructor arguments (no module is built).

    The channel arithmetic of :func:`parse_model`, usable on its own to estimate a model's size.
    """
    for key in ("nc", "depth_multiple", "width_multiple", "anchors", "backbone", "head"):
        if key not in cfg:
            raise ModelConfigError(f"model YAML is missing {key!r}")
    activation = cfg.get("activation")
    if activation not in (None, "nn.SiLU()"):
        raise ModelConfigError(f"activation {activation!r} is not supported (only the default SiLU)")
    channels: list[int] = [in_channels]
    specs: list[LayerSpec] = []
    for index, row in enumerate(list(cfg["backbone"]) + list(cfg["head"])):
        spec = _plan_layer(index, row, channels, cfg)
        specs.append(spec)
        channels = [] if index == 0 else channels
        channels.append(spec.out_channels)
    if not specs or specs[-1].module_name != "Detect":
        raise ModelConfigError("the last layer of the model YAML must be Detect")
    return specs


def _factory(module_name: str) -> type[nn.Module]:
    if module_name in _CONV_LIKE:
        return _CONV_LIKE[module_name]
    if module_name in _UPSAMPLE_NAMES:
        return nn.Upsample
    return Concat if module_name == "Concat" else Detect


def _build_layer(spec: LayerSpec) -> nn.Module:
    factory = _factory(spec.module_name)
    try:
        layers = [factory(*spec.args) for _ in range(spec.repeats)]
    except (TypeError, ValueError) as exc:
        raise ModelConfigError(
            f"layer {spec.index}: cannot build {spec.module_name}{spec.args}: {exc}"
        ) from exc
    module = layers[0] if spec.repeats == 1 else nn.Sequential(*layers)
    module.f, module.i = spec.source, spec.index  # type: ignore[assignment]
    return module


def parse_model(cfg: Mapping[str, Any], in_channels: int = 3) -> tuple[nn.Sequential, list[int]]:
    """Build the layer list from a YOLOv5 model dict; returns the layers and the indices to keep."""
    layers: list[nn.Module] = []
    save: set[int] = set()
    for spec in layer_specs(cfg, in_channels):
        sources = [spec.source] if isinstance(spec.source, int) else spec.source
        save.update(s % spec.index for s in sources if s != -1)
        layers.append(_build_layer(spec))
    return nn.Sequential(*layers), sorted(save)


# --------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------
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


@torch.no_grad()  # the fused weights are plain leaf tensors, whatever grad mode the caller is in
def fuse_conv_and_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv with bias computing ``bn(conv(x))`` with BN's running statistics."""
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        dilation=conv.dilation, groups=conv.groups, bias=True,
    ).requires_grad_(False).to(conv.weight.device)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
    conv_bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_(bn.bias + (conv_bias - bn.running_mean) * scale)
    return fused


# --------------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------------
def load_model_config(name_or_yaml: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """A model dict from a shipped name (``yolov5n`` ... ``yolov5x``), a YAML path or a dict."""
    if isinstance(name_or_yaml, Mapping):
        return copy.deepcopy(dict(name_or_yaml))
    text_name = str(name_or_yaml)
    if text_name in MODEL_NAMES:
        text = resources.files("smartcash_core.model").joinpath(f"configs/{text_name}.yaml").read_text()
        return _parse_yaml(text, text_name)
    path = Path(name_or_yaml)
    if not path.is_file():
        raise ModelConfigError(f"{text_name!r} is neither a model name {MODEL_NAMES} nor a YAML file")
    return _parse_yaml(path.read_text(encoding="utf-8"), str(path))


def _parse_yaml(text: str, origin: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ModelConfigError(f"{origin}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelConfigError(f"{origin}: a model YAML must be a mapping")
    return data


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
