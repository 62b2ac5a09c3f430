"""The service fixtures (checkpoint root, app factory) for the adversarial tests."""

from tests.service.conftest import (  # noqa: F401 (pytest finds fixtures by name in this namespace)
    checkpoint_root,
    client_for,
    data_root,
    settings_for,
)
