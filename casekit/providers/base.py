"""The provider seam: every model behind one interface with two capabilities.

* ``generate(attempt)``: send a chat or completion attempt and return the text.
* ``score(attempt)``: teacher-forced log-probs of ``attempt.continuation`` after
  ``attempt.prompt`` (the basis of probabilistic extraction, p_z).

Providers classify their own failures with ``should_retry`` so that the runner can retry
transient errors and honour rate limits without knowing any SDK.
"""

from __future__ import annotations

import importlib.metadata
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from casekit.case import ModelSpec
from casekit.errors import CasekitError
from casekit.providers.params import ProviderParams, parse_params
from casekit.records import AttemptError, ModelIdentity, PlannedAttempt, ProviderResult
from casekit.tokenizer import Tokenizer

log = logging.getLogger(__name__)


class RetryDecision(BaseModel):
    """What the runner should do after a failed try."""

    model_config = ConfigDict(frozen=True)

    action: Literal["no", "transient", "rate_limit"]
    after: float | None = None
    """Seconds to wait before the next try, when the server said (Retry-After)."""


class CapabilityError(CasekitError):
    """The provider cannot do what the attempt asks (e.g. score on a chat-only API)."""


@dataclass(frozen=True)
class BatchHandle:
    """A submitted batch."""

    batch_id: str
    custom_ids: list[str]
    """custom_id of each request, in submission order (= the attempt ids)."""
    request_sha256: str
    """:func:`requests_sha256` of the request entries submitted."""
    status: str
    """The provider's status word at submission."""
    info: dict[str, Any] = field(default_factory=dict)
    """Provider specifics worth recording (endpoint, input file id and hash, request id,
    server Date), keys removed."""
    raw: dict[str, Any] = field(default_factory=dict)
    """The provider's batch object as returned, keys removed."""


@dataclass(frozen=True)
class BatchStatus:
    """A batch's state at one poll."""

    batch_id: str
    status: str
    """The provider's own word (OpenAI: validating, in_progress, finalizing, completed, failed,
    expired, cancelling, cancelled; Anthropic: in_progress, canceling, ended)."""
    done: bool
    """Processing has ended: results can be collected."""
    counts: dict[str, int] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    """The provider's batch object, keys removed."""


class Provider(ABC):
    """Base class of providers. One instance serves one ModelSpec of a case."""

    name: ClassVar[str]
    """Registry name used in case files (``provider: local``)."""
    default_interface: ClassVar[Literal["chat", "completion"]] = "chat"
    can_score: ClassVar[bool] = False
    max_connections: int = 4
    """Attempts in flight at once against this model."""
    exclusive_group: ClassVar[str | None] = None
    """Models whose providers share a group run one after the other (e.g. embedded models
    sharing the CPU); others run at the same time."""

    Params: ClassVar[type[ProviderParams]] = ProviderParams
    """The provider's ``params`` (frozen, unknown keys rejected); the default takes none."""

    def __init__(self, spec: ModelSpec, base_dir: Path) -> None:
        self.spec = spec
        self.base_dir = base_dir
        self.params: ProviderParams = parse_params(self.Params, spec, self.name)

    @classmethod
    def default_interface_for(cls, spec: ModelSpec) -> Literal["chat", "completion"]:
        """The interface used when the case does not name one (may depend on the model)."""
        return cls.default_interface

    @property
    def interface(self) -> Literal["chat", "completion"]:
        return self.spec.interface or self.default_interface_for(self.spec)

    @classmethod
    def plan_tokenizer(cls, spec: ModelSpec, base_dir: Path) -> Tokenizer | None:
        """The model's tokenizer for planning (strategies with ``needs_tokenizer``, e.g. the
        p_z census), or None when the provider cannot give one without calling the model."""
        return None

    @abstractmethod
    def identity(self) -> ModelIdentity:
        """Identify the model (file hash, endpoint, key fingerprint) for the run manifest."""

    @abstractmethod
    async def generate(self, attempt: PlannedAttempt) -> ProviderResult:
        """Run a chat or completion attempt."""

    async def score(self, attempt: PlannedAttempt) -> ProviderResult:
        """Teacher-forced log-probs of ``attempt.continuation`` after ``attempt.prompt``."""
        raise CapabilityError(
            f"provider {self.name!r} cannot score continuations; use provider: local or a "
            "server that returns prompt log-probs"
        )

    async def run(self, attempt: PlannedAttempt) -> ProviderResult:
        if attempt.mode == "score":
            return await self.score(attempt)
        return await self.generate(attempt)

    def should_retry(self, exc: BaseException) -> RetryDecision:
        """Classify a failure. The default retries nothing."""
        return RetryDecision(action="no")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (model memory, HTTP clients)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release what is bound to the running event loop (HTTP sessions); the runner awaits
        it before the loop ends, then calls :meth:`close`."""

    # -- batch APIs (optional; see casekit.run.batch) --------------------------------------------
    supports_batch: ClassVar[bool] = False
    """Whether the provider can run attempts through an asynchronous batch API."""
    batch_max_requests: ClassVar[int] = 0
    """Most requests one batch may hold."""
    batch_max_bytes: ClassVar[int] = 0
    """Most bytes of serialized requests one batch may hold."""

    def _no_batch(self) -> CapabilityError:
        return CapabilityError(
            f"provider {self.name!r} has no batch API; run this model without --batch"
        )

    def batch_requests(self, attempts: Sequence[PlannedAttempt]) -> list[dict[str, Any]]:
        """The batch entries for ``attempts`` exactly as they are submitted (custom_id = the
        attempt id; the body built by the same code as :meth:`generate`). No network."""
        raise self._no_batch()

    async def submit_batch(self, attempts: Sequence[PlannedAttempt]) -> BatchHandle:
        """Submit one batch (at most ``batch_max_requests`` attempts of one mode)."""
        raise self._no_batch()

    async def poll_batch(self, batch_id: str) -> BatchStatus:
        """The batch's current status."""
        raise self._no_batch()

    async def collect_batch(self, batch_id: str, attempts: Sequence[PlannedAttempt] = (),
                            ) -> dict[str, ProviderResult | AttemptError]:
        """Results of an ended batch by custom_id. ``attempts`` (those of the batch) let the
        provider record the request body of each result, as :meth:`generate` does."""
        raise self._no_batch()

    async def find_batch(self, request_sha256: str, submitted_after: str) -> str | None:
        """The id of a batch submitted after ``submitted_after`` (UTC ISO-8601) whose requests
        hash to ``request_sha256``, for a submission whose id a crash kept out of the ledger;
        None when the provider cannot tell (the default)."""
        return None


_BUILTIN: dict[str, str] = {
    "local": "casekit.providers.local:LocalProvider",
    "openai": "casekit.providers.openai:OpenAIProvider",
    "openai-compatible": "casekit.providers.openai_compatible:OpenAICompatibleProvider",
    "anthropic": "casekit.providers.anthropic:AnthropicProvider",
}


_REGISTERED: dict[str, type[Provider]] = {}


def register_provider(cls: type[Provider]) -> type[Provider]:
    """Register a provider class in-process (tests, embedding applications)."""
    _REGISTERED[cls.name] = cls
    return cls


def provider_names() -> list[str]:
    names = set(_BUILTIN) | set(_REGISTERED)
    for ep in importlib.metadata.entry_points(group="casekit.providers"):
        names.add(ep.name)
    return sorted(names)


def provider_class(name: str) -> type[Provider]:
    """Find a provider by name: built-ins first, then the ``casekit.providers`` entry points."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    target = _BUILTIN.get(name)
    if target is not None:
        module_name, _, attr = target.partition(":")
        module = importlib.import_module(module_name)
        cls = getattr(module, attr)
    else:
        eps = [ep for ep in importlib.metadata.entry_points(group="casekit.providers")
               if ep.name == name]
        if not eps:
            raise CasekitError(
                f"unknown provider {name!r}; use one of {provider_names()} or install the "
                "plugin that provides it"
            )
        cls = eps[0].load()
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise CasekitError(f"provider {name!r} does not subclass casekit.providers.base.Provider")
    return cls
