"""Hostile-text benchmark: `casekit analyze` and `casekit report` on a run holding one imported
output of ~10 MB that repeats a single sentence, whose prompt repeats the same sentence.

Builds a two-work case (scripted provider, one benign prompt per work), runs it, imports the
hostile row with `casekit import`, then runs `casekit analyze` and `casekit report` as child
processes under an address-space limit (``--limit-gb``, so that a quadratic blow-up ends in a
MemoryError instead of taking the machine) and prints each one's exit code, wall time and peak
RSS (``resource.getrusage(RUSAGE_CHILDREN)`` in a wrapper process around each). Numbers are
printed, never asserted.

``--unechoed`` is the case whose output matches the work and is exhibited: the report's appendix
of long texts shows APPENDIX_MAX_CHARS of it and says so (issue 15). Measured on 2 shared cores,
10 MB: analyze 11 s, 624 MB; report 349 s, 2,597 MB peak RSS when the appendix showed the whole
output (about 2,000 pages), 19 s, 793 MB with the cap.

    .venv/bin/python benchmarks/hostile_bench.py                 # the issue's case
    .venv/bin/python benchmarks/hostile_bench.py --unechoed      # the prompt does not hold it
    .venv/bin/python benchmarks/hostile_bench.py --mb 1 --keep /tmp/hostile
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import CONTROL, SUBJECT  # noqa: E402

#: A sentence of the subject work (which holds it twice).
CASEKIT = [sys.executable, "-c", "from casekit.cli import main; main()"]
SENTENCE = ("The miller's daughter counted the sacks of grain twice before she trusted the "
            "number, because her father had taught her that a careless count is a kind of "
            "theft. ")

CASE = textwrap.dedent("""\
    case: {id: hostile, title: Hostile output, matter: none, examiner: Tester,
           organization: Test Org}
    works:
      - {id: subject, title: The Mill, author: Anon, path: subject.txt, role: subject}
      - {id: control, title: The Lantern Shop, author: Test Org, path: control.txt,
         role: control}
    models:
      - id: bot
        provider: scripted
        model: scripted-1
        params: {outputs: {subject: "I do not know it.", control: "Nor this one."}}
    strategies:
      - name: benign_prompts
        params: {templates: ["Tell me about {{ title }}."]}
    thresholds: {min_span_words: 15, legal_defaults: false}
    """)


_WRAP = ("import resource, subprocess, sys; "
         "p = subprocess.run([sys.executable, '-c', 'from casekit.cli import main; main()', "
         "*sys.argv[1:]], "
         "capture_output=True, text=True); "
         "sys.stderr.write(p.stderr[-2000:]); "
         "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(p.returncode)")


def child(args: list[str], limit_gb: float, env: dict[str, str]) -> tuple[int, float, float]:
    """Run ``casekit ARGS`` under the address-space limit, through a wrapper process
    that prints its one child's peak RSS: exit code, wall seconds, peak RSS in MB."""
    limit = int(limit_gb * 2**30)

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _WRAP, *args], env=env,
                          cwd=env["CASEKIT_BENCH_CODE"], preexec_fn=cap, capture_output=True,
                          text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        print(f"  {args[0]} failed ({proc.returncode}): "
              f"{proc.stderr.strip().splitlines()[-1:]}")
    return proc.returncode, wall, int(proc.stdout.split()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=10.0, help="output size in MB (10)")
    ap.add_argument("--prompt-repeats", type=int, default=1000,
                    help="times the prompt repeats the sentence (1000)")
    ap.add_argument("--unechoed", action="store_true",
                    help="the prompt does not hold the sentence (nothing is masked)")
    ap.add_argument("--refrain", type=int, default=0,
                    help="also put the sentence this many times in the subject work, each "
                         "after a different verse (a chorus): the matcher's worst case")
    ap.add_argument("--limit-gb", type=float, default=8.0, help="address-space limit (8)")
    ap.add_argument("--stages", default="analyze,report",
                    help="which of analyze,report to run (analyze,report)")
    ap.add_argument("--code", type=Path, default=REPO,
                    help="run casekit from this checkout (e.g. an export of an older commit, "
                         "to measure before a change); tests/ is always this one's")
    ap.add_argument("--keep", type=Path, help="build the case here and keep it")
    a = ap.parse_args()

    root = a.keep or Path(tempfile.mkdtemp(prefix="hostile-"))
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    work = SUBJECT
    if a.refrain:
        rng = random.Random(15)
        words = CONTROL.split()
        work += "".join(" ".join(rng.sample(words, 40)) + ". " + SENTENCE
                        for _ in range(a.refrain))
    (root / "subject.txt").write_text(work)
    (root / "control.txt").write_text(CONTROL)
    (root / "case.yaml").write_text(CASE)
    env = {**os.environ, "CASEKIT_PLUGINS": "tests.scripted",
           "PYTHONPATH": f"{a.code.resolve()}{os.pathsep}{REPO}",
           "CASEKIT_BENCH_CODE": str(a.code.resolve())}  # the cwd: ahead of PYTHONPATH
    rc = subprocess.run([*CASEKIT, "run", str(root / "case.yaml")],
                        env=env, cwd=env["CASEKIT_BENCH_CODE"], capture_output=True, text=True)
    if rc.returncode:
        sys.exit(f"run failed: {rc.stderr}")
    run_dir = next(p for p in (root / "runs").iterdir() if p.is_dir())

    output = SENTENCE * int(a.mb * 1e6 / len(SENTENCE))
    prompt = ("Please repeat: " + SENTENCE * a.prompt_repeats if not a.unechoed
              else "Tell me about The Mill.")
    row = {"prompt": prompt, "output": output, "model": "web UI",
           "captured_at": "2025-06-03T14:05:00Z", "captured_by": "A. Tester",
           "source": "hostile", "intent": "benign", "work_id": "subject"}
    src = root / "hostile.jsonl"
    src.write_text(json.dumps(row) + "\n")
    print(f"output {len(output) / 1e6:.1f} MB ({len(output.split())} words), prompt "
          f"{len(prompt.split())} words, {'un' if a.unechoed else ''}echoed, work holds the "
          f"sentence {2 + a.refrain} times; "
          f"address-space limit {a.limit_gb} GB")
    rc = subprocess.run([*CASEKIT, "import", str(run_dir), str(src)],
                        env=env, cwd=env["CASEKIT_BENCH_CODE"], capture_output=True, text=True)
    if rc.returncode:
        sys.exit(f"import failed: {rc.stderr}")

    for name, args in (("analyze", ["analyze", str(run_dir)]),
                       ("report", ["report", str(run_dir)])):
        if name not in a.stages.split(","):
            continue
        code, wall, peak = child(args, a.limit_gb, env)
        print(f"  {name:8s} exit {code}  {wall:7.1f} s  peak RSS {peak:7.0f} MB")
    if not a.keep:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
