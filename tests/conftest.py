"""Shared fixtures: small cases on disk, run with the scripted provider (faked at the edge)."""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import tests.scripted  # noqa: F401 - registers provider "scripted"
from tests.golden.make_golden import Rendered

REPO = Path(__file__).resolve().parents[1]

SUBJECT = (
    "It was a bright cold day in the valley and the river ran fast under the old stone bridge. "
    "The miller's daughter counted the sacks of grain twice before she trusted the number, "
    "because her father had taught her that a careless count is a kind of theft. Beyond the "
    "bridge the road climbed through beech woods towards the market town, where the bell in the "
    "square rang every hour and the merchants argued about the price of salt and wool. She "
    "loaded the cart, whistled for the dog, and set out before the frost had melted from the "
    "hedges, thinking of the letter she would post and of the answer she hoped to receive. "
) * 2
CONTROL = (
    "Copper kettles hummed in the lantern shop while Orvel Minsk-Tarrow sorted brass screws by "
    "the colour of their reflections, a method nobody else in Pellingham understood. Each "
    "evening he wrote the tally in a green ledger, crossed it out, and wrote it again in blue, "
    "insisting that numbers settle better on the second try. The apprentices pretended to "
    "agree and quietly counted the screws by size when he went home for supper. "
) * 2


def case_yaml(models: str, strategies: str, extra: str = "") -> str:
    return textwrap.dedent("""\
        case:
          id: unit
          title: Unit test case
          matter: none
          examiner: Tester
          organization: Test Org
        works:
          - id: subject
            title: The Mill
            author: Anon
            path: subject.txt
            role: subject
          - id: control
            title: The Lantern Shop
            author: Test Org
            path: control.txt
            role: control
        """) + models + strategies + extra


SCRIPTED_MODELS = """\
models:
  - id: bot
    provider: scripted
    model: scripted-1
    params:
      outputs:
        subject: "Sure! Here it is: The miller's daughter counted the sacks of grain twice
          before she trusted the number, because her father had taught her that a careless
          count is a kind of theft. Beyond the bridge the road climbed."
        control: "I do not know this text, but copper and brass are lovely metals."
      top1: 0.5
"""

STRATEGIES = """\
strategies:
  - name: prefix_continuation
    params: {prefix_words: 10, suffix_words: 30, max_windows: 3}
  - name: benign_prompts
    params: {templates: ["Tell me about {{ title }}."]}
  - name: teacher_forced
    params: {prefix_words: 10, suffix_words: 20, max_windows: 2}
thresholds: {min_span_words: 15, legal_defaults: false}
"""


@pytest.fixture
def case_dir(tmp_path: Path) -> Path:
    (tmp_path / "subject.txt").write_text(SUBJECT)
    (tmp_path / "control.txt").write_text(CONTROL)
    (tmp_path / "case.yaml").write_text(case_yaml(SCRIPTED_MODELS, STRATEGIES))
    return tmp_path


@contextlib.contextmanager
def fetches_recorded() -> Iterator[list[str]]:
    """Every URL WeasyPrint asks casekit's fetcher for while the block runs (the fetcher still
    answers as it would)."""
    from casekit.report.render import SafeFetcher

    fetched: list[str] = []
    original = SafeFetcher.fetch

    def spy(self: SafeFetcher, url: str, headers: object = None) -> object:
        fetched.append(url)
        return original(self, url, headers)

    mp = pytest.MonkeyPatch()
    mp.setattr(SafeFetcher, "fetch", spy)
    try:
        yield fetched
    finally:
        mp.undo()


@pytest.fixture(autouse=True, scope="session")
def _examiner_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The examiner signing key of every run in the tests lives in a temporary CASEKIT_HOME,
    never in the user's ~/.config (casekit.anchor)."""
    import os

    old = {k: os.environ.get(k) for k in ("CASEKIT_HOME", "CASEKIT_EXAMINER_KEY")}
    os.environ["CASEKIT_HOME"] = str(tmp_path_factory.mktemp("casekit-home"))
    os.environ.pop("CASEKIT_EXAMINER_KEY", None)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def golden_demo(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """The golden demo ledger (a real `casekit demo` run) analyzed and reported once per
    session, for the tests that read its report (words, legibility)."""
    from tests.golden.make_golden import render_demo

    return render_demo(tmp_path_factory.mktemp("golden-demo"))
