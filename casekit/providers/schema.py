"""The case file's JSON Schema with every provider's params in it.

case.py sits below the providers, so it cannot know their Params; this assembles the whole
schema for ``casekit schema``: each registered provider's Params becomes a ``$defs`` entry,
and ``models[].params`` follows the one named by the entry's ``provider`` (``if``/``then``),
so an editor flags a misspelt or mistyped key as the loader would.
"""

from __future__ import annotations

import logging
from typing import Any

from casekit.case import json_schema
from casekit.errors import CasekitError
from casekit.providers.base import provider_class, provider_names

log = logging.getLogger(__name__)


def params_def_name(provider: str) -> str:
    """The ``$defs`` key of a provider's params (``params.openai-compatible``)."""
    return f"params.{provider}"


def provider_params_schemas() -> dict[str, dict[str, Any]]:
    """Each loadable provider's Params JSON Schema, by provider name (refs point at the
    case schema's ``$defs``). A plugin that fails to load is logged and left out."""
    out: dict[str, dict[str, Any]] = {}
    for name in provider_names():
        try:
            cls = provider_class(name)
        except (CasekitError, ImportError) as exc:
            log.warning("provider %s left out of the schema: %s", name, exc)
            continue
        out[name] = cls.Params.model_json_schema(ref_template="#/$defs/{model}")
    return out


def case_json_schema() -> dict[str, Any]:
    """The case file's JSON Schema, with ``models[].params`` typed per provider."""
    schema = json_schema()
    defs: dict[str, Any] = schema.setdefault("$defs", {})
    branches = []
    for name, params in provider_params_schemas().items():
        defs.update(params.pop("$defs", {}))
        key = params_def_name(name)
        defs[key] = params
        branches.append({
            "if": {"properties": {"provider": {"const": name}}, "required": ["provider"]},
            "then": {"properties": {"params": {"$ref": f"#/$defs/{key}"}}},
        })
    model = defs.get("ModelSpec")
    if model is not None and branches:
        model["allOf"] = branches
    return schema
