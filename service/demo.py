"""``smartcash demo``: serve the demo model, validate synthetic data through the HTTP API, keep serving.

Everything goes through the real service (uvicorn on 127.0.0.1) so the demo shows exactly what a
client sees: the model preloaded, a job submitted with ``POST /v1/validations``, progress, the result.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from tqdm import tqdm

from service.logs import configure_logging
from service.main import create_app
from service.settings import Settings
from smartcash_core.errors import SmartCashError

DEMO_DATASET = "demo"
DEMO_IMAGES = 32
DEMO_SEED = 11
_READY_TIMEOUT_S = 300.0
_JOB_TIMEOUT_S = 900.0


class DemoError(SmartCashError):
    """The demo could not complete (the CLI prints it as one line and exits non-zero)."""


def demo_settings(state_dir: Path, port: int) -> Settings:
    """Roots under the demo state dir; the embedded demo model preloaded as ``demo``."""
    return Settings(
        host="127.0.0.1", port=port, data_root=state_dir / "data", checkpoint_root=state_dir / "checkpoints",
        state_dir=state_dir, preload="demo=demo", api_key=None, log_level="warning", log_json=False,
    )


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
    """Submit the demo validation over HTTP and follow it to the end with a progress bar."""
    model = client.get("/v1/models/demo").json()
    body = {"model": "demo", "dataset": DEMO_DATASET, "params": {"imgsz": model["imgsz"]}}
    submitted = client.post("/v1/validations", json=body)
    if submitted.status_code != 202:
        raise DemoError(f"submitting the demo job failed: {submitted.status_code} {submitted.text}")
    location = submitted.headers["location"]
    deadline = time.monotonic() + _JOB_TIMEOUT_S
    with tqdm(total=DEMO_IMAGES, desc="validating", unit="img") as bar:
        while time.monotonic() < deadline:
            job = client.get(location).json()
            bar.update(job["progress"]["done"] - bar.n)
            if job["status"] in {"succeeded", "failed", "cancelled", "interrupted"}:
                return job
            time.sleep(0.2)
    raise DemoError(f"the demo job did not finish in {_JOB_TIMEOUT_S:.0f} s")


def format_result(job: dict[str, Any]) -> str:
    """The mapped per-class AP table and the headline mAP, as plain text."""
    metrics = job["result"]["metrics"]
    lines = [f"{'class':>10} {'instances':>9} {'P':>6} {'R':>6} {'AP50':>6} {'AP50-95':>7}"]
    for row in metrics["per_class"]:
        lines.append(
            f"{row['name']:>10} {row['instances']:>9} {row['precision']:6.3f} {row['recall']:6.3f} "
            f"{row['ap50']:6.3f} {row['ap50_95']:7.3f}"
        )
    lines.append(
        f"mAP@0.5 = {metrics['map50']:.4f}   mAP@0.5:0.95 = {metrics['map50_95']:.4f}  (8 mapped classes)"
    )
    return "\n".join(lines)


def cli_demo(args: argparse.Namespace) -> int:
    """Start the service with the demo model, validate the demo set over HTTP, print it, keep serving."""
    state_dir = Path(args.state_dir).resolve()
    settings = demo_settings(state_dir, args.port)
    configure_logging(settings.log_level, settings.log_json)
    settings.checkpoint_root.mkdir(parents=True, exist_ok=True)
    print(f"writing the synthetic demo dataset under {settings.data_root} ...")
    ensure_demo_dataset(settings.data_root)
    server, thread = start_server(settings)
    base_url = f"http://{settings.host}:{settings.port}"
    try:
        with httpx.Client(base_url=base_url, timeout=60.0) as client:
            print(f"starting the service on {base_url} and loading the demo model ...")
            wait_ready(client, thread)
            job = run_demo_job(client)
        if job["status"] != "succeeded":
            raise DemoError(f"the demo job ended {job['status']}: {job['error']}")
        print(format_result(job))
        if args.no_serve:
            return 0
        print(f"\nSwagger UI: {base_url}/docs   (Ctrl-C to stop)")
        while thread.is_alive():
            thread.join(0.5)
        return 0
    finally:
        server.should_exit = True
        thread.join(15)
