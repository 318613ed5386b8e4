"""Controls (partials/controls.html.j2): each model's control floor (the rate of chance
reproduction of an unseen text, shown beside every subject finding), and whether each control
qualifies: why the model cannot have seen it, and how its length compares with the subjects'.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np

from casekit.analysis.control_test import control_threshold
from casekit.analysis.findings import (
    ControlFloor,
    Findings,
)
from casekit.case import CaseFile, ModelSpec, WorkSpec
from casekit.report import catalogue as C
from casekit.report.table import AttemptTable
from casekit.report.text import (
    DASH,
    fmt_pct,
)
from casekit.report.views import RateView, rate_view
from casekit.stats import chance_count, rate

log = logging.getLogger(__name__)


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
    at: str = ""
    """Set when these counts are at a subject work's threshold rather than at each
    control's own (:func:`floor_at`): says which, and what the floor itself is."""


def floor_view(cf: ControlFloor | None, model_id: str, control_works: list[str]) -> FloorView:
    """One model's control floor, or why there is none (never a silent zero)."""
    if cf is None or cf.attempts.n == 0:
        return FloorView(model_id=model_id, available=False, attempts=rate_view(
            cf.attempts) if cf else RateView(C.NOT_TESTED, DASH, C.NO_ATTEMPTS_ESTIMATE),
            upper_95=DASH, max_coverage=DASH, max_bmc5=DASH,
            mean_top1=fmt_pct(cf.mean_top1_share) if cf else DASH,
            control_works=control_works,
            sentence=C.FLOOR_NONE.format(model_id=model_id))
    rv = rate_view(cf.attempts)
    return FloorView(
        model_id=model_id, available=True, attempts=rv, upper_95=fmt_pct(cf.upper_95),
        max_coverage=fmt_pct(cf.max_coverage), max_bmc5=fmt_pct(cf.max_bmc5),
        mean_top1=fmt_pct(cf.mean_top1_share), control_works=control_works,
        by_intent={k: rate_view(v) for k, v in sorted(cf.by_intent.items())},
        sentence=C.FLOOR.format(k_of_n=rv.k_of_n, upper_95=fmt_pct(cf.upper_95)),
    )


#: A control shorter than this share of a subject's length is flagged (size matching).
SIZE_RATIO_MIN = 0.25


@dataclass(frozen=True)
class ControlQualification:
    """One control work: why it qualifies, per model, and what weakens it."""

    work_id: str
    title: str
    words: str
    reasons: list[str]
    warnings: list[str]


def _reason(w: WorkSpec, m: ModelSpec) -> tuple[str, str]:
    """(reason, warning) of one control for one model; either may be empty."""
    pub = w.published.isoformat() if w.published else ""
    cutoff = m.training_cutoff.isoformat() if m.training_cutoff else ""
    if w.unpublished:
        return C.CONTROL_UNPUBLISHED.format(model_id=m.id, written=pub or C.DATE_UNKNOWN), ""
    if not pub:
        return "", C.CONTROL_NO_DATE.format(model_id=m.id)
    if not cutoff:
        return "", C.CONTROL_NO_CUTOFF.format(model_id=m.id, published=pub)
    if w.published and m.training_cutoff and w.published > m.training_cutoff:
        return C.CONTROL_AFTER_CUTOFF.format(model_id=m.id, published=pub, cutoff=cutoff), ""
    return "", C.CONTROL_BEFORE_CUTOFF.format(model_id=m.id, published=pub, cutoff=cutoff)


def build_qualifications(case: CaseFile, words: dict[str, int]) -> list[ControlQualification]:
    """Each control work's reason to qualify (per model) and its warnings: a publication date
    before a model's stated training cutoff or unknown, and a length under SIZE_RATIO_MIN of
    a subject's. ``words``: each work's counted words (exclusions removed)."""
    subjects = [w for w in case.works if w.role == "subject"]
    out = []
    for w in case.works:
        if w.role != "control":
            continue
        reasons, warnings = [], []
        for m in case.models:
            reason, warning = _reason(w, m)
            if reason:
                reasons.append(reason)
            if warning:
                warnings.append(warning)
        n = words.get(w.id, 0)
        short = [f"{s.id} ({words.get(s.id, 0):,} words)" for s in subjects
                 if n < SIZE_RATIO_MIN * words.get(s.id, 0)]
        if short:
            warnings.append(C.CONTROL_SHORT.format(words=f"{n:,}", subjects=", ".join(short),
                                                   ratio=f"{SIZE_RATIO_MIN:.0%}"))
        out.append(ControlQualification(work_id=w.id, title=w.title, words=f"{n:,}",
                                        reasons=reasons, warnings=warnings))
    return out


def floor_at(base: FloorView, f: Findings, table: AttemptTable, work_id: str) -> FloorView:
    """The model's control floor beside a subject work whose reporting threshold is not the
    controls' own (a short work's scaled threshold, a CJK work's characters): the floor's
    attempts counted at the work's threshold (in each control's unit,
    casekit.analysis.control_test.control_threshold), as the test against the control
    counts them. A song's 1 of 1 at 12 words beside a floor of 0 of 3 at the prose
    control's 40 compared two thresholds. ``base`` itself where the thresholds agree."""
    if not base.available:
        return base
    span, unit = f.min_span(work_id), f.unit(work_id)
    own = {cw: f.min_span(cw) for cw in base.control_works}
    need = {cw: control_threshold(span, unit, f.unit(cw)) for cw in base.control_works}
    if need == own:
        return base
    # The floor's attempts (casekit.analysis.control_test): span-matched generation attempts on
    # the model's control works that returned an output.
    sel = (table.matched_outputs() & table.label("model_id").eq(base.model_id)
           & table.label("role").eq("control"))
    longest = table.number("longest_words")
    threshold = np.zeros(len(longest), dtype=np.int64)
    for cw, t in need.items():
        threshold[table.label("work_id").eq(cw)] = t
    hit = sel & (longest >= threshold)
    intents = table.label("intent")
    k, n = int(hit.sum()), int(sel.sum())
    attempts, upper = chance_count(k, n)
    at = C.FLOOR_AT.format(
        min_span=f"{span:,}", unit=unit,
        own=", ".join(sorted({f"{t:,} {f.unit(cw)}" for cw, t in own.items()})),
        floor=base.attempts.k_of_n)
    return replace(
        base, attempts=rate_view(attempts), upper_95=fmt_pct(upper),
        by_intent={i: rate_view(rate(int((hit & intents.eq(i)).sum()),
                                     int((sel & intents.eq(i)).sum())))
                   for i in base.by_intent},
        at=at)


def build_floors(f: Findings, case: CaseFile, model_ids: list[str]) -> dict[str, FloorView]:
    """Each model's control floor (also shown beside every subject finding in the summary)."""
    control_ids = [w.id for w in case.works if w.role == "control"]
    return {mid: floor_view(next((c for c in f.controls if c.model_id == mid), None), mid,
                            control_ids) for mid in model_ids}
