"""Limitations (partials/limitations.html.j2): the fixed caveats, then those read off this run's
own data (tools, model aliases, openings, excluded passages, filters, small samples).
"""

from __future__ import annotations

import json
import logging
import re

from casekit.analysis.findings import (
    Findings,
)
from casekit.analysis.taxonomy import ABSENCE_CAVEAT
from casekit.case import CaseFile
from casekit.records import (
    AttemptRecord,
)
from casekit.report.inputs import Inputs
from casekit.report.sections.controls import FloorView

log = logging.getLogger(__name__)


def build_limitations(f: Findings, case: CaseFile, floors: list[FloorView],
                 inputs: Inputs | None = None) -> list[str]:
    th = f.thresholds
    gen = [x for x in f.attempts if x.mode != "score"]
    echo = sum(x.echo_words for x in gen)
    echoed = sum(1 for x in gen if x.echo_words)
    out = [
        f"Prompt echo is discounted: output runs of {th.get('echo_min_words', 5)} or more words "
        f"found in the prompt were removed before matching ({echo:,} words in {echoed:,} of "
        f"{len(gen):,} generation attempts), and work text the tester supplied in a prompt is "
        "never credited to the model. Exhibits mark that supplied text in the prompt column.",
        "Widely quoted text: a span may reproduce a passage that circulates on its own "
        "(famous openings, epigraphs, public-domain quotations inside the work); such a passage "
        "can reach a model through quotations rather than the work. casekit does not check "
        "whether a matched passage is quoted elsewhere. Short spans (8 words or fewer) occur by "
        f"chance between unrelated texts, so no span under {th.get('min_span_words')} words "
        "counts here.",
        ABSENCE_CAVEAT,
        "Outputs vary between calls (sampling, provider-side changes). Every figure is over the "
        f"attempts recorded in this ledger ({case.samples} sample(s) per prompt); repeated "
        "samples and overlapping windows are not independent, and the intervals here treat "
        "attempts as independent.",
    ]
    errors = sum(1 for x in f.attempts if x.outcome == "error")
    refusals = sum(1 for x in f.attempts if x.outcome == "refusal")
    unscorable = sum(1 for x in f.attempts if x.outcome == "unscorable")
    if errors or refusals or unscorable:
        out.append(f"Attempts that ended in an error: {errors:,}; in a refusal: {refusals:,}; "
                   f"that could not be scored: {unscorable:,}. Each stays in every denominator "
                   "and in the table of every attempt.")
    if not f.complete or f.recorded_attempts < f.planned_attempts:
        out.append(f"The run is incomplete: {f.recorded_attempts:,} of {f.planned_attempts:,} "
                   "planned attempts were recorded. The figures cover the recorded attempts "
                   "only.")
    if f.imported_attempts:
        out.append(f"Imported outputs: {f.imported_attempts:,} attempt(s) were captured outside "
                   "casekit (casekit import) and are counted in the figures with the intent "
                   "their importer declared. casekit did not send those requests: their "
                   "prompts, times and decoding parameters are as the capture states them and "
                   "cannot be re-run or verified against the provider; each is labelled "
                   "IMPORTED in its exhibit and in the table of every attempt.")
    missing = [fv.model_id for fv in floors if not fv.available]
    if missing:
        out.append("No control generation attempts for " + ", ".join(missing) + ": no "
                   "false-positive rate was measured for that model, and its figures stand "
                   "without a floor.")
    return out + (_data_limitations(f, inputs) if inputs is not None else [])


#: Request fields that give a model tools or retrieval; response markers of their use.
TOOL_REQUEST_KEYS = ("tools", "tool_choice", "functions", "function_call", "web_search_options",
                     "plugins", "retrieval", "file_search", "mcp_servers")
TOOL_RESPONSE_MARKERS = ('"tool_calls"', '"tool_use"', '"server_tool_use"', '"function_call"',
                         'web_search', '"citations"', '"annotations":[{')
#: Work words from the start that count as the opening (the most widely quoted part).
OPENING_WORDS = 200
_DATED_MODEL_RE = re.compile(r"\d{4}-?\d{2}-?\d{2}|\d{8}|@\d|-\d{3,4}$")


def _data_limitations(f: Findings, inputs: Inputs) -> list[str]:
    """Limitations read off this run's own data: tools and retrieval, model aliases and
    identity changes, openings and excluded passages, filters, small samples."""
    out: list[str] = []
    attempts = [r for r in inputs.records if isinstance(r, AttemptRecord)]
    # Retrieval and tools.
    tooled_req = sum(1 for r in attempts if r.result and any(
        r.result.raw_request.get(k) for k in TOOL_REQUEST_KEYS))
    tooled_resp = 0
    for r in attempts:
        if r.result and r.result.raw_response:
            raw = json.dumps(r.result.raw_response, ensure_ascii=False)
            tooled_resp += any(m in raw for m in TOOL_RESPONSE_MARKERS)
    if tooled_req or tooled_resp:
        out.append(f"Retrieval or tools: {tooled_req:,} recorded request(s) offered the model "
                   f"tools or retrieval ({', '.join(TOOL_REQUEST_KEYS[:4])}...) and "
                   f"{tooled_resp:,} response(s) report a tool call or citations. Text in those "
                   "outputs may have been retrieved rather than recalled.")
    else:
        out.append(f"Retrieval or tools: none of the {len(attempts):,} recorded requests offered "
                   "tools, functions or retrieval, and no recorded response reports a tool call "
                   "(each raw request and response in the ledger was checked). A provider could "
                   "still retrieve text on its side without reporting it.")
    # Model identity: aliases, several returned ids, changing fingerprints.
    for m in inputs.start.models:
        mine = [r.result for r in attempts if r.attempt.model_id == m.model_id and r.result]
        returned = sorted({x.returned_model for x in mine if x.returned_model})
        prints = sorted({x.system_fingerprint for x in mine if x.system_fingerprint})
        notes = []
        if m.provider != "local" and not _DATED_MODEL_RE.search(m.model):
            notes.append(f"was requested as {m.model!r}, a name that may be an alias the "
                         "provider points at different snapshots over time")
        if len(returned) > 1:
            notes.append(f"returned {len(returned)} different model ids "
                         f"({', '.join(returned[:5])}{', ...' if len(returned) > 5 else ''})")
        elif returned and returned[0] != m.model:
            notes.append(f"was requested as {m.model!r} and reported itself as "
                         f"{returned[0]!r}")
        if len(prints) > 1:
            notes.append(f"reported {len(prints)} different system fingerprints during the "
                         "run (the serving configuration changed)")
        if notes:
            out.append(f"Model {m.model_id} " + "; ".join(notes) + ". Figures for it describe "
                       "the model as served during this run.")
    # Widely quoted openings and excluded passages.
    threshold = int(f.thresholds.get("min_span_words", 0))
    hits = [x for x in f.attempts if x.mode != "score" and x.longest_words >= threshold
            and x.role == "subject"]
    opening = sum(1 for x in hits if any(s.work_word_start < OPENING_WORDS for s in x.spans))
    if hits:
        out.append(f"Openings: {opening:,} of the {len(hits):,} subject attempts that reached the "
                   f"reporting threshold reproduce text within the first {OPENING_WORDS} words of "
                   "the work, the part most often quoted on its own; matches deeper in a work are "
                   "harder to explain by quotation.")
    excluded = [(w.id, e) for w in inputs.works.values() for e in w.excluded]
    if excluded:
        out.append("Excluded passages (never counted): " + "; ".join(
            f"{wid}: characters {e.start:,}\u2013{e.end:,} ({e.reason})"
            for wid, e in excluded[:12]) + ("; ..." if len(excluded) > 12 else "") + ".")
    else:
        out.append("No passage of any work was excluded: quotations of third-party or "
                   "public-domain text inside a work, if any, count as the work's own text.")
    # Filters and refusals by source.
    filtered = sum(1 for r in attempts if r.result and r.result.finish_reason in (
        "content_filter", "refusal"))
    by_source: dict[str, int] = {}
    for x in f.attempts:
        if x.refusal_source:
            by_source[x.refusal_source] = by_source.get(x.refusal_source, 0) + 1
    if filtered or by_source:
        out.append(f"Refusals and filters: {filtered:,} response(s) ended with a content filter or "
                   f"refusal stop reason; refusals by source: "
                   + ", ".join(f"{k} {v:,}" for k, v in sorted(by_source.items()))
                   + ". A refused or filtered attempt shows nothing either way and stays in "
                   "every denominator.")
    # Small samples.
    small = sorted({mw.model_id + " \u00d7 " + mw.work_id for mw in f.findings
                    if mw.role == "subject" and any(0 < r.n < 30 for r in (
                        mw.regurgitation, mw.extraction))})
    if small:
        out.append("Small samples: fewer than 30 attempts stand behind a rate of "
                   + ", ".join(small[:8]) + ("..." if len(small) > 8 else "")
                   + "; the 95% interval printed beside each figure shows how little a single "
                   "attempt more or less would change.")
    return out
