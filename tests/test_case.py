"""Case files: validation errors name file:line:col, the field, and the fix; exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from casekit.case import load_case
from casekit.cli import cli
from casekit.errors import CaseError, WorkError
from casekit.plan import build_plan
from casekit.works import load_works

GOOD = """\
case:
  id: t1
  title: Test
  matter: none
  examiner: E
  organization: O
works:
  - id: subj
    title: Subject
    author: A
    path: subj.txt
    role: subject
  - id: ctrl
    title: Control
    author: B
    path: ctrl.txt
    role: control
models:
  - id: m
    provider: local
    model: gemma3-270m
strategies:
  - name: prefix_continuation
    params: {prefix_words: 5, suffix_words: 5}
"""


def write_case(tmp_path: Path, text: str) -> Path:
    (tmp_path / "subj.txt").write_text("one two three four five six seven eight nine ten " * 5)
    (tmp_path / "ctrl.txt").write_text("alpha beta gamma delta epsilon zeta eta theta iota " * 5)
    p = tmp_path / "case.yaml"
    p.write_text(text)
    return p


def error_of(tmp_path: Path, text: str) -> str:
    p = write_case(tmp_path, text)
    with pytest.raises((CaseError, WorkError)) as info:
        case = load_case(p)
        build_plan(case, load_works(case))
    msg = str(info.value)
    assert "\n" not in msg, "errors are one line"
    return msg


def test_good_case_loads_and_hash_ignores_formatting(tmp_path: Path) -> None:
    p = write_case(tmp_path, GOOD)
    a = load_case(p)
    p.write_text("# a comment\n" + GOOD.replace("title: Test", "title:   'Test'"))
    b = load_case(p)
    assert a.sha256 == b.sha256 and a.sha256.startswith("sha256:")


# (description, transformation of GOOD, expected line, expected fragments)
MALFORMED = [
    ("unknown top-level field", GOOD + "colour: red\n", 25, ["colour", "unknown field", "allowed"]),
    ("unknown nested field", GOOD.replace("    role: subject", "    role: subject\n    rol: x"),
     13, ["works[0].rol", "unknown field", "path"]),
    ("bad role", GOOD.replace("role: subject", "role: subjekt"), 12,
     ["works[0].role", "'subject' or 'control'"]),
    ("missing title", GOOD.replace("  title: Test\n", ""), 2, ["case.title", "required", "add it"]),
    ("bad id chars", GOOD.replace("id: subj", "id: 'bad id!'"), 8, ["works[0].id", "allowed"]),
    ("duplicate work ids", GOOD.replace("id: ctrl", "id: subj"), 13, ["duplicate work id"]),
    ("no control", GOOD.replace("role: control", "role: subject"), 8,
     ["no control work", "allow_no_control"]),
    ("threshold out of range", GOOD + "thresholds: {near_exact: 1.5}\n", 25,
     ["thresholds.near_exact", "at most 1.0", "got 1.5"]),
    ("samples not an int", GOOD + "samples: many\n", 25, ["samples", "whole number"]),
    ("bad date", GOOD.replace("role: subject", "role: subject\n    published: someday"), 13,
     ["published", "YYYY-MM-DD"]),
    ("strategy unknown model", GOOD + "    models: [nope]\n", 25, ["unknown model id", "'m'"]),
    ("yaml syntax", GOOD.replace("  id: t1", "  id: [t1"), 3, ["invalid YAML"]),
    ("duplicate key", GOOD.replace("  matter: none", "  matter: none\n  matter: two"), 5,
     ["duplicate key"]),
    ("unknown strategy", GOOD.replace("prefix_continuation", "prefix_contination"), 23,
     ["unknown strategy", "prefix_continuation"]),
    ("bad strategy param", GOOD.replace("suffix_words: 5", "sufix_words: 5"), 24,
     ["params.sufix_words", "allowed"]),
    ("work path escapes", GOOD.replace("path: subj.txt", "path: ../../etc/passwd"), 11,
     ["leaves the case folder"]),
    ("work not text", GOOD.replace("path: subj.txt", "path: subj.odt"), 11,
     [".txt, .md, .epub, .docx or .pdf"]),
    ("hash mismatch", GOOD.replace("role: subject", "role: subject\n    sha256: " + "ab" * 32), 13,
     ["hash", "expects"]),
    ("unknown provider", GOOD.replace("provider: local", "provider: lokal"), 20,
     ["unknown provider", "local"]),
    ("empty works", GOOD.split("works:")[0] + "works: []\nmodels: [{id: m, provider: local, "
     "model: x}]\nstrategies: [{name: prefix_continuation}]\n", 7, ["works", "at least 1"]),
]


@pytest.mark.parametrize("desc,text,line,fragments", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_case_errors(tmp_path: Path, desc: str, text: str, line: int,
                               fragments: list[str]) -> None:
    msg = error_of(tmp_path, text)
    assert msg.startswith(f"{tmp_path / 'case.yaml'}:{line}:") or \
        msg.startswith(f"{tmp_path.resolve() / 'case.yaml'}:{line}:"), msg
    for frag in fragments:
        assert frag in msg, (frag, msg)


def test_cli_validate_exit_code_and_one_line(tmp_path: Path) -> None:
    p = write_case(tmp_path, GOOD.replace("role: subject", "role: subjekt"))
    res = subprocess.run([sys.executable, "-m", "casekit.cli", "validate", str(p)],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().count("\n") == 0
    assert ":12:" in res.stderr


def test_cli_validate_ok(tmp_path: Path) -> None:
    p = write_case(tmp_path, GOOD)
    res = CliRunner().invoke(cli, ["validate", str(p)])
    assert res.exit_code == 0, res.output
    assert "valid" in res.output and "planned attempts" in res.output


def test_schema_is_json_schema() -> None:
    res = CliRunner().invoke(cli, ["schema"])
    assert res.exit_code == 0
    schema = json.loads(res.output)
    assert schema["title"] == "casekit case file"
    assert {"case", "works", "models", "strategies"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False


def test_demo_case_validates() -> None:
    demo = Path(__file__).resolve().parents[1] / "cases" / "demo" / "case.yaml"
    case = load_case(demo)
    works = load_works(case)
    assert any(w.role == "control" for w in works)
    plan = build_plan(case, works)
    assert len(plan) > 20


def test_jinja_templates_are_sandboxed(tmp_path: Path) -> None:
    text = GOOD.replace(
        "    params: {prefix_words: 5, suffix_words: 5}",
        textwrap.indent(textwrap.dedent("""\
            params: {templates: ["{{ title.__class__.__mro__[1].__subclasses__() }}"]}"""), "    "),
    ).replace("prefix_continuation", "benign_prompts")
    msg = error_of(tmp_path, text)
    assert "template" in msg


def test_a_field_added_later_leaves_the_hash_of_older_cases_unchanged(tmp_path: Path) -> None:
    """A case written before `works[].boilerplate` existed keeps its hash (and so its attempt
    ids, and its runs resume); setting the field away from its default changes it."""
    from casekit.case import case_hash_form, load_case

    work = tmp_path / "w.txt"
    work.write_text("one two three four five six seven eight nine ten")
    base = ("case: {id: c, title: T, matter: M, examiner: E, organization: O}\n"
            "allow_no_control: true\n"
            "works:\n- {id: w, title: W, author: A, path: w.txt, role: subject,"
            " published: 2000-01-01%s}\n"
            "models:\n- {id: m, provider: openai-compatible, model: m,"
            " base_url: 'http://127.0.0.1:9/v1'}\n"
            "strategies:\n- {name: prefix_continuation}\n")
    (tmp_path / "a.yaml").write_text(base % "")
    (tmp_path / "b.yaml").write_text(base % ", boilerplate: keep")
    a, b = load_case(tmp_path / "a.yaml"), load_case(tmp_path / "b.yaml")
    assert "boilerplate" not in case_hash_form(a.spec)["works"][0]
    assert case_hash_form(b.spec)["works"][0]["boilerplate"] == "keep"
    assert a.sha256 != b.sha256
