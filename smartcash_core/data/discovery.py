"""Dataset discovery: every path a dataset job touches, found by one set of rules.

The reader (:func:`smartcash_core.data.dataset.load_yolo_dataset`) and the service's containment check
(``service/datasets.py``, a security boundary) both walk a dataset through :class:`DatasetDiscovery`, so
what the service allows and what the library reads cannot drift apart.

Rules (YOLOv5's):

- the source is a directory or a ``data.yaml``; a directory holding one of :data:`DATA_YAML_NAMES` is read
  through it. Without one: ``images/<split>`` (recursive), then flat ``images/``, then the directory itself,
  the first of them that holds images;
- ``data.yaml``'s ``path`` is relative to the yaml's folder (missing: the folder itself); a split entry is a
  directory (walked recursively), a ``.txt`` list of image paths (relative lines are relative to the list
  file's folder), or one image; an entry may also be a list of those;
- an image's label is found by YOLOv5's rule (:func:`label_path_for`); a missing label file is a background
  image.

The walk is lazy and names each path before the job opens it: a consumer that refuses a path (the
containment check) stops the walk before anything behind it is listed or read. It never decodes an image
and looks each image and label up once (one ``lstat``; a symlink adds a ``stat`` and, when resolving, a
full resolve); resolving a plain file costs nothing more, its folder is resolved once for all its files.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import Any, NamedTuple

from smartcash_core.data.data_yaml import read_data_yaml
from smartcash_core.data.limits import shorten
from smartcash_core.data.suggest import did_you_mean
from smartcash_core.errors import DatasetError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
DATA_YAML_NAMES = ("data.yaml", "data.yml", "dataset.yaml", "dataset.yml")
LIST_SUFFIX = ".txt"

Resolve = Callable[[Path], Path]  # a path -> its real path (symlinks followed), e.g. Path.resolve


class FileRole(Enum):
    """What the job does with a discovered path; the values name the role in messages."""

    DATA_YAML = "data.yaml"  # read
    DATASET_ROOT = "dataset root"  # not read: the base of relative split entries and of report names
    SPLIT_ENTRY = "split entry"  # a data.yaml split target: a folder walked, a .txt list read, or an image
    IMAGE = "image"  # probed and decoded; with a ``problem`` only looked up (stat) and skipped
    LABEL = "label file"  # read; yielded only when something is there (missing: a background image)
    NOT_AN_IMAGE = "list line"  # a list line without an image suffix: reported, never touched


TOUCHED_ROLES = frozenset({FileRole.DATA_YAML, FileRole.SPLIT_ENTRY, FileRole.IMAGE, FileRole.LABEL})


class DatasetFile(NamedTuple):  # a tuple: tens of thousands are made per walk, cheaply
    """One discovered path.

    ``path`` is the path as the job uses it (relative entries joined to their base folder); ``resolved`` its
    real path, symlinks followed, when the discovery was asked to resolve (else None; never set for roles
    the job does not touch). ``named`` is the text in ``data.yaml`` or the list file it came from, with
    ``listed_in`` that file and ``line`` the 1-based line of a list file. ``problem`` says why the job skips
    it (the reader reports it). ``label`` is an image's label path by YOLOv5's rule, whether it exists or not.
    """

    role: FileRole
    path: Path
    resolved: Path | None = None
    named: str | None = None
    listed_in: Path | None = None
    line: int | None = None
    problem: str | None = None
    label: Path | None = None

    @property
    def touched(self) -> bool:
        """The job opens, lists or looks this path up (so it must stay inside any root the caller keeps)."""
        return self.role in TOUCHED_ROLES


def label_path_for(image_path: Path) -> Path:
    """YOLOv5's pairing rule: last ``/images/`` -> ``/labels/``, suffix -> ``.txt``."""
    text = str(image_path)
    images_dir, labels_dir = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    if images_dir in text:
        head, tail = text.rsplit(images_dir, 1)
        text = f"{head}{labels_dir}{tail}"
    return Path(text).with_suffix(".txt")


def find_data_yaml(directory: Path) -> Path | None:
    """The first of :data:`DATA_YAML_NAMES` that is a file in ``directory``."""
    return next((directory / name for name in DATA_YAML_NAMES if (directory / name).is_file()), None)


def _yaml_scalar(value: Any, key: str, yaml_path: Path) -> str | None:
    """A path-like value of data.yaml as text (None stays None); lists, mappings and booleans are refused
    with a short message instead of being turned into a path named after their ``repr``."""
    if value is None or (isinstance(value, (str, int, float)) and not isinstance(value, bool)):
        return None if value is None else str(value)
    raise DatasetError(
        f"{yaml_path}: '{shorten(key, 40)}' must name a path (text), got a {type(value).__name__}: "
        f"{shorten(repr(value))}"
    )


Lookup = tuple[Path, os.stat_result | None]  # a file and its lstat (None: a symlink, resolved in full)
_IGNORED_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP})  # as Path.is_file


def is_file(path: Path) -> tuple[bool, os.stat_result | None]:
    """``Path.is_file()`` (symlinks followed, the same errors ignored) with one ``lstat`` for a plain file,
    whose result comes back for resolving (None for a symlink, which is followed with a ``stat``)."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        if exc.errno not in _IGNORED_ERRNOS:
            raise
        return False, None
    except ValueError:  # a NUL byte in the name
        return False, None
    if stat.S_ISLNK(info.st_mode):
        return path.is_file(), None
    return stat.S_ISREG(info.st_mode), info


def image_files(directory: Path, recursive: bool) -> list[Lookup]:
    """Image files (by suffix) directly in ``directory`` or, ``recursive``, anywhere below it."""
    pattern = directory.rglob("*") if recursive else directory.glob("*")
    found = []
    for path in pattern:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            exists, info = is_file(path)
            if exists:
                found.append((path, info))
    return found


def images_in_directory(directory: Path, split: str) -> list[Lookup]:
    """``images/<split>`` (recursive), then flat ``images/``, then the directory itself.

    Only the split folder is searched recursively, so asking for ``val`` never picks up ``images/train``.
    """
    candidates = ((directory / "images" / split, True), (directory / "images", False), (directory, False))
    for candidate, recursive in candidates:
        if candidate.is_dir():
            found = image_files(candidate, recursive=recursive)
            if found:
                return found
    return []


class _FolderResolver:
    """Real paths with each parent folder resolved once: a plain file costs one ``lstat``, not a walk."""

    def __init__(self, resolve: Resolve) -> None:
        self._resolve = resolve
        self._folders: dict[Path, Path] = {}

    def __call__(self, path: Path, info: os.stat_result | None = None) -> Path:
        if info is None:
            try:
                info = os.lstat(path)
            except (OSError, ValueError):  # missing, unreadable, a NUL in the name: the full resolve decides
                return self._resolve(path)
        if stat.S_ISLNK(info.st_mode) or path.name in ("", ".", ".."):
            return self._resolve(path)
        folder = self._folders.get(path.parent)
        if folder is None:
            folder = self._folders[path.parent] = self._resolve(path.parent)
        return folder / path.name


class DatasetDiscovery:
    """One walk over a dataset: iterate it for the :class:`DatasetFile` s, in the order the job meets them.

    ``resolve`` (e.g. ``Path.resolve``) fills in ``resolved`` for every touched path. While iterating,
    ``yaml_path``, ``config`` (data.yaml's mapping) and ``root`` (the base of report names) are filled in.
    Raises ``DatasetError`` where the reader cannot go on: the source does not exist, data.yaml is not a
    readable mapping or has no such split, a split entry does not exist; ``OSError`` or
    ``UnicodeDecodeError`` escape from a list file that cannot be read or a name the OS refuses.
    """

    def __init__(self, source: str | Path, split: str, resolve: Resolve | None = None) -> None:
        self.source = Path(source).expanduser()
        self.split = split
        self.yaml_path: Path | None = None
        self.config: dict[str, Any] = {}
        self.root: Path | None = None
        self._resolver = _FolderResolver(resolve) if resolve is not None else None

    def __iter__(self) -> Iterator[DatasetFile]:
        if not self.source.exists():
            suggestion = did_you_mean(self.source)
            raise DatasetError(f"dataset path {self.source} does not exist{suggestion}", "not_found")
        yaml_path = self.source if self.source.is_file() else find_data_yaml(self.source)
        if yaml_path is not None:
            yield from self._from_data_yaml(yaml_path)
            return
        self.root = self.source
        yield DatasetFile(FileRole.DATASET_ROOT, self.source)
        for image, info in images_in_directory(self.source, self.split):
            yield from self._image(image, info)

    def _from_data_yaml(self, yaml_path: Path) -> Iterator[DatasetFile]:
        self.yaml_path = yaml_path
        # named before it is read: a refusal stops the read
        yield DatasetFile(FileRole.DATA_YAML, yaml_path, self._resolve(yaml_path))
        self.config = read_data_yaml(yaml_path)
        named_root = _yaml_scalar(self.config.get("path"), "path", yaml_path)
        base = Path(named_root or ".")
        self.root = base if base.is_absolute() else yaml_path.parent / base
        shown_root = None if named_root is None else str(named_root)
        yield DatasetFile(FileRole.DATASET_ROOT, self.root, named=shown_root)
        entry = self.config.get(self.split)
        if entry is None:
            known = [key for key in ("train", "val", "test") if self.config.get(key)]
            raise DatasetError(f"{yaml_path} has no '{self.split}' split (it names {known})", "split_missing")
        entries = entry if isinstance(entry, list) else [entry]
        named = [Path(_yaml_scalar(item, self.split, yaml_path) or ".") for item in entries]
        targets = [(item, item if item.is_absolute() else self.root / item) for item in named]
        for item, target in targets:  # every entry is named before any is walked or read
            yield DatasetFile(FileRole.SPLIT_ENTRY, target, self._resolve(target), str(item), yaml_path)
        for item, target in targets:
            yield from self._split_entry(item, target, yaml_path)

    def _split_entry(self, entry: Path, target: Path, yaml_path: Path) -> Iterator[DatasetFile]:
        suffix = target.suffix.lower()
        if target.is_dir():
            for image, info in image_files(target, recursive=True):
                yield from self._image(image, info)
        elif target.is_file() and suffix == LIST_SUFFIX:
            yield from self._list_file(target)
        elif target.is_file() and suffix in IMAGE_SUFFIXES:
            yield from self._image(target, None)
        else:
            raise DatasetError(
                f"split entry {shorten(str(entry))!r} of {yaml_path} does not exist "
                f"(resolved to {shorten(str(target))})",
                "split_entry_missing",
            )

    def _list_file(self, list_file: Path) -> Iterator[DatasetFile]:
        """A ``.txt`` of image paths, one a line; relative ones are relative to the list file's folder."""
        for number, line in enumerate(list_file.read_text(encoding="utf-8").splitlines(), start=1):
            text = line.strip()
            if not text:
                continue
            path = Path(text) if Path(text).is_absolute() else list_file.parent / text
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                problem = f"not an image path: {shorten(text)!r}"
                yield DatasetFile(FileRole.NOT_AN_IMAGE, path, None, text, list_file, number, problem)
                continue
            exists, info = is_file(path)
            if exists:
                yield from self._image(path, info, text, list_file, number)
            else:
                problem = f"listed image {shorten(text)!r} does not exist"
                yield DatasetFile(FileRole.IMAGE, path, self._resolve(path), text, list_file, number, problem)

    def _image(
        self,
        image: Path,
        info: os.stat_result | None,
        named: str | None = None,
        listed_in: Path | None = None,
        line: int | None = None,
    ) -> Iterator[DatasetFile]:
        """``info``: the image's ``lstat`` when taken already (a plain file): resolving needs no other."""
        label = label_path_for(image)
        resolved = self._resolve(image, info)
        yield DatasetFile(FileRole.IMAGE, image, resolved, named, listed_in, line, None, label)
        try:
            info = os.lstat(label)
        except (OSError, ValueError):  # nothing there (as os.path.lexists): a background image, nothing read
            return
        yield DatasetFile(FileRole.LABEL, label, self._resolve(label, info))

    def _resolve(self, path: Path, info: os.stat_result | None = None) -> Path | None:
        return self._resolver(path, info) if self._resolver is not None else None
