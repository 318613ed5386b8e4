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
from casekit.report import catalogue as C
from casekit.report.text import (
    DASH,
    fmt_pct,
)
from casekit.report.views import rate_view
from casekit.stats import Rate
from casekit.strategies.iterative import SessionsRecallFields
from casekit.strategies.name_cloze import ClozeFinding
from casekit.strategies.prefix import DiscoverableRates, PzBoundSummary
from casekit.strategies.teacher_forced import ProbabilisticFields

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


def _has_generations(f: Findings, mw: ModelWorkFinding) -> bool:
    return any(x.model_id == mw.model_id and x.work_id == mw.work_id and x.mode != "score"
               and x.span_attempt for x in f.attempts)


#: A measure's figure and note for one model x work (the subject's, or its control's).
Getter = Callable[[Findings, ModelWorkFinding], tuple[str, str]]


def _greedy(f: Findings, m: ModelWorkFinding) -> tuple[str, str]:
    prob = m.fields(ProbabilisticFields).probabilistic
    if prob is None:
        return DASH, C.NO_SCORED_WINDOWS
    v, note = _opt_rate(prob.greedy)
    return C.N_WINDOWS.format(n=v), C.PRESET_NOTE.format(preset=prob.preset, note=note)


def _disc(exact: bool) -> Getter:
    def get(f: Findings, m: ModelWorkFinding) -> tuple[str, str]:
        rates = m.fields(DiscoverableRates)
        r = rates.discoverable_exact if exact else rates.discoverable_approx
        v, note = _opt_rate(r)
        return (C.N_WINDOWS.format(n=v) if r is not None else v), note
    return get


def _over_t(f: Findings, m: ModelWorkFinding) -> tuple[str, str]:
    if not _has_generations(f, m):
        return DASH, C.NO_GENERATIONS
    return f"{m.spans_over_t:,}", C.SPANS_OVER_T_NOTE


def _blocks(f: Findings, m: ModelWorkFinding) -> tuple[str, str]:
    light = f"{m.coverage.longest_block_words:,} words"
    if not _has_generations(f, m):
        return C.BLOCKS.format(bmc5=DASH, light=light), C.NO_GENERATIONS
    return (C.BLOCKS.format(bmc5=f"{m.longest_block_bmc5:,} words", light=light),
            C.BLOCKS_NOTE)


def _cloze(f: Findings, m: ModelWorkFinding) -> tuple[str, str]:
    """The name_cloze strategy's measure."""
    nc = m.fields(ClozeFinding).name_cloze
    if nc is None:
        return DASH, C.NO_CLOZE
    acc, acc_note = _opt_rate(nc.accuracy)
    base, base_note = _opt_rate(nc.majority_baseline)
    name = C.CLOZE_MAJORITY.format(name=nc.majority_name) if nc.majority_name else ""
    return (C.CLOZE.format(accuracy=acc, baseline=base),
            C.CLOZE_NOTE.format(accuracy_note=acc_note, majority=name, baseline_note=base_note))


def _nv(f: Findings, m: ModelWorkFinding) -> tuple[str, str]:
    """The iterative-continuation strategy's measure."""
    r = m.fields(SessionsRecallFields).nv_recall
    if r is None:
        return DASH, C.NO_SESSIONS
    c = r.combined
    return (C.NV_RECALL.format(recall=fmt_pct(c.recall), matched=f"{c.matched:,}",
                               words=f"{c.book_words:,}"),
            C.NV_RECALL_NOTE.format(sessions=f"{r.sessions:,}",
                                    plural="s" if r.sessions != 1 else "",
                                    best=fmt_pct(r.best_session)))


def _api_pz(f: Findings, m: ModelWorkFinding) -> tuple[str, str]:
    """p_z bounds from API top-k log-probs."""
    b = m.fields(PzBoundSummary).api_pz_bounds
    if b is None:
        return DASH, C.NO_API_LOGPROBS
    at1 = next((x for x in b.top40_upper_shares if abs(x.tau - 0.01) < 1e-12), None)
    share = (C.API_PZ_SHARE.format(n=f"{at1.windows:,}", windows=f"{b.windows:,}")
             if at1 is not None else "")
    return (C.API_PZ.format(one=f"{b.greedy_one:,}", windows=f"{b.windows:,}"),
            C.API_PZ_NOTE.format(zero=f"{b.greedy_zero:,}",
                                 undetermined=f"{b.greedy_undetermined:,}", share=share,
                                 top_k=b.top_k))


#: The table's rows, in order: (key of the label in the catalogue, key of the definition in
#: findings.definitions, getter). A strategy's own measure is one row here.
MEASURES: tuple[tuple[str, str, Getter], ...] = (
    ("nv_recall", "nv_recall", _nv),
    ("pz_upper_bound", "pz_upper_bound", _api_pz),
    ("p_z", "p_z", _greedy),
    ("discoverable_exact", "discoverable_5050", _disc(True)),
    ("discoverable_approx", "discoverable_5050", _disc(False)),
    ("spans_over_t", "spans_over_t", _over_t),
    ("longest_block", "longest_block", _blocks),
    ("name_cloze", "name_cloze", _cloze),
)


def build_measures(f: Findings, mw: ModelWorkFinding, ctrl: ModelWorkFinding | None,
                   ) -> list[Measure]:
    """Each measure of this model x work beside the same measure of its control work."""
    out = []
    for key, definition, get in MEASURES:
        v, note = get(f, mw)
        cv, cnote = get(f, ctrl) if ctrl is not None else (DASH, "")
        out.append(Measure(label=C.MEASURE_LABELS[key], definition=definition, value=v,
                           note=note, control=cv, control_note=cnote))
    return out
