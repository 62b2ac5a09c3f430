"""The first contact, end to end against a real ``smartcash demo`` (issue 13): the README's tour block equals
``docs/tour.sh``, which runs verbatim against the demo; every request example of the API schema works
against it; the demo prints the CLI's tables, the image size and next steps, writes no repeated progress
lines into a pipe, and stops quietly with status 0 on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
TOUR = ROOT / "docs" / "tour.sh"
TOUR_MARKER = "# tour: the README shows the lines from here to the end, verbatim"
README_MARKER = "<!-- tour: docs/tour.sh -->"
SERVING = "Swagger UI:"  # the last line the demo prints before it only serves
FINE_NAMES = [f"{value}_{kind}" for kind in ("whole", "nominal_feature")
              for value in (1000, 2000, 5000, 10000, 20000, 50000, 100000)]
FINE_NAMES += ["security_thread", "watermark", "special_sign"]


@dataclass
class Demo:
    process: subprocess.Popen[bytes]
    url: str
    state: Path
    stdout: Path
    stderr: Path

    def output(self) -> tuple[str, str]:
        return self.stdout.read_text(), self.stderr.read_text()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """``smartcash demo`` as ``make demo`` runs it, with its output going to files (not a terminal)."""
    base = tmp_path_factory.mktemp("demo")
    port = _free_port()
    command = [sys.executable, "-m", "service.cli", "demo", "--port", str(port)]
    command += ["--state-dir", str(base / "state")]
    with (base / "out.txt").open("wb") as out, (base / "err.txt").open("wb") as err:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=err)
    running = Demo(process, f"http://127.0.0.1:{port}", base / "state", base / "out.txt", base / "err.txt")
    deadline = time.monotonic() + 600
    while SERVING not in running.stdout.read_text() and process.poll() is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if SERVING not in running.stdout.read_text():
        process.kill()
        raise AssertionError(f"the demo did not come up: {running.output()}")
    yield running
    if process.poll() is None:
        process.kill()
        process.wait(10)


def tour_lines(text: str, marker: str) -> list[str]:
    return [line.rstrip() for line in text.split(marker, 1)[1].splitlines()]


def test_the_readme_tour_block_is_the_script() -> None:
    script = [line for line in tour_lines(TOUR.read_text(), TOUR_MARKER) if line]
    readme = tour_lines((ROOT / "README.md").read_text(), README_MARKER)
    assert readme[1] == "```sh"
    block = [line for line in readme[2 : readme.index("```", 2)] if line]
    assert block == script


def test_the_demo_prints_the_cli_tables_the_image_size_and_next_steps(demo: Demo) -> None:
    out, err = demo.output()
    assert "at imgsz 256 (the checkpoint's)" in out
    header = "Class     Images  Instances          P          R      mAP50   mAP50-95"
    assert out.count(header) == 2  # the mapped and the fine table, as `smartcash validate` prints them
    rows = {line.split()[0] for line in out.splitlines() if line.strip()}
    assert {"all", "1000", "100000", "feature", *FINE_NAMES} <= rows
    assert "loaded as 'demo'" in out and f"curl -fsS -X POST {demo.url}/v1/validations" in out
    assert f"{demo.url}/docs" in out and "bash docs/tour.sh" in out
    assert "%|" not in out + err and "0%" not in out + err  # no progress bar redrawn line by line in a pipe
    assert "Traceback" not in err


def test_the_tour_runs_verbatim_against_the_demo(demo: Demo, tmp_path: Path) -> None:
    env = {**os.environ, "S": demo.url, "DEMO_STATE": str(demo.state)}
    command = ["bash", str(TOUR)]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    assert "succeeded imgsz 256 mAP50" in done.stdout and "'images': 32" in done.stdout
    assert (tmp_path / "pr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    checkpoints = json.loads(done.stdout.splitlines()[2])["items"]
    listed = [(item["path"], item["loaded_as"]) for item in checkpoints]
    assert listed == [("demo_yolov5n.safetensors", ["demo"])]
    assert len(checkpoints[0]["sha256"]) == 64


def _request_examples(schema: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(method, path, example body) of every JSON request body the schema shows an example for."""
    found = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            body = content.get("application/json", {}).get("schema", {})
            if "$ref" in body:
                component = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
                found += [(method, path, example) for example in component.get("examples", [])]
    return found


def test_every_request_example_of_the_schema_works_against_the_demo(demo: Demo) -> None:
    with httpx.Client(base_url=demo.url, timeout=120) as client:
        schema = client.get("/openapi.json").json()
        examples = _request_examples(schema)
        assert {path for _, path, _ in examples} >= {"/v1/models", "/v1/validations"}
        jobs: list[str] = []
        for method, path, body in sorted(examples, key=lambda example: example[1] == "/v1/comparisons"):
            if path == "/v1/comparisons":  # the example's ids stand for two finished jobs: the ones above
                pair = {"baseline": _finished(client, jobs[0]), "candidate": _finished(client, jobs[1])}
                body = {**body, **pair}
            response = client.request(method.upper(), path, json=body)
            assert response.status_code < 300, (path, body, response.text)
            if path == "/v1/validations":
                jobs.append(response.json()["id"])
        assert len(jobs) >= 2
        form = schema["paths"]["/v1/validations/upload"]["post"]["requestBody"]["content"]
        fields = form["multipart/form-data"]["schema"]["properties"]
        images = sorted((demo.state / "data" / "demo" / "images" / "val").glob("*.jpg"))[:2]
        files = [("files", (image.name, image.read_bytes(), "image/jpeg")) for image in images]
        data = {name: fields[name]["example"] for name in ("model", "params")}
        upload = client.post("/v1/validations/upload", data=data, files=files)
        assert upload.status_code == 202, upload.text


def _finished(client: httpx.Client, job_id: str) -> str:
    deadline = time.monotonic() + 120
    while client.get(f"/v1/validations/{job_id}").json()["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, f"job {job_id} did not finish"
        time.sleep(0.2)
    return job_id


def test_ctrl_c_stops_the_demo_quietly_with_status_zero(demo: Demo) -> None:
    demo.process.send_signal(signal.SIGINT)
    assert demo.process.wait(60) == 0
    out, err = demo.output()
    assert out.rstrip().endswith("stopped") and "Traceback" not in err and "KeyboardInterrupt" not in err
