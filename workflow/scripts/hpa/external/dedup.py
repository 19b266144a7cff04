"""Perceptual hashes per channel, near-duplicate search and duplicate clusters.

Hashes come from ``imagehash`` (64-bit pHash by default) and are stored as
16-digit hex strings in CSVs, as uint64 in memory. Two images are duplicates
when, for every configured channel, the Hamming distance of their hashes is at
most ``max_distance`` (1st place: pHash of R, G and B within 12; 3rd place:
equal green hashes, i.e. channels [green] and distance 0).

The search (``find_pairs``) is exact and picks the cheaper of two vectorised
strategies from the data itself:

- pigeonhole (multi-index hashing): cut the first channel's 64 bits into
  d + 1 chunks; a pair within distance d agrees exactly on at least one chunk,
  so candidates are pairs sharing a chunk value (sort + run expansion), then
  verified on every channel with popcount. Cheap for small d.
- tiled scan: XOR + popcount of the first channel over cache-sized tiles of
  the upper triangle (~1 ns per pair), candidates verified on the other
  channels. At d = 12 the chunks are 5 bits wide, each bucket holds n/32
  images and the pigeonhole candidates (~13 n^2/64) outnumber the n^2/2
  pairs the scan touches, so the scan wins there.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import imagehash
import numpy as np
import pandas as pd
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from hpa.classes import CHANNELS, HPA
from hpa.data.clipping import Clipping
from hpa.data.clipping import table as clipped_table
from hpa.data.images import BitDepth, channel_files, load_image
from hpa.data.ingest import SPLIT_DIRS, source_table
from hpa.files import write_csv

log = logging.getLogger(__name__)

HASHES = {"phash": imagehash.phash, "dhash": imagehash.dhash, "ahash": imagehash.average_hash}


BITS = 64


# Relative cost of one pigeonhole candidate (expansion, dedup, verification)
# against one scanned pair; measured with `python -m bench dedup`.
CANDIDATE_COST = 40


def hash_columns(kind: str) -> list[str]:
    return [f"{kind}_{color}" for color in CHANNELS]


def summary_columns(kind: str) -> list[str]:
    return hash_columns(kind) + [f"std_{color}" for color in CHANNELS]


def hash_plane(plane: np.ndarray, kind: str) -> str:
    """The 64-bit hash of one 8-bit channel, as 16 hex digits."""
    if kind not in HASHES:
        raise ValueError(f"unknown hash {kind!r}; choose one of {sorted(HASHES)}")
    return str(HASHES[kind](Image.fromarray(plane)))


def plane_summary(planes, kind: str) -> dict:
    """Hash and standard deviation of each of the four channels of one image."""
    out = {}
    for color, plane in zip(CHANNELS, planes):
        out[f"{kind}_{color}"] = hash_plane(plane, kind)
        out[f"std_{color}"] = round(float(plane.std()), 3)
    return out


def to_codes(table: pd.DataFrame, kind: str, channels) -> np.ndarray:
    """(n, len(channels)) uint64 hash codes from the hex columns of ``table``."""
    cols = [f"{kind}_{c}" for c in channels]
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise ValueError(f"hash column(s) {missing} missing; the hashes were computed with another hash kind")
    return np.array([[int(h, 16) for h in row] for row in table[cols].itertuples(index=False)],
                    dtype=np.uint64).reshape(len(table), len(cols))


def _within(codes: np.ndarray, i: np.ndarray, j: np.ndarray, d: int) -> np.ndarray:
    return (np.bitwise_count(codes[i] ^ codes[j]) <= d).all(axis=1)


def _chunk_keys(first: np.ndarray, d: int):
    """Yield the values of the d + 1 bit chunks of the hashes (pigeonhole)."""
    edges = np.linspace(0, BITS, d + 2).round().astype(int)
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = np.uint64((1 << int(hi - lo)) - 1)
        yield (first >> np.uint64(lo)) & mask


def _runs(keys: np.ndarray):
    """Sort order and, per sorted position, the end of its run of equal keys."""
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    starts = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]])
    ends = np.r_[starts[1:], len(sk)]
    run_end = np.repeat(ends, ends - starts)
    return order, run_end


def _pigeonhole_cost(first: np.ndarray, d: int) -> int:
    total = 0
    for keys in _chunk_keys(first, d):
        _, counts = np.unique(keys, return_counts=True)
        total += int((counts * (counts - 1) // 2).sum())
    return total


def _pigeonhole_pairs(codes: np.ndarray, d: int):
    n = len(codes)
    found = []
    for keys in _chunk_keys(codes[:, 0], d):
        order, run_end = _runs(keys)
        # Every sorted position p pairs with p+1 .. run_end[p]-1 (same chunk value).
        partners = run_end - np.arange(n) - 1
        a = np.repeat(np.arange(n), partners)
        offsets = np.arange(len(a)) - np.repeat(np.cumsum(partners) - partners, partners)
        i, j = order[a], order[a + 1 + offsets]
        # Verify before deduplicating: nearly all candidates fail, so the sort stays small.
        keep = _within(codes, i, j, d)
        i, j = i[keep], j[keep]
        found.append(np.minimum(i, j).astype(np.int64) * n + np.maximum(i, j))
    pairs = np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)
    return pairs // n, pairs % n


def _scan_rows(codes: np.ndarray, first: np.ndarray, d: int, i0: int, rows: int, cols: int):
    n = len(first)
    a = first[i0 : i0 + rows, None]
    h = a.shape[0]
    x = np.empty((h, cols), np.uint64)
    c = np.empty((h, cols), np.uint8)
    hit = np.empty((h, cols), bool)
    out_i, out_j = [], []
    for j0 in range(i0, n, cols):
        w = min(cols, n - j0)
        np.bitwise_xor(a, first[None, j0 : j0 + w], out=x[:, :w])
        np.bitwise_count(x[:, :w], out=c[:, :w])
        np.less_equal(c[:, :w], d, out=hit[:, :w])
        if hit[:, :w].any():
            ii, jj = np.nonzero(hit[:, :w])
            ii, jj = ii + i0, jj + j0
            upper = ii < jj
            out_i.append(ii[upper])
            out_j.append(jj[upper])
    if not out_i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    i, j = np.concatenate(out_i), np.concatenate(out_j)
    keep = _within(codes, i, j, d)
    return i[keep], j[keep]


def _scan_pairs(codes: np.ndarray, d: int, workers: int = 1, rows: int = 256, cols: int = 4096):
    first = np.ascontiguousarray(codes[:, 0])
    # numpy releases the GIL inside ufuncs, so threads use every core.
    with ThreadPoolExecutor(max(1, workers)) as pool:
        parts = list(pool.map(lambda i0: _scan_rows(codes, first, d, i0, rows, cols), range(0, len(first), rows)))
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


SEARCHES = {"pigeonhole": _pigeonhole_pairs, "scan": _scan_pairs}


def choose_search(codes: np.ndarray, max_distance: int) -> str:
    """The cheaper exact search for these codes: compares candidate counts, not rules of thumb."""
    n = len(codes)
    scan_cost = n * (n - 1) / 2
    return "pigeonhole" if CANDIDATE_COST * _pigeonhole_cost(codes[:, 0], max_distance) < scan_cost else "scan"


def find_pairs(codes: np.ndarray, max_distance: int, workers: int = 1, method: str = "auto"):
    """All pairs (i < j) whose hashes are within ``max_distance`` in every column.

    Returns two int64 arrays, sorted by (i, j).
    """
    codes = np.ascontiguousarray(codes, dtype=np.uint64)
    if codes.ndim != 2 or codes.shape[1] == 0:
        raise ValueError(f"codes must be (n, channels), got shape {codes.shape}")
    if not 0 <= max_distance < BITS:
        raise ValueError(f"max_distance must be in 0..{BITS - 1}, got {max_distance}")
    if len(codes) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if method == "auto":
        method = choose_search(codes, max_distance)
    if method == "scan":
        i, j = _scan_pairs(codes, max_distance, workers)
    else:
        i, j = SEARCHES[method](codes, max_distance)
    order = np.lexsort((j, i))
    log.info("%s search: %d pairs among %d images", method, len(order), len(codes))
    return i[order].astype(np.int64), j[order].astype(np.int64)


def naive_pairs(codes: np.ndarray, max_distance: int) -> list[tuple[int, int]]:
    """Reference pairwise search in pure Python: O(n^2), for tests and the benchmark only."""
    rows = [[int(x) for x in row] for row in np.asarray(codes)]
    return [
        (i, j)
        for i in range(len(rows))
        for j in range(i + 1, len(rows))
        if all((a ^ b).bit_count() <= max_distance for a, b in zip(rows[i], rows[j]))
    ]


def clusters(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Connected components of the duplicate graph: one label per image, 0..k-1."""
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels


def _summarise(task) -> dict:
    image_dir, image_id, kind, depth, clipping = task
    shares: dict = {}
    try:
        planes = load_image(channel_files(image_dir, image_id, CHANNELS), depth=depth, shares=shares)
        return {"Id": image_id, "error": "", **plane_summary(planes, kind), "clipped": clipping.rows(image_id, shares)}
    except Exception as err:  # recorded per image; clean_external stops when too many failed
        return {"Id": image_id, "error": f"{type(err).__name__}: {err}", "clipped": []}


def hash_source(source_dir, kind: str, workers: int = 1, image_dirs: dict[str, str] = SPLIT_DIRS,
                depth: BitDepth = BitDepth(), clipping: Clipping = Clipping(), clipped_path=None,
                **columns) -> pd.DataFrame:
    """Hashes of every train and test image of a Kaggle-layout folder, computed once.

    The images are found as ingest finds them (``source_table``; ``image_dirs`` as
    ingest's, ``columns`` its ``id_column`` and ``target_column``). Columns
    ``Id,split,Target,image_dir,error`` then the hash and std of each channel; images
    that cannot be read keep their error and no hashes. Channels the bit-depth rule clips
    (``clipping``) are listed in ``clipped_path``, as cache_images lists them.
    """
    # Hashing compares the source with the atlas's external images, so it is the atlas's (HPA only).
    table = source_table(source_dir, image_dirs, vocab=HPA, **columns)
    tasks = [(d, i, kind, depth, clipping) for d, i in zip(table["image_dir"], table["Id"])]
    # PIL releases the GIL while decoding and resizing, so threads scale.
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = list(pool.map(_summarise, tasks))
    if clipped_path is not None:
        write_csv(clipped_table([r for result in results for r in result["clipped"]]), clipped_path)
    rows = pd.DataFrame(results, columns=["Id", "error", *summary_columns(kind)])
    failed = rows["error"].ne("")
    if failed.any():
        log.warning("%d of %d source images could not be hashed, e.g. %s: %s", failed.sum(), len(rows),
                    rows["Id"][failed].iloc[0], rows["error"][failed].iloc[0])
    return pd.concat([table[["Id", "split", "Target", "image_dir"]], rows.drop(columns="Id")], axis=1)
