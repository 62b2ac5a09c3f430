"""Where a job's images come from: a dataset path under this replica's data root.

Checked twice: when the job is submitted (a 4xx the client sees) and again by the replica that claims it,
against its own data root (replicas mount the same datasets at their own root; files may also change while
the job waits in the queue). A dataset the reader would stop on (missing, no such split, no images) is
refused with a precise 400 (``service.dataset_errors``) instead of a job that fails later.
"""

from __future__ import annotations

from pathlib import Path

from service.dataset_errors import DatasetEmpty, not_found, rejection
from service.datasets import check_dataset_contained
from service.errors import NotFound, Unprocessable
from service.paths import resolve_under


def resolve_dataset(data_root: Path, relative: str, split: str) -> Path:
    """The dataset path, kept inside the data root (with every file it names), shaped like a YOLO dataset,
    with images in ``split``."""
    return inspect_dataset(data_root, relative, split)[0]


def inspect_dataset(data_root: Path, relative: str, split: str) -> tuple[Path, int]:
    """:func:`resolve_dataset`, plus the number of images the split names."""
    try:
        path = resolve_under(data_root, relative, "dataset")
    except NotFound as exc:
        raise not_found(data_root, relative) from exc
    if path.is_file() and path.suffix.lower() not in (".yaml", ".yml"):
        raise Unprocessable(
            f"dataset {relative!r} is a file but not a data.yaml", "name a YOLO directory or its data.yaml"
        )
    if path.is_dir() and not (path / "images").is_dir() and not any(path.glob("*.y*ml")):
        raise Unprocessable(
            f"dataset {relative!r} has no images/ directory and no data.yaml",
            "name a YOLO dataset directory (images/<split>, labels/<split>) or its data.yaml",
        )
    walk = check_dataset_contained(data_root, path, split, relative)
    if walk.stopped is not None:
        raise rejection(walk.stopped)
    if walk.images == 0:
        raise DatasetEmpty(f"dataset {relative!r} has no images for split {split!r}", DatasetEmpty.fix)
    return path, walk.images
