"""Convert checkpoints this pipeline wrote before they were plain data: ``python -m hpa.loop.convert_checkpoint PATH...``

Such a file is opened with the pickle machinery (``weights_only=False``), which runs whatever
the file says: convert only files you trust. Each is rewritten in place as plain data, which
``torch.load(path)`` and the pipeline then open the safe way. An old ``last.pt`` pickled the
loop's ``Run`` object (``hpa.training.fit.Run``, now ``hpa.loop.fit.Run``); its fields become a dict.
"""

from __future__ import annotations

import dataclasses
import pickle
import sys
import types

import torch

from hpa.runtime.checkpoint import save_checkpoint

# Modules whose pickled classes moved since old checkpoints were written: old name -> new name.
MOVED = {"hpa.training.fit": "hpa.loop.fit"}


class MovedClasses(pickle.Unpickler):
    """Finds a class an old checkpoint names under the module it has moved to."""

    def find_class(self, module, name):
        return super().find_class(MOVED.get(module, module), name)


# torch.load takes a pickle-like module: pickle's own, but with the Unpickler above.
PICKLE = types.ModuleType("pickle_with_moved_classes")
PICKLE.Unpickler, PICKLE.load = MovedClasses, pickle.load


def as_data(value):
    """A dataclass instance (the old ``Run``) as a dict of its fields; anything else unchanged."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    return value


def convert(path) -> None:
    old = torch.load(path, map_location="cpu", weights_only=False, pickle_module=PICKLE)
    save_checkpoint({key: as_data(value) for key, value in old.items()}, path)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for name in sys.argv[1:]:
        convert(name)
        print(f"converted {name}")
