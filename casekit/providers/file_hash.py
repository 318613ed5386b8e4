"""Model-file hashes, cached by (path, size, mtime_ns): a 100-250 MB GGUF is hashed once, not
on every run that identifies it (embedded models, tokenizer files given as .gguf)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
from pathlib import Path

from casekit.cache import cache_dir
from casekit.canonical import sha256_file

log = logging.getLogger(__name__)


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


_HASH_LOCK = threading.Lock()


def file_sha256(path: Path, cache: Path | None = None) -> str:
    """``sha256:<hex>`` of a file, cached in ``<cache>/gguf-sha256.json`` by
    (path, size, mtime_ns) so that a 100-250 MB model file is hashed once."""
    path = path.resolve()
    st = path.stat()
    index_path = (cache or cache_dir()) / "gguf-sha256.json"
    key = str(path)
    with _HASH_LOCK:
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
            if not isinstance(index, dict):
                index = {}
        except (OSError, ValueError):
            index = {}
        entry = index.get(key)
        if (isinstance(entry, dict) and entry.get("size") == st.st_size
                and entry.get("mtime_ns") == st.st_mtime_ns
                and isinstance(entry.get("sha256"), str)):
            return str(entry["sha256"])
        digest = sha256_file(path)
        index[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
        try:
            _atomic_write_text(index_path, json.dumps(index, indent=1, sort_keys=True))
        except OSError as exc:  # a read-only cache only costs time
            log.warning("cannot write the hash cache %s (%s)", index_path, exc)
        return digest
