"""The findings model: what the analyzer derives from a ledger, serialized to findings.json.

findings.json is a derived file: it cites the ledger's head hash and can always be rebuilt from
the ledger and the works (``casekit analyze``). It holds no wall-clock time, so analyzing the
same ledger twice gives byte-identical output.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from casekit.analysis.metrics import (
    CoverageOverlap,
    Discoverable,
    NameCloze,
    NvRecall,
    RateRatio,
)
from casekit.pz import HistogramBin, NPRate, ThresholdShare
from casekit.records import Intent, Outcome
from casekit.stats import BootstrapRate, Rate

FINDINGS_VERSION = 2
"""1: the spine's findings; 2: adds the p_z census, nv-recall of sessions, bootstrap intervals,
p_z bounds from API log-probs and imported attempts counted apart (recorded_attempts no longer
includes them)."""

MemorizationStatus = Literal[
    "memorization shown",
    "evidence of memorization below the threshold",
    "not observed in these attempts",
]


class F(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SpanFinding(F):
    """A credited near-verbatim span of a work in one output (after the leakage discount)."""

    out_char_start: int
    out_char_end: int
    work_char_start: int
    work_char_end: int
    out_word_start: int
    out_word_end: int
    work_word_start: int
    work_word_end: int
    words: int
    """Work words covered by the span."""
    matched_words: int
    """Work words aligned exactly (``equal`` opcodes)."""
    similarity: float
    verbatim: bool
    opcodes: list[tuple[str, int, int, int, int]]
    """Word-level alignment: (tag, out_i1, out_i2, work_j1, work_j2), absolute word indices."""


class TeacherForced(F):
    tokens: int
    top1: int
    """Continuation tokens that were the model's top choice."""
    top1_share: float
    sum_logprob: float
    greedy_reproduced: bool
    """Every continuation token was the top choice: greedy decoding would reproduce the window
    (greedy p_z = 1) [Hay25]."""
    log_pz_top40: float | None = None
    """Natural log of p_z under the top-40 preset (T = 1) [Hay25, Coo25]; None when p_z = 0
    (a suffix token outside the top 40) or when the provider gave no ranks (see
    ``pz_top40_available``)."""
    pz_top40_available: bool = False
    suffix_chars: tuple[int, int] | None = None
    """Work characters [start, end) of the scored continuation."""


class GenerationPz(F):
    """p_z of a prefix-continuation window bounded from the API's top-k log-probs of the greedy
    generation (``casekit.analysis.pz.pz_bound_from_generation``) [Hay25; Coo25]."""

    greedy: Literal["one", "zero", "undetermined"]
    """Greedy p_z: exactly 1, exactly 0, or undetermined (at most 1)."""
    top40_log_upper: float | None
    """Natural log of the top-40 upper bound; None when the bound is 0."""
    suffix_start: int
    """Work character where the window's suffix starts."""
    covered_chars: int
    """Suffix characters the generation reproduced before it left the suffix or stopped."""
    suffix_chars: int
    top_k: int
    """The longest top-k list the API returned for a step."""


class AttemptAnalysis(F):
    attempt_id: str
    seq: int
    record_hash: str
    model_id: str
    work_id: str
    role: Literal["subject", "control"]
    strategy: str
    strategy_key: str
    intent: Intent
    mode: str
    sample: int
    label: str
    index: int = 0
    """The prompt's index in its strategy's plan for this work: the samples of one prompt
    share it (the excerpt cluster of the bootstrap)."""
    outcome: Outcome
    refusal_source: Literal["provider", "text"] | None = None
    output_words: int = 0
    echo_words: int = 0
    """Output words removed as echo of the prompt (>= 5-word runs found in the prompt)."""
    echo_ranges: list[tuple[int, int]] = []
    """Output character ranges [start, end) of that echo (never credited)."""
    spans: list[SpanFinding] = []
    longest_words: int = 0
    """Longest credited near-verbatim span, in work words."""
    longest_verbatim_words: int = 0
    """Longest credited run of exactly matching work words."""
    longest_regurgitated_words: int = 0
    """[Liu26] longest exact match of the output against its own target excerpt, untrimmed."""
    teacher_forced: TeacherForced | None = None
    discoverable: Discoverable | None = None
    """50/50 discoverable extraction of a greedy prefix-continuation window [Car23 Def. 3.1],
    in light-words words (not model tokens)."""
    spans_over_t: list[tuple[int, int]] = []
    """[Liu26] exact matches longer than T = 20 words inside the attempt's own excerpt (words
    profile, work word ranges)."""
    pz_bound: GenerationPz | None = None
    """Prefix continuation with API log-probs: p_z bounds of the window (labelled bounds)."""
    diverged_at_word: int | None = None
    """Divergence [Nas23]: output word index where the repetition stopped (words before it
    are masked); equal to the output length when the model never diverged."""
    nv_recall: NvRecall | None = None
    """Iterative continuation: nv-recall [Ahm26 §3.3.1, Alg. 1] of the session's concatenated
    turns against the whole work (light profile, whitespace words; the seed's words masked)."""
    cloze_answer: str | None = None
    """Name cloze [Cha23]: the name the model gave (from its ``<name>`` tag)."""
    cloze_correct: bool | None = None
    """Name cloze: the answer equals the masked name (case-insensitive); not a span measure,
    so cloze attempts are not in the regurgitation or extraction rates."""


class Coverage(F):
    covered_words: int
    total_words: int
    share: float
    longest_block_words: int
    """Longest contiguous run of covered work words (across attempts)."""
    longest_block_start: int | None = None
    """Work word index where that block starts."""


class TeacherForcedSummary(F):
    windows: int
    mean_top1_share: float
    min_top1_share: float
    max_top1_share: float
    greedy_reproduced_windows: int


class Probabilistic(F):
    """Probabilistic extraction from teacher-forced windows [Hay25, Coo25]."""

    windows: int
    preset: str
    """``top40`` (T = 1, top-k 40) when the provider gave ranks, else only greedy."""
    greedy: Rate
    """Windows with greedy p_z = 1 (every suffix token the top choice)."""
    np_rates: list[NPRate]
    """(n,p)-discoverable extraction rates over windows: 1 - (1 - p_z)^n >= p."""
    histogram: list[HistogramBin]
    shares: list[ThresholdShare]
    """Share of windows and of (counted) characters with p_z >= tau."""
    sampling: str
    """How the windows were chosen (sampled windows, not the whole-work census of [Coo25])."""


class ApiPzBounds(F):
    """p_z of prefix-continuation windows bounded from API top-k log-probs [Hay25; Coo25]:
    greedy exactly where the lists decide it, top-40 only as an upper bound."""

    windows: int
    greedy_one: int
    """Windows with greedy p_z exactly 1 (the generation spelled the suffix, top choice each
    step)."""
    greedy_zero: int
    greedy_undetermined: int
    top40_upper_shares: list[ThresholdShare]
    """Windows whose top-40 **upper bound** is >= tau (and the characters of their suffixes):
    the true share is at most this."""
    top_k: int
    """Alternatives per step the API returned (at most)."""


class CensusPreset(F):
    """The census figures under one p_z preset [Hay25 Def. 2; Coo25]."""

    preset: str
    """``greedy`` (k = 1) or ``top40`` (k = 40, T = 1)."""
    histogram: list[HistogramBin]
    shares: list[ThresholdShare]
    """Windows and characters with p_z >= tau; characters as a share of ``scored_chars``."""
    np_rates: list[NPRate] = []
    """(n,p)-discoverable rates over the windows (top40 only: greedy p_z is 0 or 1)."""


class Census(F):
    """Whole-work p_z census [Coo25] of one model on one work (strategy ``pz_census``)."""

    strategy_key: str
    params: str
    """Window definition as run: tokens, stride, ranges, cap."""
    planned: int
    """Census attempts (every window planned), errors included."""
    windows: int
    """Windows scored (p_z computed)."""
    errors: int
    scored_chars: int
    """Characters in the union of the scored windows' suffixes: the denominator of the
    character shares (a prefix is never credited, so the first 50 tokens of a segment are
    outside it)."""
    counted_chars: int
    """The work's characters after exclusions (the census may cover fewer: ranges, cap)."""
    greedy: Rate
    """Windows greedy decoding reproduces (greedy p_z = 1)."""
    greedy_bootstrap: BootstrapRate | None = None
    """The same with a cluster-bootstrap interval (overlapping windows are not independent)."""
    presets: list[CensusPreset]


class SessionsRecall(F):
    """nv-recall of a model's iterative-continuation sessions on one work [Ahm26]."""

    sessions: int
    """Sessions with an output (errors excluded)."""
    combined: NvRecall
    """Every session's turns concatenated in the work order of their seeds, against the work
    (seeds masked): the work-level figure."""
    best_session: float
    """The highest single-session nv-recall."""
    sessions_rate: BootstrapRate | None = None
    """Sessions whose own nv-recall credits any block (>= 100 matched words after pass 2),
    with a bootstrap over chapters."""


class ModelWorkFinding(F):
    model_id: str
    work_id: str
    role: Literal["subject", "control"]
    outcomes: dict[str, int]
    """Attempts by outcome (every attempt counts in a denominator)."""
    regurgitation: Rate
    """Benign generation attempts with a credited span >= min_span_words."""
    extraction: Rate
    """Adversarial generation attempts with a credited span >= min_span_words."""
    coverage: Coverage
    """Union of credited spans over every means (light-words profile)."""
    bmc: dict[str, float]
    """BMC@k [Liu26] for k in 5, 10, 20, 50 (words profile)."""
    teacher_forced: TeacherForcedSummary | None = None
    probabilistic: Probabilistic | None = None
    """From the ``teacher_forced`` strategy's sampled windows (census windows excluded)."""
    api_pz_bounds: ApiPzBounds | None = None
    """From API top-k log-probs of greedy prefix continuations; bounds, not values."""
    census: list[Census] = []
    """Whole-work p_z census [Coo25], one per ``pz_census`` strategy entry."""
    nv_recall: SessionsRecall | None = None
    """nv-recall of the iterative-continuation sessions [Ahm26]."""
    bootstrap: dict[str, BootstrapRate] = {}
    """Cluster-bootstrap intervals of the rates whose attempts are not independent
    (measurement.md section 6), by rate: ``regurgitation``, ``extraction``,
    ``discoverable_exact``, ``discoverable_approx`` over excerpts (a prompt and all its
    samples), ``teacher_forced_greedy`` over chapters or 1,000-character blocks (overlapping
    windows). The rates themselves carry Wilson / Clopper-Pearson intervals over attempts."""
    discoverable_exact: Rate | None = None
    """50/50 discoverable extraction [Car23], exact variant, over greedy prefix windows."""
    discoverable_approx: Rate | None = None
    """The same within 10% word edit distance."""
    spans_over_t: int = 0
    """[Liu26] spans > 20 words, greedy non-overlapping selection over all excerpts."""
    name_cloze: NameCloze | None = None
    """Name-cloze accuracy beside the majority-name baseline [Cha23]."""
    longest_block_bmc5: int = 0
    """[Liu26] longest contiguous run of the BMC@5 coverage mask (words profile)."""
    memorization: MemorizationStatus
    memorization_reason: str
    exhibit_attempts: list[str] = []
    """Attempts whose spans reach the reporting threshold, longest first."""


class ControlFloor(F):
    """The matcher's measured false-positive floor for one model, from its control works."""

    model_id: str
    attempts: Rate
    """Control generation attempts with a span >= min_span_words."""
    by_intent: dict[str, Rate] = {}
    """The same, per intent of the strategies (benign floor beside regurgitation, adversarial
    floor beside extraction)."""
    upper_95: float | None
    """One-sided 95% Clopper-Pearson upper bound of the false-positive rate."""
    max_coverage: float
    max_bmc5: float
    mean_top1_share: float | None


class ModelComparison(F):
    """Two models on one work [Liu26]: coverage overlap beside its random baseline, and the
    ratio of their extraction rates."""

    work_id: str
    model_a: str
    model_b: str
    coverage: CoverageOverlap
    """Light-words coverage masks (all means)."""
    bmc5: CoverageOverlap
    """BMC@5 masks (words profile)."""
    extraction_ratio: RateRatio
    regurgitation_ratio: RateRatio


class Findings(F):
    version: int = FINDINGS_VERSION
    run_id: str
    case_sha256: str
    ledger_head_hash: str
    ledger_records: int
    casekit_version: str
    thresholds: dict[str, float | int | bool]
    profiles: dict[str, str]
    definitions: dict[str, str]
    complete: bool
    planned_attempts: int
    recorded_attempts: int
    """Planned attempts on record (casekit sent them); imported outputs are not among them."""
    imported_attempts: int = 0
    """Outputs captured outside casekit and imported (``casekit import``), counted apart."""
    attempts: list[AttemptAnalysis]
    findings: list[ModelWorkFinding]
    controls: list[ControlFloor]
    comparisons: list[ModelComparison] = []
