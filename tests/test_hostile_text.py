"""Hostile text: echo and leakage detection stay linear whatever the repetition (issue 15, item 2).

The pair lookup the echo mask used to make enumerated every (output k-gram, prompt k-gram) pair
with equal words: a prompt and an output repeating one sentence made their product. The new
code tests membership instead; these tests hold it to the old results on ordinary and
repetitive text, and to bounded memory on a 10 MB repeated output.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import casekit.analysis.index as index_mod
from casekit.analysis.index import KgramIndex, Vocab, kgram_first, kgram_groups, kgram_in
from casekit.analysis.leakage import MgramTrim, _cover, _joined_ids, echo_mask
from casekit.normalize import tokenize

REPO = Path(__file__).resolve().parents[1]

# Few distinct words: random texts repeat k-grams often, and whole sentences repeat below.
WORDS = ["the", "cat", "sat", "on", "mat", "and", "a", "dog"]
SENTENCE = ("The miller's daughter counted the sacks of grain twice before she trusted the "
            "number, because her father had taught her that a careless count is a kind of "
            "theft. ")


def old_echo_mask(words: Sequence[str], prompts: Sequence[Sequence[str]], m: int) -> np.ndarray:
    """The echo mask as the pair lookup computed it before (the reference semantics)."""
    n = len(words)
    if n < m or not prompts:
        return np.zeros(n, dtype=bool)
    vocab = Vocab()
    ids = _joined_ids(vocab, prompts, add=True)
    if len(ids) <= m:
        return np.zeros(n, dtype=bool)
    qpos, _ = KgramIndex(ids, m).lookup(vocab.ids(words, add=False))
    return _cover(qpos, m, n)


def reference_groups(ids: Sequence[int], k: int) -> list[tuple[int, ...] | None]:
    return [None if min(ids[i:i + k]) < 0 else tuple(ids[i:i + k])
            for i in range(len(ids) - k + 1)]


def text(draw: st.DrawFn, *, max_words: int) -> str:
    """Random words, sometimes with a random phrase repeated many times (moderate repetition)."""
    words = draw(st.lists(st.sampled_from(WORDS), max_size=max_words))
    if draw(st.booleans()):
        phrase = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=7))
        at = draw(st.integers(0, len(words)))
        words[at:at] = phrase * draw(st.integers(1, 40))
    return " ".join(words)


@st.composite
def echo_case(draw: st.DrawFn) -> tuple[str, list[str], int]:
    out = text(draw, max_words=120)
    prompts = [text(draw, max_words=60) for _ in range(draw(st.integers(0, 3)))]
    if out and prompts and draw(st.booleans()):  # the output echoes a piece of a prompt
        w = prompts[0].split()
        a = draw(st.integers(0, len(w)))
        out = " ".join([*out.split()[:10], *w[a:a + draw(st.integers(0, 30))], *out.split()[10:]])
    return out, prompts, draw(st.integers(1, 6))


@settings(max_examples=400, deadline=None)
@given(echo_case())
def test_echo_mask_equals_the_pair_lookup_on_ordinary_and_repetitive_text(
        case: tuple[str, list[str], int]) -> None:
    output, prompts, m = case
    out = tokenize(output)
    pw = [tokenize(p).words for p in prompts if p]
    new = echo_mask(out, prompts, min_words=m)
    assert new.tolist() == old_echo_mask(out.words, pw, m).tolist()


def test_echo_mask_equals_the_pair_lookup_on_many_seeded_texts() -> None:
    """Beyond hypothesis' shrinking-friendly sizes: longer texts of real sentences repeated
    and cut at random points, where the pair lookup is still affordable."""
    rng = np.random.default_rng(15)
    sentences = [s + "." for s in SENTENCE.split(",")] + ["It was a dark night.",
                                                          "the cat sat on the mat"]
    for _ in range(60):
        def piece() -> str:
            parts = rng.choice(sentences, size=int(rng.integers(1, 30)))
            words = " ".join(parts).split()
            a, b = sorted(rng.integers(0, len(words) + 1, size=2))
            return " ".join(words[a:b])
        out = tokenize(" ".join(piece() for _ in range(int(rng.integers(1, 5)))))
        prompts = [piece() for _ in range(int(rng.integers(1, 4)))]
        m = int(rng.integers(3, 8))
        pw = [tokenize(p).words for p in prompts]
        assert (echo_mask(out, prompts, min_words=m).tolist()
                == old_echo_mask(out.words, pw, m).tolist())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-1, 4), max_size=80), st.integers(1, 5), st.booleans())
def test_kgram_groups_are_exact_even_when_every_hash_collides(
        ids: list[int], k: int, weak: bool) -> None:
    arr = np.array(ids, dtype=np.int64)
    if weak:  # a hash with collisions everywhere: the ids must decide
        real = index_mod.kgram_hashes
        index_mod.kgram_hashes = lambda a, kk: (real(a, kk) % np.uint64(3))  # type: ignore
    try:
        got = kgram_groups(arr, k).tolist()
        first = kgram_first(arr, k).tolist()
    finally:
        if weak:
            index_mod.kgram_hashes = real
    ref = reference_groups(ids, k)
    assert [g < 0 for g in got] == [r is None for r in ref]
    for i, j in itertools.combinations(range(len(ref)), 2):
        if ref[i] is not None and ref[j] is not None:
            assert (got[i] == got[j]) == (ref[i] == ref[j])
    seen: dict[tuple[int, ...], int] = {}
    for i, r in enumerate(ref):
        if r is not None:
            seen.setdefault(r, i)
    assert first == sorted(seen.values())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-1, 3), max_size=60), st.lists(st.integers(-1, 3), max_size=60),
       st.integers(1, 4))
def test_kgram_in_is_membership(query: list[int], source: list[int], k: int) -> None:
    src = {r for r in reference_groups(source, k) if r is not None}
    want = [r is not None and r in src for r in reference_groups(query, k)]
    assert kgram_in(np.array(query), np.array(source), k).tolist() == want


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mgram_trim_finds_the_same_work_positions_with_distinct_lookup(
        data: st.DataObject) -> None:
    work = tokenize(data.draw(st.builds(lambda: None).flatmap(
        lambda _: st.lists(st.sampled_from(WORDS), min_size=5, max_size=150).map(" ".join))))
    prompt = " ".join(data.draw(st.lists(st.sampled_from(WORDS), max_size=60)))
    prompt = prompt + " " + " ".join(work.words[:8]) * data.draw(st.integers(0, 20))
    trim = MgramTrim.for_tokens(work, 5)
    ids = _joined_ids(trim.vocab, [tokenize(prompt).words], add=False)
    _, every = trim.index.lookup(ids)
    got = trim.positions([tokenize(prompt).words])
    expect = np.unique(every)
    assert got.to_bool(len(work)).tolist() == _cover(expect, 5, len(work)).tolist()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(WORDS[:4]), min_size=5, max_size=120),
       st.lists(st.sampled_from(WORDS[:4]), max_size=40), st.integers(0, 30))
def test_exact_spans_distinct_work_keeps_every_work_range_once(
        work: list[str], phrase: list[str], repeats: int) -> None:
    from casekit.analysis.matcher import WorkMatcher

    matcher = WorkMatcher(tokenize(" ".join(work)), 5)
    out = tokenize(" ".join(phrase + work[:12] * repeats + phrase))
    every = matcher.exact_spans(out)
    once = matcher.exact_spans(out, distinct_work=True)
    ranges = [(s.work_start, s.work_end) for s in once]
    assert len(ranges) == len(set(ranges))
    assert set(ranges) == {(s.work_start, s.work_end) for s in every}
    assert set(once) <= set(every)


@st.composite
def refrain_case(draw: st.DrawFn) -> tuple[str, str, list[bool] | None]:
    """A work with a refrain between verses, an output repeating pieces of it with edits."""
    vocab = st.sampled_from(WORDS + ["x", "y", "z", "w"])
    refrain = draw(st.lists(vocab, min_size=5, max_size=12))
    work: list[str] = []
    for _ in range(draw(st.integers(1, 6))):
        work += draw(st.lists(vocab, max_size=15)) + refrain
    out: list[str] = []
    for _ in range(draw(st.integers(1, 12))):
        piece = list(draw(st.sampled_from([refrain, work])))
        a = draw(st.integers(0, len(piece)))
        piece = piece[a:a + draw(st.integers(0, 40))]
        if piece and draw(st.booleans()):  # a word edit
            piece[draw(st.integers(0, len(piece) - 1))] = draw(vocab)
        out += piece + draw(st.lists(vocab, max_size=3))
    mask = (draw(st.lists(st.booleans(), min_size=len(out), max_size=len(out)))
            if out and draw(st.booleans()) else None)
    return " ".join(work), " ".join(out), mask


@settings(max_examples=300, deadline=None)
@given(refrain_case(), st.sampled_from([0.8, 0.9, 1.0]), st.integers(0, 8))
def test_near_spans_are_unchanged_by_dropping_lone_duplicate_mems(
        case: tuple[str, str, list[bool] | None], near: float, max_gap: int) -> None:
    import casekit.analysis.matcher as matcher_mod

    work, output, mask = case
    matcher = matcher_mod.WorkMatcher(tokenize(work), 5)
    out = tokenize(output)
    m = None if mask is None else np.array(mask[:len(out)] + [False] * (len(out) - len(mask)))
    got = matcher.near_spans(out, near_exact=near, out_mask=m, max_gap=max_gap)
    real = matcher_mod._drop_isolated_duplicates
    matcher_mod._drop_isolated_duplicates = lambda mems, gap: mems  # type: ignore[assignment]
    try:
        want = matcher.near_spans(out, near_exact=near, out_mask=m, max_gap=max_gap)
    finally:
        matcher_mod._drop_isolated_duplicates = real
    assert got == want


@settings(max_examples=300, deadline=None)
@given(refrain_case(), st.integers(0, 8))
def test_near_by_pairs_equals_near_by_diagonal_search(
        case: tuple[str, str, list[bool] | None], max_gap: int) -> None:
    # Up to _NEAR_PAIRS MEMs, which could chain is found by comparing every pair; above, by
    # a neighbour search per diagonal offset: the same verdicts on the matcher's MEMs.
    import casekit.analysis.matcher as matcher_mod

    work, output, _ = case
    matcher = matcher_mod.WorkMatcher(tokenize(work), 5)
    mems = matcher._mems(matcher.query_ids(tokenize(output)))
    if len(mems):
        os_, oe, diag = mems[:, 0], mems[:, 1], mems[:, 2] - mems[:, 0]
        assert (matcher_mod._near_small(os_, oe, diag, max_gap).tolist()
                == matcher_mod._near(os_, oe, diag, max_gap).tolist())


def test_lone_duplicates_are_dropped_and_chainable_ones_kept() -> None:
    from casekit.analysis.matcher import _drop_isolated_duplicates

    # Two copies of one output range far apart in the work: the later one goes.
    mems = np.array([[0, 10, 100, 110], [0, 10, 500, 510]])
    assert _drop_isolated_duplicates(mems, 8).tolist() == [[0, 10, 100, 110]]
    # A MEM that could chain with the second copy keeps both copies.
    mems = np.array([[0, 10, 100, 110], [0, 10, 500, 510], [12, 20, 512, 520]])
    assert len(_drop_isolated_duplicates(mems, 8)) == 3


# --- bounded memory on a 10 MB repeated output ---------------------------------------------------

_CASE = textwrap.dedent("""\
    case: {id: hostile, title: Hostile output, matter: none, examiner: Tester,
           organization: Test Org}
    works:
      - {id: subject, title: The Mill, author: Anon, path: subject.txt, role: subject}
    allow_no_control: true
    models:
      - id: bot
        provider: scripted
        model: scripted-1
        params: {outputs: {subject: "I do not know it."}}
    strategies:
      - name: benign_prompts
        params: {templates: ["Tell me about {{ title }}."]}
    thresholds: {min_span_words: 15, legal_defaults: false}
    """)

_CHILD = textwrap.dedent("""\
    import resource, sys
    from pathlib import Path
    import tests.scripted  # noqa: F401
    from casekit.analysis.analyze import analyze_run
    run_dir = Path(sys.argv[1])
    analyze_run(run_dir)
    # VmHWM (this process's own peak): ru_maxrss carries the forking pytest worker's peak
    # over the exec, so a worker grown by earlier tests failed this test with 1,651 MB.
    hwm = next(ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:"))
    print(hwm.split()[1])
    """)


def test_a_10mb_repeated_output_analyzes_in_bounded_memory(tmp_path: Path) -> None:
    """The issue's attack: the prompt repeats a sentence of the work 1,000 times and the output
    is 10 MB of it. The pair lookup allocated a 148,752,849 x 5 int64 array (5.5 GiB) here."""
    from casekit.case import load_case
    from casekit.run.importer import import_outputs
    from casekit.run.runner import Runner
    from tests.conftest import SUBJECT

    (tmp_path / "subject.txt").write_text(SUBJECT)
    (tmp_path / "case.yaml").write_text(_CASE)
    run_dir = Runner(load_case(tmp_path / "case.yaml")).run().run_dir
    row = {"prompt": "Please repeat: " + SENTENCE * 1000, "output": SENTENCE * (10**7 // 150),
           "model": "web UI", "captured_at": "2025-06-03T14:05:00Z",
           "captured_by": "A. Tester", "source": "hostile", "intent": "benign",
           "work_id": "subject"}
    src = tmp_path / "hostile.jsonl"
    src.write_text(json.dumps(row) + "\n")
    import_outputs(run_dir, src)
    limit = 2 * 2**30  # an address-space cap, so a regression fails here, not on the machine
    proc = subprocess.run(
        [sys.executable, "-c", f"import resource; resource.setrlimit(resource.RLIMIT_AS, "
         f"({limit}, {limit}))\n" + _CHILD, str(run_dir)],
        cwd=REPO, capture_output=True, text=True, env={"PYTHONPATH": str(REPO),
                                                        "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    peak_mb = int(proc.stdout.split()[-1]) / 1024
    # Linear, not quadratic: about 80 bytes per output character, most of it tokenizing the
    # output (the pair lookup asked for 13.8 GiB at this size).
    assert peak_mb < 1024, f"peak RSS {peak_mb:.0f} MB"


def _hostile_run(tmp_path: Path, output: str, prompt: str) -> Path:
    from casekit.case import load_case
    from casekit.run.importer import import_outputs
    from casekit.run.runner import Runner
    from tests.conftest import SUBJECT

    (tmp_path / "subject.txt").write_text(SUBJECT)
    (tmp_path / "case.yaml").write_text(_CASE)
    run_dir = Runner(load_case(tmp_path / "case.yaml")).run().run_dir
    row = {"prompt": prompt, "output": output, "model": "web UI",
           "captured_at": "2025-06-03T14:05:00Z", "captured_by": "A. Tester",
           "source": "hostile", "intent": "benign", "work_id": "subject"}
    src = tmp_path / "hostile.jsonl"
    src.write_text(json.dumps(row) + "\n")
    import_outputs(run_dir, src)
    return run_dir


def test_an_output_repeating_a_passage_shows_a_bounded_number_of_excerpts(
        tmp_path: Path) -> None:
    """Each repetition of a work sentence is a span; the exhibit shows EXCERPTS_MAX of them
    and says how many more there are (60,000 excerpts made the report run out of memory)."""
    from casekit.analysis.analyze import analyze_run
    from casekit.report.build import render_report
    from casekit.report.evidence import ReportOptions
    from casekit.report.inputs import load_inputs
    from casekit.report.text import EXCERPTS_MAX

    run_dir = _hostile_run(tmp_path, SENTENCE * 300, "Tell me about The Mill.")
    findings = analyze_run(run_dir)
    (hostile,) = [a for a in findings.attempts if a.output_words > 1000]
    assert len(hostile.spans) >= 300  # every repetition is credited
    html = render_report(findings, load_inputs(run_dir, findings), ReportOptions(3)).html
    i = html.index(hostile.attempt_id)
    exhibit = html[i:html.index("</section>", i)]
    assert exhibit.count('<div class="role">') - exhibit.count("col-prompt") <= EXCERPTS_MAX + 2
    assert (f"{EXCERPTS_MAX} of {len(hostile.spans):,} spans are shown and listed; the other "
            f"{len(hostile.spans) - EXCERPTS_MAX:,} are in the run") in exhibit


@pytest.mark.slow
def test_a_1mb_matching_output_reports_in_part_and_says_so(tmp_path: Path) -> None:
    """A 1 MB output repeating a work sentence: the report completes, its appendix shows
    APPENDIX_MAX_CHARS of the output (not all 1,000,000 characters, some 200 PDF pages; 10 MB
    was 2,000 pages and gigabytes in WeasyPrint) and states that it shows it in part and that
    the whole text is in the attached ledger, in the appendix and in the exhibit's column."""
    from click.testing import CliRunner
    from pypdf import PdfReader

    from casekit.cli import cli
    from casekit.report.text import APPENDIX_MAX_CHARS

    output = SENTENCE * (10**6 // len(SENTENCE))
    run_dir = _hostile_run(tmp_path, output, "Tell me about The Mill.")
    res = CliRunner().invoke(cli, ["analyze", str(run_dir)])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["report", str(run_dir)])
    assert res.exit_code == 0, res.output
    html = (run_dir / "report" / "report.html").read_text()
    i = html.index('id="long-texts"')
    appendix = html[i:]
    total = f"{len(output):,}"
    stated = (f"[casekit: shown in part: characters 1\u2013{APPENDIX_MAX_CHARS:,} of {total}. "
              "The whole text is in the ledger attached to this PDF (ledger.jsonl, attempt ")
    assert appendix.count(stated) == 2, appendix[:3000]  # before and after the part shown
    assert appendix.count("twice before she trusted") <= APPENDIX_MAX_CHARS // len(SENTENCE) + 1
    assert f"Appendix L-1 shows characters 1\u2013{APPENDIX_MAX_CHARS:,}, and the whole text " \
        "is in the ledger attached to this PDF]" in html[:i]
    reader = PdfReader(run_dir / "report" / "report.pdf")
    assert len(reader.pages) < 120, len(reader.pages)
    pdf_text = " ".join(" ".join((p.extract_text() or "").split()) for p in reader.pages[-40:])
    assert "shown in part: characters 1" in pdf_text
