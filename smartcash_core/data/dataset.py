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

import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from smartcash_core.cache import bind_cache_usage, label_cache
from smartcash_core.data.discovery import IMAGE_SUFFIXES, DatasetDiscovery, FileRole
from smartcash_core.data.images import probe_image
from smartcash_core.errors import DatasetError

if TYPE_CHECKING:
    from smartcash_core.validation.params import UploadedSample

COORDINATE_TOLERANCE = 1e-3
LABEL_COLUMNS = 5
PROBE_THREADS = 8  # header probing is I/O bound; threads overlap it
PROBE_IMAGES_PER_THREAD = 64  # small datasets stay single-threaded


@dataclass(frozen=True)
class ReportEntry:
    """One skipped thing: ``file`` (relative to the dataset root when possible), 1-based ``line`` or None."""

    file: str
    line: int | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "reason": self.reason}


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

    def shapes_wh(self) -> np.ndarray:
        """``[N, 2]`` float64 ``(width, height)`` per sample (0 where unknown), for rectangular batches."""
        rows = [(s.shape[1], s.shape[0]) if s.shape else (0, 0) for s in self.samples]
        return np.asarray(rows, dtype=np.float64).reshape(-1, 2)


# ----------------------------------------------------------------------------------------------------------
# Labels
# ----------------------------------------------------------------------------------------------------------


def empty_labels() -> np.ndarray:
    """A ``[0, 5]`` float32 label array (a background image)."""
    return np.zeros((0, LABEL_COLUMNS), dtype=np.float32)


def parse_label_text(text: str, file: str, num_classes: int) -> tuple[np.ndarray, list[ReportEntry]]:
    """Parse YOLO label lines ``cls cx cy w h``; return ``[n, 5]`` float32 rows and the skipped lines.

    Box corners may stray outside [0, 1] by up to ``COORDINATE_TOLERANCE`` and are then clipped; further
    out, the line is skipped. Blank lines are ignored. Exact duplicate rows are dropped (reported), and
    then, like YOLOv5's ``np.unique``, the remaining rows come back sorted.
    """
    rows: list[list[float]] = []
    report: list[ReportEntry] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        row, reason = _parse_label_line(line, num_classes)
        if row is None:
            report.append(ReportEntry(file, number, reason))
        else:
            rows.append(row)
    if not rows:
        return empty_labels(), report
    labels = np.asarray(rows, dtype=np.float32)
    unique = np.unique(labels, axis=0)
    if len(unique) < len(labels):
        dropped = len(labels) - len(unique)
        report.append(ReportEntry(file, None, f"{dropped} duplicate label row(s) removed"))
        labels = unique  # YOLOv5 keeps ``lb[np.unique(..., return_index=True)[1]]``, i.e. sorted rows
    return labels, report


def _parse_label_line(line: str, num_classes: int) -> tuple[list[float] | None, str]:
    """One label line -> ``[cls, cx, cy, w, h]`` (clipped) or ``(None, reason)``."""
    fields = line.split()
    if len(fields) != LABEL_COLUMNS:
        return None, f"expected 5 columns 'cls cx cy w h', got {len(fields)}"
    try:
        values = [float(value) for value in fields]
    except ValueError:
        return None, f"non-numeric value in {line.strip()!r}"
    if not all(math.isfinite(value) for value in values):
        return None, f"NaN or infinite value in {line.strip()!r}"
    cls = values[0]
    if cls != int(cls):
        return None, f"class id {fields[0]} is not an integer"
    if not 0 <= cls < num_classes:
        return None, f"class id {int(cls)} is outside the class table (0..{num_classes - 1})"
    box, reason = _clip_box(*values[1:])
    if box is None:
        return None, reason
    return [cls, *box], ""


def _clip_box(cx: float, cy: float, w: float, h: float) -> tuple[list[float] | None, str]:
    if w <= 0 or h <= 0:
        return None, f"zero or negative box size (w={w:g}, h={h:g})"
    corners = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    if min(corners) < -COORDINATE_TOLERANCE or max(corners) > 1 + COORDINATE_TOLERANCE:
        return None, (
            f"box (cx={cx:g}, cy={cy:g}, w={w:g}, h={h:g}) lies outside the normalized image [0, 1] "
            "(labels must be normalized by image width/height)"
        )
    x0, y0, x1, y1 = (min(max(value, 0.0), 1.0) for value in corners)
    if x1 <= x0 or y1 <= y0:
        return None, "box has zero size after clipping to the image"
    return [(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], ""


# ----------------------------------------------------------------------------------------------------------
# Directory and data.yaml sources
# ----------------------------------------------------------------------------------------------------------


def load_yolo_dataset(source: str | Path, split: str = "val", num_classes: int = 17) -> DatasetIndex:
    """Index a YOLO dataset directory or ``data.yaml``; bad files and lines go to ``report``.

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
    index = _index_images(discovery.root or path, images, num_classes, report)
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


def _index_images(
    root: Path, labels_of: Mapping[Path, Path], num_classes: int, report: list[ReportEntry]
) -> DatasetIndex:
    """Probe images and parse labels; threads overlap the file I/O, results keep the sorted order.

    ``labels_of`` maps each image path to its label path.
    """
    ordered = sorted(labels_of, key=str)
    workers = min(PROBE_THREADS, max(1, len(ordered) // PROBE_IMAGES_PER_THREAD))
    index_one = bind_cache_usage(lambda path: _sample_from_file(root, path, labels_of[path], num_classes))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(index_one, ordered))
    samples: list[Sample] = []
    for sample, problems in results:
        report.extend(problems)
        if sample is not None:
            samples.append(sample)
    return DatasetIndex(samples=samples, report=report, root=root)


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
    root: Path, image_path: Path, label_path: Path, num_classes: int
) -> tuple[Sample | None, list[ReportEntry]]:
    """Probe the image and parse its labels, through the label cache.

    The cache key holds both files' identities and the class count (which decides which lines are
    valid), so a second indexing of an unchanged set skips the header probe and the label parse. Report
    file names depend on the root, so they are rebuilt from the cached ``(line, reason)`` pairs.
    """
    name = _relative_name(root, image_path)
    found = _indexed_file_cached(image_path, label_path, num_classes)
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


def _indexed_file_cached(image_path: Path, label_path: Path, num_classes: int) -> _IndexedFile:
    image_id = _file_identity(image_path)
    if image_id is None:  # vanished since listing: report it, never cache it
        return _IndexedFile(None, "image file not found", None, (), cacheable=False)
    key = ("dataset-file", image_id, _file_identity(label_path), num_classes)
    cache = label_cache()
    found = cache.get(key)
    if found is None:
        found = _index_file(image_path, label_path, num_classes)
        if found.cacheable:
            cache.put(key, found, _indexed_nbytes(found))
    return found


def _index_file(image_path: Path, label_path: Path, num_classes: int) -> _IndexedFile:
    shape, reason = probe_image(image_path)
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


def load_uploaded_samples(samples: Sequence[UploadedSample], num_classes: int = 17) -> DatasetIndex:
    """Index uploaded images (bytes + optional label text) in upload order; problems go to ``report``.

    Raises ``DatasetError`` when nothing usable remains.
    """
    index = DatasetIndex(samples=[], report=[], root=None)
    seen: set[str] = set()
    for upload in samples:
        if upload.name in seen:
            index.report.append(ReportEntry(upload.name, None, "duplicate image name, later copy skipped"))
            continue
        seen.add(upload.name)
        sample = _sample_from_upload(upload, num_classes, index.report)
        if sample is not None:
            index.samples.append(sample)
    if not index.samples:
        raise DatasetError(f"the upload has no usable images: {len(index.report)} problem(s) reported")
    return index


def _sample_from_upload(upload: UploadedSample, num_classes: int, report: list[ReportEntry]) -> Sample | None:
    shape, reason = probe_image(upload.image)
    if shape is None:
        report.append(ReportEntry(upload.name, None, reason))
        return None
    labels = empty_labels()
    if upload.labels is not None:
        label_name = str(Path(upload.name).with_suffix(".txt"))
        labels, problems = parse_label_text(upload.labels, label_name, num_classes)
        report.extend(problems)
    return Sample(name=upload.name, labels=labels, shape=shape, data=upload.image)
