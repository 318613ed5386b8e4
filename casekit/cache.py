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
import zipfile
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
    from casekit import cjk, normalize

    h = hashlib.sha256(Path(normalize.__file__).read_bytes())
    h.update(Path(cjk.__file__).read_bytes())  # the CJK profiles' splitting rules
    return h.hexdigest()[:16]


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
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
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


# --- k-gram index cache ---------------------------------------------------------------------

#: Bump when the index's arrays change meaning (the source digests catch code changes too).
INDEX_CACHE_VERSION = 1


def _source_digest(*modules: str) -> str:
    import importlib

    h = hashlib.sha256()
    for name in modules:
        h.update(Path(importlib.import_module(name).__file__ or "").read_bytes())
    return h.hexdigest()[:16]


def index_cache_path(work_sha256: str, profile: str, exclude: list[tuple[int, int]],
                     k: int) -> Path:
    """Cache entry of a work's vocabulary and k-gram index: keyed by the work's SHA-256, the
    profile, k, the exclusions and the source of the normalizer and of the index (a change
    to any of them is a different entry, so a stale index is never used)."""
    key = "\x1f".join(["kgram-index", str(INDEX_CACHE_VERSION), work_sha256, profile, str(k),
                        repr(sorted(exclude)), _normalizer_digest(),
                        _source_digest("casekit.analysis.index")])
    name = hashlib.sha256(key.encode()).hexdigest()[:32]
    return cache_dir() / "index" / f"{name}.npz"


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays and their SHA-256 atomically (temporary file, then rename)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, checksum=np.array(_checksum(arrays)), **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache must not stop an analysis
        log.warning("index cache not written (%s): %s", path, exc)


def load_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of an entry, or None (logged) when it is unreadable or its checksum fails."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files if name != "checksum"}
            stored = str(data["checksum"][()])
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        log.warning("cache entry %s is unreadable (%s): rebuilding it", path, exc)
        return None
    if _checksum(arrays) != stored:
        log.warning("cache entry %s fails its checksum: rebuilding it", path)
        return None
    return arrays
