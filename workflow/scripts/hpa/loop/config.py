"""The loop's settings (torch-free in ``hpa.spec``, where common.smk checks them at DAG time) and a
config's digest, which identifies the config a snapshot was written under."""

from __future__ import annotations

import hashlib
import json

from hpa.spec import RUNTIME_KEYS, LoopConfig  # noqa: F401 (re-exported)


def config_digest(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
