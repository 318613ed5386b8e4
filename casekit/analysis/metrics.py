"""The metrics of measurement.md section 4, each under its own name and with its source.

Pure functions over word (or token) sequences, spans and masks; the analyzer feeds them and
the report prints each figure with the definition named here.

- :func:`discoverable_extraction` / :func:`discoverable_rate`: 50/50 discoverable extraction
  [Car23 Def. 3.1], exact and approximate (<= 10% edit distance) variants.
- :func:`spans_over_threshold`: spans > T words [Liu26], greedy non-overlapping, longest first.
- :func:`nv_recall`: near-verbatim recall [Ahm26 §3.3.1, Alg. 1], two-pass block merge.
- :func:`longest_block`, :func:`longest_regurgitated`: [Liu26]'s longest contiguous memorized
  block and longest contiguous regurgitated span.
- :func:`name_cloze_accuracy`: name-cloze accuracy with the majority-name baseline [Cha23].
- :func:`coverage_overlap`, :func:`rate_ratio`: model comparison [Liu26] (Jaccard overlap of
  coverage masks beside its random baseline; ratio of extraction rates, Katz interval).
"""

from __future__ import annotations

import bisect
import difflib
import math
import re
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from statistics import NormalDist
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from rapidfuzz.distance import Levenshtein

from casekit.normalize import tokenize
from casekit.stats import Rate, rate

CAR23_TOKENS = 50
"""Suffix length of the 50/50 discoverable extraction test [Car23]."""
CAR23_MAX_EDIT = 0.10
"""Largest normalized edit distance of the approximate variant (Gemini/Gemma reports)."""
LIU26_T = 20
"""Span-count threshold: spans strictly longer than T words [Liu26]."""
AHM26_PASSES: tuple[tuple[int, int, int], ...] = ((2, 1, 20), (10, 3, 100))
"""nv-recall passes (tau_gap, tau_align, minimum matched words) [Ahm26 Alg. 1]."""

WordRange = tuple[int, int]
"""Work word positions ``[start, end)``."""


class _M(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- 50/50 discoverable extraction [Car23 Def. 3.1] ------------------------------------------


class Discoverable(_M):
    """One window's 50/50 discoverable-extraction test [Car23 Def. 3.1]."""

    compared: int
    """Target tokens compared: ``min(n, len(target))``."""
    exact: bool
    """The output's first ``compared`` tokens equal the target's."""
    distance: int
    """Levenshtein distance (over tokens) between the output's and the target's first
    ``compared`` tokens (a shorter output counts its missing tokens as deletions)."""
    normalized_distance: float
    """``distance / compared``."""
    approximate: bool
    """``normalized_distance <= max_edit`` (10% by default)."""


def discoverable_extraction(target: Sequence[Hashable], output: Sequence[Hashable],
                            n: int = CAR23_TOKENS,
                            max_edit: float = CAR23_MAX_EDIT) -> Discoverable:
    """50/50 discoverable extraction of one window [Car23 Def. 3.1].

    Given the window's target continuation (the ``n`` tokens, or words, that follow the
    50-token prefix in the work) and the model's greedy output for that prefix:

    - exact: the output's first ``n`` tokens equal the target's first ``n``;
    - approximate: their token-level Levenshtein distance is <= ``max_edit * n``
      (normalized edit distance <= 10%, after the Gemini/Gemma reports).

    A target shorter than ``n`` is compared over its own length. Tokens are any hashable items
    (model token ids or strings, or words of one profile): the report names which.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0.0 <= max_edit < 1.0:
        raise ValueError(f"max_edit must be in [0, 1), got {max_edit}")
    m = min(n, len(target))
    if m == 0:
        raise ValueError("the target continuation is empty: nothing to compare")
    tgt, out = list(target[:m]), list(output[:m])
    dist = int(Levenshtein.distance(out, tgt))
    norm = dist / m
    return Discoverable(compared=m, exact=out == tgt, distance=dist, normalized_distance=norm,
                        approximate=norm <= max_edit + 1e-12)


def discoverable_rate(results: Iterable[Discoverable],
                      variant: Literal["exact", "approximate"]) -> Rate:
    """Extractable windows of all windows tried [Car23], with a Wilson (Clopper-Pearson at 0
    or n) interval. Windows of one excerpt are not independent: for an interval over excerpts
    use :func:`casekit.analysis.stats.bootstrap_rate`."""
    if variant not in ("exact", "approximate"):
        raise ValueError(f"variant must be 'exact' or 'approximate', got {variant!r}")
    rs = list(results)
    return rate(sum(1 for r in rs if getattr(r, variant)), len(rs))


# --- spans > T [Liu26] -------------------------------------------------------------------------


def clip_to_range(matches: Iterable[WordRange], excerpt: WordRange) -> list[WordRange]:
    """The parts of ``matches`` (work word ranges) inside ``excerpt``; empty parts dropped.

    Clipping a generation's maximal exact matches against the whole work to the excerpt it
    targeted gives its maximal exact matches against that excerpt ([Liu26]'s per-excerpt
    matches) in book positions.
    """
    lo, hi = excerpt
    out = []
    for s, e in matches:
        a, b = max(int(s), lo), min(int(e), hi)
        if b > a:
            out.append((a, b))
    return out


def spans_over_threshold(matches: Iterable[WordRange], t: int = LIU26_T, *,
                         suffixes: bool = True) -> list[WordRange]:
    """Spans > T words [Liu26], as their code counts them (``count_regurgitated_spans``).

    ``matches``: every generation's maximal exact matches (words profile) against its own
    excerpt, in book word positions (see :func:`clip_to_range`), pooled over the generations
    of a model and work. Candidates longer than ``t`` words are sorted by length (descending),
    then start, end and input order, and selected greedily when they do not overlap an
    already selected span. With ``suffixes`` (their code's behaviour) every start position
    inside a match is a candidate too, ``[s + i, e)`` while longer than ``t``: so a match
    overlapping a longer selected span can still contribute the part after it (never the
    part before it). Returns the selected spans sorted by start; the figure is their count.
    O(C log C) for C candidates (C is the matched words when ``suffixes``).
    """
    if t < 0:
        raise ValueError(f"t must be >= 0, got {t}")
    cands: list[tuple[int, int, int, int]] = []
    order = 0
    for s, e in matches:
        s, e = int(s), int(e)
        last = e - t - 1 if suffixes else s  # last start still giving a span longer than t
        for a in range(s, max(s, last) + 1):
            if e - a > t:
                cands.append((-(e - a), a, e, order))
                order += 1
    cands.sort()
    starts: list[int] = []
    selected: list[WordRange] = []
    for _, a, e, _ in cands:
        i = bisect.bisect_left(starts, a)
        if i > 0 and selected[i - 1][1] > a:
            continue
        if i < len(selected) and selected[i][0] < e:
            continue
        starts.insert(i, a)
        selected.insert(i, (a, e))
    return selected


# --- longest block / longest regurgitated span [Liu26] ----------------------------------------


def longest_block(mask: np.ndarray) -> tuple[int, int | None]:
    """Longest contiguous memorized block [Liu26]: the longest run of covered positions in a
    coverage mask (aggregated across attempts: a reconstruction measure). Returns
    ``(length, start)``, ``(0, None)`` for an empty mask; ties go to the earliest run."""
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return 0, None
    d = np.diff(np.concatenate(([0], m.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    i = int(np.argmax(ends - starts))
    return int(ends[i] - starts[i]), int(starts[i])


def longest_regurgitated(matches: Iterable[WordRange], excerpt: WordRange) -> int:
    """Longest contiguous regurgitated span [Liu26]: the longest exact match of one generation
    against its own excerpt, untrimmed (no leakage discount, no merging across generations).
    ``matches``: that generation's maximal exact matches against the work (words profile),
    clipped here to the excerpt. 0 when none."""
    return max((e - s for s, e in clip_to_range(matches, excerpt)), default=0)


# --- nv-recall [Ahm26 §3.3.1, Alg. 1] ---------------------------------------------------------


class NvBlock(_M):
    """A merged block: a book range and a generation range aligned by matching blocks."""

    book_start: int
    book_end: int
    gen_start: int
    gen_end: int
    matched: int
    """Words inside difflib matching blocks (gap words are not counted)."""


class NvRecall(_M):
    """Near-verbatim recall of a book by a generation [Ahm26]."""

    matched: int
    """Matched words of the blocks kept by the last pass."""
    book_words: int
    recall: float
    """``matched / book_words`` (0 for an empty book)."""
    blocks: list[NvBlock]


def merge_blocks(blocks: Sequence[NvBlock], tau_gap: int, tau_align: int) -> list[NvBlock]:
    """Merge consecutive blocks [Ahm26 Alg. 1] when the book gap and the generation gap
    between them satisfy ``max(gapB, gapG) <= tau_gap`` and ``|gapB - gapG| <= tau_align``;
    a merged block spans both and its matched count is the sum (gap words not counted)."""
    out: list[NvBlock] = []
    for b in blocks:
        if out:
            p = out[-1]
            gap_b, gap_g = b.book_start - p.book_end, b.gen_start - p.gen_end
            if gap_b < 0 or gap_g < 0:
                raise ValueError("blocks must be in order and disjoint on both sides")
            if max(gap_b, gap_g) <= tau_gap and abs(gap_b - gap_g) <= tau_align:
                out[-1] = NvBlock(book_start=p.book_start, book_end=b.book_end,
                                  gen_start=p.gen_start, gen_end=b.gen_end,
                                  matched=p.matched + b.matched)
                continue
        out.append(b)
    return out


def nv_recall_words(book: Sequence[str], generation: Sequence[str],
                    passes: Sequence[tuple[int, int, int]] = AHM26_PASSES) -> NvRecall:
    """nv-recall [Ahm26 §3.3.1, Alg. 1] over word lists (see :func:`nv_recall` for texts).

    1. Matching blocks of ``difflib.SequenceMatcher(None, book, generation,
       autojunk=False)``: monotone in both sequences, so text the generation reproduces out of
       order is not credited (only one order can align).
    2. For each pass ``(tau_gap, tau_align, min_words)``, in order (default (2, 1, 20) then
       (10, 3, 100)): merge consecutive blocks (:func:`merge_blocks`), keep merged blocks with
       >= ``min_words`` matched words. Pass 2 merges pass 1's survivors, so the words of
       blocks pass 1 dropped become gap.
    3. nv-recall = matched words of the surviving blocks / |book|.

    Complexity: difflib's longest-match recursion costs about O(|book| x |generation| x
    (share of repeated words)) in the worst case, quadratic on long texts (a whole novel
    against a long generation takes minutes); fine for excerpts and chapters.
    """
    sm = difflib.SequenceMatcher(None, list(book), list(generation), autojunk=False)
    blocks = [NvBlock(book_start=a, book_end=a + n, gen_start=b, gen_end=b + n, matched=n)
              for a, b, n in sm.get_matching_blocks() if n > 0]
    for tau_gap, tau_align, min_words in passes:
        blocks = [b for b in merge_blocks(blocks, tau_gap, tau_align) if b.matched >= min_words]
    matched = sum(b.matched for b in blocks)
    n = len(book)
    return NvRecall(matched=matched, book_words=n, recall=matched / n if n else 0.0,
                    blocks=blocks)


def masked_book(book: Sequence[str], masked: Iterable[tuple[int, int]]) -> list[str]:
    """The book's words with the word ranges ``[start, end)`` of ``masked`` replaced by
    placeholders that equal no word and no other placeholder (a NUL byte never survives
    normalization): the positions still count in |book| but can never be matched, so text the
    tester supplied (a session's seed) is never credited (measurement.md section 3)."""
    out = list(book)
    for a, b in masked:
        for i in range(max(0, a), min(len(out), b)):
            out[i] = f"\x00{i}"
    return out


def nv_recall(book_text: str, generation_text: str,
              passes: Sequence[tuple[int, int, int]] = AHM26_PASSES) -> NvRecall:
    """nv-recall [Ahm26 §3.3.1, Alg. 1] of raw texts: both are normalized with the ``light``
    profile [Ahm26 App. C.3] and split on whitespace, then :func:`nv_recall_words`."""
    return nv_recall_words(tokenize(book_text, "light").words,
                           tokenize(generation_text, "light").words, passes)


# --- name cloze [Cha23] ------------------------------------------------------------------------

NAME_TAG_RE = re.compile(r"<name>(.*?)</name>", re.IGNORECASE | re.DOTALL)


class NameCloze(_M):
    """Name-cloze accuracy beside the majority-name baseline [Cha23]."""

    accuracy: Rate
    """Answers whose extracted name equals the gold name (case-insensitive) of all."""
    majority_name: str | None
    """The most frequent gold name (lowercased; ties: alphabetical first)."""
    majority_baseline: Rate
    """Accuracy of always answering ``majority_name``."""


def extract_name(answer: str) -> str:
    """The name in a cloze answer [Cha23]: the text of the first ``<name>...</name>`` tag if
    there is one, else the whole answer; stripped of surrounding whitespace."""
    m = NAME_TAG_RE.search(answer)
    return (m.group(1) if m else answer).strip()


def name_cloze_correct(answer: str, gold: str) -> bool:
    """[Cha23]: case-insensitive exact match of the extracted, stripped answer and the gold."""
    return extract_name(answer).lower() == gold.strip().lower()


def name_cloze_accuracy(answers: Sequence[str], golds: Sequence[str]) -> NameCloze:
    """Name-cloze accuracy [Cha23] and the majority-name baseline: the accuracy of always
    answering the most frequent gold name (a model that knows the book's protagonist but
    not the passage scores this much)."""
    if len(answers) != len(golds):
        raise ValueError(f"{len(answers)} answers for {len(golds)} gold names")
    correct = sum(1 for a, g in zip(answers, golds, strict=True) if name_cloze_correct(a, g))
    counts = Counter(g.strip().lower() for g in golds)
    majority = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0] if counts else None
    return NameCloze(accuracy=rate(correct, len(golds)), majority_name=majority,
                     majority_baseline=rate(counts[majority] if majority else 0, len(golds)))


# --- model comparison [Liu26] -----------------------------------------------------------------


class CoverageOverlap(_M):
    """Overlap of two models' coverage masks over one work [Liu26]."""

    total: int
    a: int
    """Positions covered by model A."""
    b: int
    both: int
    either: int
    jaccard: float | None
    """``both / either``; None when neither model covers anything."""
    random_baseline: float | None
    """Expected Jaccard of independent random masks of the same densities:
    ``pa*pb / (pa + pb - pa*pb)``; None when both densities are 0."""


def jaccard_random_baseline(pa: float, pb: float) -> float | None:
    """[Liu26]: the Jaccard overlap expected if two coverage masks with densities ``pa`` and
    ``pb`` were independent, ``pa*pb / (pa + pb - pa*pb)`` (E|A and B| / E|A or B| per
    position). None when both are 0."""
    if not (0.0 <= pa <= 1.0 and 0.0 <= pb <= 1.0):
        raise ValueError("densities must be in [0, 1]")
    denom = pa + pb - pa * pb
    return None if denom == 0 else pa * pb / denom


def coverage_overlap(mask_a: np.ndarray, mask_b: np.ndarray) -> CoverageOverlap:
    """Jaccard overlap of two models' coverage masks of one work, beside its random baseline
    [Liu26]: well above the baseline, the models recall the same passages."""
    a, b = np.asarray(mask_a, dtype=bool), np.asarray(mask_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"masks of different lengths: {a.shape} and {b.shape}")
    n = int(a.size)
    na, nb = int(a.sum()), int(b.sum())
    both, either = int((a & b).sum()), int((a | b).sum())
    return CoverageOverlap(
        total=n, a=na, b=nb, both=both, either=either,
        jaccard=both / either if either else None,
        random_baseline=jaccard_random_baseline(na / n, nb / n) if n else None)


class RateRatio(_M):
    """Ratio of two extraction rates with a Katz log interval."""

    k1: int
    n1: int
    k2: int
    n2: int
    ratio: float | None
    """``(k1/n1) / (k2/n2)`` (from the corrected counts when ``corrected``); None when
    undefined (an empty denominator, or no success in either group)."""
    lo: float | None
    hi: float | None
    corrected: bool
    """A zero count: 0.5 was added to every cell (k + 0.5 of n + 1) before computing."""
    method: str


def rate_ratio(k1: int, n1: int, k2: int, n2: int, alpha: float = 0.05) -> RateRatio:
    """Ratio of two extraction rates, model 1 over model 2, with a (1 - alpha) interval by
    Katz's log method: ``ln RR +- z * sqrt(1/k1 - 1/n1 + 1/k2 - 1/n2)``, exponentiated
    (z = 1.96 at 95%). With a zero success count in one group, 0.5 is added to each cell of the
    2x2 table (k + 0.5 of n + 1: the usual correction) and ``corrected`` says so; with no
    success in either group the ratio is undefined (None). [Liu26] compares models this way."""
    for k, n in ((k1, n1), (k2, n2)):
        if n < 0 or not 0 <= k <= n:
            raise ValueError(f"need 0 <= k <= n, got {k} of {n}")
    method = "katz-log"
    if n1 == 0 or n2 == 0 or (k1 == 0 and k2 == 0):
        return RateRatio(k1=k1, n1=n1, k2=k2, n2=n2, ratio=None, lo=None, hi=None,
                         corrected=False, method=method)
    corrected = k1 == 0 or k2 == 0
    a, m, c, p = (k1 + 0.5, n1 + 1.0, k2 + 0.5, n2 + 1.0) if corrected else (k1, n1, k2, n2)
    rr = (a / m) / (c / p)
    se = math.sqrt(max(0.0, 1 / a - 1 / m + 1 / c - 1 / p))
    z = NormalDist().inv_cdf(1 - alpha / 2)
    return RateRatio(k1=k1, n1=n1, k2=k2, n2=n2, ratio=rr, lo=rr * math.exp(-z * se),
                     hi=rr * math.exp(z * se), corrected=corrected, method=method)
