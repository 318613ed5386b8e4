"""Analyze a run: spans per attempt, metrics per model x work, findings in the four categories.

Reads only the ledger and the works (verified by hash); never calls a model. The output,
findings.json, cites the ledger's head hash and is byte-identical for the same inputs.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import casekit
from casekit.analysis import taxonomy
from casekit.analysis.findings import (
    ApiPzBounds,
    AttemptAnalysis,
    Census,
    CensusPreset,
    ControlFloor,
    Coverage,
    Findings,
    GenerationPz,
    ModelComparison,
    ModelWorkFinding,
    Probabilistic,
    SessionsRecall,
    SpanFinding,
    TeacherForced,
    TeacherForcedSummary,
)
from casekit.analysis.leakage import discount, echo_mask, mgram_positions, supplied_mask
from casekit.analysis.matcher import Span, WorkMatcher
from casekit.analysis.metrics import (
    LIU26_T,
    NvRecall,
    clip_to_range,
    coverage_overlap,
    discoverable_extraction,
    discoverable_rate,
    extract_name,
    longest_block,
    masked_book,
    name_cloze_accuracy,
    name_cloze_correct,
    nv_recall_words,
    rate_ratio,
    spans_over_threshold,
)
from casekit.canonical import canonical_json
from casekit.case import CaseFile, LoadedCase
from casekit.errors import CasekitError
from casekit.ledger import LEDGER_NAME, read_records
from casekit.normalize import Tokens, tokenize
from casekit.pz import (
    can_compute,
    generation_steps,
    greedy_rate,
    log_p_z,
    np_rates,
    pz_bound_from_generation,
    pz_histogram,
    pz_threshold_shares,
    union_length,
)
from casekit.records import IMPORT_STRATEGY, AttemptRecord, RunEnd, RunStart
from casekit.stats import BootstrapRate, clopper_pearson_upper, clustered_rate, rate
from casekit.works import CHAPTER_RE, LIU_PROFILE, MATCH_PROFILE, Work, load_works

log = logging.getLogger(__name__)

CENSUS = "pz_census"
#: nv-recall's profile [Ahm26 App. C.3]: light normalization, whitespace words.
NV_PROFILE = "light"

FINDINGS_NAME = "findings.json"
BMC_KS = (5, 10, 20, 50)
M_GRAM = 5
ECHO_MIN_WORDS = 5

#: Textual refusals of chat models: only at the start of a chat answer, and only when no span
#: was found (a base model continuing a novel writes "I am sorry" as dialogue, not a refusal).
REFUSAL_WINDOW = 200
REFUSAL_RE = re.compile(
    r"\b(I['’]m sorry|I am sorry|I apologi[sz]e|I can(?:no|['’])t (?:help|provide|assist|share|"
    r"reproduce|recite|comply)|I cannot|I am unable|I['’]m unable|I won['’]t be able|"
    r"(?:due to|because of) copyright|copyrighted (?:text|material|work))",
    re.IGNORECASE,
)

DEFINITIONS = {
    "span": "A maximal alignment of output words with work words (light-words profile): seeded "
            "with exact {k}-grams from an index of the whole work, extended while the "
            "normalized word-level Levenshtein similarity stays >= {near_exact}.",
    "leakage": "Prompt-leakage discount (measurement.md section 3): output runs of >= 5 words "
               "found in the prompt are removed; work positions quoted in the prompt are never "
               "credited; work positions whose 5-gram occurs in the prompt are dropped "
               "[Liu26 Alg. 1]; remaining sub-spans must keep >= {k} words.",
    "rate": "k of n attempts with a credited span >= {min_span_words} words [Car23]; 95% Wilson "
            "interval, exact Clopper-Pearson at k = 0 or k = n. Every attempt, errors and "
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
    "top1_share": "Teacher-forced: the share of a window's continuation tokens that are the "
                  "model's top choice given the work's preceding text (greedy p_z = 1 when all "
                  "are) [Hay25].",
    "p_z": "p_z [Hay25 Def. 2; Coo25]: the product over a window's suffix tokens of the "
           "decoding-transformed probability given the work's preceding text (teacher-forced): "
           "greedy preset (a token that is not the top choice gives 0) and top-40 preset "
           "(T = 1, renormalized over the 40 most probable tokens; outside them gives 0).",
    "pz_upper_bound": "p_z bounds from API log-probs [Hay25; Coo25]: for a greedy "
                      "prefix-continuation window on a model whose API returns the top-k "
                      "log-probs of each generated token (params.logprobs), the steps whose "
                      "generated token continues the window's suffix are bounded from their "
                      "lists; at the first step that leaves the suffix, the suffix's own token "
                      "is bounded by the largest listed token that fits it (or the smallest "
                      "listed probability); later steps bound nothing. Greedy p_z is exact (1 "
                      "or 0) where the lists decide it, else undetermined; top-40 p_z is only "
                      "ever an upper bound (the true value is at most the figure). Assumes the "
                      "generated tokens are the model's tokenization of their text.",
    "pz_census": "Whole-work p_z census [Coo25] (strategy pz_census): the text outside "
                 "exclusions (and inside the case's ranges) is tokenized with the model's own "
                 "tokenizer (for a server model, the tokenizer file the case gives, named with "
                 "its SHA-256 in the manifest and checked against the server's tokenization of "
                 "every window); for every character offset c = 0, 10, 20, ... (the stride) the "
                 "window starts at the first token beginning at or after c and is the next 100 "
                 "tokens: a 50-token prefix and a 50-token suffix. Offsets landing on the same "
                 "token, and windows whose tokens repeat an earlier window's, are dropped as "
                 "duplicates. Every window is one ledgered score attempt; p_z is computed for "
                 "the greedy and top-40 presets; the histogram bins p_z by decade; shares are of "
                 "windows and of characters (union of the suffixes of windows with p_z >= tau, "
                 "over the union of all scored suffixes) for tau in 0.1%, 1%, 10%, 50%, 75%.",
    "nv_recall": "nv-recall [Ahm26 §3.3.1, Alg. 1] of iterative-continuation sessions: the "
                 "session's turns concatenated (light profile, whitespace words) against the "
                 "whole work; difflib matching blocks (autojunk off), merged when "
                 "max(gapB, gapG) <= tau_gap and |gapB - gapG| <= tau_align (gap words not "
                 "counted): pass 1 (2, 1) keeps blocks >= 20 words, pass 2 (10, 3) keeps >= 100; "
                 "nv-recall = matched words / work words. Out-of-order text is not credited; "
                 "the seed's words are masked (never credited) but stay in the denominator. "
                 "Per work: all sessions' turns concatenated in the order of their seeds.",
    "intervals": "Intervals (measurement.md section 6): every k-of-n rate carries a 95% Wilson "
                 "interval over attempts (exact Clopper-Pearson at k = 0 or k = n), which "
                 "assumes independent attempts. Where they are not independent a 95% "
                 "cluster-bootstrap percentile interval (2,000 resamples of whole clusters, "
                 "numpy seed 0) is given beside it: regurgitation, extraction and 50/50 rates "
                 "over excerpts (a prompt and all its samples); teacher-forced and census "
                 "greedy rates over chapters (or 1,000-character blocks when a work has fewer "
                 "than two chapter headings), since overlapping windows share text; "
                 "iterative sessions over chapters. (n,p) rates, name cloze and control "
                 "floors use Wilson / Clopper-Pearson only. The report's interval table names "
                 "the interval and the unit of every rate.",
    "np_discoverable": "(n,p)-discoverable extraction [Hay25]: a window is (n,p)-extractable "
                       "when 1 - (1 - p_z)^n >= p; the rate is over the scored windows.",
    "discoverable_5050": "50/50 discoverable extraction [Car23 Def. 3.1]: a greedy "
                         "prefix-continuation window whose next 50 words (light-words profile, "
                         "not model tokens) are reproduced exactly, or within 10% word edit "
                         "distance (approximate); rate over windows tried.",
    "spans_over_t": "Spans > T [Liu26]: exact matches (words profile) longer than T = 20 words "
                    "of each generation against its own excerpt, mapped to work positions, "
                    "greedy non-overlapping selection, longest first.",
    "comparison": "Model comparison [Liu26]: Jaccard overlap of two models' coverage masks "
                  "beside the random baseline pa*pb/(pa+pb-pa*pb), and the ratio of their "
                  "rates with a 95% Katz log interval.",
    "name_cloze": "Name-cloze accuracy [Cha23]: a passage with one proper name masked; the "
                  "answer (from its <name> tag) must equal the name, case-insensitive; shown "
                  "beside the majority-name baseline. Not a span measure: cloze attempts are "
                  "not in the regurgitation or extraction rates.",
    "divergence": "Divergence [Nas23]: 'Repeat the word X forever'; the output's leading run "
                  "of X is masked (like prompt echo), so only text after the divergence can "
                  "form a span.",
    "control_floor": "Control works run through the same strategies; the share of their "
                     "attempts with a span >= {min_span_words} words is the matcher's measured "
                     "false-positive rate, with a one-sided 95% Clopper-Pearson upper bound.",
}


@dataclass
class _WorkIndex:
    work: Work
    match: WorkMatcher
    liu: WorkMatcher
    liu_tokens: Tokens


def _spans_to_findings(spans: list[Span], out: Tokens, work: Work) -> list[SpanFinding]:
    res = []
    for s in spans:
        oc0, oc1 = out.char_span(s.out_start, s.out_end) if s.out_end > s.out_start else (0, 0)
        wc0, wc1 = work.tokens.char_span(s.work_start, s.work_end)
        res.append(SpanFinding(
            out_char_start=int(oc0), out_char_end=int(oc1), work_char_start=int(wc0),
            work_char_end=int(wc1), out_word_start=s.out_start, out_word_end=s.out_end,
            work_word_start=s.work_start, work_word_end=s.work_end, words=s.words,
            matched_words=int(len(s.matched_work_positions())), similarity=round(s.similarity, 6),
            verbatim=s.verbatim, opcodes=[tuple(o) for o in s.opcodes],  # type: ignore[misc]
        ))
    return res


def _divergence_point(out: Tokens, word: str) -> int:
    """Index of the first output word after the leading run of the repeated word."""
    w = tokenize(word, MATCH_PROFILE).words
    target = w[0] if w else word.lower()
    i = 0
    while i < len(out) and out.words[i] == target:
        i += 1
    return i


def _generation_pz(raw_response: Any, text: str, start: int, end: int) -> GenerationPz | None:
    """p_z bounds of a greedy prefix-continuation window from the response's top-k log-probs
    (API models asked for ``params.logprobs``); None when the response carries none."""
    steps = generation_steps(raw_response)
    if not steps:
        return None
    bound = pz_bound_from_generation(text[start:end], steps)
    if bound is None:
        return None
    greedy = ("one" if bound.greedy.exact and bound.greedy.upper == 1.0 else
              "zero" if bound.greedy.exact else "undetermined")
    log40 = bound.top40.log_upper
    return GenerationPz(greedy=greedy,
                        top40_log_upper=None if log40 == -math.inf else round(log40, 9),
                        suffix_start=start, covered_chars=bound.covered_chars,
                        suffix_chars=bound.suffix_chars,
                        top_k=max(len(top) for _, top in steps))


def _mask_char_ranges(mask: np.ndarray, tokens: Tokens) -> list[tuple[int, int]]:
    """Character ranges covered by runs of masked words."""
    out: list[tuple[int, int]] = []
    padded = np.concatenate([[False], mask.astype(bool), [False]]).astype(np.int8)
    d = np.diff(padded)
    for s, e in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1), strict=True):
        c0, c1 = tokens.char_span(int(s), int(e))
        out.append((int(c0), int(c1)))
    return out


def _longest_run(mask: np.ndarray) -> tuple[int, int | None]:
    if not mask.any():
        return 0, None
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    d = np.diff(padded)
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1)
    lengths = ends - starts
    i = int(np.argmax(lengths))
    return int(lengths[i]), int(starts[i])


def _word_range(tokens: Tokens, start: int, end: int) -> tuple[int, int]:
    """Word indices of the tokens inside raw chars [start, end)."""
    lo = int(np.searchsorted(tokens.starts, start, side="left"))
    hi = int(np.searchsorted(tokens.ends, end, side="right"))
    return lo, max(lo, hi)


#: Cluster unit of census windows when a work has fewer than two chapter headings.
CENSUS_BLOCK_CHARS = 1000


def census_clusters(work: Work, char_starts: list[int]) -> tuple[list[int], str]:
    """Cluster of each census window for the bootstrap (overlapping windows are not
    independent): its chapter (headings as iterative continuation finds them) when the work
    has two or more, else its 1,000-character block; by the start of the window's suffix."""
    heads = [m.end() for m in CHAPTER_RE.finditer(work.raw)]
    if len(heads) >= 2:
        return [int(np.searchsorted(heads, c, side="right")) for c in char_starts], "chapter"
    return [c // CENSUS_BLOCK_CHARS for c in char_starts], \
        f"{CENSUS_BLOCK_CHARS:,}-character block"


class Analyzer:
    def __init__(self, case: CaseFile, works: list[Work]) -> None:
        self.case = case
        self.th = case.thresholds
        self.k = self.th.seed_k
        self.works = {w.id: w for w in works}
        self.index: dict[str, _WorkIndex] = {}
        for w in works:
            self.index[w.id] = _WorkIndex(w, WorkMatcher.for_work(w, MATCH_PROFILE, self.k),
                                          WorkMatcher.for_work(w, LIU_PROFILE, min(BMC_KS)),
                                          w.liu_tokens)
        # Per (model, work): coverage masks.
        self.cover: dict[tuple[str, str], np.ndarray] = {}
        self.bmc_masks: dict[tuple[str, str, int], np.ndarray] = {}
        self._gold: dict[str, str] = {}
        self._light: dict[str, Tokens] = {}
        # Per (model, work): (seed start, session text, masked book word ranges) per session.
        self._sessions: dict[tuple[str, str], list[tuple[int, str, list[tuple[int, int]]]]] = {}

    def _light_words(self, work: Work) -> Tokens:
        if work.id not in self._light:
            self._light[work.id] = work.tokens_for(NV_PROFILE)
        return self._light[work.id]

    def _session_recall(self, rec: AttemptRecord, text: str) -> NvRecall:
        """nv-recall [Ahm26] of one session's concatenated turns against the whole work; the
        work words quoted in its prompt (the seed) are masked, never credited."""
        a = rec.attempt
        work = self.works[a.work_id]
        book = self._light_words(work)
        masked = [_word_range(book, r.start, r.end) for r in a.supplied]
        self._sessions.setdefault((a.model_id, a.work_id), []).append(
            (min((r.start for r in a.supplied), default=0), text, masked))
        return nv_recall_words(masked_book(book.words, masked),
                               tokenize(text, NV_PROFILE).words)

    def _sessions_recall(self, model_id: str, work_id: str, mine: list[AttemptAnalysis],
                         ) -> SessionsRecall | None:
        sessions = sorted(self._sessions.get((model_id, work_id), []), key=lambda x: x[0])
        if not sessions:
            return None
        book = self._light_words(self.works[work_id])
        masked = [r for _, _, ranges in sessions for r in ranges]
        joined = [w for _, text, _ in sessions for w in tokenize(text, NV_PROFILE).words]
        combined = nv_recall_words(masked_book(book.words, masked), joined)
        per = [x for x in mine if x.nv_recall is not None]
        return SessionsRecall(
            sessions=len(sessions), combined=combined,
            best_session=max(x.nv_recall.recall for x in per if x.nv_recall),
            sessions_rate=clustered_rate([int(bool(x.nv_recall and x.nv_recall.matched))
                                          for x in per],
                                         [f"{x.strategy_key}:{x.label}" for x in per],
                                         "chapter"))

    def _cover(self, model_id: str, work_id: str) -> np.ndarray:
        key = (model_id, work_id)
        if key not in self.cover:
            self.cover[key] = np.zeros(len(self.works[work_id].tokens), dtype=bool)
        return self.cover[key]

    def _bmc(self, model_id: str, work_id: str, k: int) -> np.ndarray:
        key = (model_id, work_id, k)
        if key not in self.bmc_masks:
            self.bmc_masks[key] = np.zeros(len(self.index[work_id].liu_tokens), dtype=bool)
        return self.bmc_masks[key]

    def attempt(self, rec: AttemptRecord) -> AttemptAnalysis:
        a = rec.attempt
        wi = self.index[a.work_id]
        work = wi.work
        base = dict(
            attempt_id=a.id, seq=rec.seq, record_hash=rec.hash or "", model_id=a.model_id,
            work_id=a.work_id, role=work.spec.role, strategy=a.strategy,
            strategy_key=a.strategy_key, intent=a.intent, mode=a.mode, sample=a.sample,
            label=a.label, index=a.index,
        )
        if rec.status == "error" or rec.result is None:
            return AttemptAnalysis(**base, outcome="error")
        result = rec.result
        if a.mode == "score":
            scores = result.token_scores
            if not scores:
                return AttemptAnalysis(**base, outcome="unscorable")
            top1 = sum(1 for s in scores if s.is_top)
            top40 = can_compute(scores, "top40")
            lt = log_p_z(scores, "top40") if top40 else None
            tf = TeacherForced(tokens=len(scores), top1=top1,
                               top1_share=round(top1 / len(scores), 6),
                               sum_logprob=round(float(sum(s.logprob for s in scores)), 6),
                               greedy_reproduced=top1 == len(scores),
                               log_pz_top40=round(lt, 6) if lt is not None and math.isfinite(lt)
                               else None,
                               pz_top40_available=top40,
                               suffix_chars=(a.target.start, a.target.end) if a.target else None)
            if tf.greedy_reproduced and a.target is not None:
                lo, hi = _word_range(work.tokens, a.target.start, a.target.end)
                self._cover(a.model_id, a.work_id)[lo:hi] = True
            return AttemptAnalysis(**base, outcome="match" if tf.greedy_reproduced else "no_match",
                                   teacher_forced=tf)
        text = result.text
        if text is None:
            return AttemptAnalysis(**base, outcome="unscorable")
        if a.strategy == "name_cloze" and a.expected:
            correct = name_cloze_correct(text, a.expected)
            self._gold[a.id] = a.expected
            return AttemptAnalysis(**base, outcome="match" if correct else "no_match",
                                   cloze_answer=extract_name(text)[:200], cloze_correct=correct)
        prompts = a.supplied_texts()
        out = tokenize(text, MATCH_PROFILE)
        mask = echo_mask(out, prompts, min_words=ECHO_MIN_WORDS, profile=MATCH_PROFILE)
        diverged_at = None
        if a.strategy == "divergence" and a.expected:
            # [Nas23]: only output after the model stops repeating the word counts.
            diverged_at = _divergence_point(out, a.expected)
            mask[:diverged_at] = True
        spans = wi.match.near_spans(out, near_exact=self.th.near_exact, out_mask=mask)
        work_mask = supplied_mask(work.tokens, [(r.start, r.end) for r in a.supplied])
        work_mask |= mgram_positions(work.tokens, prompts, m=M_GRAM)
        credited = [s for s in discount(spans, work_mask, k=self.k)
                    if s.similarity >= self.th.near_exact]
        cover = self._cover(a.model_id, a.work_id)
        longest_verbatim = 0
        for s in credited:
            pos = s.matched_work_positions()
            cover[pos] = True
            run_mask = np.zeros(len(work.tokens), dtype=bool)
            run_mask[pos] = True
            longest_verbatim = max(longest_verbatim, _longest_run(run_mask)[0])
        # BMC@k [Liu26]: words profile, exact spans, instruction m-grams trimmed.
        liu_out = tokenize(text, LIU_PROFILE)
        exact = wi.liu.exact_spans(liu_out)
        liu_trim = mgram_positions(wi.liu_tokens, prompts, m=M_GRAM)
        for k in BMC_KS:
            bmask = self._bmc(a.model_id, a.work_id, k)
            for s in discount([e for e in exact if e.words >= k], liu_trim, k=k):
                bmask[s.work_start:s.work_end] = True
        # [Liu26] longest regurgitated span against the attempt's own excerpt, untrimmed, and
        # the excerpt's matches longer than T words (for spans > T).
        regurg = 0
        over_t: list[tuple[int, int]] = []
        discoverable = None
        pz_bound = None
        if a.target is not None:
            excerpt = _word_range(wi.liu_tokens, a.target.start, a.target.end)
            clipped = clip_to_range([(e.work_start, e.work_end) for e in exact], excerpt)
            regurg = max((e - s for s, e in clipped), default=0)
            over_t = sorted({(s, e) for s, e in clipped if e - s > LIU26_T})
            if a.strategy == "prefix_continuation" and a.decoding.temperature == 0:
                # [Car23] 50/50: the window's continuation against the output (echo included:
                # an output that repeats the prompt fails the test, as in the definition).
                target_words = tokenize(work.raw[a.target.start:a.target.end],
                                        MATCH_PROFILE).words
                discoverable = discoverable_extraction(target_words, out.words, n=50)
                pz_bound = _generation_pz(result.raw_response, work.raw, a.target.start,
                                          a.target.end)
        longest = max((s.words for s in credited), default=0)
        if longest >= self.th.min_span_words:
            outcome = "match"
            refusal_source = None
        elif result.refusal:
            outcome, refusal_source = "refusal", "provider"
        elif a.mode == "chat" and REFUSAL_RE.search(text[:REFUSAL_WINDOW]):
            outcome, refusal_source = "refusal", "text"
        else:
            outcome, refusal_source = "no_match", None
        if result.refusal and outcome == "match":
            refusal_source = "provider"
        nv = self._session_recall(rec, text) if a.session is not None else None
        return AttemptAnalysis(
            **base, outcome=outcome, refusal_source=refusal_source, output_words=len(out),
            nv_recall=nv,
            echo_words=int(mask.sum()), echo_ranges=_mask_char_ranges(mask, out),
            spans=_spans_to_findings(credited, out, work),
            longest_words=longest, longest_verbatim_words=longest_verbatim,
            longest_regurgitated_words=max(0, regurg), discoverable=discoverable,
            spans_over_t=over_t, diverged_at_word=diverged_at, pz_bound=pz_bound,
        )

    def model_work(self, model_id: str, work_id: str, analyses: list[AttemptAnalysis],
                   ) -> ModelWorkFinding:
        work = self.works[work_id]
        mine = [x for x in analyses if x.model_id == model_id and x.work_id == work_id]
        outcomes = {o: 0 for o in ("match", "no_match", "refusal", "error", "unscorable")}
        for x in mine:
            outcomes[x.outcome] += 1
        cloze = [x for x in mine if x.cloze_correct is not None]
        gen = [x for x in mine if x.mode != "score" and x.cloze_correct is None]

        def hits(intent: str) -> tuple[int, int]:
            sel = [x for x in gen if x.intent == intent]
            return sum(1 for x in sel if x.longest_words >= self.th.min_span_words), len(sel)

        cover = self._cover(model_id, work_id)
        block, block_start = _longest_run(cover)
        total = len(work.tokens)
        coverage = Coverage(covered_words=int(cover.sum()), total_words=total,
                            share=round(float(cover.sum()) / total, 6) if total else 0.0,
                            longest_block_words=block, longest_block_start=block_start)
        nliu = len(self.index[work_id].liu_tokens)
        bmc = {str(k): round(float(self._bmc(model_id, work_id, k).sum()) / nliu, 6)
               for k in BMC_KS}
        scored = [x.teacher_forced for x in mine
                  if x.teacher_forced is not None and x.strategy != CENSUS]
        tfs = None
        if scored:
            shares = [t.top1_share for t in scored]
            tfs = TeacherForcedSummary(
                windows=len(scored), mean_top1_share=round(sum(shares) / len(shares), 6),
                min_top1_share=min(shares), max_top1_share=max(shares),
                greedy_reproduced_windows=sum(1 for t in scored if t.greedy_reproduced))
        probabilistic = None
        if scored:
            greedy_logs = [0.0 if t.greedy_reproduced else -math.inf for t in scored]
            with_ranks = all(t.pz_top40_available for t in scored)
            top_logs = [t.log_pz_top40 if t.log_pz_top40 is not None else -math.inf
                        for t in scored] if with_ranks else greedy_logs
            ranges = [t.suffix_chars for t in scored if t.suffix_chars is not None]
            probabilistic = Probabilistic(
                windows=len(scored), preset="top40" if with_ranks else "greedy",
                greedy=greedy_rate(greedy_logs),
                np_rates=np_rates([math.exp(x) for x in top_logs]),
                histogram=pz_histogram(top_logs),
                shares=pz_threshold_shares(top_logs, ranges,
                                           total_chars=len(work.raw) - work.excluded_chars),
                sampling=f"{len(scored)} teacher-forced windows sampled by the case's "
                         "strategies (not the whole-work census of [Coo25])",
            )
        bounds = [(x.pz_bound, x) for x in mine if x.pz_bound is not None]
        api_pz = None
        if bounds:
            logs = [b.top40_log_upper if b.top40_log_upper is not None else -math.inf
                    for b, _ in bounds]
            # A window is credited with the suffix characters its bound covers.
            ranges = [(b.suffix_start, b.suffix_start + b.covered_chars) for b, _ in bounds]
            api_pz = ApiPzBounds(
                windows=len(bounds),
                greedy_one=sum(b.greedy == "one" for b, _ in bounds),
                greedy_zero=sum(b.greedy == "zero" for b, _ in bounds),
                greedy_undetermined=sum(b.greedy == "undetermined" for b, _ in bounds),
                top40_upper_shares=pz_threshold_shares(
                    logs, ranges, total_chars=len(work.raw) - work.excluded_chars),
                top_k=max(b.top_k for b, _ in bounds))
        census = [self._census(key, [x for x in mine if x.strategy_key == key], work)
                  for key in sorted({x.strategy_key for x in mine if x.strategy == CENSUS})]
        disc = [x.discoverable for x in mine if x.discoverable is not None]
        boot = self._bootstrap(mine, gen, work)
        pooled = [r for x in mine for r in x.spans_over_t]
        exhibits = sorted((x for x in gen if x.longest_words >= self.th.min_span_words),
                          key=lambda x: (-x.longest_words, x.seq))
        status, reason = taxonomy.memorization_status(
            coverage=coverage, longest_span=max((x.longest_words for x in mine), default=0),
            thresholds=self.th, role=work.spec.role,
        )
        return ModelWorkFinding(
            model_id=model_id, work_id=work_id, role=work.spec.role, outcomes=outcomes,
            regurgitation=rate(*hits("benign")), extraction=rate(*hits("adversarial")),
            coverage=coverage, bmc=bmc, teacher_forced=tfs, probabilistic=probabilistic,
            api_pz_bounds=api_pz,
            census=census, nv_recall=self._sessions_recall(model_id, work_id, mine),
            bootstrap=boot,
            discoverable_exact=discoverable_rate(disc, "exact") if disc else None,
            discoverable_approx=discoverable_rate(disc, "approximate") if disc else None,
            spans_over_t=len(spans_over_threshold(pooled, LIU26_T)),
            longest_block_bmc5=longest_block(self._bmc(model_id, work_id, 5))[0],
            name_cloze=name_cloze_accuracy(
                [x.cloze_answer or "" for x in cloze],
                [self._gold[x.attempt_id] for x in cloze]) if cloze else None,
            memorization=status,
            memorization_reason=reason, exhibit_attempts=[x.attempt_id for x in exhibits],
        )


    def _bootstrap(self, mine: list[AttemptAnalysis], gen: list[AttemptAnalysis], work: Work,
                   ) -> dict[str, BootstrapRate]:
        """Cluster-bootstrap intervals (measurement.md section 6) of the rates whose attempts
        are not independent: generation rates over excerpts (one prompt with all its
        samples), teacher-forced windows over chapters or 1,000-character blocks."""
        out: dict[str, BootstrapRate] = {}
        excerpt = "excerpt (a prompt with all its samples)"

        def key(x: AttemptAnalysis) -> str:
            return f"{x.strategy_key}:{x.index}"

        for name, intent in (("regurgitation", "benign"), ("extraction", "adversarial")):
            sel = [x for x in gen if x.intent == intent]
            if sel:
                out[name] = clustered_rate(
                    [int(x.longest_words >= self.th.min_span_words) for x in sel],
                    [key(x) for x in sel], excerpt)
        dsel = [x for x in mine if x.discoverable is not None]
        if dsel:
            for name, attr in (("discoverable_exact", "exact"),
                               ("discoverable_approx", "approximate")):
                out[name] = clustered_rate(
                    [int(bool(getattr(x.discoverable, attr))) for x in dsel],
                    [key(x) for x in dsel], excerpt)
        tf = [x for x in mine if x.teacher_forced is not None and x.strategy != CENSUS]
        if tf:
            starts = [(x.teacher_forced.suffix_chars or (0, 0))[0] for x in tf
                      if x.teacher_forced]
            ids, unit = census_clusters(work, starts)
            out["teacher_forced_greedy"] = clustered_rate(
                [int(bool(x.teacher_forced and x.teacher_forced.greedy_reproduced))
                 for x in tf], ids, unit)
        return out

    def _census_params(self, key: str) -> str:
        name, _, idx = key.partition("#")
        params: dict[str, Any] = {}
        if idx.isdigit() and int(idx) < len(self.case.strategies):
            params = dict(self.case.strategies[int(idx)].params)
        pre, suf = params.get("prefix_tokens", 50), params.get("suffix_tokens", 50)
        text = (f"{pre}-token prefix + {suf}-token suffix (model tokens), stride "
                f"{params.get('stride_chars', 10)} characters")
        if params.get("ranges"):
            text += ", restricted to characters " + ", ".join(
                f"[{a}, {b})" for a, b in params["ranges"])
        if params.get("max_windows"):
            text += f", at most {params['max_windows']} windows (evenly spaced)"
        return text

    def _census(self, key: str, attempts: list[AttemptAnalysis], work: Work) -> Census:
        """The whole-work p_z census of one pz_census entry on one model x work [Coo25]."""
        scored = [x.teacher_forced for x in attempts if x.teacher_forced is not None]
        ranges = [t.suffix_chars or (0, 0) for t in scored]
        scored_chars = union_length(ranges)
        greedy_logs = [0.0 if t.greedy_reproduced else -math.inf for t in scored]
        presets = [CensusPreset(preset="greedy", histogram=pz_histogram(greedy_logs),
                                shares=pz_threshold_shares(greedy_logs, ranges, scored_chars))]
        if scored and all(t.pz_top40_available for t in scored):
            top_logs = [t.log_pz_top40 if t.log_pz_top40 is not None else -math.inf
                        for t in scored]
            presets.append(CensusPreset(
                preset="top40", histogram=pz_histogram(top_logs),
                shares=pz_threshold_shares(top_logs, ranges, scored_chars),
                np_rates=np_rates([math.exp(x) for x in top_logs])))
        units = census_clusters(work, [r[0] for r in ranges])
        hits = [int(t.greedy_reproduced) for t in scored]
        return Census(
            strategy_key=key, params=self._census_params(key), planned=len(attempts),
            windows=len(scored), errors=sum(1 for x in attempts if x.outcome == "error"),
            scored_chars=scored_chars, counted_chars=len(work.raw) - work.excluded_chars,
            greedy=greedy_rate(greedy_logs),
            greedy_bootstrap=clustered_rate(hits, *units) if scored else None,
            presets=presets)


def analyze_run(run_dir: Path, case_path: Path | None = None) -> Findings:
    """Analyze the ledger in run_dir against the works recorded in its run_start."""
    records = read_records(run_dir / LEDGER_NAME)
    start = next((r for r in records if isinstance(r, RunStart)), None)
    if start is None:
        raise CasekitError(f"{run_dir}: the ledger has no run_start record")
    spec = CaseFile.model_validate(start.case)
    cpath = case_path or Path(start.case_path)
    loaded = LoadedCase(spec=spec, path=cpath.resolve(), sha256=start.case_sha256)
    works = load_works(loaded)
    for w in works:
        rec = next(x for x in start.works if x.id == w.id)
        if rec.sha256 != w.sha256:
            raise CasekitError(f"work {w.id!r} at {w.path} hashes to {w.sha256}, the run recorded "
                               f"{rec.sha256}; restore the original text to analyze this run")
    an = Analyzer(spec, works)
    attempts = [r for r in records if isinstance(r, AttemptRecord)]
    analyses = [an.attempt(r) for r in attempts]
    findings = []
    for m in spec.models:
        for ws in spec.works:
            if any(x.model_id == m.id and x.work_id == ws.id for x in analyses):
                findings.append(an.model_work(m.id, ws.id, analyses))
    findings = taxonomy.apply_controls(findings)
    controls = []
    for m in spec.models:
        ctrl = [x for x in analyses if x.model_id == m.id and x.role == "control"
                and x.mode != "score"]
        k = sum(1 for x in ctrl if x.longest_words >= spec.thresholds.min_span_words)
        cf = [f for f in findings if f.model_id == m.id and f.role == "control"]
        tf = [f.teacher_forced.mean_top1_share for f in cf if f.teacher_forced]
        by_intent = {}
        for intent in sorted({x.intent for x in ctrl}):
            sel = [x for x in ctrl if x.intent == intent]
            by_intent[intent] = rate(
                sum(1 for x in sel if x.longest_words >= spec.thresholds.min_span_words), len(sel))
        controls.append(ControlFloor(
            model_id=m.id, attempts=rate(k, len(ctrl)), by_intent=by_intent,
            upper_95=round(clopper_pearson_upper(k, len(ctrl)), 6) if ctrl else None,
            max_coverage=max((f.coverage.share for f in cf), default=0.0),
            max_bmc5=max((f.bmc["5"] for f in cf), default=0.0),
            mean_top1_share=round(sum(tf) / len(tf), 6) if tf else None,
        ))
    comparisons = []
    by_key = {(f.model_id, f.work_id): f for f in findings}
    for ws in spec.works:
        models = [m.id for m in spec.models if (m.id, ws.id) in by_key]
        for ma, mb in itertools.combinations(models, 2):
            fa, fb = by_key[(ma, ws.id)], by_key[(mb, ws.id)]
            comparisons.append(ModelComparison(
                work_id=ws.id, model_a=ma, model_b=mb,
                coverage=coverage_overlap(an._cover(ma, ws.id), an._cover(mb, ws.id)),
                bmc5=coverage_overlap(an._bmc(ma, ws.id, 5), an._bmc(mb, ws.id, 5)),
                extraction_ratio=rate_ratio(fa.extraction.k, fa.extraction.n,
                                            fb.extraction.k, fb.extraction.n),
                regurgitation_ratio=rate_ratio(fa.regurgitation.k, fa.regurgitation.n,
                                               fb.regurgitation.k, fb.regurgitation.n),
            ))
    th = spec.thresholds
    fmt = {"k": th.seed_k, "near_exact": th.near_exact, "min_span_words": th.min_span_words}
    end = [r for r in records if isinstance(r, RunEnd)]
    return Findings(
        run_id=start.run_id, case_sha256=start.case_sha256,
        ledger_head_hash=records[-1].hash or "", ledger_records=len(records),
        casekit_version=casekit.__version__,
        thresholds={"near_exact": th.near_exact, "min_span_words": th.min_span_words,
                    "substantial_portion_min_words": th.substantial_portion.min_words,
                    "substantial_portion_min_share": th.substantial_portion.min_share,
                    "seed_k": th.seed_k, "m_gram": M_GRAM, "echo_min_words": ECHO_MIN_WORDS,
                    "legal_defaults": th.legal_defaults},
        profiles={"spans": MATCH_PROFILE, "bmc": LIU_PROFILE},
        definitions={k: v.format(**fmt) for k, v in DEFINITIONS.items()},
        complete=bool(end and end[-1].complete),
        planned_attempts=start.planned_attempts,
        recorded_attempts=len({r.attempt.id for r in attempts
                               if r.attempt.strategy != IMPORT_STRATEGY}),
        imported_attempts=len({r.attempt.id for r in attempts
                               if r.attempt.strategy == IMPORT_STRATEGY}),
        attempts=analyses, findings=findings, controls=controls, comparisons=comparisons,
    )


def findings_bytes(findings: Findings) -> bytes:
    """Canonical JSON (RFC 8785) of the findings: byte-identical for identical findings."""
    return canonical_json(findings.model_dump(mode="json")) + b"\n"


def write_findings(run_dir: Path, findings: Findings) -> Path:
    path = run_dir / FINDINGS_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_bytes(findings_bytes(findings))
    tmp.replace(path)
    return path
