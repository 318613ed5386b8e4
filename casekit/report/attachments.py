"""Reading the files a casekit report carries inside its PDF (PDF/A-3 attachments).

Shared by verification and signing; the PDF is untrusted input, so any failure to parse it is
an answer, never a traceback.
"""

from __future__ import annotations

from pathlib import Path

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


def read_attachments(pdf: Path) -> dict[str, bytes]:
    """The PDF's embedded files by name. Raises BadReport if the file is not a PDF."""
    from pypdf import PdfReader, apply_configuration

    try:
        head = pdf.open("rb").read(1024)
    except OSError as exc:
        raise BadReport(f"{pdf}: cannot read it ({exc.strerror}); give the report's PDF file") \
            from None
    if b"%PDF-" not in head:
        raise BadReport(f"{pdf}: not a PDF file; give the report.pdf that `casekit report` "
                        "wrote")
    size = pdf.stat().st_size
    limit = max(INFLATE_FLOOR, INFLATE_RATIO * size)
    try:
        with apply_configuration(zlib_maximum_output_length=limit,
                                 stream_decoding_work_maximum_length=limit,
                                 maximum_declared_stream_length=max(INFLATE_FLOOR, size)):
            reader = PdfReader(pdf)
            found = reader.attachments
            out: dict[str, bytes] = {}
            for name in found:
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

