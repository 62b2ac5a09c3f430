"""Inference precision: the number format the forward pass runs in, and where each one is offered.

* ``fp32`` (default): exact; results are bit-identical to YOLOv5's own fp32 forward.
* ``bf16``: the backbone and neck run under ``torch.autocast(dtype=bfloat16)``; the Detect head (its 1x1
  convs and the box decoding) runs in float32, so boxes keep float32 resolution and NMS gets float32
  (bf16 has 8 significant bits: a coordinate near 600 px would snap to steps of 4 px). Offered on CPUs with
  native bf16 dot products (``avx512_bf16`` or ``amx_bf16`` among the CPU flags; without them oneDNN emulates
  bf16, which is slower than fp32) and on CUDA devices that support bf16. Not exact: the docs give the mAP
  change on the fixtures (docs/BENCHMARKS.md).
* ``fp16``: CUDA only, as YOLOv5's ``--half`` (the whole network in half precision).

A precision the device cannot run is refused with :class:`UnsupportedPrecisionError` (an
``InvalidParamsError``: HTTP 400, a CLI error) rather than silently replaced, so a result always ran in the
precision it reports. The older ``half`` switch stays as a deprecated alias: ``half=True`` asks for ``fp16``
where it is offered (CUDA) and, as it always did, runs ``fp32`` elsewhere, now with a ``half_ignored``
warning in the result.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from smartcash_core.errors import InvalidParamsError
from smartcash_core.validation.params import Precision, ValidationParams, ValidationWarning

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
_CPUINFO = Path("/proc/cpuinfo")


class UnsupportedPrecisionError(InvalidParamsError):
    """The requested inference precision cannot run on the model's device (the message says why)."""


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags the kernel reports (Linux ``/proc/cpuinfo``); empty where it is not readable."""
    try:
        text = _CPUINFO.read_text(encoding="ascii", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_bf16_flags() -> tuple[str, ...]:
    """The native bf16 instruction sets this CPU has (``avx512_bf16``, ``amx_bf16``); empty: none."""
    present = cpu_flags()
    return tuple(flag for flag in BF16_CPU_FLAGS if flag in present)


def precision_unavailable(precision: str, device: torch.device) -> str | None:
    """Why ``precision`` cannot run on ``device`` (a sentence that says what to do), or ``None`` if it can."""
    if precision == "fp32":
        return None
    if precision == "fp16":
        if device.type == "cuda":
            return None
        return f"precision fp16 runs on CUDA only, this model is on {device}; use fp32, or bf16 where offered"
    if precision == "bf16":
        return _bf16_unavailable(device)
    return f"unknown precision {precision!r}: use fp32, bf16 or fp16"


def _bf16_unavailable(device: torch.device) -> str | None:
    if device.type == "cpu":
        if cpu_bf16_flags():
            return None
        return (
            "precision bf16 needs a CPU with native bf16 instructions (flags "
            f"{' or '.join(BF16_CPU_FLAGS)}), which this CPU lacks; use fp32"
        )
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return None
        return f"precision bf16 is not supported by {device}; use fp16 or fp32"
    return f"precision bf16 is not offered on {device}; use fp32"


def resolve_precision(
    params: ValidationParams, device: torch.device
) -> tuple[Precision, list[ValidationWarning]]:
    """The precision a pass runs in on ``device``, and the warnings that go with it.

    Raises :class:`UnsupportedPrecisionError` when ``params.precision`` cannot run there, and
    ``InvalidParamsError`` when the deprecated ``half`` contradicts ``precision``.
    """
    requested: Precision = params.precision
    if params.half and requested not in ("fp32", "fp16"):
        raise InvalidParamsError(
            f"half (deprecated: same as precision fp16) contradicts precision {requested}; drop half"
        )
    if params.half and requested == "fp32":
        if device.type != "cuda":
            message = f"half (fp16) runs on CUDA only; this pass ran in fp32 on {device}"
            return "fp32", [ValidationWarning("half_ignored", message)]
        requested = "fp16"
    why = precision_unavailable(requested, device)
    if why is not None:
        raise UnsupportedPrecisionError(why)
    return requested, []


def check_precision_for_device(params: ValidationParams, device: str | torch.device) -> None:
    """Raise before a pass is queued if ``params`` asks for a precision ``device`` cannot run (HTTP 400)."""
    resolve_precision(params, torch.device(device))
