"""Native safetensors checkpoints: round trip, fp16, metadata, and every bad-file error."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from smartcash_core.checkpoint import LoadedModel, checkpoint_kind, load_model
from smartcash_core.checkpoint.native import METADATA_KEY, load_native, read_metadata, save_checkpoint
from smartcash_core.classes import ClassTable, default_class_table
from smartcash_core.cli import main as cli_main
from smartcash_core.cli.convert import run_convert
from smartcash_core.errors import CheckpointError
from smartcash_core.model import DetectionModel, build_model
from tests.checkpoint.conftest import FIXTURES, YOLOV5_PT


@pytest.fixture(scope="module")
def nano() -> DetectionModel:
    torch.manual_seed(0)
    return build_model("yolov5n", 17).eval()


@pytest.fixture(scope="module")
def saved(nano: DetectionModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("native") / "nano.safetensors"
    return save_checkpoint(path, nano, class_table=default_class_table(), imgsz=320, epoch=12, phase=2,
                           metrics={"map50": 0.81, "note": "demo"})


def _split(path: Path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + length]), data[8 + length :]


def _rewrite_metadata(source: Path, target: Path, change) -> Path:
    """Copy a native checkpoint with its SmartCash metadata edited (tensor bytes untouched)."""
    header, body = _split(source)
    metadata = json.loads(header["__metadata__"][METADATA_KEY])
    change(metadata)
    header["__metadata__"][METADATA_KEY] = json.dumps(metadata)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    target.write_bytes(struct.pack("<Q", len(encoded)) + encoded + body)
    return target


def test_round_trip_gives_identical_outputs(nano: DetectionModel, saved: Path) -> None:
    loaded = load_model(saved, "cpu")
    x = torch.rand(1, 3, 128, 96)
    with torch.no_grad():
        expected, expected_raw = nano(x)
        got, got_raw = loaded.model(x)
    assert torch.equal(got, expected)
    assert all(torch.equal(a, b) for a, b in zip(got_raw, expected_raw, strict=True))
    assert checkpoint_kind(saved) == "native"


def test_metadata_travels(saved: Path, nano: DetectionModel) -> None:
    loaded = load_native(saved, "cpu")
    meta = loaded.metadata
    assert (meta["epoch"], meta["phase"], meta["imgsz"]) == (12, 2, 320)
    assert meta["metrics"] == {"map50": 0.81, "note": "demo"}
    assert meta["stride"] == [8.0, 16.0, 32.0]
    assert meta["anchors"] == nano.detect.anchors.tolist()
    assert meta["yaml"]["width_multiple"] == 0.25
    assert loaded.class_table == default_class_table()
    assert (loaded.imgsz, loaded.stride, loaded.source) == (320, 32, saved)
    assert loaded.device == torch.device("cpu")
    assert loaded.sha256 == meta["sha256"] and len(loaded.sha256) == 64
    assert loaded.num_params == nano.num_params() and not loaded.model.training
    assert read_metadata(saved)["sha256"] == loaded.sha256


def test_custom_class_table_and_fp16(tmp_path: Path) -> None:
    torch.manual_seed(2)
    model = build_model("yolov5n", 3).eval()
    table = ClassTable(fine_names=("a", "b", "c"), mapped_names=("ab", "c"), fine_to_mapped=(0, 0, 1))
    full = save_checkpoint(tmp_path / "full.safetensors", model, class_table=table, imgsz=64)
    half = save_checkpoint(tmp_path / "half.safetensors", model, class_table=table, imgsz=64, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_model(half, "cpu")
    assert loaded.class_table == table and loaded.metadata["dtype"] == "float16"
    assert next(loaded.model.parameters()).dtype == torch.float32
    # Anchors are kept in fp32 so box decoding is not rounded.
    torch.testing.assert_close(loaded.model.detect.anchors, model.detect.anchors, rtol=0, atol=0)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x)[0][..., 4:], model(x)[0][..., 4:], rtol=0, atol=2e-2)


def test_save_refuses_bad_arguments(nano: DetectionModel, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="phase"):
        save_checkpoint(
            tmp_path / "p.safetensors", nano, class_table=default_class_table(), imgsz=320, phase=3
        )
    small = ClassTable(fine_names=("a",), mapped_names=("a",), fine_to_mapped=(0,))
    with pytest.raises(CheckpointError, match="class table has 1 classes but the model has 17"):
        save_checkpoint(tmp_path / "c.safetensors", nano, class_table=small, imgsz=320)
    fused = build_model("yolov5n", 17).eval().fuse()
    with pytest.raises(CheckpointError, match="fused"):
        save_checkpoint(tmp_path / "f.safetensors", fused, class_table=default_class_table(), imgsz=320)


def test_truncated_native_file(saved: Path, tmp_path: Path) -> None:
    data = saved.read_bytes()
    for cut_at in (len(data) - 100, 200):
        cut = tmp_path / f"cut{cut_at}.safetensors"
        cut.write_bytes(data[:cut_at])
        with pytest.raises(CheckpointError, match="truncated") as error:
            load_model(cut, "cpu")
        assert str(cut) in str(error.value)


def test_plain_safetensors_without_metadata(tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(3)}, str(path))
    with pytest.raises(CheckpointError, match="metadata missing"):
        load_model(path, "cpu")


def test_metadata_with_missing_fields(saved: Path, tmp_path: Path) -> None:
    path = _rewrite_metadata(saved, tmp_path / "m.safetensors", lambda m: m.pop("class_table"))
    with pytest.raises(CheckpointError, match=r"metadata missing fields \['class_table'\]"):
        load_model(path, "cpu")


def test_class_table_that_does_not_match_the_weights(saved: Path, tmp_path: Path) -> None:
    eight = {"fine_names": [str(i) for i in range(8)], "mapped_names": [str(i) for i in range(8)],
             "fine_to_mapped": list(range(8))}

    def table_only(meta: dict) -> None:
        meta["class_table"] = eight

    def table_and_yaml(meta: dict) -> None:
        meta["class_table"] = eight
        meta["yaml"]["nc"] = 8

    path = _rewrite_metadata(saved, tmp_path / "t.safetensors", table_only)
    with pytest.raises(CheckpointError, match="class table has 8 classes, the model YAML nc=17"):
        load_model(path, "cpu")
    path = _rewrite_metadata(saved, tmp_path / "w.safetensors", table_and_yaml)
    with pytest.raises(CheckpointError, match="weights predict 17 classes, the class table has 8"):
        load_model(path, "cpu")


def test_corrupted_weights_fail_the_sha256(saved: Path, tmp_path: Path) -> None:
    data = bytearray(saved.read_bytes())
    data[-5] ^= 0xFF
    path = tmp_path / "flip.safetensors"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_model(path, "cpu")


def test_random_bytes_are_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "noise.safetensors"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_model(path, "cpu")


def test_convert_cli_round_trip(
    tmp_path: Path, imported: LoadedModel, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "converted.safetensors"
    assert cli_main(["convert", "--weights", str(YOLOV5_PT), "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.count("\n") == 0 and "17 classes" in line and str(out) in line and "fp16" in line
    native = load_model(out, "cpu")
    assert native.metadata["source_sha256"] == imported.sha256
    assert native.metadata["converted_from"] == YOLOV5_PT.name
    assert native.class_table == imported.class_table and native.imgsz == 320
    x = torch.from_numpy(np.load(FIXTURES / "inputs.npz")["b"][..., :64, :96].copy())
    with torch.no_grad():
        assert torch.equal(native.model(x)[0], imported.model(x)[0])


def test_convert_errors_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_text("nope")
    assert cli_main(["convert", "--weights", str(bad), "--out", str(tmp_path / "o.safetensors")]) == 2
    assert "not a checkpoint" in capsys.readouterr().err
    args = type("Args", (), {"weights": str(YOLOV5_PT), "out": str(YOLOV5_PT)})()
    with pytest.raises(CheckpointError, match="overwrite"):
        run_convert(args)
