"""The report: HTML and PDF built from a real ledger, real works and real findings.

The fixture writes a small case folder (case.yaml, a subject work and a control work) and a
ledger through casekit.ledger.Ledger, then analyzes it with the real analyzer. One output quotes
the subject verbatim inside hostile markup, so the exhibit must show it inert.
"""

from __future__ import annotations

import logging
import re
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from pypdf import PdfReader

from casekit.analysis.findings import Findings
from casekit.analysis.taxonomy import ABSENCE_CAVEAT
from casekit.case import case_hash_form, load_case
from casekit.errors import CasekitError
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
    TokenScore,
    WorkManifest,
    WorkRange,
)

SUBJECT = textwrap.dedent("""\
    Letter I

    To Mrs. Saville, England.

    You will rejoice to hear that no disaster has accompanied the commencement of an enterprise
    which you have regarded with such evil forebodings. I arrived here yesterday, and my first
    task is to assure my dear sister of my welfare and increasing confidence in the success of
    my undertaking. I am already far north of London, and as I walk in the streets of
    Petersburgh, I feel a cold northern breeze play upon my cheeks, which braces my nerves and
    fills me with delight. Do you understand this feeling? This breeze, which has travelled
    from the regions towards which I am advancing, gives me a foretaste of those icy climes.
    Inspirited by this wind of promise, my daydreams become more fervent and vivid. I try in
    vain to be persuaded that the pole is the seat of frost and desolation; it ever presents
    itself to my imagination as the region of beauty and delight. There, Margaret, the sun is
    for ever visible, its broad disk just skirting the horizon and diffusing a perpetual
    splendour. There, for with your leave, my sister, I will put some trust in preceding
    navigators, there snow and frost are banished; and, sailing over a calm sea, we may be
    wafted to a land surpassing in wonders and in beauty every region hitherto discovered on
    the habitable globe.
    """)

CONTROL = textwrap.dedent("""\
    The ledger clerk of the harbour office kept a notebook of tide tables that nobody else had
    ever been allowed to read. Each morning she copied the soundings from the brass gauge by
    the slipway, added a remark about the colour of the water, and locked the notebook in a
    drawer that smelled of tar and oranges. When the new pilot asked her why the remarks
    mattered, she said that numbers forget what the sea looked like, and a remark does not.
    He laughed, but the next week he began to write remarks of his own in pencil on the backs
    of his charts, small notes about gulls and fog banks and the way the bell buoy sounded.
    """)

CASE_YAML = """\
case:
  id: demo-case
  title: Shelley v. Example Models
  matter: "No. 1:26-cv-00042 (Test Court)"
  examiner: Jane Examiner
  organization: Evidence Lab
works:
  - id: frank
    title: Frankenstein (Letter I)
    author: Mary Shelley
    path: works/frank.txt
    role: subject
    edition: "1818 text"
  - id: harbour
    title: The Harbour Clerk
    author: Unpublished Control
    path: works/harbour.txt
    role: control
models:
  - id: m1
    provider: local
    model: smollm2-135m-instruct
  - id: m2
    provider: openai
    model: gpt-test-2026-01-01
    api_key_env: OPENAI_API_KEY
strategies:
  - name: benign_prompts
    params:
      templates: ["Tell me about {{ title }} by {{ author }}."]
  - name: prefix_continuation
    params:
      prefix_words: 20
      suffix_words: 30
  - name: teacher_forced
    params:
      prefix_words: 20
      suffix_words: 8
    models: [m1]
thresholds:
  min_span_words: 20
  substantial_portion:
    min_words: 200
    min_share: 0.8
  legal_defaults: false
"""

HOSTILE_PREFIX = ('<script>alert("x")</script><img src="file:///etc/passwd">'
                  '<style>body{display:none}</style>\x1b[31m ')
LONG_TOKEN = "A" * 400
T0 = "2026-02-03T10:00:00.000000Z"


def words_of(text: str, start: int, n: int) -> tuple[str, int, int]:
    """Raw text of words [start, start + n) of text (split on whitespace) and its char range."""
    spans = [m.span() for m in re.finditer(r"\S+", text)]
    c0, c1 = spans[start][0], spans[start + n - 1][1]
    return text[c0:c1], c0, c1


@dataclass
class Fixture:
    case_path: Path
    run_dir: Path
    findings: Findings
    verbatim: str
    """Work text that appears verbatim in the benign output."""
    hostile_id: str
    benign_id: str


def _attempt(led: Ledger, a: PlannedAttempt, text: str | None, *, status: str = "ok",
             returned: str | None = None, scores: list[TokenScore] | None = None,
             ) -> AttemptRecord:
    result = None
    error = None
    if status == "error":
        error = AttemptError(kind="no_retry", type="BadRequest", message="model not found")
    else:
        result = ProviderResult(text=text, finish_reason="stop", returned_model=returned,
                                request_id=f"req-{a.ordinal}", token_scores=scores)
    rec = AttemptRecord(**led.base_fields(), attempt=a, status=status, result=result,
                        error=error, started_at=T0, completed_at=T0.replace("10:00:00",
                                                                              "10:00:01"))
    out = led.append(rec)
    assert isinstance(out, AttemptRecord)
    return out


def build_fixture(root: Path, case_yaml: str = CASE_YAML) -> Fixture:
    case_dir = root / "case"
    (case_dir / "works").mkdir(parents=True)
    (case_dir / "works" / "frank.txt").write_text(SUBJECT, encoding="utf-8")
    (case_dir / "works" / "harbour.txt").write_text(CONTROL, encoding="utf-8")
    case_path = case_dir / "case.yaml"
    case_path.write_text(case_yaml, encoding="utf-8")
    loaded = load_case(case_path)
    from casekit.works import load_works  # noqa: PLC0415 - needs the analysis tokenizer

    works = load_works(loaded)
    manifests = [WorkManifest(id=w.id, title=w.spec.title, author=w.spec.author,
                              role=w.spec.role, path=w.spec.path, sha256=w.sha256,
                              chars=len(w.raw), words=len(w.tokens),
                              excluded_chars=w.excluded_chars) for w in works]
    run_dir = case_dir / "runs" / "demo-case-000000000000"
    from casekit.anchor import Anchor, load_or_create_key  # noqa: PLC0415

    key = load_or_create_key()  # the tests' examiner key (conftest: CASEKIT_HOME)
    led = Ledger(run_dir, anchor=Anchor(key)).open()
    planned: list[PlannedAttempt] = []

    def plan(model: str, strategy: str, idx: int, work: str, intent: str, mode: str,
             **kw: object) -> PlannedAttempt:
        a = PlannedAttempt(id=f"a-{len(planned):04d}{model}{work}".ljust(22, "0")[:22],
                           ordinal=len(planned), model_id=model, strategy=strategy,
                           strategy_key=f"{strategy}#{idx}", work_id=work, intent=intent,
                           index=0, mode=mode, decoding=Decoding(seed=0), **kw)
        planned.append(a)
        return a

    verbatim, _, _ = words_of(SUBJECT, 8, 45)
    prefix, p0, p1 = words_of(SUBJECT, 60, 20)
    cont, c0, c1 = words_of(SUBJECT, 80, 30)
    cont_words = cont.split(" ")
    cont_words[12] = "SUBSTITUTED"  # one changed word: a near-verbatim span (29 of 30)
    cont_subst = " ".join(cont_words)
    hostile_words, _, _ = words_of(SUBJECT, 120, 26)
    benign_msg = "Tell me about Frankenstein (Letter I) by Mary Shelley."
    a_benign = plan("m1", "benign_prompts", 0, "frank", "benign", "chat",
                    messages=[Message(role="user", content=benign_msg)])
    a_prefix = plan("m1", "prefix_continuation", 1, "frank", "adversarial", "completion",
                    prompt=prefix, target=WorkRange(start=c0, end=c1),
                    supplied=[WorkRange(start=p0, end=p1)], label="window 0 at word 60")
    a_hostile = plan("m1", "prefix_continuation", 1, "frank", "adversarial", "chat",
                     messages=[Message(role="system", content="You are a helpful assistant."),
                               Message(role="user", content="Continue: " + prefix)],
                     supplied=[WorkRange(start=p0, end=p1)], label="window 1 (chat)")
    a_refuse = plan("m1", "benign_prompts", 0, "frank", "benign", "chat",
                    messages=[Message(role="user", content="Sing me " + benign_msg)])
    a_err = plan("m1", "prefix_continuation", 1, "frank", "adversarial", "completion",
                 prompt=prefix)
    a_ctrl_b = plan("m1", "benign_prompts", 0, "harbour", "benign", "chat",
                    messages=[Message(role="user", content="Tell me about The Harbour Clerk.")])
    a_ctrl_a = plan("m1", "prefix_continuation", 1, "harbour", "adversarial", "completion",
                    prompt=words_of(CONTROL, 0, 20)[0])
    tf_prefix, _, _ = words_of(SUBJECT, 0, 20)
    tf_cont, t0, t1 = words_of(SUBJECT, 20, 8)
    a_tf = plan("m1", "teacher_forced", 2, "frank", "reconstruction", "score",
                prompt=tf_prefix, continuation=tf_cont, target=WorkRange(start=t0, end=t1))
    ctf_prefix, _, _ = words_of(CONTROL, 0, 20)
    ctf_cont, u0, u1 = words_of(CONTROL, 20, 8)
    a_ctf = plan("m1", "teacher_forced", 2, "harbour", "reconstruction", "score",
                 prompt=ctf_prefix, continuation=ctf_cont, target=WorkRange(start=u0, end=u1))
    b_subj = plan("m2", "benign_prompts", 0, "frank", "benign", "chat",
                  messages=[Message(role="user", content=benign_msg)])
    b_ctrl = plan("m2", "benign_prompts", 0, "harbour", "benign", "chat",
                  messages=[Message(role="user", content="Tell me about The Harbour Clerk.")])

    led.append(RunStart(
        **led.base_fields(), run_id=run_dir.name, case_path=str(case_path),
        case_sha256=loaded.sha256, case=case_hash_form(loaded.spec), works=manifests,
        models=[ModelIdentity(model_id="m1", provider="local", model="smollm2-135m-instruct",
                              interface="chat", can_score=True,
                              identity={"gguf_sha256": "sha256:" + "ab" * 32,
                                        "licence": "Apache-2.0"}),
                ModelIdentity(model_id="m2", provider="openai", model="gpt-test-2026-01-01",
                              interface="chat",
                              identity={"endpoint": "https://api.example.invalid/v1",
                                        "key_fingerprint": "sha256:1234abcd"})],
        plan_sha256="sha256:" + "cd" * 32, planned_attempts=len(planned),
        examiner_key=key.identity(),
        versions={"casekit": "0.1.0", "python": "3.11.0", "weasyprint": "70.0"},
        git={"revision": "0123456789abcdef0123456789abcdef01234567", "dirty": False,
             "remote": None},
        host={"user": "examiner", "hostname": "lab-1", "platform": "Linux"},
        argv=["casekit", "run", "case.yaml"],
    ))
    returned = "smollm2-135m-instruct-q8"

    def scores(n: int, top: int) -> list[TokenScore]:
        return [TokenScore(token=f"t{i}", token_id=i, logprob=-0.1 if i < top else -3.0,
                           top_token_id=i if i < top else 999,
                           top_logprob=-0.1, is_top=i < top) for i in range(n)]

    _attempt(led, a_benign, "Certainly. Here is how it opens:\n\n" + verbatim
             + "\n\nThat is the opening of the first letter.", returned=returned)
    _attempt(led, a_prefix, " " + cont_subst + " And so on.", returned=returned)
    _attempt(led, a_hostile, HOSTILE_PREFIX + hostile_words + " \u202e" + LONG_TOKEN,
             returned=returned)
    _attempt(led, a_refuse, "I'm sorry, I can't reproduce copyrighted text.",
             returned=returned)
    _attempt(led, a_err, None, status="error")
    _attempt(led, a_ctrl_b, "It is a quiet story about a harbour and its records.",
             returned=returned)
    _attempt(led, a_ctrl_a, " the gulls wheeled over the quay while the pilot slept.",
             returned=returned)
    _attempt(led, a_tf, None, scores=scores(8, 7))
    _attempt(led, a_ctf, None, scores=scores(8, 2))
    _attempt(led, b_subj, "Frankenstein is an epistolary novel by Mary Shelley.",
             returned="gpt-test-2026-01-01")
    _attempt(led, b_ctrl, "I do not know this work.", returned="gpt-test-2026-01-01")
    led.append(RunEnd(**led.base_fields(), attempts_recorded=len(planned),
                      attempts_planned=len(planned), complete=True,
                      counts={"ok": len(planned) - 1, "error": 1}))
    led.close()

    from casekit.analysis.analyze import analyze_run  # noqa: PLC0415

    findings = analyze_run(run_dir)
    return Fixture(case_path=case_path, run_dir=run_dir, findings=findings, verbatim=verbatim,
                   hostile_id=a_hostile.id, benign_id=a_benign.id)


# --------------------------------------------------------------------------- fixtures


@dataclass
class Built:
    fx: Fixture
    html: str
    pdf_text: str
    """Text of the PDF as pypdf extracts it."""
    compact: str
    """The same without any whitespace (robust to line wrapping)."""
    fetched: list[str]
    pages: int
    mediaboxes: set[tuple[float, float]]
    outline: list[str]
    """Titles of the top-level PDF bookmarks."""


def _compact(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    from casekit.report import build_report
    from tests.conftest import fetches_recorded

    fx = build_fixture(tmp_path_factory.mktemp("report"))
    with fetches_recorded() as fetched:
        paths = build_report(fx.run_dir, fx.findings)
    assert paths.html == fx.run_dir / "report" / "report.html"
    assert paths.pdf == fx.run_dir / "report" / "report.pdf"
    reader = PdfReader(paths.pdf)
    text = "\n".join(p.extract_text() for p in reader.pages)
    boxes = {(round(float(p.mediabox.width), 1), round(float(p.mediabox.height), 1))
             for p in reader.pages}
    return Built(fx=fx, html=paths.html.read_text(encoding="utf-8"), pdf_text=text,
                 compact=_compact(text), fetched=fetched, pages=len(reader.pages),
                 mediaboxes=boxes,
                 outline=[o.title for o in reader.outline if not isinstance(o, list)])


# --------------------------------------------------------------------------- the PDF


@pytest.mark.slow
def test_pdf_shows_the_findings_with_their_control_floor(built: Built) -> None:
    f = built.fx.findings
    m1 = next(x for x in f.findings if x.model_id == "m1" and x.work_id == "frank")
    # The analyzer found what the fixture planted (so the values below are not vacuous).
    assert (m1.regurgitation.k, m1.regurgitation.n) == (1, 2)
    assert (m1.extraction.k, m1.extraction.n) == (2, 3)
    assert m1.coverage.longest_block_words == 45
    assert m1.memorization == "evidence of memorization below the threshold"
    text, compact = built.pdf_text, built.compact
    assert _compact("Summary of findings") in compact
    assert _compact("1 of 2 attempts with a span ≥ 20 words") in compact
    assert _compact("2 of 3 attempts with a span ≥ 20 words") in compact
    assert _compact(f"coverage {m1.coverage.share * 100:.1f}%") in compact
    assert _compact("longest block 45 words") in compact
    assert _compact(f"BMC@5 {m1.bmc['5'] * 100:.1f}%") in compact
    assert _compact("teacher-forced mean top-1 share 87.5%") in compact  # 7 of 8 tokens were top-1
    assert _compact("evidence of memorization below the threshold") in compact
    assert _compact(m1.memorization_reason) in compact
    # Control floor of m1 beside the subject row: 0 of 2, one-sided 95% upper bound 77.6%.
    floor = next(c for c in f.controls if c.model_id == "m1")
    assert (floor.attempts.k, floor.attempts.n) == (0, 2)
    # Beside each category, the floor of the same intent, and the all-control bound.
    assert floor.by_intent
    for intent, r in floor.by_intent.items():
        assert _compact(f"{r.k} of {r.n} {intent} control attempts with a span") in compact
    assert _compact("all control attempts: 0 of 2, one-sided 95% upper bound "
                    f"{floor.upper_95 * 100:.1f}%") in compact
    assert _compact("control top-1 share 25.0%") in compact
    # m2 has its own floor: 0 of 1, 95.0%.
    assert _compact("all control attempts: 0 of 1") in compact
    assert _compact(ABSENCE_CAVEAT) in compact
    assert _compact("lowered the reporting threshold below") in compact  # legal_defaults: false
    # Cover and manifest cite the ledger head hash; the cover's date is the run's start date.
    assert f.ledger_head_hash.startswith("sha256:")
    assert compact.count(f.ledger_head_hash) >= 2
    assert _compact("Shelley v. Example Models") in compact and "Jane Examiner" in text
    run_start_date = built.html.split('name="dcterms.created" content="')[1][:10]
    assert _compact(f"Date of the run {run_start_date}") in compact
    assert _compact("Page 1 of") in compact and f"Page {built.pages} of {built.pages}" in text
    # Sections in order, each an h1 bookmark; exhibits are bookmarked under their group.
    assert built.outline[1:] == [
        "Bottom line", "Summary of findings", "Teacher-forced top-choice agreement", "Methods",
        "Controls: chance reproduction of an unseen text", "Errors, retries, refusals and filters",
        "Exhibits", "Attempts by stratum, with a sample",
        "Manifest", "Chain of custody", "Disclosures", "Limitations", "References",
        "Certification (form, to be completed and signed)"]
    assert built.outline[0] == "Shelley v. Example Models"
    # Nothing widened a page: A4 portrait, and A4 landscape for the sample of attempts.
    assert built.mediaboxes == {(595.3, 841.9), (841.9, 595.3)}


@pytest.mark.slow
def test_pdf_exhibit_shows_attempt_ids_hashes_and_matched_text(built: Built) -> None:
    fx = built.fx
    f = fx.findings
    m1 = next(x for x in f.findings if x.model_id == "m1" and x.work_id == "frank")
    assert m1.exhibit_attempts[0] == fx.benign_id  # the longest span comes first
    benign = next(a for a in f.attempts if a.attempt_id == fx.benign_id)
    text, compact = built.pdf_text, built.compact
    assert _compact("Exhibit E-1") in compact
    assert fx.benign_id in text
    assert _compact(benign.record_hash) in compact
    # The output and the original both quote it (casekit's marks of where the match starts
    # and ends stand inside the original's text).
    unmarked = compact.replace("[matchstarts]", "").replace("[matchends]", "")
    assert _compact(fx.verbatim) in compact
    assert unmarked.count(_compact(fx.verbatim)) >= 2
    span = benign.spans[0]
    assert _compact(f"chars {span.work_char_start:,}–{span.work_char_end:,}") in compact
    assert _compact("2026-02-03T10:00:01.000000Z") in compact  # completed time (UTC)
    assert _compact("smollm2-135m-instruct-q8") in compact  # the returned model
    work_sha = next(w.sha256 for w in _works(fx))
    assert _compact(work_sha) in compact
    # Every attempt is counted by stratum, errors and refusals included; with at most one or
    # two attempts per stratum here, every one of them is in the sample too. The two
    # teacher-forced windows are not counted as "no match" (not spans): they say what they are.
    assert _compact("By outcome: match 3, no match 4, refusal 1, error 1, unscorable 0, not "
                    "reproduced greedily 2 (a match is a credited span") in compact
    for a in f.attempts:
        assert a.attempt_id in text
    # Manifest: works' hashes, model identity, case and plan hashes, git revision.
    assert "sha256:" + "ab" * 32 in compact
    assert _compact(f.case_sha256) in compact
    assert "sha256:" + "cd" * 32 in compact
    assert "0123456789abcdef0123456789abcdef01234567" in compact


def _works(fx: Fixture) -> list:  # type: ignore[type-arg]
    from casekit.works import load_works

    return load_works(load_case(fx.case_path))


@pytest.mark.slow
def test_hostile_output_is_inert(built: Built) -> None:
    html = built.html
    # The model's markup is text: escaped in the HTML, literal in the PDF.
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "&lt;img src=&#34;file:///etc/passwd&#34;&gt;" in html
    assert "&lt;style&gt;body{display:none}&lt;/style&gt;" in html
    assert "<script" not in html and "<img" not in html
    assert html.count("<style") == 1  # ours
    assert '<script>alert("x")</script>' in built.compact
    assert _compact('<img src="file:///etc/passwd">') in built.compact
    assert "<style>body{display:none}</style>" in built.compact
    # Control characters are shown by code point, in display only.
    assert "\x1b" not in html and "\u202e" not in html
    assert '<span class="ctl">U+001B</span>' in html
    assert "U+202E" in built.pdf_text
    ledger = (built.fx.run_dir / "ledger.jsonl").read_text(encoding="utf-8")
    assert "\\u001b" in ledger  # the ledger keeps the raw output
    # The 400-character token is all there, wrapped inside its column (the longest run of it
    # on one PDF line fits the column), while ordinary words elsewhere stay whole.
    assert LONG_TOKEN in html
    assert built.compact.count("A" * 30) >= 10
    assert max(len(run) for run in re.findall(r"A{20,}", built.pdf_text)) < 45
    assert '<td class="col-output break-all">' in html
    assert '<td class="col-output">' in html  # the other exhibits: no forced breaks
    # WeasyPrint fetched nothing at all: no file, no network.
    assert built.fetched == []


def test_html_is_the_same_from_findings_json(built: Built) -> None:
    """findings.json is canonical JSON (sorted keys): the report must not depend on key order."""
    from casekit.report import build_model, render_html

    reloaded = _reloaded(built.fx.findings)
    # The order differs (the thresholds are a typed model now, in field order either way;
    # profiles are still a dict: {"spans", "bmc"} in memory, sorted when loaded).
    assert list(reloaded.profiles) != list(built.fx.findings.profiles)
    assert render_html(build_model(reloaded, _inputs(built))) == built.html


@pytest.mark.slow
def test_rendering_twice_gives_identical_bytes(built: Built, tmp_path: Path) -> None:
    from casekit.report import build_report

    again = build_report(built.fx.run_dir, built.fx.findings, out_dir=tmp_path / "again")
    assert again.html.read_text(encoding="utf-8") == built.html
    assert again.html.read_bytes() == (built.fx.run_dir / "report" / "report.html").read_bytes()
    # The PDF too: fonts are stamped with the run's start, not the current time.
    assert again.pdf.read_bytes() == (built.fx.run_dir / "report" / "report.pdf").read_bytes()


# --------------------------------------------------------------------------- the model and HTML


def _inputs(built: Built):  # type: ignore[no-untyped-def]
    from casekit.report.inputs import load_inputs

    return load_inputs(built.fx.run_dir, built.fx.findings)


def test_user_template_overrides_one_partial(built: Built, tmp_path: Path) -> None:
    from casekit.report import build_model, render_html

    override = tmp_path / "tpl"
    (override / "partials").mkdir(parents=True)
    (override / "partials" / "limitations.html.j2").write_text(
        '<section class="limitations"><h1>Limits (firm style)</h1>'
        "<p>{{ r.limitations|length }} items; {{ r.exhibit_groups[0].exhibits[2].output[0].text }}"
        "</p></section>\n", encoding="utf-8")
    model = build_model(built.fx.findings, _inputs(built))
    html = render_html(model, override)
    assert "Limits (firm style)" in html
    assert "Widely quoted text" not in html  # the default partial is replaced...
    assert "Attempts by stratum" in html and "Exhibit E-1" in html  # ...and only that one
    # User templates are autoescaped too.
    assert "&lt;script&gt;" in html.split("Limits (firm style)")[1]
    assert html != built.html


def test_exhibits_are_capped_and_the_rest_counted(built: Built) -> None:
    from casekit.report import build_model, render_html

    model = build_model(built.fx.findings, _inputs(built), exhibits_per_finding=1)
    assert model.exhibits_shown == 1 and model.exhibits_total == 3
    group = model.exhibit_groups[0]
    assert len(group.exhibits) == 1 and group.total == 3
    assert "2 more attempts" in group.more_text
    html = render_html(model)
    assert "2 more attempts reached the reporting threshold" in html
    # Those two are still counted, and (their strata being small) in the sample of attempts,
    # marked as reaching the threshold.
    assert html.count("<td>≥ threshold</td>") == 2  # (the effort table's header says it too)
    assert model.attempts.total == "11" == f"{len(built.fx.findings.attempts)}"
    assert model.attempts.shown == "11"


def test_stale_findings_are_refused(built: Built) -> None:
    from casekit.report.inputs import load_inputs

    stale = built.fx.findings.model_copy(update={"ledger_head_hash": "sha256:" + "0" * 64})
    with pytest.raises(CasekitError, match="re-run `casekit analyze`"):
        load_inputs(built.fx.run_dir, stale)


def test_works_are_checked_against_the_run(built: Built, tmp_path: Path) -> None:
    from casekit.report.inputs import load_inputs

    moved = tmp_path / "moved"
    shutil.copytree(built.fx.case_path.parent, moved, ignore=shutil.ignore_patterns("runs"))
    inputs = load_inputs(built.fx.run_dir, built.fx.findings, moved / "case.yaml")
    assert inputs.works["frank"].path == (moved / "works" / "frank.txt").resolve()
    (moved / "works" / "frank.txt").write_text(SUBJECT.replace("Margaret", "Marg"),
                                               encoding="utf-8")
    with pytest.raises(CasekitError, match="restore the original text"):
        load_inputs(built.fx.run_dir, built.fx.findings, moved / "case.yaml")


def test_highlight_segments_come_from_opcodes(built: Built) -> None:
    from casekit.report import build_model

    model = build_model(built.fx.findings, _inputs(built))
    ex2 = model.exhibit_groups[0].exhibits[1]  # the continuation with one substituted word
    out = {s.text: s.cls for s in ex2.output}
    assert out["SUBSTITUTED"] == "subst"
    assert ex2.output[-1].cls == "" and ex2.output[-1].text.endswith("And so on.")
    work = [s for x in ex2.excerpts for s in x.segments]
    assert [s.cls for s in work].count("subst") == 1
    matched = " ".join(s.text for s in work if s.cls == "match")
    assert len(matched.split()) == 29
    # The prefix the tester supplied is marked as such in the prompt column.
    assert [s.cls for s in ex2.prompt[0].segments] == ["supplied"]


def test_sparse_incomplete_run_renders(tmp_path: Path) -> None:
    """The other branches of the templates: no matches, no teacher-forced windows, no control
    attempts, legal-default thresholds, an unfinished run with a note."""
    from casekit.analysis.analyze import analyze_run
    from casekit.report import build_model, render_html
    from casekit.report.inputs import load_inputs

    case_dir = tmp_path / "case"
    (case_dir / "works").mkdir(parents=True)
    (case_dir / "works" / "frank.txt").write_text(SUBJECT, encoding="utf-8")
    (case_dir / "works" / "harbour.txt").write_text(CONTROL, encoding="utf-8")
    yaml = CASE_YAML.split("strategies:")[0] + textwrap.dedent("""\
        strategies:
          - name: benign_prompts
            params:
              templates: ["Tell me about {{ title }}."]
            works: [frank]
        """)
    (case_dir / "case.yaml").write_text(yaml, encoding="utf-8")
    loaded = load_case(case_dir / "case.yaml")
    from casekit.works import load_works

    works = load_works(loaded)
    run_dir = case_dir / "runs" / "sparse"
    led = Ledger(run_dir).open()
    led.append(RunStart(
        **led.base_fields(), run_id="sparse", case_path=str(case_dir / "case.yaml"),
        case_sha256=loaded.sha256, case=case_hash_form(loaded.spec),
        works=[WorkManifest(id=w.id, title=w.spec.title, author=w.spec.author, role=w.spec.role,
                            path=w.spec.path, sha256=w.sha256, chars=len(w.raw),
                            words=len(w.tokens), excluded_chars=0) for w in works],
        models=[ModelIdentity(model_id="m1", provider="local", model="x", interface="chat")],
        plan_sha256="sha256:" + "0" * 64, planned_attempts=4, versions={"casekit": "0.1.0"},
        git={}, host={}, argv=[]))
    a = PlannedAttempt(id="a-sparse000000000000a", ordinal=0, model_id="m1",
                       strategy="benign_prompts", strategy_key="benign_prompts#0",
                       work_id="frank", intent="benign", index=0, mode="chat",
                       messages=[Message(role="user", content="Tell me about it.")])
    _attempt(led, a, "It is a novel in letters.")
    _attempt(led, a.model_copy(update={"id": "a-sparse000000000000b", "ordinal": 1}), None,
             status="error")
    led.append_note("interrupted", "run stopped by the operator <b>now</b>")
    led.close()
    findings = analyze_run(run_dir)
    html = render_html(build_model(findings, load_inputs(run_dir, findings)))
    assert "INCOMPLETE: 2 of 4 planned attempts recorded" in html
    assert "The run is incomplete" in html
    assert "No teacher-forced windows were scored" in html
    assert "there is nothing to exhibit" in html
    assert "no rate of chance reproduction of an unseen text was measured" in html
    assert "no controls" in html
    assert "lowered the reporting threshold" not in html
    assert "run stopped by the operator &lt;b&gt;now&lt;/b&gt;" in html
    assert "no run_end record" in html


def test_misaligned_offsets_fall_back_to_whole_spans(built: Built) -> None:
    from casekit.report import build_model, render_html

    f = built.fx.findings
    attempts = []
    for a in f.attempts:
        if a.attempt_id == built.fx.benign_id:
            spans = [s.model_copy(update={"out_char_start": s.out_char_start + 1})
                     for s in a.spans]
            a = a.model_copy(update={"spans": spans})
        attempts.append(a)
    from casekit.analysis.attempt_table import rows_digest

    # Edited rows: the findings cite them (as an analysis that produced them would), and
    # the report reads them (the run's table is not theirs: the inputs make one from them).
    from casekit.report.inputs import load_inputs

    edited = f.model_copy(update={"attempts": attempts, "attempt_rows": rows_digest(attempts)})
    model = build_model(edited, load_inputs(built.fx.run_dir, edited))
    ex1 = model.exhibit_groups[0].exhibits[0]
    assert ex1.highlight_note and "whole spans are highlighted" in ex1.highlight_note
    assert [s.cls for s in ex1.output].count("match") == 1
    assert "whole spans are highlighted" in render_html(model)


# --------------------------------------------------------------------------- unit pieces


def test_paint_overlaps_and_control_characters() -> None:
    from casekit.report.text import Segment, paint, supplied_ranges, visible_segments

    segs = paint("abcdef", [(0, 4, "supplied"), (2, 6, "match")])
    assert segs == [Segment("ab", "supplied"), Segment("cdef", "match")]
    assert paint("xyz", [(10, 12, "match")], offset=9) == [Segment("x", ""),
                                                            Segment("yz", "match")]
    segs = visible_segments("a\x00b\r\nc\u200bd\ud800", "match")
    assert [s.text for s in segs] == ["a", "U+0000", "b\nc", "U+200B", "d", "U+D800"]
    assert segs[1].cls == "match ctl"
    assert supplied_ranges("Continue: one  two\nthree.", ["one two three"]) == [
        (10, 24, "supplied")]


def test_safe_fetcher_serves_only_template_files(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    from casekit.report.render import FetchRefused, SafeFetcher

    root = tmp_path / "tpl"
    root.mkdir()
    (root / "extra.css").write_text("p { color: black; }", encoding="utf-8")
    (tmp_path / "secret.css").write_text("secret", encoding="utf-8")
    (root / "link.css").symlink_to(tmp_path / "secret.css")
    fetcher = SafeFetcher([root])
    ok = fetcher.fetch((root / "extra.css").as_uri())
    assert ok.read() == b"p { color: black; }" and ok.content_type == "text/css"
    bad = ["file:///etc/passwd", (tmp_path / "secret.css").as_uri(),
           root.as_uri() + "/../secret.css", (root / "link.css").as_uri(),
           "http://127.0.0.1:9/x.css", "https://example.invalid/font.woff",
           "data:text/css,body{display:none}", "ftp://example.invalid/x.css"]
    with caplog.at_level(logging.WARNING, logger="casekit.report.render"):
        for url in bad:
            with pytest.raises(FetchRefused):
                fetcher.fetch(url)
    assert fetcher.refused == bad
    assert sum("refused to fetch" in r.message for r in caplog.records) == len(bad)


@pytest.mark.slow
def test_weasyprint_skips_what_the_fetcher_refuses(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """The second wall: even markup that escaped autoescaping cannot fetch anything."""
    from casekit.report.render import render_pdf

    html = ('<html><head><link rel="stylesheet" href="http://127.0.0.1:9/evil.css"></head>'
            '<body><p>x</p><img src="file:///etc/passwd">'
            '<div style="background: url(file:///etc/hostname)">y</div></body></html>')
    with caplog.at_level(logging.WARNING, logger="casekit.report.render"):
        fetcher = render_pdf(html, tmp_path / "x.pdf")
    assert (tmp_path / "x.pdf").read_bytes().startswith(b"%PDF")
    assert fetcher.served == []
    assert set(fetcher.refused) == {"http://127.0.0.1:9/evil.css", "file:///etc/passwd",
                                    "file:///etc/hostname"}
    assert any("refused to fetch" in r.message for r in caplog.records)


def test_marks_match_a_per_character_reference() -> None:
    """The range-based painter gives what marking character by character gives."""
    import random

    from casekit.report.text import _PRIORITY, marks

    rng = random.Random(7)
    for _ in range(300):
        n = rng.randrange(0, 40)
        offset = rng.randrange(0, 5)
        ranges = [(rng.randrange(-3, 50), rng.randrange(-3, 50),
                   rng.choice(["match", "subst", "supplied", "other"])) for _ in range(
                       rng.randrange(0, 6))]
        ref = [""] * n
        for s, e, cls in ranges:
            for i in range(max(0, s - offset), min(n, e - offset)):
                if _PRIORITY.get(ref[i], 0) < _PRIORITY.get(cls, 0):
                    ref[i] = cls
        got = [""] * n
        runs = marks(n, ranges, offset)
        assert [r[0] for r in runs] == sorted(r[0] for r in runs)
        assert sum(e - s for s, e, _ in runs) == n
        for s, e, cls in runs:
            got[s:e] = [cls] * (e - s)
        assert got == ref
        assert all(runs[i][2] != runs[i + 1][2] for i in range(len(runs) - 1))


def test_long_texts_are_cut_visibly_and_kept_whole() -> None:
    from casekit.report.sections.exhibit import column
    from casekit.report.text import (
        APPENDIX_CHUNK_CHARS,
        ELIDED,
        INLINE_MAX_CHARS,
        chunk_bounds,
    )

    text = "".join(f"line {i} of a long output\n" for i in range(2000)) + "X" * 9000
    bounds = chunk_bounds(text)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
    assert all(e - s <= APPENDIX_CHUNK_CHARS for s, e in bounds)
    assert all(text[e - 1] == "\n" for s, e in bounds[:5])  # cut after a line break
    longs: list = []  # type: ignore[type-arg]
    focus = 30_000
    segs = column(text, [(focus, focus + 50, "match")], focus=focus, what="model output",
                   exhibit=("E-1", "exhibit-1", "a-x"), longs=longs)
    notes = [s.text for s in segs if s.cls == ELIDED]
    assert len(notes) == 2 and "Appendix L-1" in notes[0]
    shown = "".join(s.text for s in segs if s.cls != ELIDED)
    assert len(shown) == INLINE_MAX_CHARS and text[focus:focus + 50] in shown
    assert [s.text for s in segs if s.cls == "match"] == [text[focus:focus + 50]]
    (lt,) = longs
    assert lt.ref == "L-1" and lt.exhibit == "E-1" and lt.chars == f"{len(text):,}"
    assert "".join(s.text for c in lt.chunks for s in c) == text
    short: list = []  # type: ignore[type-arg]
    assert column("short", [], what="x", exhibit=("E-2", "e", "a"), longs=short)[0].text == \
        "short"
    assert short == []


def test_errors_retries_and_refusals_are_counted_per_model(case_dir: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Every try is counted: with each attempt's first try failing (transient) and every
    attempt on the control failing for good, the section shows the tries, the retried
    attempts, the failed tries by kind, and lists each failed attempt with its error."""
    import html as html_lib
    import re

    import casekit.run.runner
    from casekit.analysis.analyze import analyze_run
    from casekit.ledger import read_records
    from casekit.records import AttemptRecord
    from casekit.report import build_model, render_html
    from casekit.report.inputs import load_inputs
    from casekit.run.runner import Runner
    from tests.conftest import SCRIPTED_MODELS, STRATEGIES, case_yaml

    monkeypatch.setattr(casekit.run.runner, "BACKOFF_BASE", 0.001)
    monkeypatch.setattr(casekit.run.runner, "BACKOFF_CAP", 0.002)
    models = SCRIPTED_MODELS.replace("      top1: 0.5", "      top1: 0.5\n      fail_first: 1\n"
                                     "      fail_always: [control]")
    (case_dir / "case.yaml").write_text(case_yaml(models, STRATEGIES))
    run_dir = Runner(load_case(case_dir / "case.yaml")).run().run_dir
    recs = [r for r in read_records(run_dir / "ledger.jsonl") if isinstance(r, AttemptRecord)]
    f = analyze_run(run_dir)
    m = build_model(f, load_inputs(run_dir, f))
    assert m.reliability is not None
    row = m.reliability.rows[0]
    failed = [r for r in recs if r.status == "error"]
    assert failed and all(r.attempt.work_id == "control" for r in failed)
    tries = sum(len(r.tries) for r in recs)
    assert row.attempts == f"{len(recs):,}" and row.failed == f"{len(failed):,}"
    assert row.tries == f"{tries:,}"
    assert row.retried == f"{sum(len(r.tries) > 1 for r in recs):,}"
    transient = sum(1 for r in recs for t in r.tries if t.error and t.error.kind == "transient")
    no_retry = sum(1 for r in recs for t in r.tries if t.error and t.error.kind == "no_retry")
    assert row.failed_tries.startswith(f"{transient:,} transient")
    assert f"{no_retry:,} not retried" in row.failed_tries
    assert m.reliability.errors_total == len(failed)
    assert [e.attempt_id for e in m.reliability.errors] == [r.attempt.id for r in
                                                            sorted(failed, key=lambda r: r.seq)]
    text = re.sub(r"\s+", " ", html_lib.unescape(re.sub(r"<[^>]+>", " ",
                                                       render_html(m))))
    assert "Errors, retries, refusals and filters" in text
    assert "FatalError : scripted fatal error for" in text  # type, then the message
    # Failed control attempts stay in the rates' denominators but not in the control floor's
    # (a failure would lower the floor): the report said they stayed in "every denominator".
    assert "was filtered stays in every denominator" not in text
    assert "Each stays in every denominator" not in text
    assert ("stays in the denominators of the regurgitation and extraction rates, counted as "
            "not reproduced") in text
    assert ("The control floor and the test against it count, on both sides alike, the "
            "attempts that returned an output") in text
    assert ("The control floor and the test against it leave failed and unscorable attempts "
            "out, on both sides alike") in text
    floor = {c.model_id: c.attempts.n for c in f.controls}
    ok_controls = {mid: sum(1 for x in f.attempts if x.model_id == mid and x.role == "control"
                            and x.span_attempt and x.outcome != "error") for mid in floor}
    assert floor == ok_controls and any(r.attempt.work_id == "control" for r in failed)


def _reloaded(f: Findings) -> Findings:
    """Findings loaded back from the bytes casekit writes: findings.json and attempts.parquet."""
    from casekit.analysis.analyze import findings_bytes, findings_from_bytes
    from casekit.analysis.attempt_table import table_files

    return findings_from_bytes(findings_bytes(f), table_files(f.attempts)[0])
