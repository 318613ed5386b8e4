"""Limitations' count of requests that offered tools and responses that report using them
(casekit.report.tooluse): read from the JSON's structure, so an output's words cannot fake a
tool call, an empty ``tool_calls`` list is none, and citations are found.

The shapes are those of the providers' documented responses (OpenAI chat completions with
``tool_calls`` and URL-citation ``annotations``, the Responses API's ``web_search_call``,
Anthropic's ``tool_use``/``server_tool_use`` blocks and ``citations``), as casekit's API
providers record them (``{"status", "headers", "body"}``).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from casekit.case import load_case
from casekit.ledger import read_records
from casekit.records import AttemptRecord
from casekit.report.ledger_facts import LedgerFacts, LedgerFile, attempt_facts
from casekit.report.tooluse import offers_tools, reports_tool_use
from casekit.run.runner import Runner


def http(body: dict[str, Any]) -> dict[str, Any]:
    return {"status": 200, "http_version": "HTTP/1.1", "headers": {"content-type":
            "application/json"}, "body": body, "body_sha256": "sha256:00"}


def chat(message: dict[str, Any], finish: str = "stop") -> dict[str, Any]:
    return http({"id": "chatcmpl-1", "object": "chat.completion", "model": "m", "choices": [
        {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish,
         "logprobs": None}], "usage": {"prompt_tokens": 3}})


PLAIN = chat({"content": "It was a bright cold day in April.", "refusal": None,
              "annotations": []})
# vLLM and other OpenAI-compatible servers send empty tool fields with every answer.
EMPTY_FIELDS = chat({"content": "Call me Ishmael.", "tool_calls": [], "function_call": None,
                     "reasoning_content": None})
# A model's output is hostile input: words that look like the markers are not a tool call.
WORDS_ONLY = chat({"content": 'I would use web_search here, e.g. {"tool_calls": [1]} '
                   '"citations" "annotations":[{', "annotations": []})
OPENAI_TOOL_CALL = chat({"content": None, "tool_calls": [{"id": "call_1", "type": "function",
                         "function": {"name": "lookup", "arguments": "{}"}}]}, "tool_calls")
OPENAI_CITATION = chat({"content": "The book opens ...", "annotations": [
    {"type": "url_citation", "url_citation": {"url": "https://example.org/book",
                                               "start_index": 0, "end_index": 10}}]})
RESPONSES_SEARCH = http({"id": "resp_1", "object": "response", "output": [
    {"type": "web_search_call", "id": "ws_1", "status": "completed"},
    {"type": "message", "content": [{"type": "output_text", "text": "...",
                                     "annotations": []}]}]})
ANTHROPIC_PLAIN = http({"id": "msg_1", "type": "message", "role": "assistant", "content": [
    {"type": "text", "text": "Once upon a time", "citations": None}],
    "stop_reason": "end_turn"})
ANTHROPIC_TOOL = http({"id": "msg_2", "type": "message", "content": [
    {"type": "tool_use", "id": "toolu_1", "name": "get_book", "input": {}}],
    "stop_reason": "tool_use"})
ANTHROPIC_SEARCH = http({"id": "msg_3", "type": "message", "content": [
    {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
     "input": {"query": "book"}},
    {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
    {"type": "text", "text": "It opens", "citations": [
        {"type": "web_search_result_location", "url": "https://example.org"}]}],
    "stop_reason": "end_turn"})


@pytest.mark.parametrize(("response", "expected"), [
    (PLAIN, False), (EMPTY_FIELDS, False), (WORDS_ONLY, False), (ANTHROPIC_PLAIN, False),
    ({}, False), (OPENAI_TOOL_CALL, True), (OPENAI_CITATION, True), (RESPONSES_SEARCH, True),
    (ANTHROPIC_TOOL, True), (ANTHROPIC_SEARCH, True),
])
def test_a_response_reports_tools_by_its_structure(response: dict[str, Any],
                                                   expected: bool) -> None:
    assert reports_tool_use(response) is expected


def test_the_byte_checks_never_clear_a_response_the_walk_would_not() -> None:
    # Empty tool members are deleted from the JSON's bytes before the second check: bytes that
    # look like one inside an output, or a key that merely ends so, must not hide a real one.
    from casekit.report.tooluse import _FIRST_CHECK, _PRECHECK, _walk

    # The first, shorter search is sound only if every marker holds one of its fragments.
    assert all(any(f in m for f in _FIRST_CHECK) for m in _PRECHECK)

    rng = random.Random(7)
    keys = ["tool_calls", "annotations", "citations", "function_call", 'x"tool_calls',
            "my_tool_calls", "content", "type", "finish_reason"]
    values: list[Any] = [[], {}, None, False, "", 0, 0.5, [1], {"a": 1}, "tool_use",
                         '"tool_calls":[]', 'x","citations":[1],"y":"', "stop"]
    cleared = 0
    for _ in range(3000):
        message = {rng.choice(keys): rng.choice(values) for _ in range(rng.randint(1, 5))}
        if rng.random() < 0.3:
            message["nested"] = [{rng.choice(keys): rng.choice(values)}]
        response = chat(message, rng.choice(["stop", "tool_calls", "length"]))
        assert reports_tool_use(response) is _walk(response), message
        cleared += not _walk(response)
    assert cleared > 500  # both answers are exercised


def test_a_response_with_an_integer_orjson_refuses_is_still_read() -> None:
    big = chat({"content": "x", "tool_calls": [{"id": 2 ** 70}]})
    assert reports_tool_use(big) is True
    assert reports_tool_use(chat({"content": "x", "seed": 2 ** 70})) is False


def test_a_request_offers_tools_in_its_body_or_at_its_top() -> None:
    # casekit's API providers record the HTTP body under "body".
    recorded = {"api": "chat.completions", "method": "POST", "url": "https://x/v1/chat",
                "body": {"model": "m", "messages": [], "tools": [{"type": "function"}]}}
    assert offers_tools(recorded)
    assert offers_tools({"tools": [{"type": "web_search"}]})
    assert not offers_tools({"api": "chat.completions", "body": {"model": "m", "tools": []}})
    assert not offers_tools({"imported": True, "messages": [{"role": "user",
                                                            "content": "use tools please"}]})
    # A key the model was not sent (recorded as not sent) offered nothing.
    assert not offers_tools({"body": {"model": "m"}, "not_sent": {"tools": [{"x": 1}]}})


def test_the_ledger_pass_counts_them_per_record(case_dir: Path) -> None:
    out = Runner(load_case(case_dir / "case.yaml")).run()
    recs = [r for r in read_records(out.ledger_path) if isinstance(r, AttemptRecord)]
    rec = next(r for r in recs if r.result is not None)
    assert rec.result is not None
    shapes = [PLAIN, EMPTY_FIELDS, WORDS_ONLY, OPENAI_TOOL_CALL, ANTHROPIC_SEARCH]
    facts = LedgerFacts(file=LedgerFile(out.ledger_path, 0, ""))
    for i, shape in enumerate(shapes):
        request = {"body": {"tools": [{"type": "function"}]}} if i == 0 else {"body": {}}
        result = rec.result.model_copy(update={"raw_response": shape, "raw_request": request})
        facts.add_attempt(attempt_facts(rec.model_copy(update={"result": result,
                                                               "seq": 1000 + i})))
    assert (facts.tooled_requests, facts.tooled_responses) == (1, 2)


def test_a_session_offers_tools_when_any_turn_does() -> None:
    # casekit.run.session records each turn's request under "turns".
    plain = {"api": "chat.completions", "body": {"model": "m", "messages": []}}
    tooled = {"api": "chat.completions", "body": {"model": "m", "tools": [{"type": "function"}]}}
    assert offers_tools({"session": True, "turns": [plain, tooled]})
    assert not offers_tools({"session": True, "turns": [plain, plain]})


def test_an_imported_record_is_not_read_for_tools(case_dir: Path) -> None:
    # Its raw request is casekit's reconstruction of the prompt and its raw response the
    # capture's provenance (a spreadsheet row may have a column named "annotations"): neither
    # is the service's, so neither counts as offering or reporting tools.
    out = Runner(load_case(case_dir / "case.yaml")).run()
    rec = next(r for r in read_records(out.ledger_path)
               if isinstance(r, AttemptRecord) and r.result is not None)
    assert rec.result is not None
    result = rec.result.model_copy(update={
        "raw_request": {"imported": True, "tools": [{"type": "web_search"}]},
        "raw_response": {"imported": {"row": {"annotations": ["see wikipedia"]}}}})
    attempt = rec.attempt.model_copy(update={"strategy": "imported",
                                             "strategy_key": "imported@capture.csv"})
    facts = LedgerFacts(file=LedgerFile(out.ledger_path, 0, ""))
    facts.add_attempt(attempt_facts(rec.model_copy(update={"result": result,
                                                           "attempt": attempt})))
    assert (facts.tooled_requests, facts.tooled_responses) == (0, 0)
    assert (facts.checked_requests, facts.imported_records) == (0, 1)
    # The same record as one casekit sent is read.
    facts = LedgerFacts(file=LedgerFile(out.ledger_path, 0, ""))
    facts.add_attempt(attempt_facts(rec.model_copy(update={"result": result})))
    assert (facts.tooled_requests, facts.tooled_responses, facts.checked_requests) == (1, 1, 1)
