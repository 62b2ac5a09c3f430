"""Byte-bounded, thread-safe LRU caches and the process-wide registry behind ``get_cache_info()``.

Four named caches live in the registry:

- ``image``: decoded, letterboxed uint8 images keyed by (path, file size, mtime_ns, imgsz), so the next
  validation of the same set (the next epoch) skips decoding;
- ``label``: parsed label arrays keyed by (path, file size, mtime_ns);
- ``model``: loaded checkpoints keyed by sha256 (owned by the checkpoint loader);
- ``tensor``: small derived tensors such as the Detect head's decode grids.

Sizes are counted in bytes, not entries, because one 1280x960 image weighs as much as thousands of label
arrays. A value larger than the whole cache is simply not stored (it would evict everything for nothing).

``get_cache_info()`` is process-wide. What one validation pass gained from the caches is counted apart, by
:func:`track_cache_usage`: a context variable names the pass's :class:`CacheUsage`, so concurrent passes
(one per device in the service) never mix; worker threads join it through :func:`bind_cache_usage`.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar

import numpy as np
import torch

V = TypeVar("V")
R = TypeVar("R")
P = ParamSpec("P")

MiB = 1024 * 1024
DEFAULT_MAX_BYTES: dict[str, int] = {
    "image": 1024 * MiB,
    "label": 64 * MiB,
    "model": 2048 * MiB,
    "tensor": 256 * MiB,
}
CACHE_NAMES: tuple[str, ...] = tuple(DEFAULT_MAX_BYTES)
DATA_CACHE_NAMES: tuple[str, ...] = ("image", "label")


def estimate_nbytes(value: Any) -> int:
    """Bytes held by ``value``: exact for tensors, arrays and bytes, recursive for containers.

    Objects with an ``nbytes`` attribute (int) report themselves; anything else falls back to
    ``sys.getsizeof``, which is a lower bound but keeps unknown values from being counted as free.
    """
    if isinstance(value, torch.Tensor):
        return value.element_size() * value.nelement()
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value)
    if isinstance(value, (tuple, list)):
        return sys.getsizeof(value) + sum(estimate_nbytes(item) for item in value)
    if isinstance(value, Mapping):
        return sys.getsizeof(value) + sum(estimate_nbytes(item) for item in value.values())
    reported = getattr(value, "nbytes", None)
    if isinstance(reported, int):
        return reported
    return sys.getsizeof(value)


USAGE_FIELDS = ("hits", "misses", "hit_bytes", "stored_bytes")


class CacheUsage:
    """One pass's own use of the caches, per cache: ``hits``, ``misses``, ``hit_bytes`` (bytes served from
    the cache: work skipped) and ``stored_bytes`` (bytes this pass added). Thread-safe."""

    def __init__(self) -> None:
        self._counts: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()

    def add(self, cache: str, **amounts: int) -> None:
        with self._lock:
            counts = self._counts.setdefault(cache, dict.fromkeys(USAGE_FIELDS, 0))
            for name, amount in amounts.items():
                counts[name] += amount

    def snapshot(self) -> dict[str, dict[str, int]]:
        """Every registry cache (zeros when untouched), in registry order."""
        with self._lock:
            zeros = dict.fromkeys(USAGE_FIELDS, 0)
            return {name: dict(self._counts.get(name, zeros)) for name in CACHE_NAMES}


_USAGE: ContextVar[CacheUsage | None] = ContextVar("smartcash_cache_usage", default=None)


@contextmanager
def track_cache_usage() -> Iterator[CacheUsage]:
    """Count every cache access made in this context (and in workers bound to it) into a new usage."""
    usage = CacheUsage()
    token = _USAGE.set(usage)
    try:
        yield usage
    finally:
        _USAGE.reset(token)


def bind_cache_usage(function: Callable[P, R]) -> Callable[P, R]:
    """``function`` counting into the caller's usage when it runs on another thread (a thread pool's
    workers do not inherit context variables)."""
    usage = _USAGE.get()
    if usage is None:
        return function

    def bound(*args: P.args, **kwargs: P.kwargs) -> R:
        token = _USAGE.set(usage)
        try:
            return function(*args, **kwargs)
        finally:
            _USAGE.reset(token)

    return bound


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0


class LRUCache(Generic[V]):
    """A least-recently-used map bounded by the total byte size of its values.

    All methods are safe to call from several threads (one lock; values are never copied under it).
    ``max_bytes == 0`` disables the cache: every ``get`` misses and ``put`` stores nothing.
    """

    def __init__(self, name: str, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"cache {name!r}: max_bytes must be >= 0, got {max_bytes}")
        self.name = name
        self._max_bytes = int(max_bytes)
        self._entries: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._stats = CacheStats()
        self._lock = threading.Lock()

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    def get(self, key: Hashable) -> V | None:
        """The value under ``key`` (marked most recently used), or ``None`` on a miss."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self._stats.misses += 1
            else:
                self._entries.move_to_end(key)
                self._stats.hits += 1
        usage = _USAGE.get()
        if usage is not None:
            if entry is None:
                usage.add(self.name, misses=1)
            else:
                usage.add(self.name, hits=1, hit_bytes=entry[1])
        return None if entry is None else entry[0]

    def put(self, key: Hashable, value: V, nbytes: int | None = None) -> bool:
        """Store ``value``; evict least recently used entries until it fits. Returns whether it was stored."""
        size = estimate_nbytes(value) if nbytes is None else int(nbytes)
        with self._lock:
            self._remove_locked(key)
            if size > self._max_bytes:
                return False
            self._entries[key] = (value, size)
            self._bytes += size
            self._evict_locked()
        usage = _USAGE.get()
        if usage is not None:
            usage.add(self.name, stored_bytes=size)
        return True

    def get_or_create(self, key: Hashable, factory: Callable[[], V], nbytes: int | None = None) -> V:
        """The cached value, or ``factory()`` stored and returned. ``factory`` runs outside the lock."""
        value = self.get(key)
        if value is None:
            value = factory()
            self.put(key, value, nbytes)
        return value

    def discard(self, key: Hashable) -> None:
        with self._lock:
            self._remove_locked(key)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self, reset_stats: bool = False) -> None:
        """Drop every entry (not counted as evictions); optionally zero the counters too."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0
            if reset_stats:
                self._stats = CacheStats()

    def resize(self, max_bytes: int) -> None:
        """Change the byte bound, evicting at once if the cache now holds too much."""
        if max_bytes < 0:
            raise ValueError(f"cache {self.name!r}: max_bytes must be >= 0, got {max_bytes}")
        with self._lock:
            self._max_bytes = int(max_bytes)
            self._evict_locked()

    def info(self) -> dict[str, int]:
        """hits, misses, evictions, entries, bytes, max_bytes (a consistent snapshot)."""
        with self._lock:
            return {
                "hits": self._stats.hits,
                "misses": self._stats.misses,
                "evictions": self._stats.evictions,
                "entries": len(self._entries),
                "bytes": self._bytes,
                "max_bytes": self._max_bytes,
            }

    def _remove_locked(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry[1]

    def _evict_locked(self) -> None:
        while self._bytes > self._max_bytes and self._entries:
            _, (_, size) = self._entries.popitem(last=False)
            self._bytes -= size
            self._stats.evictions += 1


_REGISTRY: dict[str, LRUCache[Any]] = {
    name: LRUCache(name, max_bytes) for name, max_bytes in DEFAULT_MAX_BYTES.items()
}


def get_cache(name: str) -> LRUCache[Any]:
    """One of the registry's caches: ``image``, ``label``, ``model`` or ``tensor``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown cache {name!r}: known caches are {list(CACHE_NAMES)}") from None


def image_cache() -> LRUCache[Any]:
    return _REGISTRY["image"]


def label_cache() -> LRUCache[Any]:
    return _REGISTRY["label"]


def model_cache() -> LRUCache[Any]:
    return _REGISTRY["model"]


def tensor_cache() -> LRUCache[Any]:
    return _REGISTRY["tensor"]


def get_cache_info() -> dict[str, dict[str, int]]:
    """Per cache (image, label, model, tensor): hits, misses, evictions, entries, bytes, max_bytes."""
    return {name: cache.info() for name, cache in _REGISTRY.items()}


def configure_caches(
    image_bytes: int | None = None,
    label_bytes: int | None = None,
    model_bytes: int | None = None,
    tensor_bytes: int | None = None,
) -> None:
    """Set the byte bound of any cache (``None`` keeps the current bound, 0 disables the cache)."""
    wanted = {"image": image_bytes, "label": label_bytes, "model": model_bytes, "tensor": tensor_bytes}
    for name, max_bytes in wanted.items():
        if max_bytes is not None:
            _REGISTRY[name].resize(max_bytes)


def clear_data_caches(reset_stats: bool = False) -> None:
    """Drop decoded images and parsed labels; models and tensors stay (cheap to keep, slow to redo)."""
    for name in DATA_CACHE_NAMES:
        _REGISTRY[name].clear(reset_stats)


def clear_all_caches(reset_stats: bool = False) -> None:
    """Drop every cache's entries; with ``reset_stats`` also zero the counters (used by tests)."""
    for cache in _REGISTRY.values():
        cache.clear(reset_stats)
