"""``provider: openai-compatible``: any server speaking OpenAI's protocol (llama.cpp, vLLM,
LM Studio, Ollama...), and the only API provider that can score.

Why scoring needs care here (llama-cpp-python's echo log-probs shift by one token for models
without BOS; vLLM's prompt_logprobs do not) and what each method records is in
docs/providers.md; this module checks alignment once per server, cross-checks the planning
tokenizer against the server's, and builds TokenScores.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, cast

from pydantic import Field, WithJsonSchema

from casekit.case import ModelParamsError, ModelSpec, check_base_url
from casekit.errors import CasekitError
from casekit.provenance import strip_credentials
from casekit.providers.api_common import body_sha256, decode_body
from casekit.providers.base import CapabilityError
from casekit.providers.keys import redact_result
from casekit.providers.openai import Api, OpenAIParams, OpenAIProvider
from casekit.providers.params import (
    ProviderParams,
    check,
    one_of,
    parse_params,
    whole_between,
)
from casekit.providers.tokenizer_file import CaseTokenizer, load_case_tokenizer
from casekit.records import PlannedAttempt, ProviderResult, TokenScore

log = logging.getLogger(__name__)

SCORE_METHOD = "server echo logprobs"
PROMPT_LOGPROBS_METHOD = "server prompt_logprobs (vLLM)"
DEFAULT_PROMPT_LOGPROBS = 20
"""vLLM's default ``--max-logprobs``; 40 or more gives the exact top-40 preset."""


NEUTRAL_SAMPLING: dict[str, float] = {
    "repeat_penalty": 1.0,       # llama.cpp / llama-cpp-python (its server's default is 1.1)
    "repetition_penalty": 1.0,   # vLLM (else the model's generation_config.json may set it)
    "frequency_penalty": 0.0,
    "presence_penalty": 0.0,
    "min_p": 0.0,                # llama.cpp's default is 0.05
}
"""Sampling modifiers a server applies unless told otherwise, sent neutral with every
generation request (``params.server_defaults: neutral``) so that the decoding is the one the
record states: a llama-cpp-python server applies repeat_penalty 1.1 even to greedy requests
(2 of 4 greedy outputs differed from the embedded provider's on the same model file without
it). Also sent: ``top_p`` 1.0 and ``top_k`` 0 (all tokens, as llama.cpp reads k <= 0)
when the decoding sets neither (llama-cpp-python defaults to 0.95 and 40)."""


class OpenAICompatibleParams(OpenAIParams):
    """``provider: openai-compatible`` params: OpenAI's, plus the server's extras and scoring."""

    extra_body: Annotated[
        dict[str, Any],
        check(lambda v: isinstance(v, dict) and all(isinstance(k, str) for k in v),
              "a mapping of field: value"),
    ] = {}
    """Fields merged into every request body (e.g. ``{repeat_penalty: 1.0}``)."""
    server_defaults: Annotated[Literal["neutral", "server"],
                               one_of(("neutral", "server"), "neutral or server")] = "neutral"
    """``neutral``: send the sampling modifiers a server would otherwise apply with neutral
    values (NEUTRAL_SAMPLING; top_p 1.0 and top_k 0 when the decoding sets neither), so
    the recorded request states the whole decoding; ``server``: send only the case's decoding
    (for a server that rejects those fields; its own defaults then apply, unrecorded)."""
    score_alignment: Annotated[Literal["verify", "trust"],
                               one_of(("verify", "trust"), "verify or trust")] = "verify"
    """``verify``: check once that the server's echo log-probs are not shifted; ``trust``:
    skip the check (recorded in every result)."""
    score_method: Annotated[
        Literal["echo", "prompt_logprobs"],
        one_of(("echo", "prompt_logprobs"), "echo (llama.cpp and others: Completions with "
               "echo) or prompt_logprobs (vLLM)"),
    ] = "echo"
    """How continuations are scored: Completions with echo, or vLLM's prompt_logprobs."""
    prompt_logprobs: Annotated[
        int, Field(ge=1, le=1000),
        whole_between(1, 1000, "alternatives per prompt token")] = DEFAULT_PROMPT_LOGPROBS
    """k of vLLM's prompt_logprobs; 40 or more makes the top-40 p_z preset exact."""
    tokenizer: Annotated[
        str | None,
        check(lambda v: v is None or (isinstance(v, str) and bool(v.strip())),
              "the path of the served model's tokenizer.json or .gguf, relative to the case "
              "file"),
    ] = None
    """The served model's tokenizer.json or .gguf, relative to the case file (the p_z
    census plans its windows with it); null: none."""
    tokenizer_sha256: Annotated[
        str | None,
        check(lambda v: v is None or (isinstance(v, str) and re.fullmatch(
            r"(sha256:)?[0-9a-f]{64}", v) is not None),
            "64 lower-case hex digits, optionally after sha256:"),
        WithJsonSchema({"type": "string", "pattern": "^(sha256:)?[0-9a-f]{64}$"}),
    ] = None
    """Pins ``tokenizer`` to this SHA-256."""


_ALIGN_PROBES = ("The capital of France is", "One, two, three, four, five,",
                 "Once upon a time, there was a")


def _common_prefix(a: Sequence[Any], b: Sequence[Any]) -> int:
    """How many leading items ``a`` and ``b`` share: the index of their first difference."""
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 0.01 + 0.01 * abs(b)


class OpenAICompatibleProvider(OpenAIProvider):
    """A server speaking OpenAI's protocol at ``base_url`` (llama.cpp, vLLM, LM Studio...)."""

    name: ClassVar[str] = "openai-compatible"
    Params: ClassVar[type[ProviderParams]] = OpenAICompatibleParams
    params: OpenAICompatibleParams
    default_interface: ClassVar[Literal["chat", "completion"]] = "chat"
    can_score: ClassVar[bool] = True
    """Whether a server echoes aligned prompt log-probs is only known at run time: score
    raises CapabilityError (with the fix) where it does not."""
    default_key_env: ClassVar[str | None] = None
    key_required: ClassVar[bool] = False
    supports_batch: ClassVar[bool] = False
    droppable: ClassVar[tuple[str, ...]] = (*OpenAIProvider.droppable, *NEUTRAL_SAMPLING)
    """Compatible servers rarely implement the Batch API (vLLM batches offline, by CLI)."""
    batch_max_requests: ClassVar[int] = 0
    batch_max_bytes: ClassVar[int] = 0

    def __init__(self, spec: ModelSpec, base_dir: Path, *, http_client: Any = None) -> None:
        super().__init__(spec, base_dir, http_client=http_client)
        p = self.params
        self.extra_body = dict(p.extra_body)
        self.score_alignment: str = p.score_alignment
        self.score_method: str = p.score_method
        self.prompt_logprobs_k: int = p.prompt_logprobs
        self.case_tokenizer: CaseTokenizer | None = self._case_tokenizer(spec, base_dir, p)
        self._alignment: dict[str, Any] | None = None
        self._alignment_error: CapabilityError | None = None
        self._align_lock: asyncio.Lock | None = None
        self._align_loop: asyncio.AbstractEventLoop | None = None

    @staticmethod
    def _case_tokenizer(spec: ModelSpec, base_dir: Path,
                        params: OpenAICompatibleParams) -> CaseTokenizer | None:
        """The tokenizer file of ``params.tokenizer`` (pinned by ``params.tokenizer_sha256``),
        or None when the case gives none."""
        if params.tokenizer is None:
            if "tokenizer_sha256" in params.model_fields_set:
                raise ModelParamsError("pins a file, but params.tokenizer names none; add "
                                       "params.tokenizer (the served model's tokenizer.json "
                                       "or .gguf)", model_id=spec.id, loc=("tokenizer_sha256",))
            return None
        return load_case_tokenizer(params.tokenizer, params.tokenizer_sha256, base_dir, spec.id,
                                   spec.model)

    @classmethod
    def plan_tokenizer(cls, spec: ModelSpec, base_dir: Path) -> CaseTokenizer | None:
        """``params.tokenizer``: the served model's tokenizer.json or .gguf, for the census's
        windows (None without it: a server's tokenizer is only reachable at run time)."""
        params = cast(OpenAICompatibleParams, parse_params(cls.Params, spec, cls.name))
        return cls._case_tokenizer(spec, base_dir, params)

    def _base_url(self) -> str:
        if not self.spec.base_url:
            raise CasekitError(
                f"model {self.spec.id!r}: provider openai-compatible needs base_url (the server's "
                "OpenAI-style root, e.g. http://127.0.0.1:8000/v1)"
            )
        try:  # validated with the case; checked again for specs built in code
            check_base_url(self.spec.base_url)
        except ValueError as exc:
            raise CasekitError(f"model {self.spec.id!r}: base_url {exc}") from None
        return self.spec.base_url.rstrip("/")

    def _extra_body(self) -> dict[str, Any]:
        return self.extra_body

    def _unsupported_message(self, param: str, exc: BaseException) -> str:
        if param in NEUTRAL_SAMPLING:
            return (f"server {self.base_url!r} rejected {param!r}, which casekit sends neutral "
                    f"so that the record states the whole decoding ({exc}); set "
                    "params.server_defaults: server (its own defaults then apply, unrecorded)")
        return super()._unsupported_message(param, exc)

    def _request(self, attempt: PlannedAttempt) -> tuple[Api, dict[str, Any], dict[str, Any],
                                                        list[str]]:
        """The OpenAI request, with the server's own sampling modifiers sent neutral
        (``params.server_defaults``); ``extra_body`` still wins over them."""
        api, body, not_sent, notes = super()._request(attempt)
        if self.params.server_defaults == "neutral":
            neutral: dict[str, Any] = dict(NEUTRAL_SAMPLING)
            if "top_p" not in body:
                neutral["top_p"] = 1.0
            if "top_k" not in body:
                neutral["top_k"] = 0
            body = {**body, **{k: v for k, v in neutral.items()
                               if k not in body and k not in self.extra_body}}
        return api, body, not_sent, notes

    def _top_k(self, body: dict[str, Any], top_k: int | None) -> dict[str, Any]:
        if top_k is not None:
            body["top_k"] = int(top_k)  # llama.cpp, vLLM and others accept it (extra_body)
        return {}

    def _identity_extra(self) -> dict[str, Any]:
        if self.score_method == "prompt_logprobs":
            out: dict[str, Any] = {"score_method": PROMPT_LOGPROBS_METHOD,
                                   "prompt_logprobs": self.prompt_logprobs_k}
        else:
            out = {"score_method": SCORE_METHOD, "score_alignment": self.score_alignment}
        tok = self.case_tokenizer
        if tok is not None:
            info = tok.info
            out.update({
                "tokenizer": info.path, "tokenizer_format": info.format,
                "tokenizer_family": info.family, "tokenizer_sha256": info.sha256,
                "tokenizer_bytes": info.bytes, "tokenizer_prepends_space": info.prepends_space,
                "tokenizer_check": ("every scored text's ids compared with the server's "
                                    "/tokenize" if self.score_method == "prompt_logprobs" else
                                    "every scored text's echoed token texts compared")})
        return out

    # -- params.tokenizer cross-check ------------------------------------------------------

    def _tokenizer_mismatch(self, what: str) -> CapabilityError:
        assert self.case_tokenizer is not None
        info = self.case_tokenizer.info
        return CapabilityError(
            f"params.tokenizer does not tokenize like the server: {what}; the census windows "
            f"were planned with {info.path} ({info.family}, {info.sha256}), so this window is "
            "not scored; give the served model's tokenizer.json (or .gguf) as params.tokenizer")

    def _tokenizer_match(self, compared: str, server_special_prefix: list[Any],
                         n_tokens: int) -> dict[str, Any]:
        """What a passed cross-check records (``raw_response.tokenizer_check``)."""
        assert self.case_tokenizer is not None
        return {"status": "match", "compared": compared,
                "tokenizer_sha256": self.case_tokenizer.info.sha256,
                "server_special_prefix": server_special_prefix, "n_tokens": n_tokens}

    def _check_tokenizer_ids(self, text: str, server_ids: list[int]) -> dict[str, Any]:
        """Compare the server's ``/tokenize`` ids of ``text`` (after at most two leading special
        ids, its BOS) with the case tokenizer's; raise CapabilityError when they differ."""
        tok = self.case_tokenizer
        assert tok is not None
        mine = tok.prompt_ids(text)
        lead = 0
        while lead < min(2, len(server_ids)) and server_ids[lead] in tok.special_ids \
                and len(server_ids) - lead > len(mine):
            lead += 1
        theirs = server_ids[lead:]
        if theirs != mine:
            k = _common_prefix(theirs, mine)
            near = b"".join(tok.piece(i) for i in mine[max(0, k - 3):k + 3])
            raise self._tokenizer_mismatch(
                f"the server gives {len(theirs)} tokens after {lead} special, params.tokenizer "
                f"{len(mine)}; first difference at token {k}: server ids {theirs[k:k + 5]}, "
                f"params.tokenizer ids {mine[k:k + 5]} (near {near.decode('utf-8', 'replace')!r})")
        return self._tokenizer_match("server /tokenize ids", server_ids[:lead], len(mine))

    def _check_tokenizer_echo(self, text: str, echo: list[dict[str, Any]]) -> dict[str, Any]:
        """Compare the echoed token texts of ``text`` with the case tokenizer's pieces (as the
        server shows them: UTF-8 decoded per token, broken characters dropped, as
        llama-cpp-python does). Echo gives token texts, not ids, so two tokens with the same
        text would pass; the token count and every boundary are still checked. Leading empty
        or special tokens (a BOS) and the one generated token after the text are skipped."""
        tok = self.case_tokenizer
        assert tok is not None
        mine = tok.prompt_ids(text)
        want = [tok.piece(i).decode("utf-8", "ignore") for i in mine]
        got = [str(t["token"]) for t in echo]
        specials = {tok.piece(i).decode("utf-8", "ignore") for i in tok.special_ids}
        for lead in range(0, 3):
            if lead > len(got) or (lead and got[lead - 1] not in specials | {""}):
                break
            extra = len(got) - lead - len(mine)
            if extra in (0, 1) and got[lead:lead + len(mine)] == want:
                return self._tokenizer_match("echoed token texts", got[:lead], len(mine))
        k = _common_prefix(got, want)
        raise self._tokenizer_mismatch(
            f"the server echoes {len(got)} tokens (the text's and one generated), "
            f"params.tokenizer gives {len(mine)}; first difference at token {k}: server "
            f"{got[k:k + 4]}, params.tokenizer {want[k:k + 4]}")

    # ----------------------------------------------------------------- score

    async def score(self, attempt: PlannedAttempt) -> ProviderResult:
        if not attempt.prompt or not attempt.continuation:
            raise CasekitError(
                f"score attempt {attempt.id} needs a non-empty prompt and continuation (a "
                "server returns no log-prob for the first token of a text)"
            )
        if self.score_method == "prompt_logprobs":
            return await self._score_prompt_logprobs(attempt)
        alignment = await self.check_alignment()
        prompt, continuation = attempt.prompt, attempt.continuation
        raw, data, sent, dropped = await self._score_send(self._echo_body(prompt + continuation))
        echo = self._echo_tokens(data, prompt + continuation)
        check = (self._check_tokenizer_echo(prompt + continuation, echo)
                 if self.case_tokenizer is not None else None)
        scores, boundary = self._continuation_scores(echo, len(prompt), len(prompt + continuation))
        http = raw.http_response
        n = len(scores)
        n_top = sum(s.is_top for s in scores)
        request = self._request_record("completions", sent, {}, [], dropped)
        request.update({"score_method": SCORE_METHOD, "prompt_chars": len(prompt),
                        "continuation_chars": len(continuation)})
        response = self._response_record(http, data)
        if check is not None:
            response["tokenizer_check"] = check
        response.update({
            "alignment_check": alignment,
            "boundary": boundary,
            "n_continuation_tokens": n,
            "sum_logprob": float(sum(s.logprob for s in scores)),
            "top1_share": n_top / n,
            "n_top1": n_top,
        })
        return self._score_result(data, http, request, response, scores)

    def _score_result(self, data: dict[str, Any], http: Any, request: dict[str, Any],
                      response: dict[str, Any], scores: list[TokenScore]) -> ProviderResult:
        usage = data.get("usage")
        return redact_result(ProviderResult(
            returned_model=data.get("model"),
            request_id=http.headers.get("x-request-id"),
            system_fingerprint=data.get("system_fingerprint"),
            server_date=http.headers.get("date"),
            usage=usage if isinstance(usage, dict) else {},
            raw_request=request,
            raw_response=response,
            token_scores=scores,
        ), self.key.secrets())

    # -- vLLM prompt_logprobs ------------------------------------------------------------------

    def _server_root(self) -> str:
        """The server's root (``/tokenize`` lives there, not under ``/v1``)."""
        root = self.base_url
        return root[:-3] if root.endswith("/v1") else root

    async def _tokenize(self, text: str) -> tuple[list[int], dict[str, Any]]:
        """Token ids of ``text`` from the server's own tokenizer (vLLM ``POST /tokenize``,
        special tokens added as for a prompt). Returns (ids, what to record)."""
        url = self._server_root() + "/tokenize"
        http = await self._http_send(url, {"model": self.spec.model, "prompt": text,
                                           "add_special_tokens": True})
        if http.status_code in (404, 405):
            raise CapabilityError(
                f"{strip_credentials(url)} answered HTTP {http.status_code}: the server has no "
                "/tokenize endpoint, so prompt log-probs cannot be matched to the continuation; "
                "score_method: prompt_logprobs needs vLLM's OpenAI server (use score_method: echo "
                "for llama.cpp servers, or provider: local)")
        self._raise_for_status(http)
        data = decode_body(http.content, http.status_code, url)
        ids = data.get("tokens")
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            raise CapabilityError(f"{strip_credentials(url)} returned no token ids ('tokens'); "
                                  "score_method: prompt_logprobs needs vLLM's /tokenize")
        return ids, {"url": strip_credentials(url), "status": http.status_code,
                     "count": len(ids), "body_sha256": body_sha256(http.content),
                     "date": http.headers.get("date")}

    async def _score_prompt_logprobs(self, attempt: PlannedAttempt) -> ProviderResult:
        """Teacher forcing from vLLM's ``prompt_logprobs``: for every prompt token after the
        first, the log-prob of the actual token, its rank among all tokens, and the top
        ``k`` alternatives, keyed by token id. The continuation's tokens are found from the
        server's own tokenizer (``/tokenize`` of the prompt and of prompt + continuation).
        rank and the greedy preset are exact; the top-40 preset is exact when ``k >= 40``
        and left unknown otherwise (never guessed)."""
        prompt, continuation = attempt.prompt or "", attempt.continuation or ""
        ids_prefix, tok1 = await self._tokenize(prompt)
        ids_full, tok2 = await self._tokenize(prompt + continuation)
        # Before anything is scored: the windows were planned with params.tokenizer, so the
        # server must tokenize the text the same way, or it would score other windows.
        check = (self._check_tokenizer_ids(prompt + continuation, ids_full)
                 if self.case_tokenizer is not None else None)
        # The continuation starts where the two tokenizations part: at the prompt's end when
        # the prompt's tokens are a prefix of the whole's ("clean"), earlier when a token
        # spans the boundary ("merged": that token is scored as part of the continuation).
        start = _common_prefix(ids_prefix, ids_full)
        boundary = "clean" if start == len(ids_prefix) else "merged"
        if start == 0 or start >= len(ids_full):
            raise CapabilityError(f"attempt {attempt.id}: the server's tokenizer leaves no "
                                  "continuation token after the prompt's first token; nothing "
                                  "to score")
        body = {"model": self.spec.model, "prompt": prompt + continuation, "max_tokens": 1,
                "temperature": 0.0, "prompt_logprobs": self.prompt_logprobs_k}
        raw, data, sent, dropped = await self._score_send(body)
        try:
            plp = data["choices"][0]["prompt_logprobs"]
            if not isinstance(plp, list):
                raise TypeError("prompt_logprobs is not a list")
        except (KeyError, IndexError, TypeError) as exc:
            raise CapabilityError(
                f"{self.base_url} returned no prompt_logprobs ({type(exc).__name__}: {exc}); "
                "score_method: prompt_logprobs needs vLLM") from None
        if len(plp) != len(ids_full):
            raise CapabilityError(
                f"{self.base_url}: {len(plp)} prompt log-prob entries for {len(ids_full)} "
                "tokens from /tokenize; they cannot be matched, so nothing is recorded")
        scores = [self._prompt_token_score(plp[i], ids_full[i], i)
                  for i in range(start, len(ids_full))]
        http = raw.http_response
        n_top = sum(sc.is_top for sc in scores)
        request = self._request_record("completions", sent, {}, [], dropped)
        request.update({"score_method": PROMPT_LOGPROBS_METHOD, "prompt_chars": len(prompt),
                        "continuation_chars": len(continuation),
                        "tokenize": [tok1, tok2]})
        response = self._response_record(http, data)
        if check is not None:
            response["tokenizer_check"] = check
        response.update({"boundary": boundary, "prompt_tokens": len(ids_prefix),
                         "n_continuation_tokens": len(scores),
                         "continuation_token_ids": ids_full[start:],
                         "sum_logprob": float(sum(sc.logprob for sc in scores)),
                         "top1_share": n_top / len(scores), "n_top1": n_top,
                         "top40_exact": self.prompt_logprobs_k >= 40})
        return self._score_result(data, http, request, response, scores)

    def _prompt_token_score(self, entry: Any, token_id: int, position: int) -> TokenScore:
        """One prompt token's TokenScore from a vLLM entry ``{id: {logprob, rank,
        decoded_token}}`` holding the actual token and the top-k (vLLM ranks from 1)."""
        if not isinstance(entry, dict) or str(token_id) not in entry:
            raise CapabilityError(
                f"{self.base_url}: no prompt log-prob for token id {token_id} at position "
                f"{position}; the server's log-probs do not match its /tokenize output")
        rows: list[tuple[int, float, int | None, str]] = []
        for key, v in entry.items():
            if not isinstance(v, dict) or not isinstance(v.get("logprob"), (int, float)):
                raise CapabilityError(f"{self.base_url}: malformed prompt log-prob entry at "
                                      f"position {position}: {json.dumps(entry)[:200]}")
            rank = v.get("rank")
            rows.append((int(key), float(v["logprob"]), rank if isinstance(rank, int) else None,
                         str(v.get("decoded_token") or "")))
        actual = next(r for r in rows if r[0] == token_id)
        if actual[2] is None:
            raise CapabilityError(f"{self.base_url}: the prompt log-probs carry no rank; "
                                  "score_method: prompt_logprobs needs a vLLM that reports it")
        rank0 = actual[2] - 1
        top = sorted((r for r in rows if r[2] is not None and r[2] <= self.prompt_logprobs_k),
                     key=lambda r: (r[2], r[0]))
        best = top[0] if top else actual
        lse = None
        if self.prompt_logprobs_k >= 40 and len(top) >= min(40, self.prompt_logprobs_k):
            vals = [r[1] for r in top[:40]]
            m = max(vals)
            lse = m + math.log(sum(math.exp(v - m) for v in vals))
        return TokenScore(token=actual[3], token_id=token_id, logprob=actual[1],
                          top_token_id=best[0], top_logprob=best[1], is_top=rank0 == 0,
                          rank=rank0, top40_logsumexp=lse)

    def _echo_body(self, text: str) -> dict[str, Any]:
        return {"model": self.spec.model, "prompt": text, "echo": True, "logprobs": 1,
                "max_tokens": 1, "temperature": 0.0}

    async def echo_logprobs(self, text: str) -> list[dict[str, Any]]:
        """The server's echoed tokens of ``text`` as sent (no alignment check): ``token``,
        ``start``, ``end`` (character offsets), ``logprob``, ``top`` (token -> log-prob)."""
        _, data, _, _ = await self._score_send(self._echo_body(text))
        return self._echo_tokens(data, text)

    async def _score_send(self, body: dict[str, Any]) -> tuple[
            Any, dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
        """Send a scoring request: no parameter is ever dropped, and a refusal of the request
        (HTTP 400/422: echo or log-probs unsupported) is a CapabilityError."""
        openai = self._sdk()
        try:
            return await self._send("completions", body, may_drop=False)
        except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
            raise CapabilityError(
                f"{strip_credentials(self.base_url)} refused a scoring request (Completions "
                f"with echo and logprobs): {exc}; use provider: local for teacher-forced "
                "strategies"
            ) from exc

    def _echo_tokens(self, data: dict[str, Any], text: str) -> list[dict[str, Any]]:
        try:
            lp = data["choices"][0]["logprobs"]
            tokens = list(lp["tokens"])
            values = list(lp["token_logprobs"])
            tops = list(lp.get("top_logprobs") or [None] * len(tokens))
        except (KeyError, IndexError, TypeError) as exc:
            raise CapabilityError(
                f"{self.base_url} returned no echo log-probs ({type(exc).__name__}: {exc}); the "
                "server cannot score: use provider: local for teacher-forced strategies"
            ) from None
        spans = _token_spans(tokens, lp.get("text_offset"), text)
        if spans is None:
            raise CapabilityError(
                f"{self.base_url}: the echoed tokens do not spell the text sent, so they cannot "
                "be aligned with the continuation; use provider: local to score"
            )
        out = []
        for i, tok in enumerate(tokens):
            top = tops[i] if i < len(tops) else None
            if isinstance(top, list):  # some servers: a list of {token: logprob}
                merged: dict[str, float] = {}
                for entry in top:
                    if isinstance(entry, dict):
                        merged.update(entry)
                top = merged
            out.append({"token": tok, "start": spans[i][0], "end": spans[i][1],
                        "logprob": values[i] if i < len(values) else None,
                        "top": top if isinstance(top, dict) else None})
        return out

    def _continuation_scores(self, echo: list[dict[str, Any]], start: int,
                             end: int) -> tuple[list[TokenScore], str]:
        cont = [t for t in echo if t["end"] > start and t["start"] < end]
        if not cont:
            raise CapabilityError(f"{self.base_url}: no echoed token covers the continuation")
        boundary = "clean" if cont[0]["start"] == start else "merged"
        scores = []
        for t in cont:
            if t["logprob"] is None or not t["top"]:
                raise CapabilityError(
                    f"{self.base_url}: no log-prob for the continuation token {t['token']!r}; "
                    "the server cannot score this text"
                )
            top_token, top_lp = max(t["top"].items(), key=lambda kv: kv[1])
            lp = float(t["logprob"])
            scores.append(TokenScore(
                token=t["token"], token_id=-1, logprob=lp, top_token_id=-1,
                top_logprob=float(top_lp),
                is_top=top_token == t["token"] or lp >= float(top_lp) - 1e-9,
            ))
        return scores, boundary

    async def check_alignment(self) -> dict[str, Any]:
        """Check once per provider that the server's echo log-probs are aligned (see
        docs/providers.md). Returns the evidence; raises CapabilityError for a shifted server."""
        if self._alignment_error is not None:
            raise self._alignment_error
        if self._alignment is not None:
            return self._alignment
        loop = asyncio.get_running_loop()
        if self._align_lock is None or self._align_loop is not loop:
            self._align_lock, self._align_loop = asyncio.Lock(), loop
        async with self._align_lock:
            if self._alignment_error is not None:
                raise self._alignment_error
            if self._alignment is not None:
                return self._alignment
            if self.score_alignment == "trust":
                self._alignment = {"status": "trusted", "method": "params.score_alignment: "
                                   "trust (not checked)"}
                return self._alignment
            probes = []
            for probe in _ALIGN_PROBES:
                result = await self._probe(probe)
                probes.append(result)
                if result["verdict"] == "standard":
                    self._alignment = {"status": "verified", "probes": probes}
                    return self._alignment
                if result["verdict"] == "shifted":
                    self._alignment_error = CapabilityError(
                        f"{self.base_url} returns echo log-probs shifted by one token (each "
                        "prompt token gets the log-prob it has at the next position; the known "
                        "llama-cpp-python bug for models without a BOS token, issue #1983), so "
                        "its scores would be wrong and none are recorded. Score with provider: "
                        "local (same GGUF), or a server whose echo log-probs are aligned. "
                        f"Evidence: {json.dumps(result)}"
                    )
                    raise self._alignment_error
            self._alignment_error = CapabilityError(
                f"{self.base_url}: could not verify that the server's echo log-probs are aligned "
                f"with the tokens (probes: {json.dumps(probes)[:1500]}); score with provider: "
                "local, or set params.score_alignment: trust if you have checked the server"
            )
            raise self._alignment_error

    async def _probe(self, probe: str) -> dict[str, Any]:
        """Greedy-generate one token after ``probe`` (its log-prob is never shifted), then echo
        ``probe`` + that token and compare."""
        gen = {"model": self.spec.model, "prompt": probe, "max_tokens": 1, "temperature": 0.0,
               "logprobs": 1}
        raw1, data1, _, _ = await self._score_send(gen)
        result: dict[str, Any] = {"probe": probe,
                                  "generate_request_id": raw1.http_response.headers.get(
                                      "x-request-id")}
        try:
            lp = data1["choices"][0]["logprobs"]
            token, lp_gen = lp["tokens"][0], lp["token_logprobs"][0]
        except (KeyError, IndexError, TypeError):
            result["verdict"] = "no generation log-probs"
            return result
        result.update({"token": token, "generated_logprob": lp_gen})
        if not token or lp_gen is None:
            result["verdict"] = "no generation log-probs"
            return result
        raw2, data2, _, _ = await self._score_send(self._echo_body(probe + token))
        result["echo_request_id"] = raw2.http_response.headers.get("x-request-id")
        try:
            echo = self._echo_tokens(data2, probe + token)
        except CapabilityError as exc:
            result["verdict"] = f"no echo log-probs ({exc})"
            return result
        idx = next((i for i, t in enumerate(echo) if t["start"] == len(probe)
                    and t["end"] == len(probe) + len(token) and t["token"] == token), None)
        if idx is None or idx == 0:
            result["verdict"] = "inconclusive: the generated token is not echoed on its own"
            return result
        echoed = echo[idx]["logprob"]
        before = echo[idx - 1]["top"] or {}
        shifted = before.get(token)
        result.update({"echo_logprob": echoed, "echo_logprob_one_token_earlier": shifted})
        if echoed is not None and _close(float(echoed), float(lp_gen)):
            result["verdict"] = "standard"
        elif shifted is not None and _close(float(shifted), float(lp_gen)):
            result["verdict"] = "shifted"
        else:
            result["verdict"] = "inconclusive: the echoed log-prob matches neither position"
        return result


def _token_spans(tokens: list[Any], offsets: Any, text: str) -> list[tuple[int, int]] | None:
    """Character spans of the echoed tokens in ``text`` (tokens past its end, i.e. generated
    ones, get spans at or after ``len(text)``). From the token strings when they spell the text;
    else from the server's ``text_offset``; None when neither fits."""
    strings = [t if isinstance(t, str) else "" for t in tokens]
    if "".join(strings).startswith(text):
        spans, pos = [], 0
        for s in strings:
            spans.append((pos, pos + len(s)))
            pos += len(s)
        return spans
    if isinstance(offsets, list) and len(offsets) == len(tokens) and all(
            isinstance(o, int) for o in offsets) and offsets == sorted(offsets):
        ends = offsets[1:] + [max(offsets[-1] + len(strings[-1]), len(text))] if offsets else []
        spans = list(zip(offsets, ends, strict=True))
        if spans and spans[0][0] == 0 and spans[-1][1] >= len(text):
            return spans
    return None
