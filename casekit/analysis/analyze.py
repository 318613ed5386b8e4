"""Analyze a run: spans per attempt, metrics per model x work, findings in the four categories.

Reads only the ledger and the works (verified by hash); never calls a model. The output,
findings.json, cites the ledger's head hash and is byte-identical for the same inputs.
"""

from __future__ import annotations

import gc
import itertools
import logging
import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import casekit
from casekit.analysis import taxonomy
from casekit.analysis.attempt_table import (
    Row,
    RowsHasher,
    TableWriter,
)
from casekit.analysis.chance import chance_baseline
from casekit.analysis.control_test import (
    MatchedTally,
    compare_with_controls,
    control_floors,
    matched_tally,
)
from casekit.analysis.coverage import _longest_consecutive, block_contributors, longest_run
from casekit.analysis.definitions import definitions
from casekit.analysis.findings import (
    AttemptAnalysis,
    Coverage,
    Findings,
    FindingsThresholds,
    ModelComparison,
    ModelWorkFinding,
    SpanFinding,
    WorkBasis,
    compact,
)
from casekit.analysis.findings_io import (  # noqa: F401 - re-exported
    FINDINGS_NAME,
    findings_bytes,
    findings_from_bytes,
    load_findings,
    write_findings,
)
from casekit.analysis.index import KgramIndex
from casekit.analysis.leakage import (
    MgramTrim,
    discount,
    echo_mask,
    mask_char_ranges,
    prompt_words,
    supplied_positions,
    trim_inside,
)
from casekit.analysis.matcher import Span, WorkMatcher
from casekit.analysis.metrics import (
    LIU26_T,
    clip_to_range,
    coverage_overlap,
    longest_block,
    rate_ratio,
    spans_over_threshold,
)
from casekit.analysis.parallel import (
    BATCH,
    AttemptHead,
    AttemptPool,
    Item,
    LedgerObserver,
    attempt_failed,
    map_forked,
    seed_hints,
)
from casekit.analysis.refusal import REFUSAL_WINDOW, refusal_in
from casekit.analysis.registry import ActiveMeasure, active_measures, empty_fields
from casekit.case import CaseFile, LoadedCase, Thresholds
from casekit.errors import CasekitError
from casekit.ledger import LEDGER_NAME, ChainCursor, check_line, iter_lines, superseded_seqs
from casekit.normalize import Tokens, tokenize
from casekit.pz import TeacherForced, can_compute, log_p_z
from casekit.records import AttemptRecord, RunEnd, RunStart, is_imported
from casekit.shortworks import is_short
from casekit.stats import (
    BootstrapRate,
    clustered_rate,
    rate,
)
from casekit.strategies.measures import (
    EXCERPT_UNIT,
    AttemptContext,
    FindingContext,
    Measure,
    MeasureFields,
    word_range,
)
from casekit.works import (
    LIU_PROFILE,
    MATCH_PROFILE,
    ReferenceText,
    Work,
    load_reference_texts,
    load_works,
    work_thresholds,
)

log = logging.getLogger(__name__)

BMC_KS = (5, 10, 20, 50)
"""The k of BMC@k, increasing."""
_GRAMS_CACHE = 512
"""Prompts whose m-grams :meth:`Analyzer._prompt_grams` keeps."""
M_GRAM = 5
ECHO_MIN_WORDS = 5

@dataclass
class _WorkIndex:
    """What an analysis holds per work, built once: the matchers of both profiles and the
    m-gram indexes in which each attempt's prompt m-grams are looked up (leakage step 4)."""

    work: Work
    match: WorkMatcher
    liu: WorkMatcher
    liu_tokens: Tokens
    match_trim: MgramTrim
    liu_trim: MgramTrim

    @classmethod
    def build(cls, work: Work, seed_k: int) -> _WorkIndex:
        match = WorkMatcher.for_work(work, work.match_profile, seed_k)
        liu = WorkMatcher.for_work(work, work.liu_profile, min(BMC_KS))
        for m in (match, liu):  # built here, before the workers fork, not once per worker
            m.prepare()
        return cls(work, match, liu, work.liu_tokens, _trim(match), _trim(liu))


def _trim(matcher: WorkMatcher) -> MgramTrim:
    """The matcher's own index when its k is the m-gram length, else an m-gram index on the
    same word ids."""
    index = matcher.index if matcher.k == M_GRAM else KgramIndex(matcher.work_ids, M_GRAM)
    return MgramTrim(matcher.vocab, index)


@dataclass
class _Running:
    """A measure running in one analysis: its instance and the strategies that declare it."""

    measure: Measure
    active: ActiveMeasure


@dataclass(frozen=True)
class SeedHint:
    """What :meth:`Analyzer.seed_hints` found of an attempt's output before its analysis:
    its tokens under the work's two profiles, and whether either matcher can find a span in
    it at all (:meth:`WorkMatcher.may_seed`). ``False`` is exact (no k-gram of the output is
    the work's), so the analysis skips that matcher's search: same result, less work."""

    out: Tokens
    liu_out: Tokens
    match_may: bool
    liu_may: bool


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


class Analyzer:
    """Analyzes attempts one by one (spans, coverage, the measures' per-attempt hooks), then
    each model x work (rates, coverage, the measures' aggregates). Holds the per-analysis
    state: coverage and BMC masks, and the measures' instances."""

    def __init__(self, case: CaseFile, works: list[Work]) -> None:
        self.case = case
        self.th = case.thresholds
        self.k = self.th.seed_k
        self.works = {w.id: w for w in works}
        # Each work's thresholds (a CJK work's in characters, a short work's scaled to it).
        self.bases = {w.id: work_thresholds(self.th, w) for w in works}
        self.th_of = {wid: b[0] for wid, b in self.bases.items()}
        # The case's reference texts (a short work's chance baseline), loaded on demand.
        self.references: list[ReferenceText] = []
        self.index: dict[str, _WorkIndex] = {}
        for w in works:
            self.index[w.id] = _WorkIndex.build(w, self.k)
        # Per (model, work): coverage masks.
        self.cover: dict[tuple[str, str], np.ndarray] = {}
        self.bmc_masks: dict[tuple[str, str, int], np.ndarray] = {}
        # The strategies' measures, one instance each for this analysis (they keep state).
        self.measures = [_Running(am.cls(), am)
                         for am in active_measures(s.name for s in case.strategies)]
        self._by_strategy: dict[str, list[Measure]] = {}
        # Every measure's empty attempt fields (frozen, so shared by every attempt).
        self._grams: OrderedDict[tuple[str, tuple[str, ...]],
                                 tuple[frozenset[tuple[int, ...]],
                                       frozenset[tuple[int, ...]]]] = OrderedDict()
        self._empty_attempt: dict[str, MeasureFields] = {
            r.active.cls.name: empty_fields(fields) for r in self.measures
            if (fields := r.active.cls.AttemptFields) is not None}

    def _measures_for(self, strategy: str) -> list[Measure]:
        """The measures whose hooks see an attempt of this strategy."""
        if strategy not in self._by_strategy:
            self._by_strategy[strategy] = [r.measure for r in self.measures
                                           if strategy in r.active.strategies]
        return self._by_strategy[strategy]

    def _attempt_fields(self, computed: dict[str, MeasureFields]) -> dict[str, MeasureFields]:
        """Every measure's attempt fields: the computed ones, empty values for the rest."""
        return {name: computed.get(name, empty) for name, empty in self._empty_attempt.items()}

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

    def _prompt_grams(self, wi: _WorkIndex, prompts: tuple[str, ...],
                      match_prompts: list[list[str]],
                      ) -> tuple[frozenset[tuple[int, ...]], frozenset[tuple[int, ...]]]:
        """The prompts' m-grams in the default profile and in [Liu26]'s, for the trims
        (:meth:`MgramTrim.grams`). Every model is sent the same prompts, so they are kept in a
        small LRU cache."""
        key = (wi.work.id, prompts)
        hit = self._grams.get(key)
        if hit is not None:
            self._grams.move_to_end(key)
            return hit
        got = (wi.match_trim.grams(match_prompts),
               wi.liu_trim.grams(prompt_words(prompts, wi.work.liu_profile)))
        self._grams[key] = got
        if len(self._grams) > _GRAMS_CACHE:
            self._grams.popitem(last=False)
        return got

    def seed_hints(self, recs: list[AttemptRecord]) -> list[SeedHint | None]:
        """Per attempt record, a :class:`SeedHint` for :meth:`attempt`, or None where there is
        none to give (no output text, a score attempt, an output that does not tokenize: its
        analysis says why). The records' outputs are tested against their works together, a
        batch in one pass per work and profile."""
        hints: list[SeedHint | None] = [None] * len(recs)
        groups: dict[str, list[tuple[int, Tokens, Tokens]]] = {}
        for i, rec in enumerate(recs):
            a, result = rec.attempt, rec.result
            if (rec.status == "error" or result is None or a.mode == "score"
                    or result.text is None or a.work_id not in self.index):
                continue
            work = self.index[a.work_id].work
            try:
                toks = (tokenize(result.text, work.match_profile),
                        tokenize(result.text, work.liu_profile))
            except Exception:  # noqa: BLE001 - raised again, with its line, by attempt()
                continue
            groups.setdefault(a.work_id, []).append((i, *toks))
        for work_id, got in groups.items():
            wi = self.index[work_id]
            match_may = wi.match.may_seed([t[1] for t in got])
            liu_may = wi.liu.may_seed([t[2] for t in got])
            for (i, out, liu_out), mm, lm in zip(got, match_may, liu_may, strict=True):
                hints[i] = SeedHint(out, liu_out, mm, lm)
        return hints

    def attempt(self, rec: AttemptRecord, hint: SeedHint | None = None) -> AttemptAnalysis:
        """The analysis of one attempt record. ``hint``: what :meth:`seed_hints` found of
        this record (the same analysis, made with less work)."""
        a = rec.attempt
        wi = self.index[a.work_id]
        work = wi.work
        th = self.th_of[a.work_id]
        empty = self._empty_attempt
        base: dict[str, Any] = dict(
            attempt_id=a.id, seq=rec.seq, record_hash=rec.hash or "", model_id=a.model_id,
            work_id=a.work_id, role=work.spec.role, strategy=a.strategy,
            strategy_key=a.strategy_key, intent=a.intent, mode=a.mode, sample=a.sample,
            label=a.label, index=a.index,
        )
        if rec.status == "error" or rec.result is None:
            return AttemptAnalysis(**base, outcome="error", measures=empty)
        result = rec.result
        if a.mode == "score":
            scores = result.token_scores
            if not scores:
                return AttemptAnalysis(**base, outcome="unscorable", measures=empty)
            top1 = sum(1 for s in scores if s.is_top)
            top40 = can_compute(scores, "top40")
            lt = log_p_z(scores, "top40") if top40 else None
            tf = TeacherForced(tokens=len(scores), top1=top1,
                               top1_share=round(top1 / len(scores), 6),
                               sum_logprob=round(float(sum(s.logprob for s in scores)), 6),
                               greedy_reproduced=top1 == len(scores),
                               pz_top40=("not_available" if lt is None else "positive"
                                         if math.isfinite(lt) else "zero"),
                               log_pz_top40=round(lt, 6) if lt is not None and math.isfinite(lt)
                               else None,
                               pz_top40_available=top40,
                               suffix_chars=(a.target.start, a.target.end) if a.target else None)
            if tf.greedy_reproduced and a.target is not None:
                lo, hi = word_range(work.tokens, a.target.start, a.target.end)
                self._cover(a.model_id, a.work_id)[lo:hi] = True
            return AttemptAnalysis(**base, outcome="match" if tf.greedy_reproduced else "no_match",
                                   teacher_forced=tf, measures=empty)
        text = result.text
        if text is None:
            return AttemptAnalysis(**base, outcome="unscorable", measures=empty)
        measures = self._measures_for(a.strategy)
        ctx = AttemptContext(record=rec, work=work, thresholds=th, text=text)
        for m in measures:
            decision = m.decide(ctx)
            if decision is not None:
                return AttemptAnalysis(**base, outcome=decision.outcome,
                                       measures=self._attempt_fields({m.name: decision.fields}))
        computed: dict[str, MeasureFields] = {}
        prompts = a.supplied_texts()
        out = tokenize(text, work.match_profile) if hint is None else hint.out
        ctx = AttemptContext(record=rec, work=work, thresholds=th, text=text, out=out)
        # Each prompt text is tokenized once per profile; the work is never walked here.
        match_prompts = prompt_words(prompts, work.match_profile)
        mask = echo_mask(out, prompts, min_words=ECHO_MIN_WORDS, profile=work.match_profile,
                         prompts=match_prompts)
        for m in measures:
            masked = m.mask_output(ctx, mask)
            if masked is not None:
                computed[m.name] = masked
        spans = (wi.match.near_spans(out, near_exact=th.near_exact, out_mask=mask)
                 if hint is None or hint.match_may else [])
        # BMC@k [Liu26]: words profile, exact spans, instruction m-grams trimmed.
        liu_out = tokenize(text, work.liu_profile) if hint is None else hint.liu_out
        exact = (wi.liu.exact_spans(liu_out, distinct_work=True)  # only work ranges are read
                 if hint is None or hint.liu_may else [])
        # The prompt's trims and supplied positions only ever remove words from spans: an
        # output with none (most of them) skips computing them, and they are computed only
        # inside the spans' work ranges, the only places they are read (discount and
        # trim_inside), so their cost does not grow with the work.
        credited: list[Span] = []
        liu_starts = np.zeros(0, dtype=np.int64)
        if spans or exact:
            match_grams, liu_grams = self._prompt_grams(wi, tuple(prompts), match_prompts)
            liu_starts = wi.liu_trim.starts_in(liu_grams,
                                               [(e.work_start, e.work_end) for e in exact])
        if spans:
            match_trim = wi.match_trim.positions_in(match_grams,
                                                    [(s.work_start, s.work_end) for s in spans])
            work_mask = (supplied_positions(work.tokens, [(r.start, r.end) for r in a.supplied])
                         | match_trim)
            credited = [s for s in discount(spans, work_mask, k=self.k,
                                            work_words=len(work.tokens))
                        if s.similarity >= th.near_exact]
        cover = self._cover(a.model_id, a.work_id)
        longest_verbatim = 0
        for s in credited:
            pos = s.matched_work_positions()
            cover[pos] = True
            longest_verbatim = max(longest_verbatim, _longest_consecutive(pos))
        # The trim's pieces do not depend on k but for the length kept (where the trim resumes
        # after an instruction m-gram does not), and a piece is no longer than its interval:
        # BMC@k's pieces are the smallest k's pieces of >= k words, trimmed once.
        pieces = trim_inside([(e.work_start, e.work_end) for e in exact if e.words >= BMC_KS[0]],
                             liu_starts, wi.liu_trim.m, BMC_KS[0]) if exact else []
        for k in BMC_KS:
            bmask = self._bmc(a.model_id, a.work_id, k)
            for s0, e0 in pieces:
                if e0 - s0 >= k:
                    bmask[s0:e0] = True
        # [Liu26] longest regurgitated span against the attempt's own excerpt, untrimmed, and
        # the excerpt's matches longer than T words (for spans > T).
        regurg = 0
        over_t: list[tuple[int, int]] = []
        if a.target is not None and exact:  # no match, nothing to clip (most outputs)
            excerpt = word_range(wi.liu_tokens, a.target.start, a.target.end)
            clipped = clip_to_range([(e.work_start, e.work_end) for e in exact], excerpt)
            regurg = max((e - s for s, e in clipped), default=0)
            over_t = sorted({(s, e) for s, e in clipped if e - s > LIU26_T})
        for m in measures:
            fields = m.attempt(ctx)
            if fields is not None:
                computed[m.name] = fields
        longest = max((s.words for s in credited), default=0)
        if longest >= th.min_span_words:
            outcome = "match"
            refusal_source = None
        elif result.refusal:
            outcome, refusal_source = "refusal", "provider"
        elif a.mode == "chat" and refusal_in(text[:REFUSAL_WINDOW]):
            outcome, refusal_source = "refusal", "text"
        else:
            outcome, refusal_source = "no_match", None
        if result.refusal and outcome == "match":
            refusal_source = "provider"
        return AttemptAnalysis(
            **base, outcome=outcome, refusal_source=refusal_source, output_words=len(out),
            echo_words=int(mask.sum()), echo_ranges=mask_char_ranges(mask, out),
            spans=_spans_to_findings(credited, out, work),
            longest_words=longest, longest_verbatim_words=longest_verbatim,
            longest_regurgitated_words=max(0, regurg), spans_over_t=over_t,
            measures=self._attempt_fields(computed),
        )

    def _strategy_params(self, key: str) -> dict[str, Any]:
        """The case's parameters of a strategy entry, by strategy key (``name#index``)."""
        _, _, idx = key.partition("#")
        if idx.isdigit() and int(idx) < len(self.case.strategies):
            return dict(self.case.strategies[int(idx)].params)
        return {}

    def model_work(self, model_id: str, work_id: str, mine: list[AttemptAnalysis],
                   ) -> tuple[ModelWorkFinding, MatchedTally]:
        """The finding of a model x work from its attempts (``mine``, in ledger order), and
        the tally of its matched outputs (:func:`matched_tally`) for the control floor and
        the test against it."""
        work = self.works[work_id]
        th = self.th_of[work_id]
        outcomes = {o: 0 for o in ("match", "no_match", "refusal", "error", "unscorable")}
        for x in mine:
            outcomes[x.outcome] += 1
        gen = [x for x in mine if x.span_attempt]
        tally = matched_tally(gen)

        def hits(intent: str) -> tuple[int, int]:
            sel = [x for x in gen if x.intent == intent]
            return sum(1 for x in sel if x.longest_words >= th.min_span_words), len(sel)

        cover = self._cover(model_id, work_id)
        block, block_start = longest_run(cover)
        total = len(work.tokens)
        coverage = Coverage(covered_words=int(cover.sum()), total_words=total,
                            share=round(float(cover.sum()) / total, 6) if total else 0.0,
                            longest_block_words=block, longest_block_start=block_start,
                            longest_block_attempts=block_contributors(
                                mine, work.tokens, block_start, block))
        nliu = len(self.index[work_id].liu_tokens)
        bmc = {str(k): round(float(self._bmc(model_id, work_id, k).sum()) / nliu, 6)
               for k in BMC_KS}
        boot = self._bootstrap(gen, th)
        measures: dict[str, MeasureFields] = {}
        by_strategy: dict[str, list[AttemptAnalysis]] = {}
        for x in mine:
            by_strategy.setdefault(x.strategy, []).append(x)
        for r in self.measures:
            # Each measure's attempts, in ledger order: one strategy's as they are, several
            # strategies' merged by seq.
            parts = [by_strategy[st] for st in by_strategy if st in r.active.strategies]
            attempts = (parts[0] if len(parts) == 1 else
                        sorted((x for p in parts for x in p), key=lambda x: x.seq))
            ctx = FindingContext(
                model_id=model_id, work=work, thresholds=th, attempts=list(attempts),
                strategy_params=self._strategy_params)
            fields = r.measure.finding(ctx)
            declared = r.active.cls.FindingFields
            if fields is not None:
                measures[r.active.cls.name] = fields
            elif declared is not None:
                measures[r.active.cls.name] = empty_fields(declared)
            boot.update(r.measure.bootstrap(ctx))
        pooled = [r for x in mine for r in x.spans_over_t]
        regurg = max(mine, key=lambda x: (x.longest_regurgitated_words, -x.seq), default=None)
        exhibits = sorted((x for x in gen if x.longest_words >= th.min_span_words),
                          key=lambda x: (-x.longest_words, x.seq))
        status, reason = taxonomy.memorization_status(
            coverage=coverage, longest_span=max((x.longest_words for x in mine), default=0),
            thresholds=th, role=work.spec.role, unit=work.unit,
        )
        return ModelWorkFinding(
            model_id=model_id, work_id=work_id, role=work.spec.role, outcomes=outcomes,
            regurgitation=rate(*hits("benign")), extraction=rate(*hits("adversarial")),
            coverage=coverage, bmc=bmc, bootstrap=boot,
            spans_over_t=len(spans_over_threshold(pooled, LIU26_T)),
            longest_block_bmc5=longest_block(self._bmc(model_id, work_id, 5))[0],
            longest_regurgitated_words=regurg.longest_regurgitated_words if regurg else 0,
            longest_regurgitated_attempt=(regurg.attempt_id if regurg is not None
                                          and regurg.longest_regurgitated_words else None),
            memorization=status,
            memorization_reason=reason, exhibit_attempts=[x.attempt_id for x in exhibits],
            measures=measures,
        ), tally

    def _bootstrap(self, gen: list[AttemptAnalysis], th: Thresholds) -> dict[str, BootstrapRate]:
        """Cluster-bootstrap intervals (measurement.md section 6) of the span rates, whose
        attempts are not independent: over excerpts (one prompt with all its samples). The
        measures add theirs (``Measure.bootstrap``)."""
        out: dict[str, BootstrapRate] = {}

        def key(x: AttemptAnalysis) -> str:
            return f"{x.strategy_key}:{x.index}"

        for name, intent in (("regurgitation", "benign"), ("extraction", "adversarial")):
            sel = [x for x in gen if x.intent == intent]
            if sel:
                out[name] = clustered_rate(
                    [int(x.longest_words >= th.min_span_words) for x in sel],
                    [key(x) for x in sel], EXCERPT_UNIT)
        return out


def _analyzer_for(run_dir: Path, start: RunStart, case_path: Path | None) -> Analyzer:
    """The analyzer of a run: its case as recorded, the works checked against their hashes."""
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
    if any(is_short(w.spec.kind) for w in works):
        an.references = load_reference_texts(loaded)
    return an


def analyze_run(run_dir: Path, case_path: Path | None = None, *,
                table: Path | None = None, workers: int = 1,
                observer: LedgerObserver | None = None) -> Findings:
    """Analyze the ledger in run_dir against the works recorded in its run_start.

    One streaming pass over the ledger: each record is verified, parsed and analyzed as it is
    read, and only its analysis is kept (a ledger that stops verifying raises before any
    finding exists). ``table``: where to write the per-attempt rows (attempts.parquet), as
    they are made; either way findings.json cites their content hash. ``workers``: processes
    that analyze the attempts (casekit.analysis.parallel); the output is the same bytes for
    any number. ``observer``: another reader of the lines, fed by this pass
    (casekit.analysis.parallel.LedgerObserver)."""
    if workers < 1:
        raise CasekitError(f"--workers must be at least 1, got {workers}")
    writer = TableWriter(table) if table is not None else None
    # The cyclic garbage collector is paused while the analysis runs: it keeps every attempt's
    # analysis (pydantic objects, a few dozen containers each), and each full collection walks
    # them all, which made unpickling a worker's results ~4x slower at 5k attempts and grows
    # with the run. The analysis makes no reference cycles (gc.collect() after a 5k analysis
    # without the collector finds none), so memory is the same; workers re-enable it.
    paused = gc.isenabled()
    gc.disable()
    try:
        findings = _analyze(run_dir, case_path, writer, workers, observer)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        # What the analysis allocated with the collector paused is all in its youngest
        # generation, so the first collection after it would walk every object the analysis
        # keeps (0.4 s at 50,000 attempts, seconds at a matter's size, and again as they age
        # through the middle generation). Frozen and at once unfrozen, they move straight to
        # the oldest generation, walked only by the next full collection (which still frees
        # any garbage among them: nothing stays frozen).
        gc.freeze()
        gc.unfreeze()
        if paused:
            gc.enable()
    if writer is not None:
        digest = writer.close()
        if digest != findings.attempt_rows:  # pragma: no cover - an internal invariant
            raise AssertionError("the written rows differ from the analysed ones")
    return findings


def _analyze(run_dir: Path, case_path: Path | None, writer: TableWriter | None,
             workers: int, observer: LedgerObserver | None) -> Findings:
    start: RunStart | None = None
    an: Analyzer | None = None
    analyses: list[AttemptAnalysis] = []
    hasher = writer.hasher if writer is not None else RowsHasher()
    run_ids: set[str] = set()
    imported_ids: set[str] = set()
    last_end: RunEnd | None = None
    pool: AttemptPool | None = None

    def take(x: AttemptAnalysis, row: Row | None, line: bytes | None) -> None:
        if writer is not None:
            if row is None or line is None:
                writer.add(x)  # hashes the row as it writes it
            else:
                writer.add_row(row, line)
        elif line is None:
            hasher.add(x)
        else:
            hasher.add_line(line)
        # Compacted where it was made: here, or in the worker before it was pickled (then
        # the batch's attempts share their field-name sets through the pickle's memo).
        analyses.append(x)

    ledger = run_dir / LEDGER_NAME
    # Failed attempts sent again by `casekit run --retry-failed`: the last try is analyzed.
    superseded = superseded_seqs(ledger)
    retried_by: dict[int, str] = {}
    cursor = ChainCursor(ledger)

    def wanted(seq: int, head: AttemptHead) -> bool:
        """An attempt record's bookkeeping; whether it is analyzed (its last try)."""
        attempt_id, strategy, strategy_key, status, retry_of = head
        (imported_ids if is_imported(strategy, strategy_key) else run_ids).add(attempt_id)
        if seq in superseded:
            if status != "error":
                raise CasekitError(f"{ledger}: record seq {seq} is retried by record seq "
                                   f"{superseded[seq]}, but it did not fail; the ledger was "
                                   "not written by casekit")
            retried_by[superseded[seq]] = attempt_id
            return False
        if retry_of is not None and retried_by.pop(seq, None) != attempt_id:
            raise CasekitError(f"{ledger}: record seq {seq} retries record seq {retry_of}, "
                               "which is not a failure of the same attempt; the ledger was "
                               "not written by casekit")
        return True

    def other(rec: Any) -> None:
        nonlocal start, an, last_end
        if isinstance(rec, RunStart):
            if start is None:
                start = rec
                an = _analyzer_for(run_dir, rec, case_path)
        elif isinstance(rec, RunEnd):
            last_end = rec

    pending: list[AttemptRecord] = []

    def flush() -> None:
        """Analyze the attempts read and not yet analyzed, their outputs tested against their
        works together (:meth:`Analyzer.seed_hints`), in ledger order."""
        if pending and an is not None:
            for rec, hint in zip(pending, seed_hints(an, pending), strict=True):
                take(compact(an.attempt(rec, hint)), None, None)
        pending.clear()

    def item(it: Item) -> None:
        """One line's result from the workers, in ledger order."""
        if it[0] == "e":
            raise attempt_failed(str(ledger), it[1], it[2])
        cursor.advance(it[1], it[2])
        if it[0] == "a":
            if observer is not None:
                observer.attempt(it[5], it[2].hash)
            if wanted(it[2].seq, it[3]):
                take(*it[4])
        else:
            if observer is not None:
                observer.record(it[3])
            other(it[3])

    try:
        # The lines up to the run_start are checked here; with workers, the lines after it
        # are checked (and their attempts analyzed) by the workers.
        for lineno, raw, terminated in iter_lines(ledger):
            if observer is not None:
                observer.line(raw)
            if pool is not None:
                for it in pool.put(lineno, raw, terminated):
                    item(it)
                continue
            checked, rec = check_line(raw, terminated)
            cursor.advance(lineno, checked)
            if isinstance(rec, AttemptRecord):
                if an is None:
                    raise CasekitError(f"{run_dir}: the ledger has an attempt (record seq "
                                       f"{rec.seq}) before its run_start record")
                if observer is not None:
                    observer.attempt(observer.of_attempt(rec), rec.hash)
                ra = rec.attempt
                if wanted(rec.seq, (ra.id, ra.strategy, ra.strategy_key, rec.status,
                                    rec.retry_of)):
                    pending.append(rec)
                    if len(pending) >= BATCH:
                        flush()
                continue
            flush()
            if observer is not None:
                observer.record(rec)
            other(rec)
            if workers > 1 and an is not None:
                pool = AttemptPool(an, str(ledger), workers, superseded,
                                   observer.of_attempt if observer is not None else None)
                if writer is not None:
                    writer.prepare()  # pyarrow's import, beside the workers now
        flush()
        if pool is not None:
            for it in pool.finish():
                item(it)
    finally:
        if pool is not None:
            pool.close()
    n_records, head = cursor.count, cursor.prev or ""
    if start is None or an is None:
        raise CasekitError(f"{run_dir}: the ledger has no run_start record")
    spec = an.case
    # The case's models, then those only imported outputs name (an evidence-only case has
    # no models of its own).
    model_ids = [m.id for m in spec.models]
    model_ids += sorted({x.model_id for x in analyses} - set(model_ids))
    # Each model x work's attempts, in ledger order, gathered in one pass.
    by_pair: dict[tuple[str, str], list[AttemptAnalysis]] = {}
    for x in analyses:
        by_pair.setdefault((x.model_id, x.work_id), []).append(x)
    pairs = [(mid, ws.id) for mid in model_ids for ws in spec.works if (mid, ws.id) in by_pair]
    # Each model x work's aggregates walk its attempts many times over (about 15 s of one
    # core for 500,000 attempts): with workers, the pairs are shared out between processes.
    # Each pair's matched outputs are tallied there too (model_work), for the control floor
    # and the test against it (which walked every attempt in this process afterwards).
    got = map_forked(lambda p: an.model_work(p[0], p[1], by_pair[p]), pairs,
                     [len(by_pair[p]) for p in pairs], workers,
                     f"{run_dir}: the findings of each model x work")
    findings = taxonomy.apply_controls([f for f, _ in got])
    tallies = {p: t for p, (_, t) in zip(pairs, got, strict=True)}
    controls = control_floors(model_ids, [ws.id for ws in spec.works if ws.role == "control"],
                              findings, tallies,
                              {w: th.min_span_words for w, th in an.th_of.items()})
    findings = compare_with_controls(
        findings, controls, tallies, {w: th.min_span_words for w, th in an.th_of.items()},
        {w.id: w.unit for w in an.works.values()})
    comparisons = []
    by_key = {(f.model_id, f.work_id): f for f in findings}
    for ws in spec.works:
        models = [mid for mid in model_ids if (mid, ws.id) in by_key]
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
    return Findings(
        run_id=start.run_id, case_sha256=start.case_sha256,
        ledger_head_hash=head, ledger_records=n_records,
        casekit_version=casekit.__version__,
        thresholds=FindingsThresholds(
            near_exact=th.near_exact, min_span_words=th.min_span_words,
            substantial_portion_min_words=th.substantial_portion.min_words,
            substantial_portion_min_share=th.substantial_portion.min_share,
            seed_k=th.seed_k, m_gram=M_GRAM, echo_min_words=ECHO_MIN_WORDS,
            legal_defaults=th.legal_defaults),
        profiles={"spans": MATCH_PROFILE, "bmc": LIU_PROFILE},
        definitions=definitions([r.active.cls for r in an.measures], fmt),
        complete=bool(last_end and last_end.complete),
        planned_attempts=start.planned_attempts,
        recorded_attempts=len(run_ids), imported_attempts=len(imported_ids),
        attempt_rows=hasher.digest(), attempts=analyses, findings=findings, controls=controls,
        comparisons=comparisons, works=work_bases(an, analyses),
    )


def work_bases(an: Analyzer, analyses: list[AttemptAnalysis]) -> dict[str, WorkBasis]:
    """The works measured on their own basis (CJK, short works), for findings.json; a short
    work with its chance baseline."""
    out = {}
    controls = [x for x in analyses if x.role == "control"]
    for wid, (th, rule) in an.bases.items():
        work = an.works[wid]
        if not rule:
            continue
        chance = None
        if is_short(work.spec.kind):
            chance = chance_baseline(work, an.index[wid].match, list(an.works.values()),
                                     th.min_span_words, controls, an.references)
        out[wid] = WorkBasis(
            kind=work.spec.kind, unit="characters" if work.cjk else "words",
            profiles={"spans": work.match_profile, "bmc": work.liu_profile},
            min_span=th.min_span_words,
            substantial_portion_min_words=th.substantial_portion.min_words, rule=rule,
            counted=len(work.tokens), refrain_lines=len(work.refrains), chance=chance)
    return out
