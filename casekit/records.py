"""Core serialized types shared by the pipeline: planned attempts, provider results, ledger records.

Everything here is a frozen pydantic model; everything written to the ledger carries a
``record_type`` and a schema ``version`` so that a record describes itself.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1

IMPORT_STRATEGY = "imported"
"""The strategy name of attempts imported from elsewhere (``casekit import``), not planned."""

Intent = Literal["benign", "adversarial", "reconstruction"]


def is_imported(strategy: str, strategy_key: str) -> bool:
    """An attempt captured outside casekit (``casekit import``), not planned. Its strategy is
    the kind the importer stated (``name_cloze``, ...) or ``imported`` (free-form); its key
    always begins with ``imported@``."""
    return strategy == IMPORT_STRATEGY or strategy_key.startswith(IMPORT_STRATEGY + "@")
Mode = Literal["chat", "completion", "score"]
Outcome = Literal["match", "no_match", "refusal", "error", "unscorable"]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Message(Frozen):
    role: Literal["system", "user", "assistant"]
    content: str


class Decoding(Frozen):
    """Decoding parameters sent with one attempt."""

    temperature: float = 0.0
    """0 means greedy decoding."""
    max_tokens: int = 96
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    """Sampling seed (sent where the provider supports one)."""
    stop: list[str] = Field(default_factory=list)
    max_tokens_set_by: Literal["strategy"] | None = Field(
        None, exclude_if=lambda v: v is None)
    """``strategy`` when ``max_tokens`` is the strategy's limit, not the case's
    ``decoding.max_tokens`` (casekit.plan states the rule); absent when it is the case's."""


class WorkRange(Frozen):
    """Characters [start, end) of a work's raw text."""

    start: int
    end: int


class Session(Frozen):
    """A multi-turn attempt: the model's own output is fed back and it is asked to go on."""

    max_turns: int
    continue_message: str = "Continue."
    """The user message of every turn after the first (chat); unused for completion."""
    stop_pattern: str | None = None
    """A regular expression (e.g. a refusal) that ends the session when a turn matches it."""
    min_turn_chars: int = 1
    """A turn shorter than this (after stripping) ends the session (the model stopped)."""


class PlannedAttempt(Frozen):
    """One attempt as planned, before it is sent. Its id is stable across runs of the same case."""

    id: str
    """``a-`` + 20 hex of SHA-256 over (case hash, model, strategy key, work, index, sample)."""
    ordinal: int
    """Position in the plan (execution order)."""
    model_id: str
    strategy: str
    """Strategy name."""
    strategy_key: str
    """Strategy name plus its index in the case file (``prefix_continuation#0``)."""
    work_id: str
    intent: Intent
    index: int
    """Index of the prompt within (strategy, work)."""
    sample: int = 0
    """Sample number of this prompt; 0 is greedy."""
    mode: Mode
    """``chat``: messages; ``completion``: plain prompt; ``score``: teacher-forced log-probs of
    ``continuation`` after ``prompt``."""
    messages: list[Message] = Field(default_factory=list)
    prompt: str | None = None
    continuation: str | None = None
    decoding: Decoding = Decoding()
    target: WorkRange | None = None
    """The part of the work this attempt aims at (the expected continuation), if any."""
    supplied: list[WorkRange] = Field(default_factory=list)
    """Work ranges quoted in the prompt: never credited to the model (position mask)."""
    label: str = ""
    """Short human description (e.g. ``window 3 at word 150``)."""
    session: Session | None = None
    """Set for multi-turn attempts (iterative continuation): the runner sends the turns."""
    expected: str | None = None
    """What the strategy expects, where it has an answer key (a name-cloze gold name) or a
    parameter the analysis needs (the word a divergence prompt repeats)."""

    def supplied_texts(self) -> list[str]:
        """Every tester-supplied text of this attempt (system, user, prefill, prompt, and the
        continue message of a session). The model's own earlier turns are not leakage."""
        texts = [m.content for m in self.messages]
        if self.prompt:
            texts.append(self.prompt)
        if self.session is not None:
            texts.append(self.session.continue_message)
        return texts


class TokenScore(Frozen):
    """A teacher-forced token: its log-probability and the model's top choice at that step."""

    token: str
    token_id: int
    logprob: float
    top_token_id: int
    top_logprob: float
    is_top: bool
    """True when the given token is the model's most probable next token (greedy would pick it)."""
    rank: int | None = None
    """0-based rank of the given token among all vocabulary logits at that step: the number of
    tokens with a larger logit, plus those with an equal logit and a smaller id (argmax's
    tie-break), so ``rank == 0`` exactly when ``is_top``. None when the provider cannot tell
    (ledgers written before this field, servers without full logits)."""
    top40_logsumexp: float | None = None
    """log-sum-exp of the 40 largest log-probs at that step (natural log; all of them if the
    vocabulary is smaller): the top-40 renormalization of [Hay25]/[Coo25]'s top-k preset,
    ``log p~ = logprob - top40_logsumexp`` for a token of rank < 40. None when unknown."""


class ProviderResult(Frozen):
    """What a provider returned for one attempt, raw response included (keys removed)."""

    text: str | None = None
    """Generated text (None for score attempts)."""
    finish_reason: str | None = None
    refusal: bool = False
    returned_model: str | None = None
    request_id: str | None = None
    system_fingerprint: str | None = None
    server_date: str | None = None
    """The server's HTTP Date header, verbatim."""
    usage: dict[str, Any] = Field(default_factory=dict)
    raw_request: dict[str, Any] = Field(default_factory=dict)
    raw_response: dict[str, Any] = Field(default_factory=dict)
    token_scores: list[TokenScore] | None = None
    """Teacher-forced log-probs of the continuation (score attempts)."""


class AttemptError(Frozen):
    kind: Literal["no_retry", "transient", "rate_limit", "unknown"]
    type: str
    """Exception class name."""
    message: str


class TryRecord(Frozen):
    """One try of an attempt (an attempt may be retried)."""

    started_at: str
    completed_at: str
    error: AttemptError | None = None
    retry_after: float | None = None


class ModelIdentity(Frozen):
    """How a model was identified at run start."""

    model_id: str
    provider: str
    model: str
    interface: Literal["chat", "completion"]
    identity: dict[str, Any] = Field(default_factory=dict)
    """Provider-specific: for local models the GGUF file's SHA-256, size and licence; for APIs
    the endpoint and key fingerprint."""
    can_score: bool = False


class RecordBase(Frozen):
    version: int = SCHEMA_VERSION
    seq: int
    """0-based position in the ledger."""
    recorded_at: str
    """UTC time the record was written."""
    prev_hash: str | None
    hash: str | None = None


class WorkManifest(Frozen):
    id: str
    title: str
    author: str
    role: Literal["subject", "control"]
    path: str
    """Path relative to the case file."""
    sha256: str
    chars: int
    words: int
    """Counted words (words profile, exclusions removed)."""
    excluded_chars: int
    text_sha256: str | None = None
    """SHA-256 of the text extracted from an EPUB, DOCX or PDF work (``sha256`` is the
    original file's); absent for plain text."""
    extractor: str | None = None
    """The library and version that extracted the text (EPUB, DOCX, PDF works)."""


class ExaminerKey(Frozen):
    """The public half of the examiner's signing key, which signs the ledger's checkpoints
    (casekit.anchor). Its private half stays outside the run folder."""

    algorithm: Literal["ed25519"] = "ed25519"
    public_key: str
    """The raw 32-byte Ed25519 public key, base64."""
    fingerprint: str
    """``sha256:`` + hex SHA-256 of the raw public key: what the examiner discloses."""


class RunStart(RecordBase):
    record_type: Literal["run_start"] = "run_start"
    run_id: str
    case_path: str
    case_sha256: str
    case: dict[str, Any]
    """The validated case (canonical form)."""
    works: list[WorkManifest]
    models: list[ModelIdentity]
    plan_sha256: str
    """Hash of the list of planned attempts."""
    planned_attempts: int
    versions: dict[str, str | None]
    git: dict[str, Any]
    host: dict[str, str]
    argv: list[str]
    started_at: str | None = None
    """When the run began (UTC, before planning). A fresh run writes this record while its
    first requests are in flight, so its ``recorded_at`` can be later than the first attempts'
    ``started_at``; this is the run's start. Absent in ledgers of casekit before 0.1.0."""
    rerun_of: dict[str, str] | None = None
    """For ``casekit rerun``: the run whose planned attempts this run repeats (run id, run
    folder, ledger head hash)."""
    examiner_key: ExaminerKey | None = None
    """The key that signs this ledger's checkpoints. Absent in ledgers of casekit before
    anchoring (a later session names its key in an ``examiner_key`` note)."""

    @property
    def began_at(self) -> str:
        """When the run began: ``started_at``, or for older ledgers the record's own time."""
        return self.started_at or self.recorded_at


class AttemptRecord(RecordBase):
    record_type: Literal["attempt"] = "attempt"
    attempt: PlannedAttempt
    status: Literal["ok", "refusal", "error"]
    result: ProviderResult | None = None
    error: AttemptError | None = None
    started_at: str
    completed_at: str
    tries: list[TryRecord] = Field(default_factory=list)
    retry_of: int | None = None
    """``casekit run --retry-failed``: the seq of the failed record of this attempt that this
    one supersedes (the failure stays on record; analysis uses the last). Omitted from the
    ledger when None (see ``OMIT_IF_NONE``)."""


OMIT_IF_NONE = frozenset({"retry_of", "examiner_key"})
"""Fields added after records without them were written: left out of a record's JSON when
None, so that records of the kinds written before are byte-for-byte what they were."""


class Checkpoint(RecordBase):
    """A signed commitment to the chain head (casekit.anchor): every ``every`` records and when
    the ledger is closed. ``signature`` is Ed25519 over :func:`casekit.anchor.statement`
    (``covers_seq``, ``head_hash``, ``final``); ``timestamp`` an RFC 3161 token over the same
    bytes when a TSA was configured."""

    record_type: Literal["checkpoint"] = "checkpoint"
    covers_seq: int
    """The seq of the last record this checkpoint commits to (the one just before it)."""
    head_hash: str
    """That record's hash: it commits to every record up to it."""
    final: bool
    """Written when the ledger was closed: nothing followed it in that session."""
    key_fingerprint: str
    signature: str
    """Base64 Ed25519 signature over the statement."""
    tsa: str | None = None
    timestamp: str | None = None
    """Base64 DER TimeStampResp over the statement (with a TSA)."""
    timestamp_error: str | None = None
    """Why the TSA gave no token (the run went on; the checkpoint is still signed)."""
class Note(RecordBase):
    record_type: Literal["note"] = "note"
    kind: str
    """``resume``, ``torn_line``, ``interrupted``, ``warning``..."""
    message: str
    data: dict[str, Any] = Field(default_factory=dict)


class RunEnd(RecordBase):
    record_type: Literal["run_end"] = "run_end"
    attempts_recorded: int
    attempts_planned: int
    complete: bool
    counts: dict[str, int] = Field(default_factory=dict)


LedgerRecord = RunStart | AttemptRecord | Note | RunEnd | Checkpoint

LEDGER_RECORD_SCHEMA = Annotated[LedgerRecord, Field(discriminator="record_type")]
"""What a ledger line is validated against: the kind of record its ``record_type`` names
(a line without one, or with another name, does not match). Reading the member a line
names, rather than trying each kind in turn, is what makes a mismatch's complaint about that
record (``attempt.status: Input should be ...``, not the first kind's ``Input should be
'run_start'``), and it halves the validation's cost per record."""
