"""Formatting and highlighting shared by every section: numbers, parameter values, and text
split into :class:`Segment` runs.

Model output and work text reach the templates as lists of segments (text + CSS class), so that
highlighting is done by the template wrapping each escaped segment in a span, never by
concatenating markup with model output. Long texts are cut into blocks here too.
"""

from __future__ import annotations

import bisect
import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from casekit.analysis.findings import SpanFinding
from casekit.report import catalogue as C
from casekit.stats import BootstrapRate
from casekit.visible import code_point, code_re

log = logging.getLogger(__name__)


DASH = "\u2014"

# CSS classes of highlighted text (the stylesheet gives each a greyscale-safe look).
MATCH = "match"
"""Output/work words aligned exactly (``equal`` opcodes)."""
SUBST = "subst"
"""Words aligned with a different word (``replace`` opcodes)."""
SUPPLIED = "supplied"
"""Text of the work that the tester supplied in the prompt."""
CTL = "ctl"
"""A control or invisible character, shown by its code point (display only)."""


# --------------------------------------------------------------------------- formatting


def fmt_int(n: int | None) -> str:
    return DASH if n is None else f"{n:,}"


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and its noun in agreement: "1 model", "2 models", "1,204 attempt records"."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def and_list(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(items) <= 2:
        return " and ".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def some(items: Sequence[str], shown: int, sep: str = ", ") -> str:
    """The first ``shown`` items, then how many more: "a, b, c and 4 more" (a list the report
    cuts says what it left out, never "...")."""
    out = sep.join(items[:shown])
    if len(items) > shown:
        out += f" and {len(items) - shown:,} more"
    return out


def agree(n: int, one: str, many: str) -> str:
    """The verb (or pronoun) that agrees with ``n``: ``agree(1, "was", "were")``."""
    return one if n == 1 else many


def fmt_pct(x: float | None) -> str:
    """A share as a percentage: one decimal, two significant digits below 0.1%."""
    if x is None:
        return DASH
    if x == 0:
        return "0%"
    if x == 1:
        return "100%"
    pct = x * 100
    if pct < 0.1:
        return f"{pct:.2g}%"
    text = f"{pct:.1f}%"
    if text == "100.0%":
        return ">99.9%"
    return text


def fmt_num(x: float | None, digits: int = 3) -> str:
    return DASH if x is None else f"{x:.{digits}f}"


def fmt_value(v: Any) -> str:
    """A parameter value as the case file would show it."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(v, ensure_ascii=False, sort_keys=True)


# --------------------------------------------------------------------------- segments


@dataclass(frozen=True)
class Segment:
    """A run of text with one look; ``cls`` is a space-separated list of CSS classes or ""."""

    text: str
    cls: str = ""


def visible_segments(text: str, cls: str = "") -> list[Segment]:
    """Split text so that control/invisible characters become their own ``ctl`` segments
    showing the code point (display only; the ledger keeps the raw text). CRLF is shown as
    a line break. Linear in the text: one regular-expression scan."""
    out: list[Segment] = []
    buf: list[str] = []
    pos = 0
    ctl = f"{cls} {CTL}".strip()
    for m in code_re().finditer(text):
        i = m.start()
        if i > pos:
            buf.append(text[pos:i])
        pos = i + 1
        ch = text[i]
        if ch == "\r" and text.startswith("\n", i + 1):
            continue  # CRLF is shown as a line break
        if buf:
            out.append(Segment("".join(buf), cls))
            buf = []
        out.append(Segment(code_point(ch), ctl))
    if pos < len(text):
        buf.append(text[pos:])
    if buf:
        out.append(Segment("".join(buf), cls))
    return out


_PRIORITY = {MATCH: 3, SUBST: 2, SUPPLIED: 1}
_BY_PRIORITY = {v: k for k, v in _PRIORITY.items()}


def marks(n: int, ranges: Iterable[tuple[int, int, str]], offset: int = 0,
          ) -> list[tuple[int, int, str]]:
    """Disjoint runs (start, end, class) covering [0, n) of a text: ``ranges`` (absolute char
    offsets, ``offset`` = position of text[0]) clipped to the text, the stronger mark winning
    where they overlap (match > subst > supplied). O(r log r) in the number of ranges."""
    events: dict[int, list[int]] = {}
    for start, end, cls in ranges:
        pr = _PRIORITY.get(cls, 0)
        lo, hi = max(0, start - offset), min(n, end - offset)
        if pr and lo < hi:
            events.setdefault(lo, [0, 0, 0, 0])[pr] += 1
            events.setdefault(hi, [0, 0, 0, 0])[pr] -= 1
    active = [0, 0, 0, 0]
    out: list[tuple[int, int, str]] = []
    prev, cur = 0, ""
    for pos in sorted(events):
        delta = events[pos]
        for pr in (1, 2, 3):
            active[pr] += delta[pr]
        top = next((pr for pr in (3, 2, 1) if active[pr] > 0), 0)
        cls = _BY_PRIORITY.get(top, "")
        if cls != cur:
            if pos > prev:
                out.append((prev, pos, cur))
            prev, cur = pos, cls
    if n > prev or not out:
        out.append((prev, n, cur))
    return [r for r in out if r[1] > r[0]] if n else []


def paint(text: str, ranges: Iterable[tuple[int, int, str]], offset: int = 0) -> list[Segment]:
    """Segments of ``text`` with ``ranges`` (absolute char offsets, ``offset`` = position of
    text[0]) marked; where ranges overlap the stronger mark wins (match > subst > supplied)."""
    out: list[Segment] = []
    for lo, hi, cls in marks(len(text), ranges, offset):
        out.extend(visible_segments(text[lo:hi], cls))
    return out


ELIDED = "elided"
"""A notice casekit writes into an exhibit column that shows part of a long text (never model
output: the class and the words are casekit's)."""
#: An exhibit column shows at most this many characters of one text; a longer text is shown
#: whole in the appendix of long texts, and the column says which part it shows.
INLINE_MAX_CHARS = 6000
#: The appendix of long texts shows at most this many characters of one text (some 20 pages),
#: from a little before the exhibit's first highlight, and says which part it shows; the whole
#: text is in the ledger attached to the PDF. A 10 MB output shown whole was some 2,000 pages,
#: gigabytes in WeasyPrint (issue 15 item 2).
APPENDIX_MAX_CHARS = 100_000
#: An exhibit shows at most this many work excerpts (and lists as many spans); an output
#: repeating a passage thousands of times makes as many spans.
EXCERPTS_MAX = 50
#: Characters shown before the first highlighted passage when a column shows part of a text.
INLINE_CONTEXT_CHARS = 300
#: The appendix splits a long text into blocks of about this size (at a line break or a blank
#: where there is one): WeasyPrint lays out one huge block in quadratic time.
APPENDIX_CHUNK_CHARS = 4000


def chunk_bounds(text: str, size: int = APPENDIX_CHUNK_CHARS) -> list[tuple[int, int]]:
    """[start, end) blocks of about ``size`` characters covering the text, each ending after a
    line break, else after a blank, else (an unbroken run) at ``size``."""
    out: list[tuple[int, int]] = []
    n = len(text)
    pos = 0
    while pos < n:
        end = pos + size
        if end >= n:
            out.append((pos, n))
            break
        cut = text.rfind("\n", pos + size // 2, end)
        if cut < 0:
            cut = max(text.rfind(" ", pos + size // 2, end), text.rfind("\t", pos + size // 2, end))
        end = cut + 1 if cut >= 0 else end
        out.append((pos, end))
        pos = end
    return out


def segments_in(text: str, runs: list[tuple[int, int, str]], lo: int, hi: int,
                 starts: list[int] | None = None) -> list[Segment]:
    """Segments of text[lo:hi] given the marked runs of the whole text (``starts``: the runs'
    starts, passed by a caller cutting one text into many blocks so that each cut costs a
    binary search, not a walk over every run)."""
    out: list[Segment] = []
    if starts is None:
        starts = [r[0] for r in runs]
    i = bisect.bisect_right(starts, lo) - 1 if runs else 0
    for start, end, cls in runs[max(i, 0):]:
        if start >= hi:
            break
        a, b = max(start, lo), min(end, hi)
        if a < b:
            out.extend(visible_segments(text[a:b], cls))
    return out


#: A run of non-blank characters longer than this may not fit an exhibit column.
LONG_RUN = 24
_LONG_RUN_RE = re.compile(rf"\S{{{LONG_RUN + 1},}}")


def wrap_class(segments: Iterable[Segment]) -> str:
    """``break-all`` for a column whose displayed text holds a run too long for it.

    Ordinary text keeps its words whole; a long run (a hostile token, a URL) is broken at any
    character. Plain ``overflow-wrap: anywhere`` is not enough in WeasyPrint 70: a word that
    starts inside one inline box (a highlight) and continues in the next never wraps.
    """
    shown = "".join(s.text for s in segments)
    return "break-all" if _LONG_RUN_RE.search(shown) else ""


def _token_bounds(tokens: Any, i: int) -> tuple[int, int]:
    return int(tokens.starts[i]), int(tokens.ends[i])


def opcode_ranges(tokens: Any, spans: Sequence[SpanFinding], side: str,
                   ) -> tuple[list[tuple[int, int, str]], bool]:
    """Char ranges to mark from the spans' word opcodes on one side (``out`` or ``work``).

    Returns (ranges, exact): when the recorded char offsets do not line up with the tokens
    (another tokenizer version), falls back to marking each span's char range as a whole.
    """
    ranges: list[tuple[int, int, str]] = []
    exact = True
    n = len(tokens)
    for s in spans:
        w0, w1, c0, c1 = ((s.out_word_start, s.out_word_end, s.out_char_start, s.out_char_end)
                          if side == "out" else
                          (s.work_word_start, s.work_word_end, s.work_char_start,
                           s.work_char_end))
        aligned = (0 <= w0 < w1 <= n and _token_bounds(tokens, w0)[0] == c0
                   and _token_bounds(tokens, w1 - 1)[1] == c1)
        if not aligned:
            exact = False
            if c1 > c0:
                ranges.append((c0, c1, MATCH))
            continue
        for tag, i1, i2, j1, j2 in s.opcodes:
            a, b = (i1, i2) if side == "out" else (j1, j2)
            if b <= a or b > n:
                continue
            cls = MATCH if tag == "equal" else SUBST if tag == "replace" else ""
            if cls:
                ranges.append((_token_bounds(tokens, a)[0], _token_bounds(tokens, b - 1)[1], cls))
    return ranges, exact


def supplied_ranges(text: str, quotes: Iterable[str]) -> list[tuple[int, int, str]]:
    """Where the quoted work text occurs in a prompt: exactly, else with any whitespace."""
    out: list[tuple[int, int, str]] = []
    for q in quotes:
        q = q.strip()
        if not q:
            continue
        found = False
        pos = text.find(q)
        while pos >= 0:
            found = True
            out.append((pos, pos + len(q), SUPPLIED))
            pos = text.find(q, pos + len(q))
        if not found:
            words = q.split()
            pattern = re.compile(r"\s+".join(re.escape(w) for w in words))
            for m in pattern.finditer(text):
                out.append((m.start(), m.end(), SUPPLIED))
    return out


def ordered(d: dict[str, Any], known: Iterable[str]) -> list[str]:
    """Keys of d: the known ones in their given order, then the rest sorted.

    Never the dict's own order: findings.json is canonical JSON (keys sorted), findings built
    in memory keep insertion order, and both must give the same report bytes.
    """
    first = [k for k in known if k in d]
    return first + sorted(set(d) - set(first))


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def boot_text(b: BootstrapRate | None) -> str:
    """A cluster-bootstrap interval and what it resampled, or why there is none."""
    if b is None or b.lo is None or b.hi is None:
        return C.NO_BOOTSTRAP
    if b.clusters < 2:
        return C.NO_BOOTSTRAP_ONE.format(unit=b.unit)
    return C.BOOTSTRAP.format(lo=fmt_pct(b.lo), hi=fmt_pct(b.hi), clusters=f"{b.clusters:,}",
                              article=_article(b.unit), unit=b.unit,
                              resamples=f"{b.resamples:,}", seed=b.seed)


#: Characters after which an identifier may break (a path, a key, an id, "sha256:").
BREAK_AFTER = frozenset("-/_#:")
#: Hex digits in a hash break only between groups of this many (never inside a group).
HEX_GROUP = 16
#: A run this long with no break point (a hostile id, base64) breaks every this many characters.
RUN_MAX = 32
_HEX_RUN = re.compile(r"[0-9a-fA-F]{33,}")
_PLAIN_RUN = re.compile(r"[^\s\-/_#:]{33,}")


def breakable(value: Any) -> Any:
    """An identifier (attempt id, hash, file name, key) as markup that breaks only at safe
    points: a ``<wbr>`` after ``- / _ # :``, between groups of 16 digits of a long hex run,
    and every 32 characters of any other run too long to fit. Words are never split and no
    hyphen is added (issue 16 item 8: "ledger.js onl", "adversari-al"). The text goes through
    :func:`casekit.visible.visible` and is escaped, as every value the templates print."""
    from markupsafe import Markup, escape

    from casekit.visible import visible

    text = visible(str(value), keep="\t\n")
    cuts: set[int] = {i + 1 for i, ch in enumerate(text[:-1]) if ch in BREAK_AFTER}
    for m in _HEX_RUN.finditer(text):
        cuts.update(range(m.start() + HEX_GROUP, m.end(), HEX_GROUP))
    for m in _PLAIN_RUN.finditer(text):
        if not _HEX_RUN.fullmatch(m.group()):
            cuts.update(range(m.start() + RUN_MAX, m.end(), RUN_MAX))
    out: list[str] = []
    last = 0
    for cut in sorted(cuts):
        out.append(str(escape(text[last:cut])))
        last = cut
    out.append(str(escape(text[last:])))
    return Markup("<wbr>".join(out))
