"""Keep freed CPU memory in the process instead of handing it back to the OS after every operation.

glibc returns large freed blocks to the kernel at once (``mmap``'d blocks above a dynamic threshold,
heap tops above the trim threshold). A CPU evaluation allocates and frees activation-sized buffers
at every operation, so each one pays for fresh zeroed pages; on the virtual machines purebench is
developed on that cost dominated elementwise work (a 1M-element multiply took 1.3 ms with fresh
pages, 0.13 ms with reused ones) and made a stacked batch of 1280 CIFAR images 2.3x slower per
image than one of 64. Raising the thresholds lets freed memory be reused (resident memory stays
at its peak, which the peak-memory benchmark reports anyway). Values and outputs are unchanged.
"""

from __future__ import annotations

import ctypes
import ctypes.util

# mallopt parameters (malloc.h) and the values set: every block up to 32 MB (glibc's maximum
# mmap threshold) comes from the heap, and up to 1 GB of free heap top is kept and pre-grown.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_SETTINGS = ((_M_MMAP_THRESHOLD, 32 * 2**20), (_M_TRIM_THRESHOLD, 2**31 - 1), (_M_TOP_PAD, 2**30))


def keep_freed_memory() -> bool:
    """Apply the settings through glibc's ``mallopt``; False (and nothing changed) without glibc."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return False
    return all(mallopt(parameter, value) == 1 for parameter, value in _SETTINGS)
