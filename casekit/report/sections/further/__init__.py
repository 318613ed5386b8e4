"""Further measures (partials/further.html.j2): the literature's measures per model x work beside
the control's. One module per block of the partial, so that a strategy's own measure (the
census, p_z) is one module here and one block there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from casekit.analysis.findings import Findings, ModelWorkFinding
from casekit.analysis.registry import empty_fields
from casekit.report import catalogue as C
from casekit.report import figures
from casekit.report.sections.further.census import CensusView, census_view
from casekit.report.sections.further.comparison import ComparisonRow, overlap_text, ratio_text
from casekit.report.sections.further.coverage_map import CoverageMap, build_coverage_map
from casekit.report.sections.further.intervals import IntervalRow, build_intervals
from casekit.report.sections.further.measures import Measure, build_measures, present_measures
from casekit.report.sections.further.probabilistic import ProbView, prob_view
from casekit.report.table import AttemptTable
from casekit.report.text import boot_text, fmt_pct, fmt_value
from casekit.report.views import KV, RateView, rate_view
from casekit.strategies.census import CensusFields
from casekit.strategies.measures import Measure as MeasureClass
from casekit.strategies.measures import MeasureFields
from casekit.strategies.teacher_forced import ProbabilisticFields
from casekit.works import Work

log = logging.getLogger(__name__)


def further_definitions(f: Findings) -> list[KV]:
    """The definitions the further measures cite: the report's own and each present
    measure's (at the place the measure gives, with its label)."""
    keyed: list[tuple[int, str, str]] = [
        (order, key, C.FURTHER_DEFINITION_LABELS[key])
        for key, order in C.FURTHER_DEFINITION_ORDER.items()]
    for cls in present_measures(f):
        if cls.further_order is not None:
            keyed.append((cls.further_order, cls.name, cls.title()))
    return [KV(label, f.definitions[key], key)
            for _, key, label in sorted(keyed, key=lambda x: x[0]) if key in f.definitions]


@dataclass(frozen=True)
class Helpers:
    """The formatting helpers a measure's partial gets (every number is formatted as in the
    rest of the report)."""

    fmt_pct: Callable[..., str] = fmt_pct
    rate_view: Callable[..., RateView] = rate_view
    boot_text: Callable[..., str] = boot_text
    fmt_value: Callable[..., str] = fmt_value


HELPERS = Helpers()


@dataclass(frozen=True)
class MeasurePartial:
    """A measure's own block in a model x work: its partial and what it shows."""

    template: str
    measure: type[MeasureClass]
    fields: MeasureFields
    """The finding's fields of the measure (not empty)."""
    control: MeasureFields | None
    """The same fields of the model's control work, if this is a subject work and they are
    not empty."""
    helpers: Helpers = HELPERS


def measure_partials(f: Findings, mw: ModelWorkFinding, ctrl: ModelWorkFinding | None,
                     ) -> list[MeasurePartial]:
    """The partials of the present measures that declare one and have figures here."""
    out = []
    for cls in present_measures(f):
        if cls.partial is None or cls.FindingFields is None:
            continue
        mine = mw.measure(cls.FindingFields)
        if mine is None or mine == empty_fields(cls.FindingFields):
            continue
        theirs = ctrl.measure(cls.FindingFields) if ctrl is not None else None
        if theirs == empty_fields(cls.FindingFields):
            theirs = None
        out.append(MeasurePartial(template=f"partials/{cls.partial}", measure=cls,
                                  fields=mine, control=theirs))
    return out


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
    partials: list[MeasurePartial]
    """The blocks of the measures that bring their own partial."""
    intervals: list[IntervalRow]
    coverage_map: CoverageMap


@dataclass(frozen=True)
class Further:
    definitions: list[KV]
    rows: list[FurtherRow]
    comparisons: list[ComparisonRow]


def build_further(f: Findings, table: AttemptTable, works: dict[str, Work],
                  model_ids: list[str]) -> Further:
    """Further measures of every model x work (beside its control's) and the comparisons."""
    rows: list[FurtherRow] = []
    ids = figures.FigureIds()
    for mid in model_ids:
        mine = [mw for mw in f.findings if mw.model_id == mid]
        ctrl = next((mw for mw in mine if mw.role == "control"), None)
        for mw in mine:
            c = ctrl if mw.role == "subject" else None
            prob = mw.fields(ProbabilisticFields).probabilistic
            cprob = c.fields(ProbabilisticFields).probabilistic if c is not None else None
            ccensus = c.fields(CensusFields).census if c is not None else []
            rows.append(FurtherRow(
                model_id=mid, work_id=mw.work_id, work_title=works[mw.work_id].spec.title,
                role=mw.role,
                control_label=(C.CONTROL_WORK_OF.format(model_id=mid,
                                                        title=works[c.work_id].spec.title)
                               if c is not None else ""),
                measures=build_measures(f, table, mw, c),
                prob=(prob_view(prob, cprob) if prob is not None else None),
                control_has_prob=cprob is not None,
                census=[census_view(cs, next((x for x in ccensus
                                               if x.strategy_key == cs.strategy_key),
                                              ccensus[0] if ccensus else None)
                                     if c is not None else None)
                        for cs in mw.fields(CensusFields).census],
                partials=measure_partials(f, mw, c),
                intervals=build_intervals(mw),
                coverage_map=build_coverage_map(table, mw, works[mw.work_id], ids),
            ))
    comparisons = []
    for cmp in f.comparisons:
        cj, cb, cd = overlap_text(cmp.coverage)
        bj, bb, bd = overlap_text(cmp.bmc5)
        er, en = ratio_text(cmp.extraction_ratio)
        rr, rn = ratio_text(cmp.regurgitation_ratio)
        title = works[cmp.work_id].spec.title if cmp.work_id in works else cmp.work_id
        comparisons.append(ComparisonRow(
            work_id=cmp.work_id, work_title=title, model_a=cmp.model_a, model_b=cmp.model_b,
            coverage_jaccard=cj, coverage_baseline=cb, coverage_detail=cd,
            bmc5_jaccard=bj, bmc5_baseline=bb, bmc5_detail=bd,
            extraction_ratio=er, extraction_note=en, regurgitation_ratio=rr,
            regurgitation_note=rn))
    return Further(definitions=further_definitions(f), rows=rows, comparisons=comparisons)

