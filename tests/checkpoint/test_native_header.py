"""Hostile safetensors headers are refused from the header alone, before tensor data is read or allocated."""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from smartcash_core.checkpoint import checkpoint_kind, load_model
from smartcash_core.checkpoint.native import save_checkpoint
from smartcash_core.classes import default_class_table
from smartcash_core.errors import CheckpointError, CheckpointTooLargeError
from smartcash_core.model import build_model

Header = dict[str, Any]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("header") / "nano.safetensors"
    model = build_model("yolov5n", 17).eval()
    return save_checkpoint(path, model, class_table=default_class_table(), imgsz=64)


def _split(path: Path) -> tuple[Header, bytes]:
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + length]), data[8 + length :]


def _write(target: Path, header: Header | bytes, body: bytes) -> Path:
    encoded = header if isinstance(header, bytes) else json.dumps(header).encode()
    target.write_bytes(struct.pack("<Q", len(encoded)) + encoded + body)
    return target


def _edited(saved: Path, target: Path, change: Callable[[Header], None], body_extra: bytes = b"") -> Path:
    header, body = _split(saved)
    change(header)
    return _write(target, header, body + body_extra)


def _first_tensor(header: Header) -> str:
    return min((name for name in header if name != "__metadata__"), key=lambda n: header[n]["data_offsets"])


def test_declared_100mb_header_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", 100_000_000) + b'{"a": 1}')
    assert checkpoint_kind(path) == "native"
    with pytest.raises(CheckpointTooLargeError, match="header of 100000000 bytes is over the cap"):
        load_model(path, "cpu")


def test_real_5mb_json_header_is_refused(saved: Path, tmp_path: Path) -> None:
    def bloat(header: Header) -> None:
        header["__metadata__"]["padding"] = "x" * (5 << 20)

    with pytest.raises(CheckpointTooLargeError, match="over the cap"):
        load_model(_edited(saved, tmp_path / "bloat.safetensors", bloat), "cpu")


_ITEM_SIZES = {"F32": 4, "F16": 2, "I64": 8}


def _shape_and_offsets(shape: list[int], offsets: Any = None) -> Callable[[Header], None]:
    """Give the first tensor ``shape`` and ``offsets`` (default: the bytes that shape needs, from 0)."""

    def change(header: Header) -> None:
        name = _first_tensor(header)
        size = _ITEM_SIZES[header[name]["dtype"]]
        header[name]["shape"] = shape
        header[name]["data_offsets"] = offsets if offsets is not None else [0, size * shape[0]]

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_shape_and_offsets([10**12]), "overlaps the previous tensor"),  # the rest stay where they were
        (_shape_and_offsets([2**62, 2**62], [0, 16]), "does not fit"),
        (_shape_and_offsets([-1, 4], [0, 16]), "invalid shape"),
        (_shape_and_offsets([True], [0, 4]), "invalid shape"),
        (_shape_and_offsets([1] * 40, [0, 4]), "invalid shape"),
        (_shape_and_offsets([4], [-4, 12]), "invalid data_offsets"),
        (_shape_and_offsets([4], [16, 0]), "invalid data_offsets"),
        (_shape_and_offsets([4], "0-16"), "invalid data_offsets"),
    ],
)
def test_bad_shapes_and_offsets(saved: Path, tmp_path: Path, change: Any, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        load_model(_edited(saved, tmp_path / "s.safetensors", change), "cpu")


def test_huge_last_tensor_is_truncated(saved: Path, tmp_path: Path) -> None:
    def grow_last(header: Header) -> None:
        name = max((n for n in header if n != "__metadata__"), key=lambda n: header[n]["data_offsets"])
        begin = header[name]["data_offsets"][0]
        header[name].update(dtype="F32", shape=[10**12], data_offsets=[begin, begin + 4 * 10**12])

    with pytest.raises(CheckpointError, match=r"truncated \(tensor data needs 4000"):
        load_model(_edited(saved, tmp_path / "big.safetensors", grow_last), "cpu")


def test_overlapping_gapped_and_trailing_data(saved: Path, tmp_path: Path) -> None:
    def overlap(header: Header) -> None:
        ordered = sorted((n for n in header if n != "__metadata__"), key=lambda n: header[n]["data_offsets"])
        first, second = header[ordered[0]], header[ordered[1]]
        size = second["data_offsets"][1] - second["data_offsets"][0]
        second["data_offsets"] = [first["data_offsets"][0], first["data_offsets"][0] + size]

    with pytest.raises(CheckpointError, match="overlaps the previous tensor"):
        load_model(_edited(saved, tmp_path / "o.safetensors", overlap), "cpu")

    def gap(header: Header) -> None:
        for name, entry in header.items():
            if name != "__metadata__":
                entry["data_offsets"] = [entry["data_offsets"][0] + 4, entry["data_offsets"][1] + 4]

    with pytest.raises(CheckpointError, match="leaves a gap"):
        load_model(_edited(saved, tmp_path / "g.safetensors", gap, b"\0" * 4), "cpu")
    with pytest.raises(CheckpointError, match="4 bytes follow the last tensor"):
        load_model(_edited(saved, tmp_path / "t.safetensors", lambda h: None, b"\0" * 4), "cpu")


def test_unknown_dtype_and_entries_that_are_not_tensors(saved: Path, tmp_path: Path) -> None:
    def dtype(header: Header) -> None:
        header[_first_tensor(header)]["dtype"] = "F8_E5M2"

    with pytest.raises(CheckpointError, match="unsupported dtype"):
        load_model(_edited(saved, tmp_path / "d.safetensors", dtype), "cpu")
    with pytest.raises(CheckpointError, match="is not an object"):
        load_model(_edited(saved, tmp_path / "e.safetensors", lambda h: h.update(extra=[1])), "cpu")


def test_tensor_table_not_fitting_the_model_is_refused_before_reading(saved: Path, tmp_path: Path) -> None:
    def rename(header: Header) -> None:
        name = _first_tensor(header)
        header["model.0.conv.evil"] = header.pop(name)

    with pytest.raises(CheckpointError, match="weights do not fit the model"):
        load_model(_edited(saved, tmp_path / "r.safetensors", rename), "cpu")


def test_deeply_nested_json_header(tmp_path: Path) -> None:
    path = _write(tmp_path / "deep.safetensors", b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", b"")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_model(path, "cpu")


def test_random_header_mutations_only_raise_checkpoint_errors(saved: Path, tmp_path: Path) -> None:
    """Byte-level mutations of the JSON header: every outcome is a load or a typed error."""
    data = saved.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    rng = random.Random(11)
    outcomes: dict[str, int] = {}
    for index in range(60):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            position = 8 + rng.randrange(length)
            mutated[position] = rng.choice(b'{}[]",:0123456789-eE.tfn x')
        path = tmp_path / f"mut{index}.safetensors"
        path.write_bytes(bytes(mutated))
        try:
            load_model(path, "cpu")
            outcomes["loaded"] = outcomes.get("loaded", 0) + 1
        except CheckpointError as exc:
            outcomes[type(exc).__name__] = outcomes.get(type(exc).__name__, 0) + 1
    assert sum(outcomes.values()) == 60 and outcomes.get("CheckpointError", 0) > 0
