"""Works given as EPUB, DOCX and PDF (casekit.extract): each test builds its own small file."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from casekit.analysis.analyze import analyze_run, write_findings
from casekit.canonical import sha256_bytes
from casekit.case import load_case
from casekit.cli import cli
from casekit.errors import WorkError
from casekit.ledger import read_records
from casekit.records import RunStart
from casekit.run.runner import Runner
from casekit.works import load_work
from tests.conftest import CONTROL, SCRIPTED_MODELS, STRATEGIES, SUBJECT, case_yaml

CH1 = ("It was a bright cold day in the valley and the river ran fast under the old stone "
       "bridge.")
CH2 = ("The miller's daughter counted the sacks of grain twice before she trusted the number, "
       "because her father had taught her that a careless count is a kind of theft.")
CH3 = ("Beyond the bridge the road climbed through beech woods towards the market town, where "
       "the bell in the square rang every hour.")


def make_epub(path: Path, chapters: list[tuple[str, str]]) -> Path:
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("casekit-test")
    book.set_title("The Mill")
    book.set_language("en")
    items = []
    for i, (title, body) in enumerate(chapters, start=1):
        c = epub.EpubHtml(title=title, file_name=f"ch{i}.xhtml", lang="en")
        paras = "".join(f"<p>{p}</p>" for p in body.split("\n\n"))
        c.content = f"<html><body><h1>{title}</h1>{paras}</body></html>"
        book.add_item(c)
        items.append(c)
    book.toc = items
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", *items]
    epub.write_epub(str(path), book)
    return path


def make_docx(path: Path, paragraphs: list[str]) -> Path:
    import docx

    d = docx.Document()
    for p in paragraphs:
        para = d.add_paragraph()
        lines = p.split("\n")
        for j, line in enumerate(lines):
            run = para.add_run(line)
            if j < len(lines) - 1:
                run.add_break()
    d.save(str(path))
    return path


def make_pdf(path: Path, pages: list[str]) -> Path:
    from weasyprint import HTML

    body = "".join(f'<p style="page-break-after: always">{p}</p>' for p in pages)
    HTML(string=f"<html><body>{body}</body></html>").write_pdf(str(path))
    return path


def make_scanned_pdf(path: Path) -> Path:
    """A PDF whose only page is an image (what a scanner makes): no text layer."""
    import base64

    from PIL import Image
    from weasyprint import HTML

    buf = io.BytesIO()
    Image.new("RGB", (40, 20), (200, 200, 200)).save(buf, format="PNG")
    src = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    HTML(string=f'<html><body><img src="{src}" width="200"></body></html>').write_pdf(str(path))
    return path


def _case(tmp_path: Path, subject_path: str, extra_work: str = "",
          strategies: str = STRATEGIES) -> Path:
    (tmp_path / "control.txt").write_text(CONTROL)
    text = case_yaml(SCRIPTED_MODELS, strategies).replace("path: subject.txt",
                                                          f"path: {subject_path}")
    (tmp_path / "case.yaml").write_text(text + extra_work)
    return tmp_path / "case.yaml"


def _load(case_path: Path, index: int = 0):  # type: ignore[no-untyped-def]
    return load_work(load_case(case_path), index)


def test_epub_text_hashes_and_chapters(tmp_path: Path) -> None:
    path = make_epub(tmp_path / "mill.epub", [("One", CH1), ("Two", CH2 + "\n\n" + CH3)])
    work = _load(_case(tmp_path, "mill.epub"))
    assert CH1 in work.raw and CH2 in work.raw and CH3 in work.raw
    assert work.raw.index(CH1) < work.raw.index(CH2) < work.raw.index(CH3)
    assert work.sha256 == sha256_bytes(path.read_bytes())  # the original file's identity
    assert work.text_sha256 == sha256_bytes(work.raw.encode("utf-8"))
    assert work.extractor is not None and work.extractor.startswith("ebooklib ")
    at = work.raw.index("careless count")
    assert work.location(at, at + 14).startswith("chapter 2 \u201cTwo\u201d")
    assert work.location(work.raw.index("stone"), work.raw.index("stone") + 5).startswith(
        "chapter 1 \u201cOne\u201d")
    start = work.raw.index("bright")
    assert "chapter 1" in work.location(start, at) and "to chapter 2" in work.location(start, at)


def test_docx_paragraphs_and_line_breaks(tmp_path: Path) -> None:
    make_docx(tmp_path / "mill.docx", [CH1, "", "Line one of a verse\nline two of a verse", CH2])
    work = _load(_case(tmp_path, "mill.docx"))
    assert "Line one of a verse\nline two of a verse" in work.raw
    assert work.extractor is not None and work.extractor.startswith("python-docx ")
    at = work.raw.index("careless")
    assert work.location(at, at + 8) == "paragraph 4"  # the empty paragraph 2 still counts
    assert work.location(work.raw.index("line two"), work.raw.index("line two") + 3) == \
        "paragraph 3"


def test_pdf_pages(tmp_path: Path) -> None:
    make_pdf(tmp_path / "mill.pdf", [CH1, CH2, CH3])
    work = _load(_case(tmp_path, "mill.pdf"))
    flat = " ".join(work.raw.split())
    assert CH2 in flat and CH3 in flat
    assert work.extractor is not None and work.extractor.startswith("pypdfium2 ")
    at = work.raw.index("careless")
    assert work.location(at, at + 8) == "page 2"
    at = work.raw.index("beech")
    assert work.location(at, at + 5) == "page 3"


def test_exclusions_apply_to_the_extracted_text(tmp_path: Path) -> None:
    make_docx(tmp_path / "mill.docx", ["Licence: do what you like.", CH1, CH2])
    extra = ""
    case = _case(tmp_path, "mill.docx")
    text = case.read_text().replace(
        "    role: subject\n",
        "    role: subject\n    exclude:\n      - markers: {to_marker: \"you like.\"}\n", 1)
    case.write_text(text + extra)
    work = _load(case)
    assert work.excluded and work.raw[work.excluded[0].start:work.excluded[0].end] == \
        "Licence: do what you like."
    assert "licence" not in work.tokens.words and "bright" in work.tokens.words


def test_scanned_pdf_is_refused_with_the_pages(tmp_path: Path) -> None:
    make_scanned_pdf(tmp_path / "scan.pdf")
    with pytest.raises(WorkError, match=r"no text layer on pages 1; OCR it first"):
        _load(_case(tmp_path, "scan.pdf"))


def _refused(tmp_path: Path, name: str, data: bytes) -> str:
    (tmp_path / name).write_bytes(data)
    case = _case(tmp_path, name)
    res = CliRunner().invoke(cli, ["run", str(case)])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.output
    assert not any(p.name == "runs" or p.suffix == ".jsonl" for p in tmp_path.rglob("*")), \
        "a refused work must leave nothing recorded"
    return lines[0]


def drm_epub(tmp_path: Path) -> bytes:
    """An EPUB whose content is AES-encrypted (META-INF/encryption.xml), built at
    tmp_path/x.epub first."""
    good = make_epub(tmp_path / "x.epub", [("One", CH1)]).read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(buf, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item))
        dst.writestr("META-INF/encryption.xml",
                     '<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
                     '<EncryptedData xmlns="http://www.w3.org/2001/04/xmlenc#"><EncryptionMethod '
                     'Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>'
                     '</EncryptedData></encryption>')
    return buf.getvalue()


def test_drm_epub_is_refused(tmp_path: Path) -> None:
    data = drm_epub(tmp_path)
    (tmp_path / "x.epub").unlink()
    line = _refused(tmp_path, "drm.epub", data)
    assert "drm.epub is DRM-protected" in line and "unprotected copy" in line


def test_font_obfuscation_is_not_drm(tmp_path: Path) -> None:
    good = make_epub(tmp_path / "x.epub", [("One", CH1)]).read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(buf, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item))
        dst.writestr("META-INF/encryption.xml", '<encryption><EncryptionMethod '
                     'Algorithm="http://www.idpf.org/2008/embedding"/></encryption>')
    (tmp_path / "fonts.epub").write_bytes(buf.getvalue())
    assert CH1 in _load(_case(tmp_path, "fonts.epub")).raw


def test_corrupt_docx_is_refused(tmp_path: Path) -> None:
    good = make_docx(tmp_path / "x.docx", [CH1]).read_bytes()
    (tmp_path / "x.docx").unlink()
    line = _refused(tmp_path, "broken.docx", good[: len(good) // 2])
    assert "broken.docx is not a readable DOCX" in line and "save it again as .docx" in line


def test_password_pdf_is_refused(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    plain = make_pdf(tmp_path / "x.pdf", [CH1])
    writer = PdfWriter()
    for page in PdfReader(plain).pages:
        writer.add_page(page)
    writer.encrypt(user_password="secret", owner_password="owner")
    buf = io.BytesIO()
    writer.write(buf)
    plain.unlink()
    line = _refused(tmp_path, "locked.pdf", buf.getvalue())
    assert "locked.pdf is password-protected" in line and "unprotected copy" in line


def test_pdf_work_runs_and_exhibits_name_the_page(tmp_path: Path) -> None:
    """End to end: the manifest records both hashes and the extractor; the exhibit says on
    which page of the original the matched text is."""
    from casekit.analysis.analyze import load_findings
    from casekit.report.build import build_report

    half = len(SUBJECT) // 2
    make_pdf(tmp_path / "mill.pdf", [SUBJECT[:half], SUBJECT[half:]])
    case = _case(tmp_path, "mill.pdf")
    out = Runner(load_case(case), run_dir=tmp_path / "run").run()
    assert out.complete
    start = read_records(out.ledger_path)[0]
    assert isinstance(start, RunStart)
    wm = next(w for w in start.works if w.id == "subject")
    assert wm.sha256 == sha256_bytes((tmp_path / "mill.pdf").read_bytes())
    assert wm.text_sha256 and wm.text_sha256 != wm.sha256
    assert wm.extractor and wm.extractor.startswith("pypdfium2")
    ctl = next(w for w in start.works if w.id == "control")
    assert ctl.extractor is None and ctl.text_sha256 is None
    write_findings(out.run_dir, analyze_run(out.run_dir, case))
    paths = build_report(out.run_dir, load_findings(out.run_dir), case_path=case)
    # (<wbr> marks where an identifier may break on the page; the text is the same without.)
    html = paths.html.read_text(encoding="utf-8").replace("<wbr>", "")
    assert "page 1 \u00b7 chars" in html or "page 2 \u00b7 chars" in html
    assert f"text extracted by {wm.extractor}" in html and wm.text_sha256 in html


def test_epub_line_breaks_are_kept_for_poems(tmp_path: Path) -> None:
    """A poem in an EPUB sets its lines with <br/>: they stay lines (short works keep them),
    while a source line break inside a paragraph is a space, as a browser shows it."""
    make_epub(tmp_path / "poem.epub",
              [("Song", "Line one of the verse<br/>line two of\nthe verse<br/>line three")])
    work = _load(_case(tmp_path, "poem.epub"))
    assert "Line one of the verse\nline two of the verse\nline three" in work.raw


def _with_member(good: bytes, name: str, data: bytes, count: int = 1) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as src, \
            zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item))
        for i in range(count):
            dst.writestr(name if count == 1 else f"{name}{i}", data)
    return buf.getvalue()


def test_zip_bomb_epub_is_refused_before_extraction(tmp_path: Path) -> None:
    # 64 MB of zeros deflate to some 60 KB: a ratio of about 1,000 (issue 15 zip bombs).
    good = make_epub(tmp_path / "x.epub", [("One", CH1)]).read_bytes()
    (tmp_path / "x.epub").unlink()
    line = _refused(tmp_path, "bomb.epub", _with_member(good, "OEBPS/pad.bin", bytes(64 << 20)))
    assert "bomb.epub is not a plausible EPUB" in line and "OEBPS/pad.bin" in line
    assert "over the limit of 200 times" in line and "give its text as .txt" in line


def test_zip_with_too_many_members_is_refused(tmp_path: Path) -> None:
    from casekit.extract import ZIP_MAX_MEMBERS

    good = make_epub(tmp_path / "x.epub", [("One", CH1)]).read_bytes()
    (tmp_path / "x.epub").unlink()
    line = _refused(tmp_path, "many.epub", _with_member(good, "m", b"", ZIP_MAX_MEMBERS))
    assert f"over the limit of {ZIP_MAX_MEMBERS:,}" in line and "zip members" in line


def test_zip_bomb_docx_and_total_size_limit(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    good = make_docx(tmp_path / "x.docx", [CH1]).read_bytes()
    (tmp_path / "x.docx").unlink()
    line = _refused(tmp_path, "bomb.docx", _with_member(good, "word/pad.xml", bytes(64 << 20)))
    assert "bomb.docx is not a plausible DOCX" in line and "save it again as .docx" in line
    # The total: lowered here so that the test needs no gigabyte.
    monkeypatch.setattr("casekit.extract.ZIP_MAX_UNCOMPRESSED", 100_000)
    (tmp_path / "bomb.docx").unlink()
    line = _refused(tmp_path, "big.docx", _with_member(good, "word/pad.xml", os.urandom(200_000)))
    assert "expands to over 100,000 bytes, the limit" in line


@pytest.mark.parametrize("kind", ["drm.epub", "broken.docx", "locked.pdf"])
def test_bad_work_files_of_an_evidence_only_case_record_nothing_on_import(
        tmp_path: Path, kind: str) -> None:
    """An evidence-only case has no run until its first import: a DRM-protected EPUB, a
    corrupt DOCX or a password-protected PDF among its works is one line naming the case
    file's line and the fix, exit 2, and no run folder."""
    import textwrap

    from tests.conftest import CONTROL

    if kind == "drm.epub":
        data = drm_epub(tmp_path)
    elif kind == "broken.docx":
        data = make_docx(tmp_path / "x.docx", [CH1]).read_bytes()
        data = data[: len(data) // 2]
    else:
        from pypdf import PdfReader, PdfWriter

        writer = PdfWriter()
        for page in PdfReader(make_pdf(tmp_path / "x.pdf", [CH1])).pages:
            writer.add_page(page)
        writer.encrypt(user_password="secret", owner_password="owner")
        out = io.BytesIO()
        writer.write(out)
        data = out.getvalue()
    case_dir = tmp_path / "case"
    case_dir.mkdir()
    (case_dir / kind).write_bytes(data)
    (case_dir / "control.txt").write_text(CONTROL)
    (case_dir / "case.yaml").write_text(textwrap.dedent(f"""\
        case: {{id: ev, title: Evidence, matter: none, examiner: T, organization: O}}
        works:
          - {{id: subject, title: The Mill, author: Anon, path: {kind}, role: subject}}
          - {{id: control, title: Shop, author: O, path: control.txt, role: control}}
        """))
    rows = case_dir / "rows.jsonl"
    rows.write_text('{"work_id": "subject", "model": "m", "intent": "benign", '
                    '"prompt": "p", "output": "o"}\n')
    res = CliRunner().invoke(cli, ["import", str(case_dir / "case.yaml"), str(rows)])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    assert "case.yaml:3:" in lines[0] and kind in lines[0], lines[0]  # the work's line
    assert "unprotected copy" in lines[0] or "save it again" in lines[0]
    assert not (case_dir / "runs").exists(), "nothing recorded"
