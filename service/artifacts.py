"""Plots of finished jobs, served by any replica.

The plot data of a job (curves and matrices, tens of kB as ``.npz``) is an artifact in the job store, written
in the same transaction as the job's result: whoever can read the result can draw its plots, with no shared
volume between replicas. Each replica keeps a local cache under ``<state_dir>/plots/<job id>/``: the plot
data (copied from the store on first use) and the PNGs, rendered on first request (deterministic, so
replicas that render the same plot produce the same picture).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.errors import NotFound
from service.store import FINAL_STATUSES, JobStore
from smartcash_core.errors import SmartCashError
from smartcash_core.validation.params import ValidationResult

log = logging.getLogger("smartcash.service.artifacts")


class PlotArtifacts:
    def __init__(self, store: JobStore, cache_dir: Path) -> None:
        self.store = store
        self.cache_dir = cache_dir
        self.enabled = importlib.util.find_spec("matplotlib") is not None

    def collect(self, job_id: str, result: ValidationResult) -> dict[str, bytes]:
        """The job's artifacts (plot data) to store with its result; ``{}`` when it has none.

        Built in memory: the end of a job waits for no disk (a busy disk stalled it for tenths of a second).
        This replica's cache gets the file on first use, from the store, like every other replica.
        Plots are an extra: without matplotlib, or when this fails, the job still succeeds (no plots).
        """
        if not self.enabled or result.evaluator is None:
            return {}
        from smartcash_core.validation.plots import PLOT_DATA_FILE, plot_data, plot_data_bytes

        try:
            return {PLOT_DATA_FILE: plot_data_bytes(plot_data(result))}
        except (OSError, SmartCashError, ValueError, KeyError):
            log.exception("job %s: plot data not saved; the job has no plots", job_id)
            return {}

    def _plot_data_path(self, job_id: str) -> Path | None:
        """The local copy of the job's plot data, fetched from the store when this replica has none yet."""
        from smartcash_core.validation.plots import PLOT_DATA_FILE

        local = self.cache_dir / job_id / PLOT_DATA_FILE
        if local.is_file():
            return local
        content = self.store.get_artifact(job_id, PLOT_DATA_FILE)
        if content is None:
            return None
        _write_atomically(local, content)
        return local

    def names(self, job_id: str, status: str) -> list[str]:
        """Names of the job's plots; ``NotFound`` when it has none (unfinished, failed, no matplotlib)."""
        from smartcash_core.validation.plots import PLOT_NAMES

        if status != "succeeded":
            raise NotFound(*no_result_reason(job_id, status, self._error(job_id, status)))
        if not self.enabled:
            fix = "install the plots extra on the service: pip install 'smartcash-validation[plots]'"
            raise NotFound(f"job {job_id} has no plots: this service has no matplotlib", fix)
        if self._plot_data_path(job_id) is None:
            fix = "validate again on a service with matplotlib: plot data is saved when a job finishes"
            raise NotFound(f"job {job_id} has no plots: it finished without plot data", fix)
        return list(PLOT_NAMES)

    def _error(self, job_id: str, status: str) -> dict[str, Any] | None:
        if status not in FINAL_STATUSES:
            return None
        record = self.store.get(job_id, with_result=False)
        return None if record is None else record.error

    def path(self, job_id: str, name: str, status: str) -> Path:
        """The PNG of plot ``name`` (rendered from the plot data on first request)."""
        from smartcash_core.validation.plots import load_plot_data, render_plot

        names = self.names(job_id, status)
        if name not in names:  # the fixed set: nothing from the URL reaches the filesystem unchecked
            raise NotFound(f"job {job_id} has no plot named {name!r}", f"known plots: {', '.join(names)}")
        path = self.cache_dir / job_id / name
        if not path.is_file():
            data_path = self._plot_data_path(job_id)
            if data_path is None:  # removed from the cache between the two looks: report, do not crash
                raise NotFound(f"job {job_id} has no plots ({status})")
            render_plot(load_plot_data(data_path), name, path)
        return path


    def forget(self, job_id: str) -> None:
        """Drop this replica's cached plots of a deleted job (ids are 32 hex digits: no path tricks)."""
        shutil.rmtree(self.cache_dir / job_id, ignore_errors=True)

    def prune(self, exists: Callable[[str], bool]) -> int:
        """Drop cached plots of jobs the store no longer has (deleted by another replica's retention)."""
        stale = [entry.name for entry in self._cached_dirs() if not exists(entry.name)]
        for job_id in stale:
            self.forget(job_id)
        return len(stale)

    def _cached_dirs(self) -> list[Path]:
        try:
            return [entry for entry in self.cache_dir.iterdir() if entry.is_dir()]
        except FileNotFoundError:
            return []


def no_result_reason(job_id: str, status: str, error: dict[str, Any] | None) -> tuple[str, str]:
    """``(message, fix)`` for reading the result (per-image rows, plots) of a job that has none."""
    if status not in FINAL_STATUSES:
        return f"job {job_id} is {status}: it has no result yet", "wait until its status is succeeded"
    why = f": {error.get('code')}: {error.get('message')}" if error else ""
    return (
        f"job {job_id} {status}{why}; it has no result",
        "fix what the error says and submit a new validation (GET /v1/validations/{id} shows the error)",
    )


def _write_atomically(path: Path, content: bytes) -> None:
    """Concurrent readers (two requests for the same plot) see no file or the whole file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        temporary.write_bytes(content)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
