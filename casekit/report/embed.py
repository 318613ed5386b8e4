"""Embedding a file too large to hold in memory (the ledger) into a rendered PDF (issue 14).

WeasyPrint embeds attachments from bytes, and its document identifier hashes every object's
bytes in memory: a 500,000-attempt ledger (some 2 GB) would be held several times over. So the
report is rendered with the other attachments, and casekit appends the ledger itself as a PDF
incremental update (ISO 32000-1 7.5.6), read from the file in 1 MiB chunks and compressed as it
is read (zlib, FlateDecode):

- the embedded file stream (``/Type /EmbeddedFile``, ``/Params`` with the size, MD5 checksum
  and the run's dates, as WeasyPrint writes them; its ``/Length`` is written as a fixed-width
  placeholder and filled in once the stream is written);
- its file specification (``/AFRelationship``, ``/Desc``), the embedded-files name tree with
  the new name in its sorted place, and the catalog with the specification added to ``/AF``
  (PDF/A-3 associated files), each a new version of the object WeasyPrint wrote;
- a cross-reference stream for those objects with ``/Prev`` pointing at WeasyPrint's.

The result reads as an ordinary attachment (pypdf, pyHanko, PDF viewers); a timestamp or a
signature is a later incremental update over all of it. Nothing here reads the clock: the same
inputs give the same bytes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import threading
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from casekit.canonical import HASH_PREFIX
from casekit.errors import CasekitError

log = logging.getLogger(__name__)

#: zlib level of the streamed attachment: level 9 compresses the ledger 1 % smaller at 1.5x the
#: time (90 against 135 MB/s on JSON Lines).
LEVEL = 6
_CHUNK = 1 << 20
_LENGTH_DIGITS = 15
"""Width of the stream's /Length placeholder (leading zeros are a valid PDF integer)."""


class CapturePdf:
    """A WeasyPrint ``finisher`` that keeps the pydyf document it is given (after an optional
    finisher of its own), so that objects can be added to it once it is written."""

    def __init__(self, then: Any = None) -> None:
        self.then = then
        self.pdf: Any = None

    def __call__(self, document: Any, pdf: Any) -> None:
        if self.then is not None:
            self.then(document, pdf)
        self.pdf = pdf


def append_files(target: Path, pdf: Any, files: Sequence[tuple[str, Any, str, str]],
                 when: datetime) -> None:
    """Append ``files`` to the PDF at ``target`` that WeasyPrint wrote from ``pdf`` (the
    pydyf document a :class:`CapturePdf` kept) as one incremental update. Each file is
    (name, source, AFRelationship, description), the source having ``path``, ``size``,
    ``sha256`` and ``md5`` (casekit.report.ledger_facts.LedgerFile): its first ``size``
    bytes are embedded and must hash to ``sha256``."""
    import pydyf

    if pdf is None or pdf.xref_position is None:
        raise CasekitError("internal: the rendered PDF was not captured")
    date = pydyf.String(when.strftime("D:%Y%m%d%H%M%SZ"))
    names_ref = pdf.catalog["Names"]["EmbeddedFiles"]
    names_obj = pdf.objects[int(names_ref.split()[0])]
    xref_obj = pdf.objects[-1]
    next_num = len(pdf.objects)
    offsets: dict[int, int] = {}
    added: dict[bytes, bytes] = {}
    with open(target, "r+b") as out:
        out.seek(0, 2)
        for name, source, relationship, description in files:
            stream_num, spec_num = next_num, next_num + 1
            next_num += 2
            offsets[stream_num] = out.tell()
            params = pydyf.Dictionary({"CheckSum": f"<{source.md5}>", "Size": source.size,
                                       "CreationDate": date, "ModDate": date})
            head = pydyf.Dictionary({"Type": "/EmbeddedFile",
                                     "Subtype": "/application#2foctet-stream",
                                     "Params": params, "Filter": "/FlateDecode"})
            out.write(f"{stream_num} 0 obj\n".encode() + head.data[:-2]
                      + b"/Length ")
            length_at = out.tell()
            out.write(b"0" * _LENGTH_DIGITS + b">>\nstream\n")
            written = _deflate(source, out)
            out.write(b"\nendstream\nendobj\n")
            end = out.tell()
            out.seek(length_at)
            out.write(f"{written:0{_LENGTH_DIGITS}d}".encode())
            out.seek(end)
            spec = pydyf.Dictionary({
                "Type": "/Filespec", "F": pydyf.String(name.encode(errors="ignore")),
                "UF": pydyf.String(name),
                "EF": pydyf.Dictionary({"F": f"{stream_num} 0 R".encode()}),
                "Desc": pydyf.String(description), "AFRelationship": f"/{relationship}"})
            offsets[spec_num] = out.tell()
            out.write(f"{spec_num} 0 obj\n".encode() + spec.data + b"\nendobj\n")
            # The name tree lists its keys in sorted order (as evidence.attachments sorts).
            pairs = list(zip(names_obj["Names"][::2], names_obj["Names"][1::2], strict=True))
            pairs.append((pydyf.String(name.encode(errors="ignore")), f"{spec_num} 0 R".encode()))
            pairs.sort(key=lambda p: _key(p[0]))
            names_obj["Names"] = pydyf.Array([x for p in pairs for x in p])
            # /AF in the same (name) order as WeasyPrint writes it (a specification added
            # above is not among pdf.objects: its key is kept here).
            af = list(pdf.catalog.get("AF") or [])
            key = _key(pydyf.String(name.encode(errors="ignore")))
            at = next((i for i, ref in enumerate(af) if (added.get(bytes(ref)) or _key(
                pdf.objects[int(ref.split()[0])]["F"])) > key), len(af))
            ref = f"{spec_num} 0 R".encode()
            added[ref] = key
            af.insert(at, ref)
            pdf.catalog["AF"] = pydyf.Array(af)
        for obj in (names_obj, pdf.catalog):
            offsets[obj.number] = out.tell()
            out.write(f"{obj.number} 0 obj\n".encode() + obj.data + b"\nendobj\n")
        _xref(out, offsets, next_num, pdf, xref_obj)
        out.truncate()


def _key(s: Any) -> bytes:
    """The sort key of a name-tree key as pydyf serializes it."""
    return bytes(s.data) if hasattr(s, "data") else str(s).encode()


@dataclass(frozen=True)
class Deflated:
    """A file's first ``size`` bytes, compressed ahead of time into ``stream`` (a zlib stream
    of them, as :func:`_deflate` writes), with their SHA-256."""

    path: Path
    size: int
    sha256: str
    stream: Path
    copied: list[Path] | None = None
    """Where :func:`_deflate` notes each time it copied ``stream`` (:func:`precompressed`)."""


_ready: dict[Path, Deflated] = {}
_lock = threading.Lock()


def _compress_to(path: Path, size: int, out: Any, stop: threading.Event | None = None,
                 ) -> tuple[int, str]:
    """Compress ``path``'s first ``size`` bytes into ``out``: (bytes read, SHA-256).
    ``stop``: when set, stop before the next chunk (fewer bytes read than ``size``)."""
    sha = hashlib.sha256()
    comp = zlib.compressobj(LEVEL)
    read = 0
    with open(path, "rb") as fh:
        while read < size:
            if stop is not None and stop.is_set():
                break
            chunk = fh.read(min(_CHUNK, size - read))
            if not chunk:
                break
            read += len(chunk)
            sha.update(chunk)
            out.write(comp.compress(chunk))
    out.write(comp.flush())
    return read, HASH_PREFIX + sha.hexdigest()


@contextmanager
def precompressed(path: Path, size: int, sha256: str, stream: Path) -> Iterator[list[Path]]:
    """While in the block, :func:`append_files` embeds the first ``size`` bytes of the file at
    ``path`` by copying ``stream``, a whole zlib stream of bytes that hash to ``sha256``
    (casekit verify: the PDF's own stream of the ledger it inflated, hashed and verified; see
    casekit.report.verify), when those are the bytes it must embed; else it compresses them.
    Yields a list that gets ``path`` each time the stream was copied."""
    key = path.resolve()
    copied: list[Path] = []
    with _lock:
        _ready[key] = Deflated(key, size, sha256, stream, copied)
    try:
        yield copied
    finally:
        with _lock:
            _ready.pop(key, None)


@contextmanager
def deflating(path: Path, scratch: Path | None = None) -> Iterator[None]:
    """Compress the file at ``path`` in a background thread while the caller goes on (zlib and
    the hashes release the GIL: on a second core the ledger's compression, some 30 s at
    500,000 attempts, overlaps the verifying pass and the rendering). :func:`append_files`
    uses the result when it is of the very bytes it must embed (same size and SHA-256);
    otherwise (the file grew, the thread failed) it compresses them itself. The compressed
    copy lives in ``scratch`` (default: the system's temporary folder) and is removed on exit."""
    try:
        size = os.stat(path).st_size
    except OSError:
        yield
        return
    key = path.resolve()
    fd, name = tempfile.mkstemp(prefix=".ledger-", suffix=".deflate", dir=scratch)
    stream = Path(name)
    stop = threading.Event()

    def work() -> None:
        try:
            with os.fdopen(fd, "wb") as out:
                read, sha = _compress_to(path, size, out, stop)
            if read == size:
                with _lock:
                    _ready[key] = Deflated(key, size, sha, stream)
            else:
                log.debug("background compression of %s stopped after %d of %d bytes", path,
                          read, size)
        except OSError as exc:  # compressed again when embedded; nothing is lost
            log.warning("background compression of %s failed (%s); compressing when embedding",
                        path, exc)

    thread = threading.Thread(target=work, name="casekit-deflate", daemon=True)
    thread.start()
    try:
        yield
    finally:
        # Whoever leaves no longer needs it: a caller that embedded the file has used it (or
        # compressed the bytes itself); one that stopped early (casekit verify finding a
        # difference) should not wait for the rest of a 2 GB ledger.
        stop.set()
        thread.join()
        with _lock:
            _ready.pop(key, None)
        stream.unlink(missing_ok=True)


def _precompressed(source: Any) -> Deflated | None:
    """The background compression of ``source``'s bytes, when there is one of exactly them."""
    with _lock:
        got = _ready.get(Path(source.path).resolve())
    # The same SHA-256, the same bytes: their MD5 (the /CheckSum) is the source's.
    if got is None or (got.size, got.sha256) != (source.size, source.sha256):
        return None
    return got


def _deflate(source: Any, out: Any) -> int:
    """Write ``source``'s first ``size`` bytes, FlateDecode-compressed, to ``out``; check them
    against its SHA-256. Returns the compressed length. Bytes compressed ahead
    (:func:`deflating`) are copied when their hashes are ``source``'s."""
    ready = _precompressed(source)
    if ready is not None:
        if ready.copied is not None:
            ready.copied.append(ready.path)
        with open(ready.stream, "rb") as fh:
            before = out.tell()
            shutil.copyfileobj(fh, out, _CHUNK)
            return int(out.tell() - before)
    before = out.tell()
    read, sha = _compress_to(Path(source.path), source.size, out)
    if read != source.size or sha != source.sha256:
        raise CasekitError(f"{source.path} changed while the report was written (it no longer "
                           f"begins with the {source.size:,} bytes verified); wait for the run "
                           "to finish, then report again")
    return int(out.tell() - before)


def _xref(out: Any, offsets: dict[int, int], size_before_xref: int, pdf: Any,
          prev_xref: Any) -> None:
    """A cross-reference stream for the objects at ``offsets``, with ``/Prev``, then the
    trailer's ``startxref``."""
    import pydyf

    xref_num = size_before_xref
    offsets[xref_num] = out.tell()
    nums = sorted(offsets)
    width = max(4, (max(offsets.values()).bit_length() + 7) // 8)
    index: list[int] = []
    rows = b""
    for n in nums:
        if index and index[-2] + index[-1] == n:
            index[-1] += 1
        else:
            index += [n, 1]
        rows += b"\x01" + offsets[n].to_bytes(width, "big") + b"\x00\x00"
    extra = {"Type": "/XRef", "Index": pydyf.Array(index), "W": pydyf.Array((1, width, 2)),
             "Size": xref_num + 1, "Root": pdf.catalog.reference,
             "Prev": pdf.xref_position}
    if pdf.info:
        extra["Info"] = pdf.info.reference
    if "ID" in prev_xref.extra:
        extra["ID"] = prev_xref.extra["ID"]
    stream = pydyf.Stream([rows], pydyf.Dictionary(extra), compress=True)
    out.write(f"{xref_num} 0 obj\n".encode() + stream.data + b"\nendobj\n")
    out.write(f"startxref\n{offsets[xref_num]}\n%%EOF\n".encode())
