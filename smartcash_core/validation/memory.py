"""How much memory a validation pass needs at its peak, estimated before it runs, and the batch that fits.

The peak of a pass is dominated by the tensors of one batch, which grow with ``batch_size x imgsz^2``: the
network's activations (YOLOv5 keeps the outputs its later layers concatenate), the float input, the head's
outputs, and the uint8 batches the decode workers prepare ahead. :func:`estimate_pass_memory` sums

- ``fixed``: the weights of the fused copy the pass runs (made on its first pass) and NMS of one image (its
  candidates at ``conf_thres`` 0.001 can reach every anchor times every class);
- ``per image``: input pixels x bytes per pixel, where the network's share comes from its own layers
  (:func:`activation_floats_per_pixel`: the outputs of every layer, measured on the ``meta`` device, so
  nothing is computed or allocated), times :data:`ACTIVATION_FACTOR`.

The factor was fitted on measured peaks (``tests/bench/bench_pass_memory.py``: peak RSS growth of a fresh
process over one pass, CPU) so the estimate stays above every measured peak of 100 MB or more and within
:data:`MAX_OVERESTIMATE` of it (``tests/validation/test_memory.py`` checks both on real passes). On CUDA
the network's tensors live in GPU memory (fp16 halves them) and the loader's in host memory; the estimate
counts them all against the one budget (conservative).
"""

from __future__ import annotations

import copy
import math
import threading
import weakref
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
from torch import nn

from smartcash_core.device import device_memory_bytes
from smartcash_core.errors import MemoryBudgetError
from smartcash_core.validation.imgsz import resolve_imgsz
from smartcash_core.validation.params import ValidationParams

if TYPE_CHECKING:
    from smartcash_core.checkpoint import LoadedModel

PROBE_SIZE = 256  # the meta-device probe's input side (pixels); any multiple of the stride gives the same
FLOAT_BYTES = 4
ACTIVATION_FACTOR = 0.5  # x the sum of every layer's output: fitted to measured peaks (module docstring)
INPUT_BYTES_PER_PIXEL = 3 * (1 + FLOAT_BYTES)  # the uint8 batch and its float copy
LOADER_BYTES_PER_PIXEL = 3 * 2  # decoded image + its place in a prefetched uint8 batch, per batch in flight
NMS_BYTES_PER_CANDIDATE = 6 * FLOAT_BYTES * 2  # a candidate row (box, score, class) and its sorted copy
MAX_OVERESTIMATE = 3.0  # the estimate is at most this many times the measured peak (tests hold it there)
DEFAULT_BUDGET_FRACTION = {"cuda": 0.8, "cpu": 0.5, "mps": 0.5}  # of the device's memory (the rest: the
# process, its caches and, on CPU and MPS, everything else the machine runs)

_PROFILES: weakref.WeakKeyDictionary[nn.Module, tuple[float, float]] = weakref.WeakKeyDictionary()
_PROFILES_LOCK = threading.Lock()


@dataclass(frozen=True)
class MemoryEstimate:
    """A pass's estimated peak: ``fixed_bytes + batch_size * per_image_bytes`` (``total_bytes``)."""

    fixed_bytes: int
    per_image_bytes: int
    batch_size: int

    @property
    def total_bytes(self) -> int:
        return self.fixed_bytes + self.batch_size * self.per_image_bytes

    def largest_batch_within(self, budget_bytes: int) -> int:
        """The largest batch size whose estimate fits ``budget_bytes`` (0: not even one image)."""
        room = budget_bytes - self.fixed_bytes
        return max(0, room // self.per_image_bytes) if room > 0 else 0


def _numel(value: object) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel()
    if isinstance(value, (list, tuple)):
        return sum(_numel(item) for item in value)
    return 0


def _layer_outputs_on_meta(network: nn.Module) -> list[int]:
    """The output size (elements) of each layer of ``network.model`` for one ``PROBE_SIZE`` square image.

    Runs on a copy whose parameters and buffers are ``meta`` tensors (shapes only; made without copying a
    weight): the model itself may be running a pass on another thread at this very moment (a submission is
    estimated while the model validates), so it is never touched (no swapped weights, hooks or mode)."""
    copy_of = _meta_copy(network)
    sizes: list[int] = []
    for layer in copy_of.model:
        layer.register_forward_hook(lambda _m, _i, out: sizes.append(_numel(out)))
    probe = torch.zeros(1, 3, PROBE_SIZE, PROBE_SIZE, device="meta")
    with torch.no_grad():
        copy_of.eval()(probe)
    return sizes


def _meta_copy(network: nn.Module) -> nn.Module:
    """``network`` deep-copied with every parameter and buffer replaced by a ``meta`` tensor of its shape."""
    memo: dict[int, object] = {}
    for parameter in network.parameters():
        memo[id(parameter)] = nn.Parameter(torch.empty_like(parameter, device="meta"), requires_grad=False)
    for buffer in network.buffers():
        memo[id(buffer)] = torch.empty_like(buffer, device="meta")
    return copy.deepcopy(network, memo)


def activation_floats_per_pixel(model: LoadedModel) -> tuple[float, float]:
    """``(body, head)``: elements every layer but the head outputs, and the head's outputs (decoded and
    raw), per input pixel; measured once per model on the ``meta`` device (shapes only, no arithmetic)."""
    network = model.model
    with _PROFILES_LOCK:
        profile = _PROFILES.get(network)
    if profile is None:
        layers = getattr(network, "model", None)
        if not isinstance(layers, nn.Sequential) or len(layers) < 2:
            raise TypeError("estimating memory needs a YOLOv5 DetectionModel (a Sequential of layers)")
        sizes = _layer_outputs_on_meta(network)
        pixels = PROBE_SIZE * PROBE_SIZE
        profile = (sum(sizes[:-1]) / pixels, sizes[-1] / pixels)
        with _PROFILES_LOCK:
            _PROFILES[network] = profile
    return profile


def estimate_pass_memory(
    model: LoadedModel, params: ValidationParams, images: int | None = None
) -> MemoryEstimate:
    """The estimated peak memory of validating ``model`` with ``params`` (see the module docstring).

    ``images``: how many images the source holds, when known (an upload): no batch is larger than that.
    Rectangular batches are never larger than the square ``imgsz`` plus half a stride of padding.
    """
    body, head = activation_floats_per_pixel(model)
    side = params.imgsz + model.stride
    pixels = side * side
    half_width = params.precision in ("bf16", "fp16") or (params.half and model.device.type == "cuda")
    network_bytes = 2 if half_width else FLOAT_BYTES  # bf16/fp16 activations (half only runs on CUDA)
    batches_in_flight = params.workers + 2  # prefetched by the workers, plus the one being run
    per_pixel = (
        ACTIVATION_FACTOR * body * network_bytes
        + head * FLOAT_BYTES * 2  # decoded and raw outputs (kept for the batch) and decoding's temporaries
        + INPUT_BYTES_PER_PIXEL
        + LOADER_BYTES_PER_PIXEL * batches_in_flight
    )
    weights = sum(p.numel() * p.element_size() for p in model.model.parameters())
    candidates = head / 2 * pixels * model.num_classes / (5 + model.num_classes)  # anchors x classes
    fixed = weights + candidates * NMS_BYTES_PER_CANDIDATE  # the fused copy (first pass) and NMS
    batch = params.batch_size if images is None else max(1, min(params.batch_size, images))
    return MemoryEstimate(math.ceil(fixed), math.ceil(per_pixel * pixels), batch)


def default_memory_budget(device: torch.device) -> int | None:
    """The default budget of one pass on ``device``: :data:`DEFAULT_BUDGET_FRACTION` of its memory (the
    container's limit on CPU when lower); None when the memory cannot be read."""
    total = device_memory_bytes(device)
    if total is None:
        return None
    return int(total * DEFAULT_BUDGET_FRACTION.get(device.type, 0.5))


def check_pass_memory(
    model: LoadedModel, params: ValidationParams, budget_bytes: int, images: int | None = None
) -> MemoryEstimate:
    """The estimate of the pass, or :class:`MemoryBudgetError` when it exceeds ``budget_bytes``: the message
    names the estimate, the budget and the largest ``batch_size`` that fits (or the ``imgsz`` that fits one
    image when no batch size does). An unset ``imgsz`` is the checkpoint's, as the pass chooses it."""
    params = resolve_imgsz(params, model)[0]
    estimate = estimate_pass_memory(model, params, images)
    if estimate.total_bytes <= budget_bytes:
        return estimate
    fitting = estimate.largest_batch_within(budget_bytes)
    shape = f"batch_size {estimate.batch_size} at imgsz {params.imgsz}"
    message = (
        f"the job needs an estimated {_gib(estimate.total_bytes)} of memory at its peak ({shape}: "
        f"{_gib(estimate.per_image_bytes)} an image), over the memory budget of {_gib(budget_bytes)}; "
    )
    if fitting > 0:
        raise MemoryBudgetError(
            message + f"batch_size {fitting} fits", estimate.total_bytes, budget_bytes, fitting
        )
    imgsz = _largest_imgsz_for_one(model, params, budget_bytes)
    advice = f"imgsz {imgsz} fits at batch_size 1" if imgsz else "no image size fits: raise the budget"
    raise MemoryBudgetError(
        message + f"not even batch_size 1 fits; {advice}", estimate.total_bytes, budget_bytes, 0, imgsz
    )


def _largest_imgsz_for_one(model: LoadedModel, params: ValidationParams, budget_bytes: int) -> int | None:
    """The largest multiple of the stride (at least 32) whose one-image pass fits ``budget_bytes``."""
    for imgsz in range(params.imgsz - params.imgsz % model.stride, 31, -model.stride):
        one = replace(params, imgsz=imgsz, batch_size=1)
        if estimate_pass_memory(model, one).total_bytes <= budget_bytes:
            return imgsz
    return None


def _gib(size: int) -> str:
    return f"{size / 2**30:.2f} GiB"
