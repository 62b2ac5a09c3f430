"""Webhooks of one app: the submit-time check of ``callback_url`` and the delivery thread's lifecycle."""

from __future__ import annotations

import logging

import httpx

from service.settings import Settings
from service.store import JobStore
from service.webhooks.dispatcher import WebhookConfig, WebhookDispatcher
from service.webhooks.policy import CallbackPolicy, CallbackRefused, Resolver, system_resolver

log = logging.getLogger("smartcash.service.webhooks")


class Webhooks:
    """Refuses callbacks unless a secret and an allow-list are configured; delivers the accepted ones."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        replica: str,
        resolver: Resolver = system_resolver,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.policy = CallbackPolicy(settings.webhook_allowed_hosts, resolver)
        secret = settings.webhook_secret_value()
        self.dispatcher: WebhookDispatcher | None = None
        if secret is not None:
            config = WebhookConfig(
                secret=secret,
                max_attempts=settings.webhook_max_attempts,
                backoff_s=settings.webhook_backoff_s,
                backoff_max_s=settings.webhook_backoff_max_s,
                timeout_s=settings.webhook_timeout_s,
                poll_s=settings.webhook_poll_s,
                public_url=settings.public_url or "",
            )
            self.dispatcher = WebhookDispatcher(store, self.policy, config, replica, transport)

    def check_callback(self, url: str | None) -> str | None:
        """``url`` when the service may call it (blocking: resolves the host); ``CallbackRefused`` (400)
        otherwise. ``None`` passes through (no webhook asked for)."""
        if url is None:
            return None
        if self.dispatcher is None or not self.policy.enabled:
            raise CallbackRefused(
                "this service sends no webhooks (SMARTCASH_WEBHOOK_SECRET or "
                "SMARTCASH_WEBHOOK_ALLOWED_HOSTS is not set)",
                "drop callback_url and follow the job's events, or ask the operator to enable webhooks",
            )
        self.policy.check(url)
        return url

    def wake(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.wake()

    def start(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.start()
        else:
            log.info("webhooks disabled: SMARTCASH_WEBHOOK_SECRET is not set")

    def stop(self, timeout: float = 5.0) -> None:
        if self.dispatcher is not None:
            self.dispatcher.stop(timeout)
