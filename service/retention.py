"""Retention: finished jobs are kept ``SMARTCASH_RETENTION_DAYS`` days or ``SMARTCASH_RETENTION_MAX_JOBS``
jobs, whichever limit a job crosses first; older ones go with their per-image rows, artifacts and cached
plots. Applied when the service starts and every ``SMARTCASH_RETENTION_INTERVAL_S`` after that, on a
thread of its own (a large deletion never delays a request).

Replicas sharing a PostgreSQL store each run it; the deletions are idempotent, and each replica also drops
its cached plots of jobs another replica deleted.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from service.artifacts import PlotArtifacts
from service.store import JobStore

log = logging.getLogger("smartcash.service.retention")
_DAY_S = 86_400.0


@dataclass(frozen=True)
class RetentionPolicy:
    days: float  # 0: no age limit
    max_jobs: int  # 0: no count limit
    interval_s: float

    @property
    def enabled(self) -> bool:
        return self.days > 0 or self.max_jobs > 0


class RetentionSweeper:
    def __init__(self, store: JobStore, plots: PlotArtifacts, policy: RetentionPolicy) -> None:
        self.store, self.plots, self.policy = store, plots, policy
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self) -> list[str]:
        """Apply the policy once; returns the ids of the jobs deleted here."""
        policy = self.policy
        older_than_s = policy.days * _DAY_S if policy.days > 0 else None
        deleted = self.store.delete_finished(older_than_s, policy.max_jobs if policy.max_jobs > 0 else None)
        for job_id in deleted:
            self.plots.forget(job_id)
        stale = self.plots.prune(lambda job_id: self.store.get(job_id, with_result=False) is not None)
        if deleted or stale:
            log.info("retention deleted %d finished jobs, %d stale plot caches", len(deleted), stale)
        return deleted

    def start(self) -> None:
        """Sweep now (on the thread) and then every interval; an app's lifespan may start it again."""
        if not self.policy.enabled or (self._thread is not None and self._thread.is_alive()):
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="smartcash-retention", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sweep()
            except Exception as exc:  # the store may be down for a while: try again next time
                log.warning("retention sweep failed: %s", exc)
            self._stop.wait(self.policy.interval_s)
