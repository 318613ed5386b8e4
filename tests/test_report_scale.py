"""The report's pages follow the case's shape, not the number of attempts (issue 14, part 5).

Two runs of the same shape (two models x two works x two strategies, every outcome in every
model x work x strategy) are written through the real ledger and analyzed by the real analyzer,
one with 64 attempts and one with 1,280: their PDFs have about as many pages. The sample of
attempts is stratified (every stratum shown), seeded and the same on every render; the pages
state the true counts and cite the complete listing by hash; `casekit verify` re-renders the
large report byte for byte.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from pypdf import PdfReader

from casekit.analysis.findings import AttemptAnalysis, Findings
from casekit.canonical import sha256_bytes
from casekit.case import case_hash_form, load_case
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
from tests.test_report import CONTROL, SUBJECT

pytestmark = pytest.mark.slow

SEED = 1234
CASE_YAML = f"""\
case:
  id: scale-case
  title: Scale v. Example Models
  matter: "No. 1:26-cv-00014 (Test Court)"
  examiner: Jane Examiner
  organization: Evidence Lab
works:
  - id: frank
    title: Frankenstein (Letter I)
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
  - id: m2
    provider: openai
    model: gpt-test-2026-01-01
    api_key_env: OPENAI_API_KEY
strategies:
  - name: benign_prompts
    params:
      templates: ["Tell me about {{{{ title }}}}."]
  - name: prefix_continuation
    params: {{prefix_words: 20, suffix_words: 30}}
seed: {SEED}
thresholds:
  min_span_words: 20
  legal_defaults: false
"""
MODELS = ("m1", "m2")
WORKS = ("frank", "harbour")
STRATEGIES = (("benign_prompts", 0, "benign", "chat"),
              ("prefix_continuation", 1, "adversarial", "completion"))
#: Within each model x work x strategy, attempt j is an error when j % CYCLE == 0, a refusal
#: when j % CYCLE == 1, otherwise (on the subject) a match every other attempt.
CYCLE = 8
REFUSAL = "I'm sorry, I can't reproduce copyrighted text."
T0 = "2026-02-03T10:00:00.000000Z"
SMALL, LARGE = 40, 160  # attempts per model x work x strategy: 320 and 1,280 in all


@dataclass
class Run:
    run_dir: Path
    case_path: Path
    findings: Findings
    pdf: Path
    html: str
    texts: list[str]


def _output(rng: random.Random, work: str, j: int) -> tuple[str, str]:
    """(status, text) of attempt j of a model x work x strategy."""
    if j % CYCLE == 0:
        return "error", ""
    if j % CYCLE == 1:
        return "ok", REFUSAL
    words = SUBJECT.split()
    if work == "frank" and j % 2 == 0:
        at = rng.randrange(0, len(words) - 40)
        return "ok", "Here it is: " + " ".join(words[at:at + 30 + j % 7]) + " That is all."
    return "ok", f"I do not know that text well; it may be about gulls, number {j}."


def make_run(root: Path, per_cell: int) -> tuple[Path, Path, Findings]:
    """A case folder and an analyzed run with ``per_cell`` attempts per model x work x
    strategy (the shape stays; only the number of attempts changes)."""
    from casekit.analysis.analyze import analyze_run
    from casekit.works import load_works

    case_dir = root / "case"
    (case_dir / "works").mkdir(parents=True)
    (case_dir / "works" / "frank.txt").write_text(SUBJECT, encoding="utf-8")
    (case_dir / "works" / "harbour.txt").write_text(CONTROL, encoding="utf-8")
    case_path = case_dir / "case.yaml"
    case_path.write_text(CASE_YAML, encoding="utf-8")
    loaded = load_case(case_path)
    works = load_works(loaded)
    run_dir = case_dir / "runs" / "scale-case-000000000000"
    from casekit.anchor import Anchor, load_or_create_key

    key = load_or_create_key()  # the tests' examiner key (conftest: CASEKIT_HOME)
    led = Ledger(run_dir, anchor=Anchor(key)).open()
    planned: list[tuple[PlannedAttempt, int]] = []
    for m in MODELS:
        for w in WORKS:
            for name, idx, intent, mode in STRATEGIES:
                for j in range(per_cell):
                    n = len(planned)
                    kw: dict[str, object] = (
                        {"messages": [Message(role="user", content=f"Tell me about {w} ({j}).")]}
                        if mode == "chat" else {"prompt": f"Continue passage {j} of {w}:"})
                    planned.append((PlannedAttempt(
                        id=f"s-{n:06d}-{m}-{w}".ljust(22, "0")[:22], ordinal=n, model_id=m,
                        strategy=name, strategy_key=f"{name}#{idx}", work_id=w, intent=intent,
                        index=j, mode=mode, decoding=Decoding(seed=0), label=f"prompt {j}",
                        **kw), j))
    led.append(RunStart(
        **led.base_fields(), run_id=run_dir.name, case_path=str(case_path),
        case_sha256=loaded.sha256, case=case_hash_form(loaded.spec),
        works=[WorkManifest(id=x.id, title=x.spec.title, author=x.spec.author,
                            role=x.spec.role, path=x.spec.path, sha256=x.sha256,
                            chars=len(x.raw), words=len(x.tokens),
                            excluded_chars=x.excluded_chars) for x in works],
        models=[ModelIdentity(model_id="m1", provider="local", model="smollm2-135m-instruct",
                              interface="chat", can_score=True),
                ModelIdentity(model_id="m2", provider="openai", model="gpt-test-2026-01-01",
                              interface="chat")],
        plan_sha256="sha256:" + "cd" * 32, planned_attempts=len(planned),
        examiner_key=key.identity(), versions={"casekit": "0.1.0"}, git={},
        host={"hostname": "lab-1"},
        argv=["casekit", "run", "case.yaml"]))
    rng = random.Random(7)
    for a, j in planned:
        status, text = _output(rng, a.work_id, j)
        led.append(AttemptRecord(
            **led.base_fields(), attempt=a, status=status,
            result=None if status == "error" else ProviderResult(
                text=text, finish_reason="stop", returned_model=a.model_id + "-served"),
            error=AttemptError(kind="no_retry", type="BadRequest", message="model not found")
            if status == "error" else None,
            started_at=T0, completed_at=T0))
    led.append(RunEnd(**led.base_fields(), attempts_recorded=len(planned),
                      attempts_planned=len(planned), complete=True))
    led.close()
    return run_dir, case_path, analyze_run(run_dir)


def _build(root: Path, per_cell: int) -> Run:
    from casekit.report import build_report

    run_dir, case_path, findings = make_run(root, per_cell)
    paths = build_report(run_dir, findings, out_dir=root / "out")
    return Run(run_dir=run_dir, case_path=case_path, findings=findings, pdf=paths.pdf,
               html=paths.html.read_text(encoding="utf-8"),
               texts=[p.extract_text() for p in PdfReader(paths.pdf).pages])


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _build(tmp_path_factory.mktemp("small"), SMALL)


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _build(tmp_path_factory.mktemp("large"), LARGE)


def _compact(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _strata(f: Findings) -> Counter[tuple[str, str, str, str]]:
    """(model, work, strategy key, outcome): a strategy here has one intent."""
    return Counter((x.model_id, x.work_id, x.strategy_key, x.outcome) for x in f.attempts)


# --------------------------------------------------------------------------- pages


def test_the_two_runs_have_the_same_shape(small: Run, large: Run) -> None:
    """Not vacuous: 20 times the attempts, the same strata (every outcome in each cell)."""
    assert len(small.findings.attempts) == 2 * 2 * 2 * SMALL == 320
    assert len(large.findings.attempts) == 2 * 2 * 2 * LARGE == 1280
    assert set(_strata(small.findings)) == set(_strata(large.findings))
    outcomes = {k[3] for k in _strata(large.findings)}
    assert {"match", "no_match", "refusal", "error"} <= outcomes
    # Every stratum of the large run has more attempts than the sample shows.
    assert min(_strata(large.findings).values()) > 5


def test_page_count_follows_the_shape_not_the_attempts(small: Run, large: Run) -> None:
    from casekit.report.sections.reliability import RELIABILITY_ERRORS_PER_MODEL

    n_small, n_large = len(small.texts), len(large.texts)
    # Both runs fill every list the report caps: each stratum has at least the 5 sampled
    # attempts, each model more errors than RELIABILITY_ERRORS_PER_MODEL, and each model's
    # longest block is exhibited with the fewest attempts that cover it (not all of the 120
    # that overlap it in the large run). So four times the attempts, the same pages. Before
    # the sample, the table of every attempt took a page per 40 or so attempts (24 more
    # pages here); before the block cover, the large run's block exhibit took 28 pages.
    assert min(_strata(small.findings).values()) >= 5
    assert RELIABILITY_ERRORS_PER_MODEL < 40
    assert abs(n_large - n_small) <= 2, (n_small, n_large)
    # Every page reads back as text (a glyph drawn for a line break once turned the body
    # font's text map into NUL-interleaved text on every page).
    assert not any("\x00" in t for t in small.texts + large.texts)


def test_a_block_exhibit_shows_the_fewest_attempts_that_cover_it(large: Run) -> None:
    from casekit.report import build_model
    from casekit.report.inputs import load_inputs

    model = build_model(large.findings, load_inputs(large.run_dir, large.findings))
    blocks = [g.block for g in model.exhibit_groups if g.block is not None]
    assert blocks
    min_span = large.findings.thresholds.min_span_words
    by_key = {(mw.model_id, mw.work_id): mw for mw in large.findings.findings}
    for b in blocks:
        every = by_key[(b.model_id, b.work_id)].coverage.longest_block_attempts
        assert b.total == len(every) > 60  # 120 outputs overlap the whole letter ...
        words = int(b.words.replace(",", ""))
        # ... and a handful show it: each shown output adds at least a span's words.
        assert len(b.contributors) <= words // min_span + 2, len(b.contributors)
        assert f"{b.total:,} attempts cover words of this block" in b.others_note
        # The shown ones cover the block whole.
        covered: set[int] = set()
        for c in b.contributors:
            for part in c.covers.split("; "):
                lo, hi = (int(x.replace(",", "")) for x in part.split("\u2013"))
                covered.update(range(lo, hi))
        first, last = (int(x.replace(",", "")) for x in b.work_words.split("\u2013"))
        assert covered >= set(range(first, last))


def test_the_sample_is_stratified_and_capped(large: Run) -> None:
    from casekit.report import build_model
    from casekit.report.evidence import ATTEMPTS_PER_STRATUM
    from casekit.report.inputs import load_inputs

    model = build_model(large.findings, load_inputs(large.run_dir, large.findings))
    strata = _strata(large.findings)
    shown = {(s.model_id, s.work_id, s.strategy_key, s.outcome.replace(" ", "_")):
             (s.attempts, len(s.rows)) for s in model.attempts.strata}
    assert set(shown) == set(strata)  # every stratum represented
    for key, n in strata.items():
        noun = "attempt" if n == 1 else "attempts"
        assert shown[key] == (f"{n:,} {noun}", min(n, ATTEMPTS_PER_STRATUM)), key
    # Each row belongs to its stratum, and rows are in ledger order within it.
    by_id = {x.attempt_id: x for x in large.findings.attempts}
    for s in model.attempts.strata:
        rows = [by_id[r.attempt_id] for r in s.rows]
        assert all((x.model_id, x.work_id, x.strategy_key) ==
                   (s.model_id, s.work_id, s.strategy_key) for x in rows)
        assert [x.seq for x in rows] == sorted(x.seq for x in rows)


def test_the_pages_state_the_true_counts(large: Run) -> None:
    f = large.findings
    text = _compact("\n".join(large.texts))
    total = len(f.attempts)
    outcomes = Counter(x.outcome for x in f.attempts)
    assert _compact(f"{total:,} attempts were analyzed") in text
    assert _compact("By outcome: " + ", ".join(
        f"{o.replace('_', ' ')} {outcomes.get(o, 0):,}"
        for o in ("match", "no_match", "refusal", "error", "unscorable"))) in text
    strata = _strata(f)
    shown = sum(min(n, 5) for n in strata.values())
    assert _compact(f"at most 5 attempts of each stratum are shown: {shown:,} of the "
                    f"{total:,}") in text
    for (m, w, s, o), n in strata.items():
        head = (f"Model {m} × work {w}{' (control)' if w == 'harbour' else ''} × {s} "
                f"({'benign' if s.startswith('benign') else 'adversarial'}) × "
                f"{o.replace('_', ' ')}: {n:,} attempts, 5 shown")
        assert _compact(head) in text, head
    # The complete listing is cited by the hashes of the attachments that hold it.
    att = PdfReader(large.pdf).attachments
    assert _compact(f"The complete per-attempt listing, {total:,} rows (one per attempt), is "
                    "attached to this PDF as attempts.parquet, hash "
                    f"{sha256_bytes(att['attempts.parquet'][0])}, and as attempts.csv, hash "
                    f"{sha256_bytes(att['attempts.csv'][0])}; findings.json cites its rows by "
                    f"their content hash, {f.attempt_rows.sha256}.") in text
    assert f.attempt_rows.rows == total
    # Exhibits: capped per model x work, with the true count of those not exhibited.
    for mw in f.findings:
        if not mw.exhibit_attempts:
            continue
        n = len(mw.exhibit_attempts)
        assert n > 3
        assert _compact(f"{n:,} attempts reached the reporting threshold. {n - 3:,} more "
                        "attempts reached the reporting threshold for this model and work "
                        "and are not exhibited: each counts") in text
    # Errors: the first ones listed, the rest counted and pointed to.
    errors = outcomes["error"]
    assert errors == 160
    assert _compact("20 of 160 shown: each model's first 10 in ledger order (m1: 10 of 80; "
                    "m2: 10 of 80); the other 140 are not listed here") in text


def test_the_sample_is_the_same_on_every_render_and_verifies(large: Run) -> None:
    from casekit.report import build_model, render_html
    from casekit.report.inputs import load_inputs
    from casekit.report.verify import verify_report

    again = render_html(build_model(large.findings, load_inputs(large.run_dir, large.findings)))
    assert again == large.html
    res = verify_report(large.pdf)
    assert res.ok, "\n".join(res.lines())


# --------------------------------------------------------------------------- the sampler


def _analysis(i: int, model: str, work: str, strategy: str, outcome: str,
              intent: str = "benign") -> AttemptAnalysis:
    return AttemptAnalysis(
        attempt_id=f"x-{i:08d}", seq=i + 1, record_hash="sha256:" + "0" * 64, model_id=model,
        work_id=work, role="subject", strategy=strategy.split("#")[0].split("@")[0],
        strategy_key=strategy, intent=intent, mode="chat", sample=0, label="",
        outcome=outcome)


def test_sampler_is_seeded_stratified_and_order_free() -> None:
    from casekit.report.sections.attempts import sample_key, stratified_sample

    rng = random.Random(3)
    xs = [_analysis(i, rng.choice(["a", "b"]), rng.choice(["w1", "w2", "w3"]),
                    rng.choice(["s#0", "s#1"]), rng.choice(["match", "no_match", "error"]))
          for i in range(3000)]
    xs.append(_analysis(5000, "c", "w9", "s#0", "refusal"))  # a stratum of one
    # Imported attempts of one strategy key with the intents their importer declared: one
    # stratum per intent, so a stratum's heading never misstates an attempt's intent.
    xs += [_analysis(6000 + i, "a", "w1", "imported@0123456789ab", "match",
                     intent="adversarial" if i % 2 else "benign") for i in range(4)]
    counts, chosen = stratified_sample(xs, 5, seed=42)
    strata = Counter((x.model_id, x.work_id, x.strategy_key, x.intent, x.outcome) for x in xs)
    assert counts == dict(strata)
    assert set(chosen) == set(strata)  # every stratum represented
    assert {k[3] for k in chosen if k[2].startswith("imported@")} == {"adversarial", "benign"}
    for key, rows in chosen.items():
        mine = [x for x in xs
                if (x.model_id, x.work_id, x.strategy_key, x.intent, x.outcome) == key]
        want = sorted(mine, key=lambda x: sample_key(42, x.attempt_id))[:5]
        assert [x.attempt_id for x in rows] == [x.attempt_id for x in
                                                sorted(want, key=lambda x: x.seq)]
    # The key is SHA-256 of "seed:attempt id", as the page says.
    assert sample_key(42, "x-00000001") == hashlib.sha256(b"42:x-00000001").hexdigest()
    # Deterministic whatever the order the attempts come in (a stream, a shuffled list).
    shuffled = list(xs)
    rng.shuffle(shuffled)
    assert stratified_sample(shuffled, 5, seed=42) == (counts, chosen)
    assert stratified_sample(iter(xs), 5, seed=42) == (counts, chosen)
    # Another seed draws another sample of the same strata.
    counts7, chosen7 = stratified_sample(xs, 5, seed=7)
    assert counts7 == counts and chosen7 != chosen
    # Nothing sampled: the strata are still counted.
    assert stratified_sample(xs, 0, seed=42) == (counts, {})
