"""The matcher's own validation, measured at report time on the run's works (issue 16 item 7).

For each work, :data:`PASSAGES` passages are planted, each in its own synthetic output between
two runs of filler, and the matcher is run on those outputs exactly as the analysis runs it on a
model's output: the work's :class:`~casekit.analysis.matcher.WorkMatcher` (the same k-gram
index, loaded from the index cache), ``near_spans`` with the case's ``near_exact``, and the
work's reporting threshold (``min_span_words``, scaled for a CJK or short work as the analysis
scales it). What is measured:

- **recall**: the share of planted passages for which the matcher reports a credited span
  (>= the reporting threshold) aligned with the planted place of the work;
- **precision**: the share of credited spans the matcher reports that are planted passages
  (a span anywhere else, e.g. aligned by chance inside the filler, is a false positive).

Each passage is between ``min_span_words + 5`` and ``3 x min_span_words`` words of the work
(at most the whole work; no planting at all when the work is shorter than the threshold), from a
seeded position, with one edit per :data:`EDIT_EVERY` words, at least one (a substitution, a
deletion or an inserted word, in turn), so that it is near-verbatim (similarity about 0.93) as
model copies are. The filler is the work's
own words drawn at random (the same vocabulary, no order): chance alignments of common words
are the false positives it can provoke. Everything is seeded from the ledger head hash and the
work's id, so ``casekit verify`` re-renders the same figures. What it does not exercise: the
prompt-echo and prompt m-gram discounts (no prompt is involved), and tokenization of texts
unlike the work's.

Cost: PASSAGES outputs of a few hundred words per work, whatever the number of attempts.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from casekit.analysis.matcher import WorkMatcher
from casekit.case import Thresholds
from casekit.normalize import tokenize
from casekit.works import Work, work_thresholds

log = logging.getLogger(__name__)

PASSAGES = 20
"""Passages planted per work."""
EDIT_EVERY = 15
"""One edit per this many words of a passage (similarity about 1 - 1/EDIT_EVERY)."""
LONGER = 5
"""The shortest passage is this many words over the reporting threshold."""
FILLER_WORDS = (40, 120)
"""Words of filler before and after each passage (drawn uniformly in this range)."""
EDIT_KINDS = ("substitute", "delete", "insert")


@dataclass(frozen=True)
class WorkValidation:
    work_id: str
    planted: int
    """Passages planted (0: the work is shorter than its reporting threshold)."""
    shortest: int
    """Words of the shortest passage planted (the longest is ``longest``)."""
    longest: int
    edits: int
    """Edits planted in all the passages together."""
    words: int
    """Words planted in all the passages together (before the edits)."""
    min_span: int
    found: int
    """Planted passages the matcher reported (recall's numerator)."""
    spans: int
    """Credited spans the matcher reported in the outputs."""
    true_spans: int
    """Of those, spans on a planted passage (precision's numerator)."""


@dataclass(frozen=True)
class Validation:
    seed: str
    """SHA-256 of the ledger head hash the positions and edits are drawn from (hex, 16)."""
    works: list[WorkValidation]

    @property
    def planted(self) -> int:
        return sum(w.planted for w in self.works)

    @property
    def found(self) -> int:
        return sum(w.found for w in self.works)

    @property
    def spans(self) -> int:
        return sum(w.spans for w in self.works)

    @property
    def true_spans(self) -> int:
        return sum(w.true_spans for w in self.works)


def _rng(head_hash: str, work_id: str) -> random.Random:
    digest = hashlib.sha256(f"casekit-validation/1:{head_hash}:{work_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _edit(words: list[str], n_edits: int, pool: Sequence[str], rng: random.Random) -> list[str]:
    """``words`` with ``n_edits`` edits at distinct interior positions, spread over the passage
    (one per segment of EDIT_EVERY words), kinds in turn."""
    out = list(words)
    seg = max(1, len(words) // max(1, n_edits))
    # Right to left, so earlier positions stay valid after deletions and insertions.
    for e in reversed(range(n_edits)):
        lo, hi = e * seg + 1, min(len(out) - 2, (e + 1) * seg - 1)
        if hi < lo:
            continue
        pos = rng.randint(lo, hi)
        kind = EDIT_KINDS[e % len(EDIT_KINDS)]
        if kind == "substitute":
            out[pos] = rng.choice(pool)
        elif kind == "delete":
            del out[pos]
        else:
            out.insert(pos, rng.choice(pool))
    return out


def validate_work(work: Work, th: Thresholds, head_hash: str,
                  matcher: WorkMatcher | None = None) -> WorkValidation:
    """Plant PASSAGES passages of ``work`` into filler and measure the matcher on them."""
    wth, _rule = work_thresholds(th, work)
    min_span = wth.min_span_words
    toks = work.tokens
    n = len(toks)
    lo, hi = min(min_span + LONGER, n), min(3 * min_span, n)
    if n < min_span:
        return WorkValidation(work.id, 0, 0, 0, 0, 0, min_span, 0, 0, 0)
    if matcher is None:
        matcher = WorkMatcher.for_work(work, work.match_profile, th.seed_k)
    rng = _rng(head_hash, work.id)
    raw = work.raw
    surface = [raw[int(s):int(e)] for s, e in zip(toks.starts, toks.ends, strict=True)]
    sep = "" if work.cjk else " "
    found = spans_n = true_n = edits_n = words_n = 0
    shortest, longest = hi, lo
    for _ in range(PASSAGES):
        length = rng.randint(lo, hi)
        shortest, longest = min(shortest, length), max(longest, length)
        edits = max(1, length // EDIT_EVERY)
        edits_n += edits
        words_n += length
        start = rng.randint(0, n - length)
        passage = _edit(surface[start:start + length], edits, surface, rng)
        before = [rng.choice(surface) for _ in range(rng.randint(*FILLER_WORDS))]
        after = [rng.choice(surface) for _ in range(rng.randint(*FILLER_WORDS))]
        head = sep.join(before) + sep
        body = sep.join(passage)
        text = head + body + sep + sep.join(after)
        out = tokenize(text, work.match_profile)
        c0, c1 = len(head), len(head) + len(body)
        o_lo = int((out.starts < c0).sum())
        o_hi = int((out.starts < c1).sum())
        credited = [s for s in matcher.near_spans(out, near_exact=wth.near_exact)
                    if s.similarity >= wth.near_exact and s.words >= min_span]
        planted = [s for s in credited
                   if s.out_start < o_hi and s.out_end > o_lo
                   and s.work_start < start + length and s.work_end > start]
        spans_n += len(credited)
        true_n += len(planted)
        found += bool(planted)
    return WorkValidation(work.id, PASSAGES, shortest, longest, edits_n, words_n, min_span, found,
                          spans_n, true_n)


def validate_matcher(works: Sequence[Work], th: Thresholds, head_hash: str,
                     matcher_for: Callable[[Work], WorkMatcher] | None = None) -> Validation:
    """The matcher's recall and precision on planted passages of each work (in the order
    given), seeded from the ledger head hash."""
    results = [validate_work(w, th, head_hash, matcher_for(w) if matcher_for else None)
               for w in works]
    seed = hashlib.sha256(f"casekit-validation/1:{head_hash}".encode()).hexdigest()[:16]
    return Validation(seed=seed, works=results)
