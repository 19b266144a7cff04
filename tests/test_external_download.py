"""The HPAv18 download against a real HTTP server on 127.0.0.1, with injected faults."""

import collections
import http.server
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, SHARED_HPA
from PIL import Image

from hpa.classes import CHANNELS
from hpa.demo.mirror import tinted_jpeg
from hpa.demo.render import render_field
from hpa.external.dedup import plane_summary
from hpa.external.download import Settings, check_failures, download, image_url, read_list, to_plane
from hpa.external.fetch import RateLimiter
from hpa.tables import InputError

TIMEOUT = 0.3


class AtlasHandler(http.server.BaseHTTPRequestHandler):
    """Serves self.server.files; self.server.faults[path] is a list of behaviours, one per request."""

    def do_GET(self):
        server = self.server
        with server.lock:
            server.requests[self.path] += 1
            plan = server.faults.get(self.path, [])
            behaviour = plan.pop(0) if len(plan) > 1 else (plan[0] if plan else "ok")
        body = server.files.get(self.path)
        if behaviour == "404" or body is None:
            return self.send_error(404)
        if behaviour == "500":
            return self.send_error(500)
        if behaviour == "slow":
            time.sleep(3 * TIMEOUT)
        if behaviour == "corrupt":
            body = b"\xff\xd8\xff\xe0 not really a JPEG " * 20
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            if behaviour == "truncate":
                self.wfile.write(body[: len(body) // 3])
                self.close_connection = True
                return
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            return
        if behaviour == "ok":
            with server.lock:
                server.delivered[self.path] += 1
        time.sleep(server.delay)

    def log_message(self, *args):
        pass


@pytest.fixture
def atlas():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), AtlasHandler)
    server.daemon_threads = True
    server.files, server.faults, server.delay = {}, {}, 0.0
    server.requests, server.delivered = collections.Counter(), collections.Counter()
    server.lock = threading.Lock()
    server.base_url = f"http://127.0.0.1:{server.server_address[1]}/images"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def publish(server, image_id, planes):
    """Put one image's four tinted JPEGs on the server; return the JPEG bytes per colour."""
    bodies = {}
    for color, plane in zip(CHANNELS, planes):
        bodies[color] = tinted_jpeg(plane, color, quality=92)
        server.files[path_of(server, image_id, color)] = bodies[color]
    return bodies


def path_of(server, image_id, color):
    return image_url(server.base_url, image_id, color).split(str(server.server_address[1]), 1)[1]


def fields(n, size=64, seed=0):
    rng = np.random.default_rng(seed)
    return [render_field(frozenset({int(k)}), size, rng) for k in rng.integers(0, 28, n)]


def settings(server, **kw):
    base = dict(base_url=server.base_url, size=32, workers=4, retries=2, timeout=TIMEOUT, rate=0, backoff=0.01)
    return Settings(**{**base, **kw})


def test_image_url_follows_the_atlas_layout():
    base = "http://v18.proteinatlas.org/images"
    assert image_url(base, "10580_1610_C1_1", "green") == "http://v18.proteinatlas.org/images/10580/1610_C1_1_green.jpg"
    assert image_url(base + "/", "11651_1732_F3_13_cr580610dc203b9", "red").endswith(
        "/images/11651/1732_F3_13_cr580610dc203b9_red.jpg")


@pytest.mark.skipif(not (SHARED_HPA / "HPAv18RBGY_wodpl.csv").exists(), reason="real HPAv18 list not present")
def test_the_real_list_reads_unchanged():
    table = read_list(SHARED_HPA / "HPAv18RBGY_wodpl.csv")
    assert len(table) == 74606 and table["Id"].is_unique
    assert table.iloc[0].tolist() == ["10580_1610_C1_1", "0 2 13 21 25"]
    urls = [image_url("http://v18.proteinatlas.org/images", i, "blue") for i in table["Id"]]
    assert len(set(urls)) == len(urls) and all(u.count("/") == 5 for u in urls)


def test_read_list_rejects_ids_that_are_not_atlas_ids(tmp_path):
    path = tmp_path / "list.csv"
    path.write_text("Id,Target\n10580_1610_C1_1,0\n../etc_passwd,1\n")
    with pytest.raises(InputError, match=r"line 3: Id '../etc_passwd' cannot name a file"):
        read_list(path)
    path.write_text("Id,Target\nnounderscore,0\n")
    with pytest.raises(InputError, match="line 2"):
        read_list(path)


def test_channels_come_from_their_own_rgb_channel_never_from_luma():
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 180, 90
    png = Image.fromarray(rgb)
    buf = io.BytesIO()
    png.save(buf, format="PNG")  # lossless, so the values are exact
    body = buf.getvalue()
    assert to_plane(body, "red", 8).max() == 200 and to_plane(body, "blue", 8).max() == 90
    assert to_plane(body, "yellow", 8, "red").max() == 200
    assert to_plane(body, "yellow", 8, "rg_mean").max() == 190  # not (200 + 180) % 256 / 2
    assert to_plane(body, "yellow", 8, "luminance").max() == round(0.299 * 200 + 0.587 * 180 + 0.114 * 90)


@pytest.mark.skipif(not (SHARED_HPA / "images").is_dir(), reason="real HPAv18 sample JPEGs not present")
def test_real_atlas_jpegs_download_at_full_brightness_scale(atlas, tmp_path):
    """Served like the atlas (2048 and 1728 px tinted JPEGs), converted to 512 px PNGs per channel."""
    for image_id in ("800_A6_1", "89_B5_1"):
        for color in CHANNELS:
            body = (SHARED_HPA / "images" / f"{image_id}_{color}.jpg").read_bytes()
            atlas.files[f"/images/{image_id.replace('_', '/', 1)}_{color}.jpg"] = body
    ids = ["800_A6_1", "89_B5_1"]
    records = download(ids, tmp_path / "images", tmp_path / "journal.jsonl", settings(atlas, size=512))
    assert records["status"].tolist() == ["ok", "ok"]
    for image_id in ids:
        blue = np.asarray(Image.open(tmp_path / "images" / f"{image_id}_blue.png"))
        assert blue.shape == (512, 512) and blue.dtype == np.uint8
        # convert("L") would leave blue at most ~40 (0.114 * 255 + JPEG noise).
        assert blue.max() > 240
        # Red is the R channel, reduced (JPEG DCT scaling averages like a box filter).
        with Image.open(SHARED_HPA / "images" / f"{image_id}_red.jpg") as im:
            reference = np.asarray(im.convert("RGB").resize((512, 512), Image.BOX))[..., 0].astype(float)
        red = np.asarray(Image.open(tmp_path / "images" / f"{image_id}_red.png")).astype(float)
        assert np.abs(red - reference).mean() < 2.0 and abs(red.mean() - reference.mean()) < 0.5


def test_faults_lose_nothing_and_fetch_every_good_image_once(atlas, tmp_path):
    images = dict(zip(["good1", "good2", "flaky", "slow", "cut", "gone", "corrupt", "dead"], fields(8)))
    ids = [f"{i}_1_A1_1" for i in range(len(images))]
    named = dict(zip(images, ids))
    bodies = {named[k]: publish(atlas, named[k], planes) for k, planes in images.items()}
    faults = {("flaky", "green"): ["500", "ok"], ("slow", "red"): ["slow", "ok"], ("cut", "blue"): ["truncate", "ok"],
              ("gone", "yellow"): ["404"], ("corrupt", "green"): ["corrupt"], ("dead", "red"): ["500"]}
    for (name, color), plan in faults.items():
        atlas.faults[path_of(atlas, named[name], color)] = list(plan)

    image_dir, journal = tmp_path / "images", tmp_path / "journal.jsonl"
    records = download(ids, image_dir, journal, settings(atlas)).set_index("Id")

    status = records["status"].rename(index={v: k for k, v in named.items()}).to_dict()
    assert status == {"good1": "ok", "good2": "ok", "flaky": "ok", "slow": "ok", "cut": "ok",
                      "gone": "missing", "corrupt": "unreadable", "dead": "failed"}
    errors = records["error"].rename(index={v: k for k, v in named.items()})
    assert errors["gone"].startswith("yellow: HTTP 404") and "/0/" not in errors["gone"]
    assert errors["corrupt"].startswith("green: ") and errors["dead"].startswith("red: HTTP 500")
    assert records.loc[named["good1"], "attempts"] == 4
    assert all(records.loc[named[k], "attempts"] == 5 for k in ("flaky", "slow", "cut"))  # one retry each
    assert records.loc[named["corrupt"], "attempts"] == 1 + 3  # red once, then green: 1 try + 2 retries

    ok = [named[k] for k in ("good1", "good2", "flaky", "slow", "cut")]
    for image_id in ok:
        planes = []
        for color in CHANNELS:
            assert atlas.delivered[path_of(atlas, image_id, color)] == 1  # exactly once, even after faults
            png = np.asarray(Image.open(image_dir / f"{image_id}_{color}.png"))
            np.testing.assert_array_equal(png, to_plane(bodies[image_id][color], color, 32))
            planes.append(png)
        summary = plane_summary(planes, "phash")
        assert all(records.loc[image_id, k] == v for k, v in summary.items())
        assert records.loc[image_id, "bytes"] == sum(len(b) for b in bodies[image_id].values())
    for image_id in set(ids) - set(ok):
        assert not list(image_dir.glob(f"{image_id}_*.png"))  # nothing half-written
    assert not [p for p in image_dir.iterdir() if p.name.startswith(".")]

    # A rerun fetches nothing that finished (404 and corrupt included); only the failed Id is retried.
    before = collections.Counter(atlas.requests)
    atlas.faults[path_of(atlas, named["dead"], "red")] = ["ok"]
    again = download(ids, image_dir, journal, settings(atlas)).set_index("Id")
    new = {p for p in atlas.requests if atlas.requests[p] != before[p]}
    assert new == {path_of(atlas, named["dead"], c) for c in CHANNELS}
    assert again.loc[named["dead"], "status"] == "ok"
    assert again.drop(index=named["dead"]).equals(records.drop(index=named["dead"]))


def test_changing_the_hash_rehashes_from_disk_and_changing_the_size_refetches(atlas, tmp_path):
    ids = [f"{i}_7_B2_1" for i in range(3)]
    for image_id, planes in zip(ids, fields(3, seed=1)):
        publish(atlas, image_id, planes)
    image_dir, journal = tmp_path / "images", tmp_path / "journal.jsonl"
    download(ids, image_dir, journal, settings(atlas))
    served = sum(atlas.requests.values())
    rehashed = download(ids, image_dir, journal, settings(atlas, hash="dhash"))
    assert sum(atlas.requests.values()) == served
    assert {"dhash_red", "dhash_yellow"} <= set(rehashed.columns) and rehashed["dhash_green"].str.len().eq(16).all()
    bigger = download(ids, image_dir, journal, settings(atlas, size=48))
    assert sum(atlas.requests.values()) == served + 12 and bigger["status"].eq("ok").all()
    assert Image.open(image_dir / f"{ids[0]}_red.png").size == (48, 48)


KILLED_RUN = """
import sys
from hpa.external.download import Settings, download
ids = [f"{i}_3_C3_1" for i in range(int(sys.argv[2]))]
download(ids, sys.argv[3] + "/images", sys.argv[3] + "/journal.jsonl",
         Settings(base_url=sys.argv[1], size=32, workers=2, retries=1, timeout=5, rate=0, backoff=0.01))
"""


def test_a_killed_download_resumes_without_refetching_finished_images(atlas, tmp_path):
    n = 24
    ids = [f"{i}_3_C3_1" for i in range(n)]
    for image_id, planes in zip(ids, fields(n, size=48, seed=2)):
        publish(atlas, image_id, planes)
    atlas.delay = 0.03  # ~0.25 s per image on 2 workers: the kill lands mid-run
    env = dict(os.environ, PYTHONPATH=str(REPO / "workflow/scripts"))
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, atlas.base_url, str(n), str(tmp_path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = tmp_path / "journal.jsonl"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not journal.exists() or len(journal.read_text().splitlines()) < 6):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {json.loads(line)["Id"] for line in journal.read_text().splitlines() if line.endswith("}")}
    assert 6 <= len(finished) < n, "the kill should land mid-run"
    before = collections.Counter(atlas.requests)

    atlas.delay = 0.0
    records = download(ids, tmp_path / "images", journal,
                       Settings(base_url=atlas.base_url, size=32, workers=2, retries=1, timeout=5, rate=0))
    assert records["status"].eq("ok").all() and records["Id"].tolist() == ids
    refetched = {p.split("/")[2] + "_" + p.split("/")[3].rsplit("_", 1)[0]
                 for p in atlas.requests if atlas.requests[p] != before[p]}
    assert not refetched & finished and refetched | finished == set(ids)
    for image_id in ids:
        for color in CHANNELS:
            assert Image.open(tmp_path / "images" / f"{image_id}_{color}.png").size == (32, 32)
    assert not [p for p in (tmp_path / "images").iterdir() if p.name.startswith(".")]


def test_too_many_failures_stop_the_run_naming_one():
    records = pd.DataFrame({"Id": ["a_1", "b_1", "c_1"], "status": ["ok", "failed", "missing"],
                            "error": ["", "red: timeout: timed out (http://x/a)", "blue: HTTP 404"]})
    with pytest.raises(RuntimeError, match=r"1 of 3 external images failed .* b_1: red: timeout"):
        check_failures(records, 0.2)
    check_failures(records, 0.5)


def test_rate_limiter_spaces_requests_across_threads():
    limiter = RateLimiter(50)
    start = time.monotonic()
    threads = [threading.Thread(target=lambda: [limiter.wait() for _ in range(5)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - start >= 19 / 50 - 0.01  # 20 calls: 19 intervals at least
