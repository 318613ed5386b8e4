"""Re-run a recorded run's planned attempts as a new run linked to the first.

Courts ask whether a result reproduces on another day; nondeterminism at temperature 0 is real
(batching, hardware, silent model updates) and must be measured, not assumed away. ``casekit
rerun RUN_DIR`` sends the same planned attempts (same prompts and parameters, new timestamps)
as a new run linked to the first; casekit.analysis.compare then compares them attempt by
attempt.
"""

from __future__ import annotations

import logging
from pathlib import Path

from casekit.case import CaseFile, LoadedCase
from casekit.errors import CasekitError
from casekit.ledger import LEDGER_NAME, read_records
from casekit.plan import Plan
from casekit.records import AttemptRecord, PlannedAttempt, RunEnd, RunStart
from casekit.run.runner import Runner, RunOutcome

log = logging.getLogger(__name__)

def _original(run_dir: Path) -> tuple[RunStart, list[PlannedAttempt], str]:
    records = read_records(run_dir / LEDGER_NAME)
    start = next((r for r in records if isinstance(r, RunStart)), None)
    if start is None:
        raise CasekitError(f"{run_dir}: the ledger has no run_start record")
    seen: set[str] = set()
    attempts: list[PlannedAttempt] = []
    for r in records:
        if isinstance(r, AttemptRecord) and r.attempt.id not in seen:
            seen.add(r.attempt.id)
            attempts.append(r.attempt)
    attempts.sort(key=lambda a: a.ordinal)
    return start, attempts, records[-1].hash or ""


def next_rerun_dir(run_dir: Path) -> Path:
    """``<run>-rerun-N``: the first one not yet complete (so a rerun resumes), else a new N."""
    n = 1
    while True:
        cand = run_dir.with_name(f"{run_dir.name}-rerun-{n}")
        ledger = cand / LEDGER_NAME
        if not ledger.exists():
            return cand
        if not any(isinstance(r, RunEnd) and r.complete for r in read_records(ledger)):
            return cand
        n += 1


def rerun(run_dir: Path, new_dir: Path | None = None) -> RunOutcome:
    """Execute the recorded run's planned attempts again as a new linked run. Comparing the two
    is analysis (:func:`casekit.analysis.compare.compare_and_write`)."""
    start, attempts, head = _original(run_dir)
    if start.rerun_of is not None:
        log.info("%s is itself a rerun of %s", run_dir, start.rerun_of.get("run_id"))
    spec = CaseFile.model_validate(start.case)
    case = LoadedCase(spec=spec, path=Path(start.case_path), sha256=start.case_sha256)
    plan = Plan(attempts=attempts)
    target = new_dir or next_rerun_dir(run_dir)
    outcome = Runner(case, target, plan=plan, rerun_of={
        "run_id": start.run_id, "run_dir": str(run_dir.resolve()), "ledger_head_hash": head,
    }).run()
    return outcome


__all__ = ["next_rerun_dir", "rerun"]
