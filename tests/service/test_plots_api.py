"""``GET /v1/validations/{id}/plots`` and ``.../plots/{name}``: listing, PNGs, and every 404 path."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from smartcash_core.validation.plots import PLOT_DATA_FILE, PLOT_NAMES
from tests.service.conftest import FAST_PARAMS, GatedRunner, load_tiny, wait_final

pytest.importorskip("matplotlib")

Client = Callable[..., TestClient]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _finished_job(client: TestClient, dataset: str) -> str:
    load_tiny(client)
    body = {"model": "tiny", "dataset": dataset, "params": FAST_PARAMS}
    job_id = client.post("/v1/validations", json=body).json()["id"]
    final = wait_final(client, job_id)
    assert final["status"] == "succeeded", final["error"]
    return job_id


def test_plots_of_a_finished_job_are_listed_and_served_as_png(
    client_for: Client, synthetic_dataset: Path, tmp_path: Path
) -> None:
    client = client_for()
    job_id = _finished_job(client, synthetic_dataset.name)
    plots_dir = tmp_path / "state" / "plots" / job_id
    assert not plots_dir.exists()  # the plot data went to the store with the result, nothing to disk
    listing = client.get(f"/v1/validations/{job_id}/plots")
    assert listing.status_code == 200
    assert (plots_dir / PLOT_DATA_FILE).is_file()  # cached from the store on first use
    assert not list(plots_dir.glob("*.png"))  # nothing rendered until someone asks
    items = listing.json()["items"]
    assert [item["name"] for item in items] == list(PLOT_NAMES)
    for item in items:
        response = client.get(item["url"])
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        assert response.content[:8] == PNG_SIGNATURE and len(response.content) > 10_000, item["name"]
    assert sorted(p.name for p in plots_dir.glob("*.png")) == sorted(PLOT_NAMES)
    again = client.get(f"/v1/validations/{job_id}/plots/pr_curve.png")  # served from the rendered file
    assert again.content == (plots_dir / "pr_curve.png").read_bytes()


def test_unknown_names_and_traversal_attempts_are_404(client_for: Client, synthetic_dataset: Path) -> None:
    client = client_for()
    job_id = _finished_job(client, synthetic_dataset.name)
    for name in ("nope.png", "plot_data.npz", "..%2Fjobs.sqlite3", "%2E%2E", "PR_CURVE.PNG"):
        response = client.get(f"/v1/validations/{job_id}/plots/{name}")
        assert response.status_code == 404, name
        assert response.headers["content-type"].startswith("application/json")
    body = client.get(f"/v1/validations/{job_id}/plots/nope.png").json()
    assert "pr_curve.png" in body["error"]["fix"]


def test_unknown_job_and_running_job_have_no_plots(
    client_for: Client, gated: GatedRunner, synthetic_dataset: Path
) -> None:
    client = client_for(runner=gated)
    missing = client.get(f"/v1/validations/{'0' * 32}/plots")
    assert missing.status_code == 404
    load_tiny(client)
    body = {"model": "tiny", "dataset": synthetic_dataset.name, "params": FAST_PARAMS}
    job_id = client.post("/v1/validations", json=body).json()["id"]
    assert gated.started.wait(30)
    running = client.get(f"/v1/validations/{job_id}/plots")
    assert running.status_code == 404 and "running" in running.json()["error"]["message"]
    assert client.get(f"/v1/validations/{job_id}/plots/pr_curve.png").status_code == 404
    gated.gate.set()
    assert wait_final(client, job_id)["status"] == "succeeded"
    assert client.get(f"/v1/validations/{job_id}/plots").status_code == 200


def test_failed_job_has_no_plots(client_for: Client, data_root: Path) -> None:
    client = client_for()
    load_tiny(client)
    empty = data_root / "empty_for_plots"
    (empty / "images" / "val").mkdir(parents=True, exist_ok=True)
    (empty / "images" / "val" / "a.jpg").write_bytes(b"not a jpeg")  # passes submit, fails the job
    try:
        body = {"model": "tiny", "dataset": empty.name, "params": FAST_PARAMS}
        job_id = client.post("/v1/validations", json=body).json()["id"]
        assert wait_final(client, job_id)["status"] == "failed"
    finally:
        shutil.rmtree(empty)  # the data root is shared by the session's tests
    response = client.get(f"/v1/validations/{job_id}/plots")
    error = response.json()["error"]
    assert response.status_code == 404 and "failed: dataset_empty" in error["message"]
    assert "matplotlib" not in error["fix"] and "plots extra" not in error["fix"]
