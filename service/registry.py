"""Loaded models by name. Loading the same checkpoint bytes onto the same device twice reuses one model.

The reuse goes through the library's ``model`` cache (``smartcash_core.cache``), keyed by (file sha256,
device), so ``get_cache_info()`` reports loaded models next to the data caches.

Loading is blocking torch work: routes call these methods from a worker thread, never on the event loop.
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

from service.errors import Conflict, NotFound
from service.paths import resolve_under
from smartcash_core.cache import model_cache
from smartcash_core.checkpoint import LoadedModel
from smartcash_core.device import select_device

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
        self._lock = threading.RLock()

    def load(self, name: str, checkpoint: str, device: str | None = None) -> ModelEntry:
        """Load ``checkpoint`` (relative to the checkpoint root) under ``name`` (blocking).

        Same name with the same bytes and device: returns the existing entry. Same name with other bytes:
        ``Conflict``. Other name with the same bytes and device: shares the loaded model.
        """
        path = resolve_under(self.checkpoint_root, checkpoint, "checkpoint")
        if not path.is_file():
            raise NotFound(
                f"checkpoint {checkpoint!r} is not a file", "name a checkpoint file, not a directory"
            )
        return self.load_path(name, checkpoint, path, device)

    def load_path(self, name: str, label: str, path: Path, device: str | None = None) -> ModelEntry:
        """Load a checkpoint the operator chose (already trusted: no root check), shown as ``label``."""
        digest = file_sha256(path)
        wanted_device = device or self.default_device
        with self._lock:  # loads are rare; serialising them keeps two clients from loading one file twice
            existing = self._entries.get(name)
            if existing is not None:
                return self._existing_or_conflict(existing, digest, wanted_device)
            return self._load_new(name, label, path, digest, wanted_device)

    def _existing_or_conflict(self, entry: ModelEntry, digest: str, device: str) -> ModelEntry:
        same_device = device == "auto" or _same_device(entry.loaded.device, device)
        if entry.file_sha256 == digest and same_device:
            return entry
        raise Conflict(
            f"model name {entry.name!r} is already bound to {entry.checkpoint!r} on {entry.device}",
            f"DELETE /v1/models/{entry.name} first, or load under another name",
        )

    def _load_new(self, name: str, checkpoint: str, path: Path, digest: str, device: str) -> ModelEntry:
        cached = model_cache().get(_cache_key(digest, select_device(device)))
        started = time.perf_counter()
        loaded = cached if cached is not None else self._loader(path, device)
        seconds = time.perf_counter() - started
        model_cache().put(_cache_key(digest, loaded.device), loaded, _model_nbytes(loaded))
        if cached is None and self._on_load is not None:
            self._on_load(seconds)
        entry = ModelEntry(
            name=name,
            checkpoint=checkpoint,
            file_sha256=digest,
            loaded=loaded,
            loaded_at=time.time(),
            load_seconds=seconds,
            reused=cached is not None,
        )
        self._entries[name] = entry
        return entry

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
