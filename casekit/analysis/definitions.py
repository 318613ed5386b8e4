"""The definitions findings.json states for the core measures and every measure an analysis
ran, with the case's thresholds filled in (the report quotes them)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from casekit.strategies.measures import Measure

log = logging.getLogger(__name__)

DEFINITIONS = {
    "span": "A maximal alignment of output words with work words (light-words profile): seeded "
            "with exact {k}-grams from an index of the whole work, extended while the "
            "normalized word-level Levenshtein similarity stays >= {near_exact} (near-verbatim, "
            "since exact-match tests miss copies with small edits [Ipp23]).",
    "leakage": "Prompt-leakage discount: output runs of >= 5 words "
               "found in the prompt are removed; work positions quoted in the prompt are never "
               "credited; work positions whose 5-gram occurs in the prompt are dropped "
               "[Liu26 Alg. 1]; remaining sub-spans must keep >= {k} words.",
    "rate": "k of n attempts with a credited span >= {min_span_words} words (a research "
            "convention [Car23], not a threshold set by any court); 95% Wilson interval [Wil27], "
            "exact Clopper-Pearson [CP34] at k = 0 or k = n. Every attempt, errors and "
            "refusals included, is in n.",
    "coverage": "Share of the work's counted words (light-words profile, exclusions removed) "
                "covered by the union of credited spans over all attempts and means, "
                "teacher-forced windows whose every token was the model's top choice included.",
    "longest_block": "Longest contiguous run of covered work words [Liu26].",
    "bmc": "BMC@k [Liu26 §3.1, Alg. 1]: words profile; exact matches >= k words of each "
           "generation against a k-gram index of the whole work, instruction 5-grams trimmed, "
           "OR-ed into a coverage mask; covered / |work|.",
    "longest_regurgitated": "[Liu26] Longest exact match of one generation against its own "
                            "target excerpt, untrimmed.",
    "intervals": "Intervals: every k-of-n rate carries a 95% Wilson "
                 "interval over attempts (exact Clopper-Pearson at k = 0 or k = n), which "
                 "assumes independent attempts. Where they are not independent a 95% "
                 "cluster-bootstrap percentile interval [ET93] (2,000 resamples of whole clusters, "
                 "numpy seed 0) is given beside it: regurgitation, extraction and 50/50 rates "
                 "over excerpts (a prompt and all its samples); teacher-forced and census "
                 "greedy rates over chapters (or 1,000-character blocks when a work has fewer "
                 "than two chapter headings), since overlapping windows share text; "
                 "iterative sessions over chapters. (n,p) rates, name cloze and control "
                 "floors use Wilson / Clopper-Pearson only. The report's interval table names "
                 "the interval and the unit of every rate.",
    "spans_over_t": "Spans > T [Liu26]: exact matches (words profile) longer than T = 20 words "
                    "of each generation against its own excerpt, mapped to work positions, "
                    "greedy non-overlapping selection, longest first.",
    "comparison": "Model comparison [Liu26]: Jaccard overlap of two models' coverage masks "
                  "beside the random baseline pa*pb/(pa+pb-pa*pb), and the ratio of their "
                  "rates with a 95% Katz log interval. With no success in one model the "
                  "ratio is unbounded (or 0) and has no log interval: it is computed with 0.5 "
                  "added to every cell (corrected: true in findings.json), which the report "
                  "shows as not estimable, the corrected figures beside it as the "
                  "correction's.",
    "control_floor": "Control works (texts the model cannot have seen) run through the same "
                     "strategies; the share of their generation attempts with a span >= "
                     "{min_span_words} words, over those that returned an output (failed and "
                     "unscorable attempts left out: a failure would lower the floor), is the "
                     "rate of chance reproduction of an unseen text (what the model and the "
                     "matcher produce by chance), with a one-sided 95% Clopper-Pearson upper "
                     "bound. A subject's rate, over its attempts selected alike, is compared "
                     "with it by Fisher's exact one-sided test, Holm-adjusted over all model x "
                     "work tests, both sides counted at the subject work's threshold (a short "
                     "or CJK work's scaled one; in a control's unit when it counts the other).",
}


def definitions(measures: Iterable[type[Measure]], fmt: dict[str, Any]) -> dict[str, str]:
    """The definitions of the core measures and of every measure the analysis ran, with the
    case's thresholds filled in."""
    out = dict(DEFINITIONS)
    for cls in measures:
        out[cls.name] = cls.definition
    return {k: v.format(**fmt) for k, v in out.items()}
