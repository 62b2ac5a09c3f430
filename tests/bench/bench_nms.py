"""Benchmark of exact NMS (issue 14, item 3): today's ``non_max_suppression`` vs the one before it.

    .venv/bin/python tests/bench/bench_nms.py [--images 16] [--repeats 5] [--cache /tmp/smartcash-nms-bench]

The baseline is a frozen copy of the previous implementation (``nms_baseline.py`` beside this file). Both
run on the very same decoded head outputs, interleaved, in one process; each figure is the best of at
least ``--repeats`` runs in CPU time (``time.process_time``, so other load on a shared machine hurts less),
reported per image and as new / old ratios (cheap cases run more often, at least a second each). Cases:

- NMS-bound: the fixture YOLOv5n on unfamiliar scenes (``domain="shifted"``, 1280x960 letterboxed to 640),
  where tens of thousands of candidates pass conf 0.001 (and conf 0.01);
- its own domain at 320 (what its validation set looks like), conf 0.001;
- few candidates: conf 0.25 on the NMS-bound outputs;
- scores rounded to bfloat16 precision (equal scores everywhere: the partial order must fall back).

The forward pass runs once per case and its outputs are cached under ``--cache``. Also checks that both
implementations keep the same rows; the previous one ordered equal scores by index (a stable sort), today's
as YOLOv5 does (torch's unstable sort), so on ties only the order may differ. Not a test: numbers depend on
the machine; record what it prints in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from PIL import Image

from smartcash_core.ops import nms as nms_now

FIXTURE_WEIGHTS = Path(__file__).resolve().parents[1] / "fixtures" / "yolov5" / "yolov5n_banknotes.pt"
NmsCall = Callable[..., list[torch.Tensor]]


def load_baseline() -> ModuleType:
    """The frozen previous implementation, ``nms_baseline.py`` beside this file."""
    path = Path(__file__).resolve().parent / "nms_baseline.py"
    spec = importlib.util.spec_from_file_location("nms_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


nms_baseline = load_baseline()


def decoded_outputs(images: int, imgsz: int, domain: str, cache: Path) -> torch.Tensor:
    """Decoded head output ``[images, N, 22]`` of the fixture model on synthetic scenes (cached)."""
    path = cache / f"decoded_{domain}_{imgsz}_{images}.npy"
    if path.exists():
        return torch.from_numpy(np.load(path))
    from smartcash_core.checkpoint import load_model
    from smartcash_core.training.synthetic import render_scene
    from smartcash_core.validation.inference import inference_network

    network = inference_network(load_model(FIXTURE_WEIGHTS, "cpu"))
    width, height = (1280, 960) if domain == "shifted" else (640, 480)
    canvases = []
    for index in range(images):
        scene, _ = render_scene(np.random.default_rng([12, index]), width, height, domain)
        resized = np.asarray(scene.resize((imgsz, imgsz * 3 // 4), Image.BILINEAR))
        canvas = np.full((imgsz, imgsz, 3), 114, dtype=np.uint8)  # letterbox: pad top and bottom
        top = (imgsz - resized.shape[0]) // 2
        canvas[top : top + resized.shape[0]] = resized
        canvases.append(canvas)
    batch = torch.from_numpy(np.stack(canvases)).permute(0, 3, 1, 2).float() / 255
    decoded = []
    with torch.inference_mode():
        for start in range(0, images, 8):
            output = network(batch[start : start + 8])
            decoded.append((output[0] if isinstance(output, (tuple, list)) else output).float())
    result = torch.cat(decoded).contiguous()
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, result.numpy())
    return result


def timed(call: NmsCall, decoded: torch.Tensor, conf: float) -> tuple[float, float]:
    """CPU and wall seconds of one call."""
    started_cpu, started_wall = time.process_time(), time.perf_counter()
    call(decoded, conf, 0.6, multi_label=True, max_det=300)
    return time.process_time() - started_cpu, time.perf_counter() - started_wall


def best_of(
    calls: list[NmsCall], decoded: torch.Tensor, conf: float, repeats: int
) -> list[tuple[float, float]]:
    """Best CPU and best wall seconds of each call, run in alternation (ABAB...) so that drifting load
    hits all alike; cheap calls are repeated until each has run for at least a second."""
    once = max(timed(call, decoded, conf)[0] for call in calls)
    rounds = max(repeats, min(200, int(1.0 / max(once, 1e-4))))
    best = [(float("inf"), float("inf"))] * len(calls)
    for _ in range(rounds):
        for index, call in enumerate(calls):
            cpu, wall = timed(call, decoded, conf)
            best[index] = (min(best[index][0], cpu), min(best[index][1], wall))
    return best


def agreement(old: list[torch.Tensor], new: list[torch.Tensor]) -> str:
    if all(torch.equal(a, b) for a, b in zip(old, new, strict=True)):
        return "identical"
    rows = [
        a.shape == b.shape and torch.equal(a[a[:, 4].argsort()].sort(0).values, b.sort(0).values)
        for a, b in zip(old, new, strict=True)
    ]
    return "same rows, tie order differs" if all(rows) else "DIFFERENT ROWS"


def candidates_per_image(decoded: torch.Tensor, conf: float) -> float:
    obj = decoded[..., 4:5]
    return float(((decoded[..., 5:] * obj > conf) & (obj > conf)).sum()) / len(decoded)


def run_case(label: str, decoded: torch.Tensor, conf: float, repeats: int) -> tuple[float, float]:
    old_out = nms_baseline.non_max_suppression(decoded, conf, 0.6, multi_label=True, max_det=300)
    new_out = nms_now.non_max_suppression(decoded, conf, 0.6, multi_label=True, max_det=300)
    (old_cpu, old_wall), (new_cpu, new_wall) = best_of(
        [nms_baseline.non_max_suppression, nms_now.non_max_suppression], decoded, conf, repeats
    )
    images = len(decoded)
    print(
        f"{label:44s} {candidates_per_image(decoded, conf):8.0f} "
        f"{1000 * old_cpu / images:8.2f} {1000 * new_cpu / images:8.2f} {new_cpu / old_cpu:6.3f}   "
        f"{1000 * old_wall / images:8.2f} {1000 * new_wall / images:8.2f}   {agreement(old_out, new_out)}"
    )
    return old_cpu, new_cpu


def cpu_model() -> str:
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    return f"{fields.get('Model name', '?').strip()}, {fields.get('CPU(s)', '?').strip()} CPUs"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/smartcash-nms-bench"))
    args = parser.parse_args()
    threads = torch.get_num_threads()
    print(f"CPU: {cpu_model()}; torch {torch.__version__} ({threads} threads), numpy {np.__version__}")
    backend, images = nms_now.nms_backend(), args.images
    print(f"NMS backend now: {backend}; {images} images per case, best of >= {args.repeats} runs")
    shifted = decoded_outputs(args.images, 640, "shifted", args.cache)
    familiar = decoded_outputs(args.images, 320, "standard", args.cache)
    bf16 = shifted.clone()
    bf16[..., 4:] = bf16[..., 4:].to(torch.bfloat16).float()
    print(
        f"{'case':44s} {'cand/img':>8s} {'old ms':>8s} {'new ms':>8s} {'ratio':>6s}   "
        f"{'old wall':>8s} {'new wall':>8s}   agreement"
    )
    print(f"{'':44s} {'':8s} {'(CPU time per image)':>24s}   {'(ms per image)':>17s}")
    run_case("NMS-bound: unfamiliar scenes, 640, conf 0.001", shifted, 0.001, args.repeats)
    run_case("NMS-bound: unfamiliar scenes, 640, conf 0.01", shifted, 0.01, args.repeats)
    run_case("own domain, 320, conf 0.001", familiar, 0.001, args.repeats)
    run_case("few candidates: unfamiliar, 640, conf 0.25", shifted, 0.25, args.repeats)
    run_case("few candidates: own domain, 320, conf 0.25", familiar, 0.25, args.repeats)
    run_case("bf16-rounded scores (ties): 640, conf 0.001", bf16, 0.001, args.repeats)


if __name__ == "__main__":
    main()
