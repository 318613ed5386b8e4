"""Limitations (partials/limitations.html.j2): the fixed caveats, then those read off this run's
own data (tools, model aliases, openings, excluded passages, filters, small samples).
"""

from __future__ import annotations

import logging
import re

import numpy as np

from casekit.analysis.findings import Findings
from casekit.analysis.taxonomy import ABSENCE_CAVEAT
from casekit.case import CaseFile
from casekit.report import catalogue as C
from casekit.report.inputs import Inputs
from casekit.report.sections.controls import FloorView
from casekit.report.table import NO_SPAN, AttemptTable
from casekit.report.text import agree, counted, some
from casekit.report.tooluse import TOOL_REQUEST_KEYS
from casekit.works import Excluded, Work

log = logging.getLogger(__name__)


def build_limitations(f: Findings, table: AttemptTable, case: CaseFile,
                      floors: list[FloorView], inputs: Inputs | None = None) -> list[str]:
    """The fixed caveats with this run's numbers, then those read off its data."""
    th = f.thresholds
    gen = table.span_attempts()  # the attempts whose outputs were echo-checked and matched
    echo_words = table.number("echo_words")[gen]
    out = [
        C.LIMIT_ECHO.format(echo_min_words=th.echo_min_words,
                            echo_words=f"{int(echo_words.sum()):,}",
                            echoed=f"{int((echo_words != 0).sum()):,}",
                            generations=f"{int(gen.sum()):,}"),
        C.LIMIT_QUOTED.format(min_span_words=th.min_span_words),
        ABSENCE_CAVEAT,
        C.LIMIT_VARIANCE.format(samples=counted(case.samples, "sample")),
    ]
    outcome = table.label("outcome")
    errors, refusals, unscorable = (int(outcome.eq(o).sum())
                                    for o in ("error", "refusal", "unscorable"))
    if errors or refusals or unscorable:
        out.append(C.LIMIT_FAILURES.format(errors=f"{errors:,}", refusals=f"{refusals:,}",
                                           unscorable=f"{unscorable:,}"))
    if not f.complete or f.recorded_attempts < f.planned_attempts:
        out.append(C.LIMIT_INCOMPLETE.format(recorded=f"{f.recorded_attempts:,}",
                                             planned=f"{f.planned_attempts:,}"))
    if f.imported_attempts:
        n = f.imported_attempts
        text = C.LIMIT_IMPORTED.format(imported=counted(n, "attempt"), were=agree(n, "was", "were"),
                                       are=agree(n, "is", "are"))
        if inputs is not None:
            summary = inputs.ledger.imported_summary()
            if summary.unstated:
                text += C.LIMIT_IMPORTED_UNSTATED.format(unstated=f"{summary.unstated:,}")
            if summary.missing:
                text += C.LIMIT_IMPORTED_MISSING.format(missing="; ".join(summary.missing))
        out.append(text)
    missing = [fv.model_id for fv in floors if not fv.available]
    if missing:
        out.append(C.LIMIT_NO_FLOOR.format(
            models=", ".join(missing), which="that model" if len(missing) == 1 else "those models",
            whose="its" if len(missing) == 1 else "their"))
    cjk = sorted(wid for wid, b in f.works.items() if b.unit == "characters")
    if cjk and cjk_font_missing():
        out.append(C.LIMIT_NO_CJK_FONT.format(works=", ".join(cjk)))
    return out + (_data_limitations(f, table, inputs) if inputs is not None else [])


def cjk_font_missing() -> bool:
    """True when fontconfig (which WeasyPrint renders with) knows no font with Chinese or
    Japanese glyphs: the PDF would show CJK characters as empty boxes. False when it has one,
    or when fontconfig's ``fc-list`` is not there to ask."""
    import shutil
    import subprocess

    fc = shutil.which("fc-list")
    if fc is None:
        return False
    try:
        found = [subprocess.run([fc, f":lang={lang}", "family"], capture_output=True, text=True,
                                timeout=10, check=False).stdout.strip() for lang in ("zh", "ja")]
    except (OSError, subprocess.SubprocessError):
        return False
    if not all(found):
        log.warning("no font with Chinese/Japanese glyphs is installed: CJK text in the PDF "
                    "will show as empty boxes; install one (e.g. fonts-noto-cjk) and re-render")
        return True
    return False


#: Work words from the start that count as the opening (the most widely quoted part).
OPENING_WORDS = 200
_DATED_MODEL_RE = re.compile(r"\d{4}-?\d{2}-?\d{2}|\d{8}|@\d|-\d{3,4}$")


def _data_limitations(f: Findings, table: AttemptTable, inputs: Inputs) -> list[str]:
    """Limitations read off this run's own data: tools and retrieval, model aliases and
    identity changes, openings and excluded passages, filters, small samples."""
    out: list[str] = []
    led = inputs.ledger
    # Retrieval and tools.
    tooled_req = led.tooled_requests
    tooled_resp = led.tooled_responses
    if tooled_req or tooled_resp:
        tools = C.LIMIT_TOOLS.format(requests=f"{tooled_req:,}",
                                     checked=f"{led.checked_requests:,}",
                                     keys=", ".join(TOOL_REQUEST_KEYS[:4]),
                                     responses=f"{tooled_resp:,}")
    elif led.checked_requests:
        tools = C.LIMIT_NO_TOOLS.format(checked=f"{led.checked_requests:,}")
    else:
        tools = C.LIMIT_TOOLS_NONE_SENT
    if led.unanswered_requests:
        n = led.unanswered_requests
        tools += " " + C.LIMIT_TOOLS_UNANSWERED.format(
            n=counted(n, "attempt record"), hold=agree(n, "holds", "hold"),
            are=agree(n, "is", "are"))
    if led.imported_records:
        n = led.imported_records
        tools += " " + C.LIMIT_TOOLS_IMPORTED.format(
            n=counted(n, "imported output"), the_requests=agree(n, "the request", "the requests"),
            them=agree(n, "it", "them"))
    if not (tooled_req or tooled_resp) and led.checked_requests:
        tools += " " + C.LIMIT_TOOLS_PROVIDER
    out.append(tools)
    # Model identity: aliases, several returned ids, changing fingerprints.
    for m in inputs.start.models:
        returned = sorted(led.returned_models.get(m.model_id, ()))
        prints = sorted(led.fingerprints.get(m.model_id, ()))
        notes = []
        if m.provider != "local" and not _DATED_MODEL_RE.search(m.model):
            notes.append(C.MODEL_ALIAS.format(model=repr(m.model)))
        if len(returned) > 1:
            notes.append(C.MODEL_RETURNED_MANY.format(
                n=len(returned),
                ids=some(returned, 5)))
        elif returned and returned[0] != m.model:
            notes.append(C.MODEL_RETURNED_OTHER.format(model=repr(m.model),
                                                       returned=repr(returned[0])))
        if len(prints) > 1:
            notes.append(C.MODEL_FINGERPRINTS.format(n=len(prints)))
        if notes:
            out.append(C.LIMIT_MODEL.format(model_id=m.model_id, notes="; ".join(notes)))
    # Widely quoted openings and excluded passages.
    hits = table.reaching(f) & table.label("role").eq("subject")
    first = table.first_word[hits]
    opening = int(((first != NO_SPAN) & (first < OPENING_WORDS)).sum())
    if hits.any():
        out.append(C.LIMIT_OPENINGS.format(opening=f"{opening:,}", hits=f"{int(hits.sum()):,}",
                                           opening_words=OPENING_WORDS))
    excluded = [(w.id, e) for w in inputs.works.values() for e in w.excluded]
    if excluded:
        out.append(C.LIMIT_EXCLUDED.format(passages=_excluded_text(excluded)))
    else:
        out.append(C.LIMIT_NONE_EXCLUDED)
    out += boilerplate_warnings(f, table, inputs)
    # Filters and refusals by source.
    filtered = led.filtered_or_refused
    source = table.label("refusal_source")
    by_source = {v: n for v in source.values if v and (n := int(source.eq(v).sum()))}
    if filtered or by_source:
        out.append(C.LIMIT_FILTERS.format(
            filtered=counted(filtered, "response"),
            by_source=", ".join(f"{k} {v:,}" for k, v in sorted(by_source.items()))))
    # Small samples.
    small = sorted({mw.model_id + " \u00d7 " + mw.work_id for mw in f.findings
                    if mw.role == "subject" and any(0 < r.n < 30 for r in (
                        mw.regurgitation, mw.extraction))})
    if small:
        out.append(C.LIMIT_SMALL.format(findings=some(small, SMALL_SHOWN)))
    return out


RANGES_SHOWN = 6
"""Character ranges listed per work and reason of exclusion; the rest are counted."""
SMALL_SHOWN = 8
"""Model x work findings named under small samples; the rest are counted."""


def _excluded_text(excluded: list[tuple[str, Excluded]]) -> str:
    """The excluded passages, one entry per work and reason, in order: how many, why, and
    their character ranges (the first RANGES_SHOWN, then how many more: a song's refrain
    lines or a novel's boilerplate, not a list cut off by an ellipsis)."""
    groups: dict[tuple[str, str], list[Excluded]] = {}
    for wid, e in excluded:
        groups.setdefault((wid, e.reason), []).append(e)
    parts = []
    for (wid, reason), es in groups.items():
        ranges = some([f"{e.start:,}\u2013{e.end:,}" for e in es], RANGES_SHOWN)
        parts.append(C.EXCLUDED_GROUP.format(work=wid, passages=counted(len(es), "passage"),
                                             reason=reason, ranges=ranges))
    return "; ".join(parts)


#: A model x work's matches "fall mostly inside" boilerplate above this share of matched words.
BOILERPLATE_WARN_SHARE = 0.5


def boilerplate_share(f: Findings, table: AttemptTable, work: Work, model_id: str,
                      ) -> tuple[int, int]:
    """(matched work words inside the work's detected boilerplate, all matched work words) of
    the model's attempts on the work that reached the reporting threshold."""
    if not work.boilerplate:
        return 0, 0
    starts = np.asarray(work.tokens.starts)
    inside = np.zeros(len(starts), dtype=bool)
    for b in work.boilerplate:
        inside |= (starts >= b.start) & (starts < b.end)
    hit = np.zeros(len(starts), dtype=bool)
    rows = np.flatnonzero(table.of(model_id, work.id) & table.reaching(f) & table.has_spans)
    for x in table.analyses(rows):
        for s in x.spans:
            hit[s.work_word_start:s.work_word_end] = True
    return int((hit & inside).sum()), int(hit.sum())


def boilerplate_warnings(f: Findings, table: AttemptTable, inputs: Inputs) -> list[str]:
    """Detected boilerplate the case keeps as text, and a warning per model x subject work
    whose matches fall mostly inside it (they reproduce the distributor's notice, not the
    work)."""
    out: list[str] = []
    for w in inputs.works.values():
        if not w.boilerplate_kept:
            continue
        out.append(C.LIMIT_BOILERPLATE_KEPT.format(
            work=w.id, passages=_excluded_text([(w.id, b) for b in w.boilerplate])))
        if w.role != "subject":
            continue
        for mw in f.findings:
            if mw.work_id != w.id:
                continue
            inside, total = boilerplate_share(f, table, w, mw.model_id)
            if total and inside / total > BOILERPLATE_WARN_SHARE:
                out.append(C.WARN_BOILERPLATE.format(
                    model=mw.model_id, work=w.id, inside=f"{inside:,}", total=f"{total:,}",
                    share=f"{inside / total:.0%}"))
    return out
