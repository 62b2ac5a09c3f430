"""A refused pickle cannot change what the next load sees: allow-listed globals are immutable or made per
load, and every opcode that writes into an object refuses to write into one of them."""

from __future__ import annotations

import pickle
import pickletools
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from smartcash_core.checkpoint import load_model
from smartcash_core.checkpoint.unpickler import (
    ALLOWED_GLOBALS,
    MODULE_CLASSES,
    RestrictedUnpickler,
    StorageType,
    unpickle,
)
from smartcash_core.errors import CheckpointError, UnsafePickleError
from tests.checkpoint.conftest import write_torch_zip
from tests.security.hostile import FIXTURE_PT, POISON_PICKLE, copied_fixture, rezipped_fixture

EVERY_GLOBAL = sorted([*ALLOWED_GLOBALS, *MODULE_CLASSES])
# Opcode sequences that write into the object on top of the stack (the global pushed just before).
WRITES = {
    "BUILD dict": b"}X\x01\x00\x00\x00aK\x01sb",
    "BUILD slots": b"N}X\x01\x00\x00\x00aK\x01s\x86b",
    "SETITEM": b"X\x01\x00\x00\x00aK\x01s",
    "SETITEMS": b"(X\x01\x00\x00\x00aK\x01u",
    "APPEND": b"K\x01a",
    "APPENDS": b"(K\x01e",
    "ADDITEMS": b"(K\x01\x90",
}


def _global_line(qualified: str) -> bytes:
    module, name = qualified.rsplit(".", 1)
    return f"c{module}\n{name}\n".encode()


def _no_storage(key: str, dtype: torch.dtype, numel: int) -> None:
    raise AssertionError("no storage expected")


def _reference_output(path: Path) -> torch.Tensor:
    model = load_model(path, "cpu").model
    with torch.no_grad():
        return model(torch.linspace(0, 1, 3 * 64 * 64).reshape(1, 3, 64, 64))[0]


@pytest.fixture(scope="module")
def reference() -> torch.Tensor:
    return _reference_output(FIXTURE_PT)


def test_issue_poison_is_refused_and_the_next_load_works(tmp_path: Path, reference: torch.Tensor) -> None:
    poisoned = write_torch_zip(tmp_path / "poison.pt", POISON_PICKLE)
    with pytest.raises(UnsafePickleError, match=r"refused BUILD on a StorageType"):
        load_model(poisoned, "cpu")
    storage_types = [value for value in ALLOWED_GLOBALS.values() if isinstance(value, StorageType)]
    assert len(storage_types) == 10 and all(isinstance(value.dtype, torch.dtype) for value in storage_types)
    for fresh in (rezipped_fixture(tmp_path / "rezipped.pt"), copied_fixture(tmp_path / "copy.pt")):
        assert torch.equal(_reference_output(fresh), reference)


@pytest.mark.parametrize("qualified", EVERY_GLOBAL)
def test_no_write_reaches_an_allow_listed_global(qualified: str) -> None:
    before = repr(ALLOWED_GLOBALS.get(qualified))
    for opcode, writes in WRITES.items():
        payload = b"\x80\x02" + _global_line(qualified) + writes + b"."
        refused = r"refused (BUILD|SETITEM|SETITEMS|APPEND|APPENDS|ADDITEMS)"
        with pytest.raises(UnsafePickleError, match=refused):
            unpickle(payload, _no_storage)
        assert repr(ALLOWED_GLOBALS.get(qualified)) == before, opcode


def test_allow_listed_globals_are_immutable() -> None:
    for name, value in ALLOWED_GLOBALS.items():
        with pytest.raises((AttributeError, TypeError)):
            setattr(value, "dtype" if isinstance(value, StorageType) else "function", "poison")
        assert not hasattr(value, "__dict__") or isinstance(value, type), name


def test_stand_in_classes_are_made_per_load() -> None:
    payload = b"\x80\x02cmodels.common\nConv\n."
    first, second = unpickle(payload, _no_storage), unpickle(payload, _no_storage)
    assert first is not second and first.qualified_name == "models.common.Conv"


def test_calls_and_new_objects_only_through_the_allow_list() -> None:
    cases = {
        b"\x80\x02ctorch\nFloatStorage\n)R.": r"refused call of a StorageType",
        b"\x80\x02cnumpy\nndarray\n)R.": r"refused call of the class numpy.ndarray|refused call",
        b"\x80\x02ccollections\nOrderedDict\n)\x81.": r"refused to create",
        b"\x80\x02cmodels.common\nConv\n)R.": r"refused call of the class models.common.Conv",
        b"\x80\x02(cos\nsystem\nX\x02\x00\x00\x00idi.": r"refused pickle opcode|refused pickle global",
        b"\x80\x02\x82\x01.": r"refused pickle opcode",  # EXT1: the copyreg extension registry
    }
    for payload, message in cases.items():
        with pytest.raises(UnsafePickleError, match=message):
            unpickle(payload, _no_storage)


def test_numpy_dtype_singletons_stay_untouched() -> None:
    """``numpy.dtype('f8', False, False)`` is numpy's shared float64; our wrapper always copies."""
    payload = (b"\x80\x02cnumpy\ndtype\nX\x02\x00\x00\x00f8\x89\x89\x87R"
               b"(K\x03X\x01\x00\x00\x00>NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb.")
    loaded = unpickle(payload, _no_storage)
    assert loaded.byteorder == ">" and np.dtype("f8").byteorder == "="


def test_numpy_objects_and_records_are_refused() -> None:
    for value in (np.array([None, "x"], dtype=object), np.zeros(2, dtype=[("a", "f4")])):
        with pytest.raises(UnsafePickleError, match="numpy"):
            unpickle(pickle.dumps(value, protocol=2), _no_storage)
    ok = unpickle(pickle.dumps({"a": np.array([1.5, 2.5]), "b": np.float64(0.25)}, protocol=2), _no_storage)
    assert ok["a"].tolist() == [1.5, 2.5] and ok["b"] == 0.25


def test_module_trees_with_cycles_or_absurd_depth_are_refused(tmp_path: Path) -> None:
    # A Conv whose _modules holds itself.
    cycle = (b"\x80\x02cmodels.common\nConv\n)\x81q\x00}X\x08\x00\x00\x00_modules}X\x01\x00\x00\x00m"
             b"h\x00ssb}X\x05\x00\x00\x00modelh\x00s.")
    path = write_torch_zip(tmp_path / "cycle.pt", cycle)
    with pytest.raises(CheckpointError, match="cycle"):
        load_model(path, "cpu")


def test_the_fixture_names_only_allow_listed_globals() -> None:
    with zipfile.ZipFile(FIXTURE_PT) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    names = {arg.replace(" ", ".") for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"}
    assert len(names) == 21 and names <= set(EVERY_GLOBAL) | {"__builtin__.set"}


def test_overridden_opcodes_exist_in_the_reference_unpickler() -> None:
    """Pins the private ``pickle._Unpickler.dispatch`` table the restricted unpickler builds on."""
    reference = pickle._Unpickler.dispatch  # type: ignore[attr-defined]
    for opcode in (pickle.BUILD, pickle.SETITEM, pickle.SETITEMS, pickle.APPEND, pickle.APPENDS,
                   pickle.ADDITEMS, pickle.REDUCE, pickle.NEWOBJ, pickle.NEWOBJ_EX, pickle.INST, pickle.OBJ):
        assert opcode[0] in reference and opcode[0] in RestrictedUnpickler.dispatch
