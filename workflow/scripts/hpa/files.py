"""Atomic file output and small readers shared by every stage.

Every file the pipeline writes goes through ``atomic_path``: the content is
written to a temporary file in the destination folder and renamed into place,
so a killed job never leaves a half-written output that a rerun would trust.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

import pandas as pd


class InputError(ValueError):
    """Bad user input: the message names the file, the row and the fix."""


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None):
    """Yield a temporary path next to ``path``; rename it to ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=suffix or path.suffix or ".tmp"
    )
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file 0600; give it the mode any new file gets under the user's
        # umask, so results on a shared lab filesystem are as readable as the user intends.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_csv(df: pd.DataFrame, path, **kwargs) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, **kwargs)


def write_text(text: str, path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(obj, path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")


def read_json(path):
    return json.loads(Path(path).read_text())


def warn_terminal(logger: logging.Logger, message: str) -> None:
    """A warning the user must see: into the rule's log and onto the job's stderr, which Snakemake
    shows on the terminal (a rule's other records stay in its log)."""
    logger.warning(message)
    if not any(isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is sys.stderr
               for h in logging.getLogger().handlers):
        print(f"WARNING: {message}", file=sys.stderr, flush=True)


def setup_logging(log_path=None, mode: str = "w") -> logging.Logger:
    """Send the library's log records (and warnings) to the rule's log file (``mode="a"`` to add to it)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers = [logging.FileHandler(log_path, mode=mode)]
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.captureWarnings(True)
    logger = logging.getLogger("hpa")

    def log_uncaught(kind, value, tb):
        # The rule's log then ends with the reason, not just a silent stop. Bad input (InputError)
        # is the user's to fix and its message says how: shown alone, without a traceback.
        if issubclass(kind, InputError):
            logger.critical("%s: %s", kind.__name__, value)
            print(f"{kind.__name__}: {value}", file=sys.stderr)
            return
        logger.critical("%s: %s", kind.__name__, value, exc_info=(kind, value, tb))
        sys.__excepthook__(kind, value, tb)

    sys.excepthook = log_uncaught
    return logger
