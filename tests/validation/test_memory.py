"""The memory estimate of a pass: above the peak measured on real passes and within a factor of it, linear
in the batch size, and the refusal it backs names a batch size (or image size) that does fit."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from smartcash_core.checkpoint import LoadedModel, load_model
from smartcash_core.cli import main
from smartcash_core.errors import MemoryBudgetError
from smartcash_core.validation import memory
from smartcash_core.validation.memory import (
    MAX_OVERESTIMATE,
    activation_floats_per_pixel,
    check_pass_memory,
    default_memory_budget,
    estimate_pass_memory,
)
from smartcash_core.validation.params import ValidationParams
from tests.bench.bench_pass_memory import measure

ISSUE_REQUEST = ValidationParams(imgsz=4096, batch_size=512, device="cpu")
GIB = 2**30


@pytest.fixture(scope="module")
def model(trained_weights: Path) -> LoadedModel:
    return load_model(trained_weights, "cpu")


@pytest.mark.parametrize(
    ("kind", "imgsz", "batch", "images"), [("trained-n", 640, 8, 16), ("yolov5s", 640, 4, 4)]
)
def test_estimate_is_above_the_measured_peak_and_within_the_factor(
    kind: str, imgsz: int, batch: int, images: int
) -> None:
    """A fresh process runs the pass (``tests/bench/bench_pass_memory.py`` has the full table)."""
    with tempfile.TemporaryDirectory() as folder:
        found = measure(kind, imgsz, batch, images, Path(folder))
    assert found["images"] == images
    assert found["measured"] > 100 * 10**6  # large enough for the factor to be promised
    ratio = found["estimated"] / found["measured"]
    assert 1.0 <= ratio <= MAX_OVERESTIMATE, found


def test_the_issue_request_is_refused_with_a_batch_size_that_fits(model: LoadedModel) -> None:
    budget = 8 * GIB
    with pytest.raises(MemoryBudgetError) as caught:
        check_pass_memory(model, ISSUE_REQUEST, budget)
    error = caught.value
    assert error.budget_bytes == budget and error.estimate_bytes > 100 * budget
    assert "over the memory budget of 8.00 GiB" in str(error)
    assert f"batch_size {error.suggested_batch_size} fits" in str(error)
    fitting = replace(ISSUE_REQUEST, batch_size=error.suggested_batch_size)
    assert 1 <= error.suggested_batch_size < 512
    assert check_pass_memory(model, fitting, budget).total_bytes <= budget
    with pytest.raises(MemoryBudgetError):  # it is the largest that fits
        check_pass_memory(model, replace(fitting, batch_size=fitting.batch_size + 1), budget)


def test_when_no_batch_fits_an_image_size_that_does_is_named(model: LoadedModel) -> None:
    with pytest.raises(MemoryBudgetError) as caught:
        check_pass_memory(model, ISSUE_REQUEST, GIB)
    error = caught.value
    assert error.suggested_batch_size == 0 and error.suggested_imgsz is not None
    assert error.suggested_imgsz % model.stride == 0 and error.suggested_imgsz < 4096
    one = replace(ISSUE_REQUEST, imgsz=error.suggested_imgsz, batch_size=1)
    assert check_pass_memory(model, one, GIB).total_bytes <= GIB
    assert f"imgsz {error.suggested_imgsz} fits at batch_size 1" in str(error)


def test_the_estimate_scales_with_batch_image_size_and_model(model: LoadedModel) -> None:
    small = estimate_pass_memory(model, ValidationParams(imgsz=640, batch_size=1))
    double = estimate_pass_memory(model, ValidationParams(imgsz=640, batch_size=2))
    assert double.total_bytes - small.total_bytes == small.per_image_bytes
    large = estimate_pass_memory(model, ValidationParams(imgsz=1280, batch_size=1))
    assert 3.5 < large.per_image_bytes / small.per_image_bytes < 4.1  # pixels: (1312 / 672) ** 2 = 3.8
    upload = estimate_pass_memory(model, ValidationParams(imgsz=640, batch_size=64), images=3)
    assert upload.batch_size == 3  # no batch is larger than the upload
    body_n, head_n = activation_floats_per_pixel(model)
    assert (body_n, round(head_n, 2)) == (20.0, 2.71)  # YOLOv5n: sum of every layer's outputs per pixel


def test_default_budget_is_half_the_machine_on_cpu() -> None:
    budget = default_memory_budget(torch.device("cpu"))
    assert budget is not None and GIB // 4 < budget < 2**45


def test_cli_warns_and_validates_anyway(
    tmp_path: Path, trained_weights: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(memory, "default_memory_budget", lambda device: 10 * 2**20)  # a 10 MiB machine
    data = Path(__file__).resolve().parents[1] / "fixtures" / "yolov5" / "val"
    argv = ["validate", "--weights", str(trained_weights), "--data", str(data), "--imgsz", "96",
            "--batch", "40", "--device", "cpu", "--workers", "0"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "warning: the job needs an estimated" in captured.err
    assert "over the memory budget of 0.01 GiB" in captured.err and "validating anyway" in captured.err
    assert "Mapped classes" in captured.out


def test_estimating_never_disturbs_a_forward_running_on_the_same_model(trained_weights: Path) -> None:
    """A submission is estimated while the model validates another job on a worker thread: the estimate
    works on a meta copy, so the running forward never sees meta weights, hooks or a mode change."""
    import threading

    loaded = load_model(trained_weights, "cpu")
    network = loaded.model.eval()
    images = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        expected = network(images)[0]
    errors: list[BaseException] = []
    outputs: list[torch.Tensor] = []

    def forwards() -> None:
        try:
            with torch.no_grad():
                outputs.extend(network(images)[0] for _ in range(30))
        except BaseException as exc:  # the failure is what the test reports
            errors.append(exc)

    thread = threading.Thread(target=forwards)
    thread.start()
    profiles = []
    for _ in range(30):
        memory._PROFILES.pop(network, None)  # measure again each time, as a fresh model would be
        profiles.append(activation_floats_per_pixel(loaded))
    thread.join()
    assert errors == [] and len(outputs) == 30
    assert all(torch.equal(output, expected) for output in outputs)
    assert len(set(profiles)) == 1 and not network.training
    assert all(not layer._forward_hooks for layer in network.model)
