"""The report model: what the templates show, computed and formatted here.

Every number in the report comes from findings.json (the given :class:`Findings`) or from the
ledger, and is formatted in this module; templates do no arithmetic. Model output and work text
reach the templates as lists of :class:`Segment` (text + CSS class), so that highlighting is
done by the template wrapping each escaped segment in a span, never by concatenating markup
with model output.

Nothing here reads the clock or iterates an unordered collection: the same inputs give the same
model, hence the same HTML bytes. The date on the cover is the run's recorded start.
"""

from __future__ import annotations

import bisect
import functools
import json
import logging
import re
import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from markupsafe import Markup

from casekit.analysis.analyze import findings_bytes
from casekit.analysis.findings import (
    AttemptAnalysis,
    Census,
    CensusPreset,
    ControlFloor,
    Findings,
    ModelWorkFinding,
    Probabilistic,
    SpanFinding,
)
from casekit.analysis.metrics import CoverageOverlap, RateRatio
from casekit.analysis.stats import BootstrapRate, Rate
from casekit.analysis.taxonomy import ABSENCE_CAVEAT, BELOW, CATEGORY_TEXT, NOT_OBSERVED, SHOWN
from casekit.canonical import canonical_json, sha256_bytes
from casekit.case import CaseFile, LoadedCase
from casekit.errors import CasekitError
from casekit.ledger import LEDGER_NAME, read_records
from casekit.normalize import tokenize
from casekit.records import (
    IMPORT_STRATEGY,
    AttemptRecord,
    LedgerRecord,
    Note,
    PlannedAttempt,
    RunEnd,
    RunStart,
)
from casekit.report import figures
from casekit.report.evidence import (
    CASE_ATTACHMENT,
    COMPARISON_ATTACHMENT,
    FINDINGS_ATTACHMENT,
    LEDGER_ATTACHMENT,
    MANIFEST_ATTACHMENT,
    PDF_VARIANT,
    Attached,
    EvidenceFiles,
    ReportOptions,
    TemplateSet,
    attachments,
    build_manifest,
    manifest_bytes,
    pdf_options,
    template_set,
    work_attachment_name,
)
from casekit.report.render import SafeFetcher, render_html, render_pdf, template_dirs
from casekit.works import MATCH_PROFILE, Work, load_works

log = logging.getLogger(__name__)

REPORT_DIR = "report"
HTML_NAME = "report.html"
PDF_NAME = "report.pdf"
MANIFEST_NAME = "manifest.json"
#: Exhibits shown per model x work; the rest are listed in the table of every attempt.
EXHIBITS_PER_FINDING = 3
DASH = "\u2014"
#: [Car23] single-output extraction threshold, printed when a case lowers its thresholds.
LEGAL_DEFAULT_TEXT = "50 tokens / 40 words [Car23]"

# CSS classes of highlighted text (the stylesheet gives each a greyscale-safe look).
MATCH = "match"
"""Output/work words aligned exactly (``equal`` opcodes)."""
SUBST = "subst"
"""Words aligned with a different word (``replace`` opcodes)."""
SUPPLIED = "supplied"
"""Text of the work that the tester supplied in the prompt."""
CTL = "ctl"
"""A control or invisible character, shown by its code point (display only)."""

PROFILE_TEXT = {
    "raw": "the text as ingested; exhibits quote raw text through offset maps",
    "light": "NFKC; curly quotes to ASCII; dash variants to em dash; ellipses unified; _x_ "
             "italics markers removed; lowercase; whitespace collapsed; words hyphenated across "
             "a line break joined [Ahm26 App. C.3]",
    "words": "tokens \\w+|[^\\w\\s]+ on the raw text, lowercased, keeping tokens that contain "
             "[a-z0-9] (the [Liu26] profile, so figures are comparable with published ones)",
    "light-words": "the light profile, then the words tokenizer: casekit's default for span "
                   "finding and word thresholds",
}

THRESHOLD_LABELS = {
    "near_exact": ("Near-exact similarity", "minimum normalized word-level edit similarity of "
                   "a near-verbatim span"),
    "min_span_words": ("Reporting threshold", "a span of at least this many words counts as "
                       "evidence"),
    "substantial_portion_min_words": ("Substantial portion: contiguous block", "a reconstructed "
                                      "block of at least this many words..."),
    "substantial_portion_min_share": ("Substantial portion: coverage", "...or this share of the "
                                      "work's words"),
    "seed_k": ("Seed k-gram (k)", "exact k-grams that seed a span; k of BMC@k"),
    "m_gram": ("Prompt m-gram trim (m)", "work positions whose m-gram occurs in the prompt are "
               "never credited"),
    "echo_min_words": ("Echo removal", "output runs of at least this many words found in the "
                       "prompt are removed"),
    "legal_defaults": ("Legal defaults", "false when the case deliberately lowers thresholds"),
}

DEFINITION_LABELS = {
    "span": "Span",
    "leakage": "Prompt-leakage discount",
    "rate": "Rate",
    "coverage": "Coverage",
    "longest_block": "Longest contiguous block",
    "bmc": "BMC@k",
    "longest_regurgitated": "Longest regurgitated span",
    "top1_share": "Teacher-forced top-1 share",
    "control_floor": "Control floor",
}

STATUS_CLASS = {SHOWN: "status-shown", BELOW: "status-below", NOT_OBSERVED: "status-none"}
OUTCOME_ORDER = ("match", "no_match", "refusal", "error", "unscorable")


# --------------------------------------------------------------------------- formatting


def fmt_int(n: int | None) -> str:
    return DASH if n is None else f"{n:,}"


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


#: Unicode categories shown by code point: Cc control, Cf format (bidi overrides, zero-width),
#: Cs lone surrogates, Zl/Zp line and paragraph separators. Newline and tab stay as they are.
SHOWN_AS_CODE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


@functools.cache
def _code_re() -> re.Pattern[str]:
    """A character class of every code point shown by its code point (built once).

    Only planes 0, 1 and 14 hold characters of those categories (surrogates, C0/C1 controls
    and format characters); scanning them takes a few hundredths of a second.
    """
    ranges: list[tuple[int, int]] = []
    for lo, hi in ((0, 0x20000), (0xE0000, 0xF0000)):
        start: int | None = None
        for cp in range(lo, hi):
            hit = unicodedata.category(chr(cp)) in SHOWN_AS_CODE and cp not in (9, 10)
            if hit and start is None:
                start = cp
            elif not hit and start is not None:
                ranges.append((start, cp - 1))
                start = None
        if start is not None:
            ranges.append((start, hi - 1))
    body = "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)
    return re.compile(f"[{body}]")


def visible_segments(text: str, cls: str = "") -> list[Segment]:
    """Split text so that control/invisible characters become their own ``ctl`` segments
    showing the code point (display only; the ledger keeps the raw text). CRLF is shown as
    a line break. Linear in the text: one regular-expression scan."""
    out: list[Segment] = []
    buf: list[str] = []
    pos = 0
    ctl = f"{cls} {CTL}".strip()
    for m in _code_re().finditer(text):
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
        out.append(Segment(f"U+{ord(ch):04X}", ctl))
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
#: Characters shown before the first highlighted passage when a column shows part of a text.
INLINE_CONTEXT_CHARS = 300
#: The appendix splits a long text into blocks of about this size (at a line break or a blank
#: where there is one): WeasyPrint lays out one huge block in quadratic time.
APPENDIX_CHUNK_CHARS = 4000


@dataclass(frozen=True)
class LongText:
    """A text too long for its exhibit column, shown whole in the appendix of long texts."""

    ref: str
    anchor: str
    exhibit: str
    exhibit_anchor: str
    attempt_id: str
    what: str
    chars: str
    sha256: str
    """SHA-256 of the text's UTF-8 bytes (the ledger holds the text itself)."""
    chunks: list[list[Segment]]


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


def _segments_in(text: str, runs: list[tuple[int, int, str]], lo: int, hi: int,
                 ) -> list[Segment]:
    """Segments of text[lo:hi] given the marked runs of the whole text."""
    out: list[Segment] = []
    i = bisect.bisect_right([r[0] for r in runs], lo) - 1 if runs else 0
    for start, end, cls in runs[max(i, 0):]:
        if start >= hi:
            break
        a, b = max(start, lo), min(end, hi)
        if a < b:
            out.extend(visible_segments(text[a:b], cls))
    return out


def _column(text: str, ranges: list[tuple[int, int, str]], *, offset: int = 0, focus: int = 0,
            what: str, exhibit: tuple[str, str, str], longs: list[LongText]) -> list[Segment]:
    """Segments of one exhibit column. A text longer than INLINE_MAX_CHARS is shown from a
    little before ``focus`` (a position in text) and whole in the appendix, and the column
    says so at each cut: nothing is truncated silently."""
    n = len(text)
    if n <= INLINE_MAX_CHARS:
        return paint(text, ranges, offset)
    runs = marks(n, ranges, offset)
    number = len(longs) + 1
    ref = f"L-{number}"
    longs.append(LongText(
        ref=ref, anchor=f"long-{number}", exhibit=exhibit[0], exhibit_anchor=exhibit[1],
        attempt_id=exhibit[2], what=what, chars=f"{n:,}",
        sha256=sha256_bytes(text.encode("utf-8", "surrogatepass")),
        chunks=[_segments_in(text, runs, lo, hi) for lo, hi in chunk_bounds(text)]))
    w0 = max(0, min(focus - INLINE_CONTEXT_CHARS, n - INLINE_MAX_CHARS))
    w1 = min(n, w0 + INLINE_MAX_CHARS)
    shown = (f"[casekit: this column shows characters {w0 + 1:,}\u2013{w1:,} of {n:,}; the "
             f"whole text is Appendix {ref}]")
    out: list[Segment] = []
    if w0 > 0:
        out.append(Segment(shown + "\n", ELIDED))
    out += _segments_in(text, runs, w0, w1)
    if w1 < n:
        out.append(Segment("\n" + shown, ELIDED))
    return out


#: A run of non-blank characters longer than this may not fit an exhibit column.
LONG_RUN = 24
_LONG_RUN_RE = re.compile(rf"\S{{{LONG_RUN + 1},}}")


def _wrap_class(segments: Iterable[Segment]) -> str:
    """``break-all`` for a column whose displayed text holds a run too long for it.

    Ordinary text keeps its words whole; a long run (a hostile token, a URL) is broken at any
    character. Plain ``overflow-wrap: anywhere`` is not enough in WeasyPrint 70: a word that
    starts inside one inline box (a highlight) and continues in the next never wraps.
    """
    shown = "".join(s.text for s in segments)
    return "break-all" if _LONG_RUN_RE.search(shown) else ""


def _token_bounds(tokens: Any, i: int) -> tuple[int, int]:
    return int(tokens.starts[i]), int(tokens.ends[i])


def _opcode_ranges(tokens: Any, spans: Sequence[SpanFinding], side: str,
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


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class KV:
    label: str
    value: str
    note: str = ""


@dataclass(frozen=True)
class Cover:
    case_id: str
    title: str
    matter: str
    examiner: str
    organization: str
    date: str
    """The run's recorded start date (UTC), not the time of rendering."""
    started_at: str
    pdf_date: str
    """The run's start to the second (the PDF's creation date, in its info and XMP alike)."""
    ended_at: str
    casekit_version: str
    analysis_version: str
    ledger_head_hash: str
    ledger_records: str
    run_id: str
    completeness: str
    complete: bool


@dataclass(frozen=True)
class RateView:
    k_of_n: str
    pct: str
    ci: str

    @property
    def text(self) -> str:
        return f"{self.k_of_n} ({self.pct}; {self.ci})" if self.ci else self.k_of_n


def rate_view(r: Rate) -> RateView:
    if r.n == 0 or r.rate is None:
        return RateView("0 of 0", DASH, "no attempts: no estimate")
    method = {"wilson": "Wilson", "clopper-pearson": "exact Clopper-Pearson"}.get(r.method,
                                                                                 r.method)
    return RateView(f"{r.k:,} of {r.n:,}", fmt_pct(r.rate),
                    f"95% CI {fmt_pct(r.lo)}\u2013{fmt_pct(r.hi)}, {method}")


@dataclass(frozen=True)
class FloorView:
    model_id: str
    available: bool
    attempts: RateView
    upper_95: str
    max_coverage: str
    max_bmc5: str
    mean_top1: str
    control_works: list[str]
    sentence: str
    by_intent: dict[str, RateView] = field(default_factory=dict)
    """Control attempts with a span, per intent (benign, adversarial)."""


@dataclass(frozen=True)
class SummaryRow:
    model_id: str
    work_id: str
    work_title: str
    work_author: str
    role: str
    regurgitation: RateView
    extraction: RateView
    coverage: str
    covered_words: str
    longest_block: str
    bmc5: str
    bmc_all: str
    top1: str
    top1_detail: str
    status: str
    status_class: str
    reason: str
    outcomes: str
    exhibits: str
    floor: FloorView | None


@dataclass(frozen=True)
class ModelSummary:
    model_id: str
    requested: str
    rows: list[SummaryRow]
    floor: FloorView | None


@dataclass(frozen=True)
class TFRow:
    work_id: str
    work_title: str
    windows: str
    mean: str
    range: str
    greedy: str


@dataclass(frozen=True)
class TFModel:
    model_id: str
    rows: list[TFRow]
    control_mean: str
    control_windows: str


@dataclass(frozen=True)
class StrategyView:
    key: str
    name: str
    intent: str
    description: str
    params: list[KV]
    models: str
    works: str
    attempts: str


@dataclass(frozen=True)
class Methods:
    profiles: list[KV]
    thresholds: list[KV]
    definitions: list[KV]
    categories: list[KV]
    strategies: list[StrategyView]
    decoding: list[KV]
    legal_defaults: bool
    legal_note: str


@dataclass(frozen=True)
class PromptPart:
    role: str
    segments: list[Segment]


@dataclass(frozen=True)
class ExcerptView:
    work_chars: str
    work_words: str
    words: str
    matched_words: str
    similarity: str
    verbatim: str
    out_chars: str
    segments: list[Segment]


@dataclass(frozen=True)
class Exhibit:
    number: str
    anchor: str
    attempt_id: str
    model_id: str
    work_id: str
    work_title: str
    role: str
    strategy_key: str
    intent: str
    label: str
    outcome: str
    seq: str
    record_hash: str
    started_at: str
    completed_at: str
    requested_model: str
    returned_model: str
    details: list[KV]
    decoding: str
    work_sha256: str
    longest_words: str
    prompt: list[PromptPart]
    output: list[Segment]
    excerpts: list[ExcerptView]
    highlight_note: str
    long_texts: list[KV]
    """Texts of this exhibit shown whole in the appendix: (ref, anchor, description)."""
    imported: bool
    """Captured outside casekit (``casekit import``): labelled so, decoding unknown."""
    wrap: dict[str, str]
    """CSS class per column (``prompt``, ``output``, ``work``): ``break-all`` where a run of
    non-blank characters is too long for the column, else ""."""


@dataclass(frozen=True)
class ExhibitGroup:
    model_id: str
    work_id: str
    work_title: str
    role: str
    exhibits: list[Exhibit]
    total: int
    more_text: str


@dataclass(frozen=True)
class AttemptRow:
    attempt_id: str
    seq: str
    model_id: str
    work_id: str
    role: str
    strategy_key: str
    intent: str
    outcome: str
    longest_words: str
    top1: str
    exhibit: str
    exhibit_anchor: str
    reaches_threshold: bool


@dataclass(frozen=True)
class WorkRow:
    id: str
    title: str
    author: str
    role: str
    edition: str
    registration: str
    published: str
    path: str
    sha256: str
    chars: str
    words: str
    excluded_chars: str


@dataclass(frozen=True)
class ModelRow:
    model_id: str
    provider: str
    model: str
    interface: str
    can_score: str
    identity: list[KV]


@dataclass(frozen=True)
class NoteRow:
    seq: str
    recorded_at: str
    kind: str
    message: str


@dataclass(frozen=True)
class Manifest:
    run_id: str
    case_path: str
    case_sha256: str
    plan_sha256: str
    planned_attempts: str
    recorded_attempts: str
    imported_attempts: str
    """Outputs captured outside casekit, counted apart from the planned attempts."""
    ledger_head_hash: str
    ledger_records: str
    started_at: str
    ended_at: str
    works: list[WorkRow]
    models: list[ModelRow]
    versions: list[KV]
    git: list[KV]
    host: list[KV]
    argv: str
    notes: list[NoteRow]


@dataclass(frozen=True)
class Bates:
    """Bates numbering of the pages: ``PREFIX-000001`` from the case file's ``case.bates``."""

    prefix: str
    start: int
    reset: int
    """Value the ``bates`` page counter is reset to on the first page (start - 1: the counter is
    incremented on every page, the first included)."""
    first: str
    """The first page's number as printed."""


@dataclass(frozen=True)
class FileHash:
    label: str
    name: str
    sha256: str
    size: str
    where: str
    """Whether the file travels inside the PDF (and as what), or where it is."""


@dataclass(frozen=True)
class Evidence:
    """The files the report is made from, with their hashes: the certification page and the
    chain of custody show them; manifest.json (attached) holds them too."""

    files: list[FileHash]
    templates_sha256: str
    template_overrides: list[str]
    pdf_variant: str
    attach_works: bool
    attachment_names: list[str]


@dataclass(frozen=True)
class CustodyEvent:
    when: str
    seq: str
    event: str


@dataclass(frozen=True)
class Custody:
    operator: list[KV]
    events: list[CustodyEvent]


@dataclass(frozen=True)
class ReliabilityRow:
    """One model's record of failures: every try of every attempt, from the ledger."""

    model_id: str
    attempts: str
    ok: str
    refused: str
    """Refusals: by the provider (stop reason / content filter) and by text."""
    filtered: str
    """Responses that ended with a content-filter stop reason."""
    failed: str
    """Attempts that ended in an error after their last try."""
    tries: str
    retried: str
    """Attempts that needed more than one try."""
    failed_tries: str
    """Failed tries by kind: transient, rate limit, not retried."""
    retry_after: str
    """Tries whose failure carried a Retry-After the runner honoured."""
    most_tries: str
    dropped: str
    """Requests sent again without a parameter the model rejected (allow_drop_unsupported)."""


@dataclass(frozen=True)
class ReliabilityError:
    attempt_id: str
    model_id: str
    seq: str
    kind: str
    type: str
    message: str
    tries: str


@dataclass(frozen=True)
class Reliability:
    rows: list[ReliabilityRow]
    errors: list[ReliabilityError]
    """Attempts that ended in an error, in ledger order (at most RELIABILITY_ERRORS_SHOWN)."""
    errors_total: int
    error_types: list[KV]
    """Failed tries by exception type (all of them)."""


RELIABILITY_ERRORS_SHOWN = 50


@dataclass(frozen=True)
class RerunView:
    """This run as a re-run of another (``casekit rerun``): the link from the ledger, and the
    attempt-by-attempt comparison when it is attached."""

    first_run: str
    first_head: str
    first_dir: str
    compared: bool
    note: str
    models: list[list[str]]
    """Per model: id, attempts, same output, same spans, same outcome."""
    differing: list[list[str]]
    """Attempts whose outcome or spans differ: id, model, work, first -> second outcome,
    same output, same spans (at most RERUN_DIFFS_SHOWN)."""
    differing_total: int
    sha256: str


RERUN_DIFFS_SHOWN = 40


def _rerun(f: Findings, inputs: Inputs) -> RerunView | None:
    """The reproducibility section: present when the ledger says this run repeats another."""
    link = inputs.start.rerun_of
    if not link:
        return None
    first, head = str(link.get("run_id", "")), str(link.get("ledger_head_hash", ""))
    if inputs.comparison_bytes is None:
        return RerunView(first_run=first, first_head=head, first_dir=str(link.get("run_dir")),
                         compared=False, note="no comparison.json in this run's folder (the "
                         "re-run did not complete, or the file was removed)", models=[],
                         differing=[], differing_total=0, sha256="")
    from casekit.analysis.compare import Comparison

    try:
        cmp = Comparison.model_validate_json(inputs.comparison_bytes)
    except ValueError as exc:
        raise CasekitError(f"{COMPARISON_ATTACHMENT} of run {f.run_id} is not a casekit "
                           f"comparison ({str(exc).splitlines()[0]}); run casekit rerun "
                           "again or remove the file") from None
    if cmp.second_run != inputs.start.run_id or cmp.first_run != first:
        raise CasekitError(f"{COMPARISON_ATTACHMENT} compares runs {cmp.first_run} and "
                           f"{cmp.second_run}, not {first} and {inputs.start.run_id}; remove it "
                           "or run casekit rerun again")
    note = ("computed by casekit rerun from both ledgers when this run ended"
            + ("" if cmp.second_ledger_head == f.ledger_head_hash else
               f" (this ledger's head was then {cmp.second_ledger_head}; records were added "
               "since)"))

    def frac(k: int, n: int) -> str:
        return f"{k:,} of {n:,} ({fmt_pct(k / n) if n else DASH})"

    models = [[m.model_id, f"{m.attempts:,}", frac(m.same_output, m.attempts),
               frac(m.same_spans, m.attempts), frac(m.same_outcome, m.attempts)]
              for m in cmp.models]
    diff = [a for a in cmp.attempts if not (a.same_outcome and a.same_spans)]
    rows = [[a.attempt_id, a.model_id, a.work_id, f"{a.first_outcome} → {a.second_outcome}",
             {True: "yes", False: "no", None: DASH}[a.same_output],
             "yes" if a.same_spans else "no"] for a in diff[:RERUN_DIFFS_SHOWN]]
    return RerunView(first_run=cmp.first_run, first_head=cmp.first_ledger_head,
                     first_dir=str(link.get("run_dir")), compared=True, note=note,
                     models=models, differing=rows, differing_total=len(diff),
                     sha256=sha256_bytes(inputs.comparison_bytes))


def _reliability(f: Findings, inputs: Inputs, model_ids: list[str]) -> Reliability:
    """Every try of every attempt, per model: the record a court asks for when a result is
    challenged as the survivor of many failed attempts (nothing here is sampled)."""
    by_model: dict[str, list[AttemptRecord]] = {m: [] for m in model_ids}
    for rec in inputs.attempts_by_seq.values():
        by_model.setdefault(rec.attempt.model_id, []).append(rec)
    analysis = {x.attempt_id: x for x in f.attempts}
    rows: list[ReliabilityRow] = []
    errors: list[ReliabilityError] = []
    types: dict[str, int] = {}
    for mid, recs in by_model.items():
        if not recs:
            continue
        kinds = {"transient": 0, "rate_limit": 0, "no_retry": 0, "unknown": 0}
        tries = retried = after = most = dropped = filtered = 0
        refused: dict[str, int] = {}
        ok = failed = 0
        for rec in sorted(recs, key=lambda r: r.seq):
            n = len(rec.tries)
            tries += n
            most = max(most, n)
            retried += n > 1
            for t in rec.tries:
                if t.error is not None:
                    kinds[t.error.kind] = kinds.get(t.error.kind, 0) + 1
                    types[t.error.type] = types.get(t.error.type, 0) + 1
                    after += t.retry_after is not None
            raw = rec.result.raw_request if rec.result else None
            if isinstance(raw, dict) and raw.get("dropped"):
                dropped += 1
            if rec.result is not None and rec.result.finish_reason == "content_filter":
                filtered += 1
            x = analysis.get(rec.attempt.id)
            if x is not None and x.refusal_source:
                refused[x.refusal_source] = refused.get(x.refusal_source, 0) + 1
            if rec.status == "error":
                failed += 1
                e = rec.error
                errors.append(ReliabilityError(
                    attempt_id=rec.attempt.id, model_id=mid, seq=str(rec.seq),
                    kind=e.kind.replace("_", " ") if e else "unknown",
                    type=e.type if e else "unknown",
                    message=(e.message[:300] + ("…" if len(e.message) > 300 else ""))
                    if e else "", tries=f"{n:,}"))
            elif rec.status == "ok":
                ok += 1
        ref_total = sum(refused.values())
        rows.append(ReliabilityRow(
            model_id=mid, attempts=f"{len(recs):,}", ok=f"{ok:,}",
            refused=f"{ref_total:,}" + (" (" + ", ".join(
                f"{k} {v:,}" for k, v in sorted(refused.items())) + ")" if ref_total else ""),
            filtered=f"{filtered:,}", failed=f"{failed:,}",
            tries=f"{tries:,}" + (" (imported: no tries)" if any(
                r.attempt.strategy == IMPORT_STRATEGY for r in recs) else ""),
            retried=f"{retried:,}",
            failed_tries=(f"{kinds['transient']:,} transient, {kinds['rate_limit']:,} rate "
                          f"limit, {kinds['no_retry']:,} not retried"
                          + (f", {kinds['unknown']:,} unknown" if kinds["unknown"] else "")),
            retry_after=f"{after:,}", most_tries=f"{most:,}", dropped=f"{dropped:,}"))
    errors.sort(key=lambda e: int(e.seq))
    return Reliability(rows=rows, errors=errors[:RELIABILITY_ERRORS_SHOWN],
                       errors_total=len(errors),
                       error_types=[KV(k, f"{v:,}") for k, v in sorted(
                           types.items(), key=lambda kv: (-kv[1], kv[0]))])


@dataclass(frozen=True)
class ReportModel:
    """Everything the templates show. ``r`` in the templates."""

    cover: Cover
    overview: list[SummaryRow]
    summary: list[ModelSummary]
    absence_caveat: str
    category_text: dict[str, str]
    tf_models: list[TFModel]
    methods: Methods
    controls: list[FloorView]
    control_works: list[str]
    exhibit_groups: list[ExhibitGroup]
    exhibits_shown: int
    exhibits_total: int
    exhibits_per_finding: int
    attempts: list[AttemptRow]
    attempt_counts: list[KV]
    manifest: Manifest
    limitations: list[str]
    bates: Bates
    evidence: Evidence
    custody: Custody
    long_texts: list[LongText] = field(default_factory=list)
    long_text_limit: str = f"{INLINE_MAX_CHARS:,}"
    thresholds: dict[str, str] = field(default_factory=dict)
    further: Further | None = None
    reliability: Reliability | None = None
    """Errors, retries, rate limits, refusals and filters per model, from the ledger's tries."""
    rerun: RerunView | None = None
    """Reproducibility: this run repeats another (``casekit rerun``)."""
    control_override: str = ""
    """Non-empty when the case overrode the control-work requirement (``allow_no_control``
    with no control work): printed on the cover and at the top of the summary."""


@dataclass(frozen=True)
class ReportPaths:
    html: Path
    pdf: Path


# --------------------------------------------------------------------------- inputs


@dataclass
class Inputs:
    records: list[LedgerRecord]
    start: RunStart
    case: CaseFile
    works: dict[str, Work]
    attempts_by_seq: dict[int, AttemptRecord]
    ledger_bytes: bytes = b""
    """The ledger file as verified (embedded in the PDF byte for byte)."""
    work_bytes: dict[str, bytes] = field(default_factory=dict)
    """Work id -> the file's bytes (their SHA-256 is the run's recorded hash)."""
    comparison_bytes: bytes | None = None
    """comparison.json written by ``casekit rerun`` into this run's folder, if any."""


def load_inputs(run_dir: Path, findings: Findings, case_path: Path | None = None) -> Inputs:
    """The verified ledger and the works, checked against the findings and the run's hashes.

    ``case_path``: where the case file is now, if it moved since the run (its works are found
    relative to it); default: the path the run recorded.
    """
    ledger_bytes = (run_dir / LEDGER_NAME).read_bytes()
    records = read_records(run_dir / LEDGER_NAME)
    if _last_hash(ledger_bytes) != records[-1].hash or \
            ledger_bytes.count(b"\n") != len(records):
        raise CasekitError(f"{run_dir / LEDGER_NAME}: the ledger changed while it was read; "
                           "wait for the run to finish, then report")
    start = next((r for r in records if isinstance(r, RunStart)), None)
    if start is None:
        raise CasekitError(f"{run_dir}: the ledger has no run_start record")
    head = records[-1].hash or ""
    if findings.ledger_head_hash != head or findings.run_id != start.run_id:
        raise CasekitError(
            f"{run_dir}: the findings cite ledger head {findings.ledger_head_hash} of run "
            f"{findings.run_id!r}, the ledger's head is {head} of run {start.run_id!r}; re-run "
            "`casekit analyze` on this run before reporting")
    spec = CaseFile.model_validate(start.case)
    loaded = LoadedCase(spec=spec, path=(case_path or Path(start.case_path)).resolve(),
                        sha256=start.case_sha256)
    works = load_works(loaded)
    for w in works:
        rec = next((x for x in start.works if x.id == w.id), None)
        if rec is None or rec.sha256 != w.sha256:
            raise CasekitError(
                f"work {w.id!r} at {w.path} hashes to {w.sha256}, the run recorded "
                f"{rec.sha256 if rec else 'no such work'}; restore the original text to report "
                "on this run")
    work_bytes = {}
    for w in works:
        data = w.path.read_bytes()
        if sha256_bytes(data) != w.sha256:
            raise CasekitError(f"work {w.id!r} at {w.path} changed while it was read; report "
                               "again")
        work_bytes[w.id] = data
    by_seq = {r.seq: r for r in records if isinstance(r, AttemptRecord)}
    comparison = run_dir / COMPARISON_ATTACHMENT
    return Inputs(records=records, start=start, case=spec, works={w.id: w for w in works},
                  attempts_by_seq=by_seq, ledger_bytes=ledger_bytes, work_bytes=work_bytes,
                  comparison_bytes=comparison.read_bytes() if comparison.is_file() else None)


def _last_hash(ledger: bytes) -> str | None:
    """The ``hash`` of the last record of a ledger's bytes."""
    lines = ledger.rstrip(b"\n").rsplit(b"\n", 1)
    try:
        value = json.loads(lines[-1]).get("hash")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


# --------------------------------------------------------------------------- builders


def _floor_view(cf: ControlFloor | None, model_id: str, control_works: list[str]) -> FloorView:
    if cf is None or cf.attempts.n == 0:
        return FloorView(model_id=model_id, available=False, attempts=rate_view(
            cf.attempts) if cf else RateView("0 of 0", DASH, "no attempts: no estimate"),
            upper_95=DASH, max_coverage=DASH, max_bmc5=DASH,
            mean_top1=fmt_pct(cf.mean_top1_share) if cf else DASH,
            control_works=control_works,
            sentence=f"No control generation attempts for {model_id}: no measured "
                     "false-positive rate for this model.")
    rv = rate_view(cf.attempts)
    return FloorView(
        model_id=model_id, available=True, attempts=rv, upper_95=fmt_pct(cf.upper_95),
        max_coverage=fmt_pct(cf.max_coverage), max_bmc5=fmt_pct(cf.max_bmc5),
        mean_top1=fmt_pct(cf.mean_top1_share), control_works=control_works,
        by_intent={k: rate_view(v) for k, v in sorted(cf.by_intent.items())},
        sentence=(f"{rv.k_of_n} control attempts reached the reporting threshold; one-sided "
                  f"95% upper bound of the false-positive rate {fmt_pct(cf.upper_95)}."),
    )


def _summary_row(f: ModelWorkFinding, work: Work, floor: FloorView | None,
                 exhibit_refs: list[str]) -> SummaryRow:
    tf = f.teacher_forced
    outcomes = ", ".join(f"{o.replace('_', ' ')} {f.outcomes.get(o, 0):,}" for o in OUTCOME_ORDER)
    extra = sorted(set(f.outcomes) - set(OUTCOME_ORDER))
    if extra:
        outcomes += ", " + ", ".join(f"{o} {f.outcomes[o]:,}" for o in extra)
    return SummaryRow(
        model_id=f.model_id, work_id=f.work_id, work_title=work.spec.title,
        work_author=work.spec.author, role=f.role,
        regurgitation=rate_view(f.regurgitation), extraction=rate_view(f.extraction),
        coverage=fmt_pct(f.coverage.share),
        covered_words=f"{f.coverage.covered_words:,} of {f.coverage.total_words:,} words",
        longest_block=f"{f.coverage.longest_block_words:,} words",
        bmc5=fmt_pct(f.bmc.get("5")),
        bmc_all=", ".join(f"@{k} {fmt_pct(v)}" for k, v in
                          sorted(f.bmc.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit()
                                 else 10**9)),
        top1=fmt_pct(tf.mean_top1_share) if tf else DASH,
        top1_detail=(f"{tf.windows:,} windows, {tf.greedy_reproduced_windows:,} reproduced "
                     "greedily") if tf else "no teacher-forced windows",
        status=f.memorization, status_class=STATUS_CLASS.get(f.memorization, ""),
        reason=f.memorization_reason, outcomes=outcomes,
        exhibits=", ".join(exhibit_refs) if exhibit_refs else DASH,
        floor=floor,
    )


def _imported_provenance(rec: AttemptRecord) -> list[KV] | None:
    """The capture's provenance rows of an imported attempt, or None for one casekit sent."""
    raw = rec.result.raw_response if rec.result else None
    prov = raw.get("imported") if isinstance(raw, dict) else None
    if not isinstance(prov, dict):
        return None
    file_info = prov.get("file")
    file: dict[str, Any] = file_info if isinstance(file_info, dict) else {}
    shot = prov.get("screenshot")
    rows = [
        KV("Imported", "IMPORTED: captured outside casekit; casekit sent no request"),
        KV("Captured at", f"{prov.get('captured_at')} (UTC {prov.get('captured_at_utc')})"),
        KV("Captured by", str(prov.get("captured_by"))),
        KV("Source", str(prov.get("source"))),
        KV("Model as captured", str(prov.get("model"))),
        KV("Import file", f"{file.get('name')}, line {file.get('line')}, {file.get('sha256')}"),
        KV("Imported at (UTC)", str(prov.get("imported_at"))),
    ]
    if isinstance(shot, dict):
        rows.append(KV("Screenshot", f"{shot.get('path', shot.get('name'))}, "
                                     f"{shot.get('sha256')}"))
    elif shot:
        rows.append(KV("Screenshot", str(shot)))
    return rows


def _decoding_text(a: PlannedAttempt) -> str:
    d = a.decoding
    parts = [f"temperature {d.temperature:g}" + (" (greedy)" if d.temperature == 0 else ""),
             f"max_tokens {d.max_tokens}"]
    if d.top_p is not None:
        parts.append(f"top_p {d.top_p:g}")
    if d.top_k is not None:
        parts.append(f"top_k {d.top_k}")
    if d.seed is not None:
        parts.append(f"seed {d.seed}")
    if d.stop:
        parts.append("stop " + json.dumps(d.stop, ensure_ascii=False))
    parts.append(f"sample {a.sample}")
    return ", ".join(parts)


def _exhibit(number: int, analysis: AttemptAnalysis, rec: AttemptRecord, work: Work,
             requested: str, longs: list[LongText] | None = None) -> Exhibit:
    a = rec.attempt
    result = rec.result
    longs = [] if longs is None else longs
    first_long = len(longs)
    ex = (f"E-{number}", f"exhibit-{number}", a.id)
    quotes = [work.raw[r.start:r.end] for r in a.supplied]
    prompt: list[PromptPart] = []
    parts: list[tuple[str, str]] = [(m.role, m.content) for m in a.messages]
    if a.prompt is not None:
        parts.append(("prompt" if a.mode == "completion" else a.mode, a.prompt))
    for role, content in parts:
        ranges = supplied_ranges(content, quotes)
        prompt.append(PromptPart(role, _column(
            content, ranges, focus=min((r[0] for r in ranges), default=0),
            what=f"prompt ({role})", exhibit=ex, longs=longs)))
    text = (result.text if result else None) or ""
    spans = sorted(analysis.spans, key=lambda s: (s.out_char_start, s.work_char_start))
    out_tokens = tokenize(text, MATCH_PROFILE)
    out_ranges, out_exact = _opcode_ranges(out_tokens, spans, "out")
    # Echo: output text the model repeated from the prompt; marked like prompt-supplied text.
    output = _column(text, out_ranges + [(s, e, SUPPLIED) for s, e in analysis.echo_ranges],
                     focus=spans[0].out_char_start if spans else 0, what="model output",
                     exhibit=ex, longs=longs)
    work_exact = True
    excerpts = []
    for s in spans:
        # Each excerpt shows its own span's alignment only (spans may overlap in the work).
        work_ranges, exact = _opcode_ranges(work.tokens, [s], "work")
        work_exact = work_exact and exact
        excerpts.append(ExcerptView(
            work_chars=f"{s.work_char_start:,}\u2013{s.work_char_end:,}",
            work_words=f"{s.work_word_start:,}\u2013{s.work_word_end:,}",
            words=f"{s.words:,}", matched_words=f"{s.matched_words:,}",
            similarity=fmt_num(s.similarity), verbatim="verbatim" if s.verbatim else
            "near-verbatim",
            out_chars=f"{s.out_char_start:,}\u2013{s.out_char_end:,}",
            segments=_column(work.raw[s.work_char_start:s.work_char_end], work_ranges,
                             offset=s.work_char_start, exhibit=ex, longs=longs,
                             what=f"original text, work chars {s.work_char_start:,}\u2013"
                                  f"{s.work_char_end:,}"),
        ))
    note = ""
    if not (out_exact and work_exact):
        note = ("The recorded word offsets do not line up with this casekit version's "
                "tokenizer; whole spans are highlighted instead of word by word.")
    imported = _imported_provenance(rec)
    details = [
        KV("Attempt", a.id),
        KV("Ledger record", f"seq {rec.seq}, {rec.hash}"),
        KV("Completed (UTC)", rec.completed_at),
        KV("Requested model", requested),
        KV("Returned model", (result.returned_model if result and result.returned_model
                              else "not reported by the provider")),
    ]
    if result and result.system_fingerprint:
        details.append(KV("System fingerprint", result.system_fingerprint))
    if result and result.request_id:
        details.append(KV("Request id", result.request_id))
    if result and result.server_date:
        details.append(KV("Server date", result.server_date))
    if result and result.finish_reason:
        details.append(KV("Finish reason", result.finish_reason))
    decoding = (_decoding_text(a) if imported is None else
                "unknown: the request was sent outside casekit (imported output)")
    if imported is not None:
        details += imported
    details += [
        KV("Decoding", decoding),
        KV("Strategy", f"{a.strategy_key} ({a.intent})" + (f", {a.label}" if a.label else "")),
        KV("Work", f"{work.id}, {work.sha256}"),
        KV("Spans", "; ".join(
            f"work chars {e.work_chars}, {e.words} words ({e.matched_words} exact), "
            f"similarity {e.similarity}" for e in excerpts) or DASH),
    ]
    return Exhibit(
        number=f"E-{number}", anchor=f"exhibit-{number}", attempt_id=a.id,
        model_id=a.model_id, work_id=a.work_id, work_title=work.spec.title,
        role=analysis.role, strategy_key=a.strategy_key, intent=a.intent, label=a.label,
        outcome=analysis.outcome, seq=str(rec.seq), record_hash=rec.hash or "",
        started_at=rec.started_at, completed_at=rec.completed_at, requested_model=requested,
        returned_model=(result.returned_model if result and result.returned_model
                        else "not reported"),
        details=details, decoding=decoding, work_sha256=work.sha256,
        imported=imported is not None,
        longest_words=f"{analysis.longest_words:,}", prompt=prompt,
        output=output, excerpts=excerpts, highlight_note=note,
        long_texts=[KV(x.ref, x.anchor, f"{x.what}, {x.chars} characters")
                    for x in longs[first_long:]],
        wrap={"prompt": _wrap_class(s for p in prompt for s in p.segments),
              "output": _wrap_class(output),
              "work": _wrap_class(s for x in excerpts for s in x.segments)},
    )


def _strategy_info(name: str) -> tuple[str, str]:
    """(intent, description) of a registered strategy, or empty strings."""
    try:
        from casekit.strategies.base import strategy_class

        cls = strategy_class(name)
        return str(cls.intent), str(cls.description)
    except Exception:  # noqa: BLE001 - a missing plugin must not stop the report
        log.info("strategy %s is not installed: its description is left out", name)
        return "", ""


def _ordered(d: dict[str, Any], known: Iterable[str]) -> list[str]:
    """Keys of d: the known ones in their given order, then the rest sorted.

    Never the dict's own order: findings.json is canonical JSON (keys sorted), findings built
    in memory keep insertion order, and both must give the same report bytes.
    """
    first = [k for k in known if k in d]
    return first + sorted(set(d) - set(first))


def _methods(f: Findings, case: CaseFile, start: RunStart) -> Methods:
    profiles = []
    for use in _ordered(f.profiles, ("spans", "bmc")):
        prof = f.profiles[use]
        label = {"spans": "Spans, coverage and word thresholds", "bmc": "BMC@k"}.get(use, use)
        profiles.append(KV(label, prof, PROFILE_TEXT.get(prof, "")))
    thresholds = []
    for key in _ordered(f.thresholds, THRESHOLD_LABELS):
        val = f.thresholds[key]
        label, note = THRESHOLD_LABELS.get(key, (key, ""))
        if key == "substantial_portion_min_share" and isinstance(val, float):
            shown = f"{fmt_pct(val)} of the work's words"
        elif key in ("min_span_words", "substantial_portion_min_words", "echo_min_words",
                     "seed_k", "m_gram") and not isinstance(val, bool):
            shown = f"{val} words"
        else:
            shown = fmt_value(val)
        thresholds.append(KV(label, shown, note))
    # Each definition under its label and its key: the key is what "[p_z]" in the further
    # measures refers to.
    definitions = [KV(DEFINITION_LABELS.get(k) or FURTHER_DEFINITION_LABELS.get(k, k),
                      f.definitions[k], k)
                   for k in _ordered(f.definitions, DEFINITION_LABELS)]
    categories = [KV(k.capitalize(), v) for k, v in CATEGORY_TEXT.items()]
    counts: dict[str, int] = {}
    intents: dict[str, str] = {}
    for x in f.attempts:
        counts[x.strategy_key] = counts.get(x.strategy_key, 0) + 1
        intents.setdefault(x.strategy_key, x.intent)
    strategies = []
    for i, s in enumerate(case.strategies):
        key = f"{s.name}#{i}"
        intent, description = _strategy_info(s.name)
        strategies.append(StrategyView(
            key=key, name=s.name, intent=intents.get(key, intent) or DASH,
            description=description or DASH,
            params=[KV(k, fmt_value(v)) for k, v in sorted(s.params.items())],
            models=", ".join(s.models) if s.models is not None else "all models",
            works=", ".join(s.works) if s.works is not None else "all works",
            attempts=f"{counts.get(key, 0):,}",
        ))
    d = case.decoding
    decoding = [
        KV("Temperature", f"{d.temperature:g}", "sample 0 of every prompt is greedy "
           "(temperature 0); further samples use this temperature"),
        KV("Max tokens", str(d.max_tokens), "strategies may set their own per prompt"),
        KV("top_p", fmt_value(d.top_p) if d.top_p is not None else "not set"),
        KV("top_k", fmt_value(d.top_k) if d.top_k is not None else "not set"),
        KV("Samples per prompt", str(case.samples)),
        KV("Seed", str(case.seed), "seed of the plan; sample s is sent with seed + s where "
           "the provider supports one"),
    ]
    legal = bool(f.thresholds.get("legal_defaults", True))
    legal_note = "" if legal else (
        f"The case lowered the thresholds below the legal defaults ({LEGAL_DEFAULT_TEXT}): "
        f"a span counts here from {f.thresholds.get('min_span_words')} words. Figures in this "
        "report are not comparable with findings made at the legal defaults.")
    return Methods(profiles=profiles, thresholds=thresholds, definitions=definitions,
                   categories=categories, strategies=strategies, decoding=decoding,
                   legal_defaults=legal, legal_note=legal_note)


def _identity_kv(identity: dict[str, Any]) -> list[KV]:
    return [KV(k, fmt_value(v)) for k, v in sorted(identity.items())]


def _manifest(f: Findings, inp: Inputs, end: RunEnd | None) -> Manifest:
    st = inp.start
    works = []
    for wm in st.works:
        spec = next((w for w in inp.case.works if w.id == wm.id), None)
        works.append(WorkRow(
            id=wm.id, title=wm.title, author=wm.author, role=wm.role,
            edition=(spec.edition if spec and spec.edition else DASH),
            registration=(spec.registration if spec and spec.registration else DASH),
            published=(spec.published.isoformat() if spec and spec.published else DASH),
            path=wm.path, sha256=wm.sha256, chars=f"{wm.chars:,}", words=f"{wm.words:,}",
            excluded_chars=f"{wm.excluded_chars:,}",
        ))
    models = [ModelRow(model_id=m.model_id, provider=m.provider, model=m.model,
                       interface=m.interface, can_score="yes" if m.can_score else "no",
                       identity=_identity_kv(m.identity)) for m in st.models]
    notes = [NoteRow(str(n.seq), n.recorded_at, n.kind, n.message)
             for n in inp.records if isinstance(n, Note)]
    return Manifest(
        run_id=st.run_id, case_path=st.case_path, case_sha256=st.case_sha256,
        plan_sha256=st.plan_sha256, planned_attempts=f"{st.planned_attempts:,}",
        recorded_attempts=f"{f.recorded_attempts:,}",
        imported_attempts=f"{f.imported_attempts:,}", ledger_head_hash=f.ledger_head_hash,
        ledger_records=f"{f.ledger_records:,}", started_at=st.began_at,
        ended_at=end.recorded_at if end else "no run_end record (run not finished)",
        works=works, models=models,
        versions=[KV(k, v if v is not None else "not installed")
                  for k, v in sorted(st.versions.items())],
        git=[KV(k, fmt_value(v)) for k, v in sorted(st.git.items())],
        host=[KV(k, v) for k, v in sorted(st.host.items())],
        argv=" ".join(st.argv), notes=notes,
    )


def _limitations(f: Findings, case: CaseFile, floors: list[FloorView],
                 inputs: Inputs | None = None) -> list[str]:
    th = f.thresholds
    gen = [x for x in f.attempts if x.mode != "score"]
    echo = sum(x.echo_words for x in gen)
    echoed = sum(1 for x in gen if x.echo_words)
    out = [
        f"Prompt echo is discounted: output runs of {th.get('echo_min_words', 5)} or more words "
        f"found in the prompt were removed before matching ({echo:,} words in {echoed:,} of "
        f"{len(gen):,} generation attempts), and work text the tester supplied in a prompt is "
        "never credited to the model. Exhibits mark that supplied text in the prompt column.",
        "Widely quoted text: a span may reproduce a passage that circulates on its own "
        "(famous openings, epigraphs, public-domain quotations inside the work); such a passage "
        "can reach a model through quotations rather than the work. casekit does not check "
        "whether a matched passage is quoted elsewhere. Short spans (8 words or fewer) occur by "
        f"chance between unrelated texts, so no span under {th.get('min_span_words')} words "
        "counts here.",
        ABSENCE_CAVEAT,
        "Outputs vary between calls (sampling, provider-side changes). Every figure is over the "
        f"attempts recorded in this ledger ({case.samples} sample(s) per prompt); repeated "
        "samples and overlapping windows are not independent, and the intervals here treat "
        "attempts as independent.",
    ]
    errors = sum(1 for x in f.attempts if x.outcome == "error")
    refusals = sum(1 for x in f.attempts if x.outcome == "refusal")
    unscorable = sum(1 for x in f.attempts if x.outcome == "unscorable")
    if errors or refusals or unscorable:
        out.append(f"Attempts that ended in an error: {errors:,}; in a refusal: {refusals:,}; "
                   f"that could not be scored: {unscorable:,}. Each stays in every denominator "
                   "and in the table of every attempt.")
    if not f.complete or f.recorded_attempts < f.planned_attempts:
        out.append(f"The run is incomplete: {f.recorded_attempts:,} of {f.planned_attempts:,} "
                   "planned attempts were recorded. The figures cover the recorded attempts "
                   "only.")
    if f.imported_attempts:
        out.append(f"Imported outputs: {f.imported_attempts:,} attempt(s) were captured outside "
                   "casekit (casekit import) and are counted in the figures with the intent "
                   "their importer declared. casekit did not send those requests: their "
                   "prompts, times and decoding parameters are as the capture states them and "
                   "cannot be re-run or verified against the provider; each is labelled "
                   "IMPORTED in its exhibit and in the table of every attempt.")
    missing = [fv.model_id for fv in floors if not fv.available]
    if missing:
        out.append("No control generation attempts for " + ", ".join(missing) + ": no "
                   "false-positive rate was measured for that model, and its figures stand "
                   "without a floor.")
    return out + (_data_limitations(f, inputs) if inputs is not None else [])


#: Request fields that give a model tools or retrieval; response markers of their use.
TOOL_REQUEST_KEYS = ("tools", "tool_choice", "functions", "function_call", "web_search_options",
                     "plugins", "retrieval", "file_search", "mcp_servers")
TOOL_RESPONSE_MARKERS = ('"tool_calls"', '"tool_use"', '"server_tool_use"', '"function_call"',
                         'web_search', '"citations"', '"annotations":[{')
#: Work words from the start that count as the opening (the most widely quoted part).
OPENING_WORDS = 200
_DATED_MODEL_RE = re.compile(r"\d{4}-?\d{2}-?\d{2}|\d{8}|@\d|-\d{3,4}$")


def _data_limitations(f: Findings, inputs: Inputs) -> list[str]:
    """Limitations read off this run's own data: tools and retrieval, model aliases and
    identity changes, openings and excluded passages, filters, small samples."""
    out: list[str] = []
    attempts = [r for r in inputs.records if isinstance(r, AttemptRecord)]
    # Retrieval and tools.
    tooled_req = sum(1 for r in attempts if r.result and any(
        r.result.raw_request.get(k) for k in TOOL_REQUEST_KEYS))
    tooled_resp = 0
    for r in attempts:
        if r.result and r.result.raw_response:
            raw = json.dumps(r.result.raw_response, ensure_ascii=False)
            tooled_resp += any(m in raw for m in TOOL_RESPONSE_MARKERS)
    if tooled_req or tooled_resp:
        out.append(f"Retrieval or tools: {tooled_req:,} recorded request(s) offered the model "
                   f"tools or retrieval ({', '.join(TOOL_REQUEST_KEYS[:4])}...) and "
                   f"{tooled_resp:,} response(s) report a tool call or citations. Text in those "
                   "outputs may have been retrieved rather than recalled.")
    else:
        out.append(f"Retrieval or tools: none of the {len(attempts):,} recorded requests offered "
                   "tools, functions or retrieval, and no recorded response reports a tool call "
                   "(each raw request and response in the ledger was checked). A provider could "
                   "still retrieve text on its side without reporting it.")
    # Model identity: aliases, several returned ids, changing fingerprints.
    for m in inputs.start.models:
        mine = [r.result for r in attempts if r.attempt.model_id == m.model_id and r.result]
        returned = sorted({x.returned_model for x in mine if x.returned_model})
        prints = sorted({x.system_fingerprint for x in mine if x.system_fingerprint})
        notes = []
        if m.provider != "local" and not _DATED_MODEL_RE.search(m.model):
            notes.append(f"was requested as {m.model!r}, a name that may be an alias the "
                         "provider points at different snapshots over time")
        if len(returned) > 1:
            notes.append(f"returned {len(returned)} different model ids "
                         f"({', '.join(returned[:5])}{', ...' if len(returned) > 5 else ''})")
        elif returned and returned[0] != m.model:
            notes.append(f"was requested as {m.model!r} and reported itself as "
                         f"{returned[0]!r}")
        if len(prints) > 1:
            notes.append(f"reported {len(prints)} different system fingerprints during the "
                         "run (the serving configuration changed)")
        if notes:
            out.append(f"Model {m.model_id} " + "; ".join(notes) + ". Figures for it describe "
                       "the model as served during this run.")
    # Widely quoted openings and excluded passages.
    threshold = int(f.thresholds.get("min_span_words", 0))
    hits = [x for x in f.attempts if x.mode != "score" and x.longest_words >= threshold
            and x.role == "subject"]
    opening = sum(1 for x in hits if any(s.work_word_start < OPENING_WORDS for s in x.spans))
    if hits:
        out.append(f"Openings: {opening:,} of the {len(hits):,} subject attempts that reached the "
                   f"reporting threshold reproduce text within the first {OPENING_WORDS} words of "
                   "the work, the part most often quoted on its own; matches deeper in a work are "
                   "harder to explain by quotation.")
    excluded = [(w.id, e) for w in inputs.works.values() for e in w.excluded]
    if excluded:
        out.append("Excluded passages (never counted): " + "; ".join(
            f"{wid}: characters {e.start:,}\u2013{e.end:,} ({e.reason})"
            for wid, e in excluded[:12]) + ("; ..." if len(excluded) > 12 else "") + ".")
    else:
        out.append("No passage of any work was excluded: quotations of third-party or "
                   "public-domain text inside a work, if any, count as the work's own text.")
    # Filters and refusals by source.
    filtered = sum(1 for r in attempts if r.result and r.result.finish_reason in (
        "content_filter", "refusal"))
    by_source: dict[str, int] = {}
    for x in f.attempts:
        if x.refusal_source:
            by_source[x.refusal_source] = by_source.get(x.refusal_source, 0) + 1
    if filtered or by_source:
        out.append(f"Refusals and filters: {filtered:,} response(s) ended with a content filter or "
                   f"refusal stop reason; refusals by source: "
                   + ", ".join(f"{k} {v:,}" for k, v in sorted(by_source.items()))
                   + ". A refused or filtered attempt shows nothing either way and stays in "
                   "every denominator.")
    # Small samples.
    small = sorted({mw.model_id + " \u00d7 " + mw.work_id for mw in f.findings
                    if mw.role == "subject" and any(0 < r.n < 30 for r in (
                        mw.regurgitation, mw.extraction))})
    if small:
        out.append("Small samples: fewer than 30 attempts stand behind a rate of "
                   + ", ".join(small[:8]) + ("..." if len(small) > 8 else "")
                   + "; the 95% interval printed beside each figure shows how little a single "
                   "attempt more or less would change.")
    return out


@dataclass
class _Exhibits:
    groups: list[ExhibitGroup]
    anchor_of: dict[str, tuple[str, str]]
    """attempt id -> (exhibit number, anchor) of the exhibits shown."""
    refs_of: dict[tuple[str, str], list[str]]
    """(model, work) -> exhibit numbers shown."""
    shown: int
    total: int
    longs: list[LongText] = field(default_factory=list)
    """Texts too long for their exhibit column, shown whole in the appendix."""


def _exhibits(f: Findings, inputs: Inputs, requested: dict[str, str], per_finding: int,
              ) -> _Exhibits:
    """The exhibits, numbered in findings order, each checked against its ledger record."""
    analyses = {x.attempt_id: x for x in f.attempts}
    out = _Exhibits([], {}, {}, 0, 0)
    for mw in f.findings:
        ids = list(mw.exhibit_attempts)
        out.total += len(ids)
        shown: list[Exhibit] = []
        for aid in ids[:per_finding]:
            an = analyses.get(aid)
            if an is None:
                raise CasekitError(f"exhibit attempt {aid} is not among the findings' attempts; "
                                   "the findings are inconsistent: re-run `casekit analyze`")
            rec = inputs.attempts_by_seq.get(an.seq)
            if rec is None or rec.attempt.id != aid or rec.hash != an.record_hash:
                raise CasekitError(f"exhibit attempt {aid} (seq {an.seq}) is not in the ledger "
                                   "as the findings record it; re-run `casekit analyze`")
            out.shown += 1
            ex = _exhibit(out.shown, an, rec, inputs.works[an.work_id],
                          requested.get(an.model_id, an.model_id), out.longs)
            shown.append(ex)
            out.anchor_of[aid] = (ex.number, ex.anchor)
        out.refs_of[(mw.model_id, mw.work_id)] = [e.number for e in shown]
        if not ids:
            continue
        more = len(ids) - len(shown)
        more_text = (f"{more:,} more attempt(s) reached the reporting threshold for this model "
                     "and work; all of them are listed in the table of every attempt."
                     if more else "Every attempt that reached the reporting threshold for this "
                     "model and work is shown.")
        out.groups.append(ExhibitGroup(
            model_id=mw.model_id, work_id=mw.work_id,
            work_title=inputs.works[mw.work_id].spec.title, role=mw.role, exhibits=shown,
            total=len(ids), more_text=more_text))
    return out


def _tf_models(f: Findings, works: dict[str, Work], model_ids: list[str]) -> list[TFModel]:
    """Per model: each subject work's mean teacher-forced top-1 share beside the control's."""
    out: list[TFModel] = []
    for mid in model_ids:
        subj = [mw for mw in f.findings if mw.model_id == mid and mw.role == "subject"
                and mw.teacher_forced is not None]
        ctrl = [mw for mw in f.findings if mw.model_id == mid and mw.role == "control"
                and mw.teacher_forced is not None]
        if not subj and not ctrl:
            continue
        rows: list[TFRow] = []
        for mw in subj:
            tf = mw.teacher_forced
            assert tf is not None
            rows.append(TFRow(work_id=mw.work_id, work_title=works[mw.work_id].spec.title,
                              windows=f"{tf.windows:,}", mean=fmt_pct(tf.mean_top1_share),
                              range=f"{fmt_pct(tf.min_top1_share)}\u2013"
                                    f"{fmt_pct(tf.max_top1_share)}",
                              greedy=f"{tf.greedy_reproduced_windows:,} of {tf.windows:,}"))
        cf = next((c for c in f.controls if c.model_id == mid), None)
        cwin = sum(mw.teacher_forced.windows for mw in ctrl if mw.teacher_forced)
        out.append(TFModel(model_id=mid, rows=rows,
                           control_mean=fmt_pct(cf.mean_top1_share) if cf else DASH,
                           control_windows=f"{cwin:,}"))
    return out


def _attempt_rows(f: Findings, anchor_of: dict[str, tuple[str, str]]) -> list[AttemptRow]:
    threshold = int(f.thresholds.get("min_span_words", 0))
    rows = []
    for x in sorted(f.attempts, key=lambda x: (x.seq, x.attempt_id)):
        number, anchor = anchor_of.get(x.attempt_id, ("", ""))
        outcome = x.outcome.replace("_", " ")
        if x.refusal_source:
            outcome += f" ({x.refusal_source})"
        rows.append(AttemptRow(
            attempt_id=x.attempt_id, seq=str(x.seq), model_id=x.model_id, work_id=x.work_id,
            role=x.role, strategy_key=x.strategy_key, intent=x.intent, outcome=outcome,
            longest_words=f"{x.longest_words:,}" if x.mode != "score" else DASH,
            top1=fmt_pct(x.teacher_forced.top1_share) if x.teacher_forced else DASH,
            exhibit=number, exhibit_anchor=anchor,
            reaches_threshold=x.mode != "score" and x.longest_words >= threshold,
        ))
    return rows


_BATES_PREFIX_RE = re.compile(r"[A-Z0-9_-]{1,20}")


def _bates(case: CaseFile) -> Bates:
    b = case.case.bates
    # The prefix goes into a CSS string: the case schema allows [A-Z0-9_-] only; check again.
    if not _BATES_PREFIX_RE.fullmatch(b.prefix) or b.start < 1:
        raise CasekitError(f"case.bates: prefix {b.prefix!r} / start {b.start}: use 1-20 of "
                           "A-Z 0-9 _ - and a start of 1 or more")
    return Bates(prefix=b.prefix, start=b.start, reset=b.start - 1,
                 first=f"{b.prefix}-{b.start:06d}")


def evidence_files(findings: Findings, inputs: Inputs) -> EvidenceFiles:
    """The bytes a report embeds or hashes: ledger, findings, case, works."""
    return EvidenceFiles(ledger=inputs.ledger_bytes, findings=findings_bytes(findings),
                         case=canonical_json(inputs.start.case),
                         works=dict(inputs.work_bytes), comparison=inputs.comparison_bytes)


def _evidence(files: EvidenceFiles, inputs: Inputs, templates: TemplateSet,
              options: ReportOptions) -> Evidence:
    st = inputs.start
    rows = [
        FileHash("Ledger", LEDGER_ATTACHMENT, sha256_bytes(files.ledger),
                 f"{len(files.ledger):,} bytes", "attached (Source)"),
        FileHash("Findings", FINDINGS_ATTACHMENT, sha256_bytes(files.findings),
                 f"{len(files.findings):,} bytes", "attached (Data)"),
        FileHash("Case (canonical JSON)", CASE_ATTACHMENT, sha256_bytes(files.case),
                 f"{len(files.case):,} bytes", "attached (Source); the case hash the ledger "
                 "cites" if sha256_bytes(files.case) == st.case_sha256 else
                 f"attached (Source); the ledger cites {st.case_sha256}"),
    ]
    names = [MANIFEST_ATTACHMENT, LEDGER_ATTACHMENT, FINDINGS_ATTACHMENT, CASE_ATTACHMENT]
    for wm in st.works:
        data = files.works.get(wm.id, b"")
        if options.attach_works:
            name = work_attachment_name(wm.id, wm.path)
            names.append(name)
            where = f"attached as {name} (Source)"
        else:
            where = "not attached (the reference text; its hash identifies it)"
        rows.append(FileHash(f"Work {wm.id} ({wm.role})", wm.path, wm.sha256,
                             f"{len(data):,} bytes", where))
    rows.append(FileHash("Report templates", f"{len(templates.files)} files",
                         templates.sha256, DASH,
                         "not attached; the set casekit ships" if not templates.overridden
                         else "not attached; overridden: " + ", ".join(templates.overridden)))
    return Evidence(files=rows, templates_sha256=templates.sha256,
                    template_overrides=templates.overridden, pdf_variant=PDF_VARIANT,
                    attach_works=options.attach_works, attachment_names=names)


def _custody(inputs: Inputs, case: CaseFile) -> Custody:
    st = inputs.start
    operator = [KV("Examiner", case.case.examiner), KV("Organization", case.case.organization)]
    operator += [KV(f"Host: {k}", v) for k, v in sorted(st.host.items())]
    operator.append(KV("Command", " ".join(st.argv) or DASH))
    rev = st.git.get("revision") if isinstance(st.git, dict) else None
    operator.append(KV("casekit", f"{st.versions.get('casekit') or DASH}"
                                  + (f", git revision {rev}" if rev else "")))
    for m in st.models:
        fp = m.identity.get("key_fingerprint")
        if fp:
            operator.append(KV(f"API key of {m.model_id}", f"fingerprint {fp} (never the key)"))
    events = [CustodyEvent(st.recorded_at, str(st.seq),
                           f"run {st.run_id} started"
                           + (f" {st.started_at}" if st.started_at else "")
                           + f": {st.planned_attempts:,} attempts planned, case {st.case_sha256}")]
    attempts = [r for r in inputs.records if isinstance(r, AttemptRecord)]
    if attempts:
        first, last = attempts[0], attempts[-1]
        events.append(CustodyEvent(first.recorded_at, str(first.seq), "first attempt recorded"))
        if last is not first:
            events.append(CustodyEvent(last.recorded_at, str(last.seq),
                                       f"last attempt recorded ({len(attempts):,} in all)"))
    for r in inputs.records:
        if isinstance(r, Note):
            events.append(CustodyEvent(r.recorded_at, str(r.seq), f"note ({r.kind}): "
                                       f"{r.message}"))
        elif isinstance(r, RunEnd):
            events.append(CustodyEvent(r.recorded_at, str(r.seq), "run ended: "
                                       f"{r.attempts_recorded:,} of {r.attempts_planned:,} "
                                       "attempts recorded" + ("" if r.complete else
                                                              " (incomplete)")))
    events.sort(key=lambda e: int(e.seq))
    return Custody(operator=operator, events=events)


# --------------------------------------------------------------------------- further measures

#: Shade levels of a coverage bin: 0 (nothing covered) to COVERAGE_LEVELS (all covered).
COVERAGE_LEVELS = 5
#: Parts of the work in the coverage map's numeric table (tenths, under the figure's ticks).
COVERAGE_PARTS = 10
#: (n,p) cells shown in the compact table [Hay25].
NP_SHOWN_P = (0.5, 0.9)
NP_SHOWN_N = (1, 100, 10000)
FURTHER_DEFINITION_KEYS = ("intervals", "p_z", "pz_upper_bound", "pz_census", "nv_recall",
                           "np_discoverable", "discoverable_5050", "spans_over_t",
                           "longest_block", "bmc", "name_cloze", "comparison", "coverage")
FURTHER_DEFINITION_LABELS = {
    "p_z": "p_z (probabilistic extraction)",
    "pz_census": "Whole-work p_z census",
    "pz_upper_bound": "p_z bounds from API log-probs",
    "nv_recall": "nv-recall",
    "intervals": "Intervals",
    "np_discoverable": "(n,p)-discoverable extraction",
    "discoverable_5050": "50/50 discoverable extraction",
    "spans_over_t": "Spans > T",
    "longest_block": "Longest contiguous block",
    "bmc": "BMC@k",
    "name_cloze": "Name cloze",
    "comparison": "Model comparison",
    "coverage": "Coverage",
    "divergence": "Divergence",
}


@dataclass(frozen=True)
class Measure:
    """One row of a further-measures table: the figure for this work beside the control's."""

    label: str
    definition: str
    """The key of the definition in findings.definitions that the figure follows."""
    value: str
    note: str
    control: str
    control_note: str = ""


@dataclass(frozen=True)
class NPRow:
    p: str
    cells: list[str]
    """``k of n`` per n of NP_SHOWN_N (DASH where not computed)."""
    control: list[str]


@dataclass(frozen=True)
class ShareRow:
    tau: str
    windows: str
    chars: str
    control: str


@dataclass(frozen=True)
class HistBar:
    label: str
    count: str
    share: str


@dataclass(frozen=True)
class ProbView:
    preset: str
    windows: str
    greedy: RateView
    sampling: str
    ns: list[str]
    np_rows: list[NPRow]
    shares: list[ShareRow]
    histogram: list[HistBar]
    histogram_svg: Markup
    """The bars as an SVG figure (numbers only, casekit/report/figures.py)."""


@dataclass(frozen=True)
class CensusCell:
    """One preset's figure in a census table row (subject or control)."""

    windows: str
    chars: str = ""


@dataclass(frozen=True)
class CensusRow:
    label: str
    cells: list[str]
    """Per column of :attr:`CensusView.columns`."""


@dataclass(frozen=True)
class ShareTable:
    """Windows and characters with p_z >= tau of one census (this work's, or the control's):
    one table each, so that a census and its control never need eight columns side by side."""

    title: str
    columns: list[str]
    rows: list[CensusRow]


@dataclass(frozen=True)
class CensusView:
    """The whole-work p_z census of one model x work beside the control's [Coo25]."""

    key: str
    params: str
    summary: str
    control_summary: str
    greedy: RateView
    bootstrap: str
    columns: list[str]
    histogram: list[CensusRow]
    share_tables: list[ShareTable]
    np_rows: list[NPRow]
    ns: list[str]
    figure_preset: str
    """The preset the figure draws (top-40 where recorded, else greedy)."""
    histogram_svg: Markup
    """The figure's bars: share of windows per bin (numbers only, casekit/report/figures.py)."""
    figure_windows: str


@dataclass(frozen=True)
class IntervalRow:
    """One rate of a model x work and the intervals it carries."""

    label: str
    k_of_n: str
    wilson: str
    """The Wilson / Clopper-Pearson interval over attempts (as printed everywhere else)."""
    bootstrap: str
    """The cluster-bootstrap interval and its unit, or why there is none."""


def _intervals(mw: ModelWorkFinding) -> list[IntervalRow]:
    """Every rate of a model x work with the interval it uses (measurement.md section 6)."""
    rows: list[tuple[str, Rate | None, str]] = [
        ("Regurgitation (benign attempts)", mw.regurgitation, "regurgitation"),
        ("Extraction (adversarial attempts)", mw.extraction, "extraction"),
        ("50/50 discoverable, exact", mw.discoverable_exact, "discoverable_exact"),
        ("50/50 discoverable, approximate", mw.discoverable_approx, "discoverable_approx"),
        ("Teacher-forced windows, greedy p_z = 1",
         mw.probabilistic.greedy if mw.probabilistic else None, "teacher_forced_greedy"),
    ]
    out = []
    for label, r, key in rows:
        if r is None or r.n == 0:
            continue
        v = rate_view(r)
        b = mw.bootstrap.get(key)
        out.append(IntervalRow(label=label, k_of_n=f"{v.k_of_n} ({v.pct})", wilson=v.ci,
                               bootstrap=boot_text(b) if b is not None else
                               "Wilson / Clopper-Pearson only"))
    for c in mw.census:
        v = rate_view(c.greedy)
        out.append(IntervalRow(label=f"Census ({c.strategy_key}), greedy p_z = 1",
                               k_of_n=f"{v.k_of_n} ({v.pct})", wilson=v.ci,
                               bootstrap=boot_text(c.greedy_bootstrap)))
    if mw.nv_recall is not None and mw.nv_recall.sessions_rate is not None:
        sr = mw.nv_recall.sessions_rate
        out.append(IntervalRow(label="Iterative sessions with an nv-recall block",
                               k_of_n=f"{sr.k:,} of {sr.n:,} ({fmt_pct(sr.rate)})",
                               wilson="bootstrap only", bootstrap=boot_text(sr)))
    if mw.name_cloze is not None and mw.name_cloze.accuracy.n:
        v = rate_view(mw.name_cloze.accuracy)
        out.append(IntervalRow(label="Name-cloze accuracy", k_of_n=f"{v.k_of_n} ({v.pct})",
                               wilson=v.ci, bootstrap="Wilson / Clopper-Pearson only "
                               "(one passage per attempt)"))
    return out


@dataclass(frozen=True)
class CoverageBin:
    level: int
    """0 (no word of the bin covered) .. COVERAGE_LEVELS (every word covered)."""
    covered: int
    words: int


@dataclass(frozen=True)
class CoverageRow:
    key: str
    label: str
    note: str
    covered: str
    runs: list[tuple[int, int]]
    """Covered word ranges [start, end), merged and sorted (what the lane draws)."""
    lane: Markup
    """The lane of the figure: SVG from numbers only (casekit/report/figures.py)."""
    swatch: Markup
    legend_swatch: Markup
    """The same paint for the legend (its own pattern id: ids are unique in the document)."""
    passages: str
    longest: str
    parts: list[str]
    """Share of the words covered in each tenth of the work (the numeric table)."""


@dataclass(frozen=True)
class CoverageMap:
    total_words: str
    rows: list[CoverageRow]
    axis: Markup
    parts: list[KV]
    """Headers of the numeric table's columns: the tenths of the work, first and last word
    (label "1,004–", value "1,338": set on two lines, a column is narrow)."""


@dataclass(frozen=True)
class FurtherRow:
    model_id: str
    work_id: str
    work_title: str
    role: str
    control_label: str
    """Header of the control column (the control work of this model), or "" for a control."""
    measures: list[Measure]
    prob: ProbView | None
    control_has_prob: bool
    census: list[CensusView]
    intervals: list[IntervalRow]
    coverage_map: CoverageMap


@dataclass(frozen=True)
class ComparisonRow:
    work_id: str
    work_title: str
    model_a: str
    model_b: str
    coverage_jaccard: str
    coverage_baseline: str
    coverage_detail: str
    bmc5_jaccard: str
    bmc5_baseline: str
    bmc5_detail: str
    extraction_ratio: str
    extraction_note: str
    regurgitation_ratio: str
    regurgitation_note: str


@dataclass(frozen=True)
class Further:
    definitions: list[KV]
    rows: list[FurtherRow]
    comparisons: list[ComparisonRow]


def _opt_rate(r: Rate | None) -> tuple[str, str]:
    """``k of n`` and its note for a rate that may be absent (DASH, no fake zero)."""
    if r is None:
        return DASH, "not measured"
    v = rate_view(r)
    return v.k_of_n, (f"{v.pct}; {v.ci}" if r.n else v.ci)


def _np_cell(rates: dict[tuple[int, float], Rate], n: int, p: float) -> str:
    r = rates.get((n, p))
    if r is None:
        return DASH
    v = rate_view(r)
    return f"{v.k_of_n} ({v.pct})" if r.n else v.k_of_n


def _np_map(pr: Probabilistic | None) -> dict[tuple[int, float], Rate]:
    return {(x.n, x.p): x.rate for x in pr.np_rates} if pr else {}


def _prob_view(pr: Probabilistic, ctrl: Probabilistic | None) -> ProbView:
    mine, theirs = _np_map(pr), _np_map(ctrl)
    ps = [p for p in NP_SHOWN_P if any(k[1] == p for k in mine)]
    np_rows = [NPRow(p=f"{p:g}", cells=[_np_cell(mine, n, p) for n in NP_SHOWN_N],
                     control=[_np_cell(theirs, n, p) for n in NP_SHOWN_N] if ctrl else [])
               for p in ps]
    ctrl_shares = {s.tau: s for s in ctrl.shares} if ctrl else {}
    shares = []
    for s in pr.shares:
        c = ctrl_shares.get(s.tau)
        shares.append(ShareRow(
            tau=f"{s.tau:g}",
            windows=f"{s.windows:,} of {pr.windows:,} ({fmt_pct(s.window_share)})",
            chars=f"{s.chars:,} ({fmt_pct(s.char_share)})",
            control=(f"{c.windows:,} of {ctrl.windows:,} ({fmt_pct(c.window_share)})"
                     if c is not None and ctrl is not None else DASH)))
    bars = [HistBar(label=b.label, count=f"{b.count:,}", share=fmt_pct(b.share))
            for b in pr.histogram]
    return ProbView(preset=pr.preset, windows=f"{pr.windows:,}", greedy=rate_view(pr.greedy),
                    sampling=pr.sampling, ns=[f"{n:,}" for n in NP_SHOWN_N], np_rows=np_rows,
                    shares=shares, histogram=bars,
                    histogram_svg=figures.histogram([b.share for b in pr.histogram]))


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def boot_text(b: BootstrapRate | None) -> str:
    """A cluster-bootstrap interval and what it resampled, or why there is none."""
    if b is None or b.lo is None or b.hi is None:
        return "no bootstrap interval (nothing scored)"
    if b.clusters < 2:
        return (f"no bootstrap interval: a single {b.unit} (resampling one cluster "
                "gives no spread)")
    return (f"95% cluster-bootstrap {fmt_pct(b.lo)}\u2013{fmt_pct(b.hi)} over "
            f"{b.clusters:,} clusters, each {_article(b.unit)} {b.unit} "
            f"({b.resamples:,} resamples, seed {b.seed})")


def _census_view(c: Census, ctrl: Census | None) -> CensusView:
    def preset(cs: Census | None, name: str) -> CensusPreset | None:
        return next((p for p in cs.presets if p.preset == name), None) if cs else None

    names = [p.preset for p in c.presets]
    cols: list[tuple[Census, str, str]] = [(c, n, f"{n}") for n in names]
    if ctrl is not None:
        cols += [(ctrl, n, f"control, {n}") for n in names if preset(ctrl, n) is not None]
    columns = [label for _, _, label in cols]
    hist: list[CensusRow] = []
    for i, b in enumerate(c.presets[0].histogram):
        cells = []
        for cs, n, _ in cols:
            pr = preset(cs, n)
            hb = pr.histogram[i] if pr is not None else None
            cells.append(f"{hb.count:,} ({fmt_pct(hb.share)})" if hb else DASH)
        hist.append(CensusRow(label=b.label, cells=cells))
    share_tables: list[ShareTable] = []
    for who, one in (("This work", c), ("Control", ctrl)):
        if one is None:
            continue
        presets = [p for p in (preset(one, n) for n in names) if p is not None]
        rows = []
        for i, t in enumerate(c.presets[0].shares):
            cells = []
            for pr in presets:
                sh = pr.shares[i] if i < len(pr.shares) else None
                cells += ([DASH, DASH] if sh is None else
                          [f"{sh.windows:,} of {one.windows:,} ({fmt_pct(sh.window_share)})",
                           f"{sh.chars:,} of {one.scored_chars:,} ({fmt_pct(sh.char_share)})"])
            rows.append(CensusRow(label=f"{t.tau * 100:g}%", cells=cells))
        share_tables.append(ShareTable(
            title=who, columns=[f"{pr.preset}: {x}" for pr in presets
                                for x in ("windows", "characters")], rows=rows))
    top, ctop = preset(c, "top40"), preset(ctrl, "top40")
    drawn = top or c.presets[0]
    mine = {(x.n, x.p): x.rate for x in top.np_rates} if top else {}
    theirs = {(x.n, x.p): x.rate for x in ctop.np_rates} if ctop else {}
    np_rows = [NPRow(p=f"{p:g}", cells=[_np_cell(mine, n, p) for n in NP_SHOWN_N],
                     control=[_np_cell(theirs, n, p) for n in NP_SHOWN_N] if ctop else [])
               for p in NP_SHOWN_P if mine]

    def summ(cs: Census) -> str:
        err = f", {cs.errors:,} failed" if cs.errors else ""
        share = cs.scored_chars / cs.counted_chars if cs.counted_chars else None
        return (f"{cs.windows:,} windows scored of {cs.planned:,} planned{err}; their "
                f"suffixes cover {cs.scored_chars:,} of the work's {cs.counted_chars:,} counted "
                f"characters ({fmt_pct(share)})")
    return CensusView(
        key=c.strategy_key, params=c.params, summary=summ(c),
        control_summary=(f"{summ(ctrl)}; {ctrl.params}" if ctrl else
                         "no census of a control work for this model"),
        greedy=rate_view(c.greedy), bootstrap=boot_text(c.greedy_bootstrap), columns=columns,
        histogram=hist, share_tables=share_tables, np_rows=np_rows,
        ns=[f"{n:,}" for n in NP_SHOWN_N], figure_preset=drawn.preset,
        histogram_svg=figures.histogram([b.share for b in drawn.histogram]),
        figure_windows=f"{c.windows:,}")


def _word_range(tokens: Any, start: int, end: int) -> tuple[int, int]:
    """Word indices of the tokens inside raw chars [start, end) (as the analyzer maps a
    teacher-forced window onto the coverage mask)."""
    lo = bisect.bisect_left(tokens.starts, start)
    hi = bisect.bisect_right(tokens.ends, end)
    return lo, max(lo, hi)


def _coverage_bins(ranges: Iterable[tuple[int, int]], total: int, nbins: int,
                   ) -> list[CoverageBin]:
    """Bins [floor(i*W/N), floor((i+1)*W/N)) of a work of W words, each with the number of
    its words inside the union of ``ranges`` (word index ranges [start, end))."""
    mask = bytearray(total)
    for lo, hi in ranges:
        lo, hi = max(0, lo), min(total, hi)
        if lo < hi:
            mask[lo:hi] = b"\x01" * (hi - lo)
    out: list[CoverageBin] = []
    for i in range(nbins):
        a, b = i * total // nbins, (i + 1) * total // nbins
        covered = sum(mask[a:b])
        words = b - a
        level = 0
        if covered:
            level = max(1, -(-covered * COVERAGE_LEVELS // words))  # ceiling: any word shows
        out.append(CoverageBin(level=level, covered=covered, words=words))
    return out


def _matched_ranges(s: SpanFinding) -> list[tuple[int, int]]:
    """Work word ranges of a span that the coverage counts: its exactly aligned words
    (``equal`` opcodes), as the analyzer marks them; the whole span when it has no opcodes."""
    if not s.opcodes:
        return [(s.work_word_start, s.work_word_end)]
    return [(j1, j2) for tag, _i1, _i2, j1, j2 in s.opcodes if tag == "equal"]


def coverage_ranges(f: Findings, mw: ModelWorkFinding, work: Work,
                    ) -> dict[str, list[tuple[int, int]]]:
    """Work word ranges credited to one model x work (the exactly aligned words of credited
    spans), per row of the coverage map: extraction (adversarial attempts' spans),
    regurgitation (benign attempts' spans) and
    reconstruction (every attempt's spans plus the teacher-forced windows reproduced
    greedily: the union behind the coverage figure)."""
    out: dict[str, list[tuple[int, int]]] = {"extraction": [], "regurgitation": [],
                                             "reconstruction": []}
    tokens = None
    for x in f.attempts:
        if x.model_id != mw.model_id or x.work_id != mw.work_id:
            continue
        spans = [r for s in x.spans for r in _matched_ranges(s)]
        if x.intent == "adversarial":
            out["extraction"] += spans
        elif x.intent == "benign":
            out["regurgitation"] += spans
        out["reconstruction"] += spans
        tf = x.teacher_forced
        if tf is not None and tf.greedy_reproduced and tf.suffix_chars is not None:
            if tokens is None:
                tokens = work.tokens
            out["reconstruction"].append(_word_range(tokens, *tf.suffix_chars))
    return out


COVERAGE_ROWS = (
    ("extraction", "Extraction", "adversarial attempts' spans"),
    ("regurgitation", "Regurgitation", "benign attempts' spans"),
    ("reconstruction", "Reconstruction", "all means: every span and the teacher-forced "
                                         "windows reproduced greedily"),
)


def _coverage_map(f: Findings, mw: ModelWorkFinding, work: Work,
                  ids: figures.FigureIds) -> CoverageMap:
    """The figure (one SVG lane per category, exact word positions) and its numeric table
    (covered words, passages, longest passage, share covered per tenth of the work)."""
    total = mw.coverage.total_words
    nparts = max(1, min(COVERAGE_PARTS, total))
    ranges = coverage_ranges(f, mw, work)
    rows = []
    for key, label, note in COVERAGE_ROWS:
        runs = figures.merge_ranges(ranges[key], total)
        covered = sum(hi - lo for lo, hi in runs)
        parts = _coverage_bins(runs, total, nparts) if total else []
        longest = max((hi - lo for lo, hi in runs), default=0)
        rows.append(CoverageRow(
            key=key, label=label, note=note, runs=runs,
            covered=(f"{covered:,} of {total:,} words "
                     f"({fmt_pct(covered / total if total else None)})"),
            lane=figures.coverage_lane(ids, key, runs, total),
            swatch=figures.swatch(ids, key),
            legend_swatch=figures.swatch(ids, key),
            passages=f"{len(runs):,}",
            longest=(f"{longest:,} words (words {runs_longest(runs)})" if runs else DASH),
            parts=[fmt_pct(b.covered / b.words) if b.words else DASH for b in parts]))
    heads = [KV(f"{i * total // nparts + 1:,}\u2013", f"{(i + 1) * total // nparts:,}")
             for i in range(nparts)]
    return CoverageMap(total_words=f"{total:,}", rows=rows,
                       axis=figures.coverage_axis(nparts), parts=heads)


def runs_longest(runs: Sequence[tuple[int, int]]) -> str:
    """The longest run as 1-based inclusive word numbers (the first of equal runs)."""
    lo, hi = max(runs, key=lambda r: (r[1] - r[0], -r[0]))
    return f"{lo + 1:,}\u2013{hi:,}"


def _has_generations(f: Findings, mw: ModelWorkFinding) -> bool:
    return any(x.model_id == mw.model_id and x.work_id == mw.work_id and x.mode != "score"
               and x.cloze_correct is None for x in f.attempts)


def _measures(f: Findings, mw: ModelWorkFinding, ctrl: ModelWorkFinding | None,
              ) -> list[Measure]:
    def both(get: Any) -> tuple[tuple[str, str], tuple[str, str]]:
        mine = get(mw)
        theirs = get(ctrl) if ctrl is not None else (DASH, "")
        return mine, theirs

    def greedy(m: ModelWorkFinding) -> tuple[str, str]:
        if m.probabilistic is None:
            return DASH, "no scored windows"
        v, note = _opt_rate(m.probabilistic.greedy)
        return f"{v} windows", f"preset {m.probabilistic.preset}; {note}"

    def disc(exact: bool) -> Any:
        def get(m: ModelWorkFinding) -> tuple[str, str]:
            r = m.discoverable_exact if exact else m.discoverable_approx
            v, note = _opt_rate(r)
            return (f"{v} windows" if r is not None else v), note
        return get

    def over_t(m: ModelWorkFinding) -> tuple[str, str]:
        if not _has_generations(f, m):
            return DASH, "no generation attempts"
        return f"{m.spans_over_t:,}", "spans > 20 words"

    def blocks(m: ModelWorkFinding) -> tuple[str, str]:
        light = f"{m.coverage.longest_block_words:,} words"
        if not _has_generations(f, m):
            return f"{DASH} (BMC@5) / {light} (light-words)", "no generation attempts"
        return (f"{m.longest_block_bmc5:,} words (BMC@5) / {light} (light-words)",
                "words profile mask / light-words coverage mask")

    def cloze(m: ModelWorkFinding) -> tuple[str, str]:
        nc = m.name_cloze
        if nc is None:
            return DASH, "no name-cloze attempts"
        acc, acc_note = _opt_rate(nc.accuracy)
        base, base_note = _opt_rate(nc.majority_baseline)
        name = f" (always \u201c{nc.majority_name}\u201d)" if nc.majority_name else ""
        return (f"{acc} correct; majority baseline {base}",
                f"accuracy {acc_note}; baseline{name} {base_note}")

    def nv(m: ModelWorkFinding) -> tuple[str, str]:
        r = m.nv_recall
        if r is None:
            return DASH, "no iterative-continuation sessions"
        c = r.combined
        return (f"{fmt_pct(c.recall)} ({c.matched:,} of {c.book_words:,} words)",
                f"{r.sessions:,} session{'s' if r.sessions != 1 else ''} concatenated; best "
                f"single session {fmt_pct(r.best_session)}")

    def api_pz(m: ModelWorkFinding) -> tuple[str, str]:
        b = m.api_pz_bounds
        if b is None:
            return DASH, "no API top-k log-probs"
        at1 = next((x for x in b.top40_upper_shares if abs(x.tau - 0.01) < 1e-12), None)
        share = (f"; top-40 upper bound ≥ 1% in {at1.windows:,} of {b.windows:,}"
                 if at1 is not None else "")
        return (f"greedy p_z = 1 in {b.greedy_one:,} of {b.windows:,} windows (exact)",
                f"exactly 0 in {b.greedy_zero:,}, undetermined in {b.greedy_undetermined:,}"
                f"{share}; UPPER BOUNDS from top-{b.top_k} log-probs")

    rows = [
        ("nv-recall of iterative sessions", "nv_recall", nv),
        ("p_z from API log-probs (bounds)", "pz_upper_bound", api_pz),
        ("Probabilistic extraction, greedy p_z = 1", "p_z", greedy),
        ("50/50 discoverable extraction, exact", "discoverable_5050", disc(True)),
        ("50/50 discoverable extraction, approximate", "discoverable_5050", disc(False)),
        ("Spans > T (T = 20 words)", "spans_over_t", over_t),
        ("Longest block: BMC@5 / light-words", "longest_block", blocks),
        ("Name-cloze accuracy / majority baseline", "name_cloze", cloze),
    ]
    out = []
    for label, key, get in rows:
        (v, note), (cv, cnote) = both(get)
        out.append(Measure(label=label, definition=key, value=v, note=note, control=cv,
                           control_note=cnote))
    return out


def _ratio_text(rr: RateRatio) -> tuple[str, str]:
    counts = f"{rr.k1:,} of {rr.n1:,} vs {rr.k2:,} of {rr.n2:,}"
    if rr.ratio is None:
        why = ("an empty denominator" if rr.n1 == 0 or rr.n2 == 0
               else "no success in either model")
        return "undefined", f"{counts}; {why}"
    ci = (f"95% CI {fmt_num(rr.lo, 2)}\u2013{fmt_num(rr.hi, 2)}"
          if rr.lo is not None and rr.hi is not None else "no interval")
    method = {"katz-log": "Katz log"}.get(rr.method, rr.method)
    corr = "; 0.5 added to every cell (a zero count)" if rr.corrected else ""
    return fmt_num(rr.ratio, 2), f"{counts}; {ci}, {method}{corr}"


def _overlap_text(o: CoverageOverlap) -> tuple[str, str, str]:
    jac = "undefined" if o.jaccard is None else fmt_num(o.jaccard)
    base = "undefined" if o.random_baseline is None else fmt_num(o.random_baseline)
    detail = (f"both {o.both:,} / either {o.either:,} of {o.total:,} positions "
              f"(A {o.a:,}, B {o.b:,})")
    return jac, base, detail


def _further(f: Findings, works: dict[str, Work], model_ids: list[str]) -> Further:
    rows: list[FurtherRow] = []
    ids = figures.FigureIds()
    for mid in model_ids:
        mine = [mw for mw in f.findings if mw.model_id == mid]
        ctrl = next((mw for mw in mine if mw.role == "control"), None)
        for mw in mine:
            c = ctrl if mw.role == "subject" else None
            rows.append(FurtherRow(
                model_id=mid, work_id=mw.work_id, work_title=works[mw.work_id].spec.title,
                role=mw.role,
                control_label=(f"Control work of {mid}: {works[c.work_id].spec.title}"
                               if c is not None else ""),
                measures=_measures(f, mw, c),
                prob=(_prob_view(mw.probabilistic, c.probabilistic if c else None)
                      if mw.probabilistic is not None else None),
                control_has_prob=c is not None and c.probabilistic is not None,
                census=[_census_view(cs, next((x for x in c.census
                                               if x.strategy_key == cs.strategy_key),
                                              c.census[0] if c.census else None)
                                     if c is not None else None)
                        for cs in mw.census],
                intervals=_intervals(mw),
                coverage_map=_coverage_map(f, mw, works[mw.work_id], ids),
            ))
    comparisons = []
    for cmp in f.comparisons:
        cj, cb, cd = _overlap_text(cmp.coverage)
        bj, bb, bd = _overlap_text(cmp.bmc5)
        er, en = _ratio_text(cmp.extraction_ratio)
        rr, rn = _ratio_text(cmp.regurgitation_ratio)
        title = works[cmp.work_id].spec.title if cmp.work_id in works else cmp.work_id
        comparisons.append(ComparisonRow(
            work_id=cmp.work_id, work_title=title, model_a=cmp.model_a, model_b=cmp.model_b,
            coverage_jaccard=cj, coverage_baseline=cb, coverage_detail=cd,
            bmc5_jaccard=bj, bmc5_baseline=bb, bmc5_detail=bd,
            extraction_ratio=er, extraction_note=en, regurgitation_ratio=rr,
            regurgitation_note=rn))
    definitions = [KV(FURTHER_DEFINITION_LABELS[k], f.definitions[k], k)
                   for k in FURTHER_DEFINITION_KEYS if k in f.definitions]
    return Further(definitions=definitions, rows=rows, comparisons=comparisons)


def build_model(findings: Findings, inputs: Inputs,
                exhibits_per_finding: int = EXHIBITS_PER_FINDING, *,
                template_dir: Path | None = None, attach_works: bool = False) -> ReportModel:
    """The report model from the findings, the verified ledger records and the works.

    ``template_dir`` and ``attach_works`` only change what the report says about itself (the
    template set's hash, whether the works travel inside the PDF).
    """
    f = findings
    st = inputs.start
    case = inputs.case
    end = next((r for r in reversed(inputs.records) if isinstance(r, RunEnd)), None)
    works = inputs.works
    requested = {m.model_id: f"{m.provider} / {m.model}" for m in st.models}
    model_ids = [m.id for m in case.models]
    model_ids += sorted({x.model_id for x in f.findings} - set(model_ids))

    control_ids = [w.id for w in case.works if w.role == "control"]
    floors_by_model = {mid: _floor_view(next((c for c in f.controls if c.model_id == mid),
                                             None), mid, control_ids) for mid in model_ids}

    # Exhibits first: their numbers appear in the summary and the attempts table.
    ex = _exhibits(f, inputs, requested, exhibits_per_finding)

    overview: list[SummaryRow] = []
    summary: list[ModelSummary] = []
    for mid in model_ids:
        rows = [_summary_row(mw, works[mw.work_id],
                             floors_by_model[mid] if mw.role == "subject" else None,
                             ex.refs_of.get((mid, mw.work_id), []))
                for mw in f.findings if mw.model_id == mid]
        overview += rows
        if rows:
            summary.append(ModelSummary(model_id=mid, requested=requested.get(mid, mid),
                                        rows=rows, floor=floors_by_model[mid]))

    counts = {o: 0 for o in OUTCOME_ORDER}
    for x in f.attempts:
        counts[x.outcome] = counts.get(x.outcome, 0) + 1

    complete = f.complete and f.recorded_attempts >= f.planned_attempts
    completeness = (f"complete: {f.recorded_attempts:,} of {f.planned_attempts:,} planned "
                    "attempts recorded" if complete else
                    f"INCOMPLETE: {f.recorded_attempts:,} of {f.planned_attempts:,} planned "
                    "attempts recorded")
    if f.imported_attempts:
        completeness += f"; plus {f.imported_attempts:,} imported (captured outside casekit)"
    cover = Cover(
        case_id=case.case.id, title=case.case.title, matter=case.case.matter,
        examiner=case.case.examiner, organization=case.case.organization,
        date=st.began_at[:10], started_at=st.began_at, pdf_date=_to_second(st.began_at),
        ended_at=end.recorded_at if end else "not finished",
        casekit_version=st.versions.get("casekit") or f.casekit_version,
        analysis_version=f.casekit_version, ledger_head_hash=f.ledger_head_hash,
        ledger_records=f"{f.ledger_records:,}", run_id=f.run_id, completeness=completeness,
        complete=complete,
    )
    floors = [floors_by_model[mid] for mid in model_ids]
    return ReportModel(
        cover=cover, overview=overview, summary=summary, absence_caveat=ABSENCE_CAVEAT,
        category_text=dict(CATEGORY_TEXT), tf_models=_tf_models(f, works, model_ids),
        methods=_methods(f, case, st), controls=floors,
        control_works=[f"{w.id} ({w.title})" for w in case.works if w.role == "control"],
        exhibit_groups=ex.groups, exhibits_shown=ex.shown, exhibits_total=ex.total,
        exhibits_per_finding=exhibits_per_finding, attempts=_attempt_rows(f, ex.anchor_of),
        attempt_counts=[KV(o.replace("_", " "), f"{n:,}") for o, n in counts.items()],
        manifest=_manifest(f, inputs, end), limitations=_limitations(f, case, floors, inputs),
        bates=_bates(case),
        evidence=_evidence(evidence_files(f, inputs), inputs,
                           template_set(template_dirs(template_dir)),
                           ReportOptions(exhibits_per_finding, attach_works)),
        custody=_custody(inputs, case), long_texts=ex.longs,
        thresholds={k: fmt_value(v) for k, v in f.thresholds.items()},
        further=_further(f, works, model_ids),
        reliability=_reliability(f, inputs, model_ids),
        rerun=_rerun(f, inputs),
        control_override=control_override_text(case),
    )


CONTROL_OVERRIDE = (
    "NO CONTROL WORK. This case set allow_no_control: true, overriding casekit's requirement "
    "of a control work (a text the model cannot have seen). No false-positive rate was "
    "measured for any figure in this report: spans of a few words occur by chance between "
    "unrelated texts, and nothing in this run shows how often the matcher reports a span of "
    "the reported lengths by chance. Read every figure without a control floor."
)


def control_override_text(case: CaseFile) -> str:
    """The prominent notice of an overridden control requirement, or "" when there is none."""
    if case.allow_no_control and not any(w.role == "control" for w in case.works):
        return CONTROL_OVERRIDE
    return ""


def _to_second(iso: str) -> str:
    """An ISO-8601 UTC time without its fraction of a second (``2026-02-03T10:00:00Z``)."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)$", iso)
    return f"{m.group(1)}{m.group(2)}" if m else iso


def _epoch(iso: str) -> int | None:
    """Seconds since 1970 of a recorded ISO-8601 UTC time (None if unparsable)."""
    try:
        dt = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    return int(dt.timestamp()) if dt.tzinfo is not None else None


@dataclass
class Rendered:
    """A report rendered to HTML, with the manifest and the files the PDF embeds."""

    model: ReportModel
    html: str
    manifest: dict[str, Any]
    attached: list[Attached]
    epoch: int
    """The run's start (seconds since 1970): the PDF's dates."""
    ledger_head_hash: str

    def write_pdf(self, target: Path, template_dir: Path | None = None) -> SafeFetcher:
        """PDF/A-3b with the attachments; the same inputs give the same bytes."""
        return render_pdf(self.html, target, template_dir, source_date_epoch=self.epoch,
                          **pdf_options(self.attached, self.ledger_head_hash, self.epoch))


def render_report(findings: Findings, inputs: Inputs, options: ReportOptions,
                  template_dir: Path | None = None) -> Rendered:
    """The report's HTML, manifest and attachments (``casekit verify`` calls this too)."""
    model = build_model(findings, inputs, options.exhibits_per_finding,
                        template_dir=template_dir, attach_works=options.attach_works)
    html = render_html(model, template_dir)
    files = evidence_files(findings, inputs)
    manifest = build_manifest(
        start=inputs.start, findings=findings, files=files,
        templates=template_set(template_dirs(template_dir)),
        html_sha256=sha256_bytes(html.encode("utf-8")), options=options,
        bates={"prefix": model.bates.prefix, "start": model.bates.start})
    return Rendered(model=model, html=html, manifest=manifest,
                    attached=attachments(manifest, files),
                    epoch=_epoch(inputs.start.began_at) or 0,
                    ledger_head_hash=findings.ledger_head_hash)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def build_report(run_dir: Path, findings: Findings, out_dir: Path | None = None,
                 template_dir: Path | None = None, *, case_path: Path | None = None,
                 exhibits_per_finding: int = EXHIBITS_PER_FINDING,
                 attach_works: bool = False) -> ReportPaths:
    """Write report.html, report.pdf (PDF/A-3b, the data attached) and manifest.json for a run
    into out_dir (default run_dir/report).

    ``template_dir`` holds templates that override the defaults (same relative paths);
    ``case_path`` is where the case file is now if it moved since the run; ``attach_works``
    embeds the works' texts too (off by default: they are usually the copyrighted texts).
    """
    out = out_dir or run_dir / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    inputs = load_inputs(run_dir, findings, case_path)
    rendered = render_report(findings, inputs, ReportOptions(exhibits_per_finding, attach_works),
                             template_dir)
    html_path = out / HTML_NAME
    _write_atomic(html_path, rendered.html.encode("utf-8"))
    _write_atomic(out / MANIFEST_NAME, manifest_bytes(rendered.manifest))
    t1 = time.perf_counter()
    pdf_path = out / PDF_NAME
    tmp_pdf = pdf_path.with_name(pdf_path.name + ".tmp")
    fetcher = rendered.write_pdf(tmp_pdf, template_dir)
    tmp_pdf.replace(pdf_path)
    t2 = time.perf_counter()
    log.info("report: HTML in %.2fs, PDF in %.2fs (%d resources served, %d refused) -> %s",
             t1 - t0, t2 - t1, len(fetcher.served), len(fetcher.refused), out)
    return ReportPaths(html=html_path, pdf=pdf_path)
