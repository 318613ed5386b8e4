"""The measures table of partials/further.html.j2: each figure for this work beside the
control's, with the definition it follows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from casekit.analysis.findings import (
    Findings,
    ModelWorkFinding,
)
from casekit.analysis.registry import measure_by_name
from casekit.report import catalogue as C
from casekit.report.table import AttemptTable
from casekit.report.text import (
    DASH,
    fmt_pct,
)
from casekit.report.views import rate_view
from casekit.stats import Rate
from casekit.strategies.iterative import NvRecallMeasure, SessionsRecallFields
from casekit.strategies.measures import Measure as MeasureClass
from casekit.strategies.name_cloze import ClozeFinding, NameClozeMeasure
from casekit.strategies.prefix import (
    Discoverable5050,
    DiscoverableRates,
    PzBoundSummary,
    PzUpperBound,
)
from casekit.strategies.teacher_forced import ProbabilisticFields, PzMeasure

log = logging.getLogger(__name__)


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


def _opt_rate(r: Rate | None) -> tuple[str, str]:
    """``k of n`` and its note for a rate that may be absent (DASH, no fake zero)."""
    if r is None:
        return DASH, C.NOT_MEASURED
    v = rate_view(r)
    return v.k_of_n, (f"{v.pct}; {v.ci}" if r.n else v.ci)


def has_generations(table: AttemptTable, mw: ModelWorkFinding) -> bool:
    """The model x work has span-matched generation attempts (AttemptAnalysis.span_attempt;
    read until the first)."""
    return bool((table.of(mw.model_id, mw.work_id) & table.span_attempts()).any())


#: A measure's figure and note for one model x work (the subject's, or its control's), given
#: whether that model x work has span-matched generation attempts (:func:`has_generations`).
Getter = Callable[[Findings, ModelWorkFinding, bool], tuple[str, str]]


def _greedy(f: Findings, m: ModelWorkFinding, gen: bool) -> tuple[str, str]:
    words = PzMeasure.words
    prob = m.fields(ProbabilisticFields).probabilistic
    if prob is None:
        return DASH, words["none"]
    v, note = _opt_rate(prob.greedy)
    return C.N_WINDOWS.format(n=v), words["note"].format(preset=prob.preset, note=note)


def _disc(exact: bool) -> Getter:
    def get(f: Findings, m: ModelWorkFinding, gen: bool) -> tuple[str, str]:
        rates = m.fields(DiscoverableRates)
        r = rates.discoverable_exact if exact else rates.discoverable_approx
        v, note = _opt_rate(r)
        return (C.N_WINDOWS.format(n=v) if r is not None else v), note
    return get


def _over_t(f: Findings, m: ModelWorkFinding, gen: bool) -> tuple[str, str]:
    if not gen:
        return DASH, C.NO_GENERATIONS
    return f"{m.spans_over_t:,}", C.SPANS_OVER_T_NOTE


def _regurgitated(f: Findings, m: ModelWorkFinding, gen: bool) -> tuple[str, str]:
    """[Liu26] longest regurgitated span of one generation against its own excerpt."""
    if not gen:
        return DASH, C.NO_GENERATIONS
    if m.longest_regurgitated_attempt is None:
        return C.WORDS_N.format(n=0), C.REGURGITATED_NONE
    return (C.WORDS_N.format(n=f"{m.longest_regurgitated_words:,}"),
            C.REGURGITATED_NOTE.format(attempt=m.longest_regurgitated_attempt))


def _blocks(f: Findings, m: ModelWorkFinding, gen: bool) -> tuple[str, str]:
    light = f"{m.coverage.longest_block_words:,} words"
    if not gen:
        return C.BLOCKS.format(bmc5=DASH, light=light), C.NO_GENERATIONS
    return (C.BLOCKS.format(bmc5=f"{m.longest_block_bmc5:,} words", light=light),
            C.BLOCKS_NOTE)


def _cloze(f: Findings, m: ModelWorkFinding, gen: bool) -> tuple[str, str]:
    """Name-cloze accuracy beside the majority-name baseline."""
    words = NameClozeMeasure.words
    nc = m.fields(ClozeFinding).name_cloze
    if nc is None:
        return DASH, words["none"]
    acc, acc_note = _opt_rate(nc.accuracy)
    base, base_note = _opt_rate(nc.majority_baseline)
    name = words["majority"].format(name=nc.majority_name) if nc.majority_name else ""
    return (words["value"].format(accuracy=acc, baseline=base),
            words["note"].format(accuracy_note=acc_note, majority=name,
                                 baseline_note=base_note))


def _nv(f: Findings, m: ModelWorkFinding, gen: bool) -> tuple[str, str]:
    """nv-recall of the iterative sessions, all concatenated, and the best one."""
    words = NvRecallMeasure.words
    r = m.fields(SessionsRecallFields).nv_recall
    if r is None:
        return DASH, words["none"]
    c = r.combined
    return (words["value"].format(recall=fmt_pct(c.recall), matched=f"{c.matched:,}",
                                  words=f"{c.book_words:,}"),
            words["note"].format(sessions=f"{r.sessions:,}",
                                 plural="s" if r.sessions != 1 else "",
                                 best=fmt_pct(r.best_session)))


def _api_pz(f: Findings, m: ModelWorkFinding, gen: bool) -> tuple[str, str]:
    """p_z bounds from API top-k log-probs."""
    words = PzUpperBound.words
    b = m.fields(PzBoundSummary).api_pz_bounds
    if b is None:
        return DASH, words["none"]
    at1 = next((x for x in b.top40_upper_shares if abs(x.tau - 0.01) < 1e-12), None)
    share = (words["share"].format(n=f"{at1.windows:,}", windows=f"{b.windows:,}")
             if at1 is not None else "")
    return (words["value"].format(one=f"{b.greedy_one:,}", windows=f"{b.windows:,}"),
            words["note"].format(zero=f"{b.greedy_zero:,}",
                                 undetermined=f"{b.greedy_undetermined:,}", share=share,
                                 top_k=b.top_k))


#: How the report formats each built-in measure's rows, by measure class and row key (the
#: words are the measure's). A measure of a plugin strategy shows itself through its partial.
VIEWS: dict[tuple[type[MeasureClass], str], Getter] = {
    (NvRecallMeasure, "nv_recall"): _nv,
    (PzUpperBound, "bounds"): _api_pz,
    (PzMeasure, "greedy"): _greedy,
    (Discoverable5050, "exact"): _disc(True),
    (Discoverable5050, "approx"): _disc(False),
    (NameClozeMeasure, "accuracy"): _cloze,
}

#: The report's own rows (core measures, not a strategy's): (order, label key in the
#: catalogue, definition key, getter).
CORE_ROWS: tuple[tuple[int, str, str, Getter], ...] = (
    (60, "spans_over_t", "spans_over_t", _over_t),
    (65, "longest_regurgitated", "longest_regurgitated", _regurgitated),
    (70, "longest_block", "longest_block", _blocks),
)


def present_measures(f: Findings) -> list[type[MeasureClass]]:
    """The measures of this analysis (those with a definition in the findings)."""
    return [cls for k in f.definitions if (cls := measure_by_name(k)) is not None]


def table_rows(f: Findings) -> list[tuple[str, str, Getter]]:
    """(label, definition key, getter) of every row, in table order: the report's own rows
    and the rows of the measures present."""
    rows: list[tuple[int, str, str, Getter]] = [
        (order, C.MEASURE_LABELS[key], definition, get)
        for order, key, definition, get in CORE_ROWS]
    for cls in present_measures(f):
        for row in cls.report_rows:
            get = VIEWS.get((cls, row.key))
            if get is None:
                log.warning("measure %s declares row %r, which the report cannot format; "
                            "give the measure a partial instead", cls.name, row.key)
                continue
            rows.append((row.order, row.label, cls.name, get))
    return [(label, definition, get) for _, label, definition, get in
            sorted(rows, key=lambda r: r[0])]


def build_measures(f: Findings, table: AttemptTable, mw: ModelWorkFinding,
                   ctrl: ModelWorkFinding | None) -> list[Measure]:
    """Each measure of this model x work beside the same measure of its control work."""
    out = []
    gen = has_generations(table, mw)
    cgen = has_generations(table, ctrl) if ctrl is not None else False
    for label, definition, get in table_rows(f):
        v, note = get(f, mw, gen)
        cv, cnote = get(f, ctrl, cgen) if ctrl is not None else (DASH, "")
        out.append(Measure(label=label, definition=definition, value=v,
                           note=note, control=cv, control_note=cnote))
    return out
