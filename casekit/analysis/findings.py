"""The findings model: what the analyzer derives from a ledger, serialized to findings.json.

findings.json is a derived file: it cites the ledger's head hash and can always be rebuilt from
the ledger and the works (``casekit analyze``). It holds no wall-clock time, so analyzing the
same ledger twice gives byte-identical output.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from casekit.analysis.metrics import CoverageOverlap, RateRatio
from casekit.analysis.registry import (
    dump_fields,
    empty_fields,
    measure_by_name,
    split_measure_fields,
    takes_over,
)
from casekit.pz import TeacherForced
from casekit.records import Intent, Outcome
from casekit.stats import BootstrapRate, Rate
from casekit.strategies.measures import MeasureFields

FieldsT = TypeVar("FieldsT", bound=MeasureFields)

FINDINGS_VERSION = 3
"""1: the spine's findings; 2: adds the p_z census, nv-recall of sessions, bootstrap intervals,
p_z bounds from API log-probs and imported attempts counted apart (recorded_attempts no longer
includes them); 3: the per-attempt rows move to attempts.parquet, cited by ``attempt_rows``."""

MemorizationStatus = Literal[
    "memorization shown",
    "evidence of memorization below the threshold",
    "not observed in these attempts",
]


class F(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WithMeasures(F):
    """A model whose ``measures`` (each measure's fields, by measure name) are serialized flat
    beside its own fields, as findings.json has always had them; loading puts each key back
    under the measure that declares it (casekit.analysis.registry)."""

    level: ClassVar[Literal["attempt", "finding"]]
    measures: dict[str, MeasureFields] = {}
    """The fields of every measure that applies, by measure name (empty values included, so
    findings keep one shape whatever the case ran)."""

    @model_validator(mode="before")
    @classmethod
    def _gather(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "measures" in data:
            return data
        return split_measure_fields(cls.level, data, set(cls.model_fields))

    @model_serializer(mode="wrap")
    def _flatten(self, handler: SerializerFunctionWrapHandler,
                 info: SerializationInfo) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        out.pop("measures", None)
        for fields in self.measures.values():
            out.update(dump_fields(fields, info.mode))
        return out

    def measure(self, cls: type[FieldsT]) -> FieldsT | None:
        """This object's fields of the measure that declares ``cls``, if it has them."""
        for fields in self.measures.values():
            if isinstance(fields, cls):
                return fields
        return None

    def fields(self, cls: type[FieldsT]) -> FieldsT:
        """This object's fields of ``cls``, the empty ones where the measure is not present
        (a plugin measure the case did not use), so a reader never tests for absence twice."""
        got = self.measure(cls)
        return got if got is not None else empty_fields(cls)  # type: ignore[return-value]


_SHARED_SETS: dict[frozenset[str], set[str]] = {}


def _share_fields_set(m: BaseModel, nested: bool = True) -> None:
    if not m.model_config.get("frozen"):
        return  # a mutable model could add to a shared set
    fs = m.__pydantic_fields_set__
    shared = _SHARED_SETS.setdefault(frozenset(fs), fs)
    if shared is fs:
        return  # the first instance with these fields (done then) or one done already
    object.__setattr__(m, "__pydantic_fields_set__", shared)
    if nested:
        for v in m.__dict__.values():
            if isinstance(v, BaseModel):
                _share_fields_set(v)


def compact(x: AttemptAnalysis) -> AttemptAnalysis:
    """``x`` holding less memory, for an analysis that keeps every attempt's: the set of field
    names pydantic keeps per instance (about 2 kB for an attempt's two dozen fields) is shared
    with the other instances that set the same fields, for the attempt, its measures' fields
    and its spans (and the models they hold): 5.7 -> 2.4 kB per attempt on the matter
    benchmark. Safe because these models are frozen (a copy gets a set of its own); the
    values, and so every dump, are unchanged."""
    _share_fields_set(x, nested=False)
    if x.teacher_forced is not None:
        _share_fields_set(x.teacher_forced)
    for fields in x.measures.values():
        _share_fields_set(fields)
    for span in x.spans:
        _share_fields_set(span, nested=False)
    return x


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


NO_OUTPUT = ("error", "unscorable")
"""The outcomes of attempts that returned no output to match (AttemptAnalysis.matched_output)."""


class AttemptAnalysis(WithMeasures):
    level: ClassVar[Literal["attempt", "finding"]] = "attempt"
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
    """A score attempt: the window as teacher-forced (the input of p_z)."""
    spans_over_t: list[tuple[int, int]] = []
    """[Liu26] exact matches longer than T = 20 words inside the attempt's own excerpt (words
    profile, work word ranges)."""

    @property
    def span_attempt(self) -> bool:
        """A generation attempt that was span-matched: not a score attempt, and no measure
        took it over (a name-cloze answer is not matched against the work). Only these are in
        the regurgitation and extraction rates."""
        if self.mode == "score":
            return False
        if not takes_over(self.strategy):
            return True  # no measure of its strategy can take an attempt over (most of them)
        for name, fields in self.measures.items():
            cls = measure_by_name(name)
            if cls is not None and cls.decided(fields):
                return False
        return True

    @property
    def matched_output(self) -> bool:
        """A span-matched generation attempt that returned an output to match (not failed, not
        unscorable): the attempts of the control floor, of both sides of the test against it,
        of a short work's chance baseline and of the sensitivity table. The rates keep the
        failed ones in n; these leave them out, since a failure would lower the floor."""
        return self.span_attempt and self.outcome not in NO_OUTPUT


SUMMARY_FIELD = next(n for n, f in AttemptAnalysis.model_fields.items()
                     if f.annotation == (TeacherForced | None))
"""The AttemptAnalysis field holding the teacher-forced summary, found by its type: a reader
of serialized analyses (the report's table) tests it without spelling a strategy's name."""


class Coverage(F):
    covered_words: int
    total_words: int
    share: float
    longest_block_words: int
    """Longest contiguous run of covered work words (across attempts)."""
    longest_block_start: int | None = None
    """Work word index where that block starts."""
    longest_block_attempts: list[str] = []
    """Attempts whose credited spans (or greedily reproduced teacher-forced windows) cover
    words of that block, in work order of their first word in it: more than one when the
    block is stitched from several outputs (the report exhibits it whole)."""


class ControlTest(F):
    """A subject's rate against its model's control floor: an exact one-sided test.

    Both rates count generation attempts (score attempts, failed and unscorable attempts
    excluded) with a credited span at the subject work's reporting threshold, over every
    intent, refusals included: the same selection as the control floor. ``control`` counts
    the floor's attempts at that threshold (converted to a control's unit when one counts
    characters and the other words): the floor's own rate unless the subject's threshold is
    scaled (a short work, a CJK work). ``p_value`` is Fisher's exact test that the
    subject's rate exceeds the control's; ``p_adjusted`` is Holm-Bonferroni adjusted over the
    ``tests`` subject findings of the run that have a control to compare with (every model x
    subject work)."""

    subject: Rate
    control: Rate
    p_value: float
    p_adjusted: float
    tests: int
    method: str = "fisher-exact-one-sided"
    correction: str = "holm"


class ModelWorkFinding(WithMeasures):
    level: ClassVar[Literal["attempt", "finding"]] = "finding"
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
    bootstrap: dict[str, BootstrapRate] = {}
    """Cluster-bootstrap intervals of the rates whose attempts are not independent
    (measurement.md section 6), by rate: ``regurgitation``, ``extraction``,
    ``discoverable_exact``, ``discoverable_approx`` over excerpts (a prompt and all its
    samples), ``teacher_forced_greedy`` over chapters or 1,000-character blocks (overlapping
    windows). The rates themselves carry Wilson / Clopper-Pearson intervals over attempts."""
    spans_over_t: int = 0
    """[Liu26] spans > 20 words, greedy non-overlapping selection over all excerpts."""
    longest_block_bmc5: int = 0
    """[Liu26] longest contiguous run of the BMC@5 coverage mask (words profile)."""
    longest_regurgitated_words: int = 0
    """[Liu26] longest regurgitated span: the longest exact match (words profile, untrimmed) of
    one generation against its own target excerpt, over this model's attempts on the work."""
    longest_regurgitated_attempt: str | None = None
    """The attempt that gave it (the first in ledger order); None when no span was found."""
    memorization: MemorizationStatus
    memorization_reason: str
    exhibit_attempts: list[str] = []
    """Attempts whose spans reach the reporting threshold, longest first."""
    vs_control: ControlTest | None = None
    """A subject against its model's control floor (None for a control, or where the model
    has no control generation attempts: not tested)."""


class ControlFloor(F):
    """The matcher's measured false-positive floor for one model, from its control works."""

    model_id: str
    attempts: Rate
    """Control generation attempts with a span >= min_span_words, of those that produced output
    (failed attempts, errors or no output, measure nothing and are not in n)."""
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


class FindingsThresholds(F):
    """The thresholds the analysis applied, typed (unknown or missing keys are errors), read
    as attributes (``f.thresholds.min_span_words``) so no reader falls back on a silent
    default."""

    near_exact: float
    """Minimum normalized word-level edit similarity of a near-verbatim span."""
    min_span_words: int
    """Reporting threshold: a credited span of at least this many words is evidence."""
    substantial_portion_min_words: int
    substantial_portion_min_share: float
    seed_k: int
    m_gram: int
    echo_min_words: int
    legal_defaults: bool
    """False when the case deliberately lowered the thresholds."""

    @property
    def lowered(self) -> bool:
        """The case lowered the thresholds below the legal defaults: figures are not
        comparable with findings made at them (the report says so)."""
        return not self.legal_defaults


class ChanceBaseline(F):
    """How often spans of a short work's threshold length occur by chance (casekit.analysis.
    chance): against the case's other texts and in the control attempts."""

    min_span: int
    seed_k: int
    """Shared runs shorter than this are not seen (the matcher's seed length)."""
    reference_works: list[str]
    reference_files: dict[str, str] = {}
    """The case's ``reference_texts`` compared, path -> SHA-256 of the file."""
    reference_words: int
    longest_shared: int
    """The longest exact run of words any reference text shares with the work (0: none of
    ``seed_k`` words or more)."""
    shared_at_min_span: int
    """Shared runs of at least ``min_span`` words."""
    control_attempts: int
    """Generation attempts on the control works (errors left out)."""
    control_reaching: int
    """Of those, attempts with a credited span of at least ``min_span`` words."""
    control_longest: int


class WorkBasis(F):
    """How one work is measured where that differs from the case's defaults: a CJK work
    counted in characters, a short work (poem, lyrics) with its own reporting threshold.
    Only such works are listed (findings.json ``works``)."""

    kind: Literal["prose", "poem", "lyrics"] = "prose"
    unit: Literal["words", "characters"] = "words"
    """What one counted token is: a word, or a Han/Kana character (CJK profile)."""
    profiles: dict[str, str]
    """The profiles of span finding (``spans``) and of BMC@k (``bmc``) for this work."""
    min_span: int
    """The work's reporting threshold, in ``unit``."""
    substantial_portion_min_words: int
    """The work's contiguous-block threshold of a memorization finding, in ``unit``."""
    rule: str
    """The rule that set the work's thresholds, stated for the report."""
    counted: int = 0
    """The work's counted words (characters for CJK), exclusions and repeats removed."""
    refrain_lines: int = 0
    """A short work's repeated refrain lines, counted once (at their first occurrence)."""
    chance: ChanceBaseline | None = None
    """A short work's chance baseline."""


class RowsDigest(F):
    """The per-attempt table findings.json cites: its file name (beside findings.json), its row
    count and the SHA-256 over each row's canonical JSON (RFC 8785) followed by a newline, in
    ledger order (independent of the Parquet byte layout)."""

    file: str
    rows: int
    sha256: str


class Findings(F):
    version: int = FINDINGS_VERSION
    run_id: str
    case_sha256: str
    ledger_head_hash: str
    ledger_records: int
    casekit_version: str
    thresholds: FindingsThresholds
    """The thresholds the analysis applied (findings.json keys: near_exact, min_span_words,
    substantial_portion_min_words, substantial_portion_min_share, seed_k, m_gram,
    echo_min_words, legal_defaults)."""
    profiles: dict[str, str]
    definitions: dict[str, str]
    complete: bool
    planned_attempts: int
    recorded_attempts: int
    """Planned attempts on record (casekit sent them); imported outputs are not among them."""
    imported_attempts: int = 0
    """Outputs captured outside casekit and imported (``casekit import``), counted apart."""
    attempt_rows: RowsDigest
    """The per-attempt rows (attempts.parquet), by content hash."""
    attempts: list[AttemptAnalysis] = Field(default_factory=list, exclude=True)
    """The rows themselves, in memory: never serialized into findings.json (they are in
    attempts.parquet)."""
    findings: list[ModelWorkFinding]
    controls: list[ControlFloor]
    comparisons: list[ModelComparison] = []
    works: dict[str, WorkBasis] = Field(default_factory=dict, exclude_if=lambda v: not v)
    """Works measured on their own basis (CJK, short works), by work id; absent when none."""

    def min_span(self, work_id: str) -> int:
        """The reporting threshold that applies to a work (its own, else the case's)."""
        basis = self.works.get(work_id)
        return basis.min_span if basis is not None else self.thresholds.min_span_words

    def unit(self, work_id: str) -> str:
        """``words``, or ``characters`` for a CJK work."""
        basis = self.works.get(work_id)
        return basis.unit if basis is not None else "words"

    def reaches_threshold(self, attempt: AttemptAnalysis) -> bool:
        """A generation attempt whose longest credited span reaches the reporting threshold
        (``min_span_words``): the verdict behind exhibits, rates and the attempt table."""
        return attempt.mode != "score" and attempt.longest_words >= self.min_span(
            attempt.work_id)
