"""glibc's malloc set up for training on CPU: a step reuses the previous step's memory instead of faulting it in."""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h
MMAP_THRESHOLD_MAX = 32 * 2**20  # the largest glibc accepts on 64-bit
NEVER_TRIM = 2**31 - 1


def keep_freed_memory() -> bool:
    """Serve blocks up to 32 MiB from the heap and never hand freed heap back to the system.

    By default glibc maps large blocks (a batch's activations and logits) afresh and trims the heap after each
    step, so every step faults its memory in again page by page: a 3 x 128 GPT on 2 CPU cores took 15,000-21,000
    minor page faults per step, and runs 15-24% faster without them (docs/benchmarks.md, "Page faults"). Both
    settings are needed: either alone turns off glibc's adaptive thresholds and faults more. The cost is that the
    process keeps its peak heap. Blocks over 32 MiB are still mapped each step; `MALLOC_MMAP_MAX_=0` in the
    environment keeps those too, but then no thread but the main one can allocate over 64 MiB at once, so it is
    left to the user. PyTorch's CPU tuning guide recommends jemalloc or tcmalloc for the same reason;
    this needs no install. Returns whether glibc took the settings (False elsewhere: the allocator is left alone).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
    except (OSError, AttributeError):  # not glibc (e.g. musl without mallopt)
        return False
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1 and mallopt(M_TRIM_THRESHOLD, NEVER_TRIM) == 1
