"""``GET /v1/validations/{id}/images``: pages of per-image rows, worst first, filtered by denomination."""

from __future__ import annotations

import typing
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.schemas import JobStatusName
from service.store import JobStatus
from tests.service.conftest import FAST_PARAMS, load_tiny, wait_final

Client = Callable[..., TestClient]


@pytest.fixture()
def finished_job(client_for: Client, synthetic_dataset: Path) -> tuple[TestClient, str]:
    client = client_for()
    load_tiny(client)
    body = {"model": "tiny", "dataset": synthetic_dataset.name, "params": FAST_PARAMS}
    job_id = client.post("/v1/validations", json=body).json()["id"]
    final = wait_final(client, job_id)
    assert final["status"] == "succeeded" and final["replica"]
    return client, job_id


def test_pages_sorted_by_errors_match_sorting_every_row(finished_job: tuple[TestClient, str]) -> None:
    client, job_id = finished_job
    url = f"/v1/validations/{job_id}/images"
    everything = client.get(url, params={"limit": 1000}).json()["items"]
    assert len(everything) == 24 and [row["order"] for row in everything] == sorted(
        r["order"] for r in everything
    )
    for key in ("fp", "fn"):
        expected = sorted(everything, key=lambda row: -row[key])  # stable: ties keep processing order
        pages = [
            client.get(url, params={"sort": key, "limit": 5, "offset": o}).json() for o in range(0, 24, 5)
        ]
        assert [row for page in pages for row in page["items"]] == expected
        assert {page["total"] for page in pages} == {24} and {page["sort"] for page in pages} == {key}
    errors = client.get(url, params={"sort": "errors", "limit": 1}).json()["items"][0]
    assert errors["fp"] + errors["fn"] == max(row["fp"] + row["fn"] for row in everything)


def test_denomination_filters_agree_with_the_rows(finished_job: tuple[TestClient, str]) -> None:
    client, job_id = finished_job
    url = f"/v1/validations/{job_id}/images"
    everything = client.get(url, params={"limit": 1000}).json()["items"]
    denominations = {row["true_denomination"] for row in everything} - {None}
    assert denominations  # the synthetic set has whole banknotes
    for value in denominations:
        page = client.get(url, params={"true_denomination": value, "limit": 1000}).json()
        assert page["items"] == [row for row in everything if row["true_denomination"] == value]
    wrong = client.get(url, params={"misclassified": True, "limit": 1000}).json()
    assert wrong["items"] == [r for r in everything if r["true_denomination"] != r["predicted_denomination"]]
    assert wrong["total"] + client.get(url, params={"misclassified": False}).json()["total"] == 24


@pytest.mark.parametrize(
    "params",
    [{"sort": "worst"}, {"true_denomination": -1}, {"limit": 0}, {"offset": -1}, {"misclassified": "maybe"}],
)
def test_bad_page_parameters_are_422(finished_job: tuple[TestClient, str], params: dict[str, object]) -> None:
    client, job_id = finished_job
    response = client.get(f"/v1/validations/{job_id}/images", params=params)
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"


def test_the_wire_statuses_are_the_store_statuses() -> None:
    assert set(typing.get_args(JobStatusName)) == {status.value for status in JobStatus}
