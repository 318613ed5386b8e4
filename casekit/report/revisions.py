"""The revisions of a report's PDF and how its bytes relate to a fresh rendering
(`casekit verify`'s "rendering" check): WeasyPrint's revision, casekit's streamed update that
embeds the ledger, and later incremental updates (a timestamp, a signature)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from casekit.report.evidence import STREAMED_ATTACHMENTS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Revisions:
    """The revisions of a PDF: the one WeasyPrint rendered, then incremental updates."""

    count: int
    first_end: int | None
    """Offset just past the first revision's ``%%EOF`` (None when it cannot be read)."""
    added: list[str]
    """What the later revisions add, in words (a timestamp token, a signature, ...)."""


def pdf_revisions(data: bytes | Path) -> Revisions:
    """Read the revision structure with pyHanko (optional: without it, one revision is
    assumed unless the bytes hold several ``%%EOF`` markers). The update in which casekit
    itself embeds the ledger (casekit.report.embed) belongs to the rendering: ``count`` counts
    it with the first revision and ``first_end`` is the end of it."""
    import io

    try:
        from pyhanko.pdf_utils.reader import PdfFileReader
    except ImportError:
        raw = data if isinstance(data, bytes) else data.read_bytes()
        n = raw.count(b"%%EOF")
        return Revisions(count=max(1, n), first_end=None, added=[])
    try:
        with (io.BytesIO(data) if isinstance(data, bytes) else open(data, "rb")) as fh:
            reader = PdfFileReader(fh, strict=False)
            count = reader.xrefs.total_revisions
            kinds_of: list[set[str]] = []
            names_of: list[set[str]] = []
            for rev in range(1, count):
                kinds: set[str] = set()
                names: set[str] = set()
                for ref in reader.xrefs.explicit_refs_in_revision(rev):
                    obj = reader.get_object(ref, revision=rev)
                    kinds.add(_kind(obj))
                    if _kind(obj) == "an attached file" and hasattr(obj, "get") and \
                            str(obj.get("/Type", "")) == "/Filespec":
                        names.add(str(obj.get("/F", "")))
                kinds_of.append(kinds)
                names_of.append(names)
            # The rendering: WeasyPrint's revision, and casekit's update after it that streams
            # the ledger and attempts.csv in (STREAMED_ATTACHMENTS).
            rendered = 2 if count > 1 and names_of[0] and \
                names_of[0] <= STREAMED_ATTACHMENTS else 1
            end = reader.xrefs.get_xref_container_info(rendered - 1).end_location
            fh.seek(end)
            tail = fh.read(128)
        eof = tail.index(b"%%EOF") + len(b"%%EOF")
        while eof < len(tail) and tail[eof:eof + 1] in (b"\r", b"\n"):
            eof += 1
        added = [", ".join(sorted(k for k in kinds if k)) or "no objects"
                 for kinds in kinds_of[rendered - 1:]]
        return Revisions(count=count - rendered + 1, first_end=end + eof, added=added)
    except Exception as exc:  # noqa: BLE001 - untrusted input; the text check still runs
        log.warning("verify: cannot read the PDF's revisions (%s)", exc)
        return Revisions(count=1, first_end=None, added=[])


def _kind(obj: Any) -> str:
    """A reader's word for one object an incremental update writes."""
    try:
        t = str(obj.get("/Type", "")) if hasattr(obj, "get") else ""
        if t == "/EmbeddedFile" or t == "/Filespec":
            return "an attached file"
        if t == "/Sig":
            return "a signature"
        if t == "/DocTimeStamp":
            return "a document timestamp"
        if t == "/Catalog":
            return "the catalog"
        if t == "/Annot" or "/FT" in obj:
            return "a signature field"
        if t in ("/Page", "/Pages"):
            return "a page's annotation list" if t == "/Page" else "the page tree"
        if t in ("/XRef", "/ObjStm"):
            return ""
    except Exception:  # noqa: BLE001
        return "an unreadable object"
    return "other objects (names, form, metadata)"


def _chunks(data: bytes | Path, limit: int | None = None) -> Iterator[bytes]:
    """The bytes (or a file's), the first ``limit`` of them, 1 MiB at a time."""
    step = 1 << 20
    if isinstance(data, bytes):
        end = len(data) if limit is None else min(limit, len(data))
        for i in range(0, end, step):
            yield data[i:min(i + step, end)]
        return
    left = limit if limit is not None else -1
    with open(data, "rb") as fh:
        while left != 0:
            chunk = fh.read(step if left < 0 else min(step, left))
            if not chunk:
                return
            left -= len(chunk) if left > 0 else 0
            yield chunk


def _size(data: bytes | Path) -> int:
    return len(data) if isinstance(data, bytes) else data.stat().st_size


def _starts_with(given: bytes | Path, fresh: bytes | Path) -> bool:
    """Whether ``given`` begins with every byte of ``fresh`` (files compared in chunks)."""
    n = _size(fresh)
    if _size(given) < n:
        return False
    # Both yield 1 MiB chunks from the start: the pairs are aligned.
    return all(x == y for x, y in zip(_chunks(given, n), _chunks(fresh), strict=False))


def _same_bytes(given: bytes | Path, fresh: bytes | Path) -> bool:
    return _size(given) == _size(fresh) and _starts_with(given, fresh)


def rendering_matches(given: bytes | Path, fresh: bytes | Path) -> bool:
    """Whether the given PDF is a fresh rendering byte for byte, or one followed by incremental
    updates (a timestamp, signatures)."""
    return _same_bytes(given, fresh) or (_starts_with(given, fresh)
                                         and pdf_revisions(given).count > 1)


def bytes_verdict(given: bytes | Path, fresh: bytes | Path) -> str:
    """Say precisely how the given PDF's bytes relate to a fresh rendering of the same HTML:
    identical; identical in its first revision with timestamp/signature updates after it; or
    different in the rendered revision itself (another WeasyPrint or font version)."""
    if _same_bytes(given, fresh):
        return "the PDF is byte-identical to a fresh rendering"
    revs = pdf_revisions(given)
    n = revs.count - 1
    later = (f"{n} incremental {'update' if n == 1 else 'updates'} after rendering "
             f"{'adds' if n == 1 else 'add'} "
             + "; ".join(revs.added)) if revs.count > 1 else ""
    if rendering_matches(given, fresh):
        return (f"its first revision (as rendered) is byte-identical to a fresh rendering; "
                f"{later} (the timestamp token and signatures are checked below)")
    if revs.count > 1:
        return (f"its first revision (as rendered) differs from a fresh rendering in its bytes "
                f"(another WeasyPrint or font version renders the same text differently); "
                f"{later}")
    return ("the PDF bytes differ from a fresh rendering: the same text from another WeasyPrint "
            "or font version")


def _page_diff(theirs: list[str], ours: list[str]) -> str:
    if len(theirs) != len(ours):
        return (f"the report has {len(theirs)} pages, a fresh rendering {len(ours)}: its text "
                "was changed")
    for i, (a, b) in enumerate(zip(theirs, ours, strict=True)):
        if a != b:
            j = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]),
                     min(len(a), len(b)))
            return (f"page {i + 1} differs from a fresh rendering near "
                    f"{a[max(0, j - 30):j + 30]!r} (expected {b[max(0, j - 30):j + 30]!r})")
    return "the pages differ"
