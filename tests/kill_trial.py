"""One kill -9 trial, shared by tests/test_faults.py (20 trials in the suite) and
benchmarks/kill_soak.py (hundreds): ``casekit run`` in a subprocess against the OpenAI-compatible
stub, SIGKILL at a seeded random moment (once or more), then a resume that must record every
planned attempt exactly once with a chain that verifies.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from casekit.case import load_case
from casekit.ledger import LEDGER_NAME, read_records, verify_chain
from casekit.plan import build_plan
from casekit.records import AttemptRecord, Note, RunEnd, RunStart
from casekit.run.runner import RunOutcome, default_run_dir
from casekit.works import load_works
from tests.conftest import CONTROL, REPO, SUBJECT, case_yaml

CLIENT_TIMEOUT = 1.0


def stub_case(tmp: Path, base_url: str, templates: list[str], max_connections: int,
              name: str = "case.yaml", transport: str = "sdk") -> Path:
    """A case of the two test works and benign templates against the stub at ``base_url``."""
    (tmp / "subject.txt").write_text(SUBJECT)
    (tmp / "control.txt").write_text(CONTROL)
    models = textwrap.dedent(f"""\
        models:
          - id: stub
            provider: openai-compatible
            model: stub-model-2025-01-01
            interface: chat
            base_url: {base_url}
            params: {{timeout: {CLIENT_TIMEOUT}, max_connections: {max_connections},
                      transport: {transport}}}
        """)
    strategies = "strategies:\n  - name: benign_prompts\n    params:\n      templates:\n" + "".join(
        f"        - {json.dumps(t)}\n" for t in templates)
    path = tmp / name
    path.write_text(case_yaml(models, strategies))
    return path


def planned_ids(case_path: Path) -> list[str]:
    case = load_case(case_path)
    return [a.id for a in build_plan(case, load_works(case)).attempts]


def spawn_run(case_path: Path) -> subprocess.Popen[bytes]:
    """``casekit run`` on the case in a subprocess (quiet)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen([sys.executable, "-m", "casekit.cli", "-q", "run", str(case_path)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def attempt_lines(ledger: Path) -> int:
    return ledger.read_bytes().count(b'"record_type":"attempt"') if ledger.exists() else 0


def kill_at_random_moment(proc: subprocess.Popen[bytes], run_dir: Path, rng: random.Random,
                          from_spawn: float = 2.3, from_record: float = 0.4) -> str:
    """SIGKILL at a seeded random moment: either counted from the spawn (a quarter of the
    time; lands anywhere: start-up, planning, the run_start write, attempts, the run's end) or
    from the first attempt this process records (lands among attempt writes). Returns where."""
    if rng.random() < 0.25:
        delay = rng.uniform(0.0, from_spawn)
        time.sleep(delay)
        where = f"{delay:.2f}s after spawn"
    else:
        ledger = run_dir / LEDGER_NAME
        before = attempt_lines(ledger)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and proc.poll() is None and (
                attempt_lines(ledger) <= before):
            time.sleep(0.003)
        delay = rng.uniform(0.0, from_record)
        time.sleep(delay)
        where = f"{delay:.2f}s after its first attempt record"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    return where


@dataclass(frozen=True)
class KillOutcome:
    recorded_before_kill: list[int]
    """Attempt records in the ledger after each kill."""
    skipped_on_resume: int
    planned: int
    torn_tails: int
    """Torn last lines moved aside (and noted in the chain) by the resumes."""


def check_after_kills(case_path: Path, out: RunOutcome, moments: list[str],
                      recorded_before_kill: list[int]) -> KillOutcome:
    """Every invariant a resumed run must hold; an AssertionError names the kill moments."""
    run_dir = default_run_dir(load_case(case_path))
    assert out.complete, f"the resumed run is complete (kill at {moments})"
    assert verify_chain(out.ledger_path).ok, f"the chain verifies (kill at {moments})"
    records = read_records(out.ledger_path)
    ids = [r.attempt.id for r in records if isinstance(r, AttemptRecord)]
    planned = planned_ids(case_path)
    assert len(ids) == len(set(ids)), f"0 duplicated (kill at {moments})"
    assert sorted(ids) == sorted(planned), f"0 lost (kill at {moments})"
    assert isinstance(records[0], RunStart), f"run_start first (kill at {moments})"
    assert sum(isinstance(r, RunStart) for r in records) == 1, moments
    assert sum(isinstance(r, RunEnd) for r in records) == 1, moments
    torn_notes = [r for r in records if isinstance(r, Note) and r.kind == "torn_line"]
    torn_files = list(run_dir.glob("ledger.torn-*.bin"))
    assert len(torn_notes) == len(torn_files), f"every torn tail noted (kill at {moments})"
    assert out.stats.skipped + out.stats.done == len(planned), moments
    return KillOutcome(recorded_before_kill, out.stats.skipped, len(planned), len(torn_files))


def kill_runs(case_path: Path, rng: random.Random, kills: int, from_spawn: float = 2.3,
              from_record: float = 0.4) -> tuple[list[str], list[int]]:
    """Spawn and kill ``casekit run`` ``kills`` times (moments drawn as in
    :func:`kill_at_random_moment`); after each kill the ledger on disk verifies or has only a
    torn last line. Returns (where each kill landed, attempt records in the ledger after
    each)."""
    run_dir = default_run_dir(load_case(case_path))
    ledger = run_dir / LEDGER_NAME
    moments: list[str] = []
    recorded: list[int] = []
    for _ in range(kills):
        moments.append(kill_at_random_moment(spawn_run(case_path), run_dir, rng,
                                             from_spawn, from_record))
        if ledger.exists():
            res = verify_chain(ledger)
            assert res.ok or res.torn_tail, f"only a torn tail after kill at {moments}"
        recorded.append(attempt_lines(ledger))
    return moments, recorded
