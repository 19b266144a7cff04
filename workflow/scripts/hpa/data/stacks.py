"""One file per field with all its channels: multi-channel TIFF and OME-TIFF, read through tifffile.

A sample sheet's ``file`` column names such a file; each channel of ``channels.names`` then
refers to one plane of it, written ``{file}::{k}`` (``plane_ref``) wherever a channel's file is
(the manifest's ``file_{channel}`` columns), so every reader that opens a channel's file
(``open_image``) reads that plane and the rest of the pipeline is unchanged. The planes are
the channels in ``channels.names`` order, unless the file's OME metadata names its channels:
then by those names.

A field's channels are decoded one after another (``hpa.data.images.decode_field``), and each plane
of a compressed or sample-interleaved file needs the whole series decoded; the last files read are
therefore kept (``_series``), so a field's file is decoded once, not once per channel.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

_REF = re.compile(r"^(.*)::(\d+)$")
# Axes tifffile may give the channels of a 3-D series: channel, sample (RGB-like) or a page stack.
CHANNEL_AXES = "CSIQ"


def plane_ref(file, k: int) -> str:
    """How plane ``k`` of a multi-channel file is named where one channel's file is."""
    return f"{file}::{k}"


def split_ref(path) -> tuple[Path, int | None]:
    """(file, plane index) of a ``plane_ref``; (file, None) for a plain file."""
    match = _REF.match(str(path))
    return (Path(match[1]), int(match[2])) if match else (Path(path), None)


def _channel_axis(series) -> int:
    axes = series.axes
    if len(series.shape) == 2:
        return -1
    found = [i for i, a in enumerate(axes) if a in CHANNEL_AXES and series.shape[i] > 1]
    return found[0] if len(found) == 1 and len(series.shape) == 3 else -2


def _ome_names(tif) -> list[str]:
    if not tif.is_ome or not tif.ome_metadata:
        return []
    return re.findall(r"<Channel\b[^>]*\bName=\"([^\"]*)\"", tif.ome_metadata)


def file_planes(file, channels) -> tuple[dict[str, int], str]:
    """{channel: plane index} of a multi-channel TIFF, and "" or why its planes cannot be the ``channels``.

    Only the header is read. The OME channel names decide when they are the ``channels``;
    otherwise the planes are taken in ``channels`` order, and their count must match.
    """
    try:
        with tifffile.TiffFile(file) as tif:
            series = tif.series[0]
            axis, names = _channel_axis(series), _ome_names(tif)
            shape, axes = series.shape, series.axes
    except (OSError, ValueError, IndexError, tifffile.TiffFileError) as err:
        return {}, f"unreadable multi-channel file {file} ({err})"
    count = 1 if axis == -1 else shape[axis] if axis >= 0 else 0
    if axis == -2:
        return {}, (f"{file} has axes {axes} of shape {shape}, not one channel axis and a plane; export one "
                    f"field per file with its {len(channels)} channels ({', '.join(channels)})")
    if sorted(names) == sorted(channels) and len(names) == count:
        return {c: names.index(c) for c in channels}, ""
    if count != len(channels):
        named = f" named {names}" if names else ""
        return {}, (f"{file} has {count} channel(s){named}, channels.names has {len(channels)} "
                    f"({', '.join(channels)}); export the file with those channels in that order, or name "
                    "them in its OME metadata")
    return {c: k for k, c in enumerate(channels)}, ""


@lru_cache(maxsize=2)
def _series(file: str, stamp: tuple[int, int]) -> tuple[int, np.ndarray]:
    """(channel axis, data, read-only) of a multi-channel TIFF's first series; ``stamp`` (mtime, size) makes
    a rewritten file a new entry."""
    with tifffile.TiffFile(file) as tif:
        series = tif.series[0]
        axis, data = _channel_axis(series), series.asarray()
    data.setflags(write=False)
    return axis, data


def read_plane(file, k: int) -> np.ndarray:
    """Plane ``k`` of a multi-channel TIFF (its channel axis as ``file_planes`` finds it), as stored."""
    stat = os.stat(file)
    axis, data = _series(str(Path(file).resolve()), (stat.st_mtime_ns, stat.st_size))
    if axis == -1:
        if k:
            raise ValueError(f"{file} has one plane; no plane {k}")
        return data
    return np.take(data, k, axis=axis)


@contextmanager
def open_image(path):
    """A channel's image: the file, or the plane a ``plane_ref`` names (as a PIL image, as Image.open gives)."""
    file, k = split_ref(path)
    if k is None:
        with Image.open(file) as im:
            yield im
        return
    try:
        plane = read_plane(file, k)
    except (ValueError, IndexError, tifffile.TiffFileError) as err:  # as Image.open fails: the callers catch OSError
        raise OSError(f"cannot read plane {k} of {file}: {err}") from err
    yield Image.fromarray(np.ascontiguousarray(plane))
