"""Typed errors raised by the library. The service maps them to HTTP status codes."""

from __future__ import annotations


class SmartCashError(Exception):
    """Base class of every error the library raises on purpose."""


class ClassTableError(SmartCashError, ValueError):
    """A class table is malformed (unknown ids, incomplete map, duplicate names)."""


class DeviceError(SmartCashError, ValueError):
    """A requested device does not exist or is not usable here."""


class ModelConfigError(SmartCashError, ValueError):
    """A model YAML/name cannot be built."""


class CheckpointError(SmartCashError):
    """A checkpoint cannot be loaded; the message names the file and the reason."""


class UnsafePickleError(CheckpointError):
    """A pickled checkpoint asked for a global or an operation outside the allow-list."""


class CheckpointMetadataError(CheckpointError):
    """A checkpoint's metadata or architecture has a field of the wrong type or out of bounds.

    ``field`` is the dotted name of the offending field (``imgsz``, ``yaml.width_multiple``, ...).
    """

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class CheckpointTooLargeError(CheckpointError):
    """A checkpoint exceeds a safety cap (parameters, header, pickle, archive member) before it is built."""


class DatasetError(SmartCashError):
    """A dataset cannot be used at all (missing path, no images).

    ``reason`` says which problem for programs (the service turns it into its error code): ``not_found``
    (the path), ``split_missing`` (data.yaml has no such split), ``split_entry_missing`` (a split names a
    path that does not exist), ``unreadable`` (data.yaml is not a readable YAML mapping),
    ``unsafe`` (:class:`UnsafeDatasetFile`),
    ``empty`` (no usable image); ``""`` for anything else.
    """

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class UnsafeDatasetFile(DatasetError):
    """A dataset file is refused before it is parsed in full: over a size cap, YAML aliases, too deeply
    nested (``smartcash_core.data.limits``). ``file`` names it, ``why`` says why (without the file);
    ``reason`` is ``unsafe``."""

    def __init__(self, file: str, why: str) -> None:
        super().__init__(f"{file}: {why}", "unsafe")
        self.file = file
        self.why = why


class MemoryBudgetError(SmartCashError, ValueError):
    """A pass's estimated peak memory exceeds the budget it was given. ``suggested_batch_size``: the
    largest batch size that fits (0 when even one image does not; then ``suggested_imgsz`` fits one)."""

    def __init__(
        self, message: str, estimate_bytes: int, budget_bytes: int, suggested_batch_size: int,
        suggested_imgsz: int | None = None,
    ) -> None:
        super().__init__(message)
        self.estimate_bytes = estimate_bytes
        self.budget_bytes = budget_bytes
        self.suggested_batch_size = suggested_batch_size
        self.suggested_imgsz = suggested_imgsz


class Cancelled(SmartCashError):
    """A validation pass was cancelled between batches."""


class DistributedError(SmartCashError):
    """A distributed run is misconfigured (torchrun environment, backend) or its ranks disagree."""


class MetricStateError(SmartCashError, ValueError):
    """Metric state arrays cannot be merged: no states, a key missing from a state, or a key with no rule."""


class InvalidParamsError(SmartCashError, ValueError):
    """A validation parameter outside its declared bounds or choices (names the parameter and the bound)."""


class ComparisonError(SmartCashError, ValueError):
    """Two validations cannot be compared (other images, protocol, classes or labels, or no saved state).

    ``code`` is a stable snake_case reason (``comparison_images_differ``, ``comparison_protocol_differs``,
    ``comparison_classes_differ``, ``comparison_labels_differ``, ``comparison_state_missing``,
    ``comparison_state_invalid``) that the service returns as its error code.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
