"""The report PDF as evidence: PDF/A-3b with the data attached, byte-reproducible, Bates numbers
on every page, bookmarks, the certification page and the chain of custody.

Built from the same real ledger and analyzer as tests/test_report.py, with a case that sets its
own Bates prefix and start.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from pypdf import PdfReader

from casekit.analysis.analyze import findings_bytes
from casekit.canonical import canonical_json, sha256_bytes
from casekit.records import RunStart
from tests.test_report import CASE_YAML, Fixture, build_fixture

pytestmark = pytest.mark.slow

PREFIX, START = "SHELLEY-V-EX", 41
BATES_YAML = CASE_YAML.replace("  organization: Evidence Lab\n",
                               f"  organization: Evidence Lab\n  bates: {{prefix: {PREFIX}, "
                               f"start: {START}}}\n")


@dataclass
class Report:
    fx: Fixture
    pdf: Path
    out: Path
    reader: PdfReader
    texts: list[str]


def _compact(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    from casekit.report import build_report

    assert BATES_YAML != CASE_YAML
    fx = build_fixture(tmp_path_factory.mktemp("pdf"), BATES_YAML)
    out = tmp_path_factory.mktemp("out")
    paths = build_report(fx.run_dir, fx.findings, out_dir=out)
    reader = PdfReader(paths.pdf)
    return Report(fx=fx, pdf=paths.pdf, out=out, reader=reader,
                  texts=[p.extract_text() for p in reader.pages])


def _start(fx: Fixture) -> RunStart:
    from casekit.ledger import read_records

    return next(r for r in read_records(fx.run_dir / "ledger.jsonl")
                if isinstance(r, RunStart))


# --------------------------------------------------------------------------- PDF/A-3b


def test_attachments_are_the_exact_files(report: Report) -> None:
    fx = report.fx
    att = report.reader.attachments
    assert sorted(att) == ["attempts.csv", "attempts.parquet", "case.json", "effort.csv",
                           "findings.json", "ledger.jsonl", "manifest.json"]
    assert all(len(v) == 1 for v in att.values())
    from casekit.analysis.attempt_table import table_files

    table, csv, _ = table_files(fx.findings.attempts)
    assert (att["attempts.parquet"][0], att["attempts.csv"][0]) == (table, csv)
    ledger = att["ledger.jsonl"][0]
    assert ledger == (fx.run_dir / "ledger.jsonl").read_bytes()
    assert att["findings.json"][0] == findings_bytes(fx.findings)
    start = _start(fx)
    case = att["case.json"][0]
    assert case == canonical_json(start.case)
    assert sha256_bytes(case) == start.case_sha256  # the case hash the ledger cites
    manifest_raw = att["manifest.json"][0]
    assert manifest_raw == (report.out / "manifest.json").read_bytes()
    m = json.loads(manifest_raw)
    assert manifest_raw == canonical_json(m) + b"\n"
    assert m["ledger"] == {"attachment": "ledger.jsonl", "sha256": sha256_bytes(ledger),
                           "size": len(ledger), "records": fx.findings.ledger_records,
                           "head_hash": fx.findings.ledger_head_hash}
    assert m["findings"]["sha256"] == sha256_bytes(att["findings.json"][0])
    assert m["case"]["sha256"] == start.case_sha256 == sha256_bytes(case)
    works = {w["id"]: w for w in m["works"]}
    for wm in start.works:
        data = (fx.case_path.parent / wm.path).read_bytes()
        assert works[wm.id]["sha256"] == wm.sha256 == sha256_bytes(data)
        assert works[wm.id]["size"] == len(data)
        assert works[wm.id]["attachment"] is None  # copyrighted texts stay out by default
    assert [x["model_id"] for x in m["models"]] == ["m1", "m2"]
    assert m["models"][1]["identity"]["key_fingerprint"] == "sha256:1234abcd"
    html = (report.out / "report.html").read_bytes()
    assert m["report"]["html_sha256"] == sha256_bytes(html)
    assert m["report"]["bates"] == {"prefix": PREFIX, "start": START}
    assert m["templates"]["sha256"].startswith("sha256:") and m["templates"]["overridden"] == []
    assert "report.html.j2" in m["templates"]["files"]
    assert m["casekit_version"] and m["weasyprint_version"]


def test_pdfa_3b_structure(report: Report) -> None:
    from casekit.report.evidence import pdf_identifier

    root = report.reader.trailer["/Root"]
    xmp = root["/Metadata"].get_object().get_data().decode()
    assert 'pdfaid:part="3"' in xmp and 'pdfaid:conformance="B"' in xmp
    assert root["/OutputIntents"][0].get_object()["/S"] == "/GTS_PDFA1"
    af = [ref.get_object() for ref in root["/AF"]]
    names = [o["/F"] for o in af]
    assert sorted(names) == names == ["attempts.csv", "attempts.parquet", "case.json",
                                      "effort.csv", "findings.json", "ledger.jsonl",
                                      "manifest.json"]  # once each, sorted (a name tree)
    rel = {o["/F"]: o["/AFRelationship"] for o in af}
    assert rel == {"case.json": "/Source", "findings.json": "/Data", "ledger.jsonl": "/Source",
                   "manifest.json": "/Data", "attempts.parquet": "/Data",
                   "attempts.csv": "/Data", "effort.csv": "/Data"}
    tree = root["/Names"]["/EmbeddedFiles"].get_object()["/Names"]
    assert list(tree[::2]) == names
    # Dates: the run's start, to the second, in the info dictionary and the XMP alike.
    started = _start(report.fx).recorded_at  # e.g. 2026-02-03T10:00:00.123456Z
    pdf_date = "D:" + re.sub(r"\D", "", started[:19]) + "Z"
    meta = report.reader.metadata
    assert meta["/CreationDate"] == meta["/ModDate"] == pdf_date
    assert f"<xmp:CreateDate>{started[:19]}Z</xmp:CreateDate>" in xmp
    for o in af:
        params = o["/EF"]["/F"].get_object()["/Params"]
        assert params["/CreationDate"] == params["/ModDate"] == pdf_date
    assert meta["/casekitledgerhead"] == report.fx.findings.ledger_head_hash
    # A fixed identifier, derived from the ledger head hash.
    ident = report.reader.trailer["/ID"][0]
    ident = ident.original_bytes if hasattr(ident, "original_bytes") else ident
    assert bytes(ident) == pdf_identifier(report.fx.findings.ledger_head_hash)


def test_every_object_parses_strictly(report: Report) -> None:
    from pypdf import PdfReader

    reader = PdfReader(report.pdf, strict=True)
    assert len(reader.pages) > 1
    for num in range(1, reader.trailer["/Size"]):
        reader.get_object(num)  # raises on a malformed object or a broken cross-reference


@pytest.mark.skipif(shutil.which("qpdf") is None, reason="qpdf is not installed (optional)")
def test_qpdf_finds_no_structural_error(report: Report) -> None:
    res = subprocess.run(["qpdf", "--check", str(report.pdf)], capture_output=True, text=True,
                         check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "No syntax or stream encoding errors found" in res.stdout


def test_same_inputs_give_the_same_pdf_bytes(report: Report, tmp_path: Path) -> None:
    from casekit.report import build_report

    again = build_report(report.fx.run_dir, report.fx.findings, out_dir=tmp_path / "again")
    assert again.pdf.read_bytes() == report.pdf.read_bytes()
    assert (tmp_path / "again" / "manifest.json").read_bytes() == \
        (report.out / "manifest.json").read_bytes()


def test_works_are_attached_only_when_asked(report: Report, tmp_path: Path) -> None:
    from casekit.report import build_report

    paths = build_report(report.fx.run_dir, report.fx.findings, out_dir=tmp_path,
                         attach_works=True)
    reader = PdfReader(paths.pdf)
    att = reader.attachments
    works_dir = report.fx.case_path.parent / "works"
    assert att["work-frank.txt"] == [(works_dir / "frank.txt").read_bytes()]
    assert att["work-harbour.txt"] == [(works_dir / "harbour.txt").read_bytes()]
    m = json.loads(att["manifest.json"][0])
    assert {w["id"]: w["attachment"] for w in m["works"]} == {
        "frank": "work-frank.txt", "harbour": "work-harbour.txt"}
    assert m["report"]["attach_works"] is True
    text = _compact("".join(p.extract_text() for p in reader.pages))
    assert _compact("attached as work-frank.txt (Source)") in text


# --------------------------------------------------------------------------- Bates, outline


def test_bates_number_on_every_page(report: Report) -> None:
    texts = report.texts
    n = len(texts)
    assert n > 3
    assert f"{PREFIX}-{START:06d}" in texts[0]
    assert f"{PREFIX}-{START + n - 1:06d}" in texts[-1]
    for i, text in enumerate(texts):
        assert f"{PREFIX}-{START + i:06d}" in text, f"page {i + 1}"
        assert f"Page {i + 1} of {n}" in text  # the page counter itself is untouched
    assert f"{PREFIX}-{START - 1:06d}" not in "".join(texts)
    assert f"{PREFIX}-{START + n:06d}" not in "".join(texts)


def test_default_bates_and_page_headers(report: Report) -> None:
    # The cover has no running header; every other page shows the case id.
    for text in report.texts[1:]:
        assert "demo-case" in text


def test_outline_has_every_section_and_exhibit(report: Report) -> None:
    outline = report.reader.outline
    titles = [o.title for o in outline if not isinstance(o, list)]
    for section in ("Summary of findings", "Methods", "Exhibits",
                    "Attempts by stratum, with a sample", "Manifest",
                    "Chain of custody", "Limitations", "References",
                    "Certification (form, to be completed and signed)"):
        assert section in titles

    def flat(items: list) -> list[str]:  # type: ignore[type-arg]
        out: list[str] = []
        for o in items:
            out += flat(o) if isinstance(o, list) else [o.title]
        return out

    everything = flat(outline)
    for k in (1, 2, 3):
        assert f"Exhibit E-{k}" in everything


# --------------------------------------------------------------------------- custody, certification


def test_certification_page_carries_the_hashes(report: Report) -> None:
    fx = report.fx
    last = _compact(report.texts[-1])
    start = _start(fx)
    assert _compact("Certification (form, to be completed and signed)") in _compact(
        "".join(report.texts[-2:]))
    assert _compact("penalty of perjury") in last
    assert _compact("Signature") in last and _compact("Jane Examiner") in last
    cert = _compact("".join(report.texts[-2:]))
    assert fx.findings.ledger_head_hash in cert
    ledger = (fx.run_dir / "ledger.jsonl").read_bytes()
    assert sha256_bytes(ledger) in cert
    assert sha256_bytes(findings_bytes(fx.findings)) in cert
    assert start.case_sha256 in cert
    for wm in start.works:
        assert wm.sha256 in cert


def test_chain_of_custody_section(report: Report) -> None:
    text = _compact("".join(report.texts))
    assert _compact("Chain of custody") in text
    assert _compact("Host: hostname lab-1") in text
    assert _compact("fingerprint sha256:1234abcd (never the key)") in text
    assert _compact("run demo-case-000000000000 started") in text
    assert _compact("run ended: 11 of 11 attempts recorded") in text


def test_limitations_are_read_off_the_data(report: Report) -> None:
    html = (report.out / "report.html").read_text(encoding="utf-8")
    lim = html.split('id="limitations"')[1].split("</section>")[0]
    # The fixture's run has one failed attempt: its request holds no response, so 10 of the
    # 11 records were read for tools (the page used to say all 11 were).
    assert ("Retrieval or tools: none of the 10 requests casekit sent and recorded with a "
            "response offered tools, functions or retrieval, and none of their responses "
            "reports a tool call (each raw request and response in the ledger was checked). "
            "1 attempt record of requests that ended without a response holds no output and "
            "is not among them. A provider could still retrieve text") in lim
    assert ("Model m1 was requested as &#39;smollm2-135m-instruct&#39; and reported itself as "
            "&#39;smollm2-135m-instruct-q8&#39;") in lim
    assert "Model m2" not in lim  # a dated snapshot, returned as requested
    assert re.search(r"Openings: \d+ of the 3 subject attempts that reached the reporting "
                     r"threshold reproduce text within the first 200 words", lim)
    assert "No passage of any work was excluded" in lim
    assert "refusals by source: text 1" in lim
    assert "Small samples: fewer than 30 attempts stand behind a rate of m1 × frank" in lim


def test_effort_and_reliability_count_the_same_refusals(report: Report) -> None:
    """The effort table's Refused column counts the refusals the reliability page and the
    per-attempt listing count (a text refusal included: it counted the provider's only)."""
    from casekit.report import build_model
    from casekit.report.inputs import load_inputs

    f = report.fx.findings
    m = build_model(f, load_inputs(report.fx.run_dir, f))
    refused = [x for x in f.attempts if x.refusal_source is not None]
    assert any(x.refusal_source == "text" for x in refused)
    assert m.reliability is not None
    assert sum(int(r.refused.split(" ")[0]) for r in m.reliability.rows) == len(refused)
    assert sum(int(e.refusals) for e in m.effort.rows) == len(refused)


def test_attempt_table_and_definitions_read_whole(report: Report) -> None:
    """Layout: in the sample of attempts, each attempt id, and each stratum's strategy key and
    work id, sits on one line (a column too narrow broke them mid-word); every definition
    under Methods shows the key the further measures cite, e.g. [p_z]."""
    f = report.fx.findings
    start = next(i for i, t in enumerate(report.texts) if "Attempts by stratum" in t)
    lines = {line.strip() for t in report.texts[start:] for line in t.splitlines()}
    words = {w for line in lines for w in line.split()}
    for x in f.attempts:
        assert x.attempt_id in words, x.attempt_id
        assert x.strategy_key in words, x.strategy_key
        assert x.work_id in words, x.work_id
    html = (report.out / "report.html").read_text(encoding="utf-8")
    methods = html[html.index('id="methods-definitions"'):html.index('id="methods-strategies"')]
    for key in f.definitions:
        assert f'<span class="defref">[{key}]</span></dt>' in methods, key
