"""YOLOv5 model: configs, state_dict layout, forward shapes, decode, grid cache, fusion."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from smartcash_core.cache import tensor_cache
from smartcash_core.errors import ModelConfigError
from smartcash_core.model import MODEL_NAMES, DetectionModel, build_model, load_model_config
from smartcash_core.model.modules import decode_grid

# Parameter counts YOLOv5 7.0 prints when it builds each config with nc=80 (its "summary" line).
YOLOV5_PARAMS_NC80 = {
    "yolov5n": 1_872_157,
    "yolov5s": 7_235_389,
    "yolov5m": 21_190_557,
    "yolov5l": 46_563_709,
    "yolov5x": 86_749_405,
}


@pytest.fixture(scope="module")
def nano() -> DetectionModel:
    torch.manual_seed(0)
    return build_model("yolov5n", 17).eval()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_config_builds_with_yolov5_parameter_count(name: str) -> None:
    model = build_model(name, num_classes=80)
    assert model.num_params() == YOLOV5_PARAMS_NC80[name]
    assert model.stride.tolist() == [8.0, 16.0, 32.0]
    assert model.nc == 80 and model.yaml["nc"] == 80


def test_state_dict_uses_yolov5_key_names(nano: DetectionModel) -> None:
    state = nano.state_dict()
    assert state["model.0.conv.weight"].shape == (16, 3, 6, 6)
    assert state["model.0.bn.running_mean"].shape == (16,)
    assert state["model.24.anchors"].shape == (3, 3, 2)
    assert state["model.24.m.2.bias"].shape == (66,)
    assert state["model.24.m.0.weight"].shape == (66, 64, 1, 1)
    assert "model.2.m.0.cv1.conv.weight" in state and "model.9.cv2.bn.num_batches_tracked" in state


def test_batchnorm_settings_and_anchor_units(nano: DetectionModel) -> None:
    bn = nano.model[0].bn
    assert bn.eps == pytest.approx(1e-3) and bn.momentum == pytest.approx(0.03)
    # YAML anchors are pixels; Detect keeps them in grid units of each level's stride.
    expected = torch.tensor(nano.yaml["anchors"], dtype=torch.float32).view(3, 3, 2) / torch.tensor(
        [8.0, 16.0, 32.0]
    ).view(3, 1, 1)
    torch.testing.assert_close(nano.detect.anchors, expected)


def test_detect_bias_prior(nano: DetectionModel) -> None:
    fresh = build_model("yolov5n", 17)
    bias = fresh.detect.m[0].bias.view(3, 22)
    # conv default init puts the bias in (-1/sqrt(fan_in), 1/sqrt(fan_in)); YOLOv5 adds log priors on top.
    bound = 1 / 64**0.5
    obj_prior = torch.log(torch.tensor(8 / (640 / 8) ** 2))
    cls_prior = torch.log(torch.tensor(0.6 / (17 - 0.99999)))
    assert torch.all((bias[:, 4] - obj_prior).abs() <= bound + 1e-6)
    assert torch.all((bias[:, 5:] - cls_prior).abs() <= bound + 1e-6)


def test_eval_forward_shapes_and_decoding(nano: DetectionModel) -> None:
    x = torch.rand(2, 3, 256, 320)
    with torch.no_grad():
        decoded, raw = nano(x)
    assert [tuple(r.shape) for r in raw] == [(2, 3, 32, 40, 22), (2, 3, 16, 20, 22), (2, 3, 8, 10, 22)]
    assert decoded.shape == (2, 3 * (32 * 40 + 16 * 20 + 8 * 10), 22)
    # Recompute one cell by hand: level 1, anchor 2, row 5, column 7.
    level, anchor, row, col = 1, 2, 5, 7
    cell = raw[level][0, anchor, row, col].sigmoid()
    stride = 16.0
    x_center = (cell[0] * 2 - 0.5 + col) * stride
    y_center = (cell[1] * 2 - 0.5 + row) * stride
    width = (cell[2] * 2) ** 2 * nano.detect.anchors[level, anchor, 0] * stride
    height = (cell[3] * 2) ** 2 * nano.detect.anchors[level, anchor, 1] * stride
    index = 3 * 32 * 40 + anchor * 16 * 20 + row * 20 + col
    expected = torch.cat([torch.stack([x_center, y_center, width, height]), cell[4:]])
    torch.testing.assert_close(decoded[0, index], expected, rtol=1e-5, atol=1e-4)


def test_train_mode_returns_raw_list() -> None:
    model = build_model("yolov5n", 3).train()
    out = model(torch.rand(1, 3, 64, 64))
    assert isinstance(out, list) and [tuple(o.shape) for o in out] == [
        (1, 3, 8, 8, 8), (1, 3, 4, 4, 8), (1, 3, 2, 2, 8)
    ]


def test_yolov5s_forward() -> None:
    model = build_model("yolov5s").eval()
    with torch.no_grad():
        decoded, _ = model(torch.rand(1, 3, 128, 96))
    assert decoded.shape == (1, 3 * (16 * 12 + 8 * 6 + 4 * 3), 22)
    assert torch.isfinite(decoded).all() and (decoded[..., 4:] >= 0).all() and (decoded[..., 4:] <= 1).all()


def test_decode_grid_is_cached_per_shape_device_dtype(nano: DetectionModel) -> None:
    cache = tensor_cache()
    first = decode_grid(7, 9, torch.device("cpu"), torch.float32)
    hits_before = cache.info()["hits"]
    again = decode_grid(7, 9, torch.device("cpu"), torch.float32)
    assert again is first and cache.info()["hits"] == hits_before + 1
    other = decode_grid(7, 9, torch.device("cpu"), torch.float64)
    assert other is not first and other.dtype == torch.float64
    assert first.shape == (1, 1, 7, 9, 2)
    assert first[0, 0, 3, 5].tolist() == [4.5, 2.5]  # (x, y) offsets minus 0.5


def test_fused_model_matches_unfused() -> None:
    torch.manual_seed(1)
    model = build_model("yolov5n", 17)
    # Non-trivial BN statistics, so the fusion arithmetic is really exercised.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    model.eval()
    x = torch.rand(1, 3, 160, 160)
    with torch.no_grad():
        before, raw_before = model(x)
        model.fuse()
        after, raw_after = model(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    for a, b in zip(raw_before, raw_after, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
    torch.testing.assert_close(before[..., 4:], after[..., 4:], rtol=0, atol=1e-4)


def test_build_from_yaml_path_and_dict(tmp_path: Path) -> None:
    cfg = load_model_config("yolov5n")
    cfg["nc"] = 5
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump(cfg))
    from_path = build_model(path, num_classes=None)
    from_dict = build_model(cfg, num_classes=None)
    assert from_path.nc == from_dict.nc == 5
    assert from_path.state_dict()["model.24.m.0.weight"].shape == (30, 64, 1, 1)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c.pop("anchors"), "missing 'anchors'"),
        (lambda c: c["backbone"].__setitem__(0, [-1, 1, "Focus", [64, 3]]), "unknown module 'Focus'"),
        (lambda c: c["head"].__setitem__(2, [[-1, 99], 1, "Concat", [1]]), "missing layer"),
        (lambda c: c["head"].pop(), "must be Detect"),
        (lambda c: c["head"].__setitem__(1, [-1, 1, "nn.Upsample", ["__import__('os')", 2]]), "unsupported"),
    ],
)
def test_bad_configs_raise_model_config_error(mutate, message: str) -> None:
    cfg = load_model_config("yolov5n")
    mutate(cfg)
    with pytest.raises(ModelConfigError, match=message):
        build_model(cfg)


def test_unknown_name_and_bad_class_count() -> None:
    with pytest.raises(ModelConfigError, match="neither a model name"):
        build_model("yolov5q")
    with pytest.raises(ModelConfigError, match="positive integer"):
        build_model("yolov5n", 0)


def test_fusing_under_grad_mode_leaves_plain_leaf_weights() -> None:
    model = build_model("yolov5n", 17).eval()
    assert torch.is_grad_enabled()
    model.fuse()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(conv.weight.is_leaf and conv.weight.grad_fn is None for conv in convs)
