"""Near-duplicate search over perceptual-hash triples: vectorised against naive pairwise.

    python -m bench dedup        (BENCH_DEDUP_N, BENCH_DEDUP_SUBSET to resize)

Synthetic hash triples (R, G, B pHash stand-ins): uniform random 64-bit codes,
1% of them near-copies of another with up to 12 bits flipped per channel.
Prints the search time for n triples at the 1st place's setting (within 12 bits
in all three channels) and at two small distances, checks that every planted
pair is found, and times the naive pure-Python pairwise search on a subset for
the ratio. Target: <= 15 s for 100k triples on 2 cores.
"""

import os

import numpy as np

from hpa.external.dedup import choose_search, find_pairs, naive_pairs

from .common import report, timed

N = int(os.environ.get("BENCH_DEDUP_N", 100_000))
SUBSET = int(os.environ.get("BENCH_DEDUP_SUBSET", 10_000))
WORKERS = 2


def synthetic(n: int, seed: int = 0, share: float = 0.01, max_flips: int = 12):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2**64, size=(n, 3), dtype=np.uint64)
    k = int(share * n)
    src = rng.choice(n, k, replace=False)
    dst = rng.choice(np.setdiff1d(np.arange(n), src), k, replace=False)
    for s, t in zip(src, dst):
        for c in range(3):
            bits = rng.choice(64, rng.integers(0, max_flips + 1), replace=False)
            codes[t, c] = codes[s, c] ^ np.uint64(sum(1 << int(b) for b in bits))
    return codes, {(min(s, t), max(s, t)) for s, t in zip(src.tolist(), dst.tolist())}


def main() -> dict:
    codes, planted = synthetic(N)
    by_distance = {}
    for d in (12, 4, 0):
        (i, j), seconds = timed(find_pairs, codes, d, workers=WORKERS)
        found = set(zip(i.tolist(), j.tolist()))
        by_distance[d] = {"method": choose_search(codes, d), "seconds": round(seconds, 3), "pairs": len(found)}
        if d == 12:
            by_distance[d]["planted_found"] = len(planted & found) / len(planted)
    sub = codes[:SUBSET]
    (si, sj), vectorised = timed(find_pairs, sub, 12, workers=WORKERS)
    naive, slow = timed(naive_pairs, sub, 12)
    assert naive == list(zip(si.tolist(), sj.tolist())), "vectorised and naive searches disagree"
    return report("dedup", {
        "triples": N, "workers": WORKERS, "planted_pairs": len(planted), "by_max_distance": by_distance,
        "search_seconds_at_12_bits": by_distance[12]["seconds"], "target_seconds": 15,
        "subset": SUBSET, "naive_subset_seconds": round(slow, 2), "vectorised_subset_seconds": round(vectorised, 3),
        "ratio_naive_over_vectorised": round(slow / vectorised, 1),
    })


if __name__ == "__main__":
    main()
