"""Glossary (partials/glossary.html.j2): a box defining the report's jargon (BMC@k, p_z,
top-1 share, light-words, nv-recall, block, span, control floor...) placed after the bottom
line, before the first page that uses the terms.

Each entry is short and points to its full definition under Methods (by the same key as
findings.json's ``definitions``), and carries the thresholds the case applied, so the two
cannot disagree: a term is glossed only when its definition is in the findings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from casekit.analysis.findings import Findings
from casekit.report import catalogue as C
from casekit.report.text import fmt_pct

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Term:
    term: str
    text: str
    key: str
    """The key of the full definition under Methods, Definitions ("" for a profile)."""


@dataclass(frozen=True)
class Glossary:
    title: str
    intro: str
    terms: list[Term]


def build_glossary(f: Findings) -> Glossary:
    """The glossed terms, in the catalogue's order, each with the case's thresholds."""
    th = f.thresholds
    fmt = {"near_exact": f"{th.near_exact:g}", "seed_k": th.seed_k,
           "min_span_words": th.min_span_words,
           "block_words": th.substantial_portion_min_words,
           "block_share": fmt_pct(th.substantial_portion_min_share)}
    terms = [Term(term, text.format(**fmt), key) for key, (term, text) in C.GLOSSARY.items()
             if key in f.definitions]
    profile = f.profiles.get("spans", "")
    if profile == "light-words":
        term, text = C.GLOSSARY_PROFILE
        terms.insert(1, Term(term, text.format(text=C.PROFILE_TEXT["light-words"],
                                               light=C.PROFILE_TEXT["light"]), ""))
    return Glossary(title=C.GLOSSARY_TITLE, intro=C.GLOSSARY_INTRO, terms=terms)
