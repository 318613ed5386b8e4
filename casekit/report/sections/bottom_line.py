"""Bottom line (partials/bottom_line.html.j2): the result in one plain sentence per model x
work, the effort behind it, the decision rule, the test against the control, one thumbnail
exhibit; the caveats after it.

Every figure here is read from one place in the findings (a finding's rates, coverage and
``vs_control``) or, for a control work's own count, from the attempt table, and formatted
once; tests/test_headline_figures.py checks the rendered text against findings.json.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from casekit.analysis.findings import ControlFloor, Findings, ModelWorkFinding
from casekit.analysis.taxonomy import ABSENCE_CAVEAT, SHOWN
from casekit.case import CaseFile
from casekit.records import RunEnd, RunStart
from casekit.report import catalogue as C
from casekit.report.ledger_facts import AttemptLookup, LedgerFacts
from casekit.report.sections.summary import STATUS_CLASS
from casekit.report.table import AttemptTable
from casekit.report.text import agree, and_list, counted, fmt_pct
from casekit.stats import Rate, chance_count, rate
from casekit.works import Work

log = logging.getLogger(__name__)

#: Family-wise significance level of the subject-against-control tests (Holm-adjusted).
ALPHA = 0.05
#: Words of the thumbnail exhibit's quotation (the whole span is in the exhibits).
THUMBNAIL_WORDS = 60


@dataclass(frozen=True)
class Line:
    """One model x work in plain words."""

    model_id: str
    work_title: str
    role: str
    status: str
    status_class: str
    found: str
    """What was observed, by which criterion."""
    test: str
    """The subject against its control (or why there is no test)."""


@dataclass(frozen=True)
class Thumbnail:
    quote: str
    where: str


@dataclass(frozen=True)
class BottomLine:
    effort: str
    rule: str
    test_method: str
    lines: list[Line]
    thumbnail: Thumbnail | None
    caveats: list[str] = field(default_factory=list)


def fmt_p(p: float) -> str:
    """A p-value with its relation, to follow "p": ``= 0.012`` (three decimals), ``< 0.001``
    below that (never ``= 0``, nor ``= < 0.001``), ``= 1.00`` from 0.995."""
    if p < 0.001:
        return "< 0.001"
    return f"= {p:.3f}" if p < 0.995 else "= 1.00"


def _k_of_n(r: Rate) -> str:
    return f"{r.k:,} of {r.n:,}"


def _intent_part(r: Rate, intent: str) -> str:
    if r.n == 0:
        return C.BL_INTENT_NOT_TESTED.format(intent=intent)
    return C.BL_INTENT.format(k_of_n=_k_of_n(r), intent=intent)


def _test_sentence(f: ModelWorkFinding, floor: ControlFloor | None) -> str:
    t = f.vs_control
    if t is None:
        return C.BL_NO_TEST if floor is None or floor.attempts.n == 0 else C.BL_NO_SUBJECT
    verdict = C.BL_EXCEEDS if t.p_adjusted < ALPHA else C.BL_NOT_SHOWN
    return C.BL_TEST.format(subject=_k_of_n(t.subject), control=_k_of_n(t.control),
                            p=fmt_p(t.p_value), p_adj=fmt_p(t.p_adjusted), verdict=verdict)


def _reconstruction(f: ModelWorkFinding, table: AttemptTable, min_span: int) -> Rate | None:
    """The span-matched generation attempts of reconstruction intent (iterative
    continuation sessions, say) of a model x work with a span at the threshold, counted as
    the benign and adversarial rates count theirs (failed ones in n); None when there are
    none. They are in the test against the control (every intent), so the bottom line
    lists them beside the other intents: without them its counts did not add up to the
    test's."""
    sel = (table.span_attempts() & table.of(f.model_id, f.work_id)
           & table.label("intent").eq("reconstruction"))
    n = int(sel.sum())
    if n == 0:
        return None
    k = int((table.number("longest_words")[sel] >= min_span).sum())
    return rate(k, n)


def _control_own(f: ModelWorkFinding, table: AttemptTable, min_span: int,
                 ) -> tuple[Rate, float | None]:
    """A control work's own chance reproductions for one model, counted as the model's floor
    counts them over all its control works (casekit.analysis.control_test: the span-matched
    generation attempts that returned an output, at the control's threshold), with the
    one-sided 95% upper bound. With several control works the floor pools them, so the
    floor's count, printed under each control's line, would read as that control's own."""
    sel = table.matched_outputs() & table.of(f.model_id, f.work_id)
    n = int(sel.sum())
    k = int((table.number("longest_words")[sel] >= min_span).sum())
    return chance_count(k, n)


def _line(f: ModelWorkFinding, work: Work, floor: ControlFloor | None, min_span: int,
          unit: str, reconstruction: Rate | None = None,
          own: tuple[Rate, float | None] | None = None) -> Line:
    """One model x work's sentence, at the work's own reporting threshold and unit (a short
    work's is scaled to it, a CJK work's counts characters). ``own``: a control work's own
    count (:func:`_control_own`)."""
    status = f.memorization
    if f.role == "control":
        cf, upper = own if own is not None and own[0].n else (None, None)
        found = C.BL_CONTROL.format(
            k_of_n=_k_of_n(cf) if cf else C.NOT_TESTED, words=f"{min_span:,}", unit=unit,
            upper=fmt_pct(upper) if upper is not None else "\u2014")
        return Line(f.model_id, work.spec.title, f.role, status,
                    STATUS_CLASS.get(status, ""), found, "")
    reached = C.BL_REACHED if status == SHOWN else C.BL_NOT_REACHED
    intents = [_intent_part(f.regurgitation, "benign"), _intent_part(f.extraction, "adversarial")]
    if reconstruction is not None:
        intents.append(_intent_part(reconstruction, "reconstruction"))
    found = C.BL_SUBJECT.format(
        intents=and_list(intents), words=f"{min_span:,}", unit=unit,
        coverage=fmt_pct(f.coverage.share), block=f"{f.coverage.longest_block_words:,}",
        reached=reached)
    return Line(f.model_id, work.spec.title, f.role, status, STATUS_CLASS.get(status, ""),
                found, _test_sentence(f, floor))


def _effort(f: Findings, case: CaseFile, st: RunStart, end: RunEnd | None,
            ledger: LedgerFacts) -> str:
    intents = ledger.intents
    imported = ledger.imported_records
    first, last = ledger.first_started, ledger.last_completed
    subjects = sum(1 for w in case.works if w.role == "subject")
    if not f.planned_attempts and not f.recorded_attempts:
        # An evidence-only case: what it analyzes was all imported.
        text = C.BL_EFFORT_NONE.format(
            subjects=counted(subjects, "subject work"),
            controls=counted(len(case.works) - subjects, "control work"))
        if imported:
            text += " " + C.BL_IMPORTED_ONLY.format(imported=counted(imported, "output"),
                                                    were=agree(imported, "was", "were"))
        return text
    text = C.BL_EFFORT.format(
        recorded=f"{f.recorded_attempts:,}", planned=f"{f.planned_attempts:,}",
        benign=f"{intents['benign']:,}", adversarial=f"{intents['adversarial']:,}",
        reconstruction=f"{intents['reconstruction']:,}", models=counted(len(case.models), "model"),
        subjects=counted(subjects, "subject work"),
        controls=counted(len(case.works) - subjects, "control work"),
        first=first[:19] + "Z" if first else "\u2014",
        last=last[:19] + "Z" if last else "\u2014")
    if imported:
        text += " " + C.BL_IMPORTED.format(imported=counted(imported, "output"),
                                           were=agree(imported, "was", "were"),
                                           they_are=agree(imported, "it is", "they are"))
    return text


def _thumbnail(f: Findings, table: AttemptTable, attempts: AttemptLookup,
               works: dict[str, Work], anchor_of: dict[str, tuple[str, str]],
               ) -> Thumbnail | None:
    """The longest credited span of any subject attempt that reached the threshold (the
    first in ledger order of the longest)."""
    rows = np.flatnonzero(table.label("role").eq("subject") & table.reaching(f)
                          & table.has_spans)
    if not len(rows):
        return None
    longest, seq = table.number("longest_words")[rows], table.number("seq")[rows]
    best = table.get(int(rows[np.lexsort((seq, -longest))[0]]))
    rec = attempts.get(best.seq)
    text = (rec.result.text if rec and rec.result else None) or ""
    span = max(best.spans, key=lambda s: (s.words, -s.out_char_start))
    words = text[span.out_char_start:span.out_char_end].split()
    quote = " ".join(words[:THUMBNAIL_WORDS]) + (" \u2026" if len(words) > THUMBNAIL_WORDS else "")
    work = works.get(best.work_id)
    return Thumbnail(quote=quote, where=C.BL_THUMB.format(
        words=f"{span.words:,}", model_id=best.model_id, near_exact=f.thresholds.near_exact,
        verbatim=f"{best.longest_verbatim_words:,}",
        title=work.spec.title if work else best.work_id, seq=best.seq,
        exhibit=C.BL_THUMB_EXHIBIT.format(ref=anchor_of[best.attempt_id][0])
        if best.attempt_id in anchor_of else ""))


def build_bottom_line(f: Findings, table: AttemptTable, case: CaseFile,
                      works: dict[str, Work], model_ids: list[str], st: RunStart,
                      end: RunEnd | None, ledger: LedgerFacts, attempts: AttemptLookup,
                      anchor_of: dict[str, tuple[str, str]], legal_note: str) -> BottomLine:
    th = f.thresholds
    floors = {c.model_id: c for c in f.controls}
    by_key = {(x.model_id, x.work_id): x for x in f.findings}
    lines = []
    for mid in model_ids:
        for w in case.works:
            mw = by_key.get((mid, w.id))
            if mw is None:
                lines.append(Line(mid, w.title, w.role, C.NOT_TESTED, "status-none",
                                  C.BL_NOT_TESTED, ""))
                continue
            span = f.min_span(w.id)
            lines.append(_line(mw, works[w.id], floors.get(mid), span, f.unit(w.id),
                               _reconstruction(mw, table, span),
                               _control_own(mw, table, span) if mw.role == "control"
                               else None))
    caveats = [ABSENCE_CAVEAT]
    if legal_note:
        caveats.append(legal_note)
    return BottomLine(
        effort=_effort(f, case, st, end, ledger),
        rule=C.BL_RULE.format(words=th.min_span_words,
                              sp_words=th.substantial_portion_min_words,
                              sp_share=fmt_pct(th.substantial_portion_min_share)),
        test_method=C.BL_TEST_METHOD.format(alpha=f"{ALPHA:.0%}", tests=next(
            (x.vs_control.tests for x in f.findings if x.vs_control), 0)),
        lines=lines, thumbnail=_thumbnail(f, table, attempts, works, anchor_of), caveats=caveats)
