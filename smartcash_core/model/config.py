"""From a model YAML to layers: the shipped configs (``yolov5n`` ... ``yolov5x``), YOLOv5's width and depth
scaling (``make_divisible``), one :class:`LayerSpec` per row (also what the checkpoint checks read before
anything is built: ``checkpoint/architecture.py``), and the ``nn.Sequential`` built from them."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from smartcash_core.errors import ModelConfigError
from smartcash_core.model.modules import C3, SPPF, Bottleneck, Concat, Conv, Detect

MODEL_NAMES = ("yolov5n", "yolov5s", "yolov5m", "yolov5l", "yolov5x")


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
