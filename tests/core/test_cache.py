"""The byte-bounded LRU caches and the get_cache_info() registry."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from smartcash_core import cache as cache_module
from smartcash_core.cache import (
    CACHE_NAMES,
    LRUCache,
    clear_data_caches,
    configure_caches,
    estimate_nbytes,
    get_cache,
    get_cache_info,
)


def test_hits_misses_and_bytes_are_counted() -> None:
    cache: LRUCache[np.ndarray] = LRUCache("t", max_bytes=1000)
    assert cache.get("a") is None
    cache.put("a", np.zeros(100, dtype=np.uint8))
    got = cache.get("a")
    assert got is not None and got.shape == (100,)
    info = cache.info()
    assert info == {"hits": 1, "misses": 1, "evictions": 0, "entries": 1, "bytes": 100, "max_bytes": 1000}


def test_least_recently_used_is_evicted_first() -> None:
    cache: LRUCache[bytes] = LRUCache("t", max_bytes=300)
    for key in "abc":
        cache.put(key, b"x" * 100)
    cache.get("a")  # now b is the least recently used
    cache.put("d", b"y" * 100)
    assert "b" not in cache and {"a", "c", "d"} <= {k for k in "abcd" if k in cache}
    assert cache.info()["evictions"] == 1
    assert cache.info()["bytes"] == 300


def test_value_larger_than_cache_is_not_stored_and_evicts_nothing() -> None:
    cache: LRUCache[bytes] = LRUCache("t", max_bytes=150)
    cache.put("small", b"s" * 100)
    assert cache.put("huge", b"h" * 200) is False
    assert "small" in cache and "huge" not in cache
    assert cache.info()["evictions"] == 0


def test_replacing_a_key_updates_bytes() -> None:
    cache: LRUCache[bytes] = LRUCache("t", max_bytes=1000)
    cache.put("k", b"a" * 100)
    cache.put("k", b"b" * 300)
    assert cache.info()["bytes"] == 300 and len(cache) == 1


def test_resize_evicts_and_zero_disables() -> None:
    cache: LRUCache[bytes] = LRUCache("t", max_bytes=1000)
    for index in range(5):
        cache.put(index, b"z" * 100)
    cache.resize(250)
    assert len(cache) == 2 and cache.info()["evictions"] == 3
    cache.resize(0)
    assert len(cache) == 0
    cache.put("x", b"1")
    assert cache.get("x") is None


def test_estimate_nbytes_is_exact_for_arrays_and_tensors() -> None:
    assert estimate_nbytes(torch.zeros(10, 4, dtype=torch.float32)) == 160
    assert estimate_nbytes(np.zeros((3, 5), dtype=np.float64)) == 120
    pair = (np.zeros(10, dtype=np.uint8), torch.zeros(2, dtype=torch.int64))
    assert estimate_nbytes(pair) >= 26


def test_get_or_create_calls_factory_once() -> None:
    cache: LRUCache[torch.Tensor] = LRUCache("t", max_bytes=10_000)
    calls = []

    def factory() -> torch.Tensor:
        calls.append(1)
        return torch.arange(4)

    first = cache.get_or_create("grid", factory)
    second = cache.get_or_create("grid", factory)
    assert torch.equal(first, second) and len(calls) == 1


def test_concurrent_puts_keep_byte_accounting_consistent() -> None:
    cache: LRUCache[bytes] = LRUCache("t", max_bytes=50 * 64)

    def worker(offset: int) -> None:
        for index in range(500):
            cache.put((offset, index % 80), b"q" * 64)
            cache.get((offset, (index * 7) % 80))

    threads = [threading.Thread(target=worker, args=(offset,)) for offset in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    info = cache.info()
    assert info["bytes"] == info["entries"] * 64 <= info["max_bytes"]
    assert info["hits"] + info["misses"] == 4 * 500


def test_registry_reports_every_cache_with_all_fields() -> None:
    info = get_cache_info()
    assert set(info) == set(CACHE_NAMES) == {"image", "label", "model", "tensor"}
    for entry in info.values():
        assert set(entry) == {"hits", "misses", "evictions", "entries", "bytes", "max_bytes"}


def test_configure_and_clear_data_caches() -> None:
    image = get_cache("image")
    tensor = get_cache("tensor")
    old_image_max, old_tensor_max = image.max_bytes, tensor.max_bytes
    try:
        configure_caches(image_bytes=4096)
        assert get_cache_info()["image"]["max_bytes"] == 4096
        image.put("img", b"i" * 100)
        tensor.put("grid", torch.zeros(4))
        clear_data_caches()
        assert "img" not in image and "grid" in tensor
    finally:
        tensor.discard("grid")
        configure_caches(image_bytes=old_image_max, tensor_bytes=old_tensor_max)


def test_unknown_cache_name_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="known caches"):
        cache_module.get_cache("weights")
