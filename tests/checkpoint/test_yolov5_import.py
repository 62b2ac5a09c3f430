"""Importing classic YOLOv5 .pt files: layout, parity with YOLOv5's own outputs, variants, bad files."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from smartcash_core.checkpoint import LoadedModel, checkpoint_kind, load_model
from smartcash_core.checkpoint.yolov5_import import class_table_for_names, read_yolov5_checkpoint
from smartcash_core.classes import default_class_table
from smartcash_core.errors import CheckpointError
from smartcash_core.model import build_model
from tests.checkpoint.conftest import FIXTURES, YOLOV5_PT, rewrite_pickle, save_yolov5_style, write_torch_zip

EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


def _outputs(loaded: LoadedModel, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    with torch.no_grad():
        decoded, raw = loaded.model(torch.from_numpy(x))
    return decoded.numpy(), [r.numpy() for r in raw]


def test_fixture_keys_and_shapes_match_built_yolov5n() -> None:
    ckpt = read_yolov5_checkpoint(YOLOV5_PT)
    built = build_model("yolov5n", 17).state_dict()
    assert set(ckpt.weights) == set(built)
    for key, tensor in built.items():
        assert tuple(ckpt.weights[key].shape) == tuple(tensor.shape), key
    assert ckpt.weights["model.0.conv.weight"].dtype == torch.float16  # strip_optimizer's fp16
    assert ckpt.entry == "model" and ckpt.imgsz == 320


def test_import_reads_anchors_stride_names_from_file(imported: LoadedModel) -> None:
    model = imported.model
    assert not model.training
    torch.testing.assert_close(model.detect.anchors, torch.tensor(EXPECTED["model"]["anchors"]))
    assert model.stride.tolist() == EXPECTED["model"]["stride"]
    assert imported.stride == 32 and imported.imgsz == 320
    assert imported.class_table == default_class_table()
    assert next(model.parameters()).dtype == torch.float32
    assert imported.num_params == 1_786_918
    assert len(imported.sha256) == 64 and imported.metadata["weights_dtype"] == "float16"


@pytest.mark.parametrize("name", ["a", "b"])
def test_outputs_match_yolov5(imported: LoadedModel, name: str) -> None:
    inputs = np.load(FIXTURES / "inputs.npz")
    reference = np.load(FIXTURES / "outputs.npz")
    decoded, raw = _outputs(imported, inputs[name])
    for level, got in enumerate(raw):
        np.testing.assert_allclose(got, reference[f"{name}_raw{level}"], rtol=0, atol=1e-4)
    expected = reference[f"{name}_decoded"]
    assert decoded.shape == expected.shape
    # Probabilities (objectness, classes) to 1e-4 absolute. Box xywh are pixels up to ~320, where a few
    # float32 ulps of network noise between torch builds reach 1e-4, so they get 1e-4 relative (+1e-4).
    np.testing.assert_allclose(decoded[..., 4:], expected[..., 4:], rtol=0, atol=1e-4)
    np.testing.assert_allclose(decoded[..., :4], expected[..., :4], rtol=1e-4, atol=1e-4)


def test_models_prefix_from_github_checkout_is_accepted(tmp_path: Path, imported: LoadedModel) -> None:
    renamed = rewrite_pickle(YOLOV5_PT, tmp_path / "github.pt", b"cyolov5.models.", b"cmodels.")
    with zipfile.ZipFile(renamed) as archive:
        pickled = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    assert b"cmodels.common\nConv\n" in pickled and b"cyolov5.models." not in pickled
    loaded = load_model(renamed, "cpu")
    x = np.ascontiguousarray(np.load(FIXTURES / "inputs.npz")["b"][..., :64, :96])
    np.testing.assert_array_equal(_outputs(loaded, x)[0], _outputs(imported, x)[0])


def test_mid_training_checkpoint_prefers_ema_and_reads_numpy_options(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, ema = build_model("yolov5n", 17), build_model("yolov5n", 17)
    model.names = list(default_class_table().fine_names)
    ema.names = list(model.names)
    path = save_yolov5_style(tmp_path / "last.pt", {
        "epoch": 7,
        "best_fitness": np.float64(0.42),
        "model": model,
        "ema": ema.half(),
        "updates": 120,
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.01, "params": [0, 1]}]},
        "opt": {"imgsz": 256, "hyp": {"lr0": 0.01}, "evolve": np.array([0.5, 1.5])},
        "date": "2024-01-01",
    })
    loaded = load_model(path, "cpu")
    assert loaded.metadata["entry"] == "ema" and loaded.metadata["epoch"] == 7 and loaded.imgsz == 256
    assert loaded.metadata["weights_dtype"] == "float16"
    reference = ema.float().eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x)[0], reference(x)[0], rtol=0, atol=0)


def test_fp32_checkpoint_without_names_gets_generic_table(tmp_path: Path) -> None:
    model = build_model("yolov5n", 3)
    path = save_yolov5_style(tmp_path / "fp32.pt", {"model": model, "ema": None, "epoch": -1})
    loaded = load_model(path, "cpu")
    assert loaded.metadata["weights_dtype"] == "float32"
    assert loaded.class_table.fine_names == ("class0", "class1", "class2")
    assert loaded.class_table.fine_to_mapped == (0, 1, 2)
    with torch.no_grad():
        x = torch.rand(1, 3, 64, 64)
        torch.testing.assert_close(loaded.model(x)[0], model.eval()(x)[0], rtol=0, atol=0)


def test_class_table_rules() -> None:
    default = default_class_table()
    assert class_table_for_names(list(default.fine_names)) is default
    assert class_table_for_names([str(i) for i in range(17)]) is default
    other = class_table_for_names(["cat", "dog"])
    assert other.mapped_names == ("cat", "dog") and other.fine_to_mapped == (0, 1)


def test_dispatch_by_content_not_suffix(tmp_path: Path) -> None:
    disguised = tmp_path / "model.safetensors"
    disguised.write_bytes(YOLOV5_PT.read_bytes())
    assert checkpoint_kind(disguised) == "yolov5"
    assert load_model(disguised, "cpu").metadata["format"] == "yolov5"


def test_truncated_pt_is_a_clear_error(tmp_path: Path) -> None:
    data = YOLOV5_PT.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pt: truncated or corrupt"):
        load_model(cut, "cpu")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"hello, I am a text file\n", "not a checkpoint"),
        (b"", "empty file"),
        (b"\x80\x02}q\x00.", "not a checkpoint"),  # a bare (legacy) pickle is not accepted either
    ],
)
def test_non_checkpoint_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as error:
        load_model(path, "cpu")
    assert str(path) in str(error.value)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nope.pt", "cpu")
    with pytest.raises(CheckpointError, match="directory"):
        load_model(tmp_path, "cpu")


def test_zip_without_pickle_and_pickle_without_model(tmp_path: Path) -> None:
    plain = tmp_path / "plain.pt"
    with zipfile.ZipFile(plain, "w") as archive:
        archive.writestr("readme.txt", "not torch")
    with pytest.raises(CheckpointError, match=r"without a single data\.pkl"):
        load_model(plain, "cpu")
    import pickle

    no_model = write_torch_zip(tmp_path / "dict.pt", pickle.dumps({"epoch": 1}, protocol=2))
    with pytest.raises(CheckpointError, match="no 'model' or 'ema' entry"):
        load_model(no_model, "cpu")


def test_storage_of_wrong_length_is_refused(tmp_path: Path) -> None:
    tensor_path = tmp_path / "t.pt"
    torch.save({"model": torch.arange(4, dtype=torch.float32)}, tensor_path)
    with zipfile.ZipFile(tensor_path) as src:
        names = src.namelist()
        pkl = src.read(next(n for n in names if n.endswith("data.pkl")))
    # The storage entry says 4 float32 elements; give it 3.
    broken = write_torch_zip(tmp_path / "short.pt", pkl, {"0": b"\x00" * 12})
    with pytest.raises(CheckpointError, match="storage 0 holds 12 bytes, expected 16"):
        read_yolov5_checkpoint(broken)
