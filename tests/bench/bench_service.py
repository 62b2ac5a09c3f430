"""Service overhead benchmark (issue 5).

1. A 16-image upload validated through HTTP (``POST /v1/validations/upload?wait=true`` on a real uvicorn
   subprocess) vs the same images through ``run_validation`` in process: ratio of the best of N runs.
2. ``GET /v2/health/live`` latency (p50/p99) sampled while a validation runs.

The server's validation threads run at ``--worker-nice`` (default 0, the niceness of the in-process runs):
the service's default of 10 makes validations yield to other processes on a busy machine, which would show
up here as "overhead" that is really scheduling (on a quiet machine both settings give the same numbers).

Run: ``.venv/bin/python tests/bench/bench_service.py [--repeats 5] [--imgsz 320]``. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

from smartcash_core.checkpoint import load_model
from smartcash_core.checkpoint.native import save_checkpoint
from smartcash_core.classes import default_class_table
from smartcash_core.model.yolo import build_model
from smartcash_core.training.synthetic import generate_dataset
from smartcash_core.validation.params import UploadedSample, ValidationParams
from smartcash_core.validation.runner import run_validation

IMAGES = 16


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def prepare(root: Path, imgsz: int) -> tuple[Path, list[UploadedSample]]:
    """A checkpoint (the packaged demo model when present, else an untrained yolov5n) and 16 samples."""
    from service.demo_model import packaged_demo_checkpoint

    checkpoints = root / "checkpoints"
    checkpoints.mkdir()
    packaged = packaged_demo_checkpoint()
    if packaged is not None:
        (checkpoints / "bench.safetensors").write_bytes(packaged.read_bytes())
    else:
        torch.manual_seed(0)
        save_checkpoint(
            checkpoints / "bench.safetensors",
            build_model("yolov5n").eval(),
            class_table=default_class_table(),
            imgsz=imgsz,
        )
    dataset = root / "data" / "bench"
    generate_dataset(dataset, images=IMAGES, seed=5, width=640, height=480, split="val")
    samples = []
    for image in sorted((dataset / "images" / "val").glob("*.jpg")):
        label = dataset / "labels" / "val" / f"{image.stem}.txt"
        samples.append(UploadedSample(image.name, image.read_bytes(), label.read_text()))
    return checkpoints / "bench.safetensors", samples


def measure_interleaved(
    client: httpx.Client,
    checkpoint: Path,
    samples: list[UploadedSample],
    wire_params: dict[str, Any],
    params: ValidationParams,
    repeats: int,
) -> tuple[list[float], list[float], list[float]]:
    """Alternate HTTP and in-process runs, so load from other processes hits both sides alike.

    Returns request times over HTTP, in-process times, and the server's own ``wall_s`` per job."""
    model = load_model(checkpoint, "cpu")
    run_validation(model, samples, params)  # warm-up both sides: first-call allocations, grid caches
    upload(client, samples, wire_params)
    http, local, server_wall = [], [], []
    for _ in range(repeats):
        started = time.perf_counter()
        response = upload(client, samples, wire_params)
        http.append(time.perf_counter() - started)
        if response.status_code != 200 or response.json()["status"] != "succeeded":
            raise RuntimeError(f"upload job failed: {response.status_code} {response.text[:500]}")
        server_wall.append(response.json()["result"]["wall_s"])
        started = time.perf_counter()
        run_validation(model, samples, params)
        local.append(time.perf_counter() - started)
    return http, local, server_wall


def start_server(root: Path, worker_nice: int) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {
        **os.environ,
        "SMARTCASH_STATE_DIR": str(root / "state"),
        "SMARTCASH_DATA_ROOT": str(root / "data"),
        "SMARTCASH_CHECKPOINT_ROOT": str(root / "checkpoints"),
        "SMARTCASH_PRELOAD": "bench=bench.safetensors",
        "SMARTCASH_LOG_LEVEL": "warning",
        "SMARTCASH_DEVICE": "cpu",
        "SMARTCASH_WORKER_NICE": str(worker_nice),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("server did not become ready")


def upload(client: httpx.Client, samples: list[UploadedSample], params: dict[str, Any]) -> httpx.Response:
    files = []
    for sample in samples:
        files.append(("files", (sample.name, sample.image, "image/jpeg")))
        files.append(
            ("files", (Path(sample.name).stem + ".txt", (sample.labels or "").encode(), "text/plain"))
        )
    return client.post(
        "/v1/validations/upload",
        params={"wait": "true"},
        files=files,
        data={"model": "bench", "params": json.dumps(params)},
    )


def probe_latency(
    url: str, client: httpx.Client, samples: list[UploadedSample], params: dict[str, Any], runs: int
) -> list[float]:
    """Sequential live probes (own connection) for as long as ``runs`` validations keep the worker busy."""
    busy = threading.Event()
    busy.set()

    def validate() -> None:
        for _ in range(runs):
            upload(client, samples, params)
        busy.clear()

    worker = threading.Thread(target=validate)
    worker.start()
    latencies = []
    with httpx.Client(base_url=url, timeout=10) as probe:
        probe.get("/v2/health/live")
        while busy.is_set():
            started = time.perf_counter()
            probe.get("/v2/health/live")
            latencies.append(time.perf_counter() - started)
            time.sleep(0.005)
    worker.join()
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--probe-runs", type=int, default=30, help="validations to keep busy while probing")
    parser.add_argument(
        "--worker-nice",
        type=int,
        default=0,
        help="the server's SMARTCASH_WORKER_NICE (service default 10); 0 by default so the server's "
        "validation threads get the CPU share of the in-process runs they are compared with: on a busy "
        "machine a niced worker is slower by design, which is not overhead",
    )
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    wire_params = {"imgsz": args.imgsz, "batch_size": 16, "workers": 2}
    params = ValidationParams(device="cpu", **wire_params)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkpoint, samples = prepare(root, args.imgsz)
        process, url = start_server(root, args.worker_nice)
        try:
            with httpx.Client(base_url=url, timeout=600) as client:
                http, local, server_wall = measure_interleaved(
                    client, checkpoint, samples, wire_params, params, args.repeats
                )
                latencies = (
                    probe_latency(url, client, samples, wire_params, runs=args.probe_runs)
                    if args.probe_runs
                    else []
                )
        finally:
            process.terminate()
            process.wait(30)
    report: dict[str, Any] = {
        "images": IMAGES,
        "imgsz": args.imgsz,
        "repeats": args.repeats,
        "worker_nice": args.worker_nice,
        "http_s_best": round(min(http), 4),
        "in_process_s_best": round(min(local), 4),
        "ratio_best": round(min(http) / min(local), 3),
        "http_s_median": round(float(np.median(http)), 4),
        "in_process_s_median": round(float(np.median(local)), 4),
        "ratio_median": round(float(np.median(http)) / float(np.median(local)), 3),
        "server_wall_s_median": round(float(np.median(server_wall)), 4),
        "live_probes": len(latencies),
    }
    if latencies:  # --probe-runs 0 skips the probes
        report["live_p50_ms"] = round(float(np.percentile(latencies, 50)) * 1000, 2)
        report["live_p99_ms"] = round(float(np.percentile(latencies, 99)) * 1000, 2)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
