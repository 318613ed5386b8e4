"""The measurement.md section 4 metrics: hand-worked fixtures and property tests."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casekit import stats
from casekit.analysis.index import KgramIndex
from casekit.analysis.matcher import WorkMatcher
from casekit.analysis.metrics import (
    clip_to_range,
    coverage_overlap,
    jaccard_random_baseline,
    longest_block,
    longest_regurgitated,
    rate_ratio,
    spans_over_threshold,
)
from casekit.stats import bootstrap_rate
from casekit.strategies.iterative import NvBlock, merge_blocks, nv_recall, nv_recall_words
from casekit.strategies.name_cloze import extract_name, name_cloze_accuracy
from casekit.strategies.prefix import discoverable_extraction, discoverable_rate
from tests.test_matcher import check_span, toks, words_from

# --- 50/50 discoverable extraction [Car23 Def. 3.1] ---------------------------------------------

TARGET = [f"w{i}" for i in range(50)]


def test_discoverable_exact_and_approximate() -> None:
    # Identical 50 tokens (extra output beyond 50 is not compared): exact, distance 0.
    d = discoverable_extraction(TARGET, TARGET + ["more", "words"])
    assert (d.compared, d.exact, d.distance, d.approximate) == (50, True, 0, True)
    # 5 substitutions: distance 5, 5/50 = 0.10 <= 10%: approximate, not exact.
    five = list(TARGET)
    for i in (3, 14, 25, 36, 47):
        five[i] = "x"
    d = discoverable_extraction(TARGET, five)
    assert (d.exact, d.distance, d.normalized_distance, d.approximate) == (False, 5, 0.1, True)
    # 6 substitutions: 6/50 = 0.12 > 10%.
    six = list(five)
    six[0] = "x"
    d = discoverable_extraction(TARGET, six)
    assert (d.distance, d.approximate) == (6, False)
    # An output that stops after 45 tokens: the 5 missing ones are deletions, 5/50 = 0.10.
    d = discoverable_extraction(TARGET, TARGET[:45])
    assert (d.exact, d.distance, d.approximate) == (False, 5, True)
    # One insertion at the start shifts everything: the first 50 output tokens hold 49 of the
    # target's and the extra one: distance 2 (one insertion, the 50th target token missing).
    d = discoverable_extraction(TARGET, ["x"] + TARGET)
    assert (d.exact, d.distance) == (False, 2)
    # A 30-token target is compared over 30 tokens; token ids work as well as strings.
    d = discoverable_extraction(list(range(30)), list(range(30)) + [99])
    assert (d.compared, d.exact) == (30, True)
    with pytest.raises(ValueError):
        discoverable_extraction([], ["a"])


def test_discoverable_rate() -> None:
    five = list(TARGET)
    for i in (3, 14, 25, 36, 47):
        five[i] = "x"
    # Three windows: exact; approximate only; neither (output unrelated).
    rs = [discoverable_extraction(TARGET, TARGET), discoverable_extraction(TARGET, five),
          discoverable_extraction(TARGET, ["y"] * 50)]
    ex, ap = discoverable_rate(rs, "exact"), discoverable_rate(rs, "approximate")
    assert (ex.k, ex.n, ex.method) == (1, 3, "wilson")
    assert (ap.k, ap.n) == (2, 3) and ap.rate == pytest.approx(2 / 3)
    assert ex.lo is not None and ex.hi is not None and ex.lo < 1 / 3 < ex.hi
    with pytest.raises(ValueError):
        discoverable_rate(rs, "fuzzy")  # type: ignore[arg-type]


# --- spans > T [Liu26] ---------------------------------------------------------------------------


def test_spans_over_threshold_greedy_longest_first() -> None:
    # Matches in book positions: M1 [0, 30) 30 words; M2 [25, 60) 35; M3 [100, 121) 21;
    # M4 [200, 220) 20 (not > 20); M5 = M3 again (another generation).
    # Longest first: M2 taken; M1 overlaps it (and so do all its suffixes, which end at 30 > 25);
    # M3 taken; M5 overlaps M3; M4 is not longer than 20. -> 2 spans.
    ms = [(0, 30), (25, 60), (100, 121), (200, 220), (100, 121)]
    assert spans_over_threshold(ms) == [(25, 60), (100, 121)]
    assert spans_over_threshold(ms, t=19) == [(25, 60), (100, 121), (200, 220)]


def test_spans_over_threshold_suffix_candidates() -> None:
    # [Liu26]'s code makes every start inside a match a candidate. M1 [0, 50) is taken;
    # M2 [40, 80) overlaps it, but its suffix [50, 80) (30 words > 20) does not: taken too.
    assert spans_over_threshold([(0, 50), (40, 80)]) == [(0, 50), (50, 80)]
    assert spans_over_threshold([(0, 50), (40, 80)], suffixes=False) == [(0, 50)]
    # Only suffixes, never prefixes: M1 [30, 80) taken; every candidate from M2 [0, 40) ends at
    # 40 > 30, so none fits, although its prefix [0, 30) would have.
    assert spans_over_threshold([(30, 80), (0, 40)]) == [(30, 80)]
    # A suffix must itself be longer than T: M2 [40, 65) leaves [50, 65), 15 words: not taken.
    assert spans_over_threshold([(0, 50), (40, 65)]) == [(0, 50)]


def test_clip_and_longest_regurgitated() -> None:
    # Excerpt [20, 60): [5, 30) clips to [20, 30) = 10 words, [40, 90) to [40, 60) = 20 words,
    # [70, 80) is outside.
    ms = [(5, 30), (40, 90), (70, 80)]
    assert clip_to_range(ms, (20, 60)) == [(20, 30), (40, 60)]
    assert longest_regurgitated(ms, (20, 60)) == 20
    assert longest_regurgitated([], (0, 10)) == 0


def test_longest_block() -> None:
    # Runs: [1, 3) length 2, [4, 7) length 3 -> (3, 4).
    assert longest_block(np.array([0, 1, 1, 0, 1, 1, 1, 0], bool)) == (3, 4)
    # A tie goes to the earliest run.
    assert longest_block(np.array([1, 1, 0, 1, 1], bool)) == (2, 0)
    assert longest_block(np.zeros(5, bool)) == (0, None)
    assert longest_block(np.ones(4, bool)) == (4, 0)


# --- nv-recall [Ahm26] ---------------------------------------------------------------------------

BOOK = [f"b{i}" for i in range(300)]


def test_nv_recall_two_passes() -> None:
    # Generation: b0..b59 | x1 (for b60) | b61..b119 | (b120..b122 skipped) b123..b172 |
    #             y1..y8 | b181..b190 | b250..b254.  Distinct words, so difflib's matching
    # blocks are (book, gen, size): A (0, 0, 60), B (61, 61, 59), C (123, 120, 50),
    # D (181, 178, 10), E (250, 188, 5).
    gen = (BOOK[0:60] + ["x1"] + BOOK[61:120] + BOOK[123:173] + [f"y{i}" for i in range(1, 9)]
           + BOOK[181:191] + BOOK[250:255])
    # Pass 1 (tau_gap 2, tau_align 1): A-B gaps (1, 1) -> merge, AB = 119 matched words;
    # AB-C gaps (book 3, gen 0): 3 > 2, no; C-D gaps (8, 8) no; D-E no.
    # Keep >= 20: AB (119), C (50); D (10) and E (5) dropped.
    # Pass 2 (10, 3): AB-C gaps (3, 0): max 3 <= 10 and |3 - 0| = 3 <= 3 -> merge, 169 words.
    # Keep >= 100: ABC. (D would have merged with C in pass 2, gaps (8, 8), had pass 1 kept it.)
    # nv-recall = 169 / 300.
    r = nv_recall_words(BOOK, gen)
    assert r.matched == 169 and r.book_words == 300
    assert r.recall == pytest.approx(169 / 300)
    assert [(b.book_start, b.book_end, b.gen_start, b.gen_end, b.matched) for b in r.blocks] == [
        (0, 173, 0, 170, 169)]
    # Pass 1 alone keeps AB and C as two blocks, 119 + 50 = 169 words.
    one = nv_recall_words(BOOK, gen, passes=((2, 1, 20),))
    assert one.matched == 169 and [b.matched for b in one.blocks] == [119, 50]
    # B alone (59 words) survives pass 1's floor of 20 but not pass 2's floor of 100.
    assert nv_recall_words(BOOK, BOOK[61:120]).matched == 0


def test_nv_recall_does_not_credit_out_of_order_text() -> None:
    # Second half then first half: matching blocks are monotone, so only one half aligns
    # (difflib takes the longest block, tie -> earliest in the book: book [0, 100)).
    book = BOOK[:200]
    r = nv_recall_words(book, book[100:] + book[:100])
    assert r.matched == 100 and r.recall == 0.5
    assert nv_recall_words(book, book).recall == 1.0
    assert nv_recall_words(book, []).recall == 0.0 and nv_recall_words([], book).recall == 0.0


def test_nv_recall_texts_use_the_light_profile() -> None:
    # Curly quotes, an em dash written "--" and different case and spacing are normalized away
    # (light profile), so a reprint with those differences is fully recalled.
    words = " ".join(f"word{i}" for i in range(120))
    book = "\u201cOpening\u201d\u2014 " + words
    gen = '"opening"--   ' + words.upper()
    assert nv_recall(book, gen).recall == 1.0


def test_merge_blocks_rules() -> None:
    a = NvBlock(book_start=0, book_end=10, gen_start=0, gen_end=10, matched=10)
    b = NvBlock(book_start=12, book_end=20, gen_start=11, gen_end=19, matched=8)
    # Gaps (2, 1): max 2 <= 2, |2 - 1| = 1 <= 1 -> merged, 18 words (gap words not counted).
    (m,) = merge_blocks([a, b], 2, 1)
    assert (m.book_start, m.book_end, m.gen_start, m.gen_end, m.matched) == (0, 20, 0, 19, 18)
    # With tau_align 0 the misalignment of 1 blocks the merge.
    assert len(merge_blocks([a, b], 2, 0)) == 2


# --- name cloze [Cha23] -------------------------------------------------------------------------


def test_name_cloze_accuracy_and_majority_baseline() -> None:
    answers = ["<name>Harry</name>", "  hermione \n", "<NAME> Ron </NAME> and then more",
               "Dumbledore"]
    golds = ["Harry", "Hermione", "Ron", "Harry"]
    # 1: tag content "Harry" = "Harry". 2: stripped, case-insensitive "hermione" = "Hermione".
    # 3: the tag is found case-insensitively and its content stripped: "Ron". 4: wrong.
    # Accuracy 3/4. Majority gold name: "harry" (2 of 4) -> baseline 2/4.
    r = name_cloze_accuracy(answers, golds)
    assert (r.accuracy.k, r.accuracy.n) == (3, 4)
    assert r.majority_name == "harry" and (r.majority_baseline.k, r.majority_baseline.n) == (2, 4)
    # Ties between gold names go to the alphabetically first.
    assert name_cloze_accuracy(["x", "y"], ["Bob", "alice"]).majority_name == "alice"
    assert extract_name("The answer is <name>Jo</name>, or <name>Meg</name>") == "Jo"
    empty = name_cloze_accuracy([], [])
    assert empty.accuracy.n == 0 and empty.majority_name is None
    with pytest.raises(ValueError):
        name_cloze_accuracy(["a"], [])


# --- model comparison [Liu26] -------------------------------------------------------------------


def test_coverage_overlap_and_random_baseline() -> None:
    # A covers positions 0-3, B covers 2-5 of 10: both = 2, either = 6, Jaccard 1/3.
    # Densities .4 and .4: baseline = .16 / (.4 + .4 - .16) = .16 / .64 = 0.25.
    a = np.zeros(10, bool)
    b = np.zeros(10, bool)
    a[0:4] = True
    b[2:6] = True
    o = coverage_overlap(a, b)
    assert (o.a, o.b, o.both, o.either, o.total) == (4, 4, 2, 6, 10)
    assert o.jaccard == pytest.approx(1 / 3) and o.random_baseline == pytest.approx(0.25)
    # Identical full masks: Jaccard 1 and baseline 1 (pa = pb = 1: 1 / (2 - 1)).
    assert jaccard_random_baseline(1.0, 1.0) == 1.0
    assert coverage_overlap(np.zeros(3, bool), np.zeros(3, bool)).jaccard is None
    assert jaccard_random_baseline(0.0, 0.0) is None
    with pytest.raises(ValueError):
        coverage_overlap(np.zeros(3, bool), np.zeros(4, bool))


def test_rate_ratio_katz() -> None:
    # 20/100 vs 10/100: RR = 2; SE(ln RR) = sqrt(1/20 - 1/100 + 1/10 - 1/100) = sqrt(.13)
    # = 0.360555; z = 1.959964; z * SE = 0.706675 -> [2 e^-0.706675, 2 e^0.706675]
    # = [0.986563, 4.054479].
    r = rate_ratio(20, 100, 10, 100)
    assert r.ratio == pytest.approx(2.0) and not r.corrected and r.method == "katz-log"
    assert r.lo == pytest.approx(0.986563, abs=1e-6) and r.hi == pytest.approx(4.054479, abs=1e-6)
    # A zero count: 0.5 added to every cell: (0.5 / 11) / (5.5 / 11) = 1/11 = 0.090909;
    # SE = sqrt(1/0.5 - 1/11 + 1/5.5 - 1/11) = sqrt(2) -> x e^(+-1.959964 * 1.414214)
    # = [0.005686, 1.453410].
    z = rate_ratio(0, 10, 5, 10)
    assert z.corrected and z.ratio == pytest.approx(1 / 11)
    assert z.lo == pytest.approx(0.005686, abs=1e-6) and z.hi == pytest.approx(1.453410, abs=1e-6)
    # No success anywhere, or no attempts: undefined.
    assert rate_ratio(0, 10, 0, 10).ratio is None and rate_ratio(1, 1, 0, 0).ratio is None
    # k = n in both groups: SE = 0, a degenerate interval at the ratio 1.
    full = rate_ratio(5, 5, 5, 5)
    assert full.ratio == full.lo == full.hi == 1.0
    with pytest.raises(ValueError):
        rate_ratio(3, 2, 1, 1)


# --- bootstrap over clusters (stats.py) ----------------------------------------------------------


def test_bootstrap_rate_over_clusters() -> None:
    # Two excerpts: 0 of 10 and 10 of 10. A replicate draws 2 excerpts with replacement:
    # both the first (rate 0, prob 1/4), one of each (0.5, prob 1/2), both the second (1, 1/4).
    # With P(0) = P(1) = 1/4 > 2.5%, the 95% percentile interval is [0, 1]; point rate 0.5.
    r = bootstrap_rate([0, 10], [10, 10], resamples=2000, seed=7)
    assert (r.k, r.n, r.rate, r.lo, r.hi) == (10, 20, 0.5, 0.0, 1.0)
    assert (r.clusters, r.resamples, r.seed, r.unit, r.method) == (
        2, 2000, 7, "excerpt", "cluster-bootstrap-percentile")
    # Every cluster at 1 of 2: every replicate is 0.5 -> the interval collapses to 0.5, while
    # Wilson on 5 of 10 attempts would be [0.237, 0.763].
    same = bootstrap_rate([1] * 5, [2] * 5, unit="chapter")
    assert (same.rate, same.lo, same.hi, same.unit) == (0.5, 0.5, 0.5, "chapter")
    # Seeded: the same inputs give the same interval.
    a = bootstrap_rate([1, 3, 0, 5, 2], [5, 5, 5, 5, 5], seed=3)
    b = bootstrap_rate([1, 3, 0, 5, 2], [5, 5, 5, 5, 5], seed=3)
    assert a == b and a.lo is not None and a.hi is not None and a.lo <= 11 / 25 <= a.hi
    none = bootstrap_rate([], [])
    assert none.rate is None and none.n == 0
    with pytest.raises(ValueError):
        bootstrap_rate([3], [2])


@pytest.mark.parametrize("cells", [1, 7, 1 << 22])
@pytest.mark.parametrize(("clusters", "big"), [(1, False), (9, False), (3000, False), (5, True)])
def test_bootstrap_draws_in_blocks_are_the_one_draw(monkeypatch: pytest.MonkeyPatch, cells: int,
                                                    clusters: int, big: bool) -> None:
    # The replicates are drawn in blocks of rows (bounded memory) and successes and trials
    # gathered packed in one int64 (or apart when they could overflow): the sums must be
    # those of one rng.integers(0, c, size=(resamples, c)) call, the original definition.
    rng = np.random.default_rng(11)
    ns = rng.integers(0, 6, size=clusters)
    if big:
        ns[0] = 1 << 30
    ks = np.minimum(rng.integers(0, 6, size=clusters), ns)
    monkeypatch.setattr(stats, "_DRAW_CELLS", cells)
    draw = np.random.default_rng(5).integers(0, clusters, size=(301, clusters))
    rk, rn = stats._resampled_sums(ks, ns, 301, 5)
    assert np.array_equal(rk, ks[draw].sum(axis=1)) and np.array_equal(rn, ns[draw].sum(axis=1))


def _drawn(ks: list[int], ns: list[int], seed: int) -> tuple[float, float]:
    """The interval by its definition: every replicate drawn, whatever the inputs."""
    rk, rn = stats._resampled_sums(np.asarray(ks), np.asarray(ns), 500, seed)
    ok = rn > 0
    lo, hi = np.quantile(rk[ok] / rn[ok], [0.025, 0.975])
    return float(lo), float(hi)


@pytest.mark.parametrize("seed", range(6))
def test_bootstrap_shortcuts_give_the_drawn_interval(seed: int) -> None:
    # k = 0 or k = n with every cluster tried is not drawn, and an interval asked for again
    # comes from the memo: both must be the drawn interval, bit for bit.
    rng = np.random.default_rng(seed)
    c = int(rng.integers(1, 40))
    ns = [int(x) for x in rng.integers(1, 4, size=c)]
    for ks in ([0] * c, list(ns), [int(rng.integers(0, t + 1)) for t in ns]):
        stats._INTERVALS.clear()
        first = bootstrap_rate(ks, ns, resamples=500, seed=seed)
        again = bootstrap_rate(ks, ns, resamples=500, seed=seed)
        assert (first.lo, first.hi) == (again.lo, again.hi) == _drawn(ks, ns, seed)
    # A cluster without trials: drawn (a replicate may draw only it), the rate still 0.
    r = bootstrap_rate([0, 0], [0, 3], resamples=500, seed=seed)
    assert (r.lo, r.hi) == _drawn([0, 0], [0, 3], seed) == (0.0, 0.0)
    assert len(stats._INTERVALS) <= stats._INTERVALS_KEPT


# --- property tests -----------------------------------------------------------------------------


def zipf_words(rng: np.random.Generator, n: int, vocab: int, prefix: str = "") -> list[str]:
    """Words drawn with Zipf frequencies (p(rank r) ~ 1/r) from ``vocab`` distinct ones."""
    p = 1.0 / np.arange(1, vocab + 1)
    ids = rng.choice(vocab, size=n, p=p / p.sum())
    return [f"{prefix}w{i}" for i in ids]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_work=st.integers(500, 4000),
       n_out=st.integers(50, 1500))
def test_property_unrelated_texts_give_no_span_of_12_words(seed: int, n_work: int,
                                                           n_out: int) -> None:
    rng = np.random.default_rng(seed)
    # Disjoint vocabularies: nothing can match.
    m = WorkMatcher(toks(words_from(rng, n_work, prefix="w")))
    out = toks(words_from(rng, n_out, prefix="o"))
    assert m.near_spans(out) == [] and m.exact_spans(out) == []
    # One shared vocabulary with Zipf frequencies: chance 5-grams of frequent words occur,
    # but never a span of 12 words (measurement.md section 2: 0 at >= 12 between novels).
    m = WorkMatcher(toks(zipf_words(rng, n_work, 3000)))
    out = toks(zipf_words(rng, n_out, 3000))
    assert all(s.words < 12 and s.out_words < 12 for s in m.near_spans(out))
    assert all(s.words < 12 for s in m.exact_spans(out))


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), vocab=st.integers(2, 12),
       n_work=st.integers(0, 400), n_out=st.integers(0, 300),
       near_exact=st.sampled_from([0.7, 0.9, 1.0]))
def test_property_spans_never_leave_text_bounds(seed: int, vocab: int, n_work: int,
                                                n_out: int, near_exact: float) -> None:
    """Tiny vocabularies: many overlapping and repeated matches, the hardest case for bounds."""
    rng = np.random.default_rng(seed)
    work = [f"v{i}" for i in rng.integers(0, vocab, n_work)]
    out = [f"v{i}" for i in rng.integers(0, vocab, n_out)]
    m = WorkMatcher(toks(work))
    mask = rng.random(n_out) < 0.05
    for spans in (m.near_spans(toks(out), near_exact=near_exact, out_mask=mask),
                  m.exact_spans(toks(out), out_mask=mask),
                  m.exact_spans(toks(out), select=True)):
        for s in spans:
            check_span(s, len(out), len(work))
            for tag, i1, i2, j1, j2 in s.opcodes:
                if tag == "equal":
                    assert out[i1:i2] == work[j1:j2]
    # A masked output word (prompt echo) is never inside a span: masked words never match and
    # a gap holding one is never bridged.
    for s in [*m.near_spans(toks(out), near_exact=near_exact, out_mask=mask),
              *m.exact_spans(toks(out), out_mask=mask)]:
        assert not mask[s.out_start:s.out_end].any()


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 6), vocab=st.integers(1, 6),
       n_work=st.integers(0, 120), n_q=st.integers(0, 60))
def test_property_kgram_lookup_equals_brute_force(seed: int, k: int, vocab: int, n_work: int,
                                                  n_q: int) -> None:
    """The bucket-table lookup returns exactly the pairs of equal k-grams, in order."""
    rng = np.random.default_rng(seed)
    work = rng.integers(0, vocab, n_work)
    q = rng.integers(-1, vocab, n_q)  # -1: unknown words, which never match
    idx = KgramIndex(work, k)
    qp, wp = idx.lookup(q)
    want = [(i, j) for i in range(n_q - k + 1) for j in range(n_work - k + 1)
            if (q[i:i + k] >= 0).all() and (q[i:i + k] == work[j:j + k]).all()]
    assert list(zip(qp.tolist(), wp.tolist(), strict=True)) == want
    counts = idx.counts(q)
    assert counts.tolist() == [sum(1 for i, _ in want if i == x) for x in range(len(counts))]
    assert (idx.bucket_counts(q) >= counts).all()


def _liu_raw_matches(gen: list[str], para: list[str], min_length: int) -> list[tuple[int, int]]:
    """[Liu26]'s ``_find_raw_matches_per_excerpt``, re-stated: every (i, j) with equal words
    starts a candidate running forward as far as the words agree."""
    out = []
    for i in range(len(para)):
        for j in range(len(gen)):
            if para[i] != gen[j]:
                continue
            n = 0
            while i + n < len(para) and j + n < len(gen) and para[i + n] == gen[j + n]:
                n += 1
            if n >= min_length:
                out.append((i, i + n))
    return out


def _liu_count(cands: list[tuple[int, int]], t: int) -> int:
    """[Liu26]'s ``count_regurgitated_spans`` selection, re-stated."""
    rows = sorted(((e - s, s, e, i) for i, (s, e) in enumerate(cands) if e - s > t),
                  key=lambda x: (-x[0], x[1], x[2], x[3]))
    taken: list[tuple[int, int]] = []
    for _, s, e, _ in rows:
        if any(s < b and e > a for a, b in taken):
            continue
        taken.append((s, e))
    return len(taken)


def _spans_over_threshold_by_sorting(matches: list[tuple[int, int]], t: int,
                                     suffixes: bool) -> list[tuple[int, int]]:
    """The greedy selection over every suffix candidate, sorted (the definition)."""
    import bisect

    cands = []
    order = 0
    for s, e in matches:
        last = e - t - 1 if suffixes else s
        for a in range(s, max(s, last) + 1):
            if e - a > t:
                cands.append((-(e - a), a, e, order))
                order += 1
    cands.sort()
    starts: list[int] = []
    selected: list[tuple[int, int]] = []
    for _, a, e, _ in cands:
        i = bisect.bisect_left(starts, a)
        if (i > 0 and selected[i - 1][1] > a) or (i < len(selected) and selected[i][0] < e):
            continue
        starts.insert(i, a)
        selected.insert(i, (a, e))
    return selected


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 80), st.integers(0, 40)), max_size=14),
       st.integers(0, 12), st.booleans())
def test_property_spans_over_threshold_equals_sorting_every_candidate(
        raw: list[tuple[int, int]], t: int, suffixes: bool) -> None:
    # The lazy (heap) selection gives exactly the spans of sorting every suffix candidate.
    matches = [(s, s + n) for s, n in raw]
    assert spans_over_threshold(matches, t, suffixes=suffixes) == \
        _spans_over_threshold_by_sorting(matches, t, suffixes)


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), t=st.integers(5, 12), n_gens=st.integers(1, 4),
       data=st.data())
def test_property_spans_over_threshold_matches_liu26(seed: int, t: int, n_gens: int,
                                                     data: st.DataObject) -> None:
    """Clipping maximal matches against the whole work to the excerpt and counting with
    suffix candidates gives [Liu26]'s count from their brute-force per-excerpt matches."""
    rng = np.random.default_rng(seed)
    work = [f"v{i}" for i in rng.integers(0, 4, 300)]
    lo = data.draw(st.integers(0, 200))
    hi = data.draw(st.integers(lo + 1, 300))
    m = WorkMatcher(toks(work), k=5)
    pooled_ours: list[tuple[int, int]] = []
    pooled_liu: list[tuple[int, int]] = []
    for _ in range(n_gens):
        # Generations made of pieces of the work (so long matches exist) and noise.
        parts: list[str] = []
        while len(parts) < 120:
            if rng.random() < 0.6:
                a = int(rng.integers(0, 280))
                parts += work[a:a + int(rng.integers(3, 40))]
            else:
                parts += [f"v{i}" for i in rng.integers(0, 6, int(rng.integers(1, 6)))]
        matches = [(s.work_start, s.work_end) for s in m.exact_spans(toks(parts))]
        pooled_ours += clip_to_range(matches, (lo, hi))
        pooled_liu += [(lo + s, lo + e) for s, e in _liu_raw_matches(parts, work[lo:hi], 5)]
    assert len(spans_over_threshold(pooled_ours, t)) == _liu_count(pooled_liu, t)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(100, 400), cut=st.integers(0, 100))
def test_property_nv_recall_bounds(seed: int, n: int, cut: int) -> None:
    rng = np.random.default_rng(seed)
    book = zipf_words(rng, n, 200)
    assert nv_recall_words(book, book).recall == 1.0
    r = nv_recall_words(book, book[cut:] + zipf_words(rng, 50, 200, prefix="z"))
    # The "z" words are not in the book, so at most the n - cut book words can match.
    assert 0.0 <= r.recall <= 1.0 and r.matched <= n - cut


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.tuples(st.sampled_from(["equal", "replace", "insert"]),
                                   st.integers(0, 60), st.integers(0, 12)), max_size=4),
                max_size=6),
       st.integers(0, 70), st.integers(0, 30))
def test_property_block_contributors_equal_covered_positions(
        attempts: list[list[tuple[str, int, int]]], start: int, words: int) -> None:
    # The longest block's contributors are found from the spans' "equal" ranges directly;
    # the same attempts, in the same order, as from each attempt's covered positions.

    from casekit.analysis.coverage import block_contributors, covered_positions
    from casekit.analysis.findings import AttemptAnalysis, SpanFinding
    from casekit.normalize import Tokens

    xs = []
    for seq, ops in enumerate(attempts):
        spans = [SpanFinding(out_char_start=0, out_char_end=0, work_char_start=0,
                             work_char_end=0, out_word_start=0, out_word_end=0,
                             work_word_start=j, work_word_end=j + n, words=n, matched_words=n,
                             similarity=1.0, verbatim=True, opcodes=[(tag, 0, 0, j, j + n)])
                 for tag, j, n in ops]
        xs.append(AttemptAnalysis(attempt_id=f"a{seq}", seq=100 - seq, record_hash="",
                                  model_id="m", work_id="w", role="subject", strategy="s",
                                  strategy_key="s#0", intent="benign", mode="chat", sample=0,
                                  label="", outcome="no_match", spans=spans))
    tokens = Tokens([f"w{i}" for i in range(80)], np.arange(80), np.arange(80) + 1, "words")
    found = []
    for x in xs:
        pos = covered_positions(x, tokens)
        inside = pos[(pos >= start) & (pos < start + words)]
        if len(inside):
            found.append((int(inside[0]), x.seq, x.attempt_id))
    want = [aid for _, _, aid in sorted(found)] if words > 0 else []
    assert block_contributors(xs, tokens, start, words) == want
