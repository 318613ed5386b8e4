"""No-behaviour-change guard: a recorded demo run analyzes and reports exactly as it did.

tests/golden/demo holds a real `casekit demo` ledger (186 attempts on the two embedded models),
the case and works it ran on, and what casekit made of it when it was recorded: findings.json
(bytes) and the text of every report page. A refactoring must leave both unchanged; a change
that is meant to change them re-records them with tests/golden/make_golden.py and says so.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.golden.make_golden import DEMO, render

pytestmark = pytest.mark.slow

# Lines that name the source revision of the code that *rendered* the report may differ; the
# ledger's own recorded revision (the run's) may not. None such are printed today; the pattern
# is here so that a report-time revision line, if one is added, does not make this test flaky.
RENDER_REVISION = re.compile(r"^rendered by casekit .* revision [0-9a-f]{7,40}$")
# The template set's hash (chain of custody, certification: "Report templates 20 files
# sha256:<64 hex>", wrapped over lines on page 60) changes with any edit of a template, not
# with a number: it is masked, its file count and every other line are compared.
TEMPLATE_HASH = re.compile(r"(\b\d+ files sha256:)(?:\n?[0-9a-f]){64}(?![0-9a-f])")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, list[str]]:
    return render(tmp_path_factory.mktemp("golden"))


def test_findings_json_is_byte_identical(rendered: tuple[bytes, list[str]]) -> None:
    data, _ = rendered
    expected = (DEMO / "findings.json").read_bytes()
    if data != expected:
        at = next(i for i, (a, b) in enumerate(zip(data, expected, strict=False)) if a != b) \
            if len(data) == len(expected) or data[:len(expected)] != expected else len(expected)
        pytest.fail(f"findings.json differs from the golden one at byte {at}: "
                    f"{data[max(0, at - 80):at + 80]!r} vs {expected[max(0, at - 80):at + 80]!r}")


def _lines(page: str) -> list[str]:
    page = TEMPLATE_HASH.sub(r"\1<template set hash>", page)
    return [ln for ln in page.splitlines() if not RENDER_REVISION.match(ln.strip())]


def test_report_page_text_is_unchanged(rendered: tuple[bytes, list[str]]) -> None:
    _, pages = rendered
    expected = json.loads((DEMO / "pages.json").read_text(encoding="utf-8"))
    assert len(pages) == len(expected), f"{len(pages)} pages, golden {len(expected)}"
    for n, (got, want) in enumerate(zip(pages, expected, strict=True), start=1):
        g, w = _lines(got), _lines(want)
        if g != w:
            i = next((i for i, (a, b) in enumerate(zip(g, w, strict=False)) if a != b),
                     min(len(g), len(w)))
            pytest.fail(f"page {n}, line {i + 1}: {g[i] if i < len(g) else '<none>'!r} "
                        f"vs golden {w[i] if i < len(w) else '<none>'!r}")


def test_the_golden_check_sees_a_changed_number(tmp_path: Path) -> None:
    """The comparison is not vacuous: one digit changed in a recorded page is a difference."""
    expected = json.loads((DEMO / "pages.json").read_text(encoding="utf-8"))
    page = next(p for p in expected if re.search(r"\d", p))
    changed = re.sub(r"\d", lambda m: str((int(m.group()) + 1) % 10), page, count=1)
    assert _lines(changed) != _lines(page)


def test_only_the_template_hash_is_masked() -> None:
    """The mask takes the template set's hash (wrapped or not) and nothing around it."""
    wrapped = "Report\ntemplates\n20 files sha256:" + "a" * 25 + "\n" + "b" * 32 + "\n" + \
        "c" * 7 + "\n\u2014 not attached"
    assert _lines(wrapped) == ["Report", "templates", "20 files sha256:<template set hash>",
                               "\u2014 not attached"]
    one = "Report templates 20 files sha256:" + "d" * 64
    assert _lines(one) == ["Report templates 20 files sha256:<template set hash>"]
    assert _lines(one.replace("20 files", "21 files")) != _lines(one)
    other = "sha256:" + "e" * 64  # another hash (a work's, the ledger head's) is compared
    assert _lines(other) == [other]
