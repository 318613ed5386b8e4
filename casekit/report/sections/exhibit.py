"""One exhibit (partials/exhibit.html.j2): prompt, output and the work side by side, with the
matched words marked, and the ledger record it comes from.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from casekit.analysis.findings import AttemptAnalysis
from casekit.canonical import sha256_bytes
from casekit.normalize import tokenize
from casekit.records import (
    AttemptRecord,
    PlannedAttempt,
)
from casekit.report import catalogue as C
from casekit.report.sections.long_texts import LongText
from casekit.report.sections.reconstruction import BOUNDARY, CONTEXT, context_bounds
from casekit.report.text import (
    APPENDIX_MAX_CHARS,
    DASH,
    ELIDED,
    EXCERPTS_MAX,
    INLINE_CONTEXT_CHARS,
    INLINE_MAX_CHARS,
    SUPPLIED,
    Segment,
    agree,
    chunk_bounds,
    counted,
    fmt_num,
    marks,
    opcode_ranges,
    paint,
    segments_in,
    supplied_ranges,
    visible_segments,
    wrap_class,
)
from casekit.report.views import KV
from casekit.works import Work

log = logging.getLogger(__name__)


def column(text: str, ranges: list[tuple[int, int, str]], *, offset: int = 0, focus: int = 0,
            what: str, exhibit: tuple[str, str, str], longs: list[LongText]) -> list[Segment]:
    """Segments of one exhibit column. A text longer than INLINE_MAX_CHARS is shown from a
    little before ``focus`` (a position in text) and whole in the appendix, and the column
    says so at each cut: nothing is truncated silently."""
    n = len(text)
    if n <= INLINE_MAX_CHARS:
        return paint(text, ranges, offset)
    runs = marks(n, ranges, offset)
    starts = [r[0] for r in runs]
    number = len(longs) + 1
    ref = f"L-{number}"
    # The appendix shows the whole text up to APPENDIX_MAX_CHARS, else that many characters
    # from a little before the focus, and says so (the ledger attached to the PDF holds it all).
    a0 = max(0, min(focus - INLINE_CONTEXT_CHARS, n - APPENDIX_MAX_CHARS))
    a1 = min(n, a0 + APPENDIX_MAX_CHARS)
    part = "" if (a0, a1) == (0, n) else C.APPENDIX_PART.format(
        first=f"{a0 + 1:,}", last=f"{a1:,}", total=f"{n:,}", attempt=exhibit[2])
    longs.append(LongText(
        ref=ref, anchor=f"long-{number}", exhibit=exhibit[0], exhibit_anchor=exhibit[1],
        attempt_id=exhibit[2], what=what, chars=f"{n:,}",
        sha256=sha256_bytes(text.encode("utf-8", "surrogatepass")),
        chunks=[segments_in(text, runs, a0 + lo, a0 + hi, starts)
                for lo, hi in chunk_bounds(text[a0:a1])],
        part=part, first=a0 + 1, last=a1))
    w0 = max(0, min(focus - INLINE_CONTEXT_CHARS, n - INLINE_MAX_CHARS))
    w1 = min(n, w0 + INLINE_MAX_CHARS)
    if part:
        shown = C.COLUMN_CUT_PART.format(first=f"{w0 + 1:,}", last=f"{w1:,}", total=f"{n:,}",
                                         ref=ref, a_first=f"{a0 + 1:,}", a_last=f"{a1:,}")
    else:
        shown = C.COLUMN_CUT.format(first=f"{w0 + 1:,}", last=f"{w1:,}", total=f"{n:,}",
                                    ref=ref)
    out: list[Segment] = []
    if w0 > 0:
        out.append(Segment(shown + "\n", ELIDED))
    out += segments_in(text, runs, w0, w1, starts)
    if w1 < n:
        out.append(Segment("\n" + shown, ELIDED))
    return out


@dataclass(frozen=True)
class PromptPart:
    role: str
    segments: list[Segment]


@dataclass(frozen=True)
class ExcerptView:
    work_chars: str
    work_words: str
    location: str
    """Chapter, paragraph or page of an EPUB, DOCX or PDF work ("" for plain text)."""
    repeats: str
    """A short work's passage the output repeats (a chorus sung twice): shown once, with how
    often the output has it; "" otherwise."""
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
    unit: str
    """What the work's counts are: ``words``, or ``characters`` for a CJK work."""
    imported: bool
    """Captured outside casekit (``casekit import``): labelled so, decoding unknown."""
    notes: list[str]
    """casekit's notes on this exhibit: shorter alignments not shown as matches, the same
    output recorded as another attempt."""
    wrap: dict[str, str]
    """CSS class per column (``prompt``, ``output``, ``work``): ``break-all`` where a run of
    non-blank characters is too long for the column, else ""."""


def _imported_provenance(rec: AttemptRecord) -> list[KV] | None:
    """The capture's provenance rows of an imported attempt, or None for one casekit sent."""
    raw = rec.result.raw_response if rec.result else None
    prov = raw.get("imported") if isinstance(raw, dict) else None
    if not isinstance(prov, dict):
        return None
    file_info = prov.get("file")
    file: dict[str, Any] = file_info if isinstance(file_info, dict) else {}
    shot = prov.get("screenshot")
    def known(key: str) -> str:
        value = prov.get(key)
        return C.NOT_RECORDED if value is None else str(value)

    captured = (f"{prov.get('captured_at')} (UTC {prov.get('captured_at_utc')})"
                if prov.get("captured_at") is not None else C.NOT_RECORDED)
    kind = (str(prov.get("kind")) if prov.get("kind_stated")
            else C.IMPORTED_UNSTATED if "kind_stated" in prov else None)
    rows = [
        KV("Imported", C.IMPORTED),
        KV("Captured at", captured),
        KV("Captured by", known("captured_by")),
        KV("Source", known("source")),
        KV("Model as captured", known("model")),
        KV("Import file", f"{file.get('name')}, line {file.get('line')}, {file.get('sha256')}"),
        KV("Imported at (UTC)", str(prov.get("imported_at"))),
    ]
    if kind is not None:
        rows.append(KV("Kind of attempt", kind))
    if prov.get("prompt_recorded") is False:
        rows.append(KV("Prompt", C.NOT_RECORDED + C.IMPORTED_PROMPT_GIVEN))
    if isinstance(shot, dict):
        rows.append(KV("Screenshot", f"{shot.get('path', shot.get('name'))}, "
                                     f"{shot.get('sha256')}"))
    elif shot:
        rows.append(KV("Screenshot", str(shot)))
    return rows


def _captured_utc(rec: AttemptRecord) -> str:
    """An imported attempt's capture time in UTC, or "not recorded" (its record's times are
    then the import's)."""
    raw = rec.result.raw_response if rec.result else None
    prov = raw.get("imported") if isinstance(raw, dict) else None
    when = prov.get("captured_at_utc") if isinstance(prov, dict) else None
    return str(when) if when else C.NOT_RECORDED


def _decoding_text(a: PlannedAttempt) -> str:
    d = a.decoding
    parts = [f"temperature {d.temperature:g}" + (" (greedy)" if d.temperature == 0 else ""),
             f"max_tokens {d.max_tokens}"
             + (" (the strategy's limit)" if d.max_tokens_set_by == "strategy" else "")]
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


def build_exhibit(number: int, analysis: AttemptAnalysis, rec: AttemptRecord, work: Work,
             requested: str, longs: list[LongText] | None = None, *, min_words: int = 0,
             same_output: list[AttemptRecord] | None = None) -> Exhibit:
    """One exhibit: the attempt's prompt, then its output and the matched work text (with
    context before and after) side by side, with the ledger record's identity and the
    decoding it was sent with. Only spans of at least ``min_words`` words (the reporting
    threshold) are shown and marked as matches; shorter alignments are counted in a note.
    ``same_output``: other attempts whose output text is inside this one's (named, not
    exhibited again)."""
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
        prompt.append(PromptPart(role, column(
            content, ranges, focus=min((r[0] for r in ranges), default=0),
            what=C.PROMPT_PART.format(role=role), exhibit=ex, longs=longs)))
    text = (result.text if result else None) or ""
    spans = sorted((s for s in analysis.spans if s.words >= min_words),
                   key=lambda s: (s.out_char_start, s.work_char_start))
    n_short = len(analysis.spans) - len(spans)
    out_tokens = tokenize(text, work.match_profile)
    out_ranges, out_exact = opcode_ranges(out_tokens, spans, "out")
    # Echo: output text the model repeated from the prompt; marked like prompt-supplied text.
    output = column(text, out_ranges + [(s, e, SUPPLIED) for s, e in analysis.echo_ranges],
                     focus=spans[0].out_char_start if spans else 0, what=C.MODEL_OUTPUT,
                     exhibit=ex, longs=longs)
    work_exact = True
    excerpts: list[ExcerptView] = []
    times = Counter((s.work_char_start, s.work_char_end) for s in spans)
    short = work.spec.kind != "prose"
    shown: set[tuple[int, int]] = set()
    hidden = 0
    for s in spans:
        key = (s.work_char_start, s.work_char_end)
        if short and key in shown:
            continue  # a refrain the output sings again: the work's passage is shown once
        if len(excerpts) >= EXCERPTS_MAX:
            hidden += 1  # a hostile output repeating a passage: bounded report
            continue
        shown.add(key)
        # Each excerpt shows its own span's alignment only (spans may overlap in the work).
        work_ranges, exact = opcode_ranges(work.tokens, [s], "work")
        work_exact = work_exact and exact
        lo, hi = context_bounds(work.raw, s.work_char_start, s.work_char_end)
        excerpts.append(ExcerptView(
            work_chars=f"{s.work_char_start:,}\u2013{s.work_char_end:,}",
            work_words=f"{s.work_word_start:,}\u2013{s.work_word_end:,}",
            location=work.location(s.work_char_start, s.work_char_end),
            repeats=(C.EXCERPT_REPEATS.format(n=times[key]) if short and times[key] > 1
                     else ""),
            words=f"{s.words:,}", matched_words=f"{s.matched_words:,}",
            similarity=fmt_num(s.similarity), verbatim="verbatim" if s.verbatim else
            "near-verbatim",
            out_chars=f"{s.out_char_start:,}\u2013{s.out_char_end:,}",
            segments=visible_segments(work.raw[lo:s.work_char_start], CONTEXT)
            + [Segment(C.SPAN_START_MARK, BOUNDARY)]
            + column(work.raw[s.work_char_start:s.work_char_end], work_ranges,
                     offset=s.work_char_start, exhibit=ex, longs=longs,
                     what=C.WORK_EXCERPT.format(start=f"{s.work_char_start:,}",
                                                end=f"{s.work_char_end:,}"))
            + [Segment(C.SPAN_END_MARK, BOUNDARY)]
            + visible_segments(work.raw[s.work_char_end:hi], CONTEXT),
        ))
    note = ""
    if not (out_exact and work_exact):
        note = C.HIGHLIGHT_FALLBACK
    if hidden:
        more = C.MORE_SPANS.format(shown=len(excerpts), total=f"{len(excerpts) + hidden:,}",
                                   more=f"{hidden:,}")
        note = f"{note} {more}" if note else more
    notes = []
    if n_short:
        notes.append(C.SHORT_SPANS_NOTE.format(n=counted(n_short, "shorter alignment"),
                                               are=agree(n_short, "is", "are"),
                                               min_words=min_words, unit=work.unit))
    for d in same_output or []:
        notes.append(C.SAME_OUTPUT_NOTE.format(attempt=d.attempt.id, seq=d.seq,
                                               strategy=d.attempt.strategy_key))
    imported = _imported_provenance(rec)
    details = [
        KV("Attempt", a.id),
        KV("Ledger record", f"seq {rec.seq}, {rec.hash}"),
        KV("Completed (UTC)", rec.completed_at if imported is None else _captured_utc(rec)),
        KV("Requested model", requested),
        KV("Returned model", (result.returned_model if result and result.returned_model
                              else C.NOT_REPORTED_BY_PROVIDER)),
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
                C.DECODING_IMPORTED)
    if imported is not None:
        details += imported
    details += [
        KV("Decoding", decoding),
        KV("Strategy", f"{a.strategy_key} ({a.intent})" + (f", {a.label}" if a.label else "")),
        KV("Work", f"{work.id}, {work.sha256}"),
        KV("Spans", "; ".join(
            C.SPAN_DETAIL.format(chars=e.work_chars, words=e.words, matched=e.matched_words,
                                 similarity=e.similarity, unit=work.unit)
            for e in excerpts) or DASH),
    ]
    return Exhibit(
        number=f"E-{number}", anchor=f"exhibit-{number}", attempt_id=a.id,
        model_id=a.model_id, work_id=a.work_id, work_title=work.spec.title,
        role=analysis.role, strategy_key=a.strategy_key, intent=a.intent, label=a.label,
        outcome=analysis.outcome, seq=str(rec.seq), record_hash=rec.hash or "",
        started_at=rec.started_at, completed_at=rec.completed_at, requested_model=requested,
        returned_model=(result.returned_model if result and result.returned_model
                        else C.NOT_REPORTED),
        details=details, decoding=decoding, work_sha256=work.sha256,
        imported=imported is not None, unit=work.unit,
        longest_words=f"{analysis.longest_words:,}", prompt=prompt,
        output=output, excerpts=excerpts, highlight_note=note,
        long_texts=[KV(x.ref, x.anchor, C.LONG_TEXT_NOTE_PART.format(
                        what=x.what, chars=x.chars, first=f"{x.first:,}", last=f"{x.last:,}")
                        if x.part else C.LONG_TEXT_NOTE.format(what=x.what, chars=x.chars))
                    for x in longs[first_long:]],
        notes=notes,
        wrap={"prompt": wrap_class(s for p in prompt for s in p.segments),
              "output": wrap_class(output),
              "work": wrap_class(s for x in excerpts for s in x.segments)},
    )
