"""Convert checkpoints this pipeline wrote before they were plain data: ``python -m hpa.runtime.convert_checkpoint PATH...``

Such a file is opened with the pickle machinery (``weights_only=False``), which runs whatever
the file says: convert only files you trust. Each is rewritten in place as plain data, which
``torch.load(path)`` and the pipeline then open the safe way. An old ``last.pt`` pickled the
loop's ``Run`` object (``hpa.training.fit.Run``); its fields become a dict.
"""

from __future__ import annotations

import dataclasses
import sys

import torch

from hpa.runtime.checkpoint import save_checkpoint


def as_data(value):
    """A dataclass instance (the old ``Run``) as a dict of its fields; anything else unchanged."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    return value


def convert(path) -> None:
    old = torch.load(path, map_location="cpu", weights_only=False)
    save_checkpoint({key: as_data(value) for key, value in old.items()}, path)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for name in sys.argv[1:]:
        convert(name)
        print(f"converted {name}")
