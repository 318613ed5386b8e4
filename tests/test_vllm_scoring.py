"""Teacher-forced scoring from vLLM's ``prompt_logprobs`` (``params.score_method``).

The server is an emulation of vLLM's OpenAI server on 127.0.0.1 (aiohttp.web): ``POST
/tokenize`` with a toy word tokenizer (a BOS id, then one id per space-led word) and ``POST
/v1/completions`` answering ``prompt_logprobs`` in vLLM's shape: for each prompt token after
the first, ``{token_id: {logprob, rank, decoded_token}}`` holding the actual token and the top
k, ranks from 1. The actual token's rank follows a fixed pattern, so every expected value
below is derived by hand from that pattern.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from casekit.case import ModelSpec
from casekit.errors import CasekitError
from casekit.providers.base import CapabilityError
from casekit.providers.openai_compatible import OpenAICompatibleProvider
from casekit.pz import log_p_z
from casekit.records import PlannedAttempt
from casekit.strategies.census import CensusFields
from tests.conftest import case_yaml
from tests.local_http import serve
from tests.tokenizer_files import metaspace

BOS = 1
TOPS = [-(0.2 + 0.3 * j) for j in range(200)]
"""The log-prob of the token of rank j + 1 at every position (a fixed, decreasing ladder)."""


def toy_ids(text: str) -> tuple[list[int], list[str]]:
    words = re.findall(r" ?\S+", text)
    return [BOS] + [100 + sum(map(ord, w)) * 7 % 90_000 for w in words], ["<s>"] + words


def rank_at(position: int) -> int:
    """The actual token's 1-based rank at a position: 1, except every third position (rank 3)
    and every seventh (rank 25, outside a top-20)."""
    if position % 7 == 0:
        return 25
    if position % 3 == 0:
        return 3
    return 1


def entry(position: int, token_id: int, word: str, k: int) -> dict[str, dict[str, Any]]:
    r = rank_at(position)
    out: dict[str, dict[str, Any]] = {}
    for j in range(k):
        if j == r - 1:
            out[str(token_id)] = {"logprob": TOPS[j], "rank": r, "decoded_token": word}
        else:
            out[str(50_000 + j)] = {"logprob": TOPS[j], "rank": j + 1, "decoded_token": f"x{j}"}
    if r > k:
        out[str(token_id)] = {"logprob": TOPS[r - 1], "rank": r, "decoded_token": word}
    return out


def vllm_app(state: dict[str, Any], ids_and_words: Callable[[str], tuple[list[int], list[str]]],
             model: str) -> web.Application:
    """An emulated vLLM OpenAI server: ``POST /tokenize`` and Completions with
    ``prompt_logprobs`` (see ``entry``), tokenizing with ``ids_and_words``. ``state`` switches
    /tokenize off (``tokenize``: False), drops the last log-prob entry (``drop_last``) and
    collects ``seen`` (kind, body) requests."""
    state.setdefault("seen", [])

    async def tokenize(request: web.Request) -> web.Response:
        if not state.get("tokenize", True):
            return web.Response(status=404, text="Not Found")
        body = await request.json()
        state["seen"].append(("tokenize", body))
        ids, _ = ids_and_words(body["prompt"])
        return web.json_response({"tokens": ids, "count": len(ids), "max_model_len": 4096},
                                 headers={"Date": "Tue, 03 Jun 2025 12:00:00 GMT"})

    async def completions(request: web.Request) -> web.Response:
        body = await request.json()
        state["seen"].append(("completions", body))
        ids, words = ids_and_words(body["prompt"])
        k = int(body["prompt_logprobs"])
        plp: list[Any] = [None] + [entry(i, ids[i], words[i], k) for i in range(1, len(ids))]
        if state.get("drop_last"):
            plp = plp[:-1]
        return web.json_response({
            "id": "cmpl-v", "object": "text_completion", "model": model,
            "choices": [{"index": 0, "text": " x", "finish_reason": "length",
                         "prompt_logprobs": plp, "logprobs": None}],
            "usage": {"prompt_tokens": len(ids), "completion_tokens": 1,
                      "total_tokens": len(ids) + 1}},
            headers={"Date": "Tue, 03 Jun 2025 12:00:01 GMT", "x-request-id": "vllm-1"})

    app = web.Application()
    app.router.add_post("/tokenize", tokenize)
    app.router.add_post("/v1/completions", completions)
    return app


@pytest.fixture
def vllm() -> Iterator[dict[str, Any]]:
    state: dict[str, Any] = {"tokenize": True, "drop_last": False, "seen": []}
    with serve(vllm_app(state, toy_ids, "org/model-7b")) as root:
        state["url"] = f"{root}/v1"
        yield state


def provider(url: str, transport: str = "http", **params: Any) -> OpenAICompatibleProvider:
    spec = ModelSpec(id="v", provider="openai-compatible", model="org/model-7b",
                     interface="completion", base_url=url,
                     params={"score_method": "prompt_logprobs", "transport": transport,
                             "timeout": 5, **params})
    return OpenAICompatibleProvider(spec, Path("."))


def score_attempt(prompt: str, continuation: str) -> PlannedAttempt:
    return PlannedAttempt(id="s-1", ordinal=0, model_id="v", strategy="teacher_forced",
                          strategy_key="teacher_forced#0", work_id="w", intent="reconstruction",
                          index=0, mode="score", prompt=prompt, continuation=continuation)


def run(p: OpenAICompatibleProvider, a: PlannedAttempt) -> Any:
    async def go() -> Any:
        try:
            return await p.score(a)
        finally:
            await p.aclose()
    return asyncio.run(go())


@pytest.mark.parametrize("transport", ["sdk", "http"])
def test_scores_from_prompt_logprobs_with_exact_ranks(vllm: dict[str, Any],
                                                      transport: str) -> None:
    # prompt "It was a" -> [BOS, It, ' was', ' a'] (positions 0-3); the continuation
    # " bright cold day in April" -> positions 4-8. Ranks (rank_at): 4 -> 1, 5 -> 1,
    # 6 -> 3, 7 -> 25, 8 -> 1, so 0-based ranks [0, 0, 2, 24, 0] and 3 of 5 top-1.
    res = run(provider(vllm["url"], transport), score_attempt("It was a",
                                                              " bright cold day in April"))
    ranks = [s.rank for s in res.token_scores]
    assert ranks == [0, 0, 2, 24, 0]
    assert [s.is_top for s in res.token_scores] == [True, True, False, False, True]
    assert [s.logprob for s in res.token_scores] == [TOPS[0], TOPS[0], TOPS[2], TOPS[24],
                                                     TOPS[0]]
    assert [s.token for s in res.token_scores] == [" bright", " cold", " day", " in", " April"]
    assert all(s.top_logprob == TOPS[0] for s in res.token_scores)
    # k = 20 (the default): the top-40 renormalization is unknown, never guessed.
    assert all(s.top40_logsumexp is None for s in res.token_scores)
    assert log_p_z(res.token_scores, "greedy") == -math.inf  # ranks 2 and 24 break greedy
    assert res.raw_response["boundary"] == "clean"
    assert res.raw_response["n_top1"] == 3 and res.raw_response["top40_exact"] is False
    assert res.raw_request["score_method"] == "server prompt_logprobs (vLLM)"
    assert len(res.raw_request["tokenize"]) == 2
    sent = [b for kind, b in vllm["seen"] if kind == "completions"][-1]
    assert sent["prompt"] == "It was a bright cold day in April"
    assert sent["prompt_logprobs"] == 20 and sent["max_tokens"] == 1


def test_k_40_gives_the_exact_top40_preset(vllm: dict[str, Any]) -> None:
    # prompt "A b" -> positions 0-2; continuation " c d" -> positions 3 (rank 3), 4 (rank 1).
    res = run(provider(vllm["url"], prompt_logprobs=40), score_attempt("A b", " c d"))
    lse = max(TOPS[:40]) + math.log(sum(math.exp(v - max(TOPS[:40])) for v in TOPS[:40]))
    assert [s.rank for s in res.token_scores] == [2, 0]
    for s in res.token_scores:
        assert s.top40_logsumexp == pytest.approx(lse, abs=1e-12)
    expected = (TOPS[2] - lse) + (TOPS[0] - lse)
    assert log_p_z(res.token_scores, "top40") == pytest.approx(expected, abs=1e-12)


def test_a_token_across_the_boundary_is_scored_with_the_continuation(
        vllm: dict[str, Any]) -> None:
    # prompt "It was a bri" -> [BOS, It, ' was', ' a', ' bri']; whole "It was a bright cold"
    # -> [BOS, It, ' was', ' a', ' bright', ' cold']: they part at position 4, so ' bright'
    # and ' cold' are scored and the boundary is "merged".
    res = run(provider(vllm["url"]), score_attempt("It was a bri", "ght cold"))
    assert [s.token for s in res.token_scores] == [" bright", " cold"]
    assert res.raw_response["boundary"] == "merged"


def test_a_server_without_tokenize_cannot_score(vllm: dict[str, Any]) -> None:
    vllm["tokenize"] = False
    with pytest.raises(CapabilityError, match="no /tokenize endpoint"):
        run(provider(vllm["url"]), score_attempt("It was a", " bright cold"))


def test_misaligned_prompt_logprobs_record_nothing(vllm: dict[str, Any]) -> None:
    vllm["drop_last"] = True
    with pytest.raises(CapabilityError, match="cannot be matched"):
        run(provider(vllm["url"]), score_attempt("It was a", " bright cold"))


def test_score_method_and_k_are_validated() -> None:
    with pytest.raises(CasekitError, match="score_method: must be echo"):
        provider("http://127.0.0.1:9/v1", score_method="logits")
    with pytest.raises(CasekitError, match="prompt_logprobs: must be a whole number"):
        provider("http://127.0.0.1:9/v1", prompt_logprobs=0)
    ident = provider("http://127.0.0.1:9/v1").identity().identity
    assert ident["score_method"] == "server prompt_logprobs (vLLM)"
    assert json.dumps(ident)  # serializable into run_start


# =========================================================================== census on a server
#
# The same emulation, but tokenizing with a real (test-trained) tokenizer.json: /tokenize gives
# BOS + the file's own ids (its first-word ▁ included, as vLLM's Hugging Face tokenizer does),
# and prompt_logprobs are keyed by those ids. A case whose ``params.tokenizer`` is that file
# plans census windows the server scores token for token; a case giving another tokenizer is
# refused attempt by attempt, before any log-prob is asked for.


@contextlib.contextmanager
def hf_vllm(server_tokenizer: Path) -> Iterator[dict[str, Any]]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(server_tokenizer))
    bos = tok.token_to_id("<s>")

    def ids_and_words(text: str) -> tuple[list[int], list[str]]:
        ids = [bos] + list(tok.encode(text, add_special_tokens=False).ids)
        return ids, [tok.id_to_token(i) for i in ids]

    state: dict[str, Any] = {"seen": []}
    with serve(vllm_app(state, ids_and_words, "org/served")) as root:
        state["url"] = f"{root}/v1"
        yield state


def kinds(srv: dict[str, Any]) -> list[str]:
    return [kind for kind, _ in srv["seen"]]


CENSUS_MODELS = """\
models:
  - id: srv
    provider: openai-compatible
    model: org/served
    base_url: {url}
    interface: completion
    params:
      score_method: prompt_logprobs
      transport: http
      timeout: 10
      tokenizer: tok/tokenizer.json
      tokenizer_sha256: {sha}
strategies:
  - name: pz_census
    params: {{prefix_tokens: 8, suffix_tokens: 8, stride_chars: 60}}
thresholds: {{min_span_words: 15, legal_defaults: false}}
"""


def census_case(case_dir: Path, url: str, tokenizer: Path) -> Path:
    from casekit.canonical import sha256_file

    (case_dir / "tok").mkdir(exist_ok=True)
    shutil.copy(tokenizer, case_dir / "tok" / "tokenizer.json")
    sha = sha256_file(case_dir / "tok" / "tokenizer.json")
    path = case_dir / "case.yaml"
    path.write_text(case_yaml(CENSUS_MODELS.format(url=url, sha=sha), ""))
    return path


def attempt_records(run_dir: Path) -> list[Any]:
    from casekit.ledger import read_records
    from casekit.records import AttemptRecord

    return [r for r in read_records(run_dir / "ledger.jsonl") if isinstance(r, AttemptRecord)]


def test_census_on_a_vllm_server_with_params_tokenizer(case_dir: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from casekit.case import load_case
    from casekit.cli import cli
    from casekit.providers.tokenizer_file import load_case_tokenizer
    from casekit.strategies.census import census_windows
    from casekit.works import load_works

    served = metaspace(tmp_path / "served.json", "first")  # Llama 2 shape: BOS, ▁ prefix
    with hf_vllm(served) as srv:
        path = census_case(case_dir, srv["url"], served)
        run_dir = case_dir / "run"
        res = CliRunner().invoke(cli, ["run", str(path), "--run-dir", str(run_dir)])
        assert res.exit_code == 0, res.output
        res = CliRunner().invoke(cli, ["analyze", str(run_dir)])
        assert res.exit_code == 0, res.output
    case = load_case(path)
    tok = load_case_tokenizer("tok/tokenizer.json", None, case_dir, "srv", "org/served")
    bos = tok._model.token_to_id("<s>")
    assert bos in tok.special_ids
    records = attempt_records(run_dir)
    works = {w.id: w for w in load_works(case)}
    for wid, work in works.items():
        windows = census_windows(work.raw, [(0, len(work.raw))], tok, 8, 8, 60).windows
        # In plan order (the ledger holds them in order of completion).
        mine = sorted((r for r in records if r.attempt.work_id == wid),
                      key=lambda r: r.attempt.index)
        assert len(mine) == len(windows) > 10
        for r, w in zip(mine, windows, strict=True):
            assert r.status == "ok", r.error
            resp = r.result.raw_response
            check = resp["tokenizer_check"]
            assert check["status"] == "match" and check["tokenizer_sha256"] == tok.info.sha256
            assert check["server_special_prefix"] == [bos]  # the server's BOS, skipped
            # The server scored exactly the planned window's suffix tokens.
            assert resp["boundary"] == "clean"
            assert resp["continuation_token_ids"] == list(w.token_ids[8:])
            assert len(r.result.token_scores) == 8
    assert kinds(srv).count("completions") == len(records)
    start = json.loads((run_dir / "ledger.jsonl").read_text().splitlines()[0])
    ident = start["models"][0]["identity"]
    assert ident["tokenizer_sha256"] == tok.info.sha256
    assert ident["tokenizer_family"] == "Metaspace BPE + byte fallback"
    assert ident["tokenizer_format"] == "tokenizer.json"
    findings = json.loads((run_dir / "findings.json").read_text())
    for f in findings["findings"]:
        (c,) = f["census"]
        assert c["planned"] == c["windows"] > 10 and c["errors"] == 0
        assert "8-token prefix" in c["params"] and "stride 60 characters" in c["params"]
        # Every window is in the greedy rate's denominator (rank_at puts a rank-3 token in
        # every 8-token suffix, so none is greedy-reproduced).
        assert c["greedy"]["k"] == 0
        assert c["greedy"]["n"] == c["windows"]
        assert 0 < c["scored_chars"] <= c["counted_chars"]


def test_census_with_a_tokenizer_unlike_the_servers_scores_nothing(case_dir: Path,
                                                                   tmp_path: Path) -> None:
    from click.testing import CliRunner

    from casekit.cli import cli

    served = metaspace(tmp_path / "served.json", "first", vocab_size=300)
    # Another vocabulary: two more special tokens shift every other id, so no window can
    # tokenize alike by chance (with only more merges, short windows sometimes did).
    other = metaspace(tmp_path / "other.json", "first", vocab_size=340,
                      specials=("<unk>", "<s>", "</s>", "<pad>", "<mask>"))
    with hf_vllm(served) as srv:
        path = census_case(case_dir, srv["url"], other)
        run_dir = case_dir / "run"
        res = CliRunner().invoke(cli, ["run", str(path), "--run-dir", str(run_dir)])
        assert res.exit_code == 0, res.output
        assert "completions" not in kinds(srv)  # no log-prob was ever asked for
    records = attempt_records(run_dir)
    assert records and all(r.status == "error" and r.result is None for r in records)
    for r in records:
        assert r.error.kind == "no_retry" and r.error.type == "CapabilityError"
        assert r.error.message.startswith("params.tokenizer does not tokenize like the server: ")
        assert "give the served model's tokenizer.json (or .gguf) as params.tokenizer" in \
            r.error.message
        assert len(r.tries) == 1
    from casekit.analysis.analyze import analyze_run

    for f in analyze_run(run_dir).findings:
        (c,) = f.fields(CensusFields).census
        assert c.windows == 0 and c.errors == c.planned > 0
