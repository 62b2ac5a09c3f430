"""Loaded models by name. Loading the same checkpoint bytes onto the same device twice reuses one model.

The reuse goes through the library's ``model`` cache (``smartcash_core.cache``), keyed by (file sha256,
device), so ``get_cache_info()`` reports loaded models next to the data caches.

Loading is blocking torch work: routes call ``load`` from a worker thread, never on the event loop. The
registry lock guards only the name tables and is never held across a load, so ``get``/``len`` (called by
async routes such as ``/v2/health/ready`` and validation submits) answer at once while a model loads: a
load reserves its name, loads with no lock held, then publishes. A second load of a name whose load is in
flight waits for it, then gets the same answer as any later request (the model when it is the same file
and device, 409 otherwise; if the first load failed, the waiter loads it itself).

Library errors raised by a load name the checkpoint as the client did (relative to the checkpoint root),
never by its absolute server path.

Checkpoint-in-request jobs (``POST /v1/validations {"checkpoint": ...}``) need no name: ``for_checkpoint``
returns an *ephemeral* entry (``name == ""``) whose model is a loaded model with the same file sha256 (a
named one, or one in the model cache) or is loaded now and kept only in the model cache, where the byte cap
evicts it least-recently-used first. A job holds its model while it runs, so eviction never pulls weights
from under a validation; they are freed when the job ends.
"""

from __future__ import annotations

import gc
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from service.errors import CheckpointChanged, Conflict, NotFound
from service.paths import resolve_under
from smartcash_core.cache import model_cache
from smartcash_core.checkpoint import LoadedModel
from smartcash_core.device import select_device
from smartcash_core.errors import CheckpointError, SmartCashError

ModelLoader = Callable[[Path, str], LoadedModel]
_HASH_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ModelEntry:
    """A name bound to a loaded model and where it came from."""

    name: str
    checkpoint: str
    file_sha256: str
    loaded: LoadedModel
    loaded_at: float
    load_seconds: float
    reused: bool

    @property
    def device(self) -> str:
        return str(self.loaded.device)

    @property
    def ephemeral(self) -> bool:
        """Loaded for a checkpoint-in-request job: no name, held by the model cache only."""
        return not self.name


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks (checkpoints can be hundreds of MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ModelRegistry:
    """Name -> model, plus a (file sha256, device) -> model cache shared by all names."""

    def __init__(
        self,
        checkpoint_root: Path,
        default_device: str,
        loader: ModelLoader,
        on_load: Callable[[float], None] | None = None,
    ) -> None:
        self.checkpoint_root = checkpoint_root
        self.default_device = default_device
        self._loader = loader
        self._on_load = on_load
        self._entries: dict[str, ModelEntry] = {}
        self._loading: dict[str, threading.Event] = {}  # names whose load is in flight
        self._loading_files: dict[tuple[str, str, str], threading.Event] = {}  # ephemeral loads in flight
        self._lock = threading.RLock()  # guards the tables only, never held across a load
        self._default_device_name: str | None = None

    def load(self, name: str, checkpoint: str, device: str | None = None) -> ModelEntry:
        """Load ``checkpoint`` (relative to the checkpoint root) under ``name`` (blocking).

        Same name with the same bytes and device: returns the existing entry. Same name with other bytes:
        ``Conflict``. Other name with the same bytes and device: shares the loaded model.
        """
        return self.load_path(name, checkpoint, self._checkpoint_file(checkpoint), device)

    def _checkpoint_file(self, checkpoint: str) -> Path:
        path = resolve_under(self.checkpoint_root, checkpoint, "checkpoint")
        if not path.is_file():
            raise NotFound(
                f"checkpoint {checkpoint!r} is not a file", "name a checkpoint file, not a directory"
            )
        return path

    # -- checkpoint-in-request (ephemeral) models ---------------------------------------------------------
    def default_device_name(self) -> str:
        """The device the configured default (``auto``: CUDA, MPS, CPU) is here, e.g. ``cpu`` or ``cuda:0``:
        where checkpoint-in-request jobs run."""
        if self._default_device_name is None:
            self._default_device_name = str(select_device(self.default_device))
        return self._default_device_name

    def loaded_with(self, digest: str, device: str) -> LoadedModel | None:
        """A model already loaded from a file with this sha256 on ``device``: named first, then cached."""
        with self._lock:
            named = next(
                (e.loaded for e in self._entries.values() if e.file_sha256 == digest and e.device == device),
                None,
            )
        return named if named is not None else model_cache().get(_cache_key(digest, torch.device(device)))

    def for_checkpoint(self, checkpoint: str, expected_sha256: str | None = None) -> ModelEntry:
        """An ephemeral entry for ``checkpoint`` on the default device (blocking: hashes, maybe loads).

        With ``expected_sha256`` (a queued job's digest) a model of those bytes that is still loaded is used
        even if the file has changed since; otherwise the file must still have those bytes
        (``CheckpointChanged``), so a job never validates other weights than it was submitted with."""
        device = self.default_device_name()
        if expected_sha256:
            loaded = self.loaded_with(expected_sha256, device)
            if loaded is not None:
                return _ephemeral(checkpoint, expected_sha256, loaded, 0.0, reused=True)
        path = self._checkpoint_file(checkpoint)
        digest = self._digest(path, checkpoint)
        if expected_sha256 and digest != expected_sha256:
            raise CheckpointChanged(
                f"checkpoint {checkpoint!r} changed after the job was submitted (sha256 {digest[:12]}..., "
                f"submitted {expected_sha256[:12]}...)",
                "write each epoch's checkpoint to a new file, or submit the job again",
            )
        return self._load_ephemeral(checkpoint, path, digest, device)

    def _digest(self, path: Path, label: str) -> str:
        try:
            return file_sha256(path)
        except OSError as exc:
            raise CheckpointError(f"{label}: cannot be read ({exc.strerror or type(exc).__name__})") from exc

    def _load_ephemeral(self, checkpoint: str, path: Path, digest: str, device: str) -> ModelEntry:
        """Single flight per (file, device): concurrent submits of a new checkpoint load it once."""
        key = _cache_key(digest, torch.device(device))
        while True:
            loaded = self.loaded_with(digest, device)
            if loaded is not None:
                return _ephemeral(checkpoint, digest, loaded, 0.0, reused=True)
            with self._lock:
                in_flight = self._loading_files.get(key)
                if in_flight is None:
                    reservation = self._loading_files[key] = threading.Event()
                    break
            in_flight.wait()
        try:
            entry = self._load_new("", checkpoint, path, digest, device)
            return _ephemeral(checkpoint, digest, entry.loaded, entry.load_seconds, reused=entry.reused)
        finally:
            with self._lock:
                del self._loading_files[key]
            reservation.set()

    def load_path(self, name: str, label: str, path: Path, device: str | None = None) -> ModelEntry:
        """Load a checkpoint the operator chose (already trusted: no root check), shown as ``label``."""
        digest = self._digest(path, label)
        wanted_device = device or self.default_device
        while True:
            with self._lock:
                existing = self._entries.get(name)
                if existing is not None:
                    return self._existing_or_conflict(existing, digest, wanted_device)
                in_flight = self._loading.get(name)
                if in_flight is None:
                    reservation = self._loading[name] = threading.Event()
                    break
            in_flight.wait()  # another request is loading this name: then decide like any later request
        try:
            entry = self._load_new(name, label, path, digest, wanted_device)
            with self._lock:
                self._entries[name] = entry
            return entry
        finally:
            with self._lock:
                del self._loading[name]
            reservation.set()

    def _existing_or_conflict(self, entry: ModelEntry, digest: str, device: str) -> ModelEntry:
        same_device = device == "auto" or _same_device(entry.loaded.device, device)
        if entry.file_sha256 == digest and same_device:
            return entry
        raise Conflict(
            f"model name {entry.name!r} is already bound to {entry.checkpoint!r} on {entry.device}",
            f"DELETE /v1/models/{entry.name} first, or load under another name",
        )

    def _load_new(self, name: str, checkpoint: str, path: Path, digest: str, device: str) -> ModelEntry:
        """Load (or reuse) the model; runs with no lock held."""
        cached = model_cache().get(_cache_key(digest, select_device(device)))
        started = time.perf_counter()
        loaded = cached if cached is not None else self._load_file(path, checkpoint, device)
        seconds = time.perf_counter() - started
        model_cache().put(_cache_key(digest, loaded.device), loaded, _model_nbytes(loaded))
        if cached is None and self._on_load is not None:
            self._on_load(seconds)
        return ModelEntry(
            name=name,
            checkpoint=checkpoint,
            file_sha256=digest,
            loaded=loaded,
            loaded_at=time.time(),
            load_seconds=seconds,
            reused=cached is not None,
        )

    def _load_file(self, path: Path, label: str, device: str) -> LoadedModel:
        try:
            return self._loader(path, device)
        except SmartCashError as exc:
            exc.args = (self._relative(str(exc), path, label), *exc.args[1:])
            raise

    def _relative(self, message: str, path: Path, label: str) -> str:
        """The message with the server's absolute paths replaced by what the client named."""
        message = message.replace(str(path), label)
        root = str(self.checkpoint_root.resolve())
        return message.replace(root + "/", "").replace(root, ".")

    def get(self, name: str) -> ModelEntry:
        with self._lock:
            entry = self._entries.get(name)
        if entry is None:
            raise NotFound(
                f"no model named {name!r} is loaded", "POST /v1/models to load it; GET /v1/models lists"
            )
        return entry

    def entries(self) -> list[ModelEntry]:
        with self._lock:
            return sorted(self._entries.values(), key=lambda entry: entry.name)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def remove(self, name: str) -> ModelEntry:
        """Unbind ``name``; the weights are freed once no other name (and no running job) holds them."""
        with self._lock:
            entry = self.get(name)
            del self._entries[name]
            still_used = any(other.loaded is entry.loaded for other in self._entries.values())
            if not still_used:
                model_cache().discard(_cache_key(entry.file_sha256, entry.loaded.device))
        if not still_used:
            _release_memory(entry.loaded.device)
        return entry


def _ephemeral(
    checkpoint: str, digest: str, loaded: LoadedModel, seconds: float, reused: bool
) -> ModelEntry:
    return ModelEntry(
        name="",
        checkpoint=checkpoint,
        file_sha256=digest,
        loaded=loaded,
        loaded_at=time.time(),
        load_seconds=seconds,
        reused=reused,
    )


def _cache_key(file_sha256: str, device: torch.device) -> tuple[str, str, str]:
    return ("checkpoint", file_sha256, str(device))


def _model_nbytes(loaded: LoadedModel) -> int:
    """Bytes of the model's parameters and buffers: what keeping it loaded costs."""
    tensors = [*loaded.model.parameters(), *loaded.model.buffers()]
    return sum(tensor.element_size() * tensor.nelement() for tensor in tensors)


def _same_device(actual: torch.device, wanted: str) -> bool:
    wanted_device = torch.device(wanted)
    if wanted_device.type != actual.type:
        return False
    return wanted_device.index is None or wanted_device.index == (actual.index or 0)


def _release_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
