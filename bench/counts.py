"""Device ops and blocking host<->device transfers of a piece of code, counted on any device, CPU included.

Counted by intercepting torch, not by timing: a TorchDispatchMode counts every aten op; a
TorchFunctionMode counts the calls that make the host wait for a GPU. Those are a ``.to`` / ``.cuda``
/ ``.cpu`` / ``copy_`` naming another device without ``non_blocking``, a scalar read (``.item()``,
``.tolist()``, ``bool(t)``, ``float(t)``), and the ops whose output size depends on the data
(``nonzero``, ``unique``, ``masked_select``). Calls from inside torch itself
are not counted (see ``_inside_torch``): the count is of the pipeline's own transfers. On a CPU
no copy really crosses a device, so ``.to`` with a device counts as if it did: the same call on a
GPU would be a blocking copy. That is what lets a CPU-only CI guard the GPU's step.
"""

from __future__ import annotations

import os
import sys

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
SCALAR_READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__bool__, torch.Tensor.__float__,
                torch.Tensor.__int__, torch.Tensor.numpy}
DATA_DEPENDENT = {aten.nonzero, aten._unique2, aten.unique_dim, aten.unique_consecutive, aten.masked_select}
TRANSFERS = {torch.Tensor.to, torch.Tensor.cuda, torch.Tensor.cpu, torch.Tensor.copy_}


def _names_a_device(args, kwargs) -> bool:
    if "device" in kwargs:
        return True
    return any(isinstance(a, (torch.device, str)) or (isinstance(a, torch.Tensor) and a.device.type != "cpu")
               for a in args[1:])


TORCH = os.path.dirname(torch.__file__) + os.sep
PASS_THROUGH = (__file__, os.path.join(TORCH, "overrides.py"), os.path.join(TORCH, "_tensor.py"))


def _inside_torch() -> bool:
    """Whether torch's own code made the call: its ``.to(device)`` calls are same-device no-ops on a GPU and
    its scalar reads (torch.optim's step counters) are of tensors it keeps on the host, so neither waits."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename in PASS_THROUGH:
        frame = frame.f_back
    return frame is not None and frame.f_code.co_filename.startswith(TORCH)


class _Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops, self.data_dependent = 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        self.data_dependent += func.overloadpacket in DATA_DEPENDENT
        return func(*args, **(kwargs or {}))


class _Syncs(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.blocking = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if (func in SCALAR_READS or func in TRANSFERS) and _inside_torch():
            pass
        elif func in SCALAR_READS:
            self.blocking += 1
        elif func in TRANSFERS and not kwargs.get("non_blocking", False):
            self.blocking += func in (torch.Tensor.cuda, torch.Tensor.cpu) or _names_a_device(args, kwargs)
        return func(*args, **kwargs)


class Counts:
    """``with Counts() as c: ...`` then ``c.ops`` (aten ops) and ``c.blocking`` (blocking transfers)."""

    def __enter__(self):
        self._ops, self._syncs = _Ops(), _Syncs()
        self._syncs.__enter__()
        self._ops.__enter__()
        return self

    def __exit__(self, *exc):
        self._ops.__exit__(*exc)
        self._syncs.__exit__(*exc)
        self.ops, self.blocking = self._ops.ops, self._syncs.blocking + self._ops.data_dependent
