"""kill -9 soak: many more kill-and-resume trials than the suite's 20 (tests/test_faults.py).

    .venv/bin/python benchmarks/kill_soak.py [--trials 200] [--seed N] [--transport both]

Each trial writes a case of 16-40 benign attempts against the OpenAI-compatible stub
(tests/stub_openai.py, 50 ms latency, 8 % 429 and 4 % 529 answers), starts ``casekit run`` in a
subprocess and SIGKILLs it at a seeded random moment, one to three times (a later kill may hit
a resumed run), then resumes to the end and checks (tests/kill_trial.py): every planned attempt
recorded exactly once, one run_start first and one run_end, the chain verifies, every torn last
line moved aside and noted. Printed: where the kills landed, torn tails, lost and duplicated
attempts (both must be 0), and the failures with their seeds; exit status 1 if any.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import casekit.run.runner  # noqa: E402
from casekit.case import load_case  # noqa: E402
from casekit.run.runner import Runner  # noqa: E402
from tests.kill_trial import check_after_kills, kill_runs, stub_case  # noqa: E402
from tests.stub_openai import StubConfig, StubServer  # noqa: E402


def trial(n: int, seed: int, url: str, transport: str, root: Path) -> tuple[list[int], int, int]:
    """One trial: (attempt records after each kill, planned attempts, torn tails)."""
    rng = random.Random(f"{seed}:{n}")
    folder = root / f"trial-{n:04d}"
    folder.mkdir()
    templates = [f"Soak {n} prompt {i} about {{{{ title }}}}." for i in range(rng.randint(8, 20))]
    connections = rng.choice([2, 4, 8])
    case_path = stub_case(folder, url, templates, max_connections=connections,
                          transport=transport)
    # About how long the attempts take (2 works x templates, 50 ms, 12 % retried), so that
    # kills land throughout them; from the spawn, add the interpreter's start-up and planning.
    duration = 2 * len(templates) * 0.05 * 1.15 / connections
    kills = rng.choices([1, 2, 3], weights=[0.55, 0.3, 0.15])[0]
    moments, recorded = kill_runs(case_path, rng, kills, from_spawn=1.2 + duration,
                                  from_record=0.8 * duration)
    out = Runner(load_case(case_path), max_tries=12).run()
    outcome = check_after_kills(case_path, out, moments, recorded)
    return outcome.recorded_before_kill, outcome.planned, outcome.torn_tails


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--seed", type=int, default=20261124)
    ap.add_argument("--transport", choices=["http", "sdk", "both"], default="both")
    args = ap.parse_args()
    logging.getLogger("casekit").setLevel(logging.ERROR)  # the retries are expected
    casekit.run.runner.BACKOFF_BASE = 0.01  # the final in-process resumes retry 429s quickly
    casekit.run.runner.BACKOFF_CAP = 0.05
    landed: Counter[str] = Counter()
    torn = planned_total = 0
    failures: list[str] = []
    t0 = time.monotonic()
    config = StubConfig(latency=0.05, faults={"rate_limit": 0.08, "overloaded": 0.04}, seed=7,
                        retry_after=0)
    with StubServer(config) as stub, tempfile.TemporaryDirectory(prefix="casekit-soak-") as tmp:
        for n in range(args.trials):
            transport = args.transport if args.transport != "both" else ("http", "sdk")[n % 2]
            try:
                recorded, planned, torn_n = trial(n, args.seed, stub.url, transport, Path(tmp))
            except Exception as exc:  # noqa: BLE001 - a failed trial is reported, not fatal
                failures.append(f"trial {n} (--seed {args.seed}, {transport}): "
                                f"{type(exc).__name__}: {exc}")
                traceback.print_exc(limit=3)
                continue
            planned_total += planned
            torn += torn_n
            for r in recorded:
                landed["before any attempt record" if r == 0 else
                       "after the last attempt record" if r >= planned else
                       "among the attempt records"] += 1
            if (n + 1) % 25 == 0:
                print(f"  {n + 1} trials, {sum(landed.values())} kills, "
                      f"{len(failures)} failed, {time.monotonic() - t0:.0f} s", flush=True)
    wall = time.monotonic() - t0
    ok = args.trials - len(failures)
    print(f"kill -9 soak: {args.trials} trials (seed {args.seed}, transport {args.transport}), "
          f"{planned_total:,} planned attempts in the trials that finished, {wall:.0f} s")
    print(f"  kills: {sum(landed.values())}; landed "
          + ", ".join(f"{k}: {v}" for k, v in sorted(landed.items())))
    print(f"  torn last lines moved aside and noted: {torn}")
    print(f"  resumed to completion, chain verified, 0 lost, 0 duplicated: {ok} of "
          f"{args.trials} trials")
    for f in failures:
        print(f"  FAILED {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
