"""Canonical JSON (RFC 8785) and algorithm-tagged hashes.

Every hash casekit writes is ``"sha256:" + hex``, computed over RFC 8785 canonical JSON for
structured data or over the exact bytes for files.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import rfc8785

HASH_PREFIX = "sha256:"


def _clean(value: Any) -> Any:
    """Make a value canonicalizable: non-finite floats (which JSON cannot carry) become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical bytes of a JSON-compatible value."""
    return rfc8785.dumps(_clean(value))


def sha256_bytes(data: bytes) -> str:
    return HASH_PREFIX + hashlib.sha256(data).hexdigest()


def sha256_json(value: Any) -> str:
    return sha256_bytes(canonical_json(value))


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return HASH_PREFIX + h.hexdigest()
