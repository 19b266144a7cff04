"""Finding and decoding the channel images of one field of view.

A field is one file per channel name (the dataset's, ``Vocabulary.channels``): in the
Kaggle layout ``{Id}_{channel}{ext}`` for ``ext`` in ``EXTENSIONS`` (``channel_files``),
in a sample sheet whatever its row names. PNG, TIFF or JPEG, 8 or 16 bits, any size.
Each decodes to one 8-bit plane:

- 8-bit grey is kept as it is;
- 16-bit (and 32-bit integer or float) grey is brought to 8 bits by the
  ``BitDepth`` rule of the config (``data.bit_depth``; per channel once ``auto``
  is resolved, ``hpa.data.bit_depth``), so its range survives;
- colour: for the atlas's channel names (its tinted HPAv18 JPEGs) the plane that holds
  the channel's colour: R, G or B, and for yellow a ``YELLOW`` mix of R and G; for any
  other name the per-pixel maximum of R, G and B, which is exact for a grey image saved
  as RGB and for one stain rendered in any single tint ((v, 0, 0), (0, v, v), ...), and
  mixes the stains of a multi-colour composite (save such channels as grey files).

A field that is not square becomes square by ``data.fit`` (``FITS``) before it is
resized; a square one is only resized.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from hpa.data.stacks import open_image

# Lossless formats before JPEG, so the precedence never picks the lossy copy;
# two files for one channel are still reported as a problem by ingest and predict_new.
EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
_SUFFIXES = EXTENSIONS + tuple(e.upper() for e in EXTENSIONS)

GREY_MODES = {"L", "I;16", "I;16B", "I;16L", "I;16N", "I", "F"}
COLOUR_MODES = {"RGB"}

RGB_INDEX = {"red": 0, "green": 1, "blue": 2}


def _yellow_red(rgb):
    return rgb[..., 0]


def _yellow_rg_mean(rgb):
    # uint16 first: uint8 R + G overflows (a bug in some competition code).
    return ((rgb[..., 0].astype(np.uint16) + rgb[..., 1] + 1) // 2).astype(np.uint8)


def _yellow_luminance(rgb):
    weights = np.array([0.299, 0.587, 0.114])  # ITU-R 601, as PIL's convert("L")
    return np.clip(np.rint(rgb @ weights), 0, 255).astype(np.uint8)


# How the yellow channel is made from a tinted colour image (teams disagreed). The
# atlas renders the ER stain as (v, v, 0), so R and G are two readings of v:
# their mean keeps v's scale and halves JPEG chroma noise (the default); R alone
# is the 1st place's choice; luminance reads 0.886 v plus B's noise.
YELLOW = {"red": _yellow_red, "rg_mean": _yellow_rg_mean, "luminance": _yellow_luminance}


BIT_DEPTH_RULES = ("auto", "shift", "percentile")


@dataclass(frozen=True)
class BitDepth:
    """How a grey image of more than 8 bits becomes 8-bit (``data.bit_depth`` in the config).

    ``shift``: drop the ``bits`` lowest bits (8 for 16-bit data, 4 for 12-bit data
    in 16-bit files), clipping at 255; one scale for every image, so brightness
    stays comparable between images. ``percentile``: map each channel of each
    image from its ``low`` to its ``high`` percentile onto 0..255, so dim and
    bright fields reach the network at the same contrast. ``auto``: a ``shift``
    whose bits are measured per channel on a sample of the dataset's images
    (``hpa.data.bit_depth.resolve``, the ``bit_depth`` rule); it cannot decode
    before it is resolved.
    """

    rule: str = "auto"
    bits: int = 8
    low: float = 0.5
    high: float = 99.5

    def __post_init__(self):
        if self.rule not in BIT_DEPTH_RULES:
            raise ValueError(f"data.bit_depth.rule={self.rule!r}; choose one of {', '.join(BIT_DEPTH_RULES)}")
        if not 0 <= self.bits <= 24:
            raise ValueError(f"data.bit_depth.bits={self.bits}; give 0..24 (8 for 16-bit data)")
        if not 0 <= self.low < self.high <= 100:
            raise ValueError(f"data.bit_depth low={self.low}, high={self.high}; need 0 <= low < high <= 100")

    def to_uint8(self, arr: np.ndarray) -> np.ndarray:
        if self.rule == "auto":
            raise ValueError("data.bit_depth.rule auto is measured per dataset before decoding: pass the "
                             "per-channel rules of hpa.data.bit_depth.depths(results/cache/bit_depth.json)")
        if self.rule == "shift":
            if np.issubdtype(arr.dtype, np.integer):  # 16-bit data: an integer shift, no float copy
                return np.clip(arr >> self.bits, 0, 255).astype(np.uint8)
            return np.clip(arr / 2.0**self.bits, 0, 255).astype(np.uint8)
        lo, hi = percentiles(arr, (self.low, self.high))
        scaled = (arr.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / max(hi - lo, 1e-12))
        return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def percentiles(arr: np.ndarray, qs) -> list[float]:
    """``np.percentile(arr, qs)`` (linear interpolation); for 8/16-bit data from a histogram, in O(n).

    A full-size channel holds 4-9 million pixels: the histogram is several times
    faster than the selection ``np.percentile`` runs, and gives the same values.
    """
    if arr.dtype not in (np.uint8, np.uint16) or arr.size == 0:
        return list(np.percentile(arr, qs))
    cdf = np.cumsum(np.bincount(arr.ravel(), minlength=256))
    values = []
    for q in qs:
        rank = q / 100 * (arr.size - 1)
        below = int(np.floor(rank))
        # The k-th smallest value is the first whose cumulative count exceeds k.
        lo, hi = np.searchsorted(cdf, [below, min(below + 1, arr.size - 1)], side="right")
        values.append(lo + (hi - lo) * (rank - below))
    return values


def channel_path(image_dir, image_id: str, color: str, ext: str = ".png") -> Path:
    """The file a channel is written to (the Kaggle layout's PNG unless ``ext`` says otherwise)."""
    return Path(image_dir) / f"{image_id}_{color}{ext}"


def find_channel(image_dir, image_id: str, color: str) -> Path:
    """The channel's file, the first of ``EXTENSIONS`` that exists."""
    for ext in _SUFFIXES:
        path = channel_path(image_dir, image_id, color, ext)
        if path.is_file():
            return path
    raise FileNotFoundError(f"no {image_id}_{color} file with any of {'/'.join(EXTENSIONS)} in {image_dir}")


def list_channels(folder, channels: tuple[str, ...]) -> dict[str, dict[str, list[Path]]]:
    """Id -> channel -> its files ``{Id}_{channel}{ext}`` in ``folder`` for the ``channels`` named, by
    precedence; one directory listing, not a stat per file."""
    found: dict[str, dict[str, list[Path]]] = {}
    rank = {ext: i for i, ext in enumerate(_SUFFIXES)}
    for path in Path(folder).iterdir():
        image_id, _, color = path.stem.rpartition("_")
        if path.suffix in rank and color in channels and image_id:
            found.setdefault(image_id, {}).setdefault(color, []).append(path)
    for colors in found.values():
        for paths in colors.values():
            paths.sort(key=lambda p: rank[p.suffix] % len(EXTENSIONS))
    return found


def channel_problem(image_id: str, files: dict[str, list[Path]], channels: tuple[str, ...]) -> str:
    """Why a listed Id's channels are not usable ("" when each of ``channels`` has exactly one file)."""
    missing = [c for c in channels if c not in files]
    if missing:
        return (f"missing channel {', '.join(missing)} (no {image_id}_{missing[0]} file with any of "
                f"{'/'.join(EXTENSIONS)})")
    for color in channels:
        if len(files[color]) > 1:
            names = ", ".join(p.name for p in files[color])
            return f"channel {color} has {len(files[color])} files ({names}); keep one"
    return ""


# How a field that is not square becomes square (``data.fit``).
FITS = ("pad", "crop", "stretch")


def square(plane: np.ndarray, fit: str) -> np.ndarray:
    """``plane`` made square by ``fit``: ``pad`` (black, centred), ``crop`` (the centre) or ``stretch``
    (unchanged here: the resize distorts it). A square plane is returned as it is."""
    if fit not in FITS:
        raise ValueError(f"data.fit={fit!r}; choose one of {', '.join(FITS)}")
    h, w = plane.shape
    if h == w or fit == "stretch":
        return plane
    if fit == "crop":
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        return plane[top : top + side, left : left + side]
    side = max(h, w)
    padded = np.zeros((side, side), dtype=plane.dtype)
    top, left = (side - h) // 2, (side - w) // 2
    padded[top : top + h, left : left + w] = plane
    return padded


def colour_plane(rgb: np.ndarray, color: str, yellow: str) -> np.ndarray:
    """The plane of channel ``color`` in a colour image (the module's note says why each rule)."""
    if color in RGB_INDEX:
        return rgb[..., RGB_INDEX[color]]
    if color == "yellow":
        return YELLOW[yellow](rgb)
    return rgb.max(axis=-1)


def range_shares(plane: np.ndarray) -> tuple[float, float]:
    """The shares of a decoded uint8 plane's pixels at the top of the range (255) and at 0: what a
    bit shift that does not fit the image clips (``hpa.data.clipping``)."""
    counts = np.bincount(plane.ravel(), minlength=256)
    return float(counts[255] / max(plane.size, 1)), float(counts[0] / max(plane.size, 1))


def decode_plane(im: Image.Image, color: str, size: int | None = None, depth: BitDepth = BitDepth(),
                 yellow: str = "rg_mean", fit: str = "pad", shares: dict | None = None) -> np.ndarray:
    """One opened image of channel ``color`` as a (size, size) uint8 plane (as it is when ``size`` is None).

    A plane that is not square is first made square by ``fit`` (``square``). ``shares``, when given,
    receives ``{color: range_shares}`` of a high-bit-depth plane as the bit-depth rule made it (before
    any resize): each image is checked where it is decoded.
    """
    if size is not None:
        # JPEG's DCT scaling decodes at 1/2, 1/4 or 1/8 directly: 2048 px
        # images decode several times faster, never below the target size.
        im.draft(im.mode, (size, size))
    if im.mode in COLOUR_MODES:
        plane = colour_plane(np.asarray(im), color, yellow)
    elif im.mode == "L":
        plane = np.asarray(im)
    elif im.mode in GREY_MODES:
        plane = depth.to_uint8(np.asarray(im))
        if shares is not None:
            shares[color] = range_shares(plane)
    else:
        raise ValueError(f"image mode {im.mode}: expected grey (8/16-bit) or RGB")
    if size is not None and plane.shape != (size, size):
        plane = square(plane, fit)
        # BILINEAR in PIL widens its kernel when shrinking, so it antialiases.
        resized = Image.fromarray(np.ascontiguousarray(plane)).resize((size, size), Image.BILINEAR)
        plane = np.asarray(resized)
    return np.ascontiguousarray(plane, dtype=np.uint8)


def channel_files(image_dir, image_id: str, channels) -> dict[str, Path]:
    """The Kaggle layout's file of each of ``channels`` (``{image_dir}/{Id}_{channel}.{ext}``, by precedence)."""
    if isinstance(channels, str):
        raise TypeError(f"channels={channels!r}: give the channel names as a tuple")
    return {color: find_channel(image_dir, image_id, color) for color in channels}


def depth_of(depth: BitDepth | Mapping[str, BitDepth], color: str) -> BitDepth:
    """The rule of channel ``color``: one rule for all, or the per-channel ones ``auto`` resolved to."""
    if isinstance(depth, BitDepth):
        return depth
    try:
        return depth[color]
    except KeyError:
        raise ValueError(f"no bit-depth rule for channel {color!r} (rules for {sorted(depth)}); "
                         "results/cache/bit_depth.json was made for other channels: rerun its rule") from None


def decode_field(files: Mapping[str, Path], size: int | None = None,
                 depth: BitDepth | Mapping[str, BitDepth] = BitDepth(), yellow: str = "rg_mean",
                 fit: str = "pad", shares: dict | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """A field's channels ({channel: file}, in the dataset's channel order) as a (C, size, size) uint8
    array (each file at its own size where ``size`` is None), and the (width, height) of its files;
    ``shares`` as ``decode_plane``'s."""
    if not isinstance(files, Mapping):
        raise TypeError("files: give {channel: file} (channel_files(image_dir, Id, channels) for the Kaggle layout)")
    planes, shape = [], None
    for color, path in files.items():
        with open_image(path) as im:
            shape = im.size
            planes.append(decode_plane(im, color, size, depth_of(depth, color), yellow, fit, shares))
    if len({p.shape for p in planes}) > 1:  # only at the files' own size (size None)
        raise ValueError("channels of different sizes: " + ", ".join(f"{c} {p.shape}" for c, p in zip(files, planes)))
    return np.stack(planes), shape


def load_image(files: Mapping[str, Path], size: int | None = None,
               depth: BitDepth | Mapping[str, BitDepth] = BitDepth(), yellow: str = "rg_mean",
               fit: str = "pad", shares: dict | None = None) -> np.ndarray:
    """A field's channels ({channel: file}) as a (C, size, size) uint8 array (``decode_field``)."""
    return decode_field(files, size, depth, yellow, fit, shares)[0]
