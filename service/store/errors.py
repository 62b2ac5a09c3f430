"""Errors of the job store: ``ServiceError``s, so a request that meets one gets the usual JSON body."""

from __future__ import annotations

from service.errors import ServiceError


class StoreUnavailable(ServiceError):
    """The database did not answer (down, unreachable, pool exhausted): the request may be retried."""

    status_code = 503
    code = "store_unavailable"


class StoreConfigError(ServiceError):
    """The store cannot be opened as configured (start-up error: bad URL, schema of a newer release)."""

    status_code = 500
    code = "store_config"


class MigrationError(StoreConfigError):
    """A migration file is malformed or missing, or the database schema is newer than this release."""

    code = "store_migration"
