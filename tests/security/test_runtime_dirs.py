"""Issue 11 item 13: the real server, run with ``HOME`` and ``TMPDIR`` set to empty directories, leaves both
empty after loading models (native and YOLOv5 ``.pt``) and a validation whose plots were drawn: matplotlib's
font cache and torch's inductor cache dir go under the state dir."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.security.hostile import FIXTURE_PT
from tests.service.conftest import FAST_PARAMS, wait_final
from tests.service.servers import ServerProcess

# Variables that would point the libraries elsewhere than $HOME: the test must see the defaults.
_UNSET = ("MPLCONFIGDIR", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME")


def test_the_server_writes_nothing_under_home_or_the_temp_dir(
    tmp_path: Path, checkpoint_root: Path, data_root: Path, synthetic_dataset: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home, temp, checkpoints = tmp_path / "home", tmp_path / "tmp", tmp_path / "checkpoints"
    for directory in (home, temp, checkpoints):
        directory.mkdir()
    shutil.copyfile(checkpoint_root / "tiny.safetensors", checkpoints / "tiny.safetensors")
    shutil.copyfile(FIXTURE_PT, checkpoints / "yolov5n.pt")
    for variable in _UNSET:
        monkeypatch.delenv(variable, raising=False)
    server = ServerProcess(tmp_path / "state", checkpoints, data_root, HOME=str(home), TMPDIR=str(temp))
    server.start()
    try:
        with server.client() as client:
            loaded = client.post("/v1/models", json={"name": "v5", "checkpoint": "yolov5n.pt"})
            assert loaded.status_code == 201, loaded.text
            body = {"model": "tiny", "dataset": synthetic_dataset.name, "params": FAST_PARAMS}
            job = wait_final(client, client.post("/v1/validations", json=body).json()["id"])
            assert job["status"] == "succeeded"
            plot = client.get(f"/v1/validations/{job['id']}/plots/confusion_matrix.png")
            assert plot.status_code == 200 and plot.content.startswith(b"\x89PNG")
    finally:
        server.stop()
    left = sorted(str(path.relative_to(tmp_path)) for path in [*home.rglob("*"), *temp.rglob("*")])
    assert left == [], left  # before: home/.cache/matplotlib/fontlist-*.json, home/.config/matplotlib
    assert (tmp_path / "state" / "cache" / "matplotlib").is_dir()
