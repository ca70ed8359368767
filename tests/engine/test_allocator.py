"""The glibc allocator tuning takes effect: large tensors stop coming from fresh mmap pages."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import ctypes
import torch
from vimpnet_ros.engine.allocator import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2

def mmapped_while_holding_64_mib():
    tensor = torch.ones(16 * 2**20)
    return libc.mallinfo2().hblkhd

before = mmapped_while_holding_64_mib()
applied = keep_freed_memory()
again = keep_freed_memory()
after = mmapped_while_holding_64_mib()
print(before, applied, again, after)
"""


def test_large_tensors_come_from_the_heap_after_tuning() -> None:
    # A fresh interpreter: the setting is process-wide and must not leak into the test process.
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True)
    before, applied, again, after = result.stdout.split()
    assert int(before) >= 64 * 2**20  # glibc's default: a 64 MiB block is its own mmap
    assert applied == again == "True"
    assert int(after) < 64 * 2**20
