"""Checkpoint metadata and architecture are checked, field by field, before anything is built.

Each hostile value gets a typed error naming the file and the field; the parameter estimate matches the
built model exactly and refuses oversized architectures before allocating them.
"""

from __future__ import annotations

import json
import random
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from smartcash_core.checkpoint import load_model
from smartcash_core.checkpoint.architecture import check_architecture, estimate_num_params
from smartcash_core.checkpoint.native import METADATA_KEY, read_metadata, save_checkpoint
from smartcash_core.classes import default_class_table
from smartcash_core.errors import CheckpointError, CheckpointMetadataError, CheckpointTooLargeError
from smartcash_core.model import build_model
from smartcash_core.model.config import load_model_config
from tests.checkpoint.conftest import save_yolov5_style

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("bounds") / "nano.safetensors"
    model = build_model("yolov5n", 17).eval()
    return save_checkpoint(path, model, class_table=default_class_table(), imgsz=320)


def rewrite_metadata(source: Path, target: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """Copy a native checkpoint with its SmartCash metadata edited (tensor table and bytes untouched)."""
    data = source.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header, body = json.loads(data[8 : 8 + length]), data[8 + length :]
    metadata = json.loads(header["__metadata__"][METADATA_KEY])
    change(metadata)
    header["__metadata__"][METADATA_KEY] = json.dumps(metadata)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    target.write_bytes(struct.pack("<Q", len(encoded)) + encoded + body)
    return target


def set_field(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change setting ``metadata[a][b][...] = value`` for a dotted ``path`` (list indices allowed)."""

    def change(metadata: dict[str, Any]) -> None:
        *parents, last = [int(part) if part.lstrip("-").isdigit() else part for part in path.split(".")]
        target: Any = metadata
        for part in parents:
            target = target[part]
        target[last] = value

    return change


BAD_FIELDS = [
    ("imgsz", "abc", "imgsz"),
    ("imgsz", -5, "imgsz"),
    ("imgsz", 0, "imgsz"),
    ("imgsz", 100, "imgsz"),  # not a multiple of the stride 32
    ("imgsz", 8192, "imgsz"),
    ("imgsz", 640.0, "imgsz"),
    ("imgsz", True, "imgsz"),
    ("sha256", "not-a-digest", "sha256"),
    ("phase", 3, "phase"),
    ("dtype", "int8", "dtype"),
    ("stride", [8.0, 16.0, 33.0], "stride"),
    ("format_version", "1", "format_version"),
    ("class_table.fine_names", "abc", "class_table.fine_names"),
    ("class_table.fine_names", [f"c{i}" for i in range(1001)], "class_table.fine_names"),
    ("yaml.width_multiple", 1000, "yaml.width_multiple"),
    ("yaml.width_multiple", 4, "yaml.width_multiple"),
    ("yaml.width_multiple", 0, "yaml.width_multiple"),
    ("yaml.width_multiple", "0.25", "yaml.width_multiple"),
    ("yaml.depth_multiple", -1, "yaml.depth_multiple"),
    ("yaml.depth_multiple", float("nan"), "yaml.depth_multiple"),
    ("yaml.nc", 0, "yaml.nc"),
    ("yaml.nc", "17", "yaml.nc"),
    ("yaml.anchors", [[10, 13, 16]], "yaml.anchors"),  # odd count
    ("yaml.anchors", [[10, 13], [1, 2, 3, 4]], "yaml.anchors"),  # levels differ
    ("yaml.anchors", [[10, -13, 16, 30, 33, 23]] * 3, "yaml.anchors"),
    ("yaml.anchors", [[1, 2]] * 9, "yaml.anchors"),  # more levels than YOLOv5 has
    ("yaml.activation", "os.system('x')", "yaml.activation"),
    ("yaml.backbone.0.2", "os.system", "yaml.backbone[0].module"),
    ("yaml.backbone.0.3", ["__import__('os')", 6, 2, 2], "yaml.backbone[0].args"),
    ("yaml.backbone.0.3", [10**6, 6, 2, 2], "yaml.backbone[0].args[0]"),
    ("yaml.backbone.0.3", [64, 99, 2, 2], "yaml.backbone[0].args[1]"),
    ("yaml.backbone.2.1", 10**6, "yaml.backbone[2].number"),
    ("yaml.backbone.2.0", 5, "yaml.backbone[2].from"),  # a later layer
    ("yaml.backbone.9.3", [1024, 4], "yaml.backbone[9].args"),  # even SPPF kernel
    ("yaml.head.1.3", ["None", 1000, "nearest"], "yaml.head[1].args"),
    ("yaml.head.-1.2", "Conv", "yaml.head[14].module"),  # no Detect at the end
    ("yaml.backbone", [], "yaml.backbone"),
    ("yaml.head", "Detect", "yaml.head"),
]


@pytest.mark.parametrize(("path", "value", "field"), BAD_FIELDS)
def test_each_bad_field_is_named(saved: Path, tmp_path: Path, path: str, value: Any, field: str) -> None:
    target = rewrite_metadata(saved, tmp_path / "bad.safetensors", set_field(path, value))
    with pytest.raises(CheckpointMetadataError) as error:
        load_model(target, "cpu")
    assert error.value.field == field, str(error.value)
    assert str(target) in str(error.value) and field in str(error.value)


def test_missing_yaml_key_names_it(saved: Path, tmp_path: Path) -> None:
    target = rewrite_metadata(saved, tmp_path / "m.safetensors", lambda meta: meta["yaml"].pop("anchors"))
    with pytest.raises(CheckpointMetadataError, match=r"yaml\.anchors = None: is missing"):
        load_model(target, "cpu")


def test_metadata_of_wrong_types_everywhere_is_typed(saved: Path, tmp_path: Path) -> None:
    """Each field the loader reads, set to values of every JSON type: a CheckpointError, never a crash.

    (``epoch`` and ``phase`` accept null and ``stride`` may be absent, so those few load.)
    """
    typed = ("format_version", "yaml", "class_table", "imgsz", "sha256", "stride", "epoch", "phase", "dtype")
    assert set(typed) <= set(read_metadata(saved))
    values: list[Any] = [None, True, -1, 10**30, 1.5, "x", [], {}, [[]], {"a": {}}]
    loaded = []
    for index, (key, value) in enumerate((k, v) for k in typed for v in values):
        target = rewrite_metadata(saved, tmp_path / f"t{index}.safetensors", set_field(key, value))
        try:
            load_model(target, "cpu")
            loaded.append((key, value))
        except CheckpointError:
            continue
    assert loaded == [("stride", None), ("epoch", None), ("epoch", -1), ("epoch", 10**30), ("phase", None)]


def test_parameter_cap_refuses_before_building(saved: Path) -> None:
    with pytest.raises(CheckpointTooLargeError, match=r"1\.8 M parameters, over the cap of 1 M"):
        load_model(saved, "cpu", max_params=1_000_000)
    assert load_model(saved, "cpu", max_params=2_000_000).num_params == 1_786_918


def test_width_multiple_4_is_refused_without_allocating(saved: Path, tmp_path: Path) -> None:
    """Was: 1.7 GB allocated before the refusal. Now the estimate refuses it; peak RSS barely moves."""
    target = rewrite_metadata(saved, tmp_path / "w2.safetensors", set_field("yaml.width_multiple", 2.0))
    target = rewrite_metadata(target, tmp_path / "w2d.safetensors", set_field("yaml.depth_multiple", 2.0))
    script = (
        "import json, resource, sys, time\n"
        "from smartcash_core.checkpoint import load_model\n"
        "from smartcash_core.errors import CheckpointTooLargeError\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    load_model(sys.argv[1], 'cpu', max_params=100_000_000)\n"
        "    outcome = 'loaded'\n"
        "except CheckpointTooLargeError as exc:\n"
        "    outcome = str(exc)\n"
        "grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024\n"
        "print(json.dumps({'outcome': outcome, 'grown_mb': grown}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(target)], cwd=ROOT, capture_output=True,
                          text=True, check=True, timeout=300)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "parameters, over the cap of 100 M" in result["outcome"]
    assert result["grown_mb"] < 50, result


@pytest.mark.parametrize("name", ["yolov5n", "yolov5s", "yolov5m"])
def test_estimate_equals_built_parameter_count(name: str) -> None:
    cfg = load_model_config(name)
    for nc in (1, 17, 80):
        cfg["nc"] = nc
        assert estimate_num_params(cfg) == build_model(cfg, None).num_params()


def test_estimate_matches_on_random_valid_architectures() -> None:
    rng = random.Random(7)
    for _ in range(12):
        cfg = load_model_config("yolov5n")
        cfg["nc"] = rng.randint(1, 40)
        cfg["depth_multiple"] = rng.choice([0.2, 0.33, 0.5, 1.0])
        cfg["width_multiple"] = rng.choice([0.1, 0.125, 0.25, 0.3])
        cfg["anchors"] = [[rng.randint(1, 400) for _ in range(2 * 2)] for _ in range(3)]
        for row in cfg["backbone"] + cfg["head"]:
            if row[2] == "Conv" and row[3][1] == 3 and rng.random() < 0.3:
                row[3][1] = 5  # another kernel
        built = build_model(cfg, None).num_params()
        assert check_architecture(cfg, "random") == estimate_num_params(cfg) == built


def test_shipped_configs_pass_the_checks() -> None:
    for name in ("yolov5n", "yolov5s", "yolov5m", "yolov5l", "yolov5x"):
        params = check_architecture(load_model_config(name), name)
        assert 1_000_000 < params < 100_000_000


def test_save_refuses_an_image_size_the_loader_would_refuse(tmp_path: Path) -> None:
    model = build_model("yolov5n", 17)
    for imgsz in (-5, 0, 100, 8192):
        with pytest.raises(CheckpointMetadataError, match="imgsz"):
            save_checkpoint(tmp_path / "x.safetensors", model, class_table=default_class_table(), imgsz=imgsz)


def _yolov5_pt(tmp_path: Path, change: Callable[[dict[str, Any]], None], name: str = "m.pt") -> Path:
    model = build_model("yolov5n", 3)
    change(model.yaml)
    return save_yolov5_style(tmp_path / name, {"model": model, "ema": None, "epoch": 3,
                                                "opt": {"imgsz": 320}})


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (set_field("width_multiple", 4), "model.yaml.width_multiple"),
        (set_field("depth_multiple", "x"), "model.yaml.depth_multiple"),
        (set_field("anchors", [[1, 2, 3]] * 3), "model.yaml.anchors"),
        (set_field("backbone.0.2", "subprocess.Popen"), "model.yaml.backbone[0].module"),
        (set_field("backbone.2.1", 5000), "model.yaml.backbone[2].number"),
    ],
)
def test_yolov5_pt_yaml_gets_the_same_checks(tmp_path: Path, change: Any, field: str) -> None:
    path = _yolov5_pt(tmp_path, change)
    with pytest.raises(CheckpointMetadataError) as error:
        load_model(path, "cpu")
    assert error.value.field == field and str(path) in str(error.value)


def test_yolov5_pt_class_count_and_imgsz(tmp_path: Path) -> None:
    model = build_model("yolov5n", 3)
    model.nc = 5000  # the pickled attribute YOLOv5 reads first
    path = save_yolov5_style(tmp_path / "nc.pt", {"model": model, "ema": None})
    with pytest.raises(CheckpointMetadataError, match=r"model\.nc = 5000"):
        load_model(path, "cpu")
    odd = save_yolov5_style(tmp_path / "odd.pt", {"model": build_model("yolov5n", 3), "opt": {"imgsz": 300}})
    assert load_model(odd, "cpu").imgsz == 320  # YOLOv5 rounds a training size up to the stride
    huge = save_yolov5_style(tmp_path / "huge.pt", {"model": build_model("yolov5n", 3), "opt": {"imgsz": -1}})
    with pytest.raises(CheckpointMetadataError, match=r"opt\.imgsz = -1"):
        load_model(huge, "cpu")


def test_yolov5_pt_parameter_cap(tmp_path: Path) -> None:
    path = save_yolov5_style(tmp_path / "n.pt", {"model": build_model("yolov5n", 3)})
    with pytest.raises(CheckpointTooLargeError, match="over the cap"):
        load_model(path, "cpu", max_params=1_000_000)
