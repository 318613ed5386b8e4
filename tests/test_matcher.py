"""k-gram index and span matcher: planted verbatim and near-verbatim spans, unrelated texts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz.distance import Levenshtein

from casekit.analysis.index import KgramIndex, Vocab, kgram_hashes
from casekit.analysis.matcher import Span, WorkMatcher, opcodes_cost
from casekit.normalize import Tokens, tokenize

ALPHA = "abcdefghijklmnopqrstuvwxyz"


def words_from(rng: np.random.Generator, n: int, vocab: int = 2000, prefix: str = "") -> list[str]:
    """Random pronounceable-ish words from a vocabulary of ``vocab`` distinct ones."""
    ids = rng.integers(0, vocab, n)
    return [prefix + "".join(ALPHA[(i // 26 ** p) % 26] for p in range(3)) + "x" for i in ids]


def toks(ws: list[str]) -> Tokens:
    return tokenize(" ".join(ws))


def check_span(s: Span, n_out: int, n_work: int) -> None:
    """Structural invariants every span must satisfy."""
    assert 0 <= s.out_start < s.out_end <= n_out
    assert 0 <= s.work_start < s.work_end <= n_work
    assert s.opcodes[0][1] == s.out_start and s.opcodes[0][3] == s.work_start
    assert s.opcodes[-1][2] == s.out_end and s.opcodes[-1][4] == s.work_end
    for a, b in zip(s.opcodes, s.opcodes[1:], strict=False):
        assert a[2] == b[1] and a[4] == b[3]
    lo, lw = s.out_end - s.out_start, s.work_end - s.work_start
    assert s.similarity == pytest.approx(1 - opcodes_cost(s.opcodes) / max(lo, lw))
    assert s.verbatim == (s.similarity == 1.0 and lo == lw)


# --- index --------------------------------------------------------------------------------------


def test_vocab_ids() -> None:
    v = Vocab()
    assert v.ids(["a", "b", "a"], add=True).tolist() == [0, 1, 0]
    assert v.ids(["b", "zz", "c"], add=False).tolist() == [1, -1, -1]
    assert v.ids(["c"], add=True).tolist() == [2]
    assert len(v) == 3 and v.word(2) == "c" and "a" in v
    assert v.ids([], add=False).dtype == np.int64


def test_kgram_lookup_exact_pairs_and_unknowns() -> None:
    work = np.array([0, 1, 2, 3, 0, 1, 2, 4, 0, 1, 2, 3])
    idx = KgramIndex(work, 3)
    qp, wp = idx.lookup(np.array([9, 0, 1, 2, 3, -1, 1, 2]))
    assert list(zip(qp.tolist(), wp.tolist(), strict=True)) == [
        (1, 0), (1, 4), (1, 8), (2, 1), (2, 9)]
    # k-grams containing -1 never match, even against each other.
    assert len(KgramIndex(np.array([5, 6, 7]), 2).lookup(np.array([-1, -1, -1]))[0]) == 0
    assert len(idx.lookup(np.array([0, 1]))[0]) == 0


def test_kgram_lookup_rejects_hash_collisions(monkeypatch: pytest.MonkeyPatch) -> None:
    import casekit.analysis.index as index_mod

    def all_collide(ids: np.ndarray, k: int) -> np.ndarray:
        return np.zeros(max(0, len(ids) - k + 1), dtype=np.uint64)

    monkeypatch.setattr(index_mod, "kgram_hashes", all_collide)
    idx = KgramIndex(np.arange(50), 4)  # every k-gram has the same hash
    qp, wp = idx.lookup(np.array([10, 11, 12, 13, 99, 7, 8, 9, 10]))
    assert list(zip(qp.tolist(), wp.tolist(), strict=True)) == [(0, 10), (5, 7)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=0, max_size=60),
       st.lists(st.integers(-1, 6), min_size=0, max_size=30), st.integers(1, 4))
def test_property_may_match_is_false_only_when_a_lookup_finds_nothing(
        work: list[int], query: list[int], k: int) -> None:
    # The matcher's early exit (no query k-gram hash among the indexed ones) is exact.
    idx = KgramIndex(np.array(work, dtype=np.int64), k)
    q = np.array(query, dtype=np.int64)
    found = len(idx.lookup(q)[0]) > 0
    if len(q) >= k:
        assert idx.may_match(idx.query_hashes(q)) or not found


def test_kgram_hashes_distinguish_order() -> None:
    h = kgram_hashes(np.array([1, 2, 3, 3, 2, 1]), 3)
    assert len(h) == 4 and len(set(h.tolist())) == 4


# --- planted spans ------------------------------------------------------------------------------


def make_work(seed: int = 0, n: int = 3000) -> list[str]:
    return words_from(np.random.default_rng(seed), n)


def test_planted_verbatim_span_exact_offsets() -> None:
    rng = np.random.default_rng(1)
    work = make_work()
    filler = words_from(rng, 400, prefix="q")
    out = filler[:150] + work[1200:1260] + filler[150:]
    m = WorkMatcher(toks(work))
    for spans in (m.near_spans(toks(out)), m.exact_spans(toks(out))):
        assert [(s.out_start, s.out_end, s.work_start, s.work_end) for s in spans] == [
            (150, 210, 1200, 1260)]
        assert spans[0].verbatim and spans[0].similarity == 1.0 and spans[0].words == 60
        assert spans[0].opcodes == (("equal", 150, 210, 1200, 1260),)
        assert spans[0].matched_work_positions().tolist() == list(range(1200, 1260))


def test_planted_near_verbatim_span() -> None:
    rng = np.random.default_rng(2)
    work = make_work()
    passage = list(work[500:600])
    for i in (12, 31, 47, 66, 83):
        passage[i] = f"sub{i}"  # substitutions by words the work does not have
    del passage[58]  # one deletion (work word 558 missing from the output)
    passage.insert(74, "extra")  # one insertion
    filler = words_from(rng, 200, prefix="q")
    out = filler[:80] + passage + filler[80:]
    m = WorkMatcher(toks(work))
    spans = [s for s in m.near_spans(toks(out)) if s.words >= 12]
    assert len(spans) == 1
    s = spans[0]
    check_span(s, len(out), len(work))
    assert (s.out_start, s.out_end, s.work_start, s.work_end) == (80, 180, 500, 600)
    assert s.similarity >= 0.9 and not s.verbatim
    assert s.similarity == pytest.approx(
        Levenshtein.normalized_similarity(out[80:180], work[500:600]))
    tags = {op[0] for op in s.opcodes}
    assert tags == {"equal", "replace", "insert", "delete"}
    matched = set(s.matched_work_positions().tolist())
    assert matched == set(range(500, 600)) - {512, 531, 547, 558, 566, 583}
    # The same edits at a threshold above the span's similarity split it into verbatim pieces.
    strict = m.near_spans(toks(out), near_exact=0.999)
    assert all(x.verbatim for x in strict) and len(strict) > 1


def test_long_spans_use_the_anchored_alignment(monkeypatch: pytest.MonkeyPatch) -> None:
    import casekit.analysis.matcher as matcher_mod

    work = make_work(12)
    passage = list(work[700:900])
    for i in (20, 21, 90, 150):
        passage[i] = f"sub{i}"
    passage.insert(120, "extra")
    del passage[60]
    m = WorkMatcher(toks(work))
    (glob,) = m.near_spans(toks(passage))
    monkeypatch.setattr(matcher_mod, "GLOBAL_ALIGN_MAX_WORDS", 50)
    (anch,) = m.near_spans(toks(passage))
    check_span(anch, len(passage), len(work))
    assert (anch.out_start, anch.out_end, anch.work_start, anch.work_end) == (
        glob.out_start, glob.out_end, glob.work_start, glob.work_end) == (0, 200, 700, 900)
    assert anch.similarity <= glob.similarity
    assert anch.similarity == pytest.approx(1 - 6 / 200)
    assert set(anch.matched_work_positions().tolist()) == set(range(700, 900)) - {
        720, 721, 760, 790, 850}
    for tag, i1, i2, j1, j2 in anch.opcodes:
        if tag == "equal":
            assert passage[i1:i2] == work[j1:j2]


def test_edits_at_span_edges_are_trimmed() -> None:
    work = make_work(3)
    passage = ["edge0"] + work[101:139] + ["edge1"]
    out = ["q"] * 10 + passage + ["q"] * 10
    (s,) = WorkMatcher(toks(work)).near_spans(toks(out))
    assert (s.out_start, s.out_end, s.work_start, s.work_end) == (11, 49, 101, 139)
    assert s.verbatim


def test_dense_edits_are_not_bridged() -> None:
    work = make_work(4)
    passage = list(work[1000:1060])
    for i in range(20, 40, 2):  # 50% edits in the middle: no span may cross them
        passage[i] = f"sub{i}"
    out = passage
    spans = WorkMatcher(toks(work)).near_spans(toks(out))
    assert [(s.out_start, s.out_end) for s in spans] == [(0, 20), (39, 60)]
    assert all(s.similarity >= 0.9 for s in spans)


def test_repeated_passage_uses_longest_alignment() -> None:
    rng = np.random.default_rng(5)
    a = words_from(rng, 300, prefix="a")
    p = words_from(rng, 40, prefix="p")
    b = words_from(rng, 300, prefix="b")
    cont = words_from(rng, 30, prefix="c")
    work = a + p + b + p + cont + a[:50]
    out = ["zz"] * 5 + p + cont + ["zz"] * 5
    m = WorkMatcher(toks(work))
    second = len(a) + len(p) + len(b)
    (s,) = m.near_spans(toks(out))
    assert (s.out_start, s.out_end, s.work_start, s.work_end) == (5, 75, second, second + 70)
    # exact_spans reports every alignment; select=True keeps the longest.
    exact = m.exact_spans(toks(out))
    assert {(x.work_start, x.work_end) for x in exact} == {
        (len(a), len(a) + 40), (second, second + 70)}
    (sel,) = m.exact_spans(toks(out), select=True)
    assert (sel.work_start, sel.work_end) == (second, second + 70)
    # A passage repeated identically: one span, the earliest copy.
    work2 = a + p + b + p + b
    (s2,) = WorkMatcher(toks(work2)).near_spans(toks(["zz"] + p + ["zz"]))
    assert (s2.work_start, s2.work_end) == (len(a), len(a) + 40)


def test_repeated_passage_with_edits() -> None:
    rng = np.random.default_rng(6)
    p = words_from(rng, 80, prefix="p")
    work = words_from(rng, 200, prefix="a") + p + words_from(rng, 200, prefix="b") + p
    q = list(p)
    q[20] = "sub"
    q[50] = "sub"
    (s,) = WorkMatcher(toks(work)).near_spans(toks(q))
    assert (s.out_start, s.out_end, s.work_start, s.work_end) == (0, 80, 200, 280)
    assert s.similarity == pytest.approx(78 / 80)


def test_chunked_seed_pairs_give_the_same_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    """A degenerate output (a phrase looping) against a work repeating it: seed pairs are
    processed in chunks, and the result does not depend on the chunk size."""
    import casekit.analysis.matcher as matcher_mod

    rng = np.random.default_rng(11)
    phrase = words_from(rng, 7, prefix="p")
    work = words_from(rng, 100, prefix="a") + phrase * 6 + words_from(rng, 100, prefix="b")
    work += phrase + words_from(rng, 50, prefix="c") + phrase * 3
    out = words_from(rng, 10, prefix="q") + phrase * 20 + ["sub"] + phrase * 5
    m = WorkMatcher(toks(work))
    want_exact = m.exact_spans(toks(out))
    want_near = m.near_spans(toks(out))
    assert len(want_exact) > 10 and want_near
    for chunk in (1, 7, 50):
        monkeypatch.setattr(matcher_mod, "SEED_PAIR_CHUNK", chunk)
        assert m.exact_spans(toks(out)) == want_exact
        assert m.near_spans(toks(out)) == want_near
    for s in want_near:
        check_span(s, len(out), len(work))
    covered = np.zeros(len(out), dtype=bool)
    for s in want_near:
        assert not covered[s.out_start:s.out_end].any()  # no overlap on the output side
        covered[s.out_start:s.out_end] = True
    # The longest alignment of the looping phrase is with the work's 6-fold repetition.
    assert max(s.words for s in want_near) == 6 * 7


def test_out_mask_breaks_matches() -> None:
    work = make_work(7)
    out = work[300:360]
    mask = np.zeros(60, dtype=bool)
    mask[30] = True
    m = WorkMatcher(toks(work))
    exact = m.exact_spans(toks(out), out_mask=mask)
    assert [(s.out_start, s.out_end) for s in exact] == [(0, 30), (31, 60)]
    near = m.near_spans(toks(out), out_mask=mask)
    assert [(s.out_start, s.out_end) for s in near] == [(0, 30), (31, 60)]
    mask[:] = True
    assert m.near_spans(toks(out), out_mask=mask) == []
    with pytest.raises(ValueError, match="out_mask"):
        m.near_spans(toks(out), out_mask=np.zeros(3, dtype=bool))


def test_unrelated_synthetic_texts_share_no_span() -> None:
    rng = np.random.default_rng(8)
    work = words_from(rng, 5000, prefix="w")
    out = words_from(rng, 3000, prefix="o")
    m = WorkMatcher(toks(work))
    assert m.near_spans(toks(out)) == []
    assert m.exact_spans(toks(out)) == []


WORK_PARAGRAPH = """
The old lighthouse keeper climbed the spiral stairs every evening at dusk, counting each of the
one hundred and twelve steps aloud as his father had taught him. At the top he trimmed the wick,
polished the great lens with a square of chamois, and looked out over the grey water for any sign
of the fishing boats that were still out past the point. When the wind came from the north the
whole tower hummed like a struck bell, and on those nights he did not sleep at all, but sat by the
lamp with a mug of tea going cold in his hands and listened to the sea working at the rocks below.
In the morning he would write the weather in the log in his small careful hand, and then walk the
two miles into the village for bread, and the people he passed would nod to him and say nothing.
"""

OUTPUT_PARAGRAPH = """
I am not sure that the best way to learn a language is to study its grammar first. Most of the
people I know who speak a second language well learned it by living in the country for a year or
two, by making mistakes in shops and at the post office, and by listening to the radio in the
evening when they were too tired to do anything else. The grammar came later, if it came at all,
and it was usually a way of putting names to things they already knew how to do. At the end of
the day what matters is whether you can ask for what you need and understand the answer, and the
rest is a question of time and of being willing to sound a little foolish for a while.
"""


def test_unrelated_english_paragraphs_no_long_span() -> None:
    work = tokenize(WORK_PARAGRAPH)
    out = tokenize(OUTPUT_PARAGRAPH)
    m = WorkMatcher(work)
    assert all(s.words < 12 for s in m.near_spans(out))
    assert all(s.words < 12 for s in m.exact_spans(out))
    # ... while a sentence of the work, re-punctuated with curly quotes and a dash, is found.
    quote = ("\u201cWhen the wind came from the north, the whole tower hummed like a struck "
             "bell\u2014and on those nights he did not sleep at all.\u201d")
    (s,) = m.near_spans(tokenize(OUTPUT_PARAGRAPH[:200] + quote + OUTPUT_PARAGRAPH[200:]))
    assert s.words == 25 and s.out_words == 25 and s.verbatim


def test_similarity_threshold_validation() -> None:
    m = WorkMatcher(toks(make_work(9, 100)))
    with pytest.raises(ValueError):
        m.near_spans(toks(["a"]), near_exact=0.0)
    with pytest.raises(ValueError):
        WorkMatcher(toks(["a"]), k=0)
    assert m.near_spans(toks([])) == [] and m.exact_spans(toks(["a", "b"])) == []


# --- properties ---------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(12, 80),
       n_work=st.integers(200, 1500), n_out=st.integers(0, 400), data=st.data())
def test_property_verbatim_found_with_right_offsets(seed: int, length: int, n_work: int,
                                                    n_out: int, data: st.DataObject) -> None:
    rng = np.random.default_rng(seed)
    work = words_from(rng, n_work, vocab=3000)
    filler = words_from(rng, n_out, vocab=3000, prefix="q")
    ws = data.draw(st.integers(0, n_work - length))
    pos = data.draw(st.integers(0, n_out))
    out = filler[:pos] + work[ws:ws + length] + filler[pos:]
    m = WorkMatcher(toks(work))
    spans = m.near_spans(toks(out))
    assert any((s.out_start, s.out_end, s.work_start, s.work_end)
               == (pos, pos + length, ws, ws + length) and s.verbatim for s in spans)
    for s in spans:
        check_span(s, len(out), len(work))
    assert any((s.out_start, s.out_end) == (pos, pos + length)
               for s in m.exact_spans(toks(out)))


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(30, 120), data=st.data())
def test_property_near_verbatim_found(seed: int, length: int, data: st.DataObject) -> None:
    """Up to 10% word edits (substitutions, insertions, deletions) at random positions."""
    rng = np.random.default_rng(seed)
    work = words_from(rng, 1500, vocab=3000)
    ws = data.draw(st.integers(0, len(work) - length))
    n_edits = data.draw(st.integers(1, length // 10))
    where = sorted(data.draw(st.lists(st.integers(0, length - 1), min_size=n_edits,
                                      max_size=n_edits, unique=True)), reverse=True)
    kinds = data.draw(st.lists(st.sampled_from(["sub", "ins", "del"]), min_size=n_edits,
                               max_size=n_edits))
    passage: list[str] = list(work[ws:ws + length])
    edited: set[int] = set()  # work positions touched by an edit
    origin: list[int | None] = list(range(ws, ws + length))
    for i, kind in zip(where, kinds, strict=True):
        edited.add(ws + i)
        if kind == "sub":
            passage[i], origin[i] = f"sub{i}", None
        elif kind == "ins":
            passage.insert(i, f"ins{i}")
            origin.insert(i, None)
        else:
            del passage[i]
            del origin[i]
    pre, post = words_from(rng, 50, prefix="q"), words_from(rng, 50, prefix="r")
    out = pre + passage + post
    m = WorkMatcher(toks(work))
    spans = m.near_spans(toks(out))
    assert spans, "planted passage not found"
    for s in spans:
        check_span(s, len(out), len(work))
        assert s.similarity >= 0.9
        assert len(pre) <= s.out_start and s.out_end <= len(pre) + len(passage)
        assert ws <= s.work_start and s.work_end <= ws + length
    # Every run of >= k unedited words is credited ...
    matched = set(np.concatenate([s.matched_work_positions() for s in spans]).tolist())
    run: list[int] = []
    for w in [*range(ws, ws + length), None]:
        if w is not None and w not in edited:
            run.append(w)
            continue
        if len(run) >= m.k:
            assert set(run) <= matched
        run = []
    # ... and when the edits are at least k+1 words apart and off the edges, as one span.
    gaps = np.diff(sorted(where))
    if min(where) >= m.k and max(where) < length - m.k and (len(where) < 2 or gaps.min() > m.k):
        assert len(spans) == 1
        s = spans[0]
        assert (s.out_start, s.out_end) == (len(pre), len(pre) + len(passage))
        assert (s.work_start, s.work_end) == (ws, ws + length)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(2, 6))
def test_may_seed_says_false_exactly_where_neither_search_finds_a_span(seed: int,
                                                                       k: int) -> None:
    """The batch test of an analysis' outputs (WorkMatcher.may_seed): an output it clears
    has no exact and no near-verbatim span, with or without a mask; one it flags has an
    exact span (64-bit hashes: a collision is not expected in a test)."""
    rng = np.random.default_rng(seed)
    work = words_from(rng, 300, vocab=40)
    m = WorkMatcher(toks(work), k=k)
    outs: list[Tokens] = []
    for _ in range(int(rng.integers(1, 10))):
        kind = int(rng.integers(0, 4))
        n = int(rng.integers(0, 30))
        if kind == 0:  # the work's vocabulary, shuffled: shared k-grams by chance, or none
            words = words_from(rng, n, vocab=40)
        elif kind == 1:  # a passage of the work, with an edit
            a = int(rng.integers(0, len(work) - n)) if n < len(work) else 0
            words = list(work[a:a + n])
            if words:
                words[int(rng.integers(0, len(words)))] = "unseenword"
        elif kind == 2:  # no word of the work
            words = words_from(rng, n, prefix="q")
        else:  # shorter than k, from the work
            a = int(rng.integers(0, len(work) - k))
            words = list(work[a:a + int(rng.integers(0, k))])
        outs.append(toks(words))
    got = m.may_seed(outs)
    assert len(got) == len(outs)
    for out, may in zip(outs, got, strict=True):
        assert may == bool(m.exact_spans(out))
        if not may:
            assert m.near_spans(out) == []
            mask = rng.random(len(out)) < 0.3
            assert m.near_spans(out, out_mask=mask) == [] == m.exact_spans(out, mask)


def test_may_seed_does_not_join_neighbouring_outputs() -> None:
    work = "alpha bravo charlie delta echo foxtrot golf hotel".split()
    m = WorkMatcher(toks(work), k=5)
    # The two outputs together hold the work's first 5-gram; neither does alone.
    outs = [toks(["alpha", "bravo", "charlie"]), toks(["delta", "echo"]), toks([]),
            toks(["charlie", "delta", "echo", "foxtrot", "golf"]), toks(["golf"])]
    assert m.may_seed(outs) == [False, False, False, True, False]
    assert m.exact_spans(toks(["alpha", "bravo", "charlie", "delta", "echo"]))
    assert m.may_seed([]) == []
    assert WorkMatcher(toks(["alpha"]), k=5).may_seed(outs[:2]) == [False, False]


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 6), vocab=st.sampled_from([3, 12, 200]))
def test_short_queries_find_the_same_maximal_matches_as_the_array_path(
        seed: int, k: int, vocab: int) -> None:
    """WorkMatcher._mems_small (plain Python, for short outputs) against the array path on
    the same query: repetitive works and queries (many seeds per k-gram, several diagonals),
    masked and unknown words, and the fallback when the seeds are too many."""
    from casekit.analysis import matcher as M

    rng = np.random.default_rng(seed)
    work = words_from(rng, int(rng.integers(k, 400)), vocab=vocab)
    m = WorkMatcher(toks(work), k=k)
    n = int(rng.integers(0, 120))
    a = int(rng.integers(0, len(work)))
    words = list(work[a:a + n]) + words_from(rng, int(rng.integers(0, 40)), vocab=vocab)
    words += ["unseen"] * int(rng.integers(0, 3)) + list(work[:int(rng.integers(0, 30))])
    out = toks(words)
    mask = rng.random(len(out)) < 0.1
    for qmask in (None, mask):
        q = m.query_ids(out, qmask)
        if len(q) < k:
            continue
        qh = m.index.query_hashes(q)
        small = m._mems_small(q, qh)
        old = M.SMALL_QUERY
        try:
            M.SMALL_QUERY = -1
            arrays = m._mems(q)
        finally:
            M.SMALL_QUERY = old
        if small is None:  # too many seeds: the array path's, taken by _mems itself
            assert int(m.index.counts(q).sum()) > M.SMALL_PAIRS * len(q)
            assert (m._mems(q) == arrays).all()
            continue
        assert small.dtype == arrays.dtype and small.shape[1:] == arrays.shape[1:] == (4,)
        assert small.tolist() == arrays.tolist()
        assert (m._mems(q) == arrays).all()


def test_the_hash_table_holds_every_position_of_a_repeated_k_gram() -> None:
    work = "a b c a b c a b c x y".split()
    m = WorkMatcher(toks(work), k=3)
    table = m.index.hash_table()
    ids = m.vocab.ids(["a", "b", "c"], add=False)
    assert table[int(kgram_hashes(ids, 3)[0])] == (0, 3, 6)
    assert sum(1 if type(v) is int else len(v) for v in table.values()) == len(m.index)
