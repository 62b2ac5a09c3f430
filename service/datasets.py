"""Every file a dataset job reads stays inside the data root.

The library's reader follows whatever a dataset names: ``data.yaml``'s ``path:`` and split entries
(absolute or relative; directories, ``.txt`` lists of image paths, single images), list entries, and
symlinked images, label files or folders. Checking only the path the client sent would let a
``data.yaml`` under the root read ``/etc`` or another tenant's data. So the service walks the very same
discovery the reader uses (:class:`~smartcash_core.data.discovery.DatasetDiscovery`, without reading images
or labels) and refuses any touched file that resolves outside the root: once before the job is queued (a
400 the client sees) and again just before it runs, because files may change while the job waits.

The walk names each path before the reader would open it, so a refusal stops it before anything behind
the refused path is listed or read. Where the reader itself would stop (no such split, a split entry that
does not exist, a data.yaml that is not YAML), the check stops too and reports where (``DatasetWalk``), so
the caller can refuse the request with a precise code instead of queuing a job that cannot run.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from service.errors import PathRejected, UnsafeDatasetRejected
from service.jobs import ValidationRunner
from service.paths import resolve_path
from smartcash_core.checkpoint import LoadedModel
from smartcash_core.data.discovery import DatasetDiscovery, DatasetFile, FileRole
from smartcash_core.data.limits import shorten
from smartcash_core.errors import DatasetError, UnsafeDatasetFile
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


@dataclass(frozen=True)
class DatasetWalk:
    """What the containment walk saw: ``images`` found (not counting missing list entries) and, when the
    walk stopped where the reader would stop too, the reader's error (``stopped``)."""

    images: int
    stopped: DatasetError | None = None


def check_dataset_contained(data_root: Path, dataset: Path, split: str, shown: str) -> DatasetWalk:
    """Refuse (``PathRejected``, 400) a dataset that would make the library read outside ``data_root``.

    ``dataset`` is the resolved directory or data.yaml; ``shown`` is the client's name for it. Problems
    the library reports by itself (unreadable yaml, missing split) stop the walk and come back in the
    returned :class:`DatasetWalk`; the caller decides.
    """
    root = data_root.resolve()
    discovery = DatasetDiscovery(dataset, split, resolve=lambda path: resolve_path(path, "dataset", shown))
    images = 0
    try:
        for found in discovery:
            images += found.role is FileRole.IMAGE and found.problem is None
            if found.resolved is not None and not found.resolved.is_relative_to(root):
                raise PathRejected(
                    f"dataset {shown!r}: {_role(found)} {shorten(str(found.path))!r} resolves outside the "
                    "data root",
                    _FIX,
                )
    except UnsafeDatasetFile as exc:  # refused unparsed (size, aliases, depth): the job would refuse it too
        raise UnsafeDatasetRejected(
            f"dataset {shown!r}: {exc.file}: {exc.why}",
            "write data.yaml as plain YAML of a few KB: no aliases (*name), little nesting",
        ) from exc
    except DatasetError as exc:
        if isinstance(exc.__cause__, OSError):  # data.yaml exists but cannot be read (permissions, I/O)
            raise _unreadable(shown, exc.__cause__) from exc
        return DatasetWalk(images, exc)  # the reader stops at the same place, before reading behind it
    except UnicodeDecodeError:
        return DatasetWalk(images)  # a list file that is not text: the reader fails on it the same way
    except OSError as exc:  # an over-long or unreadable name in data.yaml or a list file
        raise _unreadable(shown, exc) from exc
    return DatasetWalk(images)


def _role(found: DatasetFile) -> str:
    if found.role is FileRole.SPLIT_ENTRY and found.listed_in is not None:
        return f"split entry of {found.listed_in.name}"
    return found.role.value


def _unreadable(shown: str, exc: OSError) -> PathRejected:
    return PathRejected(f"dataset {shown!r} names a file that cannot be read: {shorten(str(exc))}", _FIX)


def contained_runner(runner: ValidationRunner, data_root: Path) -> ValidationRunner:
    """``runner`` that re-checks a dataset source just before the library reads it.

    The queue may hold a job for minutes; a symlink swapped in meanwhile must not be followed. A refusal
    fails the job as a ``DatasetError`` naming the file. Library errors leave with the data root taken
    out of their messages (the client named the dataset relative to it).
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
