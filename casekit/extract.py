"""Text extraction from the formats rights holders hold their works in: EPUB, DOCX and PDF.

A work given as ``.epub``, ``.docx`` or ``.pdf`` is identified by the SHA-256 of the original
file; its text is extracted here, and the extracted text is what casekit matches, excludes
from and quotes (its own SHA-256 is recorded beside the file's, with the extractor and its
version). Every extracted text is cut into *units*: the EPUB's chapters (spine documents), the
DOCX's paragraphs or the PDF's pages, so an exhibit can say where in the original a span is.

- EPUB (ebooklib): the spine's XHTML documents in reading order; block elements (``p``,
  headings, ``li``, ...) become paragraphs separated by a blank line, ``<br>`` a line break.
  An EPUB with DRM (``META-INF/encryption.xml`` naming anything but font obfuscation, or an
  Adobe ``rights.xml``) is refused: its text cannot be read.
- DOCX (python-docx): the body paragraphs in order (line breaks kept), separated by a blank
  line; tables, headers and footnotes are not read.
- PDF (pypdfium2, PDFium's text layer): each page's text, pages separated by a blank line. A
  page with an image and no text is a scan: the work is refused until it is OCRed, since an
  empty text would silently measure nothing.
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from casekit.errors import WorkError
from casekit.visible import visible

log = logging.getLogger(__name__)

EXTRACTED_SUFFIXES = (".epub", ".docx", ".pdf")
#: The unit an extracted format is cut into, by suffix.
UNIT_NAMES = {".epub": "chapter", ".docx": "paragraph", ".pdf": "page"}
#: Encryption algorithms of ``META-INF/encryption.xml`` that only obfuscate embedded fonts
#: (IDPF and Adobe); anything else encrypts content (DRM).
FONT_OBFUSCATION = ("http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC")
_BLOCK_TAGS = ("p", "h1", "h2", "h3", "h4", "h5", "h6", "li", "pre", "blockquote", "dt", "dd",
               "td", "th", "caption", "figcaption", "div")
_HEADINGS = ("h1", "h2", "h3", "h4")
_SPACE_RUN = re.compile(r"[ \t\r\f\v\u00a0]+")

#: Zip-bomb guard for EPUB and DOCX (both zip archives), checked on the archive's directory
#: before a member is read: at most this many members, this many bytes uncompressed in all, and
#: no member larger than ``ZIP_RATIO_FLOOR`` expanding more than ``ZIP_MAX_RATIO`` times. (A
#: novel's EPUB has tens to hundreds of members, a few MB uncompressed, text compressing 3 to
#: 10 times.) Python's zipfile never reads past a member's stated size, so the stated sizes
#: bound what extraction reads.
ZIP_MAX_MEMBERS = 10_000
ZIP_MAX_UNCOMPRESSED = 1 << 30
ZIP_MAX_RATIO = 200
ZIP_RATIO_FLOOR = 1 << 20


@dataclass(frozen=True)
class Unit:
    """A part of the original (chapter, paragraph or page) and its characters in the text."""

    label: str
    start: int
    end: int


@dataclass(frozen=True)
class Extracted:
    text: str
    units: list[Unit]
    extractor: str
    """The extracting library and its version, e.g. ``pypdfium2 5.15.2 (PDFium 159.0...)``."""


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:  # pragma: no cover - installed with casekit
        return "unknown"


def _join(parts: list[tuple[str, str]]) -> tuple[str, list[Unit]]:
    """Parts (label, text) joined by blank lines; each part's characters become its unit."""
    text = ""
    units: list[Unit] = []
    for label, body in parts:
        if not body:
            continue
        if text:
            text += "\n\n"
        units.append(Unit(label, len(text), len(text) + len(body)))
        text += body
    return text, units


def extract(path: Path, data: bytes, where: str) -> Extracted:
    """The text of an EPUB, DOCX or PDF work; ``where`` (``file:line:col``) prefixes errors."""
    suffix = path.suffix.lower()
    if suffix == ".epub":
        return _epub(path, data, where)
    if suffix == ".docx":
        return _docx(path, data, where)
    if suffix == ".pdf":
        return _pdf(path, data, where)
    raise ValueError(f"no extractor for {suffix!r}")  # pragma: no cover - callers check


# --------------------------------------------------------------------------- zip archives


def check_zip(zf: zipfile.ZipFile, path: Path, where: str, fmt: str, fix: str) -> None:
    """Refuse an archive that would expand past the zip limits above (a zip bomb), with the
    limit and ``fix``, before any member is decompressed."""
    infos = zf.infolist()
    if len(infos) > ZIP_MAX_MEMBERS:
        raise WorkError(f"{where}: {path.name} is not a plausible {fmt}: {len(infos):,} zip "
                        f"members, over the limit of {ZIP_MAX_MEMBERS:,}; {fix}")
    total = 0
    for info in infos:
        total += info.file_size
        if total > ZIP_MAX_UNCOMPRESSED:
            raise WorkError(f"{where}: {path.name} is not a plausible {fmt}: it expands to over "
                            f"{ZIP_MAX_UNCOMPRESSED:,} bytes, the limit; {fix}")
        if info.file_size > ZIP_RATIO_FLOOR and \
                info.file_size > ZIP_MAX_RATIO * max(info.compress_size, 1):
            ratio = info.file_size / max(info.compress_size, 1)
            raise WorkError(f"{where}: {path.name} is not a plausible {fmt}: its member "
                            f"{visible(info.filename)!r} expands {ratio:,.0f} times "
                            f"({info.file_size:,} bytes), over the limit of {ZIP_MAX_RATIO} "
                            f"times (a zip bomb?); {fix}")


# --------------------------------------------------------------------------- EPUB


def _epub_drm(zf: zipfile.ZipFile) -> str | None:
    names = set(zf.namelist())
    if "META-INF/rights.xml" in names:
        return "it carries an Adobe rights.xml (DRM)"
    if "META-INF/encryption.xml" in names:
        xml = zf.read("META-INF/encryption.xml").decode("utf-8", "replace")
        algorithms = re.findall(r"Algorithm\s*=\s*[\"']([^\"']+)[\"']", xml)
        content = [a for a in algorithms if a not in FONT_OBFUSCATION]
        if content:
            return f"META-INF/encryption.xml encrypts its content ({content[0]})"
    return None


def _block_text(el: object) -> str:
    from lxml import etree

    assert isinstance(el, etree._Element)
    raw = "".join(el.itertext())
    lines = [_SPACE_RUN.sub(" ", ln).strip() for ln in raw.replace("\r", "").split("\n")]
    return "\n".join(ln for ln in lines if ln)


def _xhtml_text(content: bytes) -> tuple[str, str]:
    """(first heading, text) of one XHTML document: block elements as paragraphs."""
    from lxml import etree, html

    try:
        doc = html.fromstring(content)
    except (etree.ParserError, ValueError):
        return "", ""
    for bad in doc.xpath("//script|//style|//head"):
        bad.drop_tree()
    for br in doc.iter("br"):
        br.tail = "\n" + (br.tail or "")
    # A source line break inside a block is a space in HTML; only <br> is a line break.
    for el in doc.iter():
        if isinstance(el.tag, str) and el.tag != "pre":
            if el.text:
                el.text = el.text.replace("\n", " ")
            if el.tail:
                el.tail = el.tail.replace("\n", " ") if el.tag != "br" else (
                    "\n" + el.tail[1:].replace("\n", " "))
    heading = ""
    for el in doc.iter(*_HEADINGS):
        heading = _block_text(el).replace("\n", " ")
        if heading:
            break
    blocks = []
    for el in doc.iter(*_BLOCK_TAGS):
        if any(isinstance(d.tag, str) and d.tag in _BLOCK_TAGS for d in el.iterdescendants()):
            continue  # a container: its blocks are taken one by one
        t = _block_text(el)
        if t:
            blocks.append(t)
    if not blocks:
        t = _block_text(doc)
        blocks = [t] if t else []
    return heading, "\n\n".join(blocks)


def _epub(path: Path, data: bytes, where: str) -> Extracted:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise WorkError(f"{where}: {path.name} is not a readable EPUB (not a zip archive); "
                        "export the book again or give its text as .txt") from None
    with zf:
        check_zip(zf, path, where, "EPUB", "export the book again or give its text as .txt")
        drm = _epub_drm(zf)
    if drm:
        raise WorkError(f"{where}: {path.name} is DRM-protected ({drm}); casekit cannot read "
                        "its text: obtain an unprotected copy from the rights holder or "
                        "publisher")
    import ebooklib
    from ebooklib import epub

    try:
        book = epub.read_epub(io.BytesIO(data), options={"ignore_ncx": True})
    except Exception as exc:  # ebooklib raises bare exceptions of many kinds on bad input
        raise WorkError(f"{where}: {path.name} is not a readable EPUB ({type(exc).__name__}: "
                        f"{exc}); export the book again or give its text as .txt") from None
    parts: list[tuple[str, str]] = []
    n = 0
    for idref, _linear in book.spine:
        item = book.get_item_with_id(idref)
        if item is None or item.get_type() != ebooklib.ITEM_DOCUMENT:
            continue
        if isinstance(item, epub.EpubNav) or "nav" in (getattr(item, "properties", None) or []):
            continue  # the EPUB 3 navigation document (a table of contents), not the text
        heading, text = _xhtml_text(item.get_content())
        if not text:
            continue
        n += 1
        label = f"chapter {n}" + (f" \u201c{heading}\u201d" if heading else "") + \
            f" ({item.get_name()})"
        parts.append((label, text))
    text, units = _join(parts)
    return Extracted(text, units, f"ebooklib {_version('ebooklib')}")


# --------------------------------------------------------------------------- DOCX


def _docx(path: Path, data: bytes, where: str) -> Extracted:
    import docx
    from docx.opc.exceptions import PackageNotFoundError as DocxPackageError

    fix = "open it in Word or LibreOffice and save it again as .docx"
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            check_zip(zf, path, where, "DOCX", fix)
    except zipfile.BadZipFile:
        raise WorkError(f"{where}: {path.name} is not a readable DOCX (not a zip archive); "
                        f"{fix}") from None
    try:
        document = docx.Document(io.BytesIO(data))
    except (DocxPackageError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise WorkError(f"{where}: {path.name} is not a readable DOCX ({type(exc).__name__}); "
                        "open it in Word or LibreOffice and save it again as .docx") from None
    except Exception as exc:  # lxml syntax errors in a damaged part, etc.
        raise WorkError(f"{where}: {path.name} is not a readable DOCX ({type(exc).__name__}: "
                        f"{exc}); open it in Word or LibreOffice and save it again as .docx") \
            from None
    parts = []
    for i, para in enumerate(document.paragraphs, start=1):
        body = "\n".join(_SPACE_RUN.sub(" ", ln).strip() for ln in para.text.split("\n"))
        parts.append((f"paragraph {i}", body.strip("\n")))
    text, units = _join(parts)
    return Extracted(text, units, f"python-docx {_version('python-docx')}")


# --------------------------------------------------------------------------- PDF


def _page_ranges(pages: list[int]) -> str:
    out: list[str] = []
    start = prev = pages[0]
    for p in pages[1:] + [-1]:
        if p == prev + 1:
            prev = p
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = p
    return ", ".join(out)


def _pdf(path: Path, data: bytes, where: str) -> Extracted:
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise WorkError(f"{where}: {path.name} is password-protected; save an unprotected "
                            "copy (remove the password in a PDF tool with the owner's "
                            "permission) and give that") from None
        raise WorkError(f"{where}: {path.name} is not a readable PDF ({exc}); export it again "
                        "or give its text as .txt") from None
    parts: list[tuple[str, str]] = []
    scanned: list[int] = []
    try:
        for i in range(len(pdf)):
            page = pdf[i]
            textpage = page.get_textpage()
            raw = textpage.get_text_range()
            textpage.close()
            body = raw.replace("\r\n", "\n").replace("\r", "\n").replace("\ufffe", "-")
            body = "\n".join(ln.rstrip() for ln in body.split("\n")).strip("\n")
            if not body.strip():
                images = list(page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_IMAGE,),
                                               max_depth=2))
                if images:
                    scanned.append(i + 1)
            parts.append((f"page {i + 1}", body))
            page.close()
        pages = len(pdf)
    finally:
        pdf.close()
    text, units = _join(parts)
    if scanned or not text.strip():
        which = _page_ranges(scanned) if scanned else _page_ranges(list(range(1, pages + 1)))
        raise WorkError(f"{where}: {path.name}: no text layer on pages {which}; OCR it first "
                        "(e.g. ocrmypdf) and give the OCRed PDF")
    info = f"pypdfium2 {_version('pypdfium2')}"
    try:
        info += f" (PDFium {pdfium.PDFIUM_INFO.version})"  # type: ignore[attr-defined]
    except AttributeError:  # pragma: no cover - older pypdfium2
        pass
    return Extracted(text, units, info)
