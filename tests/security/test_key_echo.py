"""Hostile server: a 200 response that echoes the API key in every field it can (the model id,
system_fingerprint, the response id, a recorded header) never gets the key into a record, the
ledger, the report or its attachments; credentials in a base_url are refused at validate time
and at run time."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from casekit.case import ModelSpec
from casekit.errors import CasekitError
from casekit.providers.openai_compatible import OpenAICompatibleProvider
from casekit.records import Message, PlannedAttempt
from tests.local_http import serve

KEY = "sk-echo-SECRET-9f8e7d6c5b4a3210"


def echoing_app() -> web.Application:
    """An OpenAI-style server that puts the bearer key it was sent everywhere in a 200."""

    async def complete(request: web.Request) -> web.Response:
        key = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        body = await request.json()
        text = "The miller's daughter counted the sacks of grain twice before she trusted"
        usage = {"prompt_tokens": 5, "completion_tokens": 12, "total_tokens": 17}
        common = {"id": f"cmpl-{key}", "created": int(time.time()), "model": key,
                  "system_fingerprint": key, "usage": usage, "service_tier": key}
        if request.path.endswith("/chat/completions"):
            payload = {**common, "object": "chat.completion", "choices": [{
                "index": 0, "message": {"role": "assistant", "content": text},
                "logprobs": None, "finish_reason": "stop"}]}
        else:
            payload = {**common, "object": "text_completion", "choices": [{
                "index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}]}
        assert body.get("model")
        return web.json_response(payload, headers={
            "x-request-id": key, "openai-model": key, "openai-organization": key,
            "date": "Sat, 05 Dec 2026 12:00:00 GMT"})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", complete)
    app.router.add_post("/v1/completions", complete)
    return app


def _attempt(mode: str) -> PlannedAttempt:
    kw: dict[str, Any] = ({"messages": [Message(role="user", content="Say hello.")]}
                          if mode == "chat" else {"prompt": "Once upon a time"})
    return PlannedAttempt(id="a-00000000000000000001", ordinal=0, model_id="m1", strategy="t",
                          strategy_key="t#0", work_id="w", intent="benign", index=0, mode=mode,
                          **kw)


@pytest.mark.parametrize("transport", ["http", "sdk"])
@pytest.mark.parametrize("mode", ["chat", "completion"])
def test_a_key_echoed_in_a_200_is_redacted_in_every_field(
        monkeypatch: pytest.MonkeyPatch, transport: str, mode: str) -> None:
    monkeypatch.setenv("ECHO_KEY", KEY)
    with serve(echoing_app()) as url:
        spec = ModelSpec(id="m1", provider="openai-compatible", model="echo",
                         base_url=url + "/v1", api_key_env="ECHO_KEY",
                         interface=mode,  # type: ignore[arg-type]
                         params={"transport": transport})
        provider = OpenAICompatibleProvider(spec, Path("."))
        try:
            result = asyncio.run(provider.run(_attempt(mode)))
        finally:
            provider.close()
    recorded = json.dumps(result.model_dump(mode="json"))
    assert result.text and result.text.startswith("The miller's daughter")
    assert KEY not in recorded, [k for k, v in result.model_dump().items() if KEY in str(v)]
    assert result.returned_model == "[redacted]" and result.system_fingerprint == "[redacted]"


@pytest.mark.parametrize("url", ["http://user:hunter2@127.0.0.1:9/v1",
                                 "https://sk-secret@example.com/v1"])
def test_credentials_in_a_base_url_are_refused_at_run_time(url: str) -> None:
    spec = ModelSpec.model_construct(id="m1", provider="openai-compatible", model="m",
                                     base_url=url, interface="chat", api_key_env=None,
                                     params={}, limits=ModelSpec.model_fields["limits"].default)
    with pytest.raises(CasekitError) as info:
        OpenAICompatibleProvider(spec, Path("."))._base_url()
    assert "user name or password" in str(info.value)
    assert "hunter2" not in str(info.value)
    assert "sk-secret" not in str(info.value)


@pytest.mark.slow
def test_an_echoed_key_reaches_no_ledger_pdf_or_attachment(case_dir: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           ) -> None:
    from pypdf import PdfReader

    from casekit.analysis.analyze import analyze_run, write_findings
    from casekit.case import load_case
    from casekit.report import build_report
    from casekit.run.runner import Runner

    monkeypatch.setenv("ECHO_KEY", KEY)
    text = (case_dir / "case.yaml").read_text()
    start = text.index("models:")
    with serve(echoing_app()) as url:
        models = (f"models:\n  - id: api\n    provider: openai-compatible\n    model: echo\n"
                  f"    base_url: {url}/v1\n    api_key_env: ECHO_KEY\n    interface: chat\n")
        strategies = ("strategies:\n  - name: prefix_continuation\n"
                      "    params: {prefix_words: 10, suffix_words: 30, max_windows: 2}\n"
                      "thresholds: {min_span_words: 10, legal_defaults: false}\n")
        (case_dir / "case.yaml").write_text(text[:start] + models + strategies)
        out = Runner(load_case(case_dir / "case.yaml")).run()
    assert out.complete
    findings = analyze_run(out.run_dir)
    write_findings(out.run_dir, findings)
    paths = build_report(out.run_dir, findings)
    ledger = (out.run_dir / "ledger.jsonl").read_text()
    assert "[redacted]" in ledger, "the echoed key was seen and removed"
    for p in (p for p in out.run_dir.rglob("*") if p.is_file()):
        assert KEY.encode() not in p.read_bytes(), p
    reader = PdfReader(paths.pdf)
    assert KEY not in "\n".join(page.extract_text() or "" for page in reader.pages)
    for blobs in reader.attachments.values():
        for blob in blobs:
            assert KEY.encode() not in blob


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_openai_and_anthropic_redact_an_echoed_key_in_every_field(
        monkeypatch: pytest.MonkeyPatch, provider: str) -> None:
    import respx

    from casekit.providers.anthropic import AnthropicProvider
    from casekit.providers.openai import OpenAIProvider
    from tests.test_api_providers import (
        ANTHROPIC,
        OPENAI,
        anthropic_json,
        chat_json,
        client_for,
    )

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    headers = {"date": "Tue, 03 Jun 2025 12:00:00 GMT", "x-request-id": KEY, "request-id": KEY,
               "openai-organization": KEY, "openai-model": KEY}
    if provider == "openai":
        router = respx.Router(base_url=OPENAI)
        body = {**chat_json(), "model": KEY, "system_fingerprint": KEY, "id": KEY}
        router.post("/chat/completions").respond(200, json=body, headers=headers)
        p: Any = OpenAIProvider(ModelSpec(id="m1", provider="openai", model="gpt-4o-2024-08-06"),
                                Path("."), http_client=client_for(router))
    else:
        router = respx.Router(base_url=ANTHROPIC)
        body = {**anthropic_json(), "model": KEY, "id": KEY}
        router.post("/v1/messages").respond(200, json=body, headers=headers)
        p = AnthropicProvider(ModelSpec(id="m1", provider="anthropic",
                                        model="claude-3-5-sonnet-20241022"),
                              Path("."), http_client=client_for(router))
    result = asyncio.run(p.run(_attempt("chat")))
    recorded = json.dumps(result.model_dump(mode="json"))
    assert result.text and KEY not in recorded
    assert result.returned_model == "[redacted]"
