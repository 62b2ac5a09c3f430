"""The native checkpoint: safetensors weights plus JSON metadata in the safetensors header.

The header's ``__metadata__`` holds one key, ``smartcash``, whose value is a JSON document with the model
YAML, class table, image size, stride, anchors, epoch, training phase, free-form metrics and the sha256 of
the weights. Loading parses JSON and raw little-endian tensors only: nothing is unpickled.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from smartcash_core.checkpoint import LoadedModel, limits
from smartcash_core.checkpoint.architecture import check_imgsz
from smartcash_core.checkpoint.metadata import FORMAT_VERSION, LossHypFields, validate_metadata
from smartcash_core.classes import ClassTable
from smartcash_core.errors import (
    CheckpointError,
    CheckpointTooLargeError,
    ClassTableError,
    ModelConfigError,
)

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "METADATA_KEY",
    "load_native",
    "read_metadata",
    "save_checkpoint",
    "weights_sha256",
]

FORMAT_NAME = "smartcash-native"
METADATA_KEY = "smartcash"


def weights_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """Digest over (name, dtype, shape, little-endian bytes) of every tensor in name order.

    Independent of the file layout, so it identifies the weights whatever wrote them.
    """
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().contiguous().cpu()
        digest.update(f"{name}|{str(tensor.dtype).removeprefix('torch.')}|{list(tensor.shape)}|".encode())
        if tensor.numel():  # a zero-copy view: hashlib releases the GIL while it hashes large buffers
            digest.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()


def save_checkpoint(
    path: str | Path,
    model: Any,
    *,
    class_table: ClassTable,
    imgsz: int,
    epoch: int = 0,
    phase: int | None = None,
    metrics: Mapping[str, Any] | None = None,
    half: bool = False,
    loss_hyp: Mapping[str, float] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` (a :class:`DetectionModel`, not fused) as a native checkpoint; returns the path.

    ``half`` stores floating weights as fp16 (anchors stay fp32); loading always gives an fp32 model.
    ``loss_hyp``: the loss gains training used, already scaled (``LossHypFields``), so a validation loss
    can use them. ``extra`` adds free-form JSON fields to the metadata (e.g. where a converted model came
    from).
    """
    path = Path(path)
    _check_save_args(path, model, class_table, imgsz, phase)
    tensors = _tensors_to_save(model, half)
    metadata = {
        **dict(extra or {}),
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "yaml": model.yaml,
        "class_table": class_table.to_dict(),
        "imgsz": int(imgsz),
        "stride": [float(s) for s in model.stride],
        "anchors": model.detect.anchors.tolist(),
        "epoch": int(epoch),
        "phase": phase,
        "metrics": dict(metrics or {}),
        "sha256": weights_sha256(tensors),
        "dtype": "float16" if half else "float32",
        **({"loss_hyp": _checked_loss_hyp(path, loss_hyp)} if loss_hyp is not None else {}),
        "num_params": model.num_params(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
    }
    try:
        encoded = json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: metadata is not JSON-serializable: {exc}") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={METADATA_KEY: encoded})
    return path


def _check_save_args(path: Path, model: Any, table: ClassTable, imgsz: int, phase: int | None) -> None:
    if getattr(model, "fused", False):
        raise CheckpointError(f"{path}: cannot save a fused model (BatchNorm folded); save before fuse()")
    if table.num_fine != model.nc:
        raise CheckpointError(
            f"{path}: class table has {table.num_fine} classes but the model has {model.nc}"
        )
    if phase not in (None, 1, 2):
        raise CheckpointError(f"{path}: training phase must be 1, 2 or None, got {phase!r}")
    stride = int(max(model.stride.tolist()))
    check_imgsz(imgsz, stride, str(path))  # never write a checkpoint the loader would refuse


def _checked_loss_hyp(path: Path, loss_hyp: Mapping[str, float]) -> dict[str, float]:
    """Never write gains the loader would refuse."""
    try:
        return LossHypFields.model_validate(dict(loss_hyp)).model_dump()
    except ValidationError as exc:
        problem = exc.errors(include_url=False)[0]
        raise CheckpointError(f"{path}: loss_hyp.{problem['loc'][0]}: {problem['msg']}") from exc


def _tensors_to_save(model: Any, half: bool) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        if half and tensor.is_floating_point() and not name.endswith(".anchors"):
            tensor = tensor.half()
        tensors[name] = tensor.clone()  # safetensors refuses tensors that share memory
    return tensors


# ----------------------------------------------------------------------------------------------
# Loading: header first (bounded), metadata and architecture checked, model built, then the weights
# ----------------------------------------------------------------------------------------------
_DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "BOOL": 1}


@dataclass(frozen=True)
class _TensorEntry:
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True)
class _Header:
    """A safetensors header whose framing and tensor table were checked against the file's length."""

    entries: dict[str, _TensorEntry]
    metadata: dict[str, Any]


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The SmartCash metadata of a native checkpoint, checking the header and the file length only."""
    return _read_header(Path(path)).metadata


def load_native(
    path: str | Path, device: torch.device | str = "cpu", *, max_params: int = limits.MAX_PARAMS
) -> LoadedModel:
    """Load a native checkpoint as an fp32 eval-mode model on ``device``; nothing is unpickled.

    Order matters: the header is read (bounded by ``MAX_HEADER_BYTES``), the metadata and architecture
    are checked and the parameter count estimated (refused over ``max_params``) before the model is
    built, and the tensor table must fit the built model before any weight is read.
    Raises ``CheckpointError`` (or a subclass) naming the file: not a checkpoint, truncated, metadata
    missing or invalid (naming the field), over a cap, weights that do not match their sha256, class
    counts that disagree (table, YAML, weights).
    """
    path = Path(path)
    device = torch.device(device)
    header = _read_header(path)
    metadata = header.metadata
    validate_metadata(str(path), metadata, max_params=max_params)
    table = _class_table(path, metadata)
    _check_class_counts(path, metadata["yaml"], header.entries, table)
    model = _build_model(path, metadata["yaml"])
    _check_layout(path, header.entries, model.state_dict())
    tensors = _read_tensors(path)
    if weights_sha256(tensors) != metadata["sha256"]:
        raise CheckpointError(f"{path}: weights do not match the sha256 in the metadata (file corrupted)")
    expected = model.state_dict()
    model.load_state_dict({name: t.to(expected[name].dtype) for name, t in tensors.items()})
    del tensors, expected
    model = model.float().eval().to(device)
    return LoadedModel(
        model=model,
        class_table=table,
        imgsz=int(metadata["imgsz"]),
        stride=int(max(model.stride.tolist())),
        sha256=str(metadata["sha256"]),
        source=path,
        device=device,
        metadata=metadata,
        num_params=model.num_params(),
    )


def _read_header(path: Path) -> _Header:
    """Read and check the safetensors framing, reading no more than the (capped) header."""
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            prefix = handle.read(8)
            header_len = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else -1
            _check_header_length(path, header_len, size)
            raw = handle.read(header_len)
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: file does not exist") from exc
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if raw[:1] != b"{":
        raise CheckpointError(f"{path}: not a checkpoint (no safetensors header)")
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{path}: not a checkpoint (unreadable safetensors header: {exc})") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a checkpoint (safetensors header is not an object)")
    entries = _tensor_entries(path, header, size - 8 - header_len)
    return _Header(entries, _smartcash_metadata(path, header.get("__metadata__")))


def _check_header_length(path: Path, header_len: int, size: int) -> None:
    if header_len < 2:
        raise CheckpointError(f"{path}: not a checkpoint (only {size} bytes)" if size < 8 else
                              f"{path}: not a checkpoint (no safetensors header)")
    if header_len > limits.MAX_HEADER_BYTES:
        raise CheckpointTooLargeError(
            f"{path}: safetensors header of {header_len} bytes is over the cap of "
            f"{limits.MAX_HEADER_BYTES} bytes (yolov5x needs about 75 KB)"
        )
    if size < 8 + header_len:
        raise CheckpointError(f"{path}: truncated (header needs {header_len} bytes, file has {size - 8})")


def _tensor_entries(path: Path, header: Mapping[str, Any], data_bytes: int) -> dict[str, _TensorEntry]:
    """Every tensor's dtype, shape and byte range; ranges must tile the data exactly, in order."""
    entries = {
        name: _tensor_entry(path, name, entry) for name, entry in header.items() if name != "__metadata__"
    }
    position = 0
    for name, entry in sorted(entries.items(), key=lambda item: (item[1].begin, item[1].end)):
        if entry.begin != position:
            problem = "overlaps the previous tensor" if entry.begin < position else "leaves a gap before it"
            raise CheckpointError(f"{path}: corrupt tensor table: {name} at byte {entry.begin} {problem}")
        position = entry.end
    if data_bytes < position:
        raise CheckpointError(
            f"{path}: truncated (tensor data needs {position} bytes, file has {data_bytes})"
        )
    if data_bytes > position:
        raise CheckpointError(f"{path}: corrupt: {data_bytes - position} bytes follow the last tensor")
    return entries


def _tensor_entry(path: Path, name: str, entry: Any) -> _TensorEntry:
    if not isinstance(entry, dict):
        raise CheckpointError(f"{path}: corrupt tensor table: entry {name[:80]!r} is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in _DTYPE_SIZES:
        raise CheckpointError(f"{path}: tensor {name[:80]!r} has unsupported dtype {str(dtype)[:20]!r}")
    if not (isinstance(shape, list) and len(shape) <= limits.MAX_TENSOR_DIMS
            and all(_is_count(n) for n in shape)):
        raise CheckpointError(f"{path}: tensor {name[:80]!r} has an invalid shape {str(shape)[:80]}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(n) for n in offsets)
            and offsets[0] <= offsets[1]):
        raise CheckpointError(f"{path}: tensor {name[:80]!r} has invalid data_offsets {str(offsets)[:80]}")
    if offsets[1] - offsets[0] != math.prod(shape) * _DTYPE_SIZES[dtype]:
        raise CheckpointError(f"{path}: tensor {name[:80]!r}: shape {shape} does not fit its "
                              f"{offsets[1] - offsets[0]} bytes")
    return _TensorEntry(dtype, tuple(shape), offsets[0], offsets[1])


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _smartcash_metadata(path: Path, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or METADATA_KEY not in raw:
        raise CheckpointError(
            f"{path}: metadata missing: a safetensors file without SmartCash metadata; "
            "write checkpoints with save_checkpoint() or `smartcash convert`"
        )
    try:
        metadata = json.loads(raw[METADATA_KEY])
    except (TypeError, json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{path}: metadata is not valid JSON ({exc})") from exc
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: metadata must be a JSON object")
    return metadata


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The weights, memory-mapped one tensor at a time.

    ``safe_open`` keeps the GIL only per tensor (``safetensors.torch.load`` on the whole file holds it
    for the whole copy, which stalled the service's event loop for up to 0.7 s on yolov5x).
    """
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, ValueError, RuntimeError, OSError) as exc:
        raise CheckpointError(f"{path}: corrupt tensor data ({exc})") from exc


def _class_table(path: Path, metadata: Mapping[str, Any]) -> ClassTable:
    try:
        return ClassTable.from_dict(metadata["class_table"])
    except ClassTableError as exc:
        raise CheckpointError(f"{path}: invalid class table in metadata: {exc}") from exc


def _build_model(path: Path, model_yaml: Mapping[str, Any]) -> Any:
    from smartcash_core.model.yolo import DetectionModel

    try:
        return DetectionModel(model_yaml)
    except (ModelConfigError, KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: cannot build the model in the metadata: {exc}") from exc


def _check_layout(
    path: Path, entries: Mapping[str, _TensorEntry], expected: Mapping[str, torch.Tensor]
) -> None:
    missing = sorted(set(expected) - set(entries))
    unexpected = sorted(set(entries) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not fit the model (missing {missing[:5]}, unexpected "
                              f"{[name[:80] for name in unexpected[:5]]})")
    for name, tensor in expected.items():
        if entries[name].shape != tuple(tensor.shape):
            raise CheckpointError(f"{path}: {name} has shape {entries[name].shape}, the model needs "
                                  f"{tuple(tensor.shape)}")


def _check_class_counts(path: Path, model_yaml: Mapping[str, Any], entries: Mapping[str, _TensorEntry],
                        table: ClassTable) -> None:
    """Table, YAML and the Detect output convs must agree on the class count."""
    yaml_nc = model_yaml.get("nc")
    if yaml_nc != table.num_fine:
        raise CheckpointError(f"{path}: class count mismatch: the class table has {table.num_fine} classes, "
                              f"the model YAML nc={yaml_nc}")
    anchors = next((e for name, e in entries.items() if name.endswith(".anchors")), None)
    heads = [e for name, e in entries.items() if _is_detect_bias(name, entries)]
    if anchors is None or len(anchors.shape) != 3 or not heads or len(heads[0].shape) != 1:
        raise CheckpointError(f"{path}: weights have no Detect head (anchors / output convs missing)")
    per_anchor = heads[0].shape[0] // max(anchors.shape[1], 1)
    if per_anchor - 5 != table.num_fine:
        raise CheckpointError(f"{path}: class count mismatch: the weights predict {per_anchor - 5} classes, "
                              f"the class table has {table.num_fine}")


def _is_detect_bias(name: str, entries: Mapping[str, Any]) -> bool:
    """``model.<detect>.m.<i>.bias`` where ``model.<detect>.anchors`` exists."""
    parts = name.split(".")
    return (len(parts) == 5 and parts[2] == "m" and parts[4] == "bias"
            and f"{parts[0]}.{parts[1]}.anchors" in entries)
