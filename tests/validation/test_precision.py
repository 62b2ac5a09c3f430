"""Inference precision (issue 14): fp32 stays exact, bf16 runs where the CPU has native bf16 and stays within
0.005 mAP50-95 of fp32, unsupported precisions are refused with a message that says why, ``half`` keeps its
old meaning as a deprecated alias."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from smartcash_core.checkpoint import LoadedModel, load_model
from smartcash_core.errors import InvalidParamsError
from smartcash_core.validation import precision as precision_module
from smartcash_core.validation.inference import Forward
from smartcash_core.validation.params import ValidationParams
from smartcash_core.validation.precision import (
    UnsupportedPrecisionError,
    check_precision_for_device,
    cpu_bf16_flags,
    resolve_precision,
)
from smartcash_core.validation.report import format_report
from smartcash_core.validation.runner import run_validation

FIXTURE_VAL = Path(__file__).resolve().parents[1] / "fixtures" / "yolov5" / "val"
CPU = torch.device("cpu")
needs_native_bf16 = pytest.mark.skipif(not cpu_bf16_flags(), reason="no native bf16 instructions on this CPU")


@pytest.fixture(scope="module")
def trained(trained_weights: Path) -> LoadedModel:
    return load_model(trained_weights, "cpu")


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f amx_bf16 avx512_bf16\n\nflags\t: other\n")
    monkeypatch.setattr(precision_module, "_CPUINFO", fake)
    precision_module.cpu_flags.cache_clear()
    try:
        assert cpu_bf16_flags() == ("avx512_bf16", "amx_bf16")
        fake.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n")
        precision_module.cpu_flags.cache_clear()
        assert cpu_bf16_flags() == ()
        monkeypatch.setattr(precision_module, "_CPUINFO", tmp_path / "missing")
        precision_module.cpu_flags.cache_clear()
        assert cpu_bf16_flags() == ()
    finally:
        precision_module.cpu_flags.cache_clear()


def test_bf16_is_refused_on_a_cpu_without_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision_module, "cpu_bf16_flags", lambda: ())
    with pytest.raises(UnsupportedPrecisionError, match=r"avx512_bf16 or amx_bf16.*use fp32"):
        resolve_precision(ValidationParams(precision="bf16"), CPU)
    monkeypatch.setattr(precision_module, "cpu_bf16_flags", lambda: ("amx_bf16",))
    assert resolve_precision(ValidationParams(precision="bf16"), CPU) == ("bf16", [])


def test_fp16_is_refused_off_cuda_and_half_falls_back_with_a_warning() -> None:
    with pytest.raises(UnsupportedPrecisionError, match="fp16 runs on CUDA only"):
        check_precision_for_device(ValidationParams(precision="fp16"), "cpu")
    chosen, warnings = resolve_precision(ValidationParams(half=True), CPU)
    assert chosen == "fp32" and [warning.code for warning in warnings] == ["half_ignored"]
    with pytest.raises(InvalidParamsError, match="contradicts precision bf16"):
        resolve_precision(ValidationParams(half=True, precision="bf16"), CPU)


def test_unknown_precision_is_refused_by_check_params(trained: LoadedModel) -> None:
    with pytest.raises(InvalidParamsError, match="precision must be one of fp32, bf16, fp16"):
        run_validation(trained, FIXTURE_VAL, ValidationParams(precision="int8", device="cpu"))  # type: ignore[arg-type]


def test_half_on_cpu_runs_fp32_exactly_and_says_so(trained: LoadedModel) -> None:
    params = ValidationParams(imgsz=320, batch_size=32, device="cpu", workers=0)
    exact = run_validation(trained, FIXTURE_VAL, params)
    halved = run_validation(
        trained, FIXTURE_VAL, ValidationParams(imgsz=320, batch_size=32, device="cpu", workers=0, half=True)
    )
    assert halved.metrics == exact.metrics
    assert halved.model["precision"] == exact.model["precision"] == "fp32"
    assert [warning["code"] for warning in halved.warnings] == ["half_ignored"]
    assert exact.params["precision"] == "fp32" and exact.warnings == []
    assert "at imgsz 320 in fp32;" in format_report(halved)
    assert "Warning (half_ignored): half (fp16) runs on CUDA only" in format_report(halved)


@needs_native_bf16
def test_bf16_head_output_is_float32_with_float32_boxes(trained: LoadedModel) -> None:
    images = torch.randint(0, 256, (2, 3, 256, 320), dtype=torch.uint8)
    exact, fast = Forward(trained, "fp32"), Forward(trained, "bf16")
    reference = exact.run(exact.inputs(images))
    head = fast.run(fast.inputs(images))
    assert head.decoded.dtype == torch.float32  # what NMS gets
    assert head.levels is not None and all(level.dtype == torch.float32 for level in head.levels)
    boxes = head.decoded[..., :4]
    # float32 boxes: far finer than bf16's 2-4 px steps at these coordinates, close to the fp32 boxes
    assert not torch.equal(boxes, boxes.to(torch.bfloat16).float())
    confident = reference.decoded[..., 4] > 0.25
    assert (boxes[confident] - reference.decoded[..., :4][confident]).abs().median() < 1.0


@needs_native_bf16
def test_bf16_pass_stays_within_0005_map_of_fp32_and_reports_it(trained: LoadedModel) -> None:
    base = {"imgsz": 320, "batch_size": 32, "device": "cpu", "compute_loss": True}
    exact = run_validation(trained, FIXTURE_VAL, ValidationParams(**base))
    fast = run_validation(trained, FIXTURE_VAL, ValidationParams(**base, precision="bf16"))
    for view in (fast.metrics, fast.metrics["fine"]):
        reference = exact.metrics if view is fast.metrics else exact.metrics["fine"]
        assert abs(view["map50_95"] - reference["map50_95"]) <= 0.005
        assert abs(view["map50"] - reference["map50"]) <= 0.01
    assert fast.params["precision"] == fast.model["precision"] == "bf16"
    assert "at imgsz 320 in bf16;" in format_report(fast)
    assert abs(fast.metrics["loss"]["box"] - exact.metrics["loss"]["box"]) < 1e-3
