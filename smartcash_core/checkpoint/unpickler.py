"""The restricted unpickler for classic YOLOv5 ``.pt`` pickles: a security boundary, kept on its own.

The allow-list, the opcode checks and the limits stay together in this one module (longer than the others
on purpose), so that a review of what a hostile ``.pt`` can do reads one file.

What it guarantees, for any bytes at all:
- Nothing the file names is imported or called. Globals resolve through a closed allow-list to inert
  objects of ours: every ``nn.Module`` class becomes a ``PickledModule`` subclass made for this load
  (it only records its pickled ``__dict__``), storage types become :class:`StorageType` values, and
  ``_rebuild_tensor_v2`` / ``OrderedDict`` / numpy's reconstructors become :class:`SafeCall` wrappers of
  our own checked functions.
- No shared state can be changed. Every opcode that writes into an object (``BUILD``, ``SETITEM(S)``,
  ``APPEND(S)``, ``ADDITEMS``) is checked here: it may only target containers and modules this load
  created, never an allow-listed global; ``REDUCE``/``NEWOBJ`` may only call what this load resolved.
  The globals themselves are immutable (frozen, slotted) or created per load, so even a missed write
  could not reach the next load. (The old unpickler let ``BUILD`` write ``dtype="poison"`` into the shared
  ``torch.FloatStorage`` stand-in, and every later ``.pt`` failed until a restart.)
- Work and memory are bounded: the pickle is at most ``MAX_PICKLE_BYTES`` and ``MAX_PICKLE_OPS`` opcodes
  (each opcode creates at most one small object), opcodes the YOLOv5 format never uses are refused, and
  no tensor data is read here at all: persistent ids become ``StorageRef`` and tensors ``TensorRef``
  (bounds-checked views; ``checkpoint.pickled``), read later only for the tensors a model needs.
- Every failure is a :class:`CheckpointError` (``UnsafePickleError`` for a refusal).

Why not torch's own ``weights_only`` unpickler (``torch.load(weights_only=True)`` with
``torch.serialization.safe_globals`` stand-ins for YOLOv5's classes)? It was tried on the fixture
``.pt`` and loads it, but:
1. its default allow-list is broad (every tensor type, storages, ``bytearray``, ``set``, ``complex``,
   ``_codecs.encode`` with any codec...) and includes amplifiers: a 40-byte pickle calling
   ``bytearray(10**9)`` through ``REDUCE`` loads and costs +950 MB RSS (torch 2.13, measured);
2. the stand-ins must be registered in a process-wide list; ``safe_globals`` adds and removes them
   around each call, which is not safe when two loads run in threads (the service loads in threads);
3. it reads every storage eagerly (optimizer state too) through torch's C++ zip reader, which trusts
   the archive's declared sizes, so caps would have to be re-implemented in front of it anyway;
4. its refusals tell the user to re-run with ``weights_only=False``: not advice a service may relay.
Both need the same stand-ins and numpy wrappers; ours needs ~30 lines of opcode checks on CPython's
reference pure-Python unpickler (``pickle._Unpickler``, whose ``dispatch`` table has been stable since
Python 3.0; a test pins the opcodes we override). Narrower and bounded wins.
"""

from __future__ import annotations

import _codecs
import collections
import io
import math
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from smartcash_core.checkpoint import limits
from smartcash_core.checkpoint.pickled import PickledModule, StorageRef, TensorRef
from smartcash_core.errors import CheckpointError, CheckpointTooLargeError, UnsafePickleError

__all__ = ["ALLOWED_GLOBALS", "MODULE_CLASSES", "RestrictedUnpickler", "SafeCall", "StorageType", "unpickle"]

StorageCheck = Callable[[str, torch.dtype, int], None]
_MAX_INDEX = 1 << 48  # sizes, strides and offsets beyond this are not tensors, just hostile numbers


# ----------------------------------------------------------------------------------------------
# What globals resolve to
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StorageType:
    """What ``torch.FloatStorage`` and friends resolve to: only the element dtype (immutable)."""

    dtype: torch.dtype


@dataclass(frozen=True, slots=True)
class SafeCall:
    """An allow-listed callable: one of our own checked functions, immutable, shared by all loads."""

    name: str
    function: Callable[..., Any]

    def __call__(self, *args: Any) -> Any:
        return self.function(*args)


# ----------------------------------------------------------------------------------------------
# Allow-listed functions (all checked; none allocates more than its arguments' size)
# ----------------------------------------------------------------------------------------------
def _codecs_encode(text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    """numpy pickles raw bytes as ``_codecs.encode(str, 'latin1')``; only byte-preserving codecs pass."""
    byte_codecs = {"latin1", "latin-1", "utf-8", "utf8"}
    if not isinstance(text, str) or encoding not in byte_codecs or errors != "strict":
        raise UnsafePickleError(f"_codecs.encode called with unsupported arguments ({str(encoding)[:20]!r})")
    return _codecs.encode(text, encoding, errors)


def _new_set(items: Any = ()) -> set[Any]:
    return set(_sequence(items, "set"))


def _new_ordered_dict(items: Any = ()) -> collections.OrderedDict[Any, Any]:
    return collections.OrderedDict(_sequence(items, "OrderedDict"))


def _sequence(items: Any, what: str) -> list[Any] | tuple[Any, ...]:
    if not isinstance(items, (list, tuple)):
        raise UnsafePickleError(f"{what} built from a {type(items).__name__}, not a list")
    return items


def _index(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < _MAX_INDEX:
        raise CheckpointError(f"tensor with an invalid {what} {str(value)[:40]}")
    return value


def _rebuild_tensor_v2(
    storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False,
    backward_hooks: Any = None, metadata: Any = None,
) -> TensorRef:
    """A view of a storage, refused unless it stays inside the storage and is no larger than it."""
    if not isinstance(storage, StorageRef) or not isinstance(size, tuple) or not isinstance(stride, tuple):
        raise CheckpointError("tensor rebuilt without a storage, size or stride")
    if len(size) != len(stride) or len(size) > limits.MAX_TENSOR_DIMS:
        raise CheckpointError(f"tensor with invalid geometry (size {size}, stride {stride})"[:160])
    offset = _index(offset, "offset")
    size = tuple(_index(n, "size") for n in size)
    stride = tuple(_index(s, "stride") for s in stride)
    if all(size):
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= storage.numel or math.prod(size) > storage.numel:
            raise CheckpointError(f"tensor of size {size} reads past its storage ({storage.numel} elements)")
    return TensorRef(storage, offset, size, stride)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None,
                       state: Any = None) -> Any:
    """Parameters come back as their data: only the values matter."""
    if not isinstance(data, TensorRef):
        raise CheckpointError("parameter rebuilt from something that is not a tensor")
    return data


_NUMPY_KINDS = frozenset("biufc")  # bool, ints, floats, complex: no objects, no structured records
_numpy_reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]
_numpy_scalar = np.float64(0).__reduce__()[0]


def _numpy_dtype(spec: Any, align: Any = False, copy: Any = True) -> np.dtype[Any]:
    """``numpy.dtype('f8', False, True)``, always a fresh copy (``copy=False`` would share numpy's own)."""
    if not isinstance(spec, str) or len(spec) > 4 or spec[:1] not in _NUMPY_KINDS or not spec[1:].isdigit():
        raise UnsafePickleError(f"numpy dtype {str(spec)[:20]!r} is not a plain number type")
    return np.dtype(spec, align=False, copy=True)


def _numpy_array(subtype: Any, shape: Any, dtype: Any) -> np.ndarray[Any, Any]:
    """numpy's ``_reconstruct(ndarray, (0,), b'b')``: an empty array that ``BUILD`` then fills."""
    if subtype is not np.ndarray or shape != (0,) or dtype not in (b"b", "b"):
        raise UnsafePickleError("numpy array reconstruction with unexpected arguments")
    return _numpy_reconstruct(np.ndarray, (0,), b"b")


def _numpy_scalar_value(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.kind not in _NUMPY_KINDS or not isinstance(data, bytes):
        raise UnsafePickleError("numpy scalar of an unsupported type")
    if len(data) != dtype.itemsize:
        raise CheckpointError(f"numpy scalar with {len(data)} bytes for a {dtype.itemsize}-byte type")
    return _numpy_scalar(dtype, data)


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
# nn.Module classes a YOLOv5 (v6/v7) model pickles; GitHub checkouts name ``models.*``, the pip package
# ``yolov5.models.*``.
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
MODULE_CLASSES = frozenset(
    [f"{prefix}{module}.{cls}" for module, names in _YOLOV5_CLASSES.items() for cls in names
     for prefix in ("", "yolov5.")]
    + [f"{module}.{cls}" for module, names in _TORCH_NN_CLASSES.items() for cls in names]
)


def _allowed_globals() -> dict[str, Any]:
    calls = {
        "collections.OrderedDict": _new_ordered_dict,
        "builtins.set": _new_set,
        "__builtin__.set": _new_set,
        "_codecs.encode": _codecs_encode,
        "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
        "torch._utils._rebuild_parameter": _rebuild_parameter,
        "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
        "numpy.dtype": _numpy_dtype,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        calls[f"{module}._reconstruct"] = _numpy_array
        calls[f"{module}.scalar"] = _numpy_scalar_value
    allowed: dict[str, Any] = {name: SafeCall(name, function) for name, function in calls.items()}
    allowed.update({f"torch.{name}": StorageType(dtype) for name, dtype in _STORAGE_DTYPES.items()})
    allowed["numpy.ndarray"] = np.ndarray  # only ever compared against (a builtin type is immutable)
    return allowed


ALLOWED_GLOBALS: dict[str, Any] = _allowed_globals()


# ----------------------------------------------------------------------------------------------
# The unpickler
# ----------------------------------------------------------------------------------------------
class _Dispatch(dict[int, Callable[[Any], None]]):
    """Opcode table; a byte that is no pickle opcode is a corrupt stream, said as such."""

    def __missing__(self, code: int) -> Callable[[Any], None]:
        raise CheckpointError(f"corrupt pickle in checkpoint (byte {code:#04x} is not a pickle opcode)")


# Opcodes of protocols 0-1 that call classes directly, the extension registry, and out-of-band buffers:
# torch never writes them.
_REFUSED_OPCODES = (pickle.INST, pickle.OBJ, pickle.EXT1, pickle.EXT2, pickle.EXT4, pickle.PERSID,
                    pickle.NEXT_BUFFER, pickle.READONLY_BUFFER)


class RestrictedUnpickler(pickle._Unpickler):  # the pure-Python reference unpickler: opcodes are hookable
    """Unpickles ``data`` with the allow-list above; ``check_storage(key, dtype, numel)`` vets each
    persistent id (the archive member exists and has that size) without reading it."""

    dispatch: ClassVar[_Dispatch]  # built below from pickle._Unpickler.dispatch

    def __init__(self, data: bytes, check_storage: StorageCheck, *, max_ops: int = limits.MAX_PICKLE_OPS):
        if len(data) > limits.MAX_PICKLE_BYTES:
            raise CheckpointTooLargeError(
                f"data.pkl of {len(data)} bytes is over the cap of {limits.MAX_PICKLE_BYTES} bytes"
            )
        super().__init__(io.BytesIO(data))
        self._check_storage = check_storage
        self._max_ops = max_ops
        self.ops = 0
        self._stubs: dict[str, type[PickledModule]] = {}  # fresh classes per load: nothing shared
        self._storages: dict[str, StorageRef] = {}

    # -- globals and persistent ids --------------------------------------------------------------
    def find_class(self, module: str, name: str) -> Any:
        qualified = f"{module}.{name}"
        if qualified in MODULE_CLASSES:
            if qualified not in self._stubs:
                self._stubs[qualified] = type(name, (PickledModule,), {"qualified_name": qualified})
            return self._stubs[qualified]
        if qualified in ALLOWED_GLOBALS:
            return ALLOWED_GLOBALS[qualified]
        raise UnsafePickleError(f"refused pickle global {qualified[:120]} (not on the allow-list)")

    def persistent_load(self, pid: Any) -> StorageRef:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointError(f"unsupported persistent id {str(pid)[:80]}")
        _, storage_type, key, _location, numel = pid
        if type(storage_type) is not StorageType or not isinstance(key, str) or len(key) > 64:
            raise CheckpointError(f"unsupported storage {str(storage_type)[:40]} / {str(key)[:40]}")
        ref = StorageRef(key, storage_type.dtype, _index(numel, "storage size"))
        known = self._storages.setdefault(key, ref)
        if known != ref:
            raise CheckpointError(f"storage {key} is declared twice with different types or sizes")
        if known is ref:
            self._check_storage(key, ref.dtype, ref.numel)
        return known

    # -- opcodes that write into objects or call things --------------------------------------------
    def _is_ours(self, obj: Any) -> bool:
        """A module instance made by this load's stub classes (never a class or a shared global)."""
        return isinstance(obj, PickledModule) and type(obj) in self._stubs.values()

    def _load_build(self) -> None:
        state = self.stack.pop()
        target = self.stack[-1]
        kind = type(target)
        if self._is_ours(target):
            target.__setstate__(state)
        elif kind is np.ndarray:
            target.__setstate__(_array_state(state))
        elif isinstance(target, np.dtype):  # made by _numpy_dtype: always a fresh copy
            target.__setstate__(_dtype_state(state))
        elif kind is collections.OrderedDict and isinstance(state, dict):
            pass  # state_dict's ``_metadata`` (BatchNorm versions): nothing we read
        else:
            raise UnsafePickleError(f"refused BUILD on {_describe(target)} (only pickled modules, numpy "
                                    "arrays and dtypes are rebuilt)")

    def _load_setitems(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        _require(target, (dict, collections.OrderedDict), "SETITEMS")
        for index in range(0, len(items) - 1, 2):
            target[items[index]] = items[index + 1]

    def _load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        target = self.stack[-1]
        _require(target, (dict, collections.OrderedDict), "SETITEM")
        target[key] = value

    def _load_append(self) -> None:
        value = self.stack.pop()
        _require(self.stack[-1], (list,), "APPEND")
        self.stack[-1].append(value)

    def _load_appends(self) -> None:
        items = self.pop_mark()
        _require(self.stack[-1], (list,), "APPENDS")
        self.stack[-1].extend(items)

    def _load_additems(self) -> None:
        items = self.pop_mark()
        _require(self.stack[-1], (set,), "ADDITEMS")
        self.stack[-1].update(items)

    def _load_reduce(self) -> None:
        args = self.stack.pop()
        function = self.stack[-1]
        if type(function) is not SafeCall or not isinstance(args, tuple):
            raise UnsafePickleError(f"refused call of {_describe(function)} (not an allow-listed function)")
        self.stack[-1] = function(*args)

    def _load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new_module(cls, args))

    def _load_newobj_ex(self) -> None:
        self.stack.pop()  # keyword arguments: a stand-in takes none
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new_module(cls, args))

    def _new_module(self, cls: Any, args: Any) -> PickledModule:
        if not (isinstance(cls, type) and cls in self._stubs.values()) or not isinstance(args, tuple):
            raise UnsafePickleError(f"refused to create {_describe(cls)} (only nn.Module stand-ins)")
        module = cls.__new__(cls)
        PickledModule.__init__(module, *args)
        return module

    def _refuse_opcode(self) -> None:
        raise UnsafePickleError("refused pickle opcode (not used by torch.save)")


def _require(target: Any, kinds: tuple[type, ...], opcode: str) -> None:
    if type(target) not in kinds:
        raise UnsafePickleError(f"refused {opcode} on {_describe(target)}")


def _describe(obj: Any) -> str:
    if isinstance(obj, type):
        return f"the class {getattr(obj, 'qualified_name', obj.__name__)}"
    if isinstance(obj, SafeCall):
        return f"the allow-listed global {obj.name}"
    return f"a {type(obj).__name__}"


def _array_state(state: Any) -> tuple[Any, ...]:
    """numpy's array state ``(version, shape, dtype, fortran, raw bytes)``, checked before numpy sees it."""
    if not (isinstance(state, tuple) and len(state) == 5):
        raise UnsafePickleError("numpy array with an unexpected state")
    _version, shape, dtype, _fortran, raw = state
    if not isinstance(dtype, np.dtype) or dtype.kind not in _NUMPY_KINDS or not isinstance(raw, bytes):
        raise UnsafePickleError("numpy array of an unsupported type (objects, records)")
    if not isinstance(shape, tuple) or len(shape) > limits.MAX_TENSOR_DIMS:
        raise CheckpointError("numpy array with an invalid shape")
    if math.prod(_index(n, "array size") for n in shape) * dtype.itemsize != len(raw):
        raise CheckpointError("numpy array whose data does not match its shape")
    return state


def _dtype_state(state: Any) -> tuple[Any, ...]:
    """A plain dtype's state: byte order and sizes only (no sub-arrays, fields or metadata)."""
    if not (isinstance(state, tuple) and len(state) in (8, 9) and state[2:5] == (None, None, None)):
        raise UnsafePickleError("numpy dtype with fields, sub-arrays or an unexpected state")
    return state


def _counted(step: Callable[[Any], None]) -> Callable[[Any], None]:
    def run(unpickler: RestrictedUnpickler) -> None:
        unpickler.ops += 1
        if unpickler.ops > unpickler._max_ops:
            raise CheckpointTooLargeError(f"pickle runs more than {unpickler._max_ops} opcodes")
        step(unpickler)

    return run


def _build_dispatch() -> _Dispatch:
    table = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]
    overrides = {
        pickle.BUILD: RestrictedUnpickler._load_build,
        pickle.SETITEM: RestrictedUnpickler._load_setitem,
        pickle.SETITEMS: RestrictedUnpickler._load_setitems,
        pickle.APPEND: RestrictedUnpickler._load_append,
        pickle.APPENDS: RestrictedUnpickler._load_appends,
        pickle.ADDITEMS: RestrictedUnpickler._load_additems,
        pickle.REDUCE: RestrictedUnpickler._load_reduce,
        pickle.NEWOBJ: RestrictedUnpickler._load_newobj,
        pickle.NEWOBJ_EX: RestrictedUnpickler._load_newobj_ex,
    }
    overrides.update({opcode: RestrictedUnpickler._refuse_opcode for opcode in _REFUSED_OPCODES})
    for opcode, step in overrides.items():
        table[opcode[0]] = step
    return _Dispatch({code: _counted(step) for code, step in table.items()})


RestrictedUnpickler.dispatch = _build_dispatch()


def unpickle(data: bytes, check_storage: StorageCheck, *, max_ops: int = limits.MAX_PICKLE_OPS) -> Any:
    """Unpickle a torch ``data.pkl`` with :class:`RestrictedUnpickler`; every failure is typed.

    Raises ``UnsafePickleError`` for anything outside the allow-list, ``CheckpointTooLargeError`` over a
    cap, ``CheckpointError`` for a corrupt stream. Nothing the pickle names is ever run.
    """
    try:
        return RestrictedUnpickler(data, check_storage, max_ops=max_ops).load()
    except CheckpointError:
        raise
    except Exception as exc:  # a security boundary: any failure inside the pickle VM is "corrupt"
        message = f"corrupt pickle in checkpoint ({type(exc).__name__}: {str(exc)[:200]})"
        raise CheckpointError(message) from None
