"""Import classic YOLOv5 ``.pt`` checkpoints without executing pickled code.

A YOLOv5 ``.pt`` is torch's zip format: ``<prefix>/data.pkl`` pickles a dict holding a whole
``DetectionModel`` (under ``model`` and, mid-training, ``ema``), and ``<prefix>/data/<key>`` hold the raw
tensor storages. We unpickle ``data.pkl`` with :class:`RestrictedUnpickler`, which resolves only an
allow-list of globals, and even those to inert stand-ins: every module class becomes a :class:`PickledModule`
that only records its pickled ``__dict__``; tensors are rebuilt by our own code from zip entries. Nothing the
file names is ever imported or called. The recorded module tree gives the architecture (``yaml``), trained
anchors, stride, class names and weights, which are loaded into this project's own :class:`DetectionModel`.
"""

from __future__ import annotations

import _codecs
import collections
import hashlib
import io
import pickle
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smartcash_core.checkpoint import LoadedModel
from smartcash_core.classes import ClassTable, default_class_table
from smartcash_core.errors import CheckpointError, ClassTableError, ModelConfigError, UnsafePickleError

__all__ = [
    "PickledModule",
    "RestrictedUnpickler",
    "YoloV5Checkpoint",
    "class_table_for_names",
    "load_yolov5",
    "read_yolov5_checkpoint",
]

_DEFAULT_IMGSZ = 640

# ----------------------------------------------------------------------------------------------
# Allow-list
# ----------------------------------------------------------------------------------------------
_YOLOV5_CLASSES = {
    "models.common": ("Conv", "C3", "Bottleneck", "SPPF", "Concat"),
    "models.yolo": ("DetectionModel", "Model", "Detect"),
}
_TORCH_NN_CLASSES = {
    "torch.nn.modules.container": ("Sequential", "ModuleList"),
    "torch.nn.modules.conv": ("Conv2d",),
    "torch.nn.modules.batchnorm": ("BatchNorm2d",),
    "torch.nn.modules.activation": ("SiLU",),
    "torch.nn.modules.pooling": ("MaxPool2d",),
    "torch.nn.modules.upsampling": ("Upsample",),
}
_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


def _module_class_names() -> set[tuple[str, str]]:
    names: set[tuple[str, str]] = set()
    for module, classes in _YOLOV5_CLASSES.items():
        # GitHub checkouts pickle ``models.*``, the pip package ``yolov5.models.*``.
        for prefix in ("", "yolov5."):
            names.update((prefix + module, cls) for cls in classes)
    for module, classes in _TORCH_NN_CLASSES.items():
        names.update((module, cls) for cls in classes)
    return names


_MODULE_CLASSES = _module_class_names()


class PickledModule:
    """Inert stand-in for a pickled ``nn.Module``: remembers its class name and pickled ``__dict__``."""

    qualified_name = "?"

    def __init__(self, *args: Any) -> None:
        # A pickle may "call" the class (REDUCE); arguments are kept, nothing else happens.
        self.args = args
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {"__state__": state}

    @property
    def class_name(self) -> str:
        return self.qualified_name.rsplit(".", 1)[-1]

    def children(self) -> dict[str, PickledModule]:
        modules = self.state.get("_modules") or {}
        return {name: child for name, child in modules.items() if isinstance(child, PickledModule)}

    def tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Flattened ``state_dict``-style view: persistent parameters and buffers of the whole tree."""
        found: dict[str, torch.Tensor] = {}
        skipped = set(self.state.get("_non_persistent_buffers_set") or ())
        for group in ("_parameters", "_buffers"):
            for name, value in (self.state.get(group) or {}).items():
                if isinstance(value, torch.Tensor) and name not in skipped:
                    found[prefix + name] = value
        for name, child in self.children().items():
            found.update(child.tensors(f"{prefix}{name}."))
        return found

    def walk(self, prefix: str = "") -> list[tuple[str, PickledModule]]:
        """Every module in the tree with its dotted path (``""`` for the root)."""
        items = [(prefix.rstrip("."), self)]
        for name, child in self.children().items():
            items.extend(child.walk(f"{prefix}{name}."))
        return items


_STUB_TYPES: dict[str, type[PickledModule]] = {}


def _stub_type(qualified_name: str) -> type[PickledModule]:
    """One inert subclass per pickled class name (cached, so ``isinstance`` checks stay cheap)."""
    if qualified_name not in _STUB_TYPES:
        short = qualified_name.rsplit(".", 1)[-1]
        _STUB_TYPES[qualified_name] = type(short, (PickledModule,), {"qualified_name": qualified_name})
    return _STUB_TYPES[qualified_name]


@dataclass(frozen=True)
class _StorageType:
    """What ``torch.FloatStorage`` and friends resolve to: just the element dtype."""

    dtype: torch.dtype


def _codecs_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """numpy pickles raw bytes as ``_codecs.encode(str, 'latin1')``; only byte-preserving codecs pass."""
    if not isinstance(text, str) or encoding not in {"latin1", "latin-1", "utf-8", "utf8"}:
        raise UnsafePickleError(f"_codecs.encode called with unsupported arguments ({encoding!r})")
    return _codecs.encode(text, encoding, errors)


def _set(items: Any = ()) -> set[Any]:
    return set(items)


def _ordered_dict(items: Any = ()) -> collections.OrderedDict[Any, Any]:
    return collections.OrderedDict(items)


def _rebuild_tensor_v2(
    storage: torch.Tensor, offset: int, size: Any, stride: Any, requires_grad: bool = False,
    backward_hooks: Any = None, metadata: Any = None,
) -> torch.Tensor:
    """Our own version of torch's tensor rebuild: a bounds-checked strided view of a flat storage."""
    if not isinstance(storage, torch.Tensor):
        raise CheckpointError("tensor rebuild without a storage")
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) != len(stride) or offset < 0 or any(s < 0 for s in size + stride):
        raise CheckpointError(f"tensor with invalid geometry (size {size}, stride {stride}, offset {offset})")
    if all(size):
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= storage.numel():
            raise CheckpointError(
                f"tensor of size {size} reads past its storage ({storage.numel()} elements)"
            )
    return torch.as_strided(storage, size, stride, offset)


def _rebuild_parameter(data: torch.Tensor, requires_grad: bool = False, backward_hooks: Any = None,
                       state: Any = None) -> torch.Tensor:
    """Parameters come back as plain tensors: we only copy their values."""
    return data


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """numpy scalars/arrays in training options and fitness (mid-training checkpoints)."""
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's own _reconstruct, whatever module holds it
    scalar = np.float64(0).__reduce__()[0]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = reconstruct
        allowed[(module, "scalar")] = scalar
    return allowed


def _allowed_globals() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): _ordered_dict,
        ("__builtin__", "set"): _set,
        ("builtins", "set"): _set,
        ("_codecs", "encode"): _codecs_encode,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    }
    allowed.update({("torch", name): _StorageType(dtype) for name, dtype in _STORAGE_DTYPES.items()})
    allowed.update(_numpy_globals())
    return allowed


_ALLOWED_GLOBALS = _allowed_globals()


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only allow-listed globals, to inert stand-ins or our own rebuild functions.

    ``load_storage(key, dtype, numel)`` supplies tensor storages for torch's persistent ids.
    """

    def __init__(self, data: bytes, load_storage: Callable[[str, torch.dtype, int], torch.Tensor]) -> None:
        super().__init__(io.BytesIO(data))
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _MODULE_CLASSES:
            return _stub_type(f"{module}.{name}")
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise UnsafePickleError(f"refused pickle global {module}.{name} (not on the allow-list)")
        return allowed

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointError(f"unsupported persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"unsupported storage type {storage_type!r:.80}")
        return self._load_storage(str(key), storage_type.dtype, int(numel))


# ----------------------------------------------------------------------------------------------
# Reading the zip
# ----------------------------------------------------------------------------------------------
class _TorchZip:
    """Access to the entries of torch's zip serialization format, with storages loaded once each."""

    def __init__(self, path: Path, archive: zipfile.ZipFile) -> None:
        self.path = path
        self.archive = archive
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise CheckpointError(f"{path}: not a torch checkpoint (zip without a single data.pkl)")
        self.prefix = pickles[0][: -len("data.pkl")]
        self._storages: dict[str, torch.Tensor] = {}
        byteorder = self._read_optional("byteorder")
        if byteorder not in (None, b"little"):
            raise CheckpointError(f"{path}: big-endian checkpoints are not supported")

    def _read_optional(self, name: str) -> bytes | None:
        try:
            return self.archive.read(self.prefix + name)
        except KeyError:
            return None

    def read_pickle(self) -> bytes:
        return self.archive.read(self.prefix + "data.pkl")

    def storage(self, key: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
        if key not in self._storages:
            try:
                raw = self.archive.read(f"{self.prefix}data/{key}")
            except KeyError as exc:
                raise CheckpointError(f"{self.path}: storage {key} is missing from the archive") from exc
            itemsize = torch.empty((), dtype=dtype).element_size()
            if len(raw) != numel * itemsize:
                raise CheckpointError(
                    f"{self.path}: storage {key} holds {len(raw)} bytes, expected {numel * itemsize}"
                )
            flat = torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            self._storages[key] = flat
        return self._storages[key]


def _unpickle_checkpoint(path: Path) -> Any:
    try:
        with zipfile.ZipFile(path) as archive:
            torch_zip = _TorchZip(path, archive)
            return RestrictedUnpickler(torch_zip.read_pickle(), torch_zip.storage).load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{path}: {exc}") from None
    except CheckpointError as exc:
        raise CheckpointError(str(exc) if str(path) in str(exc) else f"{path}: {exc}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint archive ({exc})") from exc
    except (pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise CheckpointError(f"{path}: corrupt pickle in checkpoint ({type(exc).__name__}: {exc})") from exc


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


def read_yolov5_checkpoint(path: str | Path) -> YoloV5Checkpoint:
    """Unpickle a YOLOv5 ``.pt`` safely and extract architecture, weights, names and stride."""
    path = Path(path)
    top = _unpickle_checkpoint(path)
    root, entry = _pick_model_entry(path, top)
    model_yaml = root.state.get("yaml")
    if not isinstance(model_yaml, dict):
        raise CheckpointError(f"{path}: the pickled model has no 'yaml' architecture dict")
    detect = _find_detect(path, root)
    nc = _class_count(path, root, model_yaml)
    model_yaml = {**model_yaml, "nc": nc}
    weights = {name: tensor.clone() for name, tensor in root.tensors().items()}
    stride = detect.state.get("stride")
    options = top.get("opt") if isinstance(top.get("opt"), dict) else {}
    return YoloV5Checkpoint(
        path=path,
        model_yaml=model_yaml,
        weights=weights,
        names=_class_names(root.state.get("names"), nc),
        stride=[float(s) for s in stride] if isinstance(stride, torch.Tensor) else [],
        bn_eps=_batchnorm_eps(root),
        entry=entry,
        imgsz=_train_imgsz(options),
        epoch=top.get("epoch") if isinstance(top.get("epoch"), int) else None,
        sha256=_file_sha256(path),
    )


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
    nc = root.state.get("nc", model_yaml.get("nc"))
    if isinstance(nc, bool) or not isinstance(nc, int) or nc < 1:
        raise CheckpointError(f"{path}: invalid class count nc={nc!r}")
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


def _train_imgsz(options: Mapping[str, Any]) -> int:
    size = options.get("imgsz", options.get("img_size"))
    if isinstance(size, (list, tuple)) and size:
        size = size[-1]
    return int(size) if isinstance(size, (int, np.integer)) and int(size) > 0 else _DEFAULT_IMGSZ


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
    except ModelConfigError as exc:
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


def load_yolov5(path: str | Path, device: torch.device) -> LoadedModel:
    """Import a classic YOLOv5 ``.pt`` as an fp32 eval-mode model on ``device`` (nothing pickled runs)."""
    ckpt = read_yolov5_checkpoint(path)
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
        },
        num_params=model.num_params(),
    )


def _weights_dtype(weights: Mapping[str, torch.Tensor]) -> str:
    dtypes = {str(t.dtype).replace("torch.", "") for t in weights.values() if t.is_floating_point()}
    return ",".join(sorted(dtypes))
