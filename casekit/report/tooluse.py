"""Whether a recorded request offered a model tools or retrieval, and whether a recorded
response reports using them: the Limitations page states both for every attempt record, so a
reader knows whether text in an output may have been retrieved rather than recalled.

Both read the structure of the JSON, not its text. A response's text is the model's output,
which is hostile input: an output that says ``web_search`` or quotes ``"tool_calls"`` is not a
tool call. A response that carries an empty ``tool_calls`` list or ``annotations: []`` (as most
OpenAI-compatible servers do) is not one either. What counts:

- in a request (its top level, or its HTTP ``body`` as casekit's API providers record it, or
  either in any turn of a session): a non-empty value of one of :data:`TOOL_REQUEST_KEYS`;
- anywhere in a response: a non-empty value of one of :data:`TOOL_RESPONSE_KEYS` (OpenAI's
  ``tool_calls``, ``function_call`` and ``annotations`` such as URL citations; Anthropic's
  ``citations``), or a ``type``, ``stop_reason`` or ``finish_reason`` naming a tool
  (:data:`TOOL_RESPONSE_TYPES`: Anthropic's ``tool_use``, ``server_tool_use`` and
  ``web_search_tool_result`` blocks, the Responses API's ``web_search_call`` items).

Only requests casekit sent are read so. An imported output's record holds the prompt and the
capture's provenance, not the service's request or response: whether tools were used for it
is unknown, and the page says so (casekit.report.sections.limitations).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import orjson

log = logging.getLogger(__name__)

#: Request keys that give a model tools or retrieval.
TOOL_REQUEST_KEYS = ("tools", "tool_choice", "functions", "function_call", "web_search_options",
                     "plugins", "retrieval", "file_search", "mcp_servers")
#: Response keys whose non-empty value shows a tool or retrieval was used.
TOOL_RESPONSE_KEYS = frozenset({"tool_calls", "tool_use", "server_tool_use", "function_call",
                                "citations", "annotations"})
#: Fragments of a ``type``, ``stop_reason`` or ``finish_reason`` value that name a tool.
TOOL_RESPONSE_TYPES = ("tool_use", "tool_calls", "function_call", "web_search", "tool_result")
_KIND_KEYS = frozenset({"type", "stop_reason", "finish_reason"})
_PRECHECK = tuple(f'"{k}"'.encode() for k in sorted(TOOL_RESPONSE_KEYS)) + tuple(
    t.encode() for t in TOOL_RESPONSE_TYPES)
"""Bytes one of which a response's JSON holds whenever :func:`reports_tool_use` can be true:
most responses are cleared by this search alone, without walking them."""
_FIRST_CHECK = (b"tool_", b"function_call", b"citations", b"annotations", b"web_search")
"""Bytes one of which every :data:`_PRECHECK` pattern holds: fewer searches of the whole
response (each ~0.45 us per kB) clear the responses that hold none of them."""
_EMPTY_MEMBER = re.compile(rb'"(?:' + b"|".join(re.escape(k.encode()) for k in
                                                 sorted(TOOL_RESPONSE_KEYS))
                           + rb')":(?:\[\]|\{\}|null|false|"")')
"""A member of one of :data:`TOOL_RESPONSE_KEYS` with an empty value, in compact JSON (as
orjson writes it): what most OpenAI-compatible servers send with every answer. Inside a JSON
string every quote is escaped, so the unescaped quote before ``:`` closes a key, and the
pattern's bytes are the end of a member with an empty value (that member, or one whose key
merely ends so): deleting them removes no other member's bytes, and a response whose JSON
holds no :data:`_PRECHECK` bytes once they are deleted reports nothing, without a walk."""


def offers_tools(request: dict[str, Any]) -> bool:
    """Whether a recorded request offered tools or retrieval: at its top, in its HTTP body,
    or in any turn of a multi-turn session (casekit.run.session records each turn's
    request under ``turns``)."""
    turns = request.get("turns")
    if request.get("session") and isinstance(turns, list):
        return any(isinstance(t, dict) and offers_tools(t) for t in turns)
    body = request.get("body")
    for part in (request, body) if isinstance(body, dict) else (request,):
        if any(part.get(k) for k in TOOL_REQUEST_KEYS):
            return True
    return False


def reports_tool_use(response: dict[str, Any]) -> bool:
    """Whether a recorded response reports a tool call, a retrieval or citations."""
    if not response:
        return False
    try:
        raw = orjson.dumps(response)
    except TypeError:  # an integer beyond 64 bits: orjson refuses it
        raw = json.dumps(response, ensure_ascii=False, default=str).encode()
    if not any(m in raw for m in _FIRST_CHECK):
        return False
    stripped = _EMPTY_MEMBER.sub(b"", raw)
    if not any(m in stripped for m in _PRECHECK):
        return False
    return _walk(response)


def _walk(response: dict[str, Any]) -> bool:
    """:func:`reports_tool_use` by walking the whole response (what the byte checks before it
    only ever skip when it would be false)."""
    stack: list[Any] = [response]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in TOOL_RESPONSE_KEYS and value:
                    return True
                if key in _KIND_KEYS and isinstance(value, str) and any(
                        t in value for t in TOOL_RESPONSE_TYPES):
                    return True
                if isinstance(value, (dict, list)):
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, (dict, list)))
    return False
