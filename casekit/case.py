"""The case file: YAML validated by pydantic models, errors reported as ``file:line:col``.

A case names the works (with their hashes), the models and the strategies to probe them with.
Case files are untrusted input: unknown fields are rejected, paths must stay inside the case's
folder, and every error is one line that says what to fix.
"""

from __future__ import annotations

import json
import logging
import math
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from casekit.canonical import sha256_json
from casekit.case_yaml import (  # noqa: F401 - re-exported: callers import them from here
    CASE_MAX_BYTES,
    JSON_MAX_INT,
    Pos,
    _dotted,
    _Located,
    parse_yaml,
    read_regular_file,
)
from casekit.errors import CaseError, CasekitError
from casekit.urls import check_base_url  # noqa: F401 - re-exported for callers
from casekit.visible import visible

log = logging.getLogger(__name__)

Identifier = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="letters, digits, _ . -"),
]


def _admits_bool(annotation: Any) -> bool:
    """Whether a field's type takes true/false as such (bool, Any, or a union holding one)."""
    if annotation is bool or annotation is Any:
        return True
    return any(_admits_bool(a) for a in getattr(annotation, "__args__", ()) or ()
               if not isinstance(a, (str, int, float)) or isinstance(a, bool))


def refuse_bool_and_nan(model: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
    """A field's value before pydantic reads it: true/false refused where a number is meant
    (pydantic would read true as 1), NaN and infinity refused by name."""
    field = model.model_fields.get(info.field_name or "")
    if isinstance(value, bool) and field is not None and not _admits_bool(field.annotation):
        raise ValueError(f"{'true' if value else 'false'} is not a number; write a number "
                         "(without quotes) or remove the field")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{'NaN' if math.isnan(value) else 'infinity'} is not allowed here; "
                         "write a finite number")
    return value


class UserModel(BaseModel):
    """Base for user-written input: frozen, unknown fields rejected, no true for 1."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _plain_values(cls, value: Any, info: ValidationInfo) -> Any:
        return refuse_bool_and_nan(cls, value, info)


ADDED_LATER: dict[str, Any] = {"added_later": True}
"""``json_schema_extra`` of a case field added after cases were first recorded: while it holds
its default it is left out of the case's hash (:func:`case_hash_form`), so a case written
before the field existed keeps its hash, its attempts keep their ids, and its runs resume."""


def case_hash_form(spec: BaseModel) -> dict[str, Any]:
    """The case as it is hashed: its JSON form without the fields :data:`ADDED_LATER` that
    hold their defaults."""
    data: dict[str, Any] = json.loads(spec.model_dump_json())
    _drop_later_defaults(spec, data)
    return data


def _drop_later_defaults(model: BaseModel, data: dict[str, Any]) -> None:
    for name, info in type(model).model_fields.items():
        if name not in data:
            continue
        value = getattr(model, name)
        extra = info.json_schema_extra
        if isinstance(extra, dict) and extra.get("added_later") and value == info.get_default(
                call_default_factory=True):
            del data[name]
            continue
        if isinstance(value, BaseModel) and isinstance(data[name], dict):
            _drop_later_defaults(value, data[name])
        elif isinstance(value, (list, tuple)) and isinstance(data[name], list):
            for v, d in zip(value, data[name], strict=False):
                if isinstance(v, BaseModel) and isinstance(d, dict):
                    _drop_later_defaults(v, d)


class BatesSpec(UserModel):
    prefix: str = Field("CASEKIT", pattern=r"^[A-Z0-9_-]{1,20}$")
    """Bates prefix stamped on every report page."""
    start: int = Field(1, ge=1)
    """Number of the first page."""


class CaseMeta(UserModel):
    id: Identifier
    """Short identifier of the case; names the run folder."""
    title: str
    """Human title printed on the cover."""
    matter: str
    """The legal matter (caption or docket) this analysis is for."""
    examiner: str
    """Who is responsible for the analysis."""
    organization: str
    """The examiner's organization."""
    bates: BatesSpec = BatesSpec()
    """Bates numbering of the report pages."""
    operator: str | None = Field(None, exclude_if=lambda v: v is None)
    """Who operated the run (a person, as the report should name them); the report prints it
    in the chain of custody beside the machine's account, which only says where it ran.
    Omitted from the case's canonical form when not given (old case hashes stay valid)."""


class CharRange(UserModel):
    """Characters [start, end) of the raw text."""

    start: int = Field(ge=0)
    end: int = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> CharRange:
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be greater than start ({self.start}); "
                             "give the offset just past the last excluded character as end")
        return self


class MarkerRange(UserModel):
    """Exclude from the first occurrence of ``from_marker`` up to and including ``to_marker``.

    Either marker may be omitted: no ``from_marker`` means from the start of the text, no
    ``to_marker`` means to its end.
    """

    from_marker: str | None = None
    to_marker: str | None = None
    reason: str = "excluded by the case file"

    @model_validator(mode="after")
    def _one(self) -> MarkerRange:
        if not self.from_marker and not self.to_marker:
            raise ValueError("give from_marker, to_marker or both")
        return self


class Exclusion(UserModel):
    """Text of a work that is never counted (boilerplate, licences, quoted third-party text)."""

    chars: CharRange | None = None
    markers: MarkerRange | None = None
    reason: str = "excluded by the case file"

    @model_validator(mode="after")
    def _exactly_one(self) -> Exclusion:
        if (self.chars is None) == (self.markers is None):
            raise ValueError("give exactly one of chars: {start, end} or markers: {...}")
        return self


class WorkSpec(UserModel):
    id: Identifier
    """Identifier used in prompts, findings and exhibits."""
    title: str
    author: str
    path: str
    """Path of the reference text (UTF-8 .txt or .md), relative to the case file."""
    role: Literal["subject", "control"]
    """``subject``: a work whose memorization is in question; ``control``: a text the model
    cannot have seen, whose span rate is the matcher's false-positive floor."""
    published: date | None = None
    """Publication date (for a control: the date it was written)."""
    edition: str | None = None
    """Source edition of the reference text, cited in the report."""
    registration: str | None = None
    """Copyright registration number, if any."""
    sha256: str | None = Field(None, pattern=r"^(sha256:)?[0-9a-f]{64}$")
    """Expected SHA-256 of the file; the run refuses to start if the file differs."""
    exclude: list[Exclusion] = []
    """Parts of the text never counted (e.g. Project Gutenberg header and licence)."""
    boilerplate: Literal["exclude", "keep"] = Field("exclude", json_schema_extra=ADDED_LATER)
    """Distribution boilerplate detected on ingestion (a Project Gutenberg header, footer and
    licence): ``exclude`` (the default) never counts it, and the report lists the exclusion;
    ``keep`` counts it as the work's text, and the report warns when a work's matches fall
    mostly inside it."""
    language: str | None = Field(None, pattern=r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*$",
                                 exclude_if=lambda v: v is None)
    """BCP 47 tag of the work's language (``en``, ``de``, ``zh``, ``zh-Hant``, ``ja``, ``ko``).
    ``zh``, ``ja`` and ``ko`` select the CJK profile (Han and Kana counted per character,
    thresholds in characters: casekit.cjk); unset: detected from the text."""
    kind: Literal["prose", "poem", "lyrics"] = Field("prose", exclude_if=lambda v: v == "prose")
    """``poem`` or ``lyrics``: a short work, whose lines and stanzas are kept, whose repeated
    refrain counts once, whose headline measure is the share of the work reproduced and whose
    reporting threshold scales with its length (casekit.shortworks)."""
    unpublished: bool = Field(False, exclude_if=lambda v: v is False)
    """A control never published (e.g. written for this case): the reason it qualifies as a
    text no model can have seen, printed in the report. Omitted from the canonical form when
    false."""


class RateLimits(UserModel):
    """How hard casekit may drive a model's API (token buckets, retries)."""

    requests_per_minute: float | None = Field(None, gt=0)
    """Request rate limit (token bucket, burst of one second's worth, at least 1)."""
    tokens_per_minute: float | None = Field(None, gt=0)
    """Token rate limit: prompt tokens (estimated at 4 characters each) plus max_tokens are
    reserved before a request and corrected with the usage the server reports."""
    max_tries: int = Field(4, ge=1, le=20)
    """Tries per attempt before it is recorded as failed (every try is recorded)."""


class ModelSpec(UserModel):
    id: Identifier
    """Identifier of this model in the case."""
    provider: str
    """``local``, ``openai``, ``anthropic``, ``openai-compatible`` or a plugin's name."""
    model: str
    """The provider's model name (for ``local``: ``smollm2-135m-instruct`` or ``gemma3-270m``)."""
    interface: Literal["chat", "completion"] | None = None
    """How prompts are sent: chat messages or plain continuation. Default: the provider's."""
    base_url: str | None = None
    """Endpoint for ``openai-compatible`` servers: an http:// or https:// URL without a user
    name or password (credentials go in the variable named by ``api_key_env``)."""
    api_key_env: str | None = Field(None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    """Name of the environment variable holding the key (never the key itself)."""
    params: dict[str, Any] = {}
    """Provider-specific options, as written (recorded as is in run_start): each provider
    validates them with its ``Params`` class (``casekit schema`` lists them per provider)."""
    limits: RateLimits = RateLimits()
    """Rate limits and retries for this model."""
    training_cutoff: date | None = Field(None, exclude_if=lambda v: v is None)
    """The model's training-data cutoff as its provider states it: a control published after
    it qualifies; one published before it (or with no date) is flagged in the report. Omitted
    from the canonical form when not given."""

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None:
            check_base_url(v)
        return v


class AnchoringSpec(UserModel):
    """How the run's ledger is anchored besides the examiner key's signed checkpoints
    (docs/anchoring.md)."""

    tsa: str | None = None
    """An RFC 3161 timestamp authority (http:// or https://, no user name or password): every
    checkpoint is timestamped during the run, as with ``casekit run --tsa`` (which overrides
    it). A TSA that fails is recorded on the checkpoint; the run goes on."""

    @field_validator("tsa")
    @classmethod
    def _tsa_url(cls, v: str | None) -> str | None:
        if v is not None:
            check_base_url(v, what="the timestamp authority's address",
                           example="e.g. https://freetsa.org/tsr",
                           credentials="use a TSA that needs no credentials in its URL")
        return v


class StrategySpec(UserModel):
    name: str
    """A registered strategy: prefix_continuation, instruction_recall, benign_prompts,
    teacher_forced."""
    params: dict[str, Any] = {}
    """The strategy's parameters; unknown ones are rejected by the strategy."""
    models: list[str] | None = None
    """Only these model ids (default: all)."""
    works: list[str] | None = None
    """Only these work ids (default: all)."""


class SubstantialPortion(UserModel):
    """What counts as a substantial portion of a work for a memorization finding."""

    min_words: int = Field(100, ge=1)
    """A contiguous reconstructed block of at least this many words..."""
    min_share: float = Field(0.5, gt=0, le=1)
    """...or this share of the work's words covered by reconstruction."""


class Thresholds(UserModel):
    near_exact: float = Field(0.90, gt=0.5, le=1.0)
    """Minimum normalized word-level edit similarity of a near-verbatim span."""
    min_span_words: int = Field(40, ge=5)
    """Reporting threshold: a span of at least this many words counts as evidence [Car23]."""
    substantial_portion: SubstantialPortion = SubstantialPortion()
    """Threshold of the memorization finding."""
    seed_k: int = Field(5, ge=3, le=12)
    """Seed k-gram length of the matcher and k of BMC@k."""
    legal_defaults: bool = True
    """False when the case deliberately lowers thresholds (the report says so)."""


class DecodingSpec(UserModel):
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(96, ge=1, le=8192)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=1)


class CaseFile(UserModel):
    """The whole case file."""

    case: CaseMeta
    works: list[WorkSpec] = Field(min_length=1)
    models: list[ModelSpec] = Field(default_factory=list)
    """Empty (with no strategies) for an evidence-only case: outputs captured elsewhere,
    added with ``casekit import CASE FILE``."""
    strategies: list[StrategySpec] = Field(default_factory=list)
    thresholds: Thresholds = Thresholds()
    decoding: DecodingSpec = DecodingSpec()
    """Default decoding for generation; greedy (temperature 0) unless set."""
    seed: int = Field(0, ge=0, le=2**31 - 1)
    """Seed of the plan and of sampling."""
    samples: int = Field(1, ge=1, le=1000)
    """Samples per prompt; sample 0 is greedy, the others use ``decoding.temperature``."""
    allow_no_control: bool = False
    """Run without a control work (the report states that no false-positive rate exists)."""
    anchoring: AnchoringSpec = Field(default_factory=AnchoringSpec,
                                     json_schema_extra=ADDED_LATER)
    """Anchoring of the run's ledger: ``tsa`` timestamps every checkpoint during the run."""
    reference_texts: list[str] = Field(default_factory=list, exclude_if=lambda v: not v)
    """Other texts (paths relative to the case file: .txt, .md, .epub, .docx, .pdf) that the
    chance baseline of a short work (``kind: poem | lyrics``) compares it with, besides the
    case's other works: how long a run of its words unrelated texts share by chance."""

    @field_validator("works")
    @classmethod
    def _unique_works(cls, v: list[WorkSpec]) -> list[WorkSpec]:
        _unique([w.id for w in v], "work")
        return v

    @field_validator("models")
    @classmethod
    def _unique_models(cls, v: list[ModelSpec]) -> list[ModelSpec]:
        _unique([m.id for m in v], "model")
        return v

    @model_validator(mode="after")
    def _cross_refs(self) -> CaseFile:
        work_ids = {w.id for w in self.works}
        model_ids = {m.id for m in self.models}
        if bool(self.models) != bool(self.strategies):
            have, lack = ("models", "strategies") if self.models else ("strategies", "models")
            raise _LocatedError(
                (have,), f"{have} without {lack}: add {lack} to run the case, or remove "
                f"{have} for an evidence-only case (outputs added with `casekit import`)")
        for i, s in enumerate(self.strategies):
            for mid in s.models or []:
                if mid not in model_ids:
                    raise _LocatedError(
                        ("strategies", i, "models"),
                        f"unknown model id {mid!r}; use one of {sorted(model_ids)}",
                    )
            for wid in s.works or []:
                if wid not in work_ids:
                    raise _LocatedError(
                        ("strategies", i, "works"),
                        f"unknown work id {wid!r}; use one of {sorted(work_ids)}",
                    )
        if not self.allow_no_control and not any(w.role == "control" for w in self.works):
            raise _LocatedError(
                ("works",),
                "no control work: add a work with role: control (a text the model cannot have "
                "seen), or set allow_no_control: true and accept a report without a "
                "false-positive rate",
            )
        return self


def _unique(ids: list[str], what: str) -> None:
    seen: set[str] = set()
    for i, x in enumerate(ids):
        if x in seen:
            raise _LocatedError((i, "id"),
                                f"duplicate {what} id {x!r}; give each {what} its own id")
        seen.add(x)


class ModelParamsError(CasekitError):
    """A provider's refusal of one key of a model's ``params``. ``loc`` is the key's path
    inside ``params`` (pydantic's error ``loc``), so the case error can point at its line
    without reading the message."""

    def __init__(self, problem: str, *, model_id: str | None = None,
                 loc: tuple[str | int, ...] = ()) -> None:
        self.problem = problem
        self.model_id = model_id
        self.loc = loc
        who = f"model {model_id!r}: " if model_id is not None else ""
        where = f"params.{_dotted(loc)}: " if loc else ""
        super().__init__(f"{who}{where}{problem}")


class _LocatedError(ValueError):
    """A validation error that knows which part of the document it is about."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


# --------------------------------------------------------------------------- YAML with positions



_HINTS = {
    "missing": "add it",
    "int_parsing": "write a whole number",
    "int_type": "write a whole number",
    "int_from_float": "write a whole number",
    "float_parsing": "write a number",
    "float_type": "write a number",
    "finite_number": "write a finite number",
    "string_type": "write text (quote it if YAML reads it as something else)",
    "bool_parsing": "write true or false",
    "bool_type": "write true or false",
    "date_from_datetime_parsing": "write a date as YYYY-MM-DD",
    "date_from_datetime_inexact": "write a date as YYYY-MM-DD",
    "date_parsing": "write a date as YYYY-MM-DD",
    "date_type": "write a date as YYYY-MM-DD",
    "list_type": "write a list (lines starting with '- ')",
    "dict_type": "write a mapping of `field: value` lines",
    "model_type": "write a mapping of `field: value` lines",
    "model_attributes_type": "write a mapping of `field: value` lines",
    "too_short": "add at least one entry",
    "literal_error": "write one of these",
    "enum": "write one of these",
}

#: What each pattern of the case file allows, in words (pydantic would print the regex).
_PATTERN_WORDS = {
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$": "letters, digits, _ . and - only, starting with a "
                                        "letter or digit, at most 64 characters",
    r"^[A-Z0-9_-]{1,20}$": "capital letters, digits, _ and - only, 1 to 20 characters",
    r"^(sha256:)?[0-9a-f]{64}$": "64 lowercase hexadecimal digits, optionally after sha256:",
    r"^[A-Z_][A-Z0-9_]*$": "the name of an environment variable (capital letters, digits "
                           "and _, not starting with a digit), never the key itself",
}


def _shown(value: Any) -> str:
    """A user's value as an error message shows it: short, NaN as NaN, control characters
    visible."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    text = repr(value)
    return visible(text if len(text) <= 60 else text[:57] + "...")


def constraint_message(etype: str, ctx: dict[str, Any], value: Any) -> str | None:
    """The message of a broken constraint, with the fix, or None to keep pydantic's."""
    got = f" (got {_shown(value)})"
    if etype == "greater_than":
        return f"must be greater than {ctx['gt']}{got}; write a larger number"
    if etype == "greater_than_equal":
        return f"must be at least {ctx['ge']}{got}; write {ctx['ge']} or more"
    if etype == "less_than":
        return f"must be less than {ctx['lt']}{got}; write a smaller number"
    if etype == "less_than_equal":
        return f"must be at most {ctx['le']}{got}; write {ctx['le']} or less"
    if etype == "string_pattern_mismatch":
        words = _PATTERN_WORDS.get(str(ctx.get("pattern")))
        allowed = words or f"text matching {ctx.get('pattern')}"
        return f"{_shown(value)} is not allowed here; write {allowed}"
    if etype == "string_too_short":
        return f"must not be empty{got}; write at least {ctx.get('min_length', 1)} character(s)"
    if etype == "string_too_long":
        return f"is too long{got}; write at most {ctx.get('max_length')} characters"
    if etype == "too_long":
        return f"has too many entries; keep at most {ctx.get('max_length')}"
    if etype.startswith("date_"):
        return f"is not a date{got}; write a date as YYYY-MM-DD"
    if etype in ("int_type", "float_type", "int_parsing", "float_parsing"):
        if isinstance(value, float) and not math.isfinite(value):
            return f"{_shown(value)} is not allowed here; write a finite number"
    return None


def _position(loc: tuple[str | int, ...], located: _Located, *, key: bool) -> Pos:
    if key and loc in located.key_positions:
        return located.key_positions[loc]
    probe = loc
    while probe:
        if probe in located.positions:
            return located.positions[probe]
        if probe in located.key_positions:
            return located.key_positions[probe]
        probe = probe[:-1]
    return located.positions.get((), (1, 1))


def _allowed_fields(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str] | None:
    """The field names allowed at the mapping that holds ``loc``'s last key."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part)
        if field is None:
            return None
        current = _inner_model(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        inner = _inner_model(arg)
        if inner is not None:
            return inner
    return None


def format_validation_error(
    exc: ValidationError, located: _Located, file: str, model: type[BaseModel] = CaseFile
) -> str:
    """The first error as ``file:line:col: field: problem; fix`` (one line)."""
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        etype = err["type"]
        ctx_err = err.get("ctx", {}).get("error") if err.get("ctx") else None
        if isinstance(ctx_err, _LocatedError):
            full = loc + ctx_err.loc if ctx_err.loc and isinstance(ctx_err.loc[0], int) else (
                ctx_err.loc or loc)
            line, col = _position(full, located, key=False)
            lines.append(f"{file}:{line}:{col}: {visible(_dotted(full))}: "
                         f"{visible(ctx_err.message)}")
            continue
        if etype == "extra_forbidden":
            line, col = _position(loc, located, key=True)
            allowed = _allowed_fields(model, loc)
            fix = f"remove it or correct its spelling (allowed here: {', '.join(allowed)})" if (
                allowed) else "remove it or correct its spelling"
            lines.append(f"{file}:{line}:{col}: {visible(_dotted(loc))}: unknown field; {fix}")
            continue
        line, col = _position(loc, located, key=etype == "missing")
        msg = str(err["msg"])
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        hint = _HINTS.get(etype)
        if etype == "missing":
            msg = "required field is missing"
        else:
            msg = constraint_message(etype, dict(err.get("ctx") or {}), err.get("input")) or msg
        if etype in ("int_type", "float_type", "string_type", "bool_type", "date_type",
                     "list_type", "dict_type", "model_type", "model_attributes_type",
                     "literal_error") and "(got" not in msg:
            msg += f" (got {_shown(err.get('input'))})"
        text = f"{file}:{line}:{col}: {visible(_dotted(loc))}: {visible(msg)}"
        if hint and hint not in msg and "; " not in msg:
            text += f"; {hint}"
        lines.append(text)
    return lines[0] if lines else f"{file}: invalid case file"


# --------------------------------------------------------------------------- loading


class LoadedCase(BaseModel):
    """A validated case with its source location and canonical hash."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    spec: CaseFile
    path: Path
    """Absolute path of the case file."""
    sha256: str
    """Hash of the case's canonical JSON (not of its YAML formatting)."""
    positions: dict[str, tuple[int, int]] = {}
    """``dotted.path -> (line, col)`` for later errors (e.g. a strategy's bad parameter)."""

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def model_error(self, index: int, exc: Exception) -> CaseError:
        """A provider's refusal of ``models[index]`` as a CaseError: at the ``params`` key a
        :class:`ModelParamsError` names (an unknown or invalid key, a tokenizer file), else
        at the model's entry (a missing key variable or model package)."""
        if isinstance(exc, ModelParamsError) and exc.loc:
            loc = ("models", index, "params", *exc.loc)
            return CaseError(f"{self.where(*loc)}: {_dotted(loc)}: {exc.problem}")
        return CaseError(f"{self.where('models', index)}: models[{index}]: {exc}")

    def where(self, *loc: str | int) -> str:
        """``file:line:col`` of a node, for errors found after validation."""
        key = _dotted(tuple(loc))
        while True:
            if key in self.positions:
                line, col = self.positions[key]
                return f"{self.path}:{line}:{col}"
            if "." not in key and "[" not in key:
                return f"{self.path}:1:1"
            key = re.sub(r"(\.[^.\[]+|\[\d+\])$", "", key)


def load_case(path: str | Path) -> LoadedCase:
    """Read and validate a case file; raise CaseError with ``file:line:col`` on any problem."""
    p = Path(path)
    file = visible(str(path))
    try:
        raw = read_regular_file(p, CASE_MAX_BYTES,
                                lambda problem: CaseError(f"{file}: the case file {problem}"))
    except FileNotFoundError:
        raise CaseError(f"{file}: no such case file; check the path") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise CaseError(f"{file}:{line}:1: the case file is not UTF-8; save it as UTF-8") from None
    data, located = parse_yaml(text, file)
    if not isinstance(data, dict):
        raise CaseError(f"{file}:1:1: a case file is a mapping with case:, works:, models: and "
                        "strategies:")
    try:
        spec = CaseFile.model_validate(data)
    except ValidationError as exc:
        raise CaseError(format_validation_error(exc, located, file)) from None
    canonical = case_hash_form(spec)
    positions = {_dotted(k): v for k, v in located.positions.items()}
    for k, v in located.key_positions.items():
        positions.setdefault(_dotted(k), v)
    return LoadedCase(spec=spec, path=p.resolve(), sha256=sha256_json(canonical),
                      positions=positions)


def json_schema() -> dict[str, Any]:
    """JSON Schema of the case file, for editors."""
    schema = CaseFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "casekit case file"
    return schema
