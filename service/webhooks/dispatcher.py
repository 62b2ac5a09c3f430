"""The replica's webhook thread: claim a due notification from the store, POST it, record the outcome.

Notifications live in the store, so any replica delivers any job's (the one that ran it usually does first:
it is woken when a job ends), and a restart loses none: a lease left by a dead replica runs out, and a
restarted unshared (SQLite) service frees every lease at once. A failed attempt (no 2xx, a transport error,
a target that no longer passes the policy) is due again after ``backoff_s * 2**(attempt - 1)`` seconds
(capped at ``backoff_max_s``, +/-10 % jitter) until ``max_attempts`` attempts were made; then it is
``failed`` and stays visible on the job.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from service.store import JobStore, NotificationRecord
from service.summaries import headline_metrics, job_links, record_summary, run_link
from service.webhooks.policy import CallbackPolicy, CallbackRefused
from service.webhooks.signing import signed_headers

log = logging.getLogger("smartcash.service.webhooks")
EVENT = "validation.finished"
_MIN_LEASE_S = 30.0


@dataclass(frozen=True)
class WebhookConfig:
    secret: bytes
    max_attempts: int = 8
    backoff_s: float = 2.0
    backoff_max_s: float = 600.0
    timeout_s: float = 10.0
    poll_s: float = 1.0
    public_url: str = ""

    @property
    def lease_s(self) -> float:
        """Longer than one attempt can take, so a live deliverer never loses its lease mid-POST."""
        return max(_MIN_LEASE_S, 3 * self.timeout_s)

    def retry_in(self, attempts_made: int) -> float | None:
        """Seconds until the next attempt after ``attempts_made`` failed ones; ``None``: give up."""
        if attempts_made >= self.max_attempts:
            return None
        delay = min(self.backoff_max_s, self.backoff_s * 2 ** (attempts_made - 1))
        return delay * random.uniform(0.9, 1.1)


def payload(record: Any, public_url: str = "") -> dict[str, Any]:
    """The JSON body of a job's notification (``record`` read with its result)."""
    links = job_links(record.id, public_url)
    run = run_link(record.tags, public_url)
    if run is not None:
        links["run"] = run
    return {
        "event": EVENT,
        "job": record_summary(record),
        "metrics": headline_metrics(record.result) if record.status == "succeeded" else None,
        "links": links,
    }


class WebhookDispatcher:
    """One delivery thread per replica."""

    def __init__(
        self,
        store: JobStore,
        policy: CallbackPolicy,
        config: WebhookConfig,
        replica: str,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.config = config
        self.replica = replica
        self._http = httpx.Client(timeout=config.timeout_s, follow_redirects=False, transport=transport)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="smartcash-webhooks", daemon=True)

    def start(self) -> None:
        """Free the leases a previous run of this replica left (all of them on an unshared store), then
        deliver. Idempotent: an app's lifespan may be entered more than once."""
        if self.thread.ident is not None:
            return
        try:
            freed = self.store.release_notifications(self.replica if self.store.shared else None)
            if freed:
                log.warning("retrying %d webhook deliveries a previous run left unfinished", freed)
        except Exception as exc:  # the store is down: leases run out by themselves
            log.warning("could not free webhook leases: %s", exc)
        self.thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float) -> None:
        self._stopping.set()
        self._wake.set()
        if self.thread.is_alive():
            self.thread.join(timeout)
        self._http.close()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                notification = self.store.claim_notification(self.replica, self.config.lease_s)
            except Exception as exc:  # the store blinked: try again at the next poll
                log.warning("webhooks: cannot claim notifications: %s", exc)
                notification = None
            if notification is None:
                self._wake.wait(self.config.poll_s)
                continue
            try:
                self.deliver(notification)
            except Exception:  # a bug here must not stop every later delivery
                log.exception("webhooks: delivery of job %s failed unexpectedly", notification.job_id)

    def deliver(self, notification: NotificationRecord) -> bool:
        """One attempt; records the outcome in the store. ``True`` when the receiver answered 2xx."""
        record = self.store.get(notification.job_id, with_result=True)
        if record is None:  # cannot happen while jobs are never deleted; never retry it forever
            self.store.notification_attempted(notification.job_id, self.replica, False, None, "job not found")
            return False
        body = json.dumps(payload(record, self.config.public_url), separators=(",", ":")).encode()
        status_code, error = self._post(notification.url, body, record.id)
        delivered = status_code is not None and 200 <= status_code < 300
        attempts = notification.attempts + 1
        retry_in = None if delivered else self.config.retry_in(attempts)
        self.store.notification_attempted(
            record.id, self.replica, delivered, status_code, error, retry_in_s=retry_in
        )
        level = logging.INFO if delivered else logging.WARNING
        log.log(level, "webhook %s", "delivered" if delivered else "attempt failed",
                extra={"job_id": record.id, "attempt": attempts, "status": status_code, "error": error})
        return delivered

    def _post(self, url: str, body: bytes, job_id: str) -> tuple[int | None, str | None]:
        try:
            target = self.policy.check(url)  # again: the DNS answer may have changed since the submit
        except CallbackRefused as exc:
            return None, exc.message
        headers = signed_headers(self.config.secret, int(time.time()), body, job_id, EVENT)
        headers["Host"] = target.host_header()
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        try:
            response = self._http.post(
                target.pinned_url(), content=body, headers=headers, extensions=extensions
            )
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"
        error = None if response.is_success else f"HTTP {response.status_code}"
        return response.status_code, error
