"""casekit's own cache folder, and the token cache of works.

Tokenizing a work is the costly part of building its index (1.3 s of 1.6 s for a million
words), so the tokens of each work are cached by the work's SHA-256, the profile, the
exclusions and the source of the normalizer: any change to one of them is a different key, so a
stale entry is never used. Entries are written atomically; an unreadable entry is rebuilt.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """``$CASEKIT_CACHE``, else ``$XDG_CACHE_HOME/casekit``, else ``~/.cache/casekit``."""
    explicit = os.environ.get("CASEKIT_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "casekit"
    return Path.home() / ".cache" / "casekit"


def _normalizer_digest() -> str:
    from casekit.analysis import normalize

    return hashlib.sha256(Path(normalize.__file__).read_bytes()).hexdigest()[:16]


def token_cache_path(work_sha256: str, profile: str, exclude: list[tuple[int, int]]) -> Path:
    key = "\x1f".join([work_sha256, profile, repr(sorted(exclude)), _normalizer_digest()])
    name = hashlib.sha256(key.encode()).hexdigest()[:32]
    return cache_dir() / "tokens" / f"{name}.npz"


def load_tokens(path: Path) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            joined = str(data["words"][()])
            starts = data["starts"].astype(np.int64)
            ends = data["ends"].astype(np.int64)
    except (OSError, KeyError, ValueError):
        return None
    words = joined.split("\n") if joined else []
    if len(words) != len(starts) or len(starts) != len(ends):
        return None
    return words, starts, ends


def save_tokens(path: Path, words: list[str], starts: np.ndarray, ends: np.ndarray) -> None:
    """Tokens never contain whitespace (``\\w+|[^\\w\\s]+``), so newline-joined is lossless."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, words=np.array("\n".join(words)), starts=starts, ends=ends)
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache must not stop an analysis
        log.warning("token cache not written (%s): %s", path, exc)
