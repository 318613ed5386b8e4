"""Methods (partials/methods.html.j2): profiles, thresholds, definitions, strategies and
decoding, as the findings and the case file state them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from casekit.analysis.findings import (
    Findings,
)
from casekit.analysis.taxonomy import CATEGORY_TEXT
from casekit.case import CaseFile
from casekit.records import (
    RunStart,
)
from casekit.report.sections.further import FURTHER_DEFINITION_LABELS
from casekit.report.text import (
    DASH,
    fmt_pct,
    fmt_value,
    ordered,
)
from casekit.report.views import KV

log = logging.getLogger(__name__)


#: [Car23] single-output extraction threshold, printed when a case lowers its thresholds.
LEGAL_DEFAULT_TEXT = "50 tokens / 40 words [Car23]"


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



def _strategy_info(name: str) -> tuple[str, str]:
    """(intent, description) of a registered strategy, or empty strings."""
    try:
        from casekit.strategies.base import strategy_class

        cls = strategy_class(name)
        return str(cls.intent), str(cls.description)
    except Exception:  # noqa: BLE001 - a missing plugin must not stop the report
        log.info("strategy %s is not installed: its description is left out", name)
        return "", ""



def build_methods(f: Findings, case: CaseFile, start: RunStart) -> Methods:
    profiles = []
    for use in ordered(f.profiles, ("spans", "bmc")):
        prof = f.profiles[use]
        label = {"spans": "Spans, coverage and word thresholds", "bmc": "BMC@k"}.get(use, use)
        profiles.append(KV(label, prof, PROFILE_TEXT.get(prof, "")))
    thresholds = []
    for key in ordered(f.thresholds, THRESHOLD_LABELS):
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
                   for k in ordered(f.definitions, DEFINITION_LABELS)]
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
