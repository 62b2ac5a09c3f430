"""Against the real server (``smartcash serve``, uvicorn on loopback): a poisoning pickle leaves the next
YOLOv5 load working, and the health probes answer at once while a big model loads.

The probe bound is generous (p99 < 100 ms; the target on a quiet machine is 20 ms, measured by
``tests/bench/bench_live_during_load.py``): before the fix, ``/v2/health/ready`` waited on the registry
lock for the whole load and ``/live`` stalled while safetensors copied the weights with the GIL held.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch

from smartcash_core.checkpoint.native import save_checkpoint
from smartcash_core.classes import default_class_table
from smartcash_core.model import build_model
from tests.checkpoint.conftest import write_torch_zip
from tests.security.hostile import POISON_PICKLE, rezipped_fixture
from tests.security.live_probe import ProbeStats, probe_live_during
from tests.service.test_e2e import ServerProcess

BIG_MODEL = "yolov5m"  # 21 M parameters, 84 MB: loads in seconds here; the bench uses yolov5x


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, checkpoint_root: Path, data_root: Path
           ) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("server_checkpoints")
    shutil.copyfile(checkpoint_root / "tiny.safetensors", root / "tiny.safetensors")
    write_torch_zip(root / "poison.pt", POISON_PICKLE)
    rezipped_fixture(root / "yolov5n_rezipped.pt")
    torch.manual_seed(0)
    save_checkpoint(root / "big.safetensors", build_model(BIG_MODEL), class_table=default_class_table(),
                    imgsz=640)
    process = ServerProcess(tmp_path_factory.mktemp("server_state"), root, data_root).start()
    yield process
    process.stop()


def test_poisoning_pickle_then_real_yolov5_pt_gives_201(server: ServerProcess) -> None:
    with server.client() as client:
        refused = client.post("/v1/models", json={"name": "poison", "checkpoint": "poison.pt"})
        assert refused.status_code == 422
        error = refused.json()["error"]
        assert error["code"] == "unsafe_checkpoint"
        assert error["message"].startswith("poison.pt: refused BUILD")
        body = {"name": "v5", "checkpoint": "yolov5n_rezipped.pt"}
        loaded = client.post("/v1/models", json=body)
        assert loaded.status_code == 201, loaded.text
        assert loaded.json()["params"] == 1_786_918
        assert client.delete("/v1/models/v5").status_code == 204


def _load_big(client: httpx.Client, name: str) -> int:
    status = client.post("/v1/models", json={"name": name, "checkpoint": "big.safetensors"}).status_code
    client.delete(f"/v1/models/{name}")  # unbound and unused: freed, so the next load is a real one
    return status


@pytest.mark.parametrize("probe", ["/v2/health/live", "/v2/health/ready"])
def test_health_answers_while_a_big_model_loads(server: ServerProcess, probe: str) -> None:
    with server.client() as client:
        status, stats = probe_live_during(server.url, lambda: _load_big(client, f"big_{probe[-4:]}"),
                                          path=probe)
    assert status == 201
    _assert_responsive(stats)


def _assert_responsive(stats: ProbeStats) -> None:
    assert stats.count >= 20, stats.summary()
    assert stats.percentile(99) < 100, stats.summary()
    assert stats.max_ms < 1000, stats.summary()  # before: /ready waited for the whole load
