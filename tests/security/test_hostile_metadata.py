"""Security corpus, hostile metadata: every field a model, a server or an import puts in a
record and the report prints (returned model id, system fingerprint, request id, strategy label,
finish reason, error message, model identity, imported provenance: captured by, source, model as
captured, file name) carries a bidi override, ESC, BEL and NUL. The report must show each as its
code point (``⟨U+202E⟩``), as it shows outputs, and no raw control or bidi character may reach
the HTML or the PDF text.
"""

from __future__ import annotations

import html as htmllib
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from casekit.case import load_case
from casekit.ledger import Ledger
from casekit.records import (
    AttemptError,
    AttemptRecord,
    Decoding,
    Message,
    ModelIdentity,
    PlannedAttempt,
    ProviderResult,
    RunEnd,
    RunStart,
    WorkManifest,
)
from tests.test_report import CONTROL, SUBJECT, T0, words_of

#: The hostile tail every field gets: a right-to-left override, ESC, BEL, NUL, a pop.
TAIL = "\u202eXY\x1b[2J\x07\x00\u202c"
#: How the report must show it.
SHOWN = "⟨U+202E⟩XY⟨U+001B⟩[2J⟨U+0007⟩⟨U+0000⟩⟨U+202C⟩"
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
FIELDS = ("returned", "fingerprint", "label", "identity", "captured_by", "source",
          "captured_model", "imported_label", "import_file")


def hostile(field: str) -> str:
    return f"{field}-{TAIL}"


def expected(field: str) -> str:
    return f"{field}-{SHOWN}"


CASE = """\
case:
  id: hostile-meta
  title: Hostile metadata
  matter: none
  examiner: Eve
  organization: Lab
works:
  - id: frank
    title: Frankenstein
    author: Mary Shelley
    path: works/frank.txt
    role: subject
  - id: harbour
    title: The Harbour Clerk
    author: Unpublished Control
    path: works/harbour.txt
    role: control
models:
  - id: m1
    provider: local
    model: smollm2-135m-instruct
strategies:
  - name: prefix_continuation
    params: {prefix_words: 10, suffix_words: 30}
thresholds:
  min_span_words: 20
  legal_defaults: false
"""


@dataclass
class Corpus:
    run_dir: Path
    findings: object


def _record(led: Ledger, a: PlannedAttempt, result: ProviderResult | None,
            error: AttemptError | None = None) -> None:
    led.append(AttemptRecord(**led.base_fields(), attempt=a, status="error" if error else "ok",
                             result=result, error=error, started_at=T0,
                             completed_at=T0.replace("10:00:00", "10:00:01")))


def build(root: Path) -> Corpus:
    case_dir = root / "case"
    (case_dir / "works").mkdir(parents=True)
    (case_dir / "works" / "frank.txt").write_text(SUBJECT, encoding="utf-8")
    (case_dir / "works" / "harbour.txt").write_text(CONTROL, encoding="utf-8")
    (case_dir / "case.yaml").write_text(CASE, encoding="utf-8")
    loaded = load_case(case_dir / "case.yaml")
    from casekit.works import load_works

    works = load_works(loaded)
    run_dir = case_dir / "runs" / "hostile-meta"
    led = Ledger(run_dir).open()
    verbatim = [words_of(SUBJECT, k * 40, 30)[0] for k in range(3)]

    def planned(i: int, work: str = "frank", **kw: object) -> PlannedAttempt:
        return PlannedAttempt(id=f"a-meta{i:016d}", ordinal=i, model_id="m1",
                              strategy="prefix_continuation", strategy_key="prefix_continuation#0",
                              work_id=work, intent="adversarial", index=i, mode="chat",
                              decoding=Decoding(seed=0),
                              messages=[Message(role="user", content=f"Continue {i}")], **kw)

    attempts = [planned(0, label=hostile("label")), planned(1), planned(2, "harbour")]
    imported = PlannedAttempt(
        id="i-meta000000000000000", ordinal=3, model_id="m1", strategy="imported",
        strategy_key="imported@chat.jsonl", work_id="frank", intent="adversarial", index=0,
        mode="chat", decoding=Decoding(seed=0), label=hostile("imported_label"),
        messages=[Message(role="user", content="Recite it")])
    led.append(RunStart(
        **led.base_fields(), run_id="hostile-meta", case_path=str(case_dir / "case.yaml"),
        case_sha256=loaded.sha256, case=loaded.spec.model_dump(mode="json"),
        works=[WorkManifest(id=w.id, title=w.spec.title, author=w.spec.author, role=w.spec.role,
                            path=w.spec.path, sha256=w.sha256, chars=len(w.raw),
                            words=len(w.tokens), excluded_chars=0) for w in works],
        models=[ModelIdentity(model_id="m1", provider="local", model="smollm2-135m-instruct",
                              interface="chat", identity={"note": hostile("identity")})],
        plan_sha256="sha256:" + "0" * 64, planned_attempts=3,
        versions={"casekit": "0.1.0"}, git={}, host={"hostname": "lab"}, argv=[]))
    _record(led, attempts[0], ProviderResult(
        text="Sure: " + verbatim[0], finish_reason="stop", returned_model=hostile("returned"),
        system_fingerprint=hostile("fingerprint"), request_id="req-0"))
    _record(led, attempts[1], None, AttemptError(kind="no_retry", type="BadRequest",
                                                 message=hostile("error")))
    _record(led, attempts[2], ProviderResult(text="A quiet story.", finish_reason="stop",
                                             returned_model=hostile("returned")))
    provenance = {
        "captured_at": "2026-01-02T03:04:05Z", "captured_at_utc": "2026-01-02T03:04:05Z",
        "captured_by": hostile("captured_by"), "source": hostile("source"),
        "model": hostile("captured_model"), "kind": None, "kind_stated": False,
        "prompt_recorded": False, "screenshot": None,
        "file": {"name": hostile("import_file"), "sha256": "sha256:" + "1" * 64, "line": 2,
                 "row": 0},
        "row": {}, "imported_at": "2026-02-03T10:00:00Z"}
    _record(led, imported, ProviderResult(
        text=verbatim[1], returned_model=hostile("captured_model"),
        raw_request={"imported": True, "messages": [], "prompt": None, "decoding": None},
        raw_response={"imported": provenance}))
    led.append(RunEnd(**led.base_fields(), attempts_recorded=4, attempts_planned=3,
                      complete=True))
    led.close()
    from casekit.analysis.analyze import analyze_run

    return Corpus(run_dir=run_dir, findings=analyze_run(run_dir))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return build(tmp_path_factory.mktemp("hostile-meta"))


def _text_of_html(html: str) -> str:
    body = html.split("</head>", 1)[1]
    return htmllib.unescape(re.sub(r"<[^>]+>", "", body))


def test_every_record_fed_field_is_shown_by_code_point_in_the_html(corpus: Corpus) -> None:
    from casekit.report.build import render_report
    from casekit.report.evidence import ReportOptions
    from casekit.report.inputs import load_inputs

    inputs = load_inputs(corpus.run_dir, corpus.findings)  # type: ignore[arg-type]
    rendered = render_report(corpus.findings, inputs,  # type: ignore[arg-type]
                             ReportOptions(exhibits_per_finding=10))
    text = _text_of_html(rendered.html)
    missing = [f for f in FIELDS if expected(f) not in text]
    assert not missing, missing
    raw = sorted({hex(ord(c)) for c in RAW.findall(rendered.html)})
    assert not raw, raw


@pytest.mark.slow
def test_the_pdf_text_holds_the_code_points_and_no_raw_control(corpus: Corpus) -> None:
    from pypdf import PdfReader

    from casekit.report import build_report

    paths = build_report(corpus.run_dir, corpus.findings)  # type: ignore[arg-type]
    text = "\n".join(page.extract_text() or "" for page in PdfReader(paths.pdf).pages)
    flat = re.sub(r"\s+", "", text)
    missing = [f for f in FIELDS if re.sub(r"\s+", "", expected(f)) not in flat]
    assert not missing, missing
    assert "YX" not in flat.replace("⟨", "").split("XY")[0][-2:]  # not reversed: "desrever"
    raw = sorted({hex(ord(c)) for c in RAW.findall(text)})
    assert not raw, raw
