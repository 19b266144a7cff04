"""Fetching bytes from an image server or a local mirror, politely and robustly.

``fetch(url, timeout)`` returns the whole body or raises one of three errors,
so callers decide by kind, not by parsing messages:

- ``NotFound``: the server says the file does not exist (404, 410, no such
  local file). Permanent: retrying cannot help.
- ``Transient``: timeouts, 5xx, 429, resets, truncated or empty bodies.
  Worth retrying after a pause.
- ``Refused``: any other HTTP error (403, 400, ...). Permanent.

``with_retries`` retries transient errors with exponential backoff, and
``RateLimiter`` spaces requests from all threads to at most ``rate`` per second.
"""

from __future__ import annotations

import http.client
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

USER_AGENT = "hpa-pipeline/0.1 (+https://www.kaggle.com/c/human-protein-atlas-image-classification)"


class FetchError(Exception):
    """A failed request; ``retry_after`` is the server's requested pause, if it gave one."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class NotFound(FetchError):
    pass


class Transient(FetchError):
    pass


class Refused(FetchError):
    pass


def _retry_after(headers) -> float | None:
    try:
        return float(headers.get("Retry-After"))
    except (TypeError, ValueError):
        return None


def _fetch_http(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            expected = response.headers.get("Content-Length")
            body = response.read()
    except urllib.error.HTTPError as err:
        if err.code in (404, 410):
            raise NotFound(f"HTTP {err.code}") from None
        if err.code == 429 or err.code >= 500:
            raise Transient(f"HTTP {err.code}", _retry_after(err.headers)) from None
        raise Refused(f"HTTP {err.code}") from None
    except http.client.IncompleteRead as err:
        raise Transient(f"truncated body ({len(err.partial)} bytes received)") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        # URLError wraps refused/reset connections and DNS failures; socket
        # timeouts and resets during the read arrive as OSError subclasses.
        reason = getattr(err, "reason", err)
        kind = "timeout" if isinstance(reason, (TimeoutError, socket.timeout)) else type(reason).__name__
        raise Transient(f"{kind}: {reason}") from None
    if expected is not None and expected.isdigit() and len(body) != int(expected):
        raise Transient(f"truncated body ({len(body)} of {expected} bytes)")
    if not body:
        raise Transient("empty body")
    return body


def _file_path(url: str) -> Path:
    # file:///abs/path or file:relative/path (relative to the working directory).
    return Path(url[len("file:"):].removeprefix("//"))


def _fetch_file(url: str, timeout: float) -> bytes:
    path = _file_path(url)
    try:
        body = path.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"no such file: {path}") from None
    except OSError as err:
        raise Transient(f"{type(err).__name__}: {err}") from None
    if not body:
        raise Transient(f"empty file: {path}")
    return body


FETCHERS = {"http": _fetch_http, "https": _fetch_http, "file": _fetch_file}


def source_stamp(url: str) -> str | None:
    """What changes when a ``file:`` source is rewritten (size and modification time); None for
    http(s), whose atlas images do not change and cannot be checked without fetching them."""
    if not url.lower().startswith("file:"):
        return None
    try:
        st = _file_path(url).stat()
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


def fetch(url: str, timeout: float) -> bytes:
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme not in FETCHERS:
        raise ValueError(f"URL {url!r}: scheme must be one of {sorted(FETCHERS)} (e.g. file:resources/mirror)")
    return FETCHERS[scheme](url, timeout)


@dataclass(frozen=True)
class RetryPolicy:
    """Up to ``retries`` retries; the k-th waits ``backoff * 2**k`` s (capped, jittered)."""

    retries: int = 5
    backoff: float = 1.0
    max_wait: float = 60.0

    def wait(self, attempt: int, retry_after: float | None = None) -> float:
        # Full jitter keeps many workers that failed together from retrying together.
        base = min(self.max_wait, self.backoff * 2**attempt)
        wait = base * (0.5 + 0.5 * random.random())
        return min(self.max_wait, max(wait, retry_after or 0.0))


def with_retries(call, policy: RetryPolicy, retry_on=(Transient,), sleep=time.sleep):
    """Run ``call()``; retry the errors in ``retry_on``. Returns (result, attempts)."""
    for attempt in range(policy.retries + 1):
        try:
            return call(), attempt + 1
        except retry_on as err:
            if attempt == policy.retries:
                raise
            sleep(policy.wait(attempt, getattr(err, "retry_after", None)))
    raise AssertionError("unreachable")


class RateLimiter:
    """At most ``rate`` calls of ``wait()`` per second, across threads (0: no limit)."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)
