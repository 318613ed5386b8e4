"""Plan determinism, runner recording and resume, with the scripted provider."""

from __future__ import annotations

import io
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casekit.case import load_case
from casekit.ledger import LEDGER_NAME, Ledger, read_records, verify_chain
from casekit.plan import build_plan
from casekit.records import AttemptRecord, Checkpoint, Note, RunEnd, RunStart
from casekit.run.runner import Runner
from casekit.works import load_works
from tests.conftest import REPO, SCRIPTED_MODELS, STRATEGIES, case_yaml


def plan_of(case_dir: Path):  # type: ignore[no-untyped-def]
    case = load_case(case_dir / "case.yaml")
    return build_plan(case, load_works(case))


def test_plan_is_deterministic_and_ids_unique(case_dir: Path) -> None:
    a, b = plan_of(case_dir), plan_of(case_dir)
    assert [x.id for x in a.attempts] == [x.id for x in b.attempts]
    assert a.sha256 == b.sha256
    assert len({x.id for x in a.attempts}) == len(a)
    intents = {x.strategy: x.intent for x in a.attempts}
    assert intents == {"prefix_continuation": "adversarial", "benign_prompts": "benign",
                       "teacher_forced": "reconstruction"}


def test_prefix_prompt_quotes_the_work_and_masks_it(case_dir: Path) -> None:
    case = load_case(case_dir / "case.yaml")
    works = {w.id: w for w in load_works(case)}
    plan = build_plan(case, list(works.values()))
    pc = [x for x in plan.attempts if x.strategy == "prefix_continuation"]
    assert pc and all(x.mode == "chat" for x in pc)
    for x in pc:
        (sup,) = x.supplied
        quoted = works[x.work_id].raw[sup.start:sup.end]
        assert quoted in x.messages[-1].content
        assert x.target is not None and x.target.start >= sup.end
    tf = [x for x in plan.attempts if x.strategy == "teacher_forced"]
    assert tf and all(x.mode == "score" and x.continuation for x in tf)


def test_seed_changes_window_choice(case_dir: Path) -> None:
    text = (case_dir / "case.yaml").read_text()
    (case_dir / "case.yaml").write_text(text.replace("max_windows: 3", "max_windows: 2,"
                                                     " prefix_words: 5, suffix_words: 5")
                                        .replace("prefix_words: 10, suffix_words: 30, ", ""))
    a = plan_of(case_dir)
    (case_dir / "case.yaml").write_text((case_dir / "case.yaml").read_text() + "seed: 99\n")
    b = plan_of(case_dir)
    la = [x.label for x in a.attempts if x.strategy == "prefix_continuation"]
    lb = [x.label for x in b.attempts if x.strategy == "prefix_continuation"]
    assert la != lb


def test_run_records_every_attempt_once(case_dir: Path) -> None:
    case = load_case(case_dir / "case.yaml")
    out = Runner(case).run()
    assert out.complete
    recs = read_records(out.ledger_path)
    assert isinstance(recs[0], RunStart) and isinstance(recs[-2], RunEnd)
    assert isinstance(recs[-1], Checkpoint) and recs[-1].final  # signs the chain (anchor.py)
    recs = recs[:-1]
    start = recs[0]
    assert {w.id for w in start.works} == {"subject", "control"}
    assert all(w.sha256.startswith("sha256:") for w in start.works)
    assert start.versions["python"] and start.recorded_at.endswith("Z")
    attempts = [r for r in recs if isinstance(r, AttemptRecord)]
    planned = sorted(x.id for x in plan_of(case_dir).attempts)
    assert sorted(a.attempt.id for a in attempts) == planned
    # Running again does nothing new and says so.
    again = Runner(load_case(case_dir / "case.yaml")).run()
    assert again.stats.skipped == len(attempts) and again.stats.done == 0


def test_run_start_is_first_and_written_while_the_first_requests_are_in_flight(
        case_dir: Path) -> None:
    """A fresh run's run_start (plan hash, versions, git state) is computed and written after
    the first requests have left, yet it is the first record, carries the plan's hash and the
    time the run began, before any attempt started."""
    text = (case_dir / "case.yaml").read_text()
    (case_dir / "case.yaml").write_text(text.replace("      top1: 0.5\n",
                                                     "      top1: 0.5\n      sleep: 0.2\n"))
    out = Runner(load_case(case_dir / "case.yaml")).run()
    recs = read_records(out.ledger_path)
    start = recs[0]
    assert isinstance(start, RunStart)
    assert start.plan_sha256 == plan_of(case_dir).sha256
    attempts = [r for r in recs if isinstance(r, AttemptRecord)]
    first_started = min(a.started_at for a in attempts)
    assert start.started_at is not None and start.started_at <= first_started
    # Overlapped: the record was written after the first request was sent, before any reply
    # (each takes 0.2 s here).
    assert first_started <= start.recorded_at < min(a.completed_at for a in attempts)


def test_resume_checks_the_plan_before_sending_anything(case_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import casekit.plan
    from casekit.errors import CasekitError

    out = Runner(load_case(case_dir / "case.yaml")).run()
    # An interrupted run: run_start and the first three attempts (a prefix of the chain).
    ledger = b"".join(out.ledger_path.read_bytes().splitlines(keepends=True)[:4])
    out.ledger_path.write_bytes(ledger)
    assert verify_chain(out.ledger_path).ok
    monkeypatch.setattr(casekit.plan, "plan_sha256", lambda attempts: "sha256:" + "0" * 64)
    sent: list[str] = []
    monkeypatch.setattr(Runner, "_attempt", lambda *a: sent.append("attempt"))
    with pytest.raises(CasekitError, match="the plan differs from the one recorded"):
        Runner(load_case(case_dir / "case.yaml")).run()
    assert not sent and out.ledger_path.read_bytes() == ledger


def test_the_collector_is_tuned_for_the_run_and_restored(case_dir: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """During a run the heap that existed before it is frozen out of the collector's scans and
    the youngest generation is collected less often; afterwards both are as they were, also
    when the run fails."""
    import gc

    seen: list[tuple[tuple[int, int, int], int]] = []
    real_prepare = Runner.prepare

    def prepare(self: Runner):  # type: ignore[no-untyped-def]
        seen.append((gc.get_threshold(), gc.get_freeze_count()))
        return real_prepare(self)

    monkeypatch.setattr(Runner, "prepare", prepare)
    gc.set_threshold(700, 10, 10)
    Runner(load_case(case_dir / "case.yaml")).run()
    assert seen[0][0] == (20_000, 20, 20) and seen[0][1] > 1000
    assert gc.get_threshold() == (700, 10, 10) and gc.get_freeze_count() == 0

    def broken(self: Runner):  # type: ignore[no-untyped-def]
        raise RuntimeError("planning failed")

    monkeypatch.setattr(Runner, "prepare", broken)
    with pytest.raises(RuntimeError):
        Runner(load_case(case_dir / "case.yaml"), case_dir / "other-run").run()
    assert gc.get_threshold() == (700, 10, 10) and gc.get_freeze_count() == 0


def test_failures_and_retries_are_recorded_never_dropped(case_dir: Path) -> None:
    text = case_yaml(SCRIPTED_MODELS.replace("      top1: 0.5", "      top1: 0.5\n      "
                                             "fail_first: 1\n      fail_always: [control]"),
                     STRATEGIES)
    (case_dir / "case.yaml").write_text(text)
    out = Runner(load_case(case_dir / "case.yaml"), max_tries=3).run()
    attempts = [r for r in read_records(out.ledger_path) if isinstance(r, AttemptRecord)]
    ctrl = [a for a in attempts if a.attempt.work_id == "control"]
    subj = [a for a in attempts if a.attempt.work_id == "subject"]
    assert ctrl and all(a.status == "error" and a.error is not None for a in ctrl)
    assert all(a.error.kind == "no_retry" for a in ctrl if a.error)
    assert subj and all(a.status == "ok" and len(a.tries) == 2 for a in subj)
    assert all(a.tries[0].error is not None for a in subj)
    assert out.complete  # every planned attempt is on record, failed ones included


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_redraws_while_retries_wait(
        case_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Every attempt fails its first try and waits 0.8 s to retry: the line is redrawn
    meanwhile (0 done, some retrying), not only when an attempt completes; it ends on the
    totals."""
    caplog.set_level(logging.INFO, logger="casekit")
    (case_dir / "case.yaml").write_text(case_yaml(SCRIPTED_MODELS.replace(
        "      top1: 0.5", "      top1: 0.5\n      fail_first: 1\n      retry_after: 0.8"),
        STRATEGIES))
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    out = Runner(load_case(case_dir / "case.yaml")).run()
    n = out.stats.planned
    frames = terminal.getvalue().split("\r\x1b[2K")[1:]
    waiting = [f for f in frames if f.startswith(f"0/{n} done")]
    assert waiting and re.search(r"retrying [1-9]\d* \([1-9]\d* retries\)", waiting[-1])
    assert "eta ?" in waiting[-1]  # no rate yet, so no estimate
    assert frames[-1].startswith(f"{n}/{n} done: ok {n}, refused 0, failed 0, retrying 0")
    assert frames[-1].endswith("\n")


def test_progress_off_a_terminal_is_plain_log_lines(
        case_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="casekit")
    out = Runner(load_case(case_dir / "case.yaml")).run()
    n = out.stats.planned
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress: ")]
    assert lines and re.fullmatch(rf"progress: {n}/{n} done: ok {n}, refused 0, failed 0, "
                                  r"retrying 0 \(0 retries\); [0-9.]+/s; eta 0s", lines[-1])
    assert "\x1b" not in caplog.text


def test_progress_log_lines_say_something_new(monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """Off a terminal the ticker logs when something changed, else a heartbeat a minute."""
    import casekit.run.runner
    from casekit.run.runner import Progress, RunStats

    caplog.set_level(logging.INFO, logger="casekit")
    clock = [1000.0]
    monkeypatch.setattr(casekit.run.runner.time, "monotonic", lambda: clock[0])
    stats = RunStats()
    progress = Progress(3, stats, stream=io.StringIO())

    def ticks(n: int, every: float = 5.0) -> int:
        before = len(caplog.records)
        for _ in range(n):
            clock[0] += every
            progress.tick()
        return len(caplog.records) - before

    assert ticks(6) == 1  # the first line, then nothing new for 30 s
    stats.retrying, stats.retries = 1, 1
    assert ticks(1) == 1  # a retry is news
    assert ticks(11) == 0 and ticks(1) == 1  # 55 s of nothing, then the minute's heartbeat
    stats.retrying, stats.ok = 0, 3
    assert ticks(1) == 1 and "3/3 done: ok 3" in caplog.records[-1].getMessage()
    assert ticks(3) == 0


def _subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["CASEKIT_PLUGINS"] = "tests.scripted"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.parametrize("delay", [0.6, 1.1, 1.7])
def test_kill_9_then_resume_records_each_attempt_exactly_once(case_dir: Path,
                                                              delay: float) -> None:
    text = case_yaml(SCRIPTED_MODELS.replace("      top1: 0.5", "      top1: 0.5\n      "
                                             "sleep: 0.05"), STRATEGIES)
    (case_dir / "case.yaml").write_text(text)
    proc = subprocess.Popen([sys.executable, "-m", "casekit.cli", "-q", "run",
                             str(case_dir / "case.yaml")], env=_subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    case = load_case(case_dir / "case.yaml")
    out = Runner(case).run()
    assert out.complete
    assert verify_chain(out.ledger_path).ok
    recs = read_records(out.ledger_path)
    ids = [r.attempt.id for r in recs if isinstance(r, AttemptRecord)]
    planned = [x.id for x in plan_of(case_dir).attempts]
    assert sorted(ids) == sorted(planned), "0 lost, 0 duplicated"
    assert sum(isinstance(r, RunStart) for r in recs) == 1


def test_sigint_stops_cleanly_and_resume_completes(case_dir: Path) -> None:
    text = case_yaml(SCRIPTED_MODELS.replace("      top1: 0.5", "      top1: 0.5\n      "
                                             "sleep: 0.5"), STRATEGIES)
    (case_dir / "case.yaml").write_text(text)
    proc = subprocess.Popen([sys.executable, "-m", "casekit.cli", "run",
                             str(case_dir / "case.yaml")], env=_subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    run_dir = next((case_dir / "runs").iterdir())
    recs = read_records(run_dir / LEDGER_NAME)
    assert any(isinstance(r, Note) and r.kind == "interrupted" for r in recs)
    led = Ledger(run_dir).open()
    n_before = len(led.recorded_attempt_ids())
    led.close()
    assert 0 < n_before < len(plan_of(case_dir))
    out = Runner(load_case(case_dir / "case.yaml")).run()
    assert out.complete and out.stats.skipped == n_before


def test_case_rate_limit_spaces_the_requests(case_dir: Path) -> None:
    text = case_yaml(SCRIPTED_MODELS.replace("    model: scripted-1\n", "    model: scripted-1\n"
                                             "    limits: {requests_per_minute: 300}\n"),
                     STRATEGIES)
    (case_dir / "case.yaml").write_text(text)
    out = Runner(load_case(case_dir / "case.yaml")).run()
    from datetime import datetime

    starts = sorted(datetime.fromisoformat(r.tries[0].started_at.replace("Z", "+00:00"))
                    for r in read_records(out.ledger_path) if isinstance(r, AttemptRecord))
    # 300/min = 5 per second with a burst of 5: 12 attempts need at least (12 - 5) / 5 s.
    assert len(starts) == 12
    assert (starts[-1] - starts[0]).total_seconds() >= 1.3


def test_models_of_one_exclusive_group_run_in_turn(case_dir: Path) -> None:
    from tests.scripted import ScriptedProvider

    text = case_yaml(SCRIPTED_MODELS.replace("      top1: 0.5", "      top1: 0.5\n      "
                                             "sleep: 0.02") + SCRIPTED_MODELS.split("models:\n")[1]
                     .replace("id: bot", "id: bot2").replace("      top1: 0.5", "      top1: 0.5\n"
                                                               "      sleep: 0.02"), STRATEGIES)
    (case_dir / "case.yaml").write_text(text)

    def order(folder: str) -> list[str]:
        out = Runner(load_case(case_dir / "case.yaml"), run_dir=case_dir / folder).run()
        return [r.attempt.model_id for r in read_records(out.ledger_path)
                if isinstance(r, AttemptRecord)]

    ScriptedProvider.exclusive_group = "cpu"
    try:
        grouped = order("grouped")
    finally:
        ScriptedProvider.exclusive_group = None
    together = order("together")
    n = len(grouped) // 2
    assert grouped == ["bot"] * n + ["bot2"] * n, "one model after the other"
    assert together[:n] != ["bot"] * n, "without a group, the models' attempts interleave"


_TEMPLATE_PARTS = ["{{ title }}", "{{title}}", "{{ n_words }}", "{{ missing }}",
                   "{{ title|upper }}", "{", "}", "{{", "}}", "{%", "%}", "{#", "#}",
                   "{{- title -}}", " ", "\n", "\r\n",
                   "Print ", "the first page of ", "«ü» ", "\t", "{{\ttitle\t}}", "{{ year }}"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_TEMPLATE_PARTS), max_size=8))
def test_placeholder_fast_path_renders_exactly_as_jinja(parts: list[str]) -> None:
    """render_template skips Jinja for text-and-{{ name }} templates; the output (or the
    error) must be what the sandboxed Jinja environment gives for every template."""
    from jinja2 import TemplateError

    from casekit.strategies import base

    template = "".join(parts)
    values = {"title": "Emma «ü»", "n_words": 100, "year": 1815}
    try:
        expected: object = base._ENV.from_string(template).render(**values)
    except TemplateError as exc:
        expected = type(exc)
    try:
        got: object = base._render(template, values)
    except TemplateError as exc:
        got = type(exc)
    assert got == expected


def test_a_model_its_provider_refuses_is_a_case_error_before_any_run_folder(
        case_dir: Path) -> None:
    """An invalid provider parameter (found when the provider is built, not by the case
    schema) names the case file's line, exits 2 through the CLI, and creates no run folder
    or ledger."""
    from click.testing import CliRunner

    from casekit.cli import cli
    from casekit.errors import CaseError

    models = textwrap.dedent("""\
        models:
          - id: api
            provider: openai-compatible
            model: m
            base_url: http://127.0.0.1:9/v1
            params: {transport: curl}
        """)
    (case_dir / "case.yaml").write_text(case_yaml(models, STRATEGIES))
    runner = Runner(load_case(case_dir / "case.yaml"))
    with pytest.raises(CaseError, match=r"case\.yaml:\d+:\d+: models\[0\]\.params\.transport: "
                                        r"must be one of sdk, http"):
        runner.run()
    assert not runner.run_dir.exists()
    res = CliRunner().invoke(cli, ["run", str(case_dir / "case.yaml")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    line = int(res.output.split("case.yaml:")[1].split(":")[0])
    assert "transport: curl" in (case_dir / "case.yaml").read_text().splitlines()[line - 1]
