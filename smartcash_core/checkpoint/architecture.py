"""The model architecture a checkpoint asks for, checked and sized before anything is allocated.

Both formats carry a YOLOv5 model dict (native: ``metadata["yaml"]``; ``.pt``: the pickled model's
``yaml``). :func:`check_architecture` checks every field against YOLOv5-sane bounds (``limits``), then
estimates the parameter count from the YAML alone (:func:`estimate_num_params`, exact for every module
this project builds) and refuses a model over ``max_params`` before a single weight is allocated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from smartcash_core.checkpoint import limits
from smartcash_core.errors import CheckpointMetadataError, CheckpointTooLargeError, ModelConfigError
from smartcash_core.model.config import LayerSpec, layer_specs

__all__ = ["check_architecture", "check_class_count", "check_imgsz", "estimate_num_params"]

_ARG_NAMES = {"None", "nc", "anchors", "True", "False", "nearest", "bilinear", "bicubic"}


class _Field:
    """Raises :class:`CheckpointMetadataError` naming the file and the dotted field."""

    def __init__(self, source: str, prefix: str) -> None:
        self.source = source
        self.prefix = prefix

    def fail(self, field: str, value: Any, rule: str) -> CheckpointMetadataError:
        name = f"{self.prefix}.{field}" if self.prefix else field
        return CheckpointMetadataError(f"{self.source}: {name} = {_short(value)}: {rule}", field=name)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def check_imgsz(value: Any, stride: int, source: str, field: str = "imgsz") -> int:
    """An image size YOLOv5 can letterbox to: an int in ``IMGSZ_RANGE`` and a multiple of ``stride``."""
    low, high = limits.IMGSZ_RANGE
    if not _is_int(value) or not low <= value <= high or value % stride:
        raise _Field(source, "").fail(
            field, value, f"must be an integer from {low} to {high}, a multiple of the stride {stride}"
        )
    return int(value)


def check_class_count(value: Any, source: str, field: str = "nc") -> int:
    if not _is_int(value) or not 1 <= value <= limits.MAX_CLASSES:
        raise _Field(source, "").fail(field, value, f"must be an integer from 1 to {limits.MAX_CLASSES}")
    return int(value)


def check_architecture(
    cfg: Any, source: str, *, prefix: str = "yaml", max_params: int = limits.MAX_PARAMS
) -> int:
    """Check a YOLOv5 model dict field by field and return its parameter count (estimated, not built).

    Raises ``CheckpointMetadataError`` naming ``source`` and the field (``yaml.width_multiple``), or
    ``CheckpointTooLargeError`` when the model would have more than ``max_params`` parameters.
    """
    field = _Field(source, prefix)
    if not isinstance(cfg, Mapping):
        raise _Field(source, "").fail(prefix or "yaml", type(cfg).__name__, "must be a model dict")
    _check_top_level(cfg, field)
    rows = [*cfg["backbone"], *cfg["head"]]
    for index, row in enumerate(rows):
        _check_row(index, row, field, len(cfg["backbone"]), index == len(rows) - 1)
    try:
        specs = layer_specs(cfg)
    except (ModelConfigError, TypeError, ValueError, IndexError, ZeroDivisionError) as exc:
        raise CheckpointMetadataError(f"{source}: {prefix}: cannot be built: {exc}", field=prefix) from exc
    _check_detect(specs[-1], cfg["nc"], field)
    params = estimate_num_params(specs)
    if params > max_params:
        raise CheckpointTooLargeError(
            f"{source}: the model would have {params / 1e6:.1f} M parameters, over the cap of "
            f"{max_params / 1e6:.0f} M (yolov5x has about 86 M); refused before building it"
        )
    return params


def _check_top_level(cfg: Mapping[str, Any], field: _Field) -> None:
    for key in ("nc", "depth_multiple", "width_multiple", "anchors", "backbone", "head"):
        if key not in cfg:
            raise field.fail(key, None, "is missing")
    check_class_count(cfg["nc"], field.source, f"{field.prefix}.nc" if field.prefix else "nc")
    low, high = limits.MULTIPLE_RANGE
    for key in ("depth_multiple", "width_multiple"):
        value = cfg[key]
        if not _is_number(value) or not low < value <= high:
            raise field.fail(key, value, f"must be a number above {low} and at most {high} "
                                         "(yolov5n..yolov5x use 0.25..1.33)")
    if cfg.get("activation") not in (None, "nn.SiLU()"):
        raise field.fail("activation", cfg.get("activation"), "only the default nn.SiLU() is supported")
    _check_anchors(cfg["anchors"], field, "anchors")
    for part in ("backbone", "head"):
        if not isinstance(cfg[part], list) or not cfg[part]:
            raise field.fail(part, cfg[part], "must be a non-empty list of layer rows")
    rows = len(cfg["backbone"]) + len(cfg["head"])
    if rows > limits.MAX_LAYERS:
        raise field.fail("backbone+head", rows, f"at most {limits.MAX_LAYERS} layer rows")


def _check_anchors(anchors: Any, field: _Field, name: str) -> None:
    """A list of 1..4 levels, each with the same even number (2..20) of positive pixel sizes; or a count."""
    if _is_int(anchors):
        if not 1 <= anchors <= limits.MAX_ANCHORS_PER_LEVEL:
            raise field.fail(name, anchors, f"an anchor count must be 1..{limits.MAX_ANCHORS_PER_LEVEL}")
        return
    levels_ok = isinstance(anchors, list) and 1 <= len(anchors) <= limits.MAX_DETECT_LEVELS
    if not levels_ok or not all(isinstance(level, list) for level in anchors):
        raise field.fail(name, anchors, f"must be 1..{limits.MAX_DETECT_LEVELS} lists of w,h pairs")
    widths = {len(level) for level in anchors}
    per_level = widths.pop() if len(widths) == 1 else -1
    if per_level % 2 or not 2 <= per_level <= 2 * limits.MAX_ANCHORS_PER_LEVEL:
        raise field.fail(name, anchors, f"every level needs the same even count of numbers "
                                        f"(2..{2 * limits.MAX_ANCHORS_PER_LEVEL})")
    for level in anchors:
        if not all(_is_number(v) and 0 < v <= limits.MAX_ANCHOR_PIXELS for v in level):
            raise field.fail(name, level, f"anchor sizes must be numbers in (0, {limits.MAX_ANCHOR_PIXELS}]")


def _check_row(index: int, row: Any, field: _Field, backbone_rows: int, last: bool) -> None:
    part, position = ("backbone", index) if index < backbone_rows else ("head", index - backbone_rows)
    where = f"{part}[{position}]"
    if not isinstance(row, list) or len(row) != 4:
        raise field.fail(where, row, "must be [from, number, module, args]")
    source, repeats, module_name, args = row
    sources = [source] if _is_int(source) else source
    if not isinstance(sources, list) or not sources or not all(
        _is_int(s) and (s == -1 or 0 <= s < index or -index <= s < 0) for s in sources
    ):
        raise field.fail(f"{where}.from", source, "must name earlier layers (-1 or indices before this row)")
    if not _is_int(repeats) or not 1 <= repeats <= limits.MAX_REPEATS:
        raise field.fail(f"{where}.number", repeats, f"must be an integer from 1 to {limits.MAX_REPEATS}")
    if not isinstance(module_name, str) or module_name not in _MODULE_CHECKS:
        raise field.fail(f"{where}.module", module_name, f"must be one of {sorted(_MODULE_CHECKS)}")
    if (module_name == "Detect") != last:
        raise field.fail(f"{where}.module", module_name, "Detect must be the last row, and only the last")
    if module_name in ("Detect", "Concat") and repeats != 1:
        raise field.fail(f"{where}.number", repeats, f"{module_name} is not repeated: must be 1")
    if not isinstance(args, list) or not all(_is_plain_arg(a) for a in args):
        raise field.fail(f"{where}.args", args, "must be a list of numbers, booleans, None or YOLOv5 names")
    _MODULE_CHECKS[module_name](args, field, f"{where}.args")


def _is_plain_arg(value: Any) -> bool:
    if isinstance(value, str):
        return value in _ARG_NAMES
    if isinstance(value, list):  # explicit anchors in a Detect row
        return all(isinstance(v, list) and all(_is_number(x) for x in v) for v in value)
    return value is None or isinstance(value, bool) or _is_number(value)


def _check_channels(args: list[Any], field: _Field, where: str) -> None:
    if not args or not _is_int(args[0]) or not 1 <= args[0] <= limits.MAX_CHANNELS:
        raise field.fail(f"{where}[0]", args[0] if args else None,
                         f"output channels must be an integer from 1 to {limits.MAX_CHANNELS}")


def _check_int_arg(args: list[Any], position: int, bounds: tuple[int, int], name: str, field: _Field,
                   where: str) -> None:
    value = args[position] if position < len(args) else bounds[0]
    if not _is_int(value) or not bounds[0] <= value <= bounds[1]:
        raise field.fail(f"{where}[{position}]", value, f"{name} must be an integer from {bounds[0]} to "
                                                        f"{bounds[1]}")


def _check_conv_args(args: list[Any], field: _Field, where: str) -> None:
    """Conv: [channels, kernel, stride, padding, groups, act]."""
    _check_channels(args, field, where)
    if len(args) > 6:
        raise field.fail(where, args, "Conv takes [channels, kernel, stride, padding, groups, act]")
    _check_int_arg(args, 1, (1, limits.MAX_KERNEL), "kernel", field, where)
    _check_int_arg(args, 2, (1, 4), "stride", field, where)
    if len(args) > 3 and args[3] not in (None, "None"):
        _check_int_arg(args, 3, (0, limits.MAX_KERNEL), "padding", field, where)
    _check_int_arg(args, 4, (1, limits.MAX_CHANNELS), "groups", field, where)
    if len(args) > 5 and args[5] not in (True, False, "True", "False"):
        raise field.fail(f"{where}[5]", args[5], "act must be true or false")


def _check_csp_args(args: list[Any], field: _Field, where: str) -> None:
    """C3 / Bottleneck: [channels, shortcut, groups, expansion]."""
    _check_channels(args, field, where)
    if len(args) > 4 or (len(args) > 1 and args[1] not in (True, False, "True", "False")):
        raise field.fail(where, args, "C3 / Bottleneck take [channels, shortcut (bool), groups, expansion]")
    _check_int_arg(args, 2, (1, limits.MAX_CHANNELS), "groups", field, where)
    expansion = args[3] if len(args) > 3 else 0.5
    if not _is_number(expansion) or not 0 < expansion <= 1:
        raise field.fail(f"{where}[3]", expansion, "expansion must be a number in (0, 1]")


def _check_sppf_args(args: list[Any], field: _Field, where: str) -> None:
    _check_channels(args, field, where)
    kernel = args[1] if len(args) > 1 else 5
    if len(args) > 2 or not _is_int(kernel) or not 1 <= kernel <= limits.MAX_KERNEL or kernel % 2 == 0:
        raise field.fail(where, args, f"SPPF takes [channels, odd kernel <= {limits.MAX_KERNEL}]")


def _check_upsample_args(args: list[Any], field: _Field, where: str) -> None:
    size, scale, mode = (list(args) + [None, None, "nearest"][len(args):])[:3]
    scale_ok = _is_int(scale) and 1 <= scale <= limits.MAX_UPSAMPLE
    if len(args) > 3 or size not in (None, "None") or not scale_ok:
        raise field.fail(where, args, f"Upsample takes [None, scale 1..{limits.MAX_UPSAMPLE}, mode]")
    if mode not in ("nearest", "bilinear", "bicubic"):
        raise field.fail(where, args, "Upsample mode must be nearest, bilinear or bicubic")


def _check_concat_args(args: list[Any], field: _Field, where: str) -> None:
    if args not in ([], [1]):
        raise field.fail(where, args, "Concat joins channels: [1]")


def _check_detect_args(args: list[Any], field: _Field, where: str) -> None:
    if len(args) != 2 or not (args[0] == "nc" or _is_int(args[0])):
        raise field.fail(where, args, "Detect takes [nc, anchors]")
    if args[1] != "anchors":
        _check_anchors(args[1], field, f"{where}[1]")


_MODULE_CHECKS = {
    "Conv": _check_conv_args, "C3": _check_csp_args, "Bottleneck": _check_csp_args,
    "SPPF": _check_sppf_args, "Concat": _check_concat_args, "Detect": _check_detect_args,
    "nn.Upsample": _check_upsample_args, "Upsample": _check_upsample_args,
    "torch.nn.Upsample": _check_upsample_args,
}


def _check_detect(spec: LayerSpec, nc: int, field: _Field) -> None:
    """Detect's class count equals ``nc`` and it has one anchor level per input."""
    detect_nc, anchors, inputs = spec.args
    levels = len(anchors) if isinstance(anchors, list) else -1
    if detect_nc != nc or levels != len(inputs) or not 1 <= levels <= limits.MAX_DETECT_LEVELS:
        raise field.fail("head[-1]", list(spec.args[:2]), f"Detect needs one anchor level per input "
                                                          f"({len(inputs)} inputs)")


# ----------------------------------------------------------------------------------------------
# Parameter count from the YAML (mirrors smartcash_core.model.modules; a test pins equality)
# ----------------------------------------------------------------------------------------------
def estimate_num_params(cfg_or_specs: Mapping[str, Any] | Sequence[LayerSpec]) -> int:
    """Parameters (weights, not BatchNorm running statistics) the model would have, without building it."""
    specs = layer_specs(cfg_or_specs) if isinstance(cfg_or_specs, Mapping) else cfg_or_specs
    return sum(spec.repeats * _module_params(spec.module_name, spec.args) for spec in specs)


def _conv(c1: int, c2: int, k: int = 1, s: int = 1, p: Any = None, g: int = 1, act: Any = True) -> int:
    return (c1 // g) * c2 * k * k + 2 * c2  # conv weight (no bias) + BatchNorm weight and bias


def _bottleneck(c1: int, c2: int, shortcut: Any = True, g: int = 1, e: float = 0.5) -> int:
    hidden = int(c2 * e)
    return _conv(c1, hidden, 1) + _conv(hidden, c2, 3, g=g)


def _c3(c1: int, c2: int, n: int = 1, shortcut: Any = True, g: int = 1, e: float = 0.5) -> int:
    hidden = int(c2 * e)
    return 2 * _conv(c1, hidden, 1) + _conv(2 * hidden, c2, 1) + n * _bottleneck(hidden, hidden, g=g, e=1.0)


def _sppf(c1: int, c2: int, k: int = 5) -> int:
    hidden = c1 // 2
    return _conv(c1, hidden, 1) + _conv(hidden * 4, c2, 1)


def _detect(nc: int, anchors: list[list[float]], ch: list[int]) -> int:
    outputs = (nc + 5) * (len(anchors[0]) // 2)
    return sum(c * outputs + outputs for c in ch)  # 1x1 conv with bias per level


def _module_params(module_name: str, args: tuple[Any, ...]) -> int:
    counters = {"Conv": _conv, "C3": _c3, "Bottleneck": _bottleneck, "SPPF": _sppf, "Detect": _detect}
    counter = counters.get(module_name)
    return counter(*args) if counter is not None else 0  # Upsample, Concat: no parameters
