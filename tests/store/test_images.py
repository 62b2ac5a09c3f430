"""Per-image rows in SQL (both backends): pages sorted by the worst images and filtered by denomination."""

from __future__ import annotations

from typing import Any

import pytest

from service.store import ImageQuery, JobStore
from tests.store.conftest import new_job


def _row(order: int, fp: int, fn: int, true: int | None, predicted: int | None) -> dict[str, Any]:
    return {
        "index": 10 - order,
        "order": order,
        "file": f"img{order}.jpg",
        "instances": fn + 1,
        "predictions": fp + 1,
        "tp": 1,
        "fp": fp,
        "fn": fn,
        "true_denomination": true,
        "predicted_denomination": predicted,
    }


ROWS = [
    _row(0, fp=0, fn=0, true=1, predicted=1),
    _row(1, fp=3, fn=0, true=2, predicted=5),
    _row(2, fp=1, fn=4, true=2, predicted=2),
    _row(3, fp=3, fn=1, true=None, predicted=6),
    _row(4, fp=0, fn=2, true=4, predicted=None),
    _row(5, fp=2, fn=2, true=None, predicted=None),
]


@pytest.fixture()
def finished(store: JobStore) -> JobStore:
    store.create(new_job("job"), max_queued=10)
    store.claim("r1", ["sha-a"])
    assert store.finish("job", "r1", "succeeded", result={"metrics": {}, "per_image": ROWS})
    return store


def _files(store: JobStore, **query: Any) -> list[str]:
    return [row["file"] for row in store.per_image_page("job", ImageQuery(**query)).items]


def test_rows_come_back_verbatim_in_processing_order(finished: JobStore) -> None:
    page = finished.per_image_page("job", ImageQuery(offset=0, limit=100))
    assert page.items == ROWS and page.total == 6
    assert finished.per_image_all("job") == ROWS
    assert finished.get("job").result == {"metrics": {}}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"sort": "fp"}, [1, 3, 5, 2, 0, 4]),  # ties keep processing order
        ({"sort": "fn"}, [2, 4, 5, 3, 0, 1]),
        ({"sort": "errors"}, [2, 3, 5, 1, 4, 0]),
        ({"sort": "fp", "limit": 2, "offset": 1}, [3, 5]),
        ({"true_denomination": 2}, [1, 2]),
        ({"predicted_denomination": 6}, [3]),
        ({"true_denomination": 2, "sort": "fn"}, [2, 1]),
        ({"misclassified": True}, [1, 3, 4]),  # a missed (4) or invented (3) banknote is a difference
        ({"misclassified": False}, [0, 2, 5]),
        ({"misclassified": True, "sort": "errors", "limit": 1}, [3]),
    ],
)
def test_sorting_filtering_and_paging(finished: JobStore, query: dict[str, Any], expected: list[int]) -> None:
    assert _files(finished, **query) == [f"img{order}.jpg" for order in expected]


def test_totals_count_matching_rows_even_past_the_last_page(finished: JobStore) -> None:
    assert finished.per_image_page("job", ImageQuery(misclassified=True, limit=1)).total == 3
    beyond = finished.per_image_page("job", ImageQuery(offset=50, true_denomination=2))
    assert beyond.items == [] and beyond.total == 2
    nothing = finished.per_image_page("job", ImageQuery(true_denomination=7))
    assert nothing.items == [] and nothing.total == 0
    assert finished.per_image_page("other", ImageQuery()).total == 0


def test_rows_with_missing_or_odd_fields_are_stored_and_returned_as_given(store: JobStore) -> None:
    odd = [
        {"file": "a.jpg"},
        {"file": "b.jpg", "fp": "7", "fn": True, "true_denomination": 2.5, "extra": {"k": [1]}},
        {"fp": 2, "fn": 1},
    ]
    store.create(new_job("odd"), max_queued=10)
    store.claim("r1", ["sha-a"])
    assert store.finish("odd", "r1", "succeeded", result={"per_image": odd})
    assert store.per_image_all("odd") == odd  # returned verbatim
    worst = store.per_image_page("odd", ImageQuery(sort="errors"))
    assert worst.items[0] == {"fp": 2, "fn": 1}  # non-integer counts sort as 0, never crash
    assert store.per_image_page("odd", ImageQuery(true_denomination=2)).total == 0
