"""Benchmark of the validation pass (issue 4): forward-only baseline vs full pass cold and warm, and memory.

    .venv/bin/python tests/bench/bench_validation.py [--images 200] [--models yolov5n yolov5s]
        [--imgsz 640] [--batch 16] [--hard-images 64] [--stream-images 5000] [--precision fp32|bf16|fp16]
        [--device cpu|cuda] [--dry-run]

1. Synthetic set (``smartcash synth``) at 1280x960. For each model (fresh weights, as a shape-and-cost
   stand-in): time the fused forward pass alone over the very batches the pass builds, already in memory;
   then the pass cold (empty image cache) and warm (second run, same process). Ratios vs forward, and the
   overlap check of issue 14: each stage's CPU time (decoding threads' ``thread_time``, the pass thread's
   ``thread_time`` per stage, the forward's process CPU from the forward-only run), the bound
   ``max(forward-only wall, all stages' CPU / cores)``, and cold wall / bound (goal <= 1.10); warm wall /
   forward-only (goal <= 1.05).
2. Hard case: the YOLOv5 fixture model on ``domain="shifted"`` images (unlike its training data), where
   thousands of candidates survive conf 0.001 and NMS would dominate without an efficient implementation.
3. Streaming memory: peak RSS of a pass over ``--stream-images`` small images vs a pass over a tenth of
   them, each in a fresh subprocess, with the image cache disabled.
Not a test: numbers depend on the machine; record what it prints in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from smartcash_core.cache import clear_data_caches, configure_caches
from smartcash_core.checkpoint import LoadedModel, load_model
from smartcash_core.classes import default_class_table
from smartcash_core.data.dataset import load_yolo_dataset
from smartcash_core.data.loader import BatchLoader
from smartcash_core.model.yolo import build_model
from smartcash_core.training.synthetic import generate_dataset
from smartcash_core.validation.inference import Forward, inference_network, uses_channels_last
from smartcash_core.validation.params import ValidationParams
from smartcash_core.validation.precision import resolve_precision
from smartcash_core.validation.runner import build_result, collect_validation_state
from smartcash_core.validation.source import plan_batches

FIXTURE_WEIGHTS = Path(__file__).resolve().parents[1] / "fixtures" / "yolov5" / "yolov5n_banknotes.pt"


def fresh_model(name: str, device: str = "cpu") -> LoadedModel:
    model = build_model(name).float().eval().to(device)
    return LoadedModel(
        model, default_class_table(), 640, 32, f"fresh-{name}", Path(name), torch.device(device)
    )


@dataclass
class Timing:
    """Wall seconds and CPU seconds of one timed run (CPU per stage for passes, process CPU otherwise)."""

    wall_s: float
    cpu_s: dict[str, float]
    speed: dict[str, float] = field(default_factory=dict)


def forward_only(model: LoadedModel, data: Path, params: ValidationParams) -> Timing:
    """The fused forward over the pass's own batches, decoded and laid out beforehand (the floor a pass can
    reach: only the uint8 -> network input conversion and the forward are timed), in the pass's precision.
    ``cpu_s["forward"]``: the process's CPU time meanwhile (nothing else runs: all of it is the forward's)."""
    plans = plan_batches(load_yolo_dataset(data, num_classes=17), params, model.stride)
    pin = model.device.type == "cuda"
    with BatchLoader(plans, params.imgsz, workers=params.workers, pin_memory=pin) as loader:
        inputs = [batch.images for batch in loader]
    if uses_channels_last(model.device):  # the layout the pass's uint8 batches reach the network in
        inputs = [images.contiguous(memory_format=torch.channels_last) for images in inputs]
    forward = Forward(model, resolve_precision(params, model.device)[0])
    forward.run(forward.inputs(inputs[0]))  # warm-up, as the pass's own first batch is inside its wall
    started, cpu_started = time.perf_counter(), time.process_time()
    for images in inputs:
        forward.run(forward.inputs(images))
    return Timing(time.perf_counter() - started, {"forward": time.process_time() - cpu_started})


def timed_pass(model: LoadedModel, data: Path, params: ValidationParams, overlap: bool = True) -> Timing:
    started = time.perf_counter()
    state = collect_validation_state(model, data, params, overlap=overlap)
    result = build_result(state, model, params, wall_s=time.perf_counter() - started)
    return Timing(time.perf_counter() - started, dict(state.log.stage_cpu_seconds), result.speed_ms_per_image)


def overlap_bound(cold: Timing, forward: Timing, cores: int) -> tuple[float, float]:
    """``(all stages' CPU seconds, max(forward-only wall, that CPU / cores))``: a pass cannot be faster
    than its forward alone, nor than its CPU work spread over every core. The forward's CPU comes from the
    forward-only run (torch's intra-op threads are not in the pass thread's CPU time); the other stages'
    from the pass: decoding threads' CPU plus the pass thread's CPU outside the forward."""
    others = sum(seconds for stage, seconds in cold.cpu_s.items() if stage != "inference")
    total = forward.cpu_s["forward"] + others
    return total, max(forward.wall_s, total / cores)


def report_case(label: str, model: LoadedModel, data: Path, params: ValidationParams, images: int) -> None:
    inference_network(model)  # fuse outside the timings (done once per loaded model in the service too)
    clear_data_caches()
    cold = timed_pass(model, data, params)
    warm = timed_pass(model, data, params)
    serial = timed_pass(model, data, params, overlap=False)  # warm, NMS + metrics in the pass thread
    forward = forward_only(model, data, params)
    cores = len(os.sched_getaffinity(0))
    cpu_total, bound = overlap_bound(cold, forward, cores)
    print(f"{label}: {images} images, imgsz {params.imgsz}, batch {params.batch_size}, {params.precision}")
    print(f"  forward only {forward.wall_s:7.2f} s  ({1000 * forward.wall_s / images:6.1f} ms/img)"
          f"  CPU {forward.cpu_s['forward']:.2f} s")
    print(f"  cold pass    {cold.wall_s:7.2f} s  ratio {cold.wall_s / forward.wall_s:5.3f}"
          f"  stages ms/img {fmt(cold.speed)}")
    print(f"    CPU s by stage {fmt(cold.cpu_s, 2)} (pass thread; decode: its threads)")
    print(f"    overlap: all stages' CPU {cpu_total:.2f} s / {cores} cores = {cpu_total / cores:.2f} s; "
          f"bound max(forward, CPU/cores) {bound:.2f} s; cold wall / bound {cold.wall_s / bound:5.3f} "
          f"(goal <= 1.10)")
    print(f"  warm pass    {warm.wall_s:7.2f} s  ratio {warm.wall_s / forward.wall_s:5.3f} (goal <= 1.05)"
          f"  stages ms/img {fmt(warm.speed)}")
    print(f"  warm, no overlap {serial.wall_s:7.2f} s  ratio {serial.wall_s / forward.wall_s:5.3f}"
          f"  (NMS and metrics in the pass thread, as before issue 14)")


def fmt(values: dict[str, float], digits: int = 1) -> str:
    return ", ".join(f"{stage} {value:.{digits}f}" for stage, value in values.items())


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
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (gpu_check.sh)")
    parser.add_argument(
        "--dry-run", action="store_true", help="a few small images, one model: checks the script end to end"
    )
    args = parser.parse_args()
    if args.dry_run:
        args.images, args.models, args.imgsz, args.hard_images, args.stream_images = 8, ["yolov5n"], 128, 4, 0
    configure_caches(image_bytes=4 * 1024**3)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}")
    with tempfile.TemporaryDirectory() as scratch:
        run_cases(Path(args.workdir or scratch), args)
    print(f"bench process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def run_cases(root: Path, args: argparse.Namespace) -> None:
    params = ValidationParams(
        imgsz=args.imgsz, batch_size=args.batch, device=args.device, fast_decode=args.fast_decode,
        precision=args.precision,
    )
    print(f"decode: {'fast (JPEG draft from 2x)' if args.fast_decode else 'exact (YOLOv5 pixels)'}")
    big = root / f"big{args.images}"
    if not (big / "data.yaml").exists():
        generate_dataset(big, images=args.images, seed=11, width=1280, height=960)
    for name in args.models:
        model = fresh_model(name, args.device)
        report_case(f"{name} (fresh weights), 1280x960", model, big, params, args.images)
    if args.hard_images:
        hard = root / f"hard{args.hard_images}"
        if not (hard / "data.yaml").exists():
            generate_dataset(hard, images=args.hard_images, seed=12, width=1280, height=960, domain="shifted")
        trained = load_model(FIXTURE_WEIGHTS, args.device)
        report_case("hard case: fixture yolov5n on shifted images", trained, hard, params, args.hard_images)
    if args.stream_images:
        stream_case(root, args.stream_images)


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
