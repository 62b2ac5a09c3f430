"""Forward ms/img per precision and runtime (issue 14, item 1): what ``params.precision`` (and a possible
``params.backend``) should offer, picked by measurement.

    .venv/bin/python tests/bench/bench_forward.py [--cases yolov5n:640:16 yolov5n:320:32 yolov5s:640:16]
        [--rounds 5] [--runtimes torch-fp32 torch-bf16 ...]

Each case is ``model:imgsz:batch``: yolov5n is the YOLOv5 fixture (trained weights, so output differences
mean something), other sizes fresh weights (speed does not depend on the weights' values); fused and
channels-last as the pass runs it. Every variant times the same uint8 batch from ``uint8 -> network input``
to the decoded head output ``[B, N, 22]`` in float32 (what NMS gets), the variants interleaved round by
round; the table gives best and median ms/img, the ratio of the best to ``torch-fp32``'s best, and the
largest difference of the decoded output from fp32 (box pixels, scores).

Variants:
* ``torch-fp32``: the pass's default (``Forward(model, "fp32")``), exact.
* ``torch-bf16``: ``Forward(model, "bf16")``: autocast bf16 backbone and neck, Detect head in float32.
* ``torch-bf16-weights``: the network converted to bf16 (``.to(torch.bfloat16)``), head in float32.
* ``openvino-fp32`` / ``openvino-bf16``: OpenVINO (``pip install openvino``, ONNX exported from the fused
  network, dynamic shapes), ``INFERENCE_PRECISION_HINT`` f32 / bf16, as many threads as torch uses.
* ``onnxruntime-fp32``: ONNX Runtime's CPU provider on the same ONNX file.
A runtime that is not installed is reported as such and skipped. Not a test: record what it prints in
docs/BENCHMARKS.md together with ``lscpu``'s model name and flags.
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from smartcash_core.checkpoint import LoadedModel, load_model
from smartcash_core.classes import default_class_table
from smartcash_core.model.yolo import build_model
from smartcash_core.validation.inference import Forward, inference_network
from smartcash_core.validation.precision import cpu_bf16_flags

FIXTURE_WEIGHTS = Path(__file__).resolve().parents[1] / "fixtures" / "yolov5" / "yolov5n_banknotes.pt"
Runner = Callable[[torch.Tensor], torch.Tensor]  # uint8 channels-last batch -> decoded float32 [B, N, 22]
ALL_RUNTIMES = (
    "torch-fp32", "torch-bf16", "torch-bf16-weights", "openvino-fp32", "openvino-bf16", "onnxruntime-fp32"
)


class DecodedOnly(nn.Module):
    """The fused network returning only the decoded head output (what exporters need)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.network(inputs)[0]


def case_model(name: str) -> LoadedModel:
    """The YOLOv5 fixture for yolov5n (trained weights make the output differences meaningful), fresh
    weights for other sizes."""
    if name == "yolov5n":
        return load_model(FIXTURE_WEIGHTS, "cpu")
    model = build_model(name).float().eval()
    cpu = torch.device("cpu")
    return LoadedModel(model, default_class_table(), 640, 32, f"fresh-{name}", Path(name), cpu)


def torch_runner(model: LoadedModel, precision: str) -> Runner:
    forward = Forward(model, precision)  # type: ignore[arg-type]
    return lambda images: forward.run(forward.inputs(images)).decoded


def bf16_weights_runner(model: LoadedModel) -> Runner:
    network = copy.deepcopy(inference_network(model)).to(torch.bfloat16)
    head = copy.deepcopy(network.detect).float()  # the head in float32, as torch-bf16 runs it

    def run(images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            features = network(images.to(torch.bfloat16).div_(255), features_only=True)
            return head([feature.float() for feature in features])[0]

    return run


def export_onnx(model: LoadedModel, shape: tuple[int, ...], folder: Path) -> Path:
    path = folder / f"{model.sha256}.onnx"
    if not path.exists():
        wrapped = DecodedOnly(inference_network(model)).eval()
        example = torch.zeros(shape)
        dynamic = {"images": {0: "batch", 2: "height", 3: "width"}}
        torch.onnx.export(
            wrapped, (example,), str(path), input_names=["images"], output_names=["decoded"],
            dynamic_axes=dynamic, opset_version=17, dynamo=False,
        )
    return path


def openvino_runner(onnx_path: Path, precision: str) -> Runner:
    import openvino

    core = openvino.Core()
    config = {
        "INFERENCE_PRECISION_HINT": "f32" if precision == "fp32" else "bf16",
        "INFERENCE_NUM_THREADS": torch.get_num_threads(),
        "NUM_STREAMS": 1,
    }
    compiled = core.compile_model(core.read_model(str(onnx_path)), "CPU", config)
    request = compiled.create_infer_request()

    def run(images: torch.Tensor) -> torch.Tensor:
        inputs = images.contiguous().numpy().astype(np.float32) / np.float32(255)
        return torch.from_numpy(request.infer({0: inputs})[0].copy())

    return run


def onnxruntime_runner(onnx_path: Path) -> Runner:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    def run(images: torch.Tensor) -> torch.Tensor:
        inputs = images.contiguous().numpy().astype(np.float32) / np.float32(255)
        return torch.from_numpy(session.run(None, {"images": inputs})[0])

    return run


def make_runner(name: str, model: LoadedModel, shape: tuple[int, ...], folder: Path) -> Runner:
    if name == "torch-fp32":
        return torch_runner(model, "fp32")
    if name == "torch-bf16":
        return torch_runner(model, "bf16")
    if name == "torch-bf16-weights":
        return bf16_weights_runner(model)
    if name.startswith("openvino-"):
        return openvino_runner(export_onnx(model, shape, folder), name.split("-")[1])
    if name == "onnxruntime-fp32":
        return onnxruntime_runner(export_onnx(model, shape, folder))
    raise ValueError(f"unknown runtime {name}")


def run_case(case: str, runtimes: list[str], rounds: int, folder: Path) -> None:
    name, imgsz, batch = case.split(":")
    size, count = int(imgsz), int(batch)
    model = case_model(name)
    images = torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8)
    images = images.contiguous(memory_format=torch.channels_last)
    runners: dict[str, Runner] = {}
    for runtime in runtimes:
        try:
            started = time.perf_counter()
            runners[runtime] = make_runner(runtime, model, tuple(images.shape), folder)
            runners[runtime](images)  # warm-up (first call compiles / packs weights)
            ready_s = time.perf_counter() - started
            print(f"  {runtime}: ready in {ready_s:.1f} s (export, compile, first call)")
        except ImportError as exc:
            print(f"  {runtime}: skipped ({exc})")
    reference = runners["torch-fp32"](images) if "torch-fp32" in runners else None
    times: dict[str, list[float]] = {runtime: [] for runtime in runners}
    for _ in range(rounds):
        for runtime, run in runners.items():
            started = time.perf_counter()
            run(images)
            times[runtime].append(1000 * (time.perf_counter() - started) / count)
    base = min(times["torch-fp32"]) if "torch-fp32" in times else None
    print(f"{name} imgsz {size} batch {count} ({rounds} interleaved rounds):")
    for runtime, values in times.items():
        ratio = f"{min(values) / base:5.2f}x" if base else "  -  "
        diff = difference(runners[runtime](images), reference)
        print(
            f"  {runtime:20s} best {min(values):7.1f}  median {statistics.median(values):7.1f} ms/img"
            f"  vs fp32 {ratio}  {diff}"
        )


def difference(decoded: torch.Tensor, reference: torch.Tensor | None) -> str:
    if reference is None:
        return ""
    delta = (decoded.float() - reference).abs()
    return f"max |diff| boxes {delta[..., :4].max():.3g} px, scores {delta[..., 4:].max():.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["yolov5n:640:16", "yolov5n:320:32", "yolov5s:640:16"])
    parser.add_argument("--runtimes", nargs="+", default=list(ALL_RUNTIMES), choices=ALL_RUNTIMES)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {platform.processor() or 'cpu'}")
    print(f"native bf16 flags: {', '.join(cpu_bf16_flags()) or 'none'}")
    with tempfile.TemporaryDirectory() as scratch:
        for case in args.cases:
            run_case(case, args.runtimes, args.rounds, Path(scratch))


if __name__ == "__main__":
    main()
