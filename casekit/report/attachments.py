"""Reading the files a casekit report carries inside its PDF (PDF/A-3 attachments).

Shared by verification and signing; the PDF is untrusted input, so any failure to parse it is
an answer, never a traceback.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from casekit.errors import CasekitError


class BadReport(CasekitError):
    """Not a PDF, or a PDF without casekit's attachments (exit code 2)."""


class DamagedReport(Exception):
    """A PDF whose attachments cannot be read: a damaged or altered report (exit code 1)."""


#: pypdf refuses, by default, to inflate any stream beyond 75 MB (a guard against decompression
#: bombs). A large matter's ledger is bigger than that (50,000 attempts: about 200 MB), so the
#: limit is scaled to the file instead: a stream may inflate to at most INFLATE_RATIO times the
#: PDF's size (the JSON ledger compresses about 10:1), never less than the default.
INFLATE_RATIO = 100
INFLATE_FLOOR = 75_000_000


def _limits(pdf: Path) -> tuple[int, int]:
    size = pdf.stat().st_size
    return max(INFLATE_FLOOR, INFLATE_RATIO * size), size


def read_attachments(pdf: Path, skip: Collection[str] = ()) -> dict[str, bytes]:
    """The PDF's embedded files by name, but those in ``skip`` (read them with
    :func:`extract_attachment`). Raises BadReport if the file is not a PDF."""
    from pypdf import PdfReader, apply_configuration

    try:
        head = pdf.open("rb").read(1024)
    except OSError as exc:
        raise BadReport(f"{pdf}: cannot read it ({exc.strerror}); give the report's PDF file") \
            from None
    if b"%PDF-" not in head:
        raise BadReport(f"{pdf}: not a PDF file; give the report.pdf that `casekit report` "
                        "wrote")
    limit, size = _limits(pdf)
    try:
        with apply_configuration(zlib_maximum_output_length=limit,
                                 stream_decoding_work_maximum_length=limit,
                                 maximum_declared_stream_length=max(INFLATE_FLOOR, size)):
            reader = PdfReader(pdf)
            found = reader.attachments
            out: dict[str, bytes] = {}
            for name in found:
                if name in skip:
                    continue
                data = found[name]
                if len(data) != 1:
                    raise DamagedReport(f"attachment {name!r} appears {len(data)} times")
                out[name] = data[0]
    except DamagedReport:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse failure of untrusted input
        raise DamagedReport(f"the PDF's structure cannot be read ({type(exc).__name__}: "
                            f"{str(exc)[:200]})") from None
    return out



@dataclass(frozen=True)
class Extracted:
    """An attachment written to a file: its size and SHA-256 (``sha256:<hex>``)."""

    size: int
    sha256: str
    encoded: Path | None = None
    """Where its stream's encoded bytes were kept (``keep_encoded``), when they are one whole
    zlib stream of exactly these bytes: a FlateDecode stream with nothing after its end."""


def extract_attachment(pdf: Path, name: str, target: Path, keep_encoded: Path | None = None,
                       ) -> Extracted | None:
    """Write the attachment ``name`` of ``pdf`` to ``target``, inflating it in chunks (a large
    matter's ledger is gigabytes: it is never held whole), and hash it on the way. None when
    the PDF has no such attachment; DamagedReport when it cannot be read or is there twice.
    ``keep_encoded``: also write the stream's encoded bytes there when they are one whole zlib
    stream of the attachment and nothing else (:attr:`Extracted.encoded`)."""
    from pypdf import PdfReader, apply_configuration

    from casekit.canonical import HASH_PREFIX

    limit, size = _limits(pdf)
    try:
        with apply_configuration(zlib_maximum_output_length=limit,
                                 stream_decoding_work_maximum_length=limit,
                                 maximum_declared_stream_length=max(INFLATE_FLOOR, size)):
            reader = PdfReader(pdf)
            entries = [e for e in reader.attachment_list if e.name == name]
            if not entries:
                return None
            if len(entries) != 1:
                raise DamagedReport(f"attachment {name!r} appears {len(entries)} times")
            spec: Any = entries[0].pdf_object
            stream: Any = spec["/EF"]["/F"].get_object()
            digest = hashlib.sha256()
            written = 0
            whole: list[bool] = []
            with open(target, "wb") as out:
                for chunk in _inflated(stream, limit, whole):
                    digest.update(chunk)
                    out.write(chunk)
                    written += len(chunk)
            encoded = None
            if keep_encoded is not None and whole == [True]:
                keep_encoded.write_bytes(stream._data)
                encoded = keep_encoded
    except DamagedReport:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse failure of untrusted input
        raise DamagedReport(f"the PDF's attachment {name} cannot be read ({type(exc).__name__}:"
                            f" {str(exc)[:200]})") from None
    return Extracted(written, HASH_PREFIX + digest.hexdigest(), encoded)


def _inflated(stream: Any, limit: int, whole: list[bool] | None = None) -> Iterator[bytes]:
    """The decoded bytes of a PDF stream in 1 MiB chunks: a FlateDecode stream (as casekit
    writes them) inflated piecewise from its encoded bytes, any other through pypdf. Once
    done, ``whole`` gets whether the encoded bytes were one complete zlib stream with nothing
    after it (a FlateDecode stream without parameters, as casekit writes them)."""
    step = 1 << 20
    if stream.get("/Filter") != "/FlateDecode" or "/DecodeParms" in stream:
        data = stream.get_data()
        for i in range(0, len(data), step):
            yield data[i:i + step]
        return
    raw: bytes = stream._data  # the encoded bytes pypdf read (pypdf has no public accessor)
    inflate = zlib.decompressobj()
    total = i = 0
    for i in range(0, len(raw), step):
        buf = raw[i:i + step]
        while buf:
            out = inflate.decompress(buf, step)
            total += len(out)
            if total > limit:
                raise DamagedReport(f"an attachment inflates beyond {limit:,} bytes")
            yield out
            if inflate.eof:  # what follows the stream's end is left in unused_data
                break
            buf = inflate.unconsumed_tail
        if inflate.eof:
            break
    yield inflate.flush()
    if whole is not None:
        whole.append(inflate.eof and not inflate.unused_data and i + step >= len(raw))
