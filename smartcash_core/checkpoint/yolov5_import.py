"""Import classic YOLOv5 ``.pt`` checkpoints without executing pickled code.

A YOLOv5 ``.pt`` is torch's zip format: ``<prefix>/data.pkl`` pickles a dict holding a whole
``DetectionModel`` (under ``model`` and, mid-training, ``ema``), and ``<prefix>/data/<key>`` hold the raw
tensor storages. ``data.pkl`` is read by the restricted unpickler (``checkpoint.unpickler``: nothing the
file names is imported or called, tensors come back as unread references) from an archive whose sizes are
checked first (``checkpoint.torch_zip``). The recorded module tree gives the architecture (``yaml``), which
is checked and sized like a native checkpoint's before anything is built; only then are the storages of
the chosen entry's weights read (never the optimizer's), and loaded into this project's
:class:`DetectionModel`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smartcash_core.checkpoint import LoadedModel, limits
from smartcash_core.checkpoint.architecture import check_architecture, check_class_count
from smartcash_core.checkpoint.metadata import loss_hyp_from
from smartcash_core.checkpoint.pickled import PickledModule, TensorRef
from smartcash_core.checkpoint.torch_zip import TorchZip, open_torch_zip
from smartcash_core.checkpoint.unpickler import unpickle
from smartcash_core.classes import ClassTable, default_class_table
from smartcash_core.errors import CheckpointError, CheckpointMetadataError, ClassTableError, ModelConfigError

__all__ = [
    "YoloV5Checkpoint",
    "class_table_for_names",
    "load_yolov5",
    "read_yolov5_checkpoint",
]

_DEFAULT_IMGSZ = 640
_MAX_STRIDE = 64


# ----------------------------------------------------------------------------------------------
# From the pickled tree to our model
# ----------------------------------------------------------------------------------------------
@dataclass
class YoloV5Checkpoint:
    """What a classic YOLOv5 file holds, read without executing it."""

    path: Path
    model_yaml: dict[str, Any]
    weights: dict[str, torch.Tensor]
    names: list[str]
    stride: list[float]
    bn_eps: dict[str, float]
    entry: str  # "ema" or "model"
    imgsz: int
    epoch: int | None
    sha256: str
    loss_hyp: dict[str, float] | None = None  # the training loss gains, already scaled by train.py
    loss_hyp_from: str = ""  # where they were found: "<entry>.hyp" or "opt.hyp"


def read_yolov5_checkpoint(path: str | Path, *, max_params: int = limits.MAX_PARAMS) -> YoloV5Checkpoint:
    """Unpickle a YOLOv5 ``.pt`` safely and extract architecture, weights, names and stride.

    The architecture is checked (``CheckpointMetadataError`` naming the field) and its parameter count
    estimated (``CheckpointTooLargeError`` over ``max_params``) before any weight is read.
    """
    path = Path(path)
    with open_torch_zip(path) as archive:
        top = unpickle(archive.read_pickle(), archive.check_storage)
        root, entry = _pick_model_entry(path, top)
        model_yaml = root.state.get("yaml")
        if not isinstance(model_yaml, dict):
            raise CheckpointError(f"{path}: the pickled model has no 'yaml' architecture dict")
        nc = _class_count(path, root, model_yaml)
        model_yaml = {**model_yaml, "nc": nc}
        params = check_architecture(model_yaml, str(path), prefix=f"{entry}.yaml", max_params=max_params)
        detect = _find_detect(path, root)
        weights, stride = _read_weights(archive, root, detect, params)
    options = top.get("opt") if isinstance(top, Mapping) and isinstance(top.get("opt"), dict) else {}
    epoch = top.get("epoch") if isinstance(top, Mapping) else None
    loss_hyp, loss_hyp_where = _loss_hyp(root, entry, options)
    return YoloV5Checkpoint(
        path=path,
        model_yaml=model_yaml,
        weights=weights,
        names=_class_names(root.state.get("names"), nc),
        stride=stride,
        bn_eps=_batchnorm_eps(root),
        entry=entry,
        imgsz=_train_imgsz(path, options, int(max(stride, default=32))),
        epoch=epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None,
        sha256=_file_sha256(path),
        loss_hyp=loss_hyp,
        loss_hyp_from=loss_hyp_where,
    )


def _loss_hyp(
    root: PickledModule, entry: str, options: Mapping[str, Any]
) -> tuple[dict[str, float] | None, str]:
    """The loss gains training used: the model's ``hyp`` (set by train.py after scaling the gains for the
    level count, class count and image size), else ``opt.hyp`` (scaled too in the files YOLOv5 7.0 writes)."""
    for where, raw in ((f"{entry}.hyp", root.state.get("hyp")), ("opt.hyp", options.get("hyp"))):
        found = loss_hyp_from(raw)
        if found is not None:
            return found, where
    return None, ""


def _read_weights(
    archive: TorchZip, root: PickledModule, detect: PickledModule, params: int
) -> tuple[dict[str, torch.Tensor], list[float]]:
    """The entry's parameters and buffers (plus Detect's stride), read within the architecture's budget.

    Parameters plus BatchNorm statistics are under twice the parameter count; 8 bytes an element covers
    any dtype. Storages only the optimizer uses are never read.
    """
    refs = root.tensors()
    stride_ref = detect.state.get("stride")
    if isinstance(stride_ref, TensorRef):
        refs["<detect stride>"] = stride_ref
    budget = 8 * (2 * params + (1 << 20))
    tensors = archive.read_tensors(refs, budget)
    stride = tensors.pop("<detect stride>", None)
    return tensors, [float(s) for s in stride.reshape(-1).tolist()] if stride is not None else []


def _batchnorm_eps(root: PickledModule) -> dict[str, float]:
    """Each BatchNorm's eps as pickled (YOLOv5 uses 1e-3; keeping the file's value keeps outputs exact)."""
    found: dict[str, float] = {}
    for name, module in root.walk():
        eps = module.state.get("eps")
        if module.class_name == "BatchNorm2d" and isinstance(eps, float):
            found[name] = eps
    return found


def _pick_model_entry(path: Path, top: Any) -> tuple[PickledModule, str]:
    """YOLOv5 prefers ``ema`` when present, else ``model``; a bare pickled model is accepted too."""
    if isinstance(top, PickledModule):
        return top, "model"
    if not isinstance(top, Mapping):
        raise CheckpointError(f"{path}: not a YOLOv5 checkpoint (top level is {type(top).__name__})")
    for entry in ("ema", "model"):
        candidate = top.get(entry)
        if isinstance(candidate, PickledModule):
            return candidate, entry
    raise CheckpointError(f"{path}: not a YOLOv5 checkpoint (no 'model' or 'ema' entry holding a model)")


def _find_detect(path: Path, root: PickledModule) -> PickledModule:
    for _, module in root.walk():
        if module.class_name == "Detect":
            return module
    raise CheckpointError(f"{path}: the pickled model has no Detect head")


def _class_count(path: Path, root: PickledModule, model_yaml: Mapping[str, Any]) -> int:
    nc = check_class_count(root.state.get("nc", model_yaml.get("nc")), str(path), "model.nc")
    yaml_nc = model_yaml.get("nc")
    if isinstance(yaml_nc, int) and yaml_nc != nc:
        raise CheckpointError(f"{path}: class count mismatch: model.nc={nc} but yaml nc={yaml_nc}")
    return nc


def _class_names(raw: Any, nc: int) -> list[str]:
    """YOLOv5 stores names as a list or an ``{id: name}`` dict; missing ones become ``class{i}``."""
    if isinstance(raw, Mapping):
        names = [str(raw.get(i, raw.get(str(i), f"class{i}"))) for i in range(nc)]
    elif isinstance(raw, (list, tuple)) and len(raw) == nc:
        names = [str(name) for name in raw]
    else:
        names = [f"class{i}" for i in range(nc)]
    return names


def _train_imgsz(path: Path, options: Mapping[str, Any], stride: int) -> int:
    """The training image size from ``opt`` (640 when absent), rounded up to the stride like YOLOv5."""
    size = options.get("imgsz", options.get("img_size"))
    if size is None:
        return _DEFAULT_IMGSZ
    if isinstance(size, (list, tuple)) and size:
        size = size[-1]
    low, high = limits.IMGSZ_RANGE
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not low <= int(size) <= high:
        raise CheckpointMetadataError(
            f"{path}: opt.imgsz = {str(size)[:40]}: must be an integer from {low} to {high}",
            field="opt.imgsz",
        )
    stride = min(max(stride, 1), _MAX_STRIDE)
    return -(-int(size) // stride) * stride


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def class_table_for_names(names: list[str]) -> ClassTable:
    """The SmartCash table when the file's 17 names are SmartCash's or generic; else an identity table."""
    default = default_class_table()
    generic = all(name in (str(i), f"class{i}") for i, name in enumerate(names))
    if len(names) == default.num_fine and (generic or tuple(names) == default.fine_names):
        return default
    identity = tuple(range(len(names)))
    return ClassTable(fine_names=tuple(names), mapped_names=tuple(names), fine_to_mapped=identity)


def _build_and_fill(ckpt: YoloV5Checkpoint) -> Any:
    from smartcash_core.model.yolo import DetectionModel

    try:
        model = DetectionModel(ckpt.model_yaml)
    except (ModelConfigError, KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{ckpt.path}: unsupported architecture: {exc}") from exc
    expected = model.state_dict()
    _check_layout(ckpt, expected)
    model.load_state_dict({name: t.to(expected[name].dtype) for name, t in ckpt.weights.items()}, strict=True)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.BatchNorm2d) and name in ckpt.bn_eps:
            module.eps = ckpt.bn_eps[name]
    if ckpt.stride and ckpt.stride != [float(s) for s in model.stride]:
        raise CheckpointError(f"{ckpt.path}: stride {ckpt.stride} does not match the architecture's")
    return model


def _check_layout(ckpt: YoloV5Checkpoint, expected: Mapping[str, torch.Tensor]) -> None:
    missing = sorted(set(expected) - set(ckpt.weights))
    unexpected = sorted(set(ckpt.weights) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{ckpt.path}: weights do not fit the YOLOv5 architecture in the file "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    for name, tensor in expected.items():
        if tuple(ckpt.weights[name].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{ckpt.path}: {name} has shape {tuple(ckpt.weights[name].shape)}, the architecture needs "
                f"{tuple(tensor.shape)} (class count or width mismatch)"
            )


def load_yolov5(
    path: str | Path, device: torch.device, *, max_params: int = limits.MAX_PARAMS
) -> LoadedModel:
    """Import a classic YOLOv5 ``.pt`` as an fp32 eval-mode model on ``device`` (nothing pickled runs)."""
    ckpt = read_yolov5_checkpoint(path, max_params=max_params)
    model = _build_and_fill(ckpt)
    model.names = list(ckpt.names)
    try:
        table = class_table_for_names(ckpt.names)
    except ClassTableError as exc:
        raise CheckpointError(f"{ckpt.path}: class names cannot form a class table: {exc}") from exc
    model = model.float().eval().to(device)
    return LoadedModel(
        model=model,
        class_table=table,
        imgsz=ckpt.imgsz,
        stride=int(max(model.stride.tolist())),
        sha256=ckpt.sha256,
        source=ckpt.path,
        device=device,
        metadata={
            "format": "yolov5",
            "entry": ckpt.entry,
            "epoch": ckpt.epoch,
            "names": ckpt.names,
            "yaml": ckpt.model_yaml,
            "weights_dtype": _weights_dtype(ckpt.weights),
            **({"loss_hyp": ckpt.loss_hyp, "loss_hyp_from": ckpt.loss_hyp_from} if ckpt.loss_hyp else {}),
        },
        num_params=model.num_params(),
    )


def _weights_dtype(weights: Mapping[str, torch.Tensor]) -> str:
    dtypes = {str(t.dtype).replace("torch.", "") for t in weights.values() if t.is_floating_point()}
    return ",".join(sorted(dtypes))
