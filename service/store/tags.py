"""Job tags as SQL: one ``job_tags`` row per tag (what filters use), beside the JSON copy on the job row.

A filter of several tags is their AND: one ``EXISTS`` per tag, each an index lookup on (key, value, job_id).
The wire layer bounds tag counts and lengths before anything reaches here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

INSERT_SQL = "INSERT INTO job_tags (job_id, key, value) VALUES (?, ?, ?)"
_HAS_TAG = "EXISTS (SELECT 1 FROM job_tags WHERE job_tags.job_id = jobs.id AND key = ? AND value = ?)"


def tag_rows(job_id: str, tags: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """``INSERT_SQL`` parameters, one row per tag (sorted by key: deterministic order)."""
    return [(job_id, key, tags[key]) for key in sorted(tags)]


def filters(tags: Mapping[str, str]) -> tuple[list[str], list[Any]]:
    """``WHERE`` clauses (to be joined with AND) keeping jobs that carry every given tag, and their args."""
    clauses: list[str] = []
    args: list[Any] = []
    for key in sorted(tags):
        clauses.append(_HAS_TAG)
        args.extend((key, tags[key]))
    return clauses, args
