"""Planning streams: the same attempts and the same hash as the list it replaced, in bounded
memory (issue 14, part 6).

A plan larger than ``casekit.plan.KEEP_IN_MEMORY`` is planned again whenever it is iterated and
hashed one attempt at a time; these tests force that path on small cases (``KEEP_IN_MEMORY =
0``) and compare it with the list-based computation casekit used before, on the recorded demo
run too (its ``run_start`` holds the hash the old code computed).
"""

from __future__ import annotations

import gc
import random
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import casekit.plan
from casekit.canonical import canonical_json, sha256_json
from casekit.case import load_case
from casekit.cli import cli
from casekit.ledger import LEDGER_NAME, iter_records, read_records
from casekit.plan import KEEP_IN_MEMORY, Plan, attempt_json, build_plan
from casekit.records import AttemptRecord, Decoding, PlannedAttempt, RunStart, Session, WorkRange
from casekit.run.runner import Runner
from casekit.works import load_works
from tests.conftest import CONTROL, SCRIPTED_MODELS, STRATEGIES, SUBJECT, case_yaml

GOLDEN = Path(__file__).resolve().parent / "golden" / "demo"


def old_plan_sha256(attempts: list[PlannedAttempt]) -> str:
    """How the plan's hash was computed before plans streamed: one canonical JSON document of
    the whole list."""
    return sha256_json([a.model_dump(mode="json") for a in attempts])


TWO_MODELS = SCRIPTED_MODELS + """\
  - id: base
    provider: scripted
    model: scripted-2
    interface: completion
    params:
      outputs: {subject: "the road climbed", control: "brass screws"}
"""

MANY = """\
strategies:
  - name: prefix_continuation
    params: {prefix_words: 10, suffix_words: 10, stride_words: 3, max_windows: 12,
             chat_template: "Continue \\u2028 «{{ prefix }}»\\u0001 {{ title }}"}
  - name: benign_prompts
    params: {templates: ["Tell me about {{ title }} by {{ author }}."]}
  - name: teacher_forced
    params: {prefix_words: 10, suffix_words: 20, max_windows: 2}
  - name: instruction_recall
    params: {n_words: 12}
  - name: pz_census
    params: {prefix_tokens: 10, suffix_tokens: 10, stride_chars: 40}
    models: [bot]
decoding: {temperature: 0.7, top_p: 0.95, top_k: 40, max_tokens: 64}
samples: 3
seed: 2147483000
thresholds: {min_span_words: 15, legal_defaults: false}
"""


def _write(folder: Path, models: str, strategies: str, subject: str = SUBJECT) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "subject.txt").write_text(subject, encoding="utf-8")
    (folder / "control.txt").write_text(CONTROL, encoding="utf-8")
    (folder / "case.yaml").write_text(case_yaml(models, strategies), encoding="utf-8")
    return folder / "case.yaml"


def _cases(tmp_path: Path) -> list[Path]:
    unicode_subject = SUBJECT.replace("miller's", "mill\u00e9r\u2019s \U0001f600").replace(
        "bridge", "bri\u0007dge")
    return [_write(tmp_path / "plain", SCRIPTED_MODELS, STRATEGIES),
            _write(tmp_path / "many", TWO_MODELS, MANY, unicode_subject)]


def _streamed(monkeypatch: pytest.MonkeyPatch, case_path: Path) -> Plan:
    monkeypatch.setattr(casekit.plan, "KEEP_IN_MEMORY", 0)
    case = load_case(case_path)
    plan = build_plan(case, load_works(case))
    monkeypatch.undo()
    return plan


def test_streamed_plan_yields_the_listed_attempts_and_hash(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           ) -> None:
    for path in _cases(tmp_path):
        case = load_case(path)
        kept = build_plan(case, load_works(case))
        assert not kept.streamed and len(kept) < KEEP_IN_MEMORY
        listed = kept.attempts
        streamed = _streamed(monkeypatch, path)
        assert streamed.streamed
        # Planned again on each iteration: the same attempts, in the same order, each time.
        assert list(streamed) == listed == list(streamed)
        assert [a.ordinal for a in listed] == list(range(len(listed)))
        assert len(streamed) == len(listed) and streamed.counts == kept.counts
        # The hash streamed on build_plan's pass, the hash of the kept list and the old
        # one-document hash are one and the same.
        assert streamed.sha256 == kept.sha256 == old_plan_sha256(listed)
        for model_id in kept.counts:
            mine = [a for a in listed if a.model_id == model_id]
            assert list(streamed.model_attempts(model_id)) == mine
            # Skipping: the rest keep their ordinals, and skipped ones are not rendered.
            skip = {a.id for a in mine[::2]}
            assert list(streamed.model_attempts(model_id, skip=skip)) == mine[1::2]
            assert list(kept.model_attempts(model_id, skip=skip)) == mine[1::2]


def test_validate_counts_the_plan_without_rendering_it(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """``casekit validate`` counts the strategies' probes (build_plan(render=False)): the same
    counts as the rendered plan, no attempt rendered; the plan it returns still iterates to
    the same attempts and hash."""
    rendered: list[str] = []
    original = casekit.plan._render

    def spy(*a: object) -> PlannedAttempt:
        rendered.append("x")
        return original(*a)  # type: ignore[arg-type]

    for path in _cases(tmp_path):
        case = load_case(path)
        works = load_works(case)
        kept = build_plan(case, works)
        monkeypatch.setattr(casekit.plan, "_render", spy)
        counted = build_plan(case, works, render=False)
        assert not rendered and counted.streamed
        assert counted.counts == kept.counts and len(counted) == len(kept)
        monkeypatch.undo()
        assert list(counted) == kept.attempts and counted.sha256 == kept.sha256
        result = CliRunner().invoke(cli, ["validate", str(path)])
        assert result.exit_code == 0 and f"{len(kept)} planned attempts" in result.output


def test_validate_still_raises_a_planning_error(tmp_path: Path) -> None:
    """An error a strategy raises while planning (here: a census on a provider without a
    tokenizer, named in the strategy's models) is a one-line error, exit 2."""
    from casekit.providers.base import Provider
    from tests.scripted import ScriptedProvider

    path = _write(tmp_path / "case", SCRIPTED_MODELS, MANY)
    original = ScriptedProvider.plan_tokenizer
    try:
        ScriptedProvider.plan_tokenizer = classmethod(  # type: ignore[method-assign]
            Provider.plan_tokenizer.__func__)  # type: ignore[attr-defined]
        result = CliRunner().invoke(cli, ["validate", str(path)])
    finally:
        ScriptedProvider.plan_tokenizer = original  # type: ignore[method-assign]
    assert result.exit_code == 2
    assert "gives no tokenizer; remove 'bot' from this list" in result.output


def test_the_many_case_covers_what_the_fast_encoding_must_get_right(tmp_path: Path) -> None:
    """The second case has sampled attempts (non-integral floats), a large seed, two
    interfaces, score attempts, non-ASCII and control characters in prompts."""
    path = _cases(tmp_path)[1]
    case = load_case(path)
    attempts = build_plan(case, load_works(case)).attempts
    assert {a.mode for a in attempts} == {"chat", "completion", "score"}
    assert any(a.decoding.temperature == 0.7 for a in attempts)
    assert any("\u0007" in (a.prompt or "") for a in attempts)
    assert any("\u2028" in m.content for a in attempts for m in a.messages)
    for a in attempts:
        assert attempt_json(a) == canonical_json(a.model_dump(mode="json"))


@pytest.mark.skipif(not (GOLDEN / LEDGER_NAME).exists(), reason="no golden demo ledger")
def test_demo_plan_is_the_one_the_recorded_demo_run_planned(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/golden/demo holds a real `casekit demo` run recorded before plans streamed: its
    run_start has the old hash, its attempt records the old attempts."""
    case = load_case(GOLDEN / "case.yaml")
    try:
        works = load_works(case)
        kept = build_plan(case, works)
    except Exception as exc:  # noqa: BLE001 - the embedded models' tokenizers are needed
        pytest.skip(f"the demo's models cannot plan here: {exc}")
    recs = list(iter_records(GOLDEN / LEDGER_NAME))
    start = recs[0]
    assert isinstance(start, RunStart)
    recorded = sorted((r.attempt for r in recs if isinstance(r, AttemptRecord)),
                      key=lambda a: a.ordinal)
    # The run was planned before issue 17's max_tokens rule: then a strategy's size for its
    # target (prefix continuation 2 x suffix_words, name cloze 12) beat the case's stated
    # decoding.max_tokens (96); now the case's wins. Planned again under the old rule, the
    # plan is the recorded one, attempt for attempt and hash for hash.
    assert len(kept) == start.planned_attempts == len(recorded)
    changed = 0
    for now, then in zip(kept.attempts, recorded, strict=True):
        if now.decoding.max_tokens != then.decoding.max_tokens:
            changed += 1  # the strategy's size gave way to the case's stated max_tokens
            assert now.decoding.max_tokens == case.spec.decoding.max_tokens
            assert now.decoding.max_tokens_set_by is None
            assert now.strategy in ("prefix_continuation", "name_cloze", "instruction_recall")
        elif now.decoding != then.decoding:  # the strategy's own limit, now said to be so
            assert now.decoding.max_tokens_set_by == "strategy"
            assert now.decoding.max_tokens != case.spec.decoding.max_tokens
        assert now.model_copy(update={"decoding": then.decoding}) == then
    assert changed, "the golden run predates the rule: some attempts must differ"
    with pytest.MonkeyPatch.context() as old_rule:
        old_rule.setattr(casekit.plan, "_render", _old_rule_render(casekit.plan._render))
        kept = build_plan(case, works)
        assert kept.attempts == recorded
        assert kept.sha256 == old_plan_sha256(recorded) == start.plan_sha256
        streamed = _streamed(monkeypatch, GOLDEN / "case.yaml")
        assert streamed.streamed and streamed.sha256 == start.plan_sha256
        assert list(streamed) == recorded


def _old_rule_render(render: Any) -> Any:
    """casekit.plan._render with the max_tokens rule before issue 17: the probe's own limit or
    its size for the target, else the case's."""
    def old(case: Any, model: Any, interface: Any, key: Any, strat: Any, work: Any,
            index: int, sample: int, probe: Any, ordinal: int, aid: str) -> PlannedAttempt:
        size = probe.max_tokens or probe.default_max_tokens
        probe = probe.model_copy(update={"max_tokens": size, "default_max_tokens": None})
        out: PlannedAttempt = render(case, model, interface, key, strat, work, index, sample,
                                     probe, ordinal, aid)
        return out.model_copy(update={"decoding": out.decoding.model_copy(
            update={"max_tokens_set_by": None})})
    return old


def test_a_streamed_run_records_what_a_kept_run_records_and_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "case", TWO_MODELS, STRATEGIES)
    case = load_case(path)
    kept_out = Runner(case, tmp_path / "kept").run()
    monkeypatch.setattr(casekit.plan, "KEEP_IN_MEMORY", 0)
    streamed_out = Runner(case, tmp_path / "streamed").run()
    assert kept_out.complete and streamed_out.complete

    def planned(run: Path) -> tuple[str, list[PlannedAttempt]]:
        recs = read_records(run / LEDGER_NAME)
        assert isinstance(recs[0], RunStart)
        return recs[0].plan_sha256, sorted(
            (r.attempt for r in recs if isinstance(r, AttemptRecord)), key=lambda a: a.ordinal)

    assert planned(tmp_path / "streamed") == planned(tmp_path / "kept")
    # An interrupted run (run_start and three attempts), resumed on the streamed path.
    ledger = tmp_path / "streamed" / LEDGER_NAME
    ledger.write_bytes(b"".join(ledger.read_bytes().splitlines(keepends=True)[:4]))
    out = Runner(load_case(path), tmp_path / "streamed").run()
    assert out.complete and out.stats.skipped == 3
    assert out.stats.done == len(planned(tmp_path / "kept")[1]) - 3
    assert planned(tmp_path / "streamed") == planned(tmp_path / "kept")


def test_resume_of_a_done_model_does_not_plan_it(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A model whose attempts are all recorded is not planned again on resume (the ledger
    counts attempts per model)."""
    path = _write(tmp_path / "case", TWO_MODELS, STRATEGIES)
    monkeypatch.setattr(casekit.plan, "KEEP_IN_MEMORY", 0)
    out = Runner(load_case(path)).run()
    lines = out.ledger_path.read_bytes().splitlines(keepends=True)
    # Keep the chain up to the first model's last attempt record: the second model has
    # attempts left, the first has none.
    recs = read_records(out.ledger_path)
    cut = max(i for i, r in enumerate(recs) if isinstance(r, AttemptRecord)
              and r.attempt.model_id == "bot") + 1
    assert any(isinstance(r, AttemptRecord) and r.attempt.model_id == "base"
               for r in recs[cut:])
    out.ledger_path.write_bytes(b"".join(lines[:cut]))
    asked: list[str | None] = []
    original = casekit.plan._Planner.attempts

    def spy(self, model_id, ordinal, skip):  # type: ignore[no-untyped-def]
        asked.append(model_id)
        return original(self, model_id, ordinal, skip)

    monkeypatch.setattr(casekit.plan._Planner, "attempts", spy)
    again = Runner(load_case(path)).run()
    dropped = sum(isinstance(r, AttemptRecord) for r in recs[cut:])
    assert again.complete and again.stats.done == dropped and again.stats.skipped == cut - 1
    assert asked == [None, "base"]  # build_plan's pass, then only the unfinished model


def _big_case(folder: Path, words: int, models: int) -> Path:
    """prefix_continuation at a stride of one word over a generated work: about ``words``
    attempts per model."""
    rng = random.Random(5)
    vocab = [f"w{i}" for i in range(3000)]
    text = " ".join(rng.choice(vocab) for _ in range(words + 100)) + "\n"
    model_yaml = "models:\n" + "".join(
        f"  - id: m{i}\n    provider: scripted\n    model: s{i}\n" for i in range(models))
    strategies = ("strategies:\n  - name: prefix_continuation\n"
                  "    params: {prefix_words: 50, suffix_words: 50, stride_words: 1, "
                  "max_windows: null}\n    works: [subject]\n")
    return _write(folder, model_yaml, strategies, text)


LARGE_WORDS = 15_000
"""Words of the generated work: 15,001 windows per model, 30,002 attempts for two models.
Measured with tracemalloc: validating them took 216 MB and planning and hashing them 370 MB
when the plan was a list (before streaming); now under 2 MB."""
BOUND = 12e6
"""Traced memory a plan may hold beyond the works: the attempts kept while fewer than
``KEEP_IN_MEMORY`` have been seen (set to 100 here) and one attempt at a time."""


@pytest.mark.slow
def test_planning_a_large_case_does_not_hold_its_attempts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """build_plan's pass (count and hash, as a run does it) and a model's attempts taken one by
    one, as the runner's workers take them: peak traced memory does not grow with the
    attempts."""
    monkeypatch.setattr(casekit.plan, "KEEP_IN_MEMORY", 100)
    path = _big_case(tmp_path / "big", LARGE_WORDS, 2)
    case = load_case(path)
    works = load_works(case)
    _ = works[0].tokens, works[1].tokens  # the works' own indexes are not the plan's
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        plan = build_plan(case, works)
        assert plan.streamed and len(plan) == 2 * (LARGE_WORDS + 1)
        hashed_peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.reset_peak()
        n = sum(1 for _ in plan.model_attempts("m1", skip={"a-none"}))
        iter_peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert n == LARGE_WORDS + 1
    assert hashed_peak < BOUND, f"planning held {hashed_peak / 1e6:.0f} MB"
    assert iter_peak < BOUND, f"iterating held {iter_peak / 1e6:.0f} MB"


@pytest.mark.slow
def test_validate_streams_a_large_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(casekit.plan, "KEEP_IN_MEMORY", 100)
    path = _big_case(tmp_path / "big", LARGE_WORDS, 2)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        result = CliRunner().invoke(cli, ["validate", str(path)])
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0, result.output
    assert f"{2 * (LARGE_WORDS + 1)} planned attempts" in result.output
    # Beyond the plan: loading the case and tokenizing the works.
    assert peak < BOUND + 8e6, f"validate held {peak / 1e6:.0f} MB"


PLAIN = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(prompt=PLAIN, label=PLAIN, expected=st.none() | PLAIN,
       temperature=st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
           [0.0, -0.0, 1.0, 0.7, 1e-4, 9.99e15, 1e16, 1e-5, 2.5]),
       top_p=st.none() | st.floats(min_value=-1e20, max_value=1e20),
       seed=st.none() | st.integers(min_value=-(2**60), max_value=2**60),
       start=st.integers(min_value=0, max_value=2**54),
       stop=st.lists(PLAIN, max_size=3),
       session=st.booleans())
def test_attempt_json_is_canonical_json(prompt: str, label: str, expected: str | None,
                                        temperature: float, top_p: float | None,
                                        seed: int | None, start: int, stop: list[str],
                                        session: bool) -> None:
    a = PlannedAttempt(
        id="a-1", ordinal=3, model_id="m", strategy="s", strategy_key="s#0", work_id="w",
        intent="adversarial", index=2, mode="completion", prompt=prompt, label=label,
        expected=expected, decoding=Decoding(temperature=temperature, top_p=top_p, seed=seed,
                                             stop=stop),
        target=WorkRange(start=start, end=start + 1), supplied=[WorkRange(start=0, end=start)],
        session=Session(max_turns=3, continue_message=prompt) if session else None)
    try:
        want: bytes | type[Exception] = canonical_json(a.model_dump(mode="json"))
    except Exception as exc:  # noqa: BLE001 - the fast encoding must fail the same way
        want = type(exc)
    if isinstance(want, bytes):
        assert attempt_json(a) == want
    else:
        with pytest.raises(want):
            attempt_json(a)


def test_attempt_json_escapes_every_code_point_as_canonical_json() -> None:
    text = "".join(chr(i) for i in range(0x110000) if not 0xD800 <= i <= 0xDFFF)
    a = PlannedAttempt(id="a", ordinal=0, model_id="m", strategy="s", strategy_key="s#0",
                       work_id="w", intent="benign", index=0, mode="completion", prompt=text)
    assert attempt_json(a) == canonical_json(a.model_dump(mode="json"))
    # The fast path is the one taken (a schema change it does not know turns it off).
    assert casekit.plan._SHAPE is not None


def test_the_ledger_index_counts_per_model_and_shares_its_pairs(tmp_path: Path) -> None:
    """What a resume reads from the ledger instead of a pass over the plan: recorded attempts
    per model; the index holds one (strategy, status) tuple per distinct pair, not per
    attempt."""
    from casekit.ledger import Ledger

    path = _write(tmp_path / "case", TWO_MODELS, STRATEGIES)
    out = Runner(load_case(path)).run()
    recs = read_records(out.ledger_path)
    by_model: dict[str, int] = {}
    for r in recs:
        if isinstance(r, AttemptRecord):
            by_model[r.attempt.model_id] = by_model.get(r.attempt.model_id, 0) + 1
    led = Ledger(out.run_dir).open()
    try:
        assert dict(led.recorded_by_model()) == by_model == build_plan(
            load_case(path), load_works(load_case(path))).counts
        pairs = list(led._attempts.values())
        assert len({id(p) for p in pairs}) == len(set(pairs)) < len(pairs)
    finally:
        led.close()
