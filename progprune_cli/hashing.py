"""The one short hash of plain values (a run's config hash, dense-cache keys, decode-cache names): the SHA-256 of
their sorted JSON, cut to `length` hex digits."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def short_hash(value: Any, length: int = 16) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:length]
