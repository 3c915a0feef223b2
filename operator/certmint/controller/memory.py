"""How the operator's process hands memory back: few malloc arenas, and freed heap returned.

CPython frees the objects of a burst (a listing of thousands of objects, a restart's
reconcile of every Certificate), but glibc keeps freed heap for reuse. By default it also
gives each thread that allocates its own arena, up to eight per core, and a burst spread
over a dozen threads leaves a dozen half-empty heaps behind: with 10,000 Certificates that
alone doubled the RSS after a restart. Two arenas and a trim after each burst keep the RSS
near what is live.
"""
from __future__ import annotations

import ctypes
import functools
import gc
import threading

M_ARENA_MAX = -8  # mallopt parameter (glibc malloc.h)
ARENAS = 2
TRIM_PERIOD = 30.0  # seconds between returns of freed heap to the system


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: its allocator has its own policy
        return None


def limit_arenas(arenas: int = ARENAS) -> None:
    """Call before threads start allocating: arenas already made stay."""
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(M_ARENA_MAX, arenas)


def release_free_memory(collect: bool = True) -> None:
    """Hand the heap freed after a burst back to the system (ctypes releases the GIL around it)."""
    if collect:
        gc.collect()
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def trim_now_and_then(stop: threading.Event, period: float = TRIM_PERIOD) -> None:
    """kopf's listings (at start, and after a watch is restarted) leave freed heap behind too,
    at moments certmint does not see; trimming now and then returns it."""
    while not stop.wait(period):
        release_free_memory(collect=False)
