"""Every registered strategy through the same checks (after garak's tests/probes/test_probes.py):
parameters reject unknown keys, the intent is in the taxonomy, plans are deterministic, and the
measures it declares are well formed and run on nothing. Then the seam end to end: a strategy
defined here, with its own measure, is registered, run, analyzed and reloaded without touching
casekit; and no strategy name is written into casekit/analysis."""

from __future__ import annotations

import ast
import json
import random
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import jinja2
import pytest

from casekit.analysis.analyze import analyze_run, findings_bytes
from casekit.analysis.findings import AttemptAnalysis, Findings, ModelWorkFinding
from casekit.analysis.registry import active_measures, field_index
from casekit.case import Thresholds, load_case
from casekit.errors import CasekitError
from casekit.records import Intent
from casekit.run.runner import Runner
from casekit.strategies.base import (
    Probe,
    Strategy,
    StrategyParamError,
    StrategyParams,
    register_strategy,
    strategy_class,
    strategy_names,
    unregister_strategy,
)
from casekit.strategies.measures import (
    AttemptContext,
    FindingContext,
    Measure,
    MeasureFields,
)
from casekit.tokenizer import WhitespaceTokenizer
from casekit.works import Work, load_works
from tests.conftest import REPO, SCRIPTED_MODELS, SUBJECT, case_yaml

NAMES = strategy_names()
FMT = {"k": 5, "near_exact": 0.9, "min_span_words": 40}


#: A small work every strategy can plan on: chapter headings (iterative continuation), proper
#: names far apart (name cloze), and enough words for 100-word and 100-token windows.
SMALL_WORK = "".join(
    f"CHAPTER {n}\n\n" + " ".join(
        f"{SUBJECT.split('. ')[i % 4]}, said {name} to the miller on the bridge." for i in range(3))
    + "\n\n" for n, name in (("I", "Ada"), ("II", "Tobin"), ("III", "Ada"), ("IV", "Tobin")))


@pytest.fixture
def works(case_dir: Path) -> list[Work]:
    (case_dir / "subject.txt").write_text(SMALL_WORK)
    return load_works(load_case(case_dir / "case.yaml"))


def _plan(cls: type[Strategy], work: Work, seed: int) -> list[Probe]:
    s = cls(cls.example_params)
    rng = random.Random(seed)
    if cls.needs_tokenizer:
        return list(s.plan_tokens(work, rng, WhitespaceTokenizer()))
    return list(s.plan(work, rng))


@pytest.mark.parametrize("name", NAMES)
def test_params_reject_unknown_keys(name: str) -> None:
    cls = strategy_class(name)
    assert issubclass(cls.Params, StrategyParams)
    assert cls.Params.model_config.get("extra") == "forbid"
    with pytest.raises(StrategyParamError, match="unknown parameter; allowed"):
        cls({**cls.example_params, "no_such_parameter": 1})


@pytest.mark.parametrize("name", NAMES)
def test_declares_name_intent_and_description(name: str) -> None:
    cls = strategy_class(name)
    assert cls.name == name
    assert cls.intent in typing.get_args(Intent)
    assert isinstance(cls.description, str) and len(cls.description) > 20


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_plan(name: str, works: list[Work]) -> None:
    cls = strategy_class(name)
    work = next(w for w in works if w.id == "subject")
    first = _plan(cls, work, 7)
    assert first, f"{name} planned nothing on a small work with its example params"
    assert first == _plan(cls, work, 7)
    for p in first:
        if p.kind == "score":
            assert p.continuation, f"{name}: a score probe needs the text it scores"


@pytest.mark.parametrize("name", NAMES)
def test_measures_are_declared_with_definitions(name: str) -> None:
    for m in strategy_class(name).measures:
        assert issubclass(m, Measure)
        assert m.name and m.definition.strip()
        assert m.definition.format(**FMT)  # only the thresholds' placeholders
        for fields, core in ((m.AttemptFields, AttemptAnalysis), (m.FindingFields,
                                                                   ModelWorkFinding)):
            if fields is None:
                continue
            assert issubclass(fields, MeasureFields)
            assert fields.model_config.get("extra") == "forbid"
            fields()  # every field has an empty default
            clash = set(fields.model_fields) & set(core.model_fields)
            assert not clash, f"{m.__name__} redeclares core fields {clash}"


@pytest.mark.parametrize("name", NAMES)
def test_measure_hooks_run_on_no_attempts(name: str, works: list[Work]) -> None:
    work = works[0]
    for cls in strategy_class(name).measures:
        m = cls()
        ctx = FindingContext(model_id="m", work=work, thresholds=Thresholds(), attempts=[])
        got = m.finding(ctx)
        assert got is None or isinstance(got, cls.FindingFields or ())
        assert m.bootstrap(ctx) == {}


def test_measure_fields_are_unique_across_strategies() -> None:
    """Each findings.json key belongs to one measure (building the index checks it)."""
    for level in ("attempt", "finding"):
        index = field_index(level)  # type: ignore[arg-type]
        assert index
        core = AttemptAnalysis if level == "attempt" else ModelWorkFinding
        assert not set(index) & set(core.model_fields)


def _string_constants(path: Path) -> set[str]:
    return {n.value for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(n, ast.Constant) and isinstance(n.value, str)}


@pytest.mark.parametrize("package", ["analysis", "report"])
def test_no_strategy_name_in_the_analysis(package: str) -> None:
    """The analysis asks strategies for their measures, and the report iterates the measures
    present; neither branches on (or keys words by) a strategy's name."""
    names = set(strategy_names())
    files = sorted((REPO / "casekit" / package).rglob("*.py"))
    assert len(files) > 5
    hits = {str(p.relative_to(REPO)): sorted(_string_constants(p) & names) for p in files}
    assert {p: h for p, h in hits.items() if h} == {}


def test_the_name_check_finds_a_name(tmp_path: Path) -> None:
    """The check above would pass on a broken scanner; this one shows it can fail."""
    p = tmp_path / "x.py"
    p.write_text('if a.strategy == "name_cloze":\n    pass\n')
    assert "name_cloze" in _string_constants(p)


def test_register_strategy_refuses_a_taken_name() -> None:
    class Shadow(Strategy):
        name = "prefix_continuation"
        intent = "benign"
        description = "shadows a built-in"

        def plan(self, work: Work, rng: random.Random) -> Iterator[Probe]:
            yield from ()

    with pytest.raises(CasekitError, match="is taken"):
        register_strategy(Shadow)


# --- A throwaway strategy with its own measure, end to end ------------------------------------


class ExclaimCount(MeasureFields):
    exclamations: int | None = None
    """Exclamation marks in the output."""


class ExclaimTotal(MeasureFields):
    exclamations_total: int | None = None


class Exclaim(Measure):
    name = "exclamations"
    definition = "Exclamation marks per output (a test measure; spans >= {min_span_words})."
    AttemptFields = ExclaimCount
    FindingFields = ExclaimTotal

    def attempt(self, ctx: AttemptContext) -> ExclaimCount:
        return ExclaimCount(exclamations=ctx.text.count("!"))

    def finding(self, ctx: FindingContext) -> ExclaimTotal | None:
        counts = [f.exclamations for x in ctx.attempts
                  if (f := x.measure(ExclaimCount)) is not None and f.exclamations is not None]
        return ExclaimTotal(exclamations_total=sum(counts)) if counts else None


class Shout(Strategy):
    name = "shout_test"
    intent = "benign"
    description = "Ask the model to shout the title (a throwaway strategy for the seam test)."
    measures: ClassVar[tuple[type[Measure], ...]] = (Exclaim,)

    def plan(self, work: Work, rng: random.Random) -> Iterator[Probe]:
        yield Probe(kind="instruct", text=f"Shout {work.spec.title}!", label="shout")


@pytest.fixture
def shout() -> Iterator[type[Strategy]]:
    register_strategy(Shout)
    yield Shout
    unregister_strategy(Shout.name)


@pytest.mark.usefixtures("shout")
def test_a_new_strategy_brings_its_measure_end_to_end(case_dir: Path) -> None:
    strategies = """\
strategies:
  - name: shout_test
  - name: prefix_continuation
    params: {prefix_words: 10, suffix_words: 30, max_windows: 1}
thresholds: {min_span_words: 15, legal_defaults: false}
"""
    (case_dir / "case.yaml").write_text(case_yaml(SCRIPTED_MODELS, strategies))
    f = analyze_run(Runner(load_case(case_dir / "case.yaml")).run().run_dir)
    raw = json.loads(findings_bytes(f))
    rows = [a.model_dump(mode="json") for a in f.attempts]  # as attempts.parquet holds them
    shouts = [a for a in rows if a["strategy"] == "shout_test"]
    others = [a for a in rows if a["strategy"] != "shout_test"]
    # The scripted bot answers "Sure! Here it is: ..." on the subject, no "!" on the control.
    assert sorted(a["exclamations"] for a in shouts) == [0, 1]
    assert all(a["exclamations"] is None for a in others)  # the empty value, not missing
    by_work = {x["work_id"]: x["exclamations_total"] for x in raw["findings"]}
    assert by_work == {"subject": 1, "control": 0}
    assert raw["definitions"]["exclamations"] == ("Exclamation marks per output (a test "
                                                  "measure; spans >= 15).")
    # Built-in measures are all still there, and findings load back byte for byte.
    assert "discoverable" in f.attempts[0].model_dump(mode="json")
    assert "census" in raw["findings"][0]
    again = _reloaded(f)
    assert findings_bytes(again) == findings_bytes(f)
    x = next(a for a in again.attempts if a.strategy == "shout_test" and a.work_id == "subject")
    assert x.measure(ExclaimCount) == ExclaimCount(exclamations=1)


def test_unknown_measure_keys_are_still_rejected() -> None:
    """Keys no registered measure declares stay errors (extra="forbid")."""
    import pydantic

    with pytest.raises(pydantic.ValidationError, match="exclamations"):
        AttemptAnalysis.model_validate({
            "attempt_id": "a", "seq": 1, "record_hash": "", "model_id": "m", "work_id": "w",
            "role": "subject", "strategy": "s", "strategy_key": "s#0", "intent": "benign",
            "mode": "chat", "sample": 0, "label": "", "outcome": "no_match",
            "exclamations": 3})


def test_builtin_measures_are_active_for_any_case() -> None:
    names = {am.cls.name for am in active_measures([])}
    assert {"name_cloze", "divergence", "pz_census", "nv_recall", "discoverable_5050",
            "pz_upper_bound", "top1_share", "p_z", "np_discoverable"} <= names


# --- A throwaway strategy whose measure brings its own partial: two files ---------------------


class ExclaimShown(Exclaim):
    """The same measure, shown in the report by its own partial."""

    label = "Exclamation marks"
    partial = "measures/exclamations.html.j2"


class ShoutShown(Shout):
    name = "shout_shown_test"
    measures: ClassVar[tuple[type[Measure], ...]] = (ExclaimShown,)


PARTIAL = (
    '<div class="exclaim" id="exclaim-{{ row.model_id }}-{{ row.work_id }}">\n'
    "<h4>{{ measure.title() }} [{{ measure.name }}]</h4>\n"
    '<p class="small">Shouted {{ fields.exclamations_total }} '
    'time{{ "" if fields.exclamations_total == 1 else "s" }}'
    "{% if control %}; control {{ control.exclamations_total }}{% endif %}; "
    "share {{ fmt_pct(0.5) }}.</p>\n"
    "</div>\n")


@pytest.fixture
def shout_shown() -> Iterator[type[Strategy]]:
    register_strategy(ShoutShown)
    yield ShoutShown
    unregister_strategy(ShoutShown.name)


@pytest.mark.usefixtures("shout_shown")
def test_a_new_measure_shows_itself_in_the_report(case_dir: Path, tmp_path: Path) -> None:
    """Adding a strategy with its own measure is two files: the strategy (with its measure)
    and the measure's partial, here in a user template dir. The report includes the partial
    where the measure has figures, with the control's beside, and lists its definition."""
    from casekit.report import build_report
    from casekit.report.sections.further import further_definitions
    from casekit.report.verify import page_texts
    from casekit.report.views import KV

    strategies = """\
strategies:
  - name: shout_shown_test
thresholds: {min_span_words: 15, legal_defaults: false}
"""
    (case_dir / "case.yaml").write_text(case_yaml(SCRIPTED_MODELS, strategies))
    run_dir = Runner(load_case(case_dir / "case.yaml")).run().run_dir
    f = analyze_run(run_dir)
    templates = tmp_path / "templates"
    (templates / "partials" / "measures").mkdir(parents=True)
    (templates / "partials" / "measures" / "exclamations.html.j2").write_text(PARTIAL)
    paths = build_report(run_dir, f, out_dir=tmp_path / "report", template_dir=templates)
    html = paths.html.read_text(encoding="utf-8")
    # The subject's block (1 "!", beside the control's 0); the control's own block has no
    # figure to show (0 is a figure, so it is shown, without a control beside it).
    assert html.count('class="exclaim"') == 2
    assert "Exclamation marks [exclamations]" in html
    assert "Shouted 1 time; control 0; share 50.0%." in html
    assert "Shouted 0 times; share 50.0%." in html
    # Its definition is listed under its label (Methods), and last among the further
    # measures' (its further_order is the default).
    assert "Exclamation marks per output (a test measure; spans &gt;= 15)." in html
    assert further_definitions(f)[-1] == KV(
        "Exclamation marks", "Exclamation marks per output (a test measure; spans >= 15).",
        "exclamations")
    text = "".join("".join(p.split()) for p in page_texts(paths.pdf))  # no spaces there
    assert "Shouted1time;control0;share50.0%." in text
    # Without the partial the template set lacks the file: the report says which is missing.
    with pytest.raises(jinja2.TemplateNotFound, match="exclamations.html.j2"):
        build_report(run_dir, f, out_dir=tmp_path / "bare")


def _reloaded(f: Findings) -> Findings:
    """Findings loaded back from the bytes casekit writes: findings.json and attempts.parquet."""
    from casekit.analysis.analyze import findings_bytes, findings_from_bytes
    from casekit.analysis.attempt_table import table_files

    return findings_from_bytes(findings_bytes(f), table_files(f.attempts)[0])
