"""`casekit verify REPORT.pdf`: passes on a fresh report, fails on tampered copies (an edited
attachment, a raw byte flipped in the file, altered page text, a changed work) and refuses
input that is not a casekit report (exit 2)."""

from __future__ import annotations

import io
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from pypdf import PdfReader, PdfWriter

from casekit.cli import cli
from tests.test_report import SUBJECT, Fixture, build_fixture

pytestmark = pytest.mark.slow


@dataclass
class Built:
    fx: Fixture
    pdf: Path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    from casekit.report import build_report

    fx = build_fixture(tmp_path_factory.mktemp("verify"))
    paths = build_report(fx.run_dir, fx.findings, out_dir=tmp_path_factory.mktemp("out"))
    return Built(fx=fx, pdf=paths.pdf)


def _verify(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, ["verify", *args])
    return res.exit_code, res.output


def _failed(output: str) -> list[str]:
    return [line.split(":")[0].removeprefix("FAILED").strip()
            for line in output.splitlines() if line.startswith("FAILED")]


def test_fresh_report_verifies(built: Built) -> None:
    code, out = _verify(str(built.pdf))
    assert code == 0, out
    for name in ("attachments", "attachment hashes", "ledger chain", "case", "works",
                 "findings recomputed", "templates", "report re-rendered",
                 "numbers in the report"):
        assert re.search(rf"^ok +{name}: ", out, re.M), name
    assert "verified: every check passed" in out
    assert "byte-identical to a fresh rendering" in out
    # The fresh rendering embeds the PDF's own (verified) streams of the ledger and of the
    # CSV, and says so.
    assert ("embeds the ledger and the CSV as the PDF's own compressed streams of them"
            in " ".join(out.split()))
    assert built.fx.findings.ledger_head_hash in out


def test_ledger_and_run_dir_keep_todays_behaviour(built: Built) -> None:
    code, out = _verify(str(built.fx.run_dir))
    # The anchor first (casekit.anchor), then the chain as before (13 records and the closing
    # checkpoint).
    assert code == 0 and out.startswith("ok: anchored: records 0-12 of 14 signed by")
    assert "ok: 14 records, chain verifies" in out
    code, out = _verify(str(built.fx.run_dir / "ledger.jsonl"))
    assert code == 0 and "chain verifies" in out


def _rebuild(src: Path, dst: Path, replace: dict[str, bytes]) -> None:
    """A copy of the PDF with the same pages and some attachments replaced (via pypdf)."""
    reader = PdfReader(src)
    writer = PdfWriter()
    for page in reader.pages:
        writer.add_page(page)
    for name, data in reader.attachments.items():
        writer.add_attachment(name, replace.get(name, data[0]))
    with dst.open("wb") as fh:
        writer.write(fh)


def test_edited_ledger_attachment_fails(built: Built, tmp_path: Path) -> None:
    ledger = PdfReader(built.pdf).attachments["ledger.jsonl"][0]
    assert b"the first letter" in ledger
    bad = tmp_path / "edited.pdf"
    edited = ledger.replace(b"the first letter", b"the first lettex", 1)
    _rebuild(built.pdf, bad, {"ledger.jsonl": edited})
    code, out = _verify(str(bad))
    assert code == 1, out
    failed = _failed(out)
    assert "attachment hashes" in failed and "ledger chain" in failed
    assert "hash mismatch" in out and "(the record was edited)" in out
    assert "NOT verified" in out


def test_rewrapped_but_unchanged_attachments_still_verify_data(built: Built,
                                                               tmp_path: Path) -> None:
    """Re-saving the pages and attachments with another tool keeps the data verifiable; only
    the page comparison may differ, never the hashes."""
    copy = tmp_path / "resaved.pdf"
    _rebuild(built.pdf, copy, {})
    from casekit.report.verify import verify_report

    res = verify_report(copy, compare_pages=False)
    assert res.ok, res.lines()


def _stream_offset(pdf: Path, name: str) -> int:
    """Offset in the file of the first data byte of an attachment's embedded-file stream."""
    reader = PdfReader(pdf)
    root = reader.trailer["/Root"]
    tree = root["/Names"]["/EmbeddedFiles"].get_object()["/Names"]
    spec = tree[list(tree[::2]).index(name) * 2 + 1].get_object()
    num = spec["/EF"].raw_get("/F").idnum
    raw = pdf.read_bytes()
    obj = re.search(rb"(?<![0-9])%d 0 obj" % num, raw)
    assert obj is not None
    return raw.index(b"stream", obj.end()) + len(b"stream\n")


def test_one_flipped_byte_in_the_file_fails(built: Built, tmp_path: Path) -> None:
    raw = bytearray(built.pdf.read_bytes())
    at = _stream_offset(built.pdf, "ledger.jsonl") + 200
    raw[at] ^= 0x01
    bad = tmp_path / "flipped.pdf"
    bad.write_bytes(bytes(raw))
    code, out = _verify(str(bad))
    assert code == 1, out
    assert _failed(out), out
    assert "NOT verified" in out


def test_altered_page_text_fails(built: Built, tmp_path: Path) -> None:
    """Same attachments, but a figure on a page changed: the page check catches it."""
    from casekit.report.build import render_report
    from casekit.report.evidence import ReportOptions
    from casekit.report.inputs import load_inputs

    fx = built.fx
    rendered = render_report(fx.findings, load_inputs(fx.run_dir, fx.findings),
                             ReportOptions(exhibits_per_finding=3))
    assert "1 of 2 attempts with a span" in rendered.html
    rendered.html = rendered.html.replace("1 of 2 attempts with a span",
                                          "2 of 2 attempts with a span")
    bad = tmp_path / "altered.pdf"
    rendered.write_pdf(bad)
    assert PdfReader(bad).attachments["manifest.json"] == \
        PdfReader(built.pdf).attachments["manifest.json"]
    code, out = _verify(str(bad))
    assert code == 1, out
    assert _failed(out) == ["numbers in the report"]
    assert "differs from a fresh rendering" in out


def test_a_pdf_rewritten_by_another_tool_fails_the_rendering_check(
        built: Built, tmp_path: Path) -> None:
    """Same attachments, same page text, other bytes (pypdf wrote the file again): only the
    rendering check fails, and says what it compared."""
    from pypdf import PdfWriter

    rewritten = tmp_path / "rewritten.pdf"
    PdfWriter(clone_from=str(built.pdf)).write(rewritten)
    assert rewritten.read_bytes() != built.pdf.read_bytes()
    code, out = _verify(str(rewritten))
    assert code == 1, out
    assert _failed(out) == ["rendering"]
    line = next(x for x in out.splitlines() if x.startswith("FAILED rendering"))
    assert "the PDF differs from a fresh rendering in its bytes, although the same WeasyPrint" \
        in line and "altered after rendering" in line


def test_changed_work_fails(built: Built, tmp_path: Path) -> None:
    works = tmp_path / "works-copy"
    shutil.copytree(built.fx.case_path.parent, works, ignore=shutil.ignore_patterns("runs"))
    code, out = _verify(str(built.pdf), "--works", str(works))
    assert code == 0, out  # an intact copy elsewhere verifies
    (works / "works" / "frank.txt").write_text(SUBJECT.replace("Margaret", "Marg"),
                                               encoding="utf-8")
    code, out = _verify(str(built.pdf), "--works", str(works))
    assert code == 1
    assert _failed(out) == ["works"]
    assert "frank:" in out and "the run recorded" in out
    code, out = _verify(str(built.pdf), "--works", str(tmp_path / "empty"))
    assert code == 1 and "no file at" in out and "--works" in out


def test_attached_works_are_used_when_none_are_on_disk(built: Built, tmp_path: Path) -> None:
    from casekit.report import build_report

    paths = build_report(built.fx.run_dir, built.fx.findings, out_dir=tmp_path / "r",
                         attach_works=True)
    (tmp_path / "empty").mkdir()
    code, out = _verify(str(paths.pdf), "--works", str(tmp_path / "empty"))
    assert code == 0, out
    assert "frank (attached work-frank.txt)" in out


def test_other_templates_are_named(built: Built, tmp_path: Path) -> None:
    tpl = tmp_path / "tpl" / "partials"
    tpl.mkdir(parents=True)
    (tpl / "limitations.html.j2").write_text("<section><h1>Limits</h1></section>\n",
                                             encoding="utf-8")
    code, out = _verify(str(built.pdf), "--templates", str(tmp_path / "tpl"))
    assert code == 1
    assert _failed(out) == ["templates"] and "--templates" in out


def test_bad_input_exits_2(built: Built, tmp_path: Path) -> None:
    from casekit.report.render import render_pdf

    not_pdf = tmp_path / "x.pdf"
    not_pdf.write_text("hello", encoding="utf-8")
    code, out = _verify(str(not_pdf))
    assert code == 2 and "not a PDF" in out
    plain = tmp_path / "plain.pdf"
    render_pdf("<p>no attachments</p>", plain)
    code, out = _verify(str(plain))
    assert code == 2 and "no casekit attachments" in out
    code, out = _verify(str(tmp_path / "missing.pdf"))
    assert code == 2
    # A PDF with attachments but not casekit's manifest contents: a failed check, exit 1.
    other = tmp_path / "other.pdf"
    writer = PdfWriter()
    writer.add_blank_page(100, 100)
    writer.add_attachment("manifest.json", b"[]")
    writer.add_attachment("ledger.jsonl", b"")
    buf = io.BytesIO()
    writer.write(buf)
    other.write_bytes(buf.getvalue())
    code, out = _verify(str(other))
    assert code == 1 and "FAILED attachments" in out


def test_manifest_lists_every_attachment(built: Built) -> None:
    m = json.loads(PdfReader(built.pdf).attachments["manifest.json"][0])
    assert {m[k]["attachment"] for k in ("ledger", "findings", "case")} == {
        "ledger.jsonl", "findings.json", "case.json"}


def test_bytes_overwritten_anywhere_fail_cleanly(built: Built, tmp_path: Path) -> None:
    """One byte overwritten at offsets spread over the whole file (page streams, fonts,
    attachments, cross-reference table): verify never crashes with a traceback, and never calls
    the edited file verified."""
    raw = built.pdf.read_bytes()
    verdicts = []
    for i, at in enumerate(range(len(raw) // 17, len(raw) - 1, len(raw) // 17)):
        edited = bytearray(raw)
        edited[at] = ord("X") if edited[at] != ord("X") else ord("Y")
        bad = tmp_path / f"edited-{i}.pdf"
        bad.write_bytes(bytes(edited))
        res = CliRunner().invoke(cli, ["verify", str(bad)])
        assert res.exception is None or isinstance(res.exception, SystemExit), (
            at, res.output, res.exception)
        verdicts.append((at, res.exit_code, "NOT verified" in res.output or
                         res.exit_code == 2))
    bad_ones = [v for v in verdicts if not (v[1] in (1, 2) and v[2])]
    assert not bad_ones, bad_ones



def test_attachments_inflate_to_a_limit_scaled_to_the_pdf(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          ) -> None:
    """A large matter's ledger inflates beyond pypdf's default 75 MB guard; the limit is scaled
    to the file (INFLATE_RATIO x its size), so a genuine attachment reads and a decompression
    bomb (a stream inflating far beyond its file) is refused as damage, not a traceback."""
    from casekit.report import attachments

    monkeypatch.setattr(attachments, "INFLATE_FLOOR", 1_000)  # scaled down from 75 MB

    def pdf_with(name: str, data: bytes) -> Path:
        from weasyprint import HTML, Attachment

        path = tmp_path / f"{name}.pdf"  # embedded compressed, as casekit's reports are
        HTML(string="<p>x</p>").write_pdf(path, attachments=[Attachment(string=data, name=name)])
        return path

    ledger = b"".join(b'{"seq":%d,"text":"a line of the ledger"}\n' % i for i in range(3000))
    ok = pdf_with("ledger.jsonl", ledger)
    assert len(ledger) > attachments.INFLATE_FLOOR  # beyond the (scaled) default guard
    assert attachments.read_attachments(ok)["ledger.jsonl"] == ledger
    bomb = pdf_with("bomb.bin", bytes(20_000_000))  # 20 MB of zeros in a ~20 KB file
    assert bomb.stat().st_size * attachments.INFLATE_RATIO < 20_000_000
    with pytest.raises(attachments.DamagedReport, match="cannot be read"):
        attachments.read_attachments(bomb)


def test_the_pdf_readers_are_gone_before_the_analysis(built: Built,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # pypdf's readers hold the whole PDF (and the ledger's encoded stream) in reference
    # cycles; the analysis pauses the collector, so readers still alive when it starts were
    # carried through it (about a quarter of a GB at 500,000 attempts). None may be left.
    import gc

    import casekit.analysis.analyze as analyze_mod

    real = analyze_mod.analyze_run
    alive: list[int] = []

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        alive.append(sum(1 for o in gc.get_objects() if isinstance(o, PdfReader)))
        return real(*args, **kwargs)

    monkeypatch.setattr(analyze_mod, "analyze_run", counting)
    gc.disable()  # as in a caller that paused it: only the verify's own collection may run
    try:
        code, out = _verify(str(built.pdf))
    finally:
        gc.enable()
    assert code == 0, out
    assert alive == [0]


def test_the_rendering_check_names_the_streams_it_reused(tmp_path: Path) -> None:
    from casekit.report.verify import _own_streams

    ledger = tmp_path / "run" / "ledger.jsonl"
    csv = tmp_path / "csv" / "attempts.csv"
    both = _own_streams([ledger.resolve(), csv.resolve()], ledger)
    assert "the ledger and the CSV as the PDF's own compressed streams of them" in both
    assert "ledger as the PDF's own" in _own_streams([ledger.resolve()], ledger)
    only_csv = _own_streams([csv.resolve()], ledger)
    assert "the CSV as the PDF's own" in only_csv and "ledger" not in only_csv
    assert _own_streams([], ledger) == ""
