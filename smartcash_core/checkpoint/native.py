"""The native checkpoint: safetensors weights plus JSON metadata in the safetensors header.

The header's ``__metadata__`` holds one key, ``smartcash``, whose value is a JSON document with the model
YAML, class table, image size, stride, anchors, epoch, training phase, free-form metrics and the sha256 of
the weights. Loading parses JSON and raw little-endian tensors only: nothing is unpickled.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save_file

from smartcash_core.checkpoint import LoadedModel
from smartcash_core.classes import ClassTable
from smartcash_core.errors import CheckpointError, ClassTableError, ModelConfigError

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
FORMAT_VERSION = 1
METADATA_KEY = "smartcash"
_MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own bound


def weights_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """Digest over (name, dtype, shape, little-endian bytes) of every tensor in name order.

    Independent of the file layout, so it identifies the weights whatever wrote them.
    """
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().contiguous().cpu()
        digest.update(f"{name}|{str(tensor.dtype).removeprefix('torch.')}|{list(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
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
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` (a :class:`DetectionModel`, not fused) as a native checkpoint; returns the path.

    ``half`` stores floating weights as fp16 (anchors stay fp32); loading always gives an fp32 model.
    ``extra`` adds free-form JSON fields to the metadata (e.g. where a converted model came from).
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
    if isinstance(imgsz, bool) or not isinstance(imgsz, int) or imgsz <= 0:
        raise CheckpointError(f"{path}: imgsz must be a positive integer, got {imgsz!r}")


def _tensors_to_save(model: Any, half: bool) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        if half and tensor.is_floating_point() and not name.endswith(".anchors"):
            tensor = tensor.half()
        tensors[name] = tensor.clone()  # safetensors refuses tensors that share memory
    return tensors


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------
def read_metadata(path: str | Path) -> dict[str, Any]:
    """The SmartCash metadata of a native checkpoint, checking the header and the file length only."""
    path = Path(path)
    data = _read_bytes(path)
    _, metadata = _parse_header(path, data)
    return metadata


def load_native(path: str | Path, device: torch.device | str = "cpu") -> LoadedModel:
    """Load a native checkpoint as an fp32 eval-mode model on ``device``; nothing is unpickled.

    Raises ``CheckpointError`` naming the file: not a checkpoint, truncated, metadata missing or invalid,
    weights that do not match their sha256, class counts that disagree (table, YAML, weights).
    """
    path = Path(path)
    device = torch.device(device)
    data = _read_bytes(path)
    _, metadata = _parse_header(path, data)
    tensors = _decode_tensors(path, data)
    if weights_sha256(tensors) != metadata["sha256"]:
        raise CheckpointError(f"{path}: weights do not match the sha256 in the metadata (file corrupted)")
    table = _class_table(path, metadata)
    model = _build_model(path, metadata, tensors, table)
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


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: file does not exist") from exc
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from exc


def _parse_header(path: Path, data: bytes) -> tuple[int, dict[str, Any]]:
    """Validate the safetensors framing and return (header length, SmartCash metadata)."""
    if len(data) < 8:
        raise CheckpointError(f"{path}: not a checkpoint (only {len(data)} bytes)")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > _MAX_HEADER_BYTES or data[8:9] != b"{":
        raise CheckpointError(f"{path}: not a checkpoint (no safetensors header)")
    if len(data) < 8 + header_len:
        raise CheckpointError(
            f"{path}: truncated (header needs {header_len} bytes, file has {len(data) - 8})"
        )
    try:
        header = json.loads(data[8 : 8 + header_len])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not a checkpoint (unreadable safetensors header: {exc})") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a checkpoint (safetensors header is not an object)")
    _check_data_length(path, header, len(data) - 8 - header_len)
    return header_len, _smartcash_metadata(path, header.get("__metadata__"))


def _check_data_length(path: Path, header: Mapping[str, Any], data_bytes: int) -> None:
    ends = [
        entry["data_offsets"][1]
        for name, entry in header.items()
        if name != "__metadata__" and isinstance(entry, dict) and isinstance(entry.get("data_offsets"), list)
    ]
    needed = max(ends, default=0)
    if data_bytes < needed:
        raise CheckpointError(f"{path}: truncated (tensor data needs {needed} bytes, file has {data_bytes})")


_REQUIRED_METADATA = ("yaml", "class_table", "imgsz", "sha256")


def _smartcash_metadata(path: Path, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or METADATA_KEY not in raw:
        raise CheckpointError(
            f"{path}: metadata missing: a safetensors file without SmartCash metadata; "
            "write checkpoints with save_checkpoint() or `smartcash convert`"
        )
    try:
        metadata = json.loads(raw[METADATA_KEY])
    except (TypeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: metadata is not valid JSON ({exc})") from exc
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: metadata must be a JSON object")
    missing = [key for key in _REQUIRED_METADATA if key not in metadata]
    if missing:
        raise CheckpointError(f"{path}: metadata missing fields {missing}")
    version = metadata.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version!r} is newer than this library")
    return metadata


def _decode_tensors(path: Path, data: bytes) -> dict[str, torch.Tensor]:
    try:
        return load_safetensors_bytes(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: corrupt tensor data ({exc})") from exc


def _class_table(path: Path, metadata: Mapping[str, Any]) -> ClassTable:
    try:
        return ClassTable.from_dict(metadata["class_table"])
    except ClassTableError as exc:
        raise CheckpointError(f"{path}: invalid class table in metadata: {exc}") from exc


def _build_model(
    path: Path, metadata: Mapping[str, Any], tensors: dict[str, torch.Tensor], table: ClassTable
) -> Any:
    from smartcash_core.model.yolo import DetectionModel

    model_yaml = metadata["yaml"]
    if not isinstance(model_yaml, dict):
        raise CheckpointError(f"{path}: metadata 'yaml' must be the model dict")
    _check_class_counts(path, model_yaml, tensors, table)
    try:
        model = DetectionModel(model_yaml)
    except (ModelConfigError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot build the model in the metadata: {exc}") from exc
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not fit the model (missing {missing[:5]}, unexpected "
                              f"{unexpected[:5]})")
    for name, tensor in expected.items():
        if tensors[name].shape != tensor.shape:
            raise CheckpointError(f"{path}: {name} has shape {tuple(tensors[name].shape)}, the model needs "
                                  f"{tuple(tensor.shape)}")
    model.load_state_dict({name: t.to(expected[name].dtype) for name, t in tensors.items()})
    return model


def _check_class_counts(path: Path, model_yaml: Mapping[str, Any], tensors: Mapping[str, torch.Tensor],
                        table: ClassTable) -> None:
    """Table, YAML and the Detect output convs must agree on the class count."""
    yaml_nc = model_yaml.get("nc")
    if yaml_nc != table.num_fine:
        raise CheckpointError(f"{path}: class count mismatch: the class table has {table.num_fine} classes, "
                              f"the model YAML nc={yaml_nc}")
    anchors = next((t for name, t in tensors.items() if name.endswith(".anchors")), None)
    heads = [t for name, t in tensors.items() if _is_detect_bias(name, tensors)]
    if anchors is None or not heads:
        raise CheckpointError(f"{path}: weights have no Detect head (anchors / output convs missing)")
    per_anchor = heads[0].shape[0] // max(anchors.shape[1], 1)
    if per_anchor - 5 != table.num_fine:
        raise CheckpointError(f"{path}: class count mismatch: the weights predict {per_anchor - 5} classes, "
                              f"the class table has {table.num_fine}")


def _is_detect_bias(name: str, tensors: Mapping[str, torch.Tensor]) -> bool:
    """``model.<detect>.m.<i>.bias`` where ``model.<detect>.anchors`` exists."""
    parts = name.split(".")
    return (len(parts) == 5 and parts[2] == "m" and parts[4] == "bias"
            and f"{parts[0]}.{parts[1]}.anchors" in tensors)
