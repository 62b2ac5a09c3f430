"""Every file a dataset job reads stays inside the data root.

The library's reader follows whatever a dataset names: ``data.yaml``'s ``path:`` and split entries
(absolute or relative; directories, ``.txt`` lists of image paths, single images), list entries, and
symlinked images, label files or folders. Checking only the path the client sent would let a
``data.yaml`` under the root read ``/etc`` or another tenant's data. So the service walks the same
discovery rules (without reading images or labels) and refuses any file that resolves outside the root:
once before the job is queued (a 400 the client sees) and again just before it runs, because files may
change while the job waits in the queue.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from service.errors import PathRejected
from service.jobs import ValidationRunner
from service.paths import resolve_path
from smartcash_core.checkpoint import LoadedModel
from smartcash_core.data.dataset import DATA_YAML_NAMES, IMAGE_SUFFIXES, label_path_for
from smartcash_core.errors import DatasetError
from smartcash_core.validation.params import (
    ProgressCallback,
    ValidationParams,
    ValidationResult,
    ValidationSource,
)

_FIX = (
    "keep every file the dataset names (data.yaml path and splits, list files, images, labels) under the "
    "data root, without symlinks that lead out of it"
)


class _Containment:
    """Resolves files and checks them against the data root; parent folders are resolved once each."""

    def __init__(self, data_root: Path, shown: str) -> None:
        self.root = data_root.resolve()
        self.shown = shown
        self._folders: dict[Path, Path] = {}

    def check(self, path: Path, role: str) -> None:
        resolved = self._resolve(path)
        if not resolved.is_relative_to(self.root):
            raise PathRejected(
                f"dataset {self.shown!r}: {role} {str(path)!r} resolves outside the data root", _FIX
            )

    def _resolve(self, path: Path) -> Path:
        # A plain file's real path is its real folder plus its name: one lstat instead of a full walk.
        try:
            is_link = stat.S_ISLNK(os.lstat(path).st_mode)
        except OSError:
            is_link = True  # missing or unreadable: let the full resolve decide (and report)
        if is_link or path.name in ("", ".", ".."):
            return resolve_path(path, "dataset", self.shown)
        folder = self._folders.get(path.parent)
        if folder is None:
            folder = self._folders[path.parent] = resolve_path(path.parent, "dataset", self.shown)
        return folder / path.name


def check_dataset_contained(data_root: Path, dataset: Path, split: str, shown: str) -> None:
    """Refuse (``PathRejected``, 400) a dataset that would make the library read outside ``data_root``.

    ``dataset`` is the resolved directory or data.yaml; ``shown`` is the client's name for it. Problems
    the library reports by itself (unreadable yaml, missing split) are left to the job.
    """
    guard = _Containment(data_root, shown)
    try:
        for image in _images(guard, dataset, split):
            guard.check(image, "image")
            label = label_path_for(image)
            if os.path.lexists(label):
                guard.check(label, "label file")
    except OSError as exc:  # an over-long or unreadable name in data.yaml or a list file
        raise PathRejected(f"dataset {shown!r} names a file that cannot be read: {exc}", _FIX) from exc


def _images(guard: _Containment, dataset: Path, split: str) -> Iterable[Path]:
    """The image paths the library would index, each split entry and list file checked first."""
    yaml_path = dataset if dataset.is_file() else _find_data_yaml(dataset)
    if yaml_path is None:
        return _images_from_directory(dataset, split)
    guard.check(yaml_path, "data.yaml")
    data = _read_yaml(yaml_path)
    base = Path(str(data.get("path") or "."))
    root = base if base.is_absolute() else yaml_path.parent / base
    entry = data.get(split)
    images: list[Path] = []
    for item in entry if isinstance(entry, list) else [] if entry is None else [entry]:
        target = Path(str(item)) if Path(str(item)).is_absolute() else root / str(item)
        guard.check(target, f"split entry of {yaml_path.name}")
        images.extend(_images_from_split_entry(target))
    return images


def _find_data_yaml(directory: Path) -> Path | None:
    return next((directory / name for name in DATA_YAML_NAMES if (directory / name).is_file()), None)


def _read_yaml(yaml_path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError):
        return {}  # the library fails the job with its own message before reading anything else
    return data if isinstance(data, dict) else {}


def _images_from_split_entry(target: Path) -> list[Path]:
    if target.is_dir():
        return _image_files(target, recursive=True)
    if target.is_file() and target.suffix.lower() == ".txt":
        return _images_from_list_file(target)
    if target.is_file() and target.suffix.lower() in IMAGE_SUFFIXES:
        return [target]
    return []


def _images_from_list_file(list_file: Path) -> list[Path]:
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        return []
    listed = (Path(text) for text in (line.strip() for line in lines) if text)
    paths = (path if path.is_absolute() else list_file.parent / path for path in listed)
    # every listed image, existing or not: checking one that is missing costs nothing and hides no escape
    return [path for path in paths if path.suffix.lower() in IMAGE_SUFFIXES]


def _images_from_directory(directory: Path, split: str) -> list[Path]:
    candidates = ((directory / "images" / split, True), (directory / "images", False), (directory, False))
    for candidate, recursive in candidates:
        if candidate.is_dir():
            found = _image_files(candidate, recursive)
            if found:
                return found
    return []


def _image_files(directory: Path, recursive: bool) -> list[Path]:
    pattern = directory.rglob("*") if recursive else directory.glob("*")
    return [path for path in pattern if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()]


def contained_runner(runner: ValidationRunner, data_root: Path) -> ValidationRunner:
    """``runner`` that re-checks a dataset source just before the library reads it.

    The queue may hold a job for minutes; a symlink swapped in meanwhile must not be followed. A refusal
    fails the job as a ``DatasetError`` naming the file.
    """

    def run(
        model: LoadedModel,
        source: ValidationSource,
        params: ValidationParams,
        on_progress: ProgressCallback | None,
        cancel: threading.Event | None,
    ) -> ValidationResult:
        if isinstance(source, (str, Path)):
            try:
                check_dataset_contained(data_root, Path(source), params.split, str(source))
            except PathRejected as exc:
                raise DatasetError(exc.message) from exc
        return runner(model, source, params, on_progress, cancel)

    return run
