"""Peak bytes of live tensors on any device, CPU included: what ``torch.cuda.max_memory_allocated``
reports on a GPU, for tests and benchmarks that run on CPUs (torch keeps no CPU allocator statistics,
and ``tracemalloc`` does not see its allocations).

Every tensor an ATen operator returns is counted from that moment until its storage is freed;
views and in-place results (storages an input already had) and tensors that existed before are
not. Not seen: temporaries inside one operator's kernel, and allocator overhead (caching,
fragmentation), which the process's resident size also holds.
"""
from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class PeakTensorBytes(TorchDispatchMode):
    """``with PeakTensorBytes() as meter: ...`` then ``meter.peak`` (bytes) and ``meter.live`` (still held)."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self._sizes: dict[int, int] = {}  # storage address → bytes, while the storage lives

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for tensor in tree_leaves(out):
            if not isinstance(tensor, torch.Tensor) or tensor.device.type == "meta":
                continue
            storage = tensor.untyped_storage()
            address, size = storage.data_ptr(), storage.nbytes()
            if size == 0 or address in inputs or address in self._sizes:
                continue
            self._sizes[address] = size
            self.live += size
            self.peak = max(self.peak, self.live)
            # torch keeps one Python object per storage while the storage lives: it dies with the memory.
            weakref.finalize(storage, self._freed, address)
        return out

    def _freed(self, address: int) -> None:
        self.live -= self._sizes.pop(address, 0)
