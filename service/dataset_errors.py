"""Dataset problems as the client sees them: found at submit (400, before any job exists), each with a stable
snake_case code and a fix, and every path relative to the data root (the server's layout stays private).

The library says which problem it met (``DatasetError.reason``); this module turns that into the API's
words. A job that still fails on its dataset (files changed while it waited) reports the same codes.
"""

from __future__ import annotations

from pathlib import Path

from service.errors import ServiceError, library_error_status
from smartcash_core.data.suggest import did_you_mean
from smartcash_core.errors import DatasetError, SmartCashError


class DatasetRejected(ServiceError):
    """The dataset cannot be validated (a problem without a more specific code below)."""

    status_code = 400
    code = "dataset_rejected"
    fix = "point `dataset` at a YOLO directory (images/<split>, labels/<split>) or its data.yaml"


class DatasetNotFound(DatasetRejected):
    code = "dataset_not_found"
    fix = "name a YOLO dataset folder or its data.yaml relative to the data root (SMARTCASH_DATA_ROOT)"


class DatasetSplitMissing(DatasetRejected):
    code = "dataset_split_missing"
    fix = "ask for a split the data.yaml names (`split`), or add that split to the data.yaml"


class DatasetSplitEntryMissing(DatasetRejected):
    code = "dataset_split_entry_missing"
    fix = "make the split entry in data.yaml name a folder, a .txt list or an image that exists"


class DatasetUnreadable(DatasetRejected):
    code = "dataset_unreadable"
    fix = "make data.yaml a readable YAML mapping (path, train, val, names)"


class DatasetEmpty(DatasetRejected):
    code = "dataset_empty"
    fix = "put images (.jpg, .png, ...) under images/<split>/ or list them in the data.yaml split"


_BY_REASON: dict[str, type[DatasetRejected]] = {
    "not_found": DatasetNotFound,
    "split_missing": DatasetSplitMissing,
    "split_entry_missing": DatasetSplitEntryMissing,
    "unreadable": DatasetUnreadable,
    "empty": DatasetEmpty,
}


def rejection(exc: DatasetError) -> DatasetRejected:
    """The 400 for a library dataset error (its paths are made relative to the data root where every error
    body is, ``service.redact``)."""
    kind = _BY_REASON.get(exc.reason, DatasetRejected)
    return kind(str(exc), kind.fix)


def not_found(data_root: Path, relative: str) -> DatasetNotFound:
    """``dataset 'x' does not exist under the data root; did you mean y?`` (names inside the root only)."""
    root = data_root.resolve()
    hint = did_you_mean((root / relative).resolve(), relative_to=root)
    message = f"dataset {relative!r} does not exist under the data root{hint}"
    return DatasetNotFound(message, DatasetNotFound.fix)


def job_error_code(exc: SmartCashError) -> str:
    """The ``error.code`` of a job that failed on a library error (never a Python class name)."""
    if isinstance(exc, DatasetError) and exc.reason in _BY_REASON:
        return _BY_REASON[exc.reason].code
    return library_error_status(exc)[1]
