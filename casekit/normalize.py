"""Normalization profiles and word tokenizers, with exact offset maps back to the raw text.

measurement.md section 1. Profiles:

- ``raw``: the text as ingested.
- ``light`` [Ahm26 App. C.3]: NFKC; curly quotes to ASCII; dash variants to an em dash; the
  ellipsis character and spaced ". . ." to "..."; ``_x_`` italics markers to ``x``; lowercase;
  a word hyphenated across a line break joined; whitespace runs collapsed to one space (and
  stripped at both ends). No stemming, no stop-word removal.
- ``words`` [Liu26]: on the raw text, tokens ``\\w+|[^\\w\\s]+`` (NLTK's wordpunct pattern),
  lowercased, keeping only tokens that contain ``[a-z0-9]``.
- ``light-words``: ``light``, then the ``words`` tokenizer and filter; every token maps back to
  the raw characters it came from (a word joined across a line break maps to both halves).

Every transformation keeps, for each normalized character, the raw range ``[start, end)`` it
came from, so an exhibit can always quote the raw text. The work is done with a few regex
passes over the (sparse) places that change plus numpy, never a per-character Python loop.
"""

from __future__ import annotations

import bisect
import functools
import logging
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from casekit import cjk
from casekit.charmaps import DASH_MAP, EM_DASH, QUOTE_MAP

log = logging.getLogger(__name__)

PROFILES = ("raw", "light", "words", "light-words")

# --- the light profile's character tables (casekit.charmaps) --------------------------------------

_CHAR_MAP = {**QUOTE_MAP, **DASH_MAP}
_CHAR_TABLE = str.maketrans(_CHAR_MAP)
_CHAR_MAP_RE = re.compile("[" + "".join(_CHAR_MAP) + "]")

_NONASCII_SEGMENT_RE = re.compile(r"[\x00-\x7f]?[^\x00-\x7f]+")
_DOUBLE_HYPHEN_RE = re.compile(r"--+")  # "--" (and longer runs) -> one em dash
_SPACED_ELLIPSIS_RE = re.compile(r"\.(?:[ \t]+\.){2,}")  # ". . ." -> "..."
_ELLIPSIS_GAP_RE = re.compile(r"[ \t]+")
#: ``_x_`` italics: an underscore not preceded by a word character, a non-blank start and end,
#: no underscore and no blank line inside, closed by an underscore not followed by a word char.
_ITALICS_RE = re.compile(r"_([^\s_](?:(?:[^_\n]|\n(?![ \t\r]*\n))*?[^\s_])?)_(?!\w)")
#: A word hyphenated across a line break: ``(\w)-\s*\n\s*(\w)`` joined; the word characters
#: are checked around the match so that consecutive joins ("a-\nb-\nc") all apply.
_HYPHEN_BREAK_RE = re.compile(r"-\s*\n\s*")
_WORD_CHAR_RE = re.compile(r"\w")
_ALNUM_RE = re.compile(r"[a-z0-9]")


_Mapped = tuple[str, np.ndarray, np.ndarray]
"""A text being normalized, with each char's raw source start and end."""


@dataclass(frozen=True)
class Normalized:
    """A normalized text and its exact map back to the raw text."""

    text: str
    """The normalized text."""
    offsets: np.ndarray
    """int64, ``len(text) + 1``: raw index where the source of normalized char ``i`` starts;
    ``offsets[len(text)] == len(raw)``; non-decreasing."""
    ends: np.ndarray
    """int64, ``len(text)``: raw index (exclusive) where the source of normalized char ``i``
    ends. Characters produced by one expansion (NFKC "ﬁ" -> "fi") share one source range."""

    def raw_span(self, i: int, j: int) -> tuple[int, int]:
        """Raw ``[start, end)`` whose characters produced ``text[i:j]``."""
        if j <= i:
            p = int(self.offsets[min(max(i, 0), len(self.text))])
            return p, p
        return int(self.offsets[i]), int(self.ends[j - 1])


@dataclass(frozen=True)
class Tokens:
    """Word tokens of a text under one profile, each with its raw character range."""

    words: list[str]
    """Normalized token strings."""
    starts: np.ndarray
    """int64 raw char start of each token."""
    ends: np.ndarray
    """int64 raw char end (exclusive): ``raw[starts[i]:ends[i]]`` is the token's source text."""
    profile: str
    """The profile that produced the tokens (one of PROFILES)."""

    def __len__(self) -> int:
        return len(self.words)

    def char_span(self, i: int, j: int) -> tuple[int, int]:
        """Raw ``[start, end)`` covering tokens ``i .. j-1`` (an empty range if ``j <= i``)."""
        n = len(self.words)
        if j <= i:
            if n == 0:
                return 0, 0
            p = int(self.starts[i]) if i < n else int(self.ends[n - 1])
            return p, p
        return int(self.starts[i]), int(self.ends[j - 1])


# --- code points and character classes ---------------------------------------------------------


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


def _from_codepoints(cps: np.ndarray) -> str:
    return np.ascontiguousarray(cps, dtype="<u4").tobytes().decode("utf-32-le", "surrogatepass")


def _is_word_char(c: str) -> bool:
    return _WORD_CHAR_RE.match(c) is not None


_ASCII_WORD = np.array([_is_word_char(chr(c)) for c in range(128)], dtype=bool)
_ASCII_SPACE = np.array([chr(c).isspace() for c in range(128)], dtype=bool)


def _classify(cps: np.ndarray, ascii_table: np.ndarray, pred: Callable[[str], bool]) -> np.ndarray:
    """Boolean class of every code point: a table for ASCII, ``pred`` once per other char."""
    out = ascii_table[np.minimum(cps, 127)]
    hi = cps >= 128
    if hi.any():
        uniq, inv = np.unique(cps[hi], return_inverse=True)
        vals = np.fromiter((pred(chr(int(c))) for c in uniq), dtype=bool, count=len(uniq))
        out[hi] = vals[inv.ravel()]
    return out


def _space_flags(cps: np.ndarray) -> np.ndarray:
    """``\\s`` (``str.isspace``, which ``re`` uses for str patterns) for every code point."""
    return _classify(cps, _ASCII_SPACE, str.isspace)


def _runs(flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and ends (exclusive) of the maximal runs of True."""
    d = np.diff(np.concatenate(([0], flags.astype(np.int8), [0])))
    return np.flatnonzero(d == 1).astype(np.int64), np.flatnonzero(d == -1).astype(np.int64)


# --- piecewise editing with an offset map ------------------------------------------------------


def _apply_edits(
    text: str, ss: np.ndarray, se: np.ndarray,
    a: list[int], b: list[int], reps: list[str],
) -> _Mapped:
    """Replace ``text[a_i:b_i]`` by ``reps[i]`` (sorted, disjoint, non-empty ranges).

    ``ss``/``se`` give each current character's raw source range. Kept characters keep theirs;
    every character of a replacement maps to the union of the replaced characters' sources.
    """
    if not a:
        return text, ss, se
    n = len(text)
    pieces: list[str] = []
    prev = 0
    for x, y, r in zip(a, b, reps, strict=True):
        pieces.append(text[prev:x])
        pieces.append(r)
        prev = y
    pieces.append(text[prev:])
    new_text = "".join(pieces)
    av = np.asarray(a, dtype=np.int64)
    bv = np.asarray(b, dtype=np.int64)
    rl = np.fromiter(map(len, reps), dtype=np.int64, count=len(reps))
    m = len(av)
    # The new text is runs: keep[0], rep[0], keep[1], rep[1], ..., keep[m]. A keep run is a
    # slice of the old arrays; a replacement run repeats the union of the replaced sources.
    # Gather both from ext = old arrays + one extra entry per edit.
    keep_start = np.concatenate(([0], bv))
    keep_len = np.concatenate((av, [n])) - keep_start
    run_src = np.empty(2 * m + 1, dtype=np.int64)
    run_len = np.empty(2 * m + 1, dtype=np.int64)
    run_step = np.empty(2 * m + 1, dtype=np.int64)
    run_src[0::2], run_len[0::2], run_step[0::2] = keep_start, keep_len, 1
    run_src[1::2], run_len[1::2], run_step[1::2] = n + np.arange(m), rl, 0
    total = int(run_len.sum())
    run_new = np.concatenate(([0], np.cumsum(run_len)[:-1]))
    within = np.arange(total, dtype=np.int64) - np.repeat(run_new, run_len)
    gather = np.repeat(run_src, run_len) + within * np.repeat(run_step, run_len)
    new_ss = np.concatenate((ss, ss[av]))[gather]
    new_se = np.concatenate((se, se[bv - 1]))[gather]
    if len(new_ss) != len(new_text):  # pragma: no cover - an internal invariant
        raise AssertionError("offset map out of step with the normalized text")
    return new_text, new_ss, new_se


def _nfkc(text: str, ss: np.ndarray, se: np.ndarray) -> _Mapped:
    """NFKC with an offset map.

    ASCII characters are normalization boundaries (starters that never compose with what
    precedes them), so NFKC is applied per segment "optional ASCII char + run of non-ASCII
    chars". Inside a changed segment each char maps to itself when per-char NFKC gives the same
    result (ligatures, fullwidth forms, "…"); otherwise (composition, reordering) the whole
    segment's output maps to the whole segment.
    """
    if unicodedata.is_normalized("NFKC", text):
        return text, ss, se
    a: list[int] = []
    b: list[int] = []
    reps: list[str] = []
    for m in _NONASCII_SEGMENT_RE.finditer(text):
        seg = m.group()
        if unicodedata.is_normalized("NFKC", seg):
            continue
        norm = unicodedata.normalize("NFKC", seg)
        per = [unicodedata.normalize("NFKC", c) for c in seg]
        if "".join(per) == norm:
            base = m.start()
            for i, (c, p) in enumerate(zip(seg, per, strict=True)):
                if p != c:
                    a.append(base + i)
                    b.append(base + i + 1)
                    reps.append(p)
        else:
            a.append(m.start())
            b.append(m.end())
            reps.append(norm)
    out = _apply_edits(text, ss, se, a, b, reps)
    if out[0] != unicodedata.normalize("NFKC", text):  # pragma: no cover - defensive
        log.warning("segment-wise NFKC differs from whole-text NFKC; mapping whole text")
        whole = unicodedata.normalize("NFKC", text)
        return _apply_edits(text, ss, se, [0], [len(text)], [whole]) if text else out
    return out


def _regex_edits(
    text: str, ss: np.ndarray, se: np.ndarray, pattern: re.Pattern[str], rep: str,
) -> _Mapped:
    a: list[int] = []
    b: list[int] = []
    for m in pattern.finditer(text):
        a.append(m.start())
        b.append(m.end())
    return _apply_edits(text, ss, se, a, b, [rep] * len(a))


def _spaced_ellipsis(text: str, ss: np.ndarray, se: np.ndarray) -> _Mapped:
    a: list[int] = []
    b: list[int] = []
    for m in _SPACED_ELLIPSIS_RE.finditer(text):
        for g in _ELLIPSIS_GAP_RE.finditer(text, m.start(), m.end()):
            a.append(g.start())
            b.append(g.end())
    return _apply_edits(text, ss, se, a, b, [""] * len(a))


def _italic_markers(text: str) -> list[int]:
    """Positions of the underscores that open and close ``_x_`` italics, in order."""
    out: list[int] = []
    pos = 0
    while True:
        m = _ITALICS_RE.search(text, pos)
        if m is None:
            break
        s = m.start()
        if s > 0 and _is_word_char(text[s - 1]):
            pos = s + 1  # "snake_case": not an italics marker; the next "_" may open one
            continue
        out += [s, m.end() - 1]
        pos = m.end()
    return out


def _italics(text: str, ss: np.ndarray, se: np.ndarray) -> _Mapped:
    if "_" not in text:
        return text, ss, se
    a = _italic_markers(text)
    return _apply_edits(text, ss, se, a, [x + 1 for x in a], [""] * len(a))


def _lowercase(text: str, ss: np.ndarray, se: np.ndarray) -> _Mapped:
    low = text.lower()
    if len(low) == len(text):  # lower() never shortens a char, so equal length means 1:1
        return low, ss, se
    expanding = sorted({c for c in set(text) if len(c.lower()) != 1})
    pat = re.compile("[" + "".join(re.escape(c) for c in expanding) + "]")
    a: list[int] = []
    b: list[int] = []
    reps: list[str] = []
    for m in pat.finditer(text):
        a.append(m.start())
        b.append(m.end())
        reps.append(m.group().lower())
    text, ss, se = _apply_edits(text, ss, se, a, b, reps)
    low = text.lower()
    if len(low) != len(text):  # pragma: no cover - defensive
        raise AssertionError("lowercasing changed length after expanding special characters")
    return low, ss, se


def _join_hyphenated(text: str, ss: np.ndarray, se: np.ndarray) -> _Mapped:
    if "-" not in text:
        return text, ss, se
    a: list[int] = []
    b: list[int] = []
    n = len(text)
    for m in _HYPHEN_BREAK_RE.finditer(text):
        s, e = m.start(), m.end()
        if s > 0 and e < n and _is_word_char(text[s - 1]) and _is_word_char(text[e]):
            a.append(s)
            b.append(e)
    return _apply_edits(text, ss, se, a, b, [""] * len(a))


def _collapse_whitespace(
    text: str, ss: np.ndarray, se: np.ndarray,
) -> _Mapped:
    """Each inner whitespace run becomes one space mapped to the whole run; ends stripped."""
    cps = _codepoints(text)
    space = _space_flags(cps)
    if not space.any():
        return text, ss, se
    n = len(text)
    rs, rend = _runs(space)
    inner = (rs > 0) & (rend < n)
    keep = ~space
    first = rs[inner]
    keep[first] = True
    cps = cps.copy()
    cps[first] = 32
    se = se.copy()
    se[first] = se[rend[inner] - 1]
    return _from_codepoints(cps[keep]), ss[keep], se[keep]


def _light(raw: str) -> Normalized:
    n = len(raw)
    text = raw
    ss = np.arange(n, dtype=np.int64)
    se = np.arange(1, n + 1, dtype=np.int64)
    text, ss, se = _nfkc(text, ss, se)
    if _CHAR_MAP_RE.search(text):
        text = text.translate(_CHAR_TABLE)  # 1:1, so the map is unchanged
    if "--" in text:
        text, ss, se = _regex_edits(text, ss, se, _DOUBLE_HYPHEN_RE, EM_DASH)
    if ". " in text or ".\t" in text:
        text, ss, se = _spaced_ellipsis(text, ss, se)
    text, ss, se = _italics(text, ss, se)
    text, ss, se = _lowercase(text, ss, se)
    text, ss, se = _join_hyphenated(text, ss, se)
    text, ss, se = _collapse_whitespace(text, ss, se)
    offsets = np.concatenate((ss, np.array([n], dtype=np.int64)))
    return Normalized(text=text, offsets=offsets, ends=se)


def normalize_text(raw: str, profile: Literal["raw", "light"]) -> Normalized:
    """Normalize ``raw`` under a character profile (``raw`` or ``light``), keeping the map back.

    For every normalized char ``i``, ``raw[offsets[i]:ends[i]]`` is the text it came from.
    """
    if profile == "raw":
        n = len(raw)
        return Normalized(raw, np.arange(n + 1, dtype=np.int64),
                          np.arange(1, n + 1, dtype=np.int64))
    if profile == "light":
        return _light(raw)
    raise ValueError(f"unknown character profile {profile!r}: use 'raw' or 'light' "
                     f"(the word profiles {PROFILES} are for tokenize())")


# --- tokenizers ---------------------------------------------------------------------------------


def intersecting(starts: np.ndarray, ends: np.ndarray,
                 ranges: Sequence[tuple[int, int]]) -> np.ndarray:
    """Bool per token: True where token ``[starts[i], ends[i])`` intersects any ``[a, b)``."""
    hit = np.zeros(len(starts), dtype=bool)
    rr = sorted((int(x), int(y)) for x, y in ranges if int(y) > int(x))
    if not rr or len(starts) == 0:
        return hit
    merged: list[list[int]] = [list(rr[0])]
    for x, y in rr[1:]:
        if x <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], y)
        else:
            merged.append([x, y])
    ra = np.array([m[0] for m in merged], dtype=np.int64)
    rb = np.array([m[1] for m in merged], dtype=np.int64)
    idx = np.searchsorted(ra, ends, side="left") - 1  # last range starting before the token ends
    ok = idx >= 0
    hit[ok] = rb[idx[ok]] > starts[ok]
    return hit


def _slices(text: str, starts: np.ndarray, ends: np.ndarray) -> list[str]:
    return [text[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]


def _has_alnum_lower(c: str) -> bool:
    return _ALNUM_RE.search(c.lower()) is not None


_ASCII_ALNUM = np.array([chr(c).isascii() and chr(c).isalnum() for c in range(128)], dtype=bool)
_ASCII_ALNUM_LOWER = np.array([_has_alnum_lower(chr(c)) for c in range(128)], dtype=bool)


def _liu_keep(cps: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """[Liu26]'s filter: True for tokens whose lowercase contains ``[a-z0-9]``.

    A single-character class matches the lowercased token iff it matches the lowercase of one
    of its characters, so this is a per-character flag summed over each token.
    """
    flag = _classify(cps, _ASCII_ALNUM_LOWER, _has_alnum_lower)
    cs = np.concatenate(([0], np.cumsum(flag, dtype=np.int64)))
    return (cs[ends] - cs[starts]) > 0


def _wordpunct_runs(cps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spans of ``\\w+|[^\\w\\s]+`` over the code points, in order."""
    n = len(cps)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    cls = np.where(_classify(cps, _ASCII_WORD, _is_word_char), 1,
                   np.where(_space_flags(cps), 0, 2)).astype(np.int8)
    change = np.flatnonzero(np.diff(cls)) + 1
    starts = np.concatenate(([0], change)).astype(np.int64)
    ends = np.concatenate((change, [n])).astype(np.int64)
    keep = cls[starts] != 0
    return starts[keep], ends[keep]


# --- the short-text fast path ------------------------------------------------------------------
#
# An output or a prompt is mostly ASCII words and punctuation (curly quotes and dashes at most).
# For such a text both Liu-filtered profiles reduce to one regex: a kept token is a run of word
# characters holding an ASCII letter or digit, and every punctuation token is dropped, so only
# the word runs matter; light normalization changes word runs only through NFKC of non-ASCII
# characters, ``_x_`` italics, lowercasing and the joining of a word hyphenated across a line
# break. A text free of those takes the fast path; any other goes the general way. The fast
# path's equality with the general one is property-tested (tests/test_normalize.py).

_NONASCII_RE = re.compile(r"[^\x00-\x7f]")
#: Verdicts per non-ASCII character: can it stand next to ASCII words without changing them?
_INERT: dict[str, bool] = {}


def _inert(c: str) -> bool:
    """True for a non-ASCII character that no profile turns into, or joins to, a word char:
    not a word char itself; under light normalization (NFKC, then the quote and dash maps) it
    yields no word char, no hyphen (which could join a line-broken word) and no underscore,
    and does not compose with a letter on either side."""
    v = _INERT.get(c)
    if v is None:
        mapped = unicodedata.normalize("NFKC", c).translate(_CHAR_TABLE)
        v = (not _is_word_char(c) and not any(_is_word_char(x) for x in mapped)
             and "-" not in mapped
             and unicodedata.normalize("NFKC", "e" + c + "e") == "e" + unicodedata.normalize(
                 "NFKC", c) + "e")
        _INERT[c] = v
    return v


_FAST_WORDS = np.array([chr(c).isalnum() or chr(c) == "_" for c in range(128)], dtype=bool)
_FAST_ALNUM = np.array([chr(c).isalnum() for c in range(128)], dtype=bool)

_FastRuns = tuple[np.ndarray, np.ndarray, dict[int, str]]
"""Kept tokens' raw starts and ends, and the words of tokens joined across a line break."""


def _nonascii_fast_ok(raw: str, profile: str) -> bool:
    """Whether a text's non-ASCII characters allow the fast paths: under the raw-text profile
    none is a word character; under the light profiles every one is inert."""
    odd = set(_NONASCII_RE.findall(raw))
    if profile == "words":
        return not any(_is_word_char(c) for c in odd)
    return all(_inert(c) for c in odd)


def _fast_word_runs(raw: str, profile: str) -> _FastRuns | None:
    """The kept tokens under ``words`` or ``light-words`` when the fast path applies (see
    above), else None. Light normalization's italics become non-word characters (removing them
    joins nothing: an italics underscore has a non-word character or the text's edge outside
    it) and a word hyphenated across a line break becomes one token over both halves."""
    if raw.isascii():
        cps = np.frombuffer(raw.encode("ascii"), dtype=np.uint8)
    else:
        if not _nonascii_fast_ok(raw, profile):
            return None
        cps = _codepoints(raw)
    ascii_ = cps < 128
    low = np.minimum(cps, 127)
    alnum = _FAST_ALNUM[low] & ascii_
    word = _FAST_WORDS[low] & ascii_
    joins: list[tuple[int, int]] = []
    if profile == "light-words":
        if "\n" in raw and "-" in raw:
            n = len(raw)
            joins = [(m.start(), m.end()) for m in _HYPHEN_BREAK_RE.finditer(raw)
                     if m.start() > 0 and m.end() < n and word[m.start() - 1] and word[m.end()]]
        if "_" in raw:
            if "\n" in raw and "-" in raw:
                # An italics marker may border a join, or hide one that its removal makes
                # ("_1-_\n1" is "1-\n1" once the italics go): the general path decides.
                return None
            markers = _italic_markers(raw)
            if markers:
                word = word.copy()
                word[markers] = False
    d = np.diff(word.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1)
    joined: dict[int, str] = {}
    if joins:
        # Merge the run ending where a join starts with the run starting where it ends.
        by_end = {int(e): i for i, e in enumerate(ends.tolist())}
        by_start = {int(s0): i for i, s0 in enumerate(starts.tolist())}
        nxt: dict[int, int] = {}
        for a, b in joins:
            i, j = by_end.get(a), by_start.get(b)
            if i is not None and j is not None:
                nxt[i] = j
        drop = set(nxt.values())
        keep_runs = [i for i in range(len(starts)) if i not in drop]
        new_ends = []
        for k, i in enumerate(keep_runs):
            parts = [i]
            while parts[-1] in nxt:
                parts.append(nxt[parts[-1]])
            new_ends.append(ends[parts[-1]])
            if len(parts) > 1:
                joined[k] = "".join(raw[starts[p]:ends[p]] for p in parts)
        starts = starts[keep_runs]
        ends = np.asarray(new_ends, dtype=np.int64)
    if "_" in raw:
        cs = np.concatenate(([0], np.cumsum(alnum, dtype=np.int64)))
        keep = cs[ends] > cs[starts]  # a run of underscores alone is dropped
        if not keep.all():
            if joined:
                idx = np.flatnonzero(keep).tolist()
                joined = {n: joined[o] for n, o in enumerate(idx) if o in joined}
            starts, ends = starts[keep], ends[keep]
    return starts.astype(np.int64, copy=False), ends.astype(np.int64, copy=False), joined


def _ascii_word_at(raw: str, i: int) -> bool:
    c = raw[i]
    return c.isascii() and (c.isalnum() or c == "_")


def _plain_tokens(raw: str, profile: str,
                  exclude: Sequence[tuple[int, int]]) -> Tokens | None:
    """The fast path's tokens of a text that has no word hyphenated across a line break (most
    outputs and prompts), straight from one regex, else None. Under the fast path's conditions
    (:func:`_fast_word_runs`) the kept tokens are then exactly the maximal runs of ASCII
    letters and digits, lowercased: the same tokens, without the array passes. A text with
    underscores (a novel's ``_italics_``) has runs of letters, digits and underscores holding
    a letter or digit, split at the italics markers under ``light-words``; under
    ``light-words`` it is declined when it also has a hyphen and a line break."""
    underscore = "_" in raw
    if (underscore and profile == "light-words" and "\n" in raw and "-" in raw
            and _HYPHEN_BREAK_RE.search(raw.replace("_", ""))):
        # An italics marker could border a join, or hide one its removal makes: declined
        # (_fast_word_runs declines too). Without a hyphen before a line break even once
        # every underscore is gone (a novel's prompts with italics, line breaks and
        # "twenty-one"), there is no join, with or without the markers.
        return None
    if not raw.isascii() and not _nonascii_fast_ok(raw, profile):
        return None
    if profile == "light-words" and "\n" in raw and "-" in raw:
        n = len(raw)
        for m in _HYPHEN_BREAK_RE.finditer(raw):
            a, b = m.start(), m.end()
            if a > 0 and b < n and _ascii_word_at(raw, a - 1) and _ascii_word_at(raw, b):
                return None  # a join: the general fast path merges the two runs
    if len(exclude) or len(raw) > _CACHE_MAX_CHARS:
        words, starts, ends = _alnum_runs(raw, underscore)
    else:
        # The runs do not depend on the profile: an output is tokenized under both word
        # profiles one after the other, and the second call finds the first's runs here
        # (read-only arrays, as the token cache keeps them; the list is the caller's own).
        words, starts, ends = _alnum_runs_cached(raw, underscore)
        words = list(words)
    if underscore and profile == "light-words":
        # Light normalization removes the ``_x_`` italics markers, which ends a word run as
        # in :func:`_fast_word_runs`; other underscores stay in words.
        markers = _italic_markers(raw)
        if markers:
            words, starts, ends = _split_at(words, starts, ends, markers)
    if len(exclude):
        ok = ~intersecting(starts, ends, exclude)
        starts, ends = starts[ok], ends[ok]
        words = [w for w, k in zip(words, ok.tolist(), strict=True) if k]
    return Tokens(words=words, starts=starts, ends=ends, profile=profile)


_ALNUM_SPLIT_RE = re.compile(r"([A-Za-z0-9]+)")
#: A maximal run of ASCII letters, digits and underscores holding a letter or digit: a run of
#: underscores alone is no token (it stays in the gap); a match starts where its run does,
#: since the runs are separated by other characters.
_WORD_SPLIT_RE = re.compile(r"([A-Za-z0-9_]*[A-Za-z0-9][A-Za-z0-9_]*)")


def _alnum_runs(raw: str, underscore: bool = False) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The maximal runs of ASCII letters and digits of ``raw`` (with ``underscore``: of ASCII
    letters, digits and underscores, those holding a letter or digit), lowercased, with their
    character ranges: one ``re.split`` (gaps and runs alternate in its result), the ranges
    from the cumulated part lengths: no Python step per token (tests/test_normalize.py
    compares the result with the general tokenizer's)."""
    ascii_text = raw.isascii()
    # Lowercasing ASCII keeps every length, so the whole text is lowered at once; a
    # non-ASCII text is split as written (lowering it could change lengths), its runs lowered.
    rx = _WORD_SPLIT_RE if underscore else _ALNUM_SPLIT_RE
    parts = rx.split(raw.lower() if ascii_text else raw)
    words = parts[1::2]
    if not ascii_text:
        words = [w.lower() for w in words]
    ends_all = np.cumsum(np.fromiter(map(len, parts), dtype=np.int64, count=len(parts)))
    starts = ends_all[0:-1:2].copy()  # a run starts where the gap before it ends
    ends = ends_all[1::2].copy()
    return words, starts, ends


def _split_at(words: list[str], starts: np.ndarray, ends: np.ndarray, markers: list[int],
              ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The runs of :func:`_alnum_runs` (with underscores) with the characters at ``markers``
    (raw positions of underscores) removed: a run holding markers becomes its pieces that
    hold a letter or digit. Markers outside every run (in a run of underscores alone) change
    nothing."""
    sl, el = starts.tolist(), ends.tolist()
    by_run: dict[int, list[int]] = {}
    for m in markers:
        r = bisect.bisect_right(sl, m) - 1
        if r >= 0 and m < el[r]:
            by_run.setdefault(r, []).append(m)
    if not by_run:
        return words, starts, ends
    nw: list[str] = []
    ns: list[int] = []
    ne: list[int] = []
    prev = 0
    for r in sorted(by_run):
        nw += words[prev:r]
        ns += sl[prev:r]
        ne += el[prev:r]
        s0, w, a = sl[r], words[r], sl[r]
        for m in [*by_run[r], el[r]]:
            piece = w[a - s0:m - s0]
            if piece.strip("_"):  # the run's characters are letters, digits and underscores
                nw.append(piece)
                ns.append(a)
                ne.append(m)
            a = m + 1
        prev = r + 1
    nw += words[prev:]
    ns += sl[prev:]
    ne += el[prev:]
    return nw, np.array(ns, dtype=np.int64), np.array(ne, dtype=np.int64)


@functools.lru_cache(maxsize=16)
def _alnum_runs_cached(raw: str, underscore: bool = False,
                       ) -> tuple[list[str], np.ndarray, np.ndarray]:
    words, starts, ends = _alnum_runs(raw, underscore)
    starts.setflags(write=False)
    ends.setflags(write=False)
    return words, starts, ends


def _fast_tokens(raw: str, profile: str, runs: _FastRuns,
                 exclude: Sequence[tuple[int, int]]) -> Tokens:
    starts, ends, joined = runs
    # An ASCII text is lowered whole (lengths kept) and sliced; the joined words replaced.
    text = raw.lower() if raw.isascii() else raw
    words = [text[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
    if text is raw:
        words = [w.lower() for w in words]
    for i, w in joined.items():
        words[i] = w.lower()
    if len(exclude):
        ok = ~intersecting(starts, ends, exclude)
        starts, ends = starts[ok], ends[ok]
        words = [w for w, k in zip(words, ok.tolist(), strict=True) if k]
    return Tokens(words=words, starts=starts, ends=ends, profile=profile)


def tokenize(raw: str, profile: str = "light-words",
             exclude: Sequence[tuple[int, int]] = ()) -> Tokens:
    """Tokenize ``raw`` under a word profile; every token keeps its raw character range.

    - ``light-words`` (default): light normalization, then ``\\w+|[^\\w\\s]+``, keeping tokens
      containing ``[a-z0-9]``; tokens map back to raw through the offset map.
    - ``words`` [Liu26]: ``\\w+|[^\\w\\s]+`` on the raw text, lowercased, keeping tokens that
      contain ``[a-z0-9]`` (so every punctuation token is dropped; ``_your_`` is one token).
    - ``light``: light normalization, whitespace-separated words [Ahm26 nv-recall].
    - ``raw``: ``\\w+|[^\\w\\s]+`` on the raw text, no lowercasing, no filter.

    - ``light-words-cjk`` / ``words-cjk``: the same, with every Han and Kana character one token
      and tokens holding Han, Kana or Hangul kept (casekit.cjk).

    ``exclude``: raw char ranges ``[start, end)``; tokens intersecting any of them are dropped.
    """
    if not len(exclude) and len(raw) <= _CACHE_MAX_CHARS:
        return _tokenize_cached(raw, profile)
    return _tokenize_uncached(raw, profile, exclude)


#: Short texts (prompts, outputs, targets) recur across an analysis: the same prompt is sent to
#: every model and its window is every model's target. Their tokens are kept in a small LRU
#: cache (arrays read-only, so a cached result cannot be changed by a caller).
_CACHE_MAX_CHARS = 20_000


@functools.lru_cache(maxsize=2048)
def _tokenize_cached(raw: str, profile: str) -> Tokens:
    t = _tokenize_uncached(raw, profile, ())
    t.starts.setflags(write=False)
    t.ends.setflags(write=False)
    return t


def _tokenize_uncached(raw: str, profile: str, exclude: Sequence[tuple[int, int]]) -> Tokens:
    if profile in ("words", "light-words"):
        plain = _plain_tokens(raw, profile, exclude)
        if plain is not None:
            return plain
        fast = _fast_word_runs(raw, profile)
        if fast is not None:
            return _fast_tokens(raw, profile, fast, exclude)
    return _tokenize_general(raw, profile, exclude)


def _tokenize_general(raw: str, profile: str, exclude: Sequence[tuple[int, int]]) -> Tokens:
    """:func:`tokenize` for any text (the fast path's reference), and the CJK profiles."""
    cjk_profile = cjk.is_cjk_profile(profile)
    if cjk_profile:
        profile = cjk.base_profile(profile)
    norm: Normalized | None = None
    if profile in ("words", "raw"):
        text, cps = raw, _codepoints(raw)
        ns, ne = _wordpunct_runs(cps)
    elif profile in ("light-words", "light"):
        norm = _light(raw)
        text, cps = norm.text, _codepoints(norm.text)
        if profile == "light":
            ns, ne = _runs(~_space_flags(cps))
        else:
            ns, ne = _wordpunct_runs(cps)
    else:
        raise ValueError(f"unknown profile {profile!r}: use one of {', '.join(PROFILES)}")
    if cjk_profile:
        ns, ne = cjk.split_runs(cps, ns, ne)
    cjk_keep = cjk.keep_cjk(cps, ns, ne) if cjk_profile else None
    if profile == "words":
        # [Liu26]'s reference tests ``[A-Za-z0-9]`` on the token as written (before
        # lowercasing), so a lone KELVIN SIGN or dotted capital I is dropped, not kept.
        flag = _ASCII_ALNUM[np.minimum(cps, 127)] & (cps < 128)
        cs = np.concatenate(([0], np.cumsum(flag, dtype=np.int64)))
        keep = (cs[ne] - cs[ns]) > 0
        if cjk_keep is not None:
            keep |= cjk_keep
        ns, ne = ns[keep], ne[keep]
    elif profile == "light-words":
        keep = _liu_keep(cps, ns, ne)
        if cjk_keep is not None:
            keep |= cjk_keep
        ns, ne = ns[keep], ne[keep]
    if norm is not None:
        starts, ends = norm.offsets[ns], norm.ends[ne - 1]
    else:
        starts, ends = ns, ne
    if len(exclude):
        ok = ~intersecting(starts, ends, exclude)
        ns, ne, starts, ends = ns[ok], ne[ok], starts[ok], ends[ok]
    words = _slices(text, ns, ne)
    if profile == "words":
        words = [w.lower() for w in words]
    return Tokens(words=words, starts=np.asarray(starts, dtype=np.int64),
                  ends=np.asarray(ends, dtype=np.int64),
                  profile=cjk.cjk_profile(profile) if cjk_profile else profile)
