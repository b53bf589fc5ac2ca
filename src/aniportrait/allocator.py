"""The C allocator's policy for large tensors: keep freed memory in the process instead of returning it.

glibc serves every allocation above its mmap threshold (at most 32 MB) with a fresh ``mmap`` and unmaps it when the
tensor is freed, and it trims the heap's free top back to the system; the next allocation of the same size then
faults its pages in again, zero-filled by the kernel. A frame allocates and frees tensors of tens of MB many times
(the fine samples of 16,384 rays, the 512x512 texture lookups), and on the 2-core VMs this project measures on, those
page faults cost a large part of a frame. :func:`keep_freed_memory` turns both off, so freed memory is mostly
reused: exact ``sshq512`` frames ran 1.3-2.1x faster there (``benchmarks/cpu_frame_time.py`` runs both ways;
``benchmarks/results/cpu-frame-time-2core-epyc-2threads.json``). The cost is that the process's resident memory
stays at its peak. The ``aniportrait`` command applies it; a Python caller may call it once at start-up.
Elsewhere than Linux with glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["keep_freed_memory"]

# mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
# Free heap kept at the top before trimming (mallopt takes an int): 2 GB, in effect never.
TRIM_THRESHOLD = 2**31 - 1

_applied = False


def keep_freed_memory() -> bool:
    """Serve large allocations from the heap and never trim it (glibc ``mallopt``). Returns whether the policy is
    in effect (False where the C library is not glibc)."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied
