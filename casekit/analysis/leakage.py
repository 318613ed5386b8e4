"""Prompt-leakage discount (measurement.md section 3).

Text the tester supplied (system prompt, user prompt, prefill, seeds, summaries) must never be
credited as the model's recall:

- step 2, :func:`echo_mask`: output words inside a run of >= 5 words that also occurs in a
  prompt are masked before matching;
- step 3, :func:`supplied_mask`: work words whose text was given in the prompt are never
  credited;
- step 4, :func:`mgram_positions` [Liu26 Alg. 1]: work words inside a work m-gram (m = 5) that
  occurs in a prompt are never credited;
- :func:`discount` removes the never-credited work positions from spans and keeps the
  remaining sub-spans of >= k work words, with their alignment, out range and similarity
  recomputed from the original alignment.

Step 5 (the model's own earlier turns are not leakage) is the caller's business: pass only
tester-supplied texts here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from casekit.analysis.index import KgramIndex, Vocab
from casekit.analysis.matcher import Opcode, Span, similarity_from_cost
from casekit.normalize import Tokens, intersecting, tokenize

log = logging.getLogger(__name__)

_TAGS = ("equal", "replace", "delete", "insert")


def _prompt_hits(words: Sequence[str], prompt_texts: Sequence[str], m: int,
                 profile: str) -> np.ndarray:
    """Bool over ``words``: True where the word lies in an m-gram that occurs contiguously in
    one of the prompt texts (tokenized with ``profile``)."""
    n = len(words)
    hit = np.zeros(n, dtype=bool)
    if m < 1:
        raise ValueError(f"run length must be >= 1, got {m}")
    if n < m or not prompt_texts:
        return hit
    vocab = Vocab()
    parts: list[np.ndarray] = []
    for text in prompt_texts:
        if text:
            parts.append(vocab.ids(tokenize(text, profile).words, add=True))
    sep = np.array([len(vocab)], dtype=np.int64)  # an id no word has: m-grams never span prompts
    ids = np.concatenate([x for p in parts for x in (p, sep)]) if parts else sep
    if len(ids) <= m:
        return hit
    index = KgramIndex(ids, m)
    qpos, _ = index.lookup(vocab.ids(words, add=False))
    if len(qpos):
        qpos = np.unique(qpos)
        depth = np.zeros(n + 1, dtype=np.int64)
        np.add.at(depth, qpos, 1)
        np.add.at(depth, qpos + m, -1)
        hit = np.cumsum(depth[:n]) > 0
    return hit


def echo_mask(out: Tokens, prompt_texts: Sequence[str], min_words: int = 5,
              profile: str = "light-words") -> np.ndarray:
    """Bool over output words: True inside a run of >= ``min_words`` consecutive words that
    also occurs contiguously in a prompt text (step 2, echo removal)."""
    if profile != out.profile:
        log.warning("echo_mask: output tokenized with %r, prompts with %r", out.profile, profile)
    return _prompt_hits(out.words, prompt_texts, min_words, profile)


def mgram_positions(work: Tokens, prompt_texts: Sequence[str], m: int = 5) -> np.ndarray:
    """Bool over work words: True where the word belongs to a work m-gram occurring in a prompt
    text (step 4, [Liu26 Alg. 1]); prompts are tokenized with the work's profile."""
    return _prompt_hits(work.words, prompt_texts, m, work.profile)


def supplied_mask(work: Tokens, ranges: Sequence[tuple[int, int]]) -> np.ndarray:
    """Bool over work words: True where the word's raw char range intersects any of the raw
    char ranges ``[start, end)`` given in the prompt (step 3, position mask)."""
    return intersecting(work.starts, work.ends, ranges)


def _columns(span: Span) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The alignment as columns: output word (-1 for none), work word (-1), tag code."""
    outs: list[np.ndarray] = []
    works: list[np.ndarray] = []
    tags: list[np.ndarray] = []
    for tag, i1, i2, j1, j2 in span.opcodes:
        code = _TAGS.index(tag)
        if tag in ("equal", "replace"):
            if i2 - i1 != j2 - j1:
                raise ValueError(f"opcode {tag} with unequal sides in {span}")
            o, w = np.arange(i1, i2), np.arange(j1, j2)
        elif tag == "delete":
            o, w = np.arange(i1, i2), np.full(i2 - i1, -1)
        else:
            o, w = np.full(j2 - j1, -1), np.arange(j1, j2)
        outs.append(o)
        works.append(w)
        tags.append(np.full(len(o), code))
    if not outs:
        z = np.zeros(0, dtype=np.int64)
        return z, z.copy(), z.copy()
    return (np.concatenate(outs).astype(np.int64), np.concatenate(works).astype(np.int64),
            np.concatenate(tags).astype(np.int64))


def _sub_span(o: np.ndarray, w: np.ndarray, tag: np.ndarray) -> Span:
    """A span from a run of alignment columns (first and last columns are "equal")."""
    has_o, has_w = o >= 0, w >= 0
    out_start, work_start = int(o[has_o][0]), int(w[has_w][0])
    out_end, work_end = int(o[has_o][-1]) + 1, int(w[has_w][-1]) + 1
    cur_o = out_start + np.concatenate(([0], np.cumsum(has_o)))
    cur_w = work_start + np.concatenate(([0], np.cumsum(has_w)))
    change = np.flatnonzero(np.diff(tag)) + 1
    bounds = np.concatenate(([0], change, [len(tag)])).tolist()
    ops: list[Opcode] = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        ops.append((_TAGS[int(tag[a])], int(cur_o[a]), int(cur_o[b]),
                    int(cur_w[a]), int(cur_w[b])))
    cost = int((tag != 0).sum())
    lo, lw = out_end - out_start, work_end - work_start
    return Span(out_start, out_end, work_start, work_end, similarity_from_cost(cost, lo, lw),
                cost == 0 and lo == lw, tuple(ops))


def discount(spans: Sequence[Span], work_mask: np.ndarray, k: int = 5) -> list[Span]:
    """Remove never-credited work positions from spans (steps 3-4).

    ``work_mask``: bool over work words, True = never credit (the supplied-range position mask
    united with :func:`mgram_positions`). Each span is cut at its masked work words (and the
    output words aligned to them); each remaining piece is trimmed to start and end on matching
    words and kept if it covers >= ``k`` work words. Pieces keep the original alignment: their
    opcodes are its restriction, their similarity is recomputed from it
    (``1 - edits / max(out_words, work_words)``). Spans untouched by the mask are returned as
    they are (if >= ``k`` work words).
    """
    mask = np.asarray(work_mask, dtype=bool)
    result: list[Span] = []
    for s in spans:
        if s.work_start < 0 or s.work_end > len(mask) or s.out_start < 0:
            raise ValueError(f"span outside the work mask ({len(mask)} words): {s}")
        if not mask[s.work_start:s.work_end].any():
            if s.words >= k:
                result.append(s)
            continue
        o, w, tag = _columns(s)
        bad = np.zeros(len(w), dtype=bool)
        hw = w >= 0
        bad[hw] = mask[w[hw]]
        d = np.diff(np.concatenate(([0], (~bad).astype(np.int8), [0])))
        for a, b in zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(),
                        strict=True):
            eq = np.flatnonzero(tag[a:b] == 0)
            if len(eq) == 0:
                continue
            a2, b2 = a + int(eq[0]), a + int(eq[-1]) + 1
            piece = _sub_span(o[a2:b2], w[a2:b2], tag[a2:b2])
            if piece.words >= k:
                result.append(piece)
    return result
