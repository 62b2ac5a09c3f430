"""``GET /v1/checkpoints``: what ``POST /v1/models`` can load, with what is loaded from it (issue 13)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from service.registry import file_sha256


def test_the_listing_names_loadable_files_and_what_is_loaded_from_them(
    client_for: Callable[..., TestClient], checkpoint_root: Path, tmp_path: Path
) -> None:
    root, outside = tmp_path / "checkpoints", tmp_path / "outside"
    (root / "run7").mkdir(parents=True)
    outside.mkdir()
    shutil.copy(checkpoint_root / "tiny.safetensors", root / "run7" / "best.safetensors")
    shutil.copy(checkpoint_root / "tiny.safetensors", root / "last.pt")
    shutil.copy(checkpoint_root / "tiny.safetensors", outside / "secret.safetensors")
    (root / "notes.txt").write_text("not a checkpoint")
    (root / ".hidden.safetensors").write_bytes(b"x")
    (root / "escape.safetensors").symlink_to(outside / "secret.safetensors")  # refused by POST /v1/models
    client = client_for(checkpoint_root=root)
    before = client.get("/v1/checkpoints").json()
    assert [item["path"] for item in before["items"]] == ["last.pt", "run7/best.safetensors"]
    assert all(item["sha256"] is None and item["loaded_as"] == [] for item in before["items"])
    assert before["truncated"] is False
    for name in ("best", "again"):
        body = {"name": name, "checkpoint": "run7/best.safetensors"}
        assert client.post("/v1/models", json=body).status_code == 201
    after = {item["path"]: item for item in client.get("/v1/checkpoints").json()["items"]}
    best = after["run7/best.safetensors"]
    assert best["loaded_as"] == ["again", "best"]
    assert best["sha256"] == file_sha256(root / "run7" / "best.safetensors")
    assert best["size"] == (root / "run7" / "best.safetensors").stat().st_size
    assert after["last.pt"]["loaded_as"] == []


def test_an_api_key_guards_the_listing(client_for: Callable[..., TestClient]) -> None:
    client = client_for(api_key="k")
    assert client.get("/v1/checkpoints").status_code == 401
    assert client.get("/v1/checkpoints", headers={"X-API-Key": "k"}).status_code == 200
