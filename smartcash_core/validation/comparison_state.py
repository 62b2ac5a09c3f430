"""What a later comparison needs from a validation: its evaluator state and a key per image, as one file.

``comparison_state(result, keys)`` takes them from a finished pass; ``state_bytes`` / ``state_from_bytes``
(and ``save_state`` / ``load_state``) write and read them as an ``.npz`` that needs no pickle: the
evaluator's arrays, the image keys and a small JSON header (format, protocol, class table).

Image keys say which images two validations share: the dataset-relative file name for a dataset (two runs
of the same dataset and split name their images alike), or ``sha256:<hex>`` of the image bytes for an
upload (the same pictures under any names). ``keys[i]`` belongs to the image with the i-th smallest id in
the state (the pass numbers images in processing order).

Size: about 16 bytes per prediction for ``yolo`` before compression (``savez_compressed`` roughly halves
it); see docs/API.md for a measured example.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from smartcash_core.classes import ClassTable
from smartcash_core.errors import ClassTableError, ComparisonError, MetricStateError
from smartcash_core.metrics import DetectionEvaluator
from smartcash_core.metrics.bootstrap import ComparableState
from smartcash_core.metrics.state import Rows
from smartcash_core.validation.params import ValidationResult

STATE_FORMAT = 1
STATE_SUFFIX = ".state.npz"
_META, _KEYS, _PREFIX = "meta", "image_keys", "state."
_MAX_HEADER_BYTES = 64 * 1024 * 1024  # image keys of millions of images; refuse anything larger unread


def content_key(image: bytes) -> str:
    """The key of an uploaded image: its SHA-256, so the same picture pairs whatever its name."""
    return f"sha256:{hashlib.sha256(image).hexdigest()}"


def comparison_state(
    result: ValidationResult, keys_by_file: Mapping[str, str] | None = None
) -> ComparableState:
    """The comparable state of a finished pass: its evaluator state and, per image, ``keys_by_file[file]``
    (default: the file name itself, as datasets name their images)."""
    evaluator = result.evaluator
    if evaluator is None or evaluator.class_table is None:
        raise ComparisonError(
            "comparison_state_missing", "this result carries no evaluator state (was it loaded from JSON?)"
        )
    state = evaluator.state_arrays()
    by_order = {int(row["order"]): str(row["file"]) for row in result.per_image}
    ids = np.sort(np.asarray(state["image_ids"], dtype=np.int64))
    missing = [int(i) for i in ids if int(i) not in by_order]
    if missing:
        raise ComparisonError(
            "comparison_state_invalid", f"images {missing[:3]} of the state have no per-image row (file name)"
        )
    files = [by_order[int(i)] for i in ids]
    keys = files if keys_by_file is None else [keys_by_file[name] for name in files]
    return ComparableState(state, keys, evaluator.protocol, evaluator.class_table)


def state_bytes(state: ComparableState) -> bytes:
    """The ``.npz`` bytes of ``state`` (compressed; no pickled objects)."""
    meta = {"format": STATE_FORMAT, "protocol": state.protocol, "class_table": state.class_table.to_dict()}
    members: dict[str, np.ndarray] = {
        _META: _json_array(meta),
        _KEYS: _json_array([str(key) for key in state.image_keys]),
    }
    members.update({f"{_PREFIX}{name}": np.asarray(value) for name, value in state.state.items()})
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **members)
    return buffer.getvalue()


def state_from_bytes(data: bytes, source: str = "the state") -> ComparableState:
    """Read ``state_bytes`` output; ``ComparisonError`` (``comparison_state_invalid``) naming ``source`` when
    it is not one (not an npz, another format, arrays that do not fit together)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            members = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise _invalid(source, f"not a comparison state file ({exc})") from exc
    meta = _json_member(members, _META, source)
    keys = _json_member(members, _KEYS, source)
    if not isinstance(meta, dict) or meta.get("format") != STATE_FORMAT:
        raise _invalid(source, f"unknown state format (this release reads format {STATE_FORMAT})")
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        raise _invalid(source, "image keys must be a list of strings")
    try:
        table = ClassTable.from_dict(meta.get("class_table"))
    except ClassTableError as exc:
        raise _invalid(source, f"bad class table ({exc})") from exc
    protocol = meta.get("protocol")
    arrays = {name[len(_PREFIX) :]: value for name, value in members.items() if name.startswith(_PREFIX)}
    _check_arrays(arrays, str(protocol), table, len(keys), source)
    return ComparableState(arrays, keys, str(protocol), table)


def save_state(state: ComparableState, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(state_bytes(state))
    return path


def load_state(path: Path) -> ComparableState:
    path = Path(path)
    if not path.is_file():
        raise ComparisonError(
            "comparison_state_missing",
            f"{path}: no saved state; validate with --json <file> --state {path} to write it",
        )
    return state_from_bytes(path.read_bytes(), str(path))


def state_path_for(json_path: Path) -> Path:
    """Where ``validate --json out.json --state`` puts the state by convention: ``out.state.npz``."""
    json_path = Path(json_path)
    return json_path.with_name(json_path.stem + STATE_SUFFIX)


# --------------------------------------------------------------------------------------------- checks
def _json_array(value: Any) -> np.ndarray:
    return np.frombuffer(json.dumps(value).encode("utf-8"), dtype=np.uint8)


def _json_member(members: Mapping[str, np.ndarray], name: str, source: str) -> Any:
    value = members.get(name)
    if value is None or value.dtype != np.uint8 or value.ndim != 1 or value.size > _MAX_HEADER_BYTES:
        raise _invalid(source, f"missing or malformed {name!r}")
    try:
        return json.loads(value.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _invalid(source, f"{name!r} is not JSON ({exc})") from exc


def _check_arrays(
    arrays: dict[str, np.ndarray], protocol: str, table: ClassTable, num_keys: int, source: str
) -> None:
    """The arrays form a state of ``protocol`` with ``table``: known keys, numeric dtypes, matching row
    counts, ids and classes in range, one key per image."""
    try:
        evaluator = DetectionEvaluator(table.num_fine, protocol, table)
    except ValueError as exc:
        raise _invalid(source, str(exc)) from exc
    if any(value.dtype.kind not in "biuf" for value in arrays.values()):
        raise _invalid(source, "state arrays must be numeric")
    try:
        DetectionEvaluator.from_state_arrays(arrays, table.num_fine, protocol, table)
    except (ValueError, MetricStateError) as exc:
        raise _invalid(source, str(exc)) from exc
    ids = np.asarray(arrays["image_ids"])
    counts = {
        Rows.IMAGES: ids.size,
        Rows.PREDICTIONS: np.asarray(arrays["pred_image"]).shape[0],
        Rows.GROUND_TRUTH: np.asarray(arrays["gt_image"]).shape[0],
    }
    for key in evaluator.detection_protocol.state_keys:
        value = np.asarray(arrays[key.name])
        expected = counts.get(key.rows)
        if key.rows is Rows.MATCHED:  # one row per flagged prediction of the key's view
            expected = int(np.count_nonzero(arrays[f"{key.name.split('_', 1)[0]}_has_outcome"]))
        if value.shape != (expected, *key.width) or (
            np.dtype(key.dtype).kind != "f" and value.dtype.kind == "f"
        ):
            raise _invalid(source, f"{key.name!r} has shape {value.shape} and dtype {value.dtype}")
    for name in ("pred_image", "gt_image"):
        if not np.isin(arrays[name], ids).all():
            raise _invalid(source, f"{name!r} names images that are not in the state")
    for name in ("pred_class", "gt_class"):
        values = np.asarray(arrays[name])
        if values.size and (values.min() < 0 or values.max() >= table.num_fine):
            raise _invalid(source, f"{name!r} holds class ids outside 0..{table.num_fine - 1}")
    if num_keys != ids.size:
        raise _invalid(source, f"{num_keys} image keys for {ids.size} images")


def _invalid(source: str, reason: str) -> ComparisonError:
    return ComparisonError("comparison_state_invalid", f"{source}: {reason}")
