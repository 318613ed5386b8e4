"""Every registered provider (the built-ins, and the tests' scripted one) through the same
checks, as garak's tests/probes/test_probes.py runs every probe: typed params that reject an
unknown key at its path, a docstring, the registry name, a retry decision for any failure,
defaults that validate, and its params in ``casekit schema``. No paid API is called."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import BaseModel, ValidationError

import tests.scripted  # noqa: F401 - registers provider "scripted"
from casekit.case import ModelParamsError, ModelSpec
from casekit.cli import cli
from casekit.providers.base import Provider, RetryDecision, provider_class, provider_names
from casekit.providers.params import ProviderParams
from tests.conftest import case_yaml

NAMES = provider_names()
BUILTIN = {"local", "openai", "openai-compatible", "anthropic"}

# What a provider needs to be built without a network or a model load (the keys are fakes:
# building a provider sends nothing).
SPECS: dict[str, dict[str, Any]] = {
    "local": {"model": "gemma3-270m"},
    "openai": {"model": "gpt-4o-2024-08-06"},
    "anthropic": {"model": "claude-3-5-sonnet-20241022"},
}


def spec(name: str, **params: Any) -> ModelSpec:
    fields: dict[str, Any] = {"model": "contract-model", "base_url": "http://127.0.0.1:9/v1"}
    fields.update(SPECS.get(name, {}))
    return ModelSpec(id="m", provider=name, params=params, **fields)


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-contract-FAKE-0123456789abcdef")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-contract-FAKE-0123456789abcdef")


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    res = CliRunner().invoke(cli, ["schema"])
    assert res.exit_code == 0, res.output
    return dict(json.loads(res.output))


def test_the_registry_holds_the_builtins_and_the_scripted_provider() -> None:
    assert BUILTIN | {"scripted"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_name_matches_the_registry_key(name: str) -> None:
    cls = provider_class(name)
    assert issubclass(cls, Provider) and cls.name == name


@pytest.mark.parametrize("name", NAMES)
def test_provider_and_params_have_docstrings(name: str) -> None:
    cls = provider_class(name)
    assert (cls.__doc__ or "").strip(), f"{cls.__name__} has no docstring"
    assert (cls.Params.__doc__ or "").strip(), f"{cls.Params.__name__} has no docstring"


@pytest.mark.parametrize("name", NAMES)
def test_params_forbid_unknown_keys_and_are_frozen(name: str) -> None:
    params = provider_class(name).Params
    assert issubclass(params, ProviderParams) and issubclass(params, BaseModel)
    assert params.model_config.get("extra") == "forbid"
    assert params.model_config.get("frozen") is True
    default = params()
    field = next(iter(params.model_fields), None)
    if field is not None:
        with pytest.raises(ValidationError):
            setattr(default, field, getattr(default, field))


@pytest.mark.parametrize("name", NAMES)
def test_params_defaults_validate(name: str) -> None:
    params = provider_class(name).Params
    assert params.model_validate({}) == params()
    assert params.model_validate(params().model_dump()) == params()


@pytest.mark.parametrize("name", NAMES)
def test_an_unknown_key_is_refused_at_its_path(name: str, keys: None) -> None:
    cls = provider_class(name)
    with pytest.raises(ModelParamsError) as info:
        cls(spec(name, no_such_param=1), Path("."))
    assert info.value.loc == ("no_such_param",)
    assert str(info.value).startswith("model 'm': params.no_such_param: unknown ")
    assert "remove it or correct its spelling" in str(info.value)


@pytest.mark.parametrize("name", NAMES)
def test_should_retry_decides_for_any_failure(name: str, keys: None) -> None:
    provider = provider_class(name)(spec(name), Path("."))
    try:
        for exc in (RuntimeError("boom"), ValueError("bad")):
            assert isinstance(provider.should_retry(exc), RetryDecision)
    finally:
        provider.close()


@pytest.mark.parametrize("name", NAMES)
def test_schema_lists_the_params(name: str, schema: dict[str, Any]) -> None:
    params = provider_class(name).Params
    entry = schema["$defs"][f"params.{name}"]
    assert set(entry.get("properties", {})) == set(params.model_fields)
    assert entry["additionalProperties"] is False
    branch = {"if": {"properties": {"provider": {"const": name}}, "required": ["provider"]},
              "then": {"properties": {"params": {"$ref": f"#/$defs/params.{name}"}}}}
    assert branch in schema["$defs"]["ModelSpec"]["allOf"]


def test_schema_keeps_defaults_and_bounds(schema: dict[str, Any]) -> None:
    """What the docs promise an editor: the API defaults and minimums, the choices."""
    openai = schema["$defs"]["params.openai"]["properties"]
    assert openai["timeout"]["default"] == 120.0 and openai["timeout"]["minimum"] == 1.0
    assert openai["max_connections"]["default"] == 8
    assert openai["transport"]["enum"] == ["sdk", "http"]
    compatible = schema["$defs"]["params.openai-compatible"]["properties"]
    assert compatible["prompt_logprobs"]["maximum"] == 1000
    local = schema["$defs"]["params.local"]["properties"]
    assert local["n_ctx"]["minimum"] == 16 and local["logprobs"]["maximum"] == 20


# --------------------------------------------------------------------------- in a case file

SERVER_MODEL = """\
models:
  - id: srv
    provider: openai-compatible
    model: served
    base_url: http://127.0.0.1:9/v1
    params:
{params}
strategies:
  - name: benign_prompts
    params: {{templates: ["Tell me about {{{{ title }}}}."]}}
thresholds: {{min_span_words: 15, legal_defaults: false}}
"""


@pytest.mark.parametrize("params, needle, message", [
    ("timeout: 0\n", "timeout: 0",
     "models[0].params.timeout: must be a number >= 1 (got 0)"),
    ("transport: curl\n", "transport: curl",
     "models[0].params.transport: must be one of sdk, http (got 'curl')"),
    ("extra_body: {a: 1}\ntimout: 5\n", "timout: 5",
     "models[0].params.timout: unknown openai-compatible provider param; remove it or "
     "correct its spelling (allowed: timeout, "),
])
def test_a_bad_param_is_a_one_line_error_at_its_key(case_dir: Path, params: str, needle: str,
                                                   message: str) -> None:
    path = case_dir / "case.yaml"
    path.write_text(case_yaml(SERVER_MODEL.format(params=textwrap.indent(params, "      ")),
                              ""))
    res = CliRunner().invoke(cli, ["run", str(path)])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    assert message in res.output
    line = int(res.output.split("case.yaml:")[1].split(":")[0])
    assert needle in path.read_text().splitlines()[line - 1]
    assert not (case_dir / "runs").exists()
