"""The pixel cache stays under its memory cap and evicts least-recently-used arrays first."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from medviewer.imaging.cache import PixelCache


def _arr(n_bytes: int) -> np.ndarray:
    return np.zeros(n_bytes, np.uint8)


def test_evicts_least_recently_used_within_cap() -> None:
    cache = PixelCache(max_bytes=300)
    for key in "abc":
        cache.put(key, _arr(100))
    cache.get("a")  # a is now the most recent; b is the oldest
    cache.put("d", _arr(100))
    assert "b" not in cache and all(k in cache for k in "acd")
    assert cache.nbytes == 300


def test_array_larger_than_cap_is_returned_not_kept() -> None:
    cache = PixelCache(max_bytes=50)
    out = cache.get_or_load("big", lambda: _arr(100))
    assert out.nbytes == 100 and len(cache) == 0 and cache.nbytes == 0


def test_replacing_a_key_counts_bytes_once() -> None:
    cache = PixelCache(max_bytes=1000)
    cache.put("a", _arr(100))
    cache.put("a", _arr(200))
    assert cache.nbytes == 200 and len(cache) == 1


def test_cached_arrays_are_read_only() -> None:
    cache = PixelCache()
    arr = cache.get_or_load("a", lambda: np.ones(4))
    with pytest.raises(ValueError):
        arr[0] = 5


def test_loads_once_then_hits() -> None:
    cache = PixelCache()
    calls = []
    for _ in range(3):
        cache.get_or_load("k", lambda: calls.append(1) or _arr(8))
    assert len(calls) == 1 and cache.hits == 2 and cache.misses == 1


def test_threads_keep_the_byte_count_right() -> None:
    cache = PixelCache(max_bytes=10_000)

    def work(seed: int) -> None:
        for i in range(200):
            cache.get_or_load((seed, i % 37), lambda: _arr(97))

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.nbytes == 97 * len(cache) <= 10_000


def test_negative_cap_rejected() -> None:
    with pytest.raises(ValueError):
        PixelCache(-1)
