"""Read YOLO datasets (directories, ``data.yaml``, uploads) into an index of samples and a problem report.

Layouts accepted by :func:`load_yolo_dataset`:

- ``ROOT/images/<split>/*`` with ``ROOT/labels/<split>/*.txt``;
- flat ``ROOT/images/*`` with ``ROOT/labels/*.txt``;
- a directory that holds images itself (labels found by the YOLOv5 rule below);
- a ``data.yaml`` (or a directory holding one) with ``path``, ``train``/``val``/``test`` and ``names``.
  ``path`` is relative to the yaml's folder (missing: the folder itself); a split entry is a directory, a
  ``.txt`` list of image paths (relative entries are relative to the list file's folder), or a list of those.

Images pair with labels by YOLOv5's rule: replace the last ``/images/`` of the path with ``/labels/`` and
the suffix with ``.txt``. A missing label file is a background image. Images are sorted by path string,
as YOLOv5 does, because the order decides rectangular batches and metric tie-breaks. These rules live in
:mod:`smartcash_core.data.discovery`, which the service's containment check walks too.

Nothing in a dataset is fatal except having no usable images: every bad image, label file or label line
becomes a :class:`ReportEntry` ``(file, line, reason)`` and is skipped. Images are only checked cheaply
here (:func:`smartcash_core.data.images.probe_image`: header, size, PIL ``verify()``, JPEG end marker);
full decode failures are reported by the loader.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from smartcash_core.cache import bind_cache_usage, label_cache
from smartcash_core.data.discovery import IMAGE_SUFFIXES, DatasetDiscovery, FileRole
from smartcash_core.data.images import probe_image
from smartcash_core.data.labels import COORDINATE_TOLERANCE, ReportEntry, empty_labels, parse_label_text
from smartcash_core.data.limits import DEFAULT_MAX_IMAGE_PIXELS
from smartcash_core.errors import DatasetError

if TYPE_CHECKING:
    from smartcash_core.validation.params import UploadedSample

__all__ = [  # the label parsing lives in ``labels``; its names stay importable from here
    "COORDINATE_TOLERANCE",
    "DatasetIndex",
    "ReportEntry",
    "Sample",
    "empty_labels",
    "load_uploaded_samples",
    "load_yolo_dataset",
    "parse_label_text",
]

PROBE_THREADS = 8  # header probing is I/O bound; threads overlap it
PROBE_IMAGES_PER_THREAD = 64  # small datasets stay single-threaded
NAMED_LABEL_FOLDERS = 3  # label folders a message names before "and N more"


@dataclass
class Sample:
    """One usable image.

    ``labels``: ``[n, 5]`` float32 rows ``(cls, cx, cy, w, h)``, box values normalized to the image.
    ``shape``: ``(height, width)`` in pixels after EXIF orientation. Uploaded samples carry their bytes in
    ``data`` and have no ``image_path``.
    """

    name: str
    labels: np.ndarray
    image_path: Path | None = None
    shape: tuple[int, int] | None = None
    data: bytes | None = None
    label_path: Path | None = None

    @property
    def num_instances(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class DatasetIndex:
    """The usable samples of a dataset, in YOLOv5 order, plus the report of what was skipped.

    ``root`` is the dataset root (None for uploads); ``names`` are the class names from ``data.yaml``.
    """

    samples: list[Sample]
    report: list[ReportEntry] = field(default_factory=list)
    names: list[str] | None = None
    root: Path | None = None

    @property
    def num_instances(self) -> int:
        return sum(sample.num_instances for sample in self.samples)

    def label_locations(self) -> str:
        """Where labels were looked for, as a phrase for messages: the label folders relative to the dataset
        root (the first :data:`NAMED_LABEL_FOLDERS`), or how an upload pairs them."""
        folders = sorted({s.label_path.parent for s in self.samples if s.label_path is not None}, key=str)
        if not folders:
            return "as same-stem .txt files in the upload (photo.txt for photo.jpg)"
        named = ", ".join(_relative_folder(self.root, folder) for folder in folders[:NAMED_LABEL_FOLDERS])
        more = len(folders) - NAMED_LABEL_FOLDERS
        rest = f" and {more} more folder(s)" if more > 0 else ""
        return f"in {named}{rest} (images/ -> labels/, same stem, .txt)"

    def shapes_wh(self) -> np.ndarray:
        """``[N, 2]`` float64 ``(width, height)`` per sample (0 where unknown), for rectangular batches."""
        rows = [(s.shape[1], s.shape[0]) if s.shape else (0, 0) for s in self.samples]
        return np.asarray(rows, dtype=np.float64).reshape(-1, 2)


# ----------------------------------------------------------------------------------------------------------
# Directory and data.yaml sources
# ----------------------------------------------------------------------------------------------------------


def load_yolo_dataset(
    source: str | Path,
    split: str = "val",
    num_classes: int = 17,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> DatasetIndex:
    """Index a YOLO dataset directory or ``data.yaml``; bad files and lines go to ``report`` (images whose
    header declares more than ``max_pixels`` pixels among them, never decoded).

    The files come from :class:`~smartcash_core.data.discovery.DatasetDiscovery` (the same walk the
    service checks). Raises ``DatasetError`` (naming the path) when the source does not exist, has no
    recognised layout, or holds no usable image.
    """
    discovery = DatasetDiscovery(source, split)
    images, report = _discovered_images(discovery)
    path, yaml_path = discovery.source, discovery.yaml_path
    names = _names_from_yaml(discovery.config.get("names"), yaml_path) if yaml_path else None
    if not images and not report:
        where = (
            f"in {yaml_path}'s '{split}' split" if yaml_path else f"under images/{split}/, images/ or {path}"
        )
        raise DatasetError(
            f"dataset {path} has no images {where} (suffixes {', '.join(sorted(IMAGE_SUFFIXES))})", "empty"
        )
    index = _index_images(discovery.root or path, images, (num_classes, max_pixels), report)
    index.names = names
    if not index.samples:
        problems = len(index.report)
        raise DatasetError(f"dataset {path} has no usable images: {problems} problem(s) reported", "empty")
    return index


def _discovered_images(discovery: DatasetDiscovery) -> tuple[dict[Path, Path], list[ReportEntry]]:
    """Image path -> label path for every image to index, and the list lines skipped (reported)."""
    images: dict[Path, Path] = {}
    report: list[ReportEntry] = []
    for found in discovery:
        if found.problem is not None:
            report.append(ReportEntry(str(found.listed_in), found.line, found.problem))
        elif found.role is FileRole.IMAGE and found.label is not None:
            images.setdefault(found.path, found.label)
    return images, report


def _names_from_yaml(names: Any, yaml_path: Path) -> list[str] | None:
    if names is None:
        return None
    if isinstance(names, dict):
        try:
            return [str(names[key]) for key in sorted(names, key=int)]
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"{yaml_path}: 'names' keys must be class ids") from exc
    if isinstance(names, list):
        return [str(name) for name in names]
    raise DatasetError(f"{yaml_path}: 'names' must be a list or a mapping of id -> name")


IndexRules = tuple[int, int]  # (num_classes, max_pixels): what decides which lines and images are usable


def _index_images(
    root: Path, labels_of: Mapping[Path, Path], rules: IndexRules, report: list[ReportEntry]
) -> DatasetIndex:
    """Probe images and parse labels; threads overlap the file I/O, results keep the sorted order.

    ``labels_of`` maps each image path to its label path.
    """
    ordered = sorted(labels_of, key=str)
    workers = min(PROBE_THREADS, max(1, len(ordered) // PROBE_IMAGES_PER_THREAD))
    index_one = bind_cache_usage(lambda path: _sample_from_file(root, path, labels_of[path], rules))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(index_one, ordered))
    samples: list[Sample] = []
    for sample, problems in results:
        report.extend(problems)
        if sample is not None:
            samples.append(sample)
    return DatasetIndex(samples=samples, report=report, root=root)


def _relative_folder(root: Path | None, folder: Path) -> str:
    """``folder`` relative to ``root`` (climbing with ``..`` if it must), never an absolute server path."""
    if root is None:
        return f"{folder.name}/"
    relative = Path(os.path.relpath(folder, root)).as_posix()
    return "./" if relative == "." else f"{relative}/"


def _relative_name(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


FileIdentity = tuple[str, int, int, int] | None  # (path, size, mtime_ns, inode); None: no such file


@dataclass(frozen=True)
class _IndexedFile:
    """What indexing one image found, independent of the dataset root (so it can be cached).

    ``image_reason`` is the probe's reason when the image is unusable; ``label_problems`` are
    ``(line, reason)`` pairs for the label file; ``labels`` is None when the label file was unreadable.
    """

    shape: tuple[int, int] | None
    image_reason: str
    labels: np.ndarray | None
    label_problems: tuple[tuple[int | None, str], ...]
    cacheable: bool = True


def _file_identity(path: Path) -> FileIdentity:
    """``(path, size, mtime_ns, inode)``: a rewrite changes size or mtime, an atomic replace the inode.

    A same-size rewrite within the filesystem's timestamp granularity (a few ms) is not detected; that is
    the usual limit of stat-keyed caches (make, YOLOv5's ``.cache`` hash) and acceptable between epochs.
    """
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)


def _sample_from_file(
    root: Path, image_path: Path, label_path: Path, rules: IndexRules
) -> tuple[Sample | None, list[ReportEntry]]:
    """Probe the image and parse its labels, through the label cache.

    The cache key holds both files' identities, the class count (which decides which lines are valid) and
    the pixel cap (which decides which images are), so a second indexing of an unchanged set skips the
    header probe and the label parse. Report file names depend on the root, so they are rebuilt from the
    cached ``(line, reason)`` pairs.
    """
    name = _relative_name(root, image_path)
    found = _indexed_file_cached(image_path, label_path, rules)
    if found.shape is None:
        return None, [ReportEntry(name, None, found.image_reason)]
    label_name = _relative_name(root, label_path)
    problems = [ReportEntry(label_name, line, reason) for line, reason in found.label_problems]
    if found.labels is None:
        return None, problems
    # a copy, so a consumer that edits its labels in place cannot corrupt the cached array
    sample = Sample(
        name=name, labels=found.labels.copy(), image_path=image_path, shape=found.shape, label_path=label_path
    )
    return sample, problems


def _indexed_file_cached(image_path: Path, label_path: Path, rules: IndexRules) -> _IndexedFile:
    image_id = _file_identity(image_path)
    if image_id is None:  # vanished since listing: report it, never cache it
        return _IndexedFile(None, "image file not found", None, (), cacheable=False)
    key = ("dataset-file", image_id, _file_identity(label_path), *rules)
    cache = label_cache()
    found = cache.get(key)
    if found is None:
        found = _index_file(image_path, label_path, rules)
        if found.cacheable:
            cache.put(key, found, _indexed_nbytes(found))
    return found


def _index_file(image_path: Path, label_path: Path, rules: IndexRules) -> _IndexedFile:
    num_classes, max_pixels = rules
    shape, reason = probe_image(image_path, max_pixels)
    if shape is None:
        return _IndexedFile(None, reason, None, ())
    labels, problems = _read_label_file(label_path, num_classes)
    # an unreadable label file may be a permission problem, which the mtime does not track
    return _IndexedFile(shape, "", labels, problems, cacheable=labels is not None)


def _indexed_nbytes(found: _IndexedFile) -> int:
    """Array bytes plus the report text: enough for the byte bound to mean something."""
    array_bytes = 0 if found.labels is None else int(found.labels.nbytes)
    text_bytes = len(found.image_reason) + sum(len(reason) + 16 for _, reason in found.label_problems)
    return 128 + array_bytes + text_bytes


def _read_label_file(
    label_path: Path, num_classes: int
) -> tuple[np.ndarray | None, tuple[tuple[int | None, str], ...]]:
    """Labels and ``(line, reason)`` problems. Missing file: background; unreadable: ``None`` (skip image)."""
    try:
        text = label_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return empty_labels(), ()
    except (OSError, UnicodeDecodeError) as exc:
        return None, ((None, f"unreadable label file, image skipped: {exc}"),)
    labels, problems = parse_label_text(text, "", num_classes)  # the caller names the file
    return labels, tuple((entry.line, entry.reason) for entry in problems)


# ----------------------------------------------------------------------------------------------------------
# Uploaded (in-memory) source
# ----------------------------------------------------------------------------------------------------------


def load_uploaded_samples(
    samples: Sequence[UploadedSample], num_classes: int = 17, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> DatasetIndex:
    """Index uploaded images (bytes + optional label text) in upload order; problems go to ``report``
    (images whose header declares more than ``max_pixels`` pixels among them, never decoded).

    Raises ``DatasetError`` when nothing usable remains.
    """
    index = DatasetIndex(samples=[], report=[], root=None)
    seen: set[str] = set()
    for upload in samples:
        if upload.name in seen:
            index.report.append(ReportEntry(upload.name, None, "duplicate image name, later copy skipped"))
            continue
        seen.add(upload.name)
        sample = _sample_from_upload(upload, (num_classes, max_pixels), index.report)
        if sample is not None:
            index.samples.append(sample)
    if not index.samples:
        raise DatasetError(f"the upload has no usable images: {len(index.report)} problem(s) reported")
    return index


def _sample_from_upload(
    upload: UploadedSample, rules: IndexRules, report: list[ReportEntry]
) -> Sample | None:
    num_classes, max_pixels = rules
    shape, reason = probe_image(upload.image, max_pixels)
    if shape is None:
        report.append(ReportEntry(upload.name, None, reason))
        return None
    labels = empty_labels()
    if upload.labels is not None:
        label_name = str(Path(upload.name).with_suffix(".txt"))
        labels, problems = parse_label_text(upload.labels, label_name, num_classes)
        report.extend(problems)
    return Sample(name=upload.name, labels=labels, shape=shape, data=upload.image)
