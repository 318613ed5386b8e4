"""Measurement defects of issue 17: the longest regurgitated span per model x work (3), the
control floor's denominator (4), p_z = 0 told apart from p_z not available (7)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from casekit.analysis.analyze import analyze_run
from casekit.case import load_case
from casekit.pz import TeacherForced
from casekit.run.runner import Runner
from tests.conftest import SCRIPTED_MODELS, STRATEGIES, case_yaml


def _run(case_dir: Path, models: str = SCRIPTED_MODELS) -> Path:
    (case_dir / "case.yaml").write_text(case_yaml(models, STRATEGIES))
    return Runner(load_case(case_dir / "case.yaml")).run().run_dir


def test_longest_regurgitated_span_is_reported_per_model_and_work(case_dir: Path) -> None:
    from casekit.report import build_model, render_html
    from casekit.report.build import load_inputs

    run_dir = _run(case_dir)
    f = analyze_run(run_dir)
    for fw in f.findings:
        mine = [x for x in f.attempts if (x.model_id, x.work_id) == (fw.model_id, fw.work_id)]
        best = max(x.longest_regurgitated_words for x in mine)
        assert fw.longest_regurgitated_words == best
        if best:
            top = next(x for x in mine if x.longest_regurgitated_words == best)
            assert fw.longest_regurgitated_attempt == top.attempt_id
        else:
            assert fw.longest_regurgitated_attempt is None
    subject = next(x for x in f.findings if (x.model_id, x.work_id) == ("bot", "subject"))
    assert subject.longest_regurgitated_words > 0
    html = render_html(build_model(f, load_inputs(run_dir, f)))
    assert "Longest regurgitated span [Liu26]" in html
    assert f"{subject.longest_regurgitated_words} words" in html
    assert subject.longest_regurgitated_attempt in html


def test_failed_control_attempts_are_not_in_the_floor(case_dir: Path) -> None:
    models = SCRIPTED_MODELS.replace("      top1: 0.5", "      top1: 0.5\n      "
                                     "fail_always: [control]")
    f = analyze_run(_run(case_dir, models))
    ctrl = [x for x in f.attempts if x.role == "control" and x.mode != "score"]
    assert ctrl and all(x.outcome == "error" for x in ctrl)
    floor = f.controls[0]
    # Before: "0 of 4 control attempts, <= 52.7%" from four errors.
    assert (floor.attempts.k, floor.attempts.n) == (0, 0)
    assert floor.upper_95 is None
    assert all(r.n == 0 for r in floor.by_intent.values())


def test_control_floor_counts_the_attempts_that_produced_output(case_dir: Path) -> None:
    f = analyze_run(_run(case_dir))
    ctrl = [x for x in f.attempts if x.role == "control" and x.mode != "score"
            and x.outcome not in ("error", "unscorable")]
    assert f.controls[0].attempts.n == len(ctrl) == 4


def _tf(f: object) -> list[TeacherForced]:
    return [x.teacher_forced for x in f.attempts  # type: ignore[attr-defined]
            if x.teacher_forced is not None]


def test_pz_top40_states_zero_and_not_available_explicitly(
        case_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import casekit.analysis.analyze as analyze

    # No ranks from the provider: not available.
    run_dir = _run(case_dir)
    tf = _tf(analyze_run(run_dir))
    assert tf and {t.pz_top40 for t in tf} == {"not_available"}
    assert all(t.log_pz_top40 is None for t in tf)
    # Ranks: a value.
    ranked = SCRIPTED_MODELS.replace("      top1: 0.5", "      top1: 0.5\n      ranks: true")
    run_dir = _run(case_dir, ranked)
    tf = _tf(analyze_run(run_dir))
    assert {t.pz_top40 for t in tf} == {"positive"}
    assert all(t.log_pz_top40 is not None and t.log_pz_top40 < 0 for t in tf)
    # A suffix token outside the top 40: p_z = 0, said so (log p_z = -inf has no JSON form).
    monkeypatch.setattr(analyze, "log_p_z", lambda scores, preset: -math.inf)
    f = analyze_run(run_dir)
    tf = _tf(f)
    assert {t.pz_top40 for t in tf} == {"zero"} and all(t.log_pz_top40 is None for t in tf)
    row = f.attempts[[i for i, x in enumerate(f.attempts) if x.teacher_forced][0]]
    assert '"pz_top40":"zero"' in row.model_dump_json()


@pytest.mark.parametrize("available, log, state", [
    (False, None, "not_available"), (True, None, "zero"), (True, -3.5, "positive")])
def test_rows_written_before_the_state_field_read_back_explicit(available: bool,
                                                                log: float | None,
                                                                state: str) -> None:
    row = {"tokens": 3, "top1": 1, "top1_share": 0.3, "sum_logprob": -2.0,
           "greedy_reproduced": False, "log_pz_top40": log, "pz_top40_available": available}
    assert TeacherForced.model_validate(row).pz_top40 == state


# -- defect 6: the decoding recorded is the decoding applied -------------------------------


def _compatible_request(params: dict[str, object], decoding: object = None,
                        mode: str = "chat") -> tuple[dict[str, object], dict[str, object]]:
    """(the JSON body a llama.cpp-style server received, the body the record states)."""
    import json

    import respx

    from casekit.providers.openai_compatible import OpenAICompatibleProvider
    from casekit.records import Decoding
    from tests.test_api_providers import (
        HEADERS,
        SERVER,
        attempt,
        chat_json,
        client_for,
        run,
        spec,
    )

    router = respx.Router(base_url=SERVER)
    path = "/chat/completions" if mode == "chat" else "/completions"
    payload = chat_json() if mode == "chat" else {
        "id": "c", "object": "text_completion", "model": "gguf",
        "choices": [{"index": 0, "text": " and on", "finish_reason": "length"}]}
    route = router.post(path).respond(200, json=payload, headers=HEADERS)
    p = OpenAICompatibleProvider(spec("openai-compatible", "gguf", base_url=SERVER,
                                      params=params), Path("."), http_client=client_for(router))
    res = run(p.generate(attempt(mode, decoding=decoding or Decoding())))
    sent = json.loads(route.calls[0].request.content)
    return sent, res.raw_request["body"]


@pytest.mark.parametrize("mode", ["chat", "completion"])
def test_greedy_requests_to_a_compatible_server_neutralize_its_sampling_defaults(
        mode: str) -> None:
    """A llama-cpp-python server applies repeat_penalty 1.1 (and top_p 0.95, top_k 40, min_p
    0.05) unless told otherwise: every request says so, and the record shows it. (Both
    transports post the body the one builder makes.)"""
    sent, recorded = _compatible_request({}, mode=mode)
    for body in (sent, recorded):
        assert body["temperature"] == 0.0
        assert body["repeat_penalty"] == 1.0 and body["repetition_penalty"] == 1.0
        assert body["frequency_penalty"] == 0.0 and body["presence_penalty"] == 0.0
        assert body["min_p"] == 0.0 and body["top_p"] == 1.0 and body["top_k"] == 0
    assert {k: v for k, v in sent.items() if k != "stream"} == \
        {k: v for k, v in recorded.items() if k != "stream"}


def test_the_case_and_extra_body_win_over_the_neutral_values() -> None:
    from casekit.records import Decoding

    sent, recorded = _compatible_request(
        {"extra_body": {"repeat_penalty": 1.3}},
        Decoding(temperature=0.7, top_p=0.9, top_k=50, max_tokens=48))
    assert sent["repeat_penalty"] == recorded["repeat_penalty"] == 1.3
    assert (sent["top_p"], sent["top_k"], sent["max_tokens"]) == (0.9, 50, 48)
    sent, _ = _compatible_request({"server_defaults": "server"})
    assert not {"repeat_penalty", "min_p", "top_k", "frequency_penalty"} & set(sent)


def _plan_max_tokens(case_dir: Path, strategies: str, decoding: str) -> list[tuple[str, int,
                                                                                  str | None]]:
    from casekit.plan import build_plan
    from casekit.works import load_works

    (case_dir / "case.yaml").write_text(case_yaml(SCRIPTED_MODELS, strategies, decoding))
    case = load_case(case_dir / "case.yaml")
    return [(a.strategy, a.decoding.max_tokens, a.decoding.max_tokens_set_by)
            for a in build_plan(case, load_works(case)).attempts if a.mode != "score"]


def test_prefix_continuation_sends_the_max_tokens_the_case_states(case_dir: Path) -> None:
    """Defect 6: prefix continuation sent max_tokens 50 (2 x suffix_words) where the case's
    decoding said 48. The case's stated decoding.max_tokens now wins over a strategy's sizing;
    a strategy's own stated limit wins over the case and is recorded as the strategy's."""
    prefix = "strategies:\n  - name: prefix_continuation\n    params: {prefix_words: 10, " \
             "suffix_words: 25, max_windows: 2%s}\n"
    stated = "decoding: {temperature: 0.0, max_tokens: 48}\n"
    assert {(m, by) for _, m, by in _plan_max_tokens(case_dir, prefix % "", stated)} == \
        {(48, None)}
    # Not stated: the strategy sizes it to the target, and the record says who chose it.
    assert {(m, by) for _, m, by in _plan_max_tokens(case_dir, prefix % "", "")} == \
        {(50, "strategy")}
    # The strategy's own limit, stated in the case, beats the case's decoding: recorded.
    assert {(m, by) for _, m, by in _plan_max_tokens(
        case_dir, prefix % ", max_tokens: 70", stated)} == {(70, "strategy")}


def test_the_record_sends_the_planned_max_tokens(case_dir: Path) -> None:
    """What the plan says is what the request carries (scripted provider: raw_request)."""
    from casekit.ledger import LEDGER_NAME, read_records
    from casekit.records import AttemptRecord

    strategies = ("strategies:\n  - name: prefix_continuation\n    params: {prefix_words: 10, "
                  "suffix_words: 25, max_windows: 2}\n")
    (case_dir / "case.yaml").write_text(case_yaml(
        SCRIPTED_MODELS, strategies, "decoding: {temperature: 0.0, max_tokens: 48}\n"))
    run_dir = Runner(load_case(case_dir / "case.yaml")).run().run_dir
    recs = [r for r in read_records(run_dir / LEDGER_NAME) if isinstance(r, AttemptRecord)]
    assert recs and all(r.attempt.decoding.max_tokens == 48 for r in recs)
    assert all("max_tokens_set_by" not in r.attempt.decoding.model_dump(mode="json")
               for r in recs)
