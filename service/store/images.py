"""Per-image rows as SQL: the columns a reviewer filters and sorts on, next to the row itself.

A row of ``result.per_image`` holds ``index``, ``order``, ``file``, ``instances``, ``predictions``, ``tp``,
``fp``, ``fn`` (at IoU 0.5, score >= 0.25), ``true_denomination`` and ``predicted_denomination`` (mapped ids,
``None`` without a whole banknote), plus whatever the library adds later. The row is stored verbatim (JSON)
and returned as it came; the typed columns only serve ``WHERE`` and ``ORDER BY``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from service.store.records import ImageQuery

INSERT_SQL = (
    "INSERT INTO job_images (job_id, ordinal, file, instances, predictions, tp, fp, fn, errors, "
    "true_denomination, predicted_denomination, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# Each sort walks one index of (job_id, key, ordinal); ordinal breaks ties, so pages never overlap.
_ORDER_BY = {
    "order": "ordinal",
    "fp": "fp DESC, ordinal",
    "fn": "fn DESC, ordinal",
    "errors": "errors DESC, ordinal",
}


def _count(row: dict[str, Any], key: str) -> int:
    value = row.get(key)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _optional_id(row: dict[str, Any], key: str) -> int | None:
    value = row.get(key)
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def image_rows(job_id: str, per_image: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """``INSERT_SQL`` parameters for every row of ``per_image``, in order."""
    rows = []
    for ordinal, row in enumerate(per_image):
        fp, fn = _count(row, "fp"), _count(row, "fn")
        rows.append(
            (
                job_id,
                ordinal,
                str(row.get("file", "")),
                _count(row, "instances"),
                _count(row, "predictions"),
                _count(row, "tp"),
                fp,
                fn,
                fp + fn,
                _optional_id(row, "true_denomination"),
                _optional_id(row, "predicted_denomination"),
                json.dumps(row),
            )
        )
    return rows


def filters(job_id: str, query: ImageQuery) -> tuple[str, list[Any]]:
    """The ``WHERE`` clause of a query (without the keyword) and its parameters."""
    clauses, args = ["job_id = ?"], [job_id]
    if query.true_denomination is not None:
        clauses.append("true_denomination = ?")
        args.append(query.true_denomination)
    if query.predicted_denomination is not None:
        clauses.append("predicted_denomination = ?")
        args.append(query.predicted_denomination)
    if query.misclassified is not None:
        # -1 stands for "no whole banknote", so a missed or an invented banknote is a difference too
        comparison = "<>" if query.misclassified else "="
        clauses.append(f"COALESCE(true_denomination, -1) {comparison} COALESCE(predicted_denomination, -1)")
    return " AND ".join(clauses), args


def page_sql(job_id: str, query: ImageQuery) -> tuple[str, list[Any]]:
    """One statement: the page's rows, each with the number of rows matching the filters."""
    where, args = filters(job_id, query)
    sql = (
        f"SELECT data, COUNT(*) OVER () FROM job_images WHERE {where} "
        f"ORDER BY {_ORDER_BY[query.sort]} LIMIT ? OFFSET ?"
    )
    return sql, [*args, query.limit, query.offset]


def count_sql(job_id: str, query: ImageQuery) -> tuple[str, list[Any]]:
    where, args = filters(job_id, query)
    return f"SELECT COUNT(*) FROM job_images WHERE {where}", args
