"""Methods (partials/methods.html.j2): profiles, thresholds, definitions, strategies and
decoding, as the findings and the case file state them, and the matcher's recall and precision
on passages planted in the run's works (casekit.analysis.validation, measured at report time).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from casekit.analysis.findings import Findings
from casekit.analysis.registry import measure_by_name
from casekit.analysis.taxonomy import CATEGORY_TEXT
from casekit.analysis.validation import EDIT_EVERY, FILLER_WORDS, PASSAGES, Validation
from casekit.case import CaseFile
from casekit.records import RunStart
from casekit.report import catalogue as C
from casekit.report.imported import ImportedSummary
from casekit.report.table import AttemptTable
from casekit.report.text import (
    DASH,
    fmt_pct,
    fmt_value,
    ordered,
)
from casekit.report.views import KV

log = logging.getLogger(__name__)


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
    work_bases: list[KV] = field(default_factory=list)
    """Works measured on their own basis (CJK in characters, short works): work, rule."""
    imported: list[KV] = field(default_factory=list)
    """What is known of how imported outputs were obtained, per kind (empty: none)."""
    imported_intro: str = ""
    validation: list[KV] = field(default_factory=list)
    """The matcher's recall and precision on passages planted in each work (report time)."""
    validation_procedure: str = ""
    validation_result: str = ""
    validation_limits: str = ""


def _strategy_info(name: str) -> tuple[str, str]:
    """(intent, description) of a registered strategy, or empty strings."""
    try:
        from casekit.strategies.base import strategy_class

        cls = strategy_class(name)
        return str(cls.intent), str(cls.description)
    except Exception:  # noqa: BLE001 - a missing plugin must not stop the report
        log.info("strategy %s is not installed: its description is left out", name)
        return "", ""


def definition_label(key: str) -> str:
    """The label of a definition: the report's own, or the measure's."""
    if key in C.DEFINITION_LABELS:
        return C.DEFINITION_LABELS[key]
    cls = measure_by_name(key)
    if cls is not None:
        return cls.title()
    return C.FURTHER_DEFINITION_LABELS.get(key, key)


def build_methods(f: Findings, table: AttemptTable, case: CaseFile, start: RunStart,
                  imported: ImportedSummary | None = None,
                  validation: Validation | None = None,
                  units: dict[str, str] | None = None) -> Methods:
    """Profiles, thresholds, definitions, strategies and decoding as the run used them, and
    what is known of how imported outputs were obtained."""
    profiles = []
    for use in ordered(f.profiles, ("spans", "bmc")):
        prof = f.profiles[use]
        label = C.PROFILE_USE_LABELS.get(use, use)
        profiles.append(KV(label, prof, C.PROFILE_TEXT.get(prof, "")))
    thresholds = []
    applied = f.thresholds.model_dump()
    for key in ordered(applied, C.THRESHOLD_LABELS):
        val = applied[key]
        label, note = C.THRESHOLD_LABELS.get(key, (key, ""))
        if key == "substantial_portion_min_share" and isinstance(val, float):
            shown = C.THRESHOLD_SHARE.format(share=fmt_pct(val))
        elif key in ("min_span_words", "substantial_portion_min_words", "echo_min_words",
                     "seed_k", "m_gram") and not isinstance(val, bool):
            shown = C.THRESHOLD_WORDS.format(value=val)
        else:
            shown = fmt_value(val)
        thresholds.append(KV(label, shown, note))
    # Each definition under its label and its key: the key is what "[p_z]" in the further
    # measures refers to.
    definitions = [KV(definition_label(k), f.definitions[k], k)
                   for k in ordered(f.definitions, C.DEFINITION_ORDER)]
    categories = [KV(k.capitalize(), v) for k, v in CATEGORY_TEXT.items()]
    # Attempts per strategy, and the intent of each strategy's first attempt.
    counts: dict[str, int] = {}
    intents: dict[str, str] = {}
    keys, intent_col = table.label("strategy_key"), table.label("intent")
    for code, key in enumerate(keys.values):
        rows = np.flatnonzero(keys.codes == code)
        counts[key] = len(rows)
        intents[key] = intent_col.at(int(rows[0])) or ""
    strategies = []
    for i, s in enumerate(case.strategies):
        key = f"{s.name}#{i}"
        intent, description = _strategy_info(s.name)
        strategies.append(StrategyView(
            key=key, name=s.name, intent=intents.get(key, intent) or DASH,
            description=description or DASH,
            params=[KV(k, fmt_value(v)) for k, v in sorted(s.params.items())],
            models=", ".join(s.models) if s.models is not None else C.ALL_MODELS,
            works=", ".join(s.works) if s.works is not None else C.ALL_WORKS,
            attempts=f"{counts.get(key, 0):,}",
        ))
    d = case.decoding
    values = {
        "temperature": f"{d.temperature:g}",
        "max_tokens": str(d.max_tokens),
        "top_p": fmt_value(d.top_p) if d.top_p is not None else C.NOT_SET,
        "top_k": fmt_value(d.top_k) if d.top_k is not None else C.NOT_SET,
        "samples": str(case.samples),
        "seed": str(case.seed),
    }
    decoding = [KV(label, values[key], note) for key, (label, note) in C.DECODING_ROWS.items()]
    legal = f.thresholds.legal_defaults
    legal_note = "" if legal else C.LEGAL_NOTE.format(
        legal_defaults=C.LEGAL_DEFAULT_TEXT, min_span_words=f.thresholds.min_span_words)
    work_bases = [KV(wid, b.rule, C.WORK_BASIS_NOTE.format(
        unit=b.unit, min_span=f"{b.min_span:,}", block=f"{b.substantial_portion_min_words:,}",
        spans=b.profiles.get("spans", DASH), bmc=b.profiles.get("bmc", DASH)))
        for wid, b in sorted(f.works.items())]
    v_rows, v_procedure, v_result = (validation_views(validation, f.thresholds.near_exact,
                                                      units or {})
                                     if validation is not None else ([], "", ""))
    return Methods(profiles=profiles, thresholds=thresholds, definitions=definitions,
                   categories=categories, strategies=strategies, decoding=decoding,
                   legal_defaults=legal, legal_note=legal_note, work_bases=work_bases,
                   imported=imported.rows if imported else [],
                   imported_intro=C.IMPORTED_INTRO if imported and imported.rows else "",
                   validation=v_rows, validation_procedure=v_procedure,
                   validation_result=v_result,
                   validation_limits=C.VALIDATION_LIMITS if validation is not None else "")


def _ratio(k: int, n: int) -> str:
    return fmt_pct(k / n) if n else DASH


def validation_views(v: Validation, near_exact: float,
                     units: dict[str, str]) -> tuple[list[KV], str, str]:
    """(a row per work, the procedure, the overall result) of the matcher's validation."""
    rows = []
    for w in v.works:
        unit = units.get(w.work_id, "words")
        if not w.planted:
            rows.append(KV(w.work_id, C.VALIDATION_SKIPPED.format(min_span=w.min_span,
                                                                   unit=unit)))
            continue
        rows.append(KV(w.work_id, C.VALIDATION_ROW.format(
            found=w.found, planted=w.planted, recall=_ratio(w.found, w.planted),
            true=w.true_spans, spans=w.spans, precision=_ratio(w.true_spans, w.spans)),
            C.VALIDATION_ROW_NOTE.format(lo=w.shortest, hi=w.longest, words=f"{w.words:,}",
                                         edits=f"{w.edits:,}", min_span=w.min_span,
                                         unit=unit)))
    planted = [w for w in v.works if w.planted]
    procedure = C.VALIDATION_PROCEDURE.format(
        per_work=PASSAGES, planted=f"{v.planted:,}", near_exact=f"{near_exact:g}",
        lo=min((w.shortest for w in planted), default=0),
        hi=max((w.longest for w in planted), default=0), seed=v.seed, every=EDIT_EVERY,
        f_lo=FILLER_WORDS[0], f_hi=FILLER_WORDS[1])
    result = C.VALIDATION_RESULT.format(
        found=f"{v.found:,}", planted=f"{v.planted:,}", recall=_ratio(v.found, v.planted),
        true=f"{v.true_spans:,}", spans=f"{v.spans:,}", precision=_ratio(v.true_spans, v.spans))
    return rows, procedure, result
