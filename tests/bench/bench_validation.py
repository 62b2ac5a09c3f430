"""Benchmark of the validation pass (issue 4): forward-only baseline vs full pass cold and warm, and memory.

    .venv/bin/python tests/bench/bench_validation.py [--images 200] [--models yolov5n yolov5s]
        [--imgsz 640] [--batch 16] [--hard-images 64] [--stream-images 5000]

1. Synthetic set (``smartcash synth``) at 1280x960. For each model (fresh weights, as a shape-and-cost
   stand-in): time the fused forward pass alone over the very batches the pass builds, already in memory;
   then ``run_validation`` cold (empty image cache) and warm (second run, same process). Ratios vs forward.
2. Hard case: the YOLOv5 fixture model on ``domain="shifted"`` images (unlike its training data), where
   thousands of candidates survive conf 0.001 and NMS would dominate without an efficient implementation.
3. Streaming memory: peak RSS of a pass over ``--stream-images`` small images vs a pass over a tenth of
   them, each in a fresh subprocess, with the image cache disabled.
Not a test: numbers depend on the machine; record what it prints in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from smartcash_core.cache import clear_data_caches, configure_caches
from smartcash_core.checkpoint import LoadedModel, load_model
from smartcash_core.classes import default_class_table
from smartcash_core.data.dataset import load_yolo_dataset
from smartcash_core.data.loader import BatchLoader
from smartcash_core.model.yolo import build_model
from smartcash_core.training.synthetic import generate_dataset
from smartcash_core.validation.inference import inference_network, network_inputs, uses_channels_last
from smartcash_core.validation.params import ValidationParams
from smartcash_core.validation.runner import run_validation
from smartcash_core.validation.source import plan_batches

FIXTURE_WEIGHTS = Path(__file__).resolve().parents[1] / "fixtures" / "yolov5" / "yolov5n_banknotes.pt"


def fresh_model(name: str) -> LoadedModel:
    model = build_model(name).float().eval()
    return LoadedModel(
        model, default_class_table(), 640, 32, f"fresh-{name}", Path(name), torch.device("cpu")
    )


def forward_only_seconds(model: LoadedModel, data: Path, params: ValidationParams) -> float:
    """The fused forward over the pass's own batches, decoded and laid out beforehand (the floor a pass can
    reach: only the uint8 -> float conversion and the forward are timed)."""
    plans = plan_batches(load_yolo_dataset(data, num_classes=17), params, model.stride)
    with BatchLoader(plans, params.imgsz, workers=params.workers) as loader:
        inputs = [batch.images for batch in loader]
    if uses_channels_last(model.device):  # the layout the pass's uint8 batches reach the network in
        inputs = [images.contiguous(memory_format=torch.channels_last) for images in inputs]
    network = inference_network(model)
    started = time.perf_counter()
    with torch.inference_mode():
        for images in inputs:
            network(network_inputs(images, model.device))
    return time.perf_counter() - started


def timed_pass(model: LoadedModel, data: Path, params: ValidationParams) -> tuple[float, dict[str, float]]:
    started = time.perf_counter()
    result = run_validation(model, data, params)
    return time.perf_counter() - started, result.speed_ms_per_image


def report_case(label: str, model: LoadedModel, data: Path, params: ValidationParams, images: int) -> None:
    inference_network(model)  # fuse outside the timings (done once per loaded model in the service too)
    clear_data_caches()
    cold_s, cold_speed = timed_pass(model, data, params)
    warm_s, warm_speed = timed_pass(model, data, params)
    forward_s = forward_only_seconds(model, data, params)
    print(f"{label}: {images} images, imgsz {params.imgsz}, batch {params.batch_size}")
    print(f"  forward only {forward_s:7.2f} s  ({1000 * forward_s / images:6.1f} ms/img)")
    print(f"  cold pass    {cold_s:7.2f} s  ratio {cold_s / forward_s:5.3f}  stages ms/img {fmt(cold_speed)}")
    print(f"  warm pass    {warm_s:7.2f} s  ratio {warm_s / forward_s:5.3f}  stages ms/img {fmt(warm_speed)}")


def fmt(speed: dict[str, float]) -> str:
    return ", ".join(f"{stage} {value:.1f}" for stage, value in speed.items())


def stream_peak_mib(data: Path, imgsz: int) -> float:
    """Peak RSS (MiB, VmHWM) of one pass in a fresh interpreter, image cache off (streaming)."""
    code = (
        "from smartcash_core.cache import configure_caches\n"
        "configure_caches(image_bytes=0)\n"
        "from tests.bench.bench_validation import fresh_model\n"
        "from smartcash_core.validation.params import ValidationParams\n"
        "from smartcash_core.validation.runner import run_validation\n"
        f"params = ValidationParams(imgsz={imgsz}, batch_size=32)\n"
        f"run_validation(fresh_model('yolov5n'), {str(data)!r}, params)\n"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the (bigger) parent process
        "print([int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')][0] / 1024)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--models", nargs="+", default=["yolov5n", "yolov5s"])
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--hard-images", type=int, default=64)
    parser.add_argument("--stream-images", type=int, default=5000)
    parser.add_argument("--workdir", default=None, help="keep generated data here (default: a temp dir)")
    parser.add_argument("--fast-decode", action="store_true", help="JPEG draft decoding from 2x (not exact)")
    args = parser.parse_args()
    configure_caches(image_bytes=4 * 1024**3)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.workdir or scratch)
        params = ValidationParams(
            imgsz=args.imgsz, batch_size=args.batch, device="cpu", fast_decode=args.fast_decode
        )
        print(f"decode: {'fast (JPEG draft from 2x)' if args.fast_decode else 'exact (YOLOv5 pixels)'}")
        big = root / f"big{args.images}"
        if not (big / "data.yaml").exists():
            generate_dataset(big, images=args.images, seed=11, width=1280, height=960)
        for name in args.models:
            report_case(f"{name} (fresh weights), 1280x960", fresh_model(name), big, params, args.images)
        if args.hard_images:
            hard = root / f"hard{args.hard_images}"
            if not (hard / "data.yaml").exists():
                generate_dataset(
                    hard, images=args.hard_images, seed=12, width=1280, height=960, domain="shifted"
                )
            trained = load_model(FIXTURE_WEIGHTS, "cpu")
            report_case(
                "hard case: fixture yolov5n on shifted images", trained, hard, params, args.hard_images
            )
        if args.stream_images:
            stream_case(root, args.stream_images)
    print(f"bench process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def stream_case(root: Path, count: int) -> None:
    small, tenth = root / f"stream{count}", root / f"stream{count // 10}"
    for path, images in ((small, count), (tenth, max(1, count // 10))):
        if not (path / "data.yaml").exists():
            generate_dataset(path, images=images, seed=13, width=320, height=240)
    peak_tenth, peak_full = stream_peak_mib(tenth, 64), stream_peak_mib(small, 64)
    print(
        f"streaming: peak RSS {peak_tenth:.0f} MiB for {count // 10} images, {peak_full:.0f} MiB for {count}"
    )


if __name__ == "__main__":
    main()
