"""Hostile checkpoints through ``POST /v1/models``: each is a 4xx JSON error naming the problem with paths
relative to the checkpoint root, and the service keeps serving. Plus the registry's locking: no lock is
held while a model loads, and concurrent loads of one name resolve to one model or a 409."""

from __future__ import annotations

import shutil
import threading
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient

from service.errors import Conflict
from service.registry import ModelRegistry
from smartcash_core.cache import clear_all_caches
from smartcash_core.checkpoint import LoadedModel, load_model
from smartcash_core.checkpoint.native import save_checkpoint
from smartcash_core.classes import default_class_table
from smartcash_core.errors import CheckpointError
from smartcash_core.model import build_model
from tests.checkpoint.conftest import write_torch_zip
from tests.checkpoint.test_metadata_bounds import rewrite_metadata, set_field
from tests.security.hostile import POISON_PICKLE, deflate_zeros, raw_zip, rezipped_fixture, stored

Client = Callable[..., TestClient]
Gated = tuple[ModelRegistry, "GatedLoader"]


@pytest.fixture(scope="module")
def hostile_root(checkpoint_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile_checkpoints")
    tiny = root / "tiny.safetensors"
    shutil.copyfile(checkpoint_root / "tiny.safetensors", tiny)
    (root / "sub").mkdir()
    rewrite_metadata(tiny, root / "sub" / "imgsz_abc.safetensors", set_field("imgsz", "abc"))
    rewrite_metadata(tiny, root / "imgsz_negative.safetensors", set_field("imgsz", -5))
    rewrite_metadata(tiny, root / "width_1000.safetensors", set_field("yaml.width_multiple", 1000))
    wide = rewrite_metadata(tiny, root / "wide.safetensors", set_field("yaml.width_multiple", 2.0))
    rewrite_metadata(wide, root / "wide_deep.safetensors", set_field("yaml.depth_multiple", 2.0))
    write_torch_zip(root / "poison.pt", POISON_PICKLE)
    raw_zip(root / "bomb.pt", [("archive/data.pkl", deflate_zeros(300), zipfile.ZIP_DEFLATED, 300 << 20, 0),
                               stored("archive/byteorder", b"little")])
    rezipped_fixture(root / "yolov5n_rezipped.pt")
    return root


@pytest.fixture()
def client(client_for: Client, hostile_root: Path) -> TestClient:
    return client_for(checkpoint_root=hostile_root)


@pytest.mark.parametrize(
    ("checkpoint", "code", "message", "field"),
    [
        ("sub/imgsz_abc.safetensors", "bad_checkpoint_metadata", "sub/imgsz_abc.safetensors: imgsz = 'abc'",
         "imgsz"),
        ("imgsz_negative.safetensors", "bad_checkpoint_metadata", "imgsz = -5: must be an integer from 32",
         "imgsz"),
        ("width_1000.safetensors", "bad_checkpoint_metadata", "yaml.width_multiple = 1000",
         "yaml.width_multiple"),
        ("wide_deep.safetensors", "checkpoint_too_large", "M parameters, over the cap of 200 M", None),
        ("poison.pt", "unsafe_checkpoint", "poison.pt: refused BUILD on a StorageType", None),
        ("bomb.pt", "checkpoint_too_large", "bomb.pt: data.pkl declares 314572800 bytes", None),
    ],
)
def test_hostile_checkpoint_is_a_clean_422(
    client: TestClient, hostile_root: Path, checkpoint: str, code: str, message: str, field: str | None
) -> None:
    response = client.post("/v1/models", json={"name": "x", "checkpoint": checkpoint})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code and message in error["message"] and error["fix"]
    assert error.get("field") == field
    assert str(hostile_root) not in response.text and "/tmp" not in error["message"]
    assert client.get("/v2/health/live").status_code == 200


def test_poison_then_a_real_yolov5_pt_loads(client: TestClient) -> None:
    poisoned = client.post("/v1/models", json={"name": "p", "checkpoint": "poison.pt"})
    assert poisoned.status_code == 422
    loaded = client.post("/v1/models", json={"name": "v5", "checkpoint": "yolov5n_rezipped.pt"})
    assert loaded.status_code == 201, loaded.text
    assert loaded.json()["params"] == 1_786_918 and loaded.json()["num_classes"] == 17
    tiny = client.post("/v1/models", json={"name": "tiny", "checkpoint": "tiny.safetensors"})
    assert tiny.status_code == 201


# ------------------------------------------------------------------------------------------------
# Registry locking, with the real loader held at a gate
# ------------------------------------------------------------------------------------------------
class GatedLoader:
    """The real ``load_model``, held until ``gate`` opens; counts calls."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.calls = 0

    def __call__(self, path: Path, device: str) -> LoadedModel:
        self.calls += 1
        self.entered.set()
        if not self.gate.wait(60):
            raise AssertionError("gate never opened")
        return load_model(path, device)


@pytest.fixture()
def gated_registry(checkpoint_root: Path) -> Iterator[Gated]:
    clear_all_caches(reset_stats=True)  # a model another test loaded would be reused without loading
    loader = GatedLoader()
    yield ModelRegistry(checkpoint_root, "cpu", loader), loader
    loader.gate.set()


def _finishes(call: Callable[[], Any], timeout: float = 5.0) -> Any:
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result(timeout)


def test_registry_answers_while_a_load_is_in_flight(gated_registry: Gated) -> None:
    registry, loader = gated_registry
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(registry.load, "tiny", "tiny.safetensors")
        assert loader.entered.wait(30)
        # Before: these took the lock the load held, so /v2/health/ready and submits waited for the load.
        assert _finishes(lambda: len(registry)) == 0
        assert _finishes(registry.entries) == []
        with pytest.raises(Exception, match="no model named 'tiny'"):
            _finishes(lambda: registry.get("tiny"))
        loader.gate.set()
        assert pending.result(60).name == "tiny"
    assert len(registry) == 1


def test_concurrent_loads_of_one_name_share_one_load(gated_registry: Gated) -> None:
    registry, loader = gated_registry
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(registry.load, "tiny", "tiny.safetensors")
        assert loader.entered.wait(30)
        second = pool.submit(registry.load, "tiny", "nested/same.safetensors")  # same bytes
        loader.gate.set()
        assert first.result(60) is second.result(60)
    assert loader.calls == 1


def test_concurrent_load_of_one_name_with_other_bytes_gets_409(
    gated_registry: Gated, checkpoint_root: Path, tmp_path: Path
) -> None:
    registry, loader = gated_registry
    other = checkpoint_root / f"other_{tmp_path.name}.safetensors"
    torch.manual_seed(3)
    save_checkpoint(other, build_model("yolov5n", 17).eval(), class_table=default_class_table(), imgsz=64)
    try:
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(registry.load, "m", "tiny.safetensors")
            assert loader.entered.wait(30)
            second = pool.submit(registry.load, "m", other.name)
            loader.gate.set()
            assert first.result(60).checkpoint == "tiny.safetensors"
            with pytest.raises(Conflict, match=r"already bound to 'tiny\.safetensors'"):
                second.result(60)
    finally:
        other.unlink()
    assert loader.calls == 1


def test_a_failed_load_frees_the_name(gated_registry: Gated) -> None:
    registry, loader = gated_registry
    loader.gate.set()
    with pytest.raises(CheckpointError, match=r"^broken\.safetensors: not a checkpoint"):
        registry.load("b", "broken.safetensors")
    assert registry.load("b", "tiny.safetensors").checkpoint == "tiny.safetensors"
