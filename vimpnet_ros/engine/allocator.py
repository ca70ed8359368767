"""Keep freed tensor memory in the process instead of returning it to the OS (glibc only).

PyTorch's CPU allocator is plain ``malloc``. glibc serves blocks above its mmap
threshold (at most 32 MiB) with fresh ``mmap`` pages and unmaps them on free, so
every large activation of every frame pays page faults and kernel zeroing again:
about a fifth of the window step at 640x384 on this project's machine. Disabling
mmap for malloc and never trimming the heap lets the same addresses serve the next
frame. The cost: the resident size stays at its peak (it would reach it anyway on
the next frame), which suits a long-running engine.

glibc also gives threads their own arenas, whose extra heaps are unmapped when
they empty, so a worker thread's activations would still come and go. One arena
for all threads closes that gap, but glibc fixes its arena limit when the second
thread first allocates: call :func:`keep_freed_memory` before starting threads
(the node does it first thing; the engine calls it again at load, which then only
covers threads started later).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

LOGGER = logging.getLogger(__name__)

#: ``mallopt`` parameters from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
#: Largest trim threshold mallopt accepts (an int): never give the heap top back.
NO_TRIM = 2**31 - 1

_applied = False


def keep_freed_memory() -> bool:
    """Tune glibc malloc for repeated large tensors (process-wide, once); False where it is not glibc."""
    global _applied
    if _applied:
        return True
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        LOGGER.debug("no glibc mallopt (libc %s): keeping the default allocator", name)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if not (mallopt(M_MMAP_MAX, 0) and mallopt(M_TRIM_THRESHOLD, NO_TRIM) and mallopt(M_ARENA_MAX, 1)):
        LOGGER.warning("mallopt refused the allocator settings; large tensors keep using fresh mmap pages")
        return False
    _applied = True
    LOGGER.info("CPU allocator: large tensors reuse freed heap memory (mallopt M_MMAP_MAX=0, no trimming, one arena)")
    return True
