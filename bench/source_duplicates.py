"""Leaks and duplicates within the source (rule source_duplicates) against today's external-only search.

    python -m bench source_duplicates    (BENCH_SOURCE_N, BENCH_POOL_N, BENCH_HASH_N, BENCH_HASH_SIZE to resize)

At the real size (HPA 2018: 31,072 training + 11,702 test images = 42,774, four channels; the
external search pools them with the atlas's images, 117k in all) it times the exact search of
source_duplicates over the source's codes and clean_external's search over the pool, both at
max_distance 12 on 2 workers, with 1% planted near-copies (each must be found); and hashing the
cached planes (cache_codes, 1 and 2 workers) on BENCH_HASH_N images of BENCH_HASH_SIZE px, projected to the
source's count: the whole stage's cost next to today's 77 s for hashing the 117k images. With
external.use on, the stage reuses hash_images's hashes instead: it then costs turning the source's
hex hashes into codes (``to_codes``, timed on the source's count at three channels) plus the search.
"""

import os

import numpy as np
import pandas as pd

from hpa.external.dedup import find_pairs, to_codes
from hpa.external.within import cache_codes

from .common import report, timed
from .dedup import synthetic

SOURCE = int(os.environ.get("BENCH_SOURCE_N", 42_774))
POOL = int(os.environ.get("BENCH_POOL_N", 117_000))
HASH_N = int(os.environ.get("BENCH_HASH_N", 500))
HASH_SIZE = int(os.environ.get("BENCH_HASH_SIZE", 512))
TODAY_HASHING_SECONDS = 77  # a run at the real size, 117k images on 2 cores (issue 29)


def search(n: int) -> tuple[float, float]:
    codes, planted = synthetic(n)
    (i, j), seconds = timed(find_pairs, codes, 12, workers=2)
    found = set(zip(i.tolist(), j.tolist()))
    return seconds, len(planted & found) / len(planted)


def reuse_seconds(n: int) -> float:
    """Seconds to turn hash_images's hex hashes of ``n`` images (three channels) into codes."""
    channels = ["red", "green", "blue"]
    hexes = np.random.default_rng(1).integers(0, 2**63, (n, len(channels)), dtype=np.int64)
    table = pd.DataFrame({f"phash_{c}": [f"{int(v):016x}" for v in hexes[:, k]] for k, c in enumerate(channels)})
    return timed(to_codes, table, "phash", channels)[1]


def main() -> dict:
    within, within_found = search(SOURCE)
    reuse = reuse_seconds(SOURCE)
    pool, pool_found = search(POOL)
    rng = np.random.default_rng(0)
    cache = rng.integers(0, 256, (HASH_N, 4, HASH_SIZE, HASH_SIZE), dtype=np.uint8)
    _, one_core = timed(cache_codes, cache, np.arange(HASH_N))
    _, hashing = timed(cache_codes, cache, np.arange(HASH_N), workers=2)
    projected = hashing / HASH_N * SOURCE
    print(f"search within the source ({SOURCE}): {within:.2f} s; external pool ({POOL}): {pool:.2f} s; "
          f"ratio within / external {within / pool:.2f}")
    print(f"hashing cached planes: {hashing / HASH_N * 1000:.2f} ms per image, {projected:.0f} s projected for "
          f"{SOURCE} images on 2 cores ({one_core / hashing:.1f}x one core); "
          f"stage total {projected + within:.0f} s vs today's {TODAY_HASHING_SECONDS} s "
          f"hashing + {pool:.1f} s external search")
    print(f"with external.use on (hash_images's hashes reused): {reuse:.2f} s to codes + {within:.2f} s search "
          f"= {reuse + within:.1f} s, no hashing")
    return report("source_duplicates", {
        "source_images": SOURCE, "pool_images": POOL, "within_search_seconds": round(within, 3),
        "external_search_seconds": round(pool, 3), "ratio_within_over_external": round(within / pool, 3),
        "planted_found": [within_found, pool_found], "hash_images_measured": HASH_N, "hash_size": HASH_SIZE,
        "hash_ms_per_image": round(hashing / HASH_N * 1000, 3), "hash_speedup_2_workers": round(one_core / hashing, 2),
        "projected_hash_seconds": round(projected, 1),
        "today_hashing_seconds": TODAY_HASHING_SECONDS,
        "reuse_to_codes_seconds": round(reuse, 3), "stage_seconds_external_on": round(reuse + within, 2),
    })


if __name__ == "__main__":
    main()
