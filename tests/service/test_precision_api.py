"""``params.precision`` through the API: refused with 400 before a job is queued when the model's device
cannot run it; stated in the result (params and model sections) when it runs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from smartcash_core.validation import precision as precision_module
from tests.service.conftest import FAST_PARAMS, load_tiny, upload_files, wait_final

Client = Callable[..., TestClient]


def test_unsupported_precisions_are_400_and_queue_nothing(
    client_for: Client, synthetic_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(precision_module, "cpu_bf16_flags", lambda: ())  # a CPU without native bf16
    client = client_for()
    load_tiny(client)
    for precision, needle in (("fp16", "CUDA only"), ("bf16", "avx512_bf16 or amx_bf16")):
        body = {"model": "tiny", "dataset": synthetic_dataset.name, "params": {"precision": precision}}
        refused = client.post("/v1/validations", json=body)
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert error["code"] == "unsupported_precision" and needle in error["message"]
        data = {"model": "tiny", "params": json.dumps({"precision": precision})}
        upload = client.post("/v1/validations/upload", data=data, files=upload_files(synthetic_dataset, 1))
        assert upload.status_code == 400 and upload.json()["error"]["code"] == "unsupported_precision"
    contradiction = {
        "model": "tiny", "dataset": synthetic_dataset.name, "params": {"half": True, "precision": "bf16"}
    }
    response = client.post("/v1/validations", json=contradiction)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_params"
    bad = {"model": "tiny", "dataset": synthetic_dataset.name, "params": {"precision": "int8"}}
    assert client.post("/v1/validations", json=bad).status_code == 422  # not a choice of the schema
    assert client.get("/v1/validations").json()["total"] == 0


def test_the_result_states_the_precision_it_ran_in(
    client_for: Client, synthetic_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = client_for()
    load_tiny(client)
    body = {"model": "tiny", "dataset": synthetic_dataset.name, "params": {**FAST_PARAMS, "half": True}}
    job = client.post("/v1/validations", json=body).json()
    result = wait_final(client, job["id"])["result"]
    assert result["params"]["precision"] == "fp32" and result["params"]["half"] is True
    assert result["model"]["precision"] == "fp32"
    assert [warning["code"] for warning in result["warnings"]] == ["half_ignored"]
