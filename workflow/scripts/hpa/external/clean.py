"""Cleaning the downloaded external images: completeness, duplicates and test leaks.

Works from the download records and the precomputed hashes alone; no image is
decoded here. Decisions are taken per duplicate cluster (connected component
of the duplicate graph over train, test and external images), so a chain of
near-duplicates cannot smuggle a test image into training:

- a cluster holding a test image: its external images are dropped
  (``duplicate_of_test``) unless ``train_on_test_duplicates``; the cluster is
  a leak and goes to the leak table with the labels of its other members;
- else a cluster holding a train image: its external images are dropped
  (``duplicate_of_train``); the train labels stand, and differing labels are
  reported as conflicts;
- else (external images only): the first in list order is kept with the union
  of the cluster's labels, as the HPAv18 "wodpl" list itself merged images
  shared by several genes; the others are ``duplicate_within_external``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hpa.classes import CHANNELS
from hpa.external.dedup import choose_search, clusters, find_pairs, to_codes
from hpa.files import write_csv, write_json
from hpa.tables import InputError, format_target

log = logging.getLogger(__name__)

# Download outcomes that make an image unusable, then cleaning's own reasons.
REASONS = ("missing", "refused", "unreadable", "failed", "blank",
           "duplicate_of_test", "duplicate_of_train", "duplicate_within_external")


@dataclass(frozen=True)
class CleanSettings:
    hash: str = "phash"
    channels: tuple = ("red", "green", "blue")
    max_distance: int = 12
    train_on_test_duplicates: bool = False
    blank_std: float = 1.0
    workers: int = 1


def completeness(download: pd.DataFrame, blank_std: float) -> tuple[pd.Series, pd.Series]:
    """Reason and detail per record: the download status, or ``blank``, or "" when usable."""
    reason = download["status"].where(download["status"] != "ok", "").astype(str)
    detail = download["error"].fillna("").astype(str).where(reason != "", "")
    stds = download[[f"std_{c}" for c in CHANNELS]].to_numpy(dtype=float)
    flat = (stds < blank_std) & reason.eq("").to_numpy()[:, None]
    rows = np.flatnonzero(flat.any(axis=1))
    channel = flat[rows].argmax(axis=1)  # the first blank channel
    reason.iloc[rows] = "blank"
    detail.iloc[rows] = [f"{CHANNELS[c]} std {stds[r, c]:.2f} < {blank_std}" for r, c in zip(rows, channel)]
    return reason, detail


def _union(targets) -> str:
    return format_target(sorted({int(k) for t in targets for k in str(t).split()}))


def _cluster_table(pool: pd.DataFrame, settings: CleanSettings):
    """Pool with its duplicate cluster and cluster size; duplicate pairs counted by kind; the search used."""
    codes = to_codes(pool, settings.hash, settings.channels)
    method = choose_search(codes, settings.max_distance) if len(codes) > 1 else "scan"
    i, j = find_pairs(codes, settings.max_distance, workers=settings.workers, method=method)
    labels = clusters(len(pool), i, j)
    sizes = np.bincount(labels, minlength=len(pool))
    split = pool["split"].to_numpy()
    kinds = pd.Series(["-".join(sorted(p)) for p in zip(split[i], split[j])], dtype=str)
    return pool.assign(cluster=labels, cluster_size=sizes[labels]), kinds.value_counts().sort_index().to_dict(), method


def _decide(pool: pd.DataFrame, settings: CleanSettings) -> pd.DataFrame:
    """Reason per external row of ``pool`` ("" = kept) and its final Target."""
    has_test = pool["split"].eq("test").groupby(pool["cluster"]).transform("any")
    has_train = pool["split"].eq("train").groupby(pool["cluster"]).transform("any")
    ext = pool["split"].eq("external")
    in_cluster = pool["cluster_size"].gt(1)
    drop_test = ext & in_cluster & has_test & (not settings.train_on_test_duplicates)
    drop_train = ext & in_cluster & has_train & ~drop_test
    among_ext = ext & in_cluster & ~drop_test & ~drop_train
    first = among_ext & ~pool["cluster"].where(among_ext).duplicated()
    reason = pd.Series("", index=pool.index)
    reason[drop_test] = "duplicate_of_test"
    reason[drop_train] = "duplicate_of_train"
    reason[among_ext & ~first] = "duplicate_within_external"
    union = pool[among_ext].groupby("cluster")["Target"].agg(_union)
    target = pool["Target"].mask(first, pool["cluster"].map(union))
    return pd.DataFrame({"reason": reason, "Target": target})


def _conflicts(pool: pd.DataFrame) -> list[dict]:
    """Clusters whose labelled (train or external) members were listed with different labels."""
    members = pool[pool["cluster_size"].gt(1) & pool["split"].ne("test")]
    out = []
    for cluster, group in members.groupby("cluster"):
        if group["listed"].nunique() > 1:
            out.append({"cluster": int(cluster), "Id": group["Id"].tolist(), "split": group["split"].tolist(),
                        "Target": group["listed"].tolist()})
    return out


def _leaks(pool: pd.DataFrame) -> pd.DataFrame:
    """Every (test image, non-test duplicate) pair of a cluster: the labels a test image leaks."""
    members = pool[pool["cluster_size"].gt(1)]
    test = members[members["split"].eq("test")][["cluster", "Id"]]
    other = members[members["split"].ne("test")][["cluster", "Id", "split", "Target"]]
    leaks = test.merge(other, on="cluster", suffixes=("", "_match"))
    leaks = leaks.rename(columns={"Id": "test_id", "Id_match": "match_id", "split": "match_split",
                                  "Target": "match_target"})
    return leaks[["test_id", "match_id", "match_split", "match_target", "cluster"]]


@dataclass
class CleanResult:
    table: pd.DataFrame        # every external Id: Target, status, reason, detail, cluster
    duplicates: pd.DataFrame   # every image in a cluster of two or more
    leaks: pd.DataFrame
    report: dict


def _pool(ext: pd.DataFrame, usable: pd.Series, source: pd.DataFrame, hash_cols: list) -> pd.DataFrame:
    """Train, test and usable external images with their hashes, in one table."""
    readable = source[source["error"].fillna("").eq("")]
    pool = pd.concat([readable[["Id", "split", "Target", *hash_cols]],
                      ext.loc[usable, ["Id", "Target", *hash_cols]].assign(split="external")], ignore_index=True)
    clash = pool["Id"].duplicated()
    if clash.any():
        raise ValueError(f"Id {pool['Id'][clash].iloc[0]} is both an external and a train/test Id; "
                         f"external Ids must be distinct from the Kaggle ones")
    return pool.assign(Target=pool["Target"].fillna("").astype(str))


def _report(ext, table, pool, duplicates, leaks, pair_kinds, method, settings) -> dict:
    conflicts = _conflicts(pool[pool["cluster"].notna()])
    by_test = leaks.drop_duplicates(["test_id", "match_split"])["match_split"].value_counts()
    return {
        "list": int(len(ext)),
        "downloaded": {k: int(v) for k, v in ext["status"].value_counts().sort_index().items()},
        "kept": int(table["status"].eq("kept").sum()),
        "dropped": {r: int(table["reason"].eq(r).sum()) for r in REASONS},
        "duplicates": {
            "search": method,
            "images_compared": int(len(pool)),
            "pairs": {k: int(v) for k, v in pair_kinds.items()},
            "clusters": int(duplicates["cluster"].nunique()),
            "images_in_clusters": int(len(duplicates)),
            "largest_cluster": int(pool["cluster_size"].max()) if len(pool) else 0,
        },
        "label_conflicts": {"clusters": len(conflicts), "examples": conflicts[:50]},
        "leaks": {"test_images": int(leaks["test_id"].nunique()), "via_train": int(by_test.get("train", 0)),
                  "via_external": int(by_test.get("external", 0))},
        "settings": {"hash": settings.hash, "channels": list(settings.channels),
                     "max_distance": settings.max_distance, "blank_std": settings.blank_std,
                     "train_on_test_duplicates": settings.train_on_test_duplicates},
    }


def check_hashed(source: pd.DataFrame, max_rejected_fraction: float) -> None:
    """Stop when more than ``max_rejected_fraction`` of a split's source images have no hash.

    An image without a hash is left out of the comparison, so a wrong folder would
    otherwise find no duplicate and no leak, and say nothing.
    """
    error = source["error"].fillna("").astype(str)
    for split, group in source.groupby("split", sort=False):  # train first, as listed
        failed = group[error[group.index].ne("")]
        if len(failed) > max_rejected_fraction * len(group):
            examples = "; ".join(f"{i}: {e}" for i, e in zip(failed["Id"][:3], failed["error"][:3]))
            folder = f" in {group['image_dir'].iloc[0]}" if "image_dir" in group else ""
            raise InputError(
                f"{len(failed)} of {len(group)} {split} images of the source could not be hashed (more than "
                f"data.max_rejected_fraction={max_rejected_fraction}), so leaks and duplicates of them would go "
                f"unseen; first errors: {examples}. Check that the {split} images are{folder}")
        if len(failed):
            log.warning("%d of %d %s images of the source could not be hashed and are not compared, e.g. %s: %s",
                        len(failed), len(group), split, failed["Id"].iloc[0], failed["error"].iloc[0])


def clean(download: pd.DataFrame, labels: pd.DataFrame, source: pd.DataFrame, settings: CleanSettings, *,
          max_rejected_fraction: float) -> CleanResult:
    """Decide, for every external Id of ``download``, whether it is kept, and why not.

    Stops (``check_hashed``) when more than ``max_rejected_fraction`` of the source's
    train or test images could not be hashed.
    """
    check_hashed(source, max_rejected_fraction)
    ext = download.merge(labels, on="Id", how="left", validate="one_to_one")
    reason, detail = completeness(ext, settings.blank_std)
    pool = _pool(ext, reason.eq(""), source, [f"{settings.hash}_{c}" for c in settings.channels])
    pool, pair_kinds, method = _cluster_table(pool, settings)
    decided = _decide(pool, settings)
    multi = pd.unique(pool.loc[pool["cluster_size"].gt(1), "cluster"])
    pool = pool.assign(status=decided["reason"].where(pool["split"].eq("external"), ""), listed=pool["Target"],
                       Target=decided["Target"],  # clusters of two or more, renumbered 0..k-1 by first appearance
                       cluster=pool["cluster"].map({c: k for k, c in enumerate(multi)}).astype("Int64"))

    by_id = pool[pool["split"].eq("external")].set_index("Id")
    ext_reason = reason.mask(reason.eq(""), ext["Id"].map(by_id["status"]))
    table = pd.DataFrame({
        "Id": ext["Id"],
        "Target": ext["Id"].map(by_id["Target"]).fillna(ext["Target"]),
        "status": np.where(ext_reason.eq(""), "kept", "dropped"),
        "reason": ext_reason,
        "detail": detail,
        "cluster": ext["Id"].map(by_id["cluster"]).astype("Int64"),
    })
    in_cluster = pool[pool["cluster"].notna()]
    duplicates = in_cluster[["cluster", "Id", "split", "Target", "status"]].sort_values(
        ["cluster", "split", "Id"], kind="stable").reset_index(drop=True)
    leaks = _leaks(in_cluster)
    report = _report(ext, table, pool, duplicates, leaks, pair_kinds, method, settings)
    return CleanResult(table, duplicates, leaks, report)


def read_download(path) -> pd.DataFrame:
    """A table of download records or source hashes: Ids and hashes as strings, errors as ""."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    for col in [c for c in table.columns if c.startswith("std_")]:
        table[col] = pd.to_numeric(table[col], errors="coerce")
    return table


def settings_from_config(external: dict, workers: int = 1) -> CleanSettings:
    """Cleaning settings from the config's ``external:`` section."""
    dedup = external["dedup"]
    return CleanSettings(hash=dedup["hash"], channels=tuple(dedup["channels"]), max_distance=dedup["max_distance"],
                         train_on_test_duplicates=dedup["train_on_test_duplicates"],
                         blank_std=external["blank_std"], workers=workers)


def write_result(result: CleanResult, output, image_dir) -> None:
    """Write the rule's outputs; ``kept`` (``Id,Target,image_dir``) is what ingest merges."""
    kept = result.table[result.table["status"].eq("kept")][["Id", "Target"]].assign(image_dir=str(image_dir))
    write_csv(result.table, output.table)
    write_csv(result.duplicates, output.duplicates)
    write_csv(result.leaks, output.leaks)
    write_json(result.report, output.report)
    write_csv(kept, output.kept)
    log.info("kept %d of %d external images; dropped %s", result.report["kept"], result.report["list"],
             {k: v for k, v in result.report["dropped"].items() if v})
