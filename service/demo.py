"""``smartcash demo``: serve the demo model, validate synthetic data through the HTTP API, keep serving.

Everything goes through the real service (uvicorn on 127.0.0.1) so the demo shows exactly what a
client sees: the model preloaded, a job submitted with ``POST /v1/validations``, progress, the result
(the same tables as ``smartcash validate``), then the next steps. The state dir holds what the README's
tour (``docs/tour.sh``) uses: the checkpoint under ``checkpoints/``, the data set under ``data/demo``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from tqdm import tqdm

from service.demo_model import DEMO_ASSET, ensure_demo_checkpoint
from service.logs import configure_logging
from service.main import create_app, freeze_startup_objects
from service.settings import Settings
from smartcash_core.errors import SmartCashError
from smartcash_core.validation.report import format_table

DEMO_DATASET = "demo"
DEMO_MODEL = "demo"
DEMO_REQUEST = {"model": DEMO_MODEL, "dataset": DEMO_DATASET}
DEMO_IMAGES = 32
DEMO_SEED = 11
_READY_TIMEOUT_S = 300.0
_JOB_TIMEOUT_S = 900.0


class DemoError(SmartCashError):
    """The demo could not complete (the CLI prints it as one line and exits non-zero)."""


def demo_settings(state_dir: Path, port: int) -> Settings:
    """Roots under the demo state dir; the demo checkpoint (copied into the checkpoint root, so
    ``GET /v1/checkpoints`` lists it and ``POST /v1/models`` can load it again) preloaded as ``demo``."""
    return Settings(
        host="127.0.0.1", port=port, data_root=state_dir / "data", checkpoint_root=state_dir / "checkpoints",
        state_dir=state_dir, preload=f"{DEMO_MODEL}={DEMO_ASSET}", api_key=None, log_level="warning",
        log_json=False,
    )


def ensure_demo_checkpoint_file(settings: Settings) -> Path:
    """The demo checkpoint (trained, or the untrained stand-in) as ``<checkpoint root>/demo_yolov5n...``."""
    source = ensure_demo_checkpoint(settings.state_dir)
    target = settings.checkpoint_root / DEMO_ASSET
    if not target.is_file() or target.stat().st_size != source.stat().st_size:
        settings.checkpoint_root.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        shutil.copyfile(source, partial)
        partial.replace(target)  # whole or absent, never half a file
    return target


def ensure_demo_dataset(data_root: Path) -> Path:
    """A synthetic YOLO dataset at ``<data_root>/demo`` (written once, reused afterwards)."""
    from smartcash_core.training.synthetic import generate_dataset

    root = data_root / DEMO_DATASET
    if not (root / "data.yaml").is_file():
        generate_dataset(root, images=DEMO_IMAGES, seed=DEMO_SEED, width=320, height=240, split="val")
    return root


def start_server(settings: Settings) -> tuple[uvicorn.Server, threading.Thread]:
    """uvicorn in a background thread, so this thread can act as the HTTP client."""
    config = uvicorn.Config(
        create_app(settings), host=settings.host, port=settings.port, log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    freeze_startup_objects()  # no full garbage collection stalls the event loop (see the function)
    thread = threading.Thread(target=server.run, name="smartcash-demo-server", daemon=True)
    thread.start()
    return server, thread


def wait_ready(client: httpx.Client, thread: threading.Thread, timeout: float = _READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise DemoError("the server stopped during start-up (is the port already in use? try --port)")
        try:
            if client.get("/v2/health/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.2)
    raise DemoError(f"the demo model was not ready after {timeout:.0f} s")


def run_demo_job(client: httpx.Client) -> dict[str, Any]:
    """Submit the demo validation over HTTP (image size: the checkpoint's) and follow it to the end.

    A progress bar on a terminal; otherwise (a log, a pipe) one line, not a line per refresh."""
    submitted = client.post("/v1/validations", json=DEMO_REQUEST)
    if submitted.status_code != 202:
        raise DemoError(f"submitting the demo job failed: {submitted.status_code} {submitted.text}")
    location = submitted.headers["location"]
    deadline = time.monotonic() + _JOB_TIMEOUT_S
    print(f"validating the {DEMO_IMAGES} demo images: POST /v1/validations, then GET {location}", flush=True)
    with tqdm(total=DEMO_IMAGES, desc="validating", unit="img", disable=not sys.stderr.isatty()) as bar:
        while time.monotonic() < deadline:
            job = client.get(location).json()
            bar.update(job["progress"]["done"] - bar.n)
            if job["status"] in {"succeeded", "failed", "cancelled", "interrupted"}:
                return job
            time.sleep(0.2)
    raise DemoError(f"the demo job did not finish in {_JOB_TIMEOUT_S:.0f} s")


def format_result(job: dict[str, Any]) -> str:
    """What ``smartcash validate`` prints: the mapped and the fine tables (Class, Images, Instances, P, R,
    mAP50, mAP50-95, an ``all`` row first), under a line naming the image size used."""
    result = job["result"]
    metrics, dataset, params = result["metrics"], result["dataset"], result["params"]
    images, instances = dataset["images"], dataset["instances"]
    lines = [
        f"Model {job['model']!r} on {images} images of dataset {job['source']!r} at imgsz {params['imgsz']} "
        f"(the checkpoint's), {result['wall_s']:.1f} s",
        f"Mapped classes ({metrics['protocol']} protocol)",
        format_table(metrics, images, instances),
        "Fine classes",
        format_table(metrics["fine"], images, instances),
    ]
    lines += [f"Warning ({warning['code']}): {warning['message']}" for warning in result["warnings"]]
    lines.append(
        f"mAP@0.5 = {metrics['map50']:.4f}   mAP@0.5:0.95 = {metrics['map50_95']:.4f}  (8 mapped classes)"
    )
    return "\n".join(lines)


def next_steps(base_url: str, checkpoint: Path) -> str:
    """Where to go from here: the model's name, one validation by curl, the client, the docs, the tour."""
    body = json.dumps(DEMO_REQUEST)
    lines = [
        "",
        f"Next steps (the model is loaded as {DEMO_MODEL!r} from {checkpoint.name}; the data set is "
        f"{DEMO_DATASET!r} under {checkpoint.parent.parent / 'data'}):",
        f"  curl -fsS -X POST {base_url}/v1/validations -H 'content-type: application/json' -d '{body}'",
    ]
    if importlib.util.find_spec("smartcash_client") is not None:
        call = f'Client("{base_url}").validate(model="{DEMO_MODEL}", dataset="{DEMO_DATASET}").map50'
        lines.append(f"  python3 -c 'from smartcash_client import Client; print({call})'")
    lines += [
        "  bash docs/tour.sh        # every endpoint, as the README shows it",
        f"  Swagger UI: {base_url}/docs   ReDoc: {base_url}/redoc   (Ctrl-C stops the service)",
    ]
    return "\n".join(lines)


def cli_demo(args: argparse.Namespace) -> int:
    """Start the service with the demo model, validate the demo set over HTTP, print it, keep serving.

    Ctrl-C (at any point) stops the service quietly with exit status 0."""
    state_dir = Path(args.state_dir).resolve()
    settings = demo_settings(state_dir, args.port)
    configure_logging(settings.log_level, settings.log_json)
    print(f"writing the synthetic demo dataset under {settings.data_root} ...", flush=True)
    ensure_demo_dataset(settings.data_root)
    checkpoint = ensure_demo_checkpoint_file(settings)
    server, thread = start_server(settings)
    base_url = f"http://{settings.host}:{settings.port}"
    try:
        _demo_session(base_url, thread, checkpoint, serve=not args.no_serve)
    except KeyboardInterrupt:
        print("\nstopped", flush=True)
    finally:
        server.should_exit = True
        thread.join(60)  # the app's shutdown stops a running pass at its next batch (jobs.STOP_TIMEOUT_S)
    return 0


def _demo_session(base_url: str, thread: threading.Thread, checkpoint: Path, serve: bool) -> None:
    with httpx.Client(base_url=base_url, timeout=60.0) as client:
        print(f"starting the service on {base_url} and loading the demo model ...", flush=True)
        wait_ready(client, thread)
        job = run_demo_job(client)
    if job["status"] != "succeeded":
        raise DemoError(f"the demo job ended {job['status']}: {job['error']}")
    print(format_result(job))
    if not serve:
        return
    print(next_steps(base_url, checkpoint), flush=True)
    while thread.is_alive():
        thread.join(0.5)
