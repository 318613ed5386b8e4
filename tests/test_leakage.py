"""Prompt-leakage discount: echo removal, position mask, m-gram trim, span discounting."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casekit.analysis.leakage import (
    MgramTrim,
    PositionMask,
    discount,
    echo_mask,
    mgram_positions,
    prompt_words,
    supplied_mask,
    supplied_positions,
    trim_inside,
)
from casekit.analysis.matcher import Span, WorkMatcher, opcodes_cost
from casekit.normalize import Tokens, tokenize

WORK = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was "
    "the age of foolishness, it was the epoch of belief, it was the epoch of incredulity, it "
    "was the season of Light, it was the season of Darkness, it was the spring of hope, it was "
    "the winter of despair, we had everything before us, we had nothing before us, we were all "
    "going direct to Heaven, we were all going direct the other way."
)


def test_echo_of_the_prompt_is_masked() -> None:
    prompt = "Continue the text: \u201cIt was the best of times, it was the worst of times\u201d"
    output = ("Sure! It was the best of times, it was the worst of times, it was the age of "
              "wisdom, and the best of it all.")
    out = tokenize(output)
    mask = echo_mask(out, [prompt])
    # "of times it was the" is a prompt 5-gram too, so the echo runs up to "age".
    echoed = out.words.index("it"), out.words.index("age")
    assert mask.tolist() == [i in range(echoed[0], echoed[1]) for i in range(len(out))]
    # "the best of" (3 words) also occurs in the prompt but is shorter than 5 words.
    assert not mask[-5:].any()
    assert echo_mask(out, [prompt], min_words=20).sum() == 0
    assert echo_mask(out, []).sum() == 0
    # Several prompt texts: a run never spans two of them.
    assert echo_mask(tokenize("a b c d e f"), ["a b c", "d e f"]).sum() == 0
    assert echo_mask(tokenize("x a b c d e y"), ["q", "a b c d e"]).tolist() == [
        False, True, True, True, True, True, False]


def test_supplied_mask_and_mgram_positions() -> None:
    work = tokenize(WORK)
    first = WORK.index(", we had everything")
    sm = supplied_mask(work, [(0, first)])
    n_prefix = len(tokenize(WORK[:first]))
    assert sm.tolist() == [i < n_prefix for i in range(len(work))]
    assert supplied_mask(work, []).sum() == 0
    # A range cutting into a word masks the whole word.
    cut = WORK.index("wisdom") + 2
    assert supplied_mask(work, [(cut, cut + 1)]).sum() == 1
    prompt = "Recite the passage that says we had everything before us, please."
    mg = mgram_positions(work, [prompt], m=5)
    i = work.words.index("everything") - 2  # "we had everything before us"
    assert mg.tolist() == [i <= j < i + 5 for j in range(len(work))]
    assert mgram_positions(work, ["we had everything before"], m=5).sum() == 0


def verbatim(o: int, w: int, n: int) -> Span:
    return Span(o, o + n, w, w + n, 1.0, True, (("equal", o, o + n, w, w + n),))


def test_span_wholly_in_supplied_ranges_is_discarded() -> None:
    mask = np.zeros(100, dtype=bool)
    mask[10:40] = True
    assert discount([verbatim(0, 10, 30)], mask) == []
    kept = discount([verbatim(0, 50, 30)], mask)
    assert kept == [verbatim(0, 50, 30)]


def test_partial_and_middle_masks_cut_spans() -> None:
    mask = np.zeros(200, dtype=bool)
    mask[100:110] = True
    r, s = discount([verbatim(5, 90, 40)], mask)  # work 90..130, 100..109 masked
    assert (r.out_start, r.out_end, r.work_start, r.work_end) == (5, 15, 90, 100)
    assert (s.out_start, s.out_end, s.work_start, s.work_end) == (25, 45, 110, 130)
    assert s.verbatim and s.opcodes == (("equal", 25, 45, 110, 130),)
    (s,) = discount([verbatim(5, 90, 40)], mask, k=11)
    assert (s.work_start, s.work_end) == (110, 130)
    mask[:] = False
    mask[120] = True
    a, b = discount([verbatim(0, 100, 50)], mask)
    assert (a.work_start, a.work_end, a.out_start, a.out_end) == (100, 120, 0, 20)
    assert (b.work_start, b.work_end, b.out_start, b.out_end) == (121, 150, 21, 50)
    # Pieces shorter than k are dropped.
    mask[:] = False
    mask[103] = True
    (c,) = discount([verbatim(0, 100, 20)], mask, k=5)
    assert (c.work_start, c.work_end) == (104, 120)
    with pytest.raises(ValueError, match="outside"):
        discount([verbatim(0, 190, 20)], mask)


def test_discount_recomputes_alignment_of_near_spans() -> None:
    # out: 0..9 equal, one substituted word, 11..29 equal, an extra output word, 31..50 equal.
    ops = (("equal", 0, 10, 0, 10), ("replace", 10, 11, 10, 11), ("equal", 11, 30, 11, 30),
           ("delete", 30, 31, 30, 30), ("equal", 31, 51, 30, 50))
    s = Span(0, 51, 0, 50, 1 - 2 / 51, False, ops)
    mask = np.zeros(60, dtype=bool)
    mask[5] = True
    a, b = discount([s], mask)
    assert (a.out_start, a.out_end, a.work_start, a.work_end) == (0, 5, 0, 5)
    assert a.verbatim
    assert (b.out_start, b.out_end, b.work_start, b.work_end) == (6, 51, 6, 50)
    assert b.opcodes == (("equal", 6, 10, 6, 10), ("replace", 10, 11, 10, 11),
                         ("equal", 11, 30, 11, 30), ("delete", 30, 31, 30, 30),
                         ("equal", 31, 51, 30, 50))
    assert b.similarity == pytest.approx(1 - 2 / 45)
    # Masking the substituted word's work position drops it and its output word too.
    mask[:] = False
    mask[10] = True
    a, b = discount([s], mask)
    assert (a.out_end, a.work_end) == (10, 10) and a.verbatim
    assert b.opcodes[0] == ("equal", 11, 30, 11, 30) and b.out_start == 11


WORK2 = (
    "The harbour was quiet when Marguerite walked down to the boats that morning. A thin mist "
    "lay over the water, and somewhere beyond the breakwater a bell buoy rang slowly. She had "
    "brought her father's old compass in her coat pocket, wrapped in a handkerchief, though she "
    "could not have said why. The fishermen nodded to her as she passed; one of them lifted a "
    "crate of mackerel onto the quay and wiped his hands on his trousers before speaking. "
    "\u201cYou\u2019re early,\u201d he said, and she smiled because it was true."
)


def test_end_to_end_continuation_prompt() -> None:
    """A continuation prompt quotes the work's opening; the model echoes part of it and
    continues verbatim. Only the continuation is credited."""
    work = tokenize(WORK2)
    cut = WORK2.index(" She had brought")
    prompt = "Continue this passage exactly: " + WORK2[:cut]
    echo_from = WORK2.index("A thin mist")
    output = "Of course. " + WORK2[echo_from:WORK2.index(" The fishermen")]
    out = tokenize(output)
    mask = echo_mask(out, [prompt])
    n_echo = len(tokenize(WORK2[echo_from:cut]))
    assert mask.tolist() == [2 <= i < n_echo + 2 for i in range(len(out))]
    m = WorkMatcher(work)
    spans = m.near_spans(out, out_mask=mask)
    assert [(s.out_start, s.out_end) for s in spans] == [(n_echo + 2, len(out))]
    # Without the echo mask the echoed words match too, and the position mask removes them.
    unmasked = m.near_spans(out)
    assert [(s.out_start, s.out_end) for s in unmasked] == [(2, len(out))]
    n_prefix = len(tokenize(WORK2[:cut]))
    work_mask = supplied_mask(work, [(0, cut)]) | mgram_positions(work, [prompt])
    assert work_mask.tolist() == [i < n_prefix for i in range(len(work))]
    for found in (spans, unmasked):
        (c,) = discount(found, work_mask)
        assert (c.work_start, c.out_start, c.out_end) == (n_prefix, n_echo + 2, len(out))
        assert work.words[c.work_start:c.work_start + 3] == ["she", "had", "brought"]
        assert c.verbatim


# --- property -----------------------------------------------------------------------------------


def _random_words(rng: np.random.Generator, n: int, prefix: str) -> list[str]:
    return [f"{prefix}{i}" for i in rng.integers(0, 4000, n)]


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), data=st.data())
def test_property_discount_never_credits_masked_positions(seed: int,
                                                          data: st.DataObject) -> None:
    rng = np.random.default_rng(seed)
    work = _random_words(rng, 800, "w")
    out: list[str] = []
    for _ in range(data.draw(st.integers(1, 4))):  # planted passages with random edits
        start = int(rng.integers(0, 700))
        passage = list(work[start:start + int(rng.integers(12, 100))])
        for _ in range(len(passage) // 12):
            i = int(rng.integers(0, len(passage)))
            kind = rng.integers(0, 3)
            if kind == 0:
                passage[i] = "sub"
            elif kind == 1:
                passage.insert(i, "ins")
            else:
                del passage[i]
        out += _random_words(rng, int(rng.integers(0, 30)), "o") + passage
    wt, ot = tokenize(" ".join(work)), tokenize(" ".join(out))
    k = data.draw(st.integers(1, 12))
    spans = WorkMatcher(wt).near_spans(ot) + WorkMatcher(wt).exact_spans(ot)
    mask = rng.random(len(wt)) < data.draw(st.floats(0.0, 0.5))
    if data.draw(st.booleans()):
        a = int(rng.integers(0, 800))
        mask[a:a + int(rng.integers(0, 200))] = True
    for s in discount(spans, mask, k=k):
        assert 0 <= s.out_start < s.out_end <= len(ot)
        assert 0 <= s.work_start < s.work_end <= len(wt)
        assert s.words >= k
        assert not mask[s.matched_work_positions()].any()
        assert not mask[s.work_start:s.work_end].any()
        assert s.opcodes[0][0] == "equal" and s.opcodes[-1][0] == "equal"
        assert (s.opcodes[0][1], s.opcodes[0][3]) == (s.out_start, s.work_start)
        assert (s.opcodes[-1][2], s.opcodes[-1][4]) == (s.out_end, s.work_end)
        for x, y in zip(s.opcodes, s.opcodes[1:], strict=False):
            assert x[2] == y[1] and x[4] == y[3]
        lo, lw = s.out_end - s.out_start, s.work_end - s.work_start
        assert s.similarity == pytest.approx(1 - opcodes_cost(s.opcodes) / max(lo, lw))
        # Each credited pair of words was aligned as equal by an original span.
        for tag, i1, i2, j1, j2 in s.opcodes:
            if tag == "equal":
                assert ot.words[i1:i2] == wt.words[j1:j2]


# --- the per-attempt (sparse) forms against their definitions -----------------------------------


def _brute_mgram(work: list[str], prompts: list[list[str]], m: int) -> np.ndarray:
    """Step 4 by its definition: a work word is trimmed when a work m-gram holding it occurs
    contiguously in a prompt."""
    grams = {tuple(p[i:i + m]) for p in prompts for i in range(len(p) - m + 1)}
    hit = np.zeros(len(work), dtype=bool)
    for i in range(len(work) - m + 1):
        if tuple(work[i:i + m]) in grams:
            hit[i:i + m] = True
    return hit


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), m=st.integers(1, 7), n_prompts=st.integers(0, 4))
def test_property_mgram_trim_looks_up_the_prompt_in_the_work(seed: int, m: int,
                                                             n_prompts: int) -> None:
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(int(rng.integers(3, 30)))]  # small: many repeats
    work = [vocab[i] for i in rng.integers(0, len(vocab), int(rng.integers(0, 300)))]
    prompts: list[list[str]] = []
    for _ in range(n_prompts):
        if work and rng.random() < 0.7:  # a quoted stretch of the work, with noise around it
            a = int(rng.integers(0, len(work)))
            quoted = work[a:a + int(rng.integers(0, 20))]
        else:
            quoted = []
        prompts.append(_random_words(rng, int(rng.integers(0, 6)), "p") + quoted
                       + [vocab[i] for i in rng.integers(0, len(vocab), int(rng.integers(0, 8)))])
    wt = tokenize(" ".join(work))
    texts = [" ".join(p) for p in prompts]
    expect = _brute_mgram(wt.words, prompt_words(texts, wt.profile), m)
    if len(wt) >= m:
        got = MgramTrim.for_tokens(wt, m).positions(prompt_words(texts, wt.profile))
        assert np.array_equal(got.to_bool(len(wt)), expect)
        assert len(got) == int(expect.sum())
    assert np.array_equal(mgram_positions(wt, texts, m=m), expect)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_ranges=st.integers(0, 6))
def test_property_supplied_positions_equal_the_dense_intersection(seed: int,
                                                                  n_ranges: int) -> None:
    rng = np.random.default_rng(seed)
    text = " ".join(_random_words(rng, int(rng.integers(0, 80)), "x"))
    text = text.replace("x1", "\u00bd x1")  # NFKC expansions: tokens that share a raw range
    wt = tokenize(text)
    ranges = [(int(a), int(a + rng.integers(-3, 40))) for a in
              rng.integers(-5, len(text) + 5, n_ranges)]
    got = supplied_positions(wt, ranges)
    assert np.array_equal(got.to_bool(len(wt)), supplied_mask(wt, ranges))


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_property_position_mask_is_the_set_it_describes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 120))
    a = rng.random(n) < rng.random()
    b = np.zeros(n, dtype=bool)
    starts = rng.integers(0, n, int(rng.integers(0, 6)))
    ends = starts + rng.integers(-2, 15, len(starts))
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        b[s:max(s, min(e, n))] = True
    ma = PositionMask.from_bool(a)
    mb = PositionMask.from_runs(starts, np.minimum(ends, n))
    assert np.array_equal(ma.to_bool(n), a) and np.array_equal(mb.to_bool(n), b)
    union = ma | mb
    assert np.array_equal(union.to_bool(n), a | b)
    assert len(union) == int((a | b).sum())
    assert union == PositionMask.from_bool(a | b)  # canonical: merged, sorted, no adjacency
    probe = np.arange(-3, n + 3)
    inside = (probe >= 0) & (probe < n)
    assert np.array_equal(union.contains(probe)[inside], (a | b)[probe[inside]])
    assert not union.contains(probe)[~inside].any()
    for lo in range(0, n, 7):
        for hi in (lo, lo + 1, lo + 9):
            assert union.any_in(lo, hi) == bool((a | b)[lo:hi].any())


def test_discount_takes_the_sparse_mask_as_the_dense_one() -> None:
    rng = np.random.default_rng(7)
    work = _random_words(rng, 600, "w")
    out = work[100:220] + ["o1", "o2"] + work[300:380]
    wt, ot = tokenize(" ".join(work)), tokenize(" ".join(out))
    spans = WorkMatcher(wt).near_spans(ot)
    dense = np.zeros(len(wt), dtype=bool)
    dense[150:160] = dense[330:333] = dense[379] = True
    sparse = PositionMask.from_bool(dense)
    assert discount(spans, sparse, k=5, work_words=len(wt)) == discount(spans, dense, k=5)
    assert len(discount(spans, dense, k=5)) == 4  # each span cut once, the 379 cut trims one
    with pytest.raises(ValueError, match="outside the work mask"):
        discount(spans, sparse, work_words=200)


# --- [Liu26] instruction trimming as the reference script does it (issue 17, defect 1) ---------


def _reference_trim(book: list[str], instr: list[str], intervals: list[tuple[int, int]],
                    k: int, m: int) -> set[int]:
    """Positions covered after trimming, written from the reference's description: per matched
    interval, remove each book m-gram lying wholly inside it that occurs in the instruction,
    keep the pieces of >= k words."""
    grams = {tuple(instr[i:i + m]) for i in range(len(instr) - m + 1)}
    covered: set[int] = set()
    for s, e in intervals:
        removed = [False] * (e - s)
        for i in range(s, e - m + 1):
            if tuple(book[i:i + m]) in grams:
                for t in range(i, i + m):
                    removed[t - s] = True
        run: list[int] = []
        for t in range(s, e + 1):
            if t < e and not removed[t - s]:
                run.append(t)
                continue
            if len(run) >= k:
                covered.update(run)
            run = []
    return covered


def test_liu_trim_removes_only_instruction_mgrams_wholly_inside_the_span() -> None:
    # The synthetic case: a 100-word book, the instruction holds words 8-12, the
    # generation words 10-40. The instruction's m-gram straddles the span's start, so the
    # reference removes nothing: 31 of 100 words (casekit's old trim gave 28).
    book = [f"w{i}" for i in range(100)]
    trim = MgramTrim.for_tokens(Tokens(book, np.arange(100), np.arange(100) + 1, "words"), 5)
    starts = trim.starts([book[8:13]])
    assert starts.tolist() == [8]
    pieces = trim_inside([(10, 41)], starts, 5, 5)
    assert sum(e - s for s, e in pieces) == 31
    # At the edge: an instruction m-gram wholly inside the span, flush with its start.
    pieces = trim_inside([(8, 41)], starts, 5, 5)
    assert pieces == [(13, 41)]
    # Flush with its end; and a piece shorter than k dropped.
    assert trim_inside([(0, 13)], starts, 5, 5) == [(0, 8)]
    assert trim_inside([(4, 13)], starts, 5, 5) == []


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 6), st.integers(1, 12))
def test_property_liu_trim_equals_the_reference(seed: int, vocab: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    m = 5
    book = [f"v{x}" for x in rng.integers(0, vocab, 120)]
    lo = int(rng.integers(0, 100))
    instr = book[lo:lo + int(rng.integers(0, 20))] + [f"v{x}" for x in rng.integers(0, vocab, 8)]
    intervals = []
    for _ in range(int(rng.integers(1, 4))):
        s = int(rng.integers(0, 110))
        intervals.append((s, min(120, s + int(rng.integers(1, 40)))))
    trim = MgramTrim.for_tokens(Tokens(book, np.arange(120), np.arange(120) + 1, "words"), m)
    got: set[int] = set()
    for s, e in trim_inside(intervals, trim.starts([instr]), m, k):
        assert e - s >= k
        got.update(range(s, e))
    assert got == _reference_trim(book, instr, intervals, k, m)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 100), st.integers(0, 60)), max_size=6),
       st.lists(st.integers(0, 120), max_size=12), st.integers(1, 6), st.integers(1, 8),
       st.integers(0, 40))
def test_property_trim_pieces_for_a_larger_k_are_the_longer_pieces(
        raw: list[tuple[int, int]], starts: list[int], m: int, k0: int, more: int) -> None:
    # The analysis trims once with the smallest BMC k and keeps, for each larger k, the
    # pieces of >= k words (casekit.analysis.analyze): the same as trimming for that k.
    intervals = [(s, s + n) for s, n in raw]
    mg = np.unique(np.array(starts, dtype=np.int64))
    k = k0 + more
    once = trim_inside([iv for iv in intervals if iv[1] - iv[0] >= k0], mg, m, k0)
    assert (trim_inside([iv for iv in intervals if iv[1] - iv[0] >= k], mg, m, k)
            == [(s, e) for s, e in once if e - s >= k])


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 5), st.integers(1, 7))
def test_property_trims_inside_windows_equal_the_whole_work_lookup(seed: int, vocab: int,
                                                                   m: int) -> None:
    # The analysis computes the prompt trims only inside the spans' work ranges
    # (starts_in / positions_in): there they must be exactly the whole-work lookup's, with
    # repeated phrases (a small vocabulary), unknown prompt words, several prompts, windows
    # past either end of the work and works shorter than m.
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 80))
    book = [f"v{x}" for x in rng.integers(0, vocab, n)]
    trim = MgramTrim.for_tokens(Tokens(book, np.arange(n), np.arange(n) + 1, "words"), m)
    prompts = []
    for _ in range(int(rng.integers(0, 3))):
        lo = int(rng.integers(0, max(1, n)))
        words = book[lo:lo + int(rng.integers(0, 15))]
        words += [f"v{x}" for x in rng.integers(0, vocab + 1, int(rng.integers(0, 8)))]
        if rng.random() < 0.5:  # an unknown word inside the prompt
            words.insert(int(rng.integers(0, len(words) + 1)), "unknown")
        prompts.append(words)
    windows = [(int(a), int(a) + int(rng.integers(0, 30)))
               for a in rng.integers(-10, n + 10, int(rng.integers(0, 5)))]
    grams = trim.grams(prompts)
    full = trim.starts(prompts)
    inside = [s for s in full.tolist() if any(lo <= s < hi for lo, hi in windows)]
    assert trim.starts_in(grams, windows).tolist() == inside
    whole = trim.positions(prompts)
    part = trim.positions_in(grams, windows)
    for lo, hi in windows:
        for p in range(max(0, lo), min(n, hi)):
            assert part.any_in(p, p + 1) == whole.any_in(p, p + 1)
        assert np.array_equal(part.contains(np.arange(max(0, lo), max(0, min(n, hi)))),
                              whole.contains(np.arange(max(0, lo), max(0, min(n, hi)))))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from("abcd"), max_size=40),
       st.lists(st.lists(st.sampled_from("abcde"), max_size=25), max_size=3),
       st.integers(1, 6))
def test_property_echo_set_path_equals_the_array_path(words: list[str],
                                                      prompts: list[list[str]], m: int) -> None:
    # Short texts take a set of word tuples, long ones the k-gram arrays: the same mask (no
    # m-gram across two prompts, an output word unknown to the prompts never matches).
    from casekit.analysis import leakage

    small = leakage._echo_hits(words, prompts, m)
    old = leakage._ECHO_SMALL
    try:
        leakage._ECHO_SMALL = -1
        arrays = leakage._echo_hits(words, prompts, m)
    finally:
        leakage._ECHO_SMALL = old
    assert small.dtype == arrays.dtype == bool
    assert small.tolist() == arrays.tolist()
