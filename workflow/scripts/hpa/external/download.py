"""HPAv18 external images: the list, the URLs, the channel conversion and the download.

The atlas serves each channel as a full-size colour JPEG (2048² or 1728²) at
``{base_url}/{Id up to the first _}/{rest of Id}_{color}.jpg``, tinted: red
signal in R, green in G, blue in B, yellow in R and G. Each is converted to the
single-channel 8-bit PNG of the Kaggle layout by taking the matching RGB
channel (``hpa.data.images.decode_plane``, which ingest and the cache share; never PIL's
``convert("L")``, whose luma weights put red, green and blue on different brightness scales: blue would peak near 36 of 255).

The download is resumable: every finished Id is appended to a journal (JSON
lines) after its four PNGs are in place, and a restart skips journalled Ids.
Per-channel hashes and standard deviations are computed while the image is in
memory, so the cleaning stage never decodes the images again.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from hpa.classes import CHANNELS, HPA
from hpa.data.images import YELLOW, BitDepth, channel_files, channel_path, decode_plane, load_image
from hpa.external.dedup import HASHES, plane_summary, summary_columns
from hpa.external.fetch import (
    NotFound,
    RateLimiter,
    Refused,
    RetryPolicy,
    Transient,
    fetch,
    source_stamp,
    with_retries,
)
from hpa.files import atomic_path
from hpa.tables import InputError, read_labels

log = logging.getLogger(__name__)

# Final outcomes are not retried on a restart; "failed" (transient errors that
# outlasted the retries) is.
FINAL = {"ok", "missing", "unreadable", "refused"}


RECORD_COLUMNS = ["Id", "status", "bytes", "attempts", "error"]


class Unreadable(Exception):
    """The body arrived but is not a decodable image."""


@dataclass(frozen=True)
class Settings:
    base_url: str
    size: int = 512
    yellow: str = "rg_mean"
    hash: str = "phash"
    workers: int = 8
    retries: int = 5
    timeout: float = 30.0
    rate: float = 10.0
    backoff: float = 1.0

    def __post_init__(self):
        if self.yellow not in YELLOW:
            raise InputError(f"external.yellow={self.yellow!r}; choose one of {sorted(YELLOW)}")
        if self.hash not in HASHES:
            raise InputError(f"external.dedup.hash={self.hash!r}; choose one of {sorted(HASHES)}")

    def image_key(self) -> dict:
        """The settings a finished image depends on: a change means fetching it again."""
        return {"size": self.size, "yellow": self.yellow}

    def stamp(self, image_id: str) -> str | None:
        """The four source files' stamps (``file:`` mirrors only): a rewritten mirror is fetched again."""
        stamps = [source_stamp(image_url(self.base_url, image_id, c)) for c in CHANNELS]
        return None if stamps[0] is None else "|".join(stamps)


def read_list(path) -> pd.DataFrame:
    """The external list (``Id,Target``), checked like train.csv; Ids must hold a ``_``."""
    table = read_labels(path, HPA)  # the HPAv18 list spells the atlas's classes as indices
    bad = ~table["Id"].str.contains("_", regex=False) | table["Id"].str.contains(r"[/\\]|^\.", regex=True)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(
            f"{path}, line {row + 2}: Id {table['Id'].iloc[row]!r} is not an HPA image Id "
            f"like 10580_1610_C1_1 (folder, '_', file stem; no slashes)"
        )
    return table


def image_url(base_url: str, image_id: str, color: str) -> str:
    folder, rest = image_id.split("_", 1)
    return f"{base_url.rstrip('/')}/{folder}/{rest}_{color}.jpg"


# The atlas serves 8-bit JPEGs; a 16-bit body (a local TIFF mirror) keeps the shift by 8 it always had.
def to_plane(body: bytes, color: str, size: int, yellow: str = "rg_mean",
             depth: BitDepth = BitDepth(rule="shift")) -> np.ndarray:
    """Decode one channel's file (a tinted JPEG from the atlas; any format PIL reads) into its uint8 plane."""
    try:
        with Image.open(io.BytesIO(body)) as im:
            return decode_plane(im, color, size, depth, yellow)
    except (OSError, ValueError, SyntaxError) as err:  # PIL's ways of saying "not an image"
        raise Unreadable(f"{type(err).__name__}: {err}") from None


def _fetch_channel(image_id, color, settings: Settings, limiter: RateLimiter, tries: list):
    url = image_url(settings.base_url, image_id, color)

    def attempt():
        tries.append(url)
        limiter.wait()
        body = fetch(url, settings.timeout)
        return len(body), to_plane(body, color, settings.size, settings.yellow)

    # A corrupt body may be a transfer glitch without Content-Length: refetch it too.
    policy = RetryPolicy(settings.retries, settings.backoff)
    return with_retries(attempt, policy, retry_on=(Transient, Unreadable))[0]


STATUS = {NotFound: "missing", Refused: "refused", Unreadable: "unreadable", Transient: "failed"}


def download_one(image_id: str, image_dir, settings: Settings, limiter: RateLimiter) -> dict:
    """Fetch, convert and write the four channels of one Id; return its record, never raise."""
    record = {"Id": image_id, "status": "ok", "bytes": 0, "attempts": 0, "error": "",
              **settings.image_key(), "hash": settings.hash, "stamp": settings.stamp(image_id)}
    planes, tries = [], []
    for color in CHANNELS:
        try:
            nbytes, plane = _fetch_channel(image_id, color, settings, limiter, tries)
        except Exception as err:  # recorded, never raised: one odd image must not stop 74k others
            status = STATUS.get(type(err), "failed")
            detail = str(err) if type(err) in STATUS else f"{type(err).__name__}: {err}"
            record.update(status=status, error=f"{color}: {detail} ({tries[-1] if tries else ''})",
                          attempts=len(tries))
            return record
        record["bytes"] += nbytes
        planes.append(plane)
    for color, plane in zip(CHANNELS, planes):
        with atomic_path(channel_path(image_dir, image_id, color)) as tmp:
            Image.fromarray(plane).save(tmp, format="PNG")
    record["attempts"] = len(tries)
    record.update(plane_summary(planes, settings.hash))
    return record


def rehash_one(record: dict, image_dir, settings: Settings, limiter: RateLimiter) -> dict:
    """Recompute the hashes of a finished image from its PNGs (after a change of hash kind)."""
    try:
        planes = load_image(channel_files(image_dir, record["Id"], CHANNELS))
    except OSError:  # a PNG damaged since: fetch the image again
        return download_one(record["Id"], image_dir, settings, limiter)
    kept = {k: v for k, v in record.items() if k in RECORD_COLUMNS or k in settings.image_key()}
    return {**kept, "hash": settings.hash, **plane_summary(planes, settings.hash)}


class Journal:
    """Append-only JSON lines: one record per finished Id; the last record of an Id wins."""

    def __init__(self, path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def load(self) -> dict[str, dict]:
        records = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                    records[rec["Id"]] = rec
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut by a kill: that Id is simply done again
        return records

    def append(self, record: dict) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as fh:
                fh.write(line)


def _plan(rec: dict | None, image_dir, settings: Settings) -> str:
    """What to do with an Id given its journal record: "keep", "rehash" or "fetch"."""
    if rec is None or rec.get("status") not in FINAL:
        return "fetch"
    if any(rec.get(k) != v for k, v in settings.image_key().items()):
        return "fetch"
    if rec["status"] != "ok":
        return "keep"  # a 404 is recorded once, not retried on every run
    if not all(channel_path(image_dir, rec["Id"], c).exists() for c in CHANNELS):
        return "fetch"
    if rec.get("stamp") != settings.stamp(rec["Id"]):
        return "fetch"  # a file: mirror written again since (the demo's, after a config change)
    return "keep" if rec.get("hash") == settings.hash else "rehash"


def _run(tasks, workers: int, journal: Journal, records: dict, total: int, done: int) -> None:
    """Run (Id, callable) tasks on a thread pool, a bounded window at a time (74k futures would not fit)."""
    tasks = iter(tasks)
    with ThreadPoolExecutor(max(1, workers)) as pool, tqdm(
        total=total, initial=done, unit="img", mininterval=2.0, desc="download"
    ) as bar:
        running = set()
        while True:
            for _image_id, call in tasks:
                running.add(pool.submit(call))
                if len(running) >= 4 * workers:
                    break
            if not running:
                return
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                rec = future.result()
                journal.append(rec)
                records[rec["Id"]] = rec
                bar.update()


def download(ids, image_dir, journal_path, settings: Settings) -> pd.DataFrame:
    """Download every Id not yet finished; return one record per Id, in the order of ``ids``."""
    image_dir = Path(image_dir)
    image_dir.mkdir(parents=True, exist_ok=True)
    for stale in image_dir.glob(".*.png"):  # temporary files of a killed run (see io.atomic_path)
        stale.unlink(missing_ok=True)
    journal = Journal(journal_path)
    previous = journal.load()
    limiter = RateLimiter(settings.rate)
    records, tasks = {}, []
    for image_id in ids:
        rec = previous.get(image_id)
        action = _plan(rec, image_dir, settings)
        if action == "keep":
            records[image_id] = rec
        elif action == "rehash":
            tasks.append((image_id, lambda r=rec: rehash_one(r, image_dir, settings, limiter)))
        else:
            tasks.append((image_id, lambda i=image_id: download_one(i, image_dir, settings, limiter)))
    log.info("%d of %d Ids already finished; %d to do", len(records), len(ids), len(tasks))
    _run(tasks, settings.workers, journal, records, len(ids), len(records))
    columns = RECORD_COLUMNS + summary_columns(settings.hash)
    table = pd.DataFrame([records[i] for i in ids], columns=columns)
    return table.fillna({"error": ""})


def settings_from_config(cfg: dict) -> Settings:
    """Download settings from the config's ``external:`` section."""
    keys = [f.name for f in fields(Settings) if f.name != "hash"]
    return Settings(**{k: cfg[k] for k in keys if k in cfg}, hash=cfg["dedup"]["hash"])


def check_failures(records: pd.DataFrame, max_failed_fraction: float) -> None:
    """Stop when too many downloads failed for transient reasons: the server or network is down.

    Finished images stay in the journal, so rerunning retries only the failed ones.
    """
    failed = records["status"].eq("failed")
    if len(records) and failed.mean() > max_failed_fraction:
        example = records.loc[failed].iloc[0]
        raise RuntimeError(
            f"{failed.sum()} of {len(records)} external images failed to download after their retries "
            f"(more than external.max_failed_fraction={max_failed_fraction}), e.g. {example['Id']}: "
            f"{example['error']}; check the network and external.base_url, then rerun: finished images "
            f"are not fetched again"
        )
    for row in records.loc[records["status"].ne("ok")].itertuples():
        log.warning("%s %s: %s", row.status, row.Id, row.error)
