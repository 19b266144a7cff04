"""The loop's settings (torch-free in ``hpa.config.spec``, where common.smk checks them at DAG time) and a
config's digest, which identifies the config a snapshot was written under."""

from __future__ import annotations

import hashlib
import json


def config_digest(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
