"""Bulk import (``casekit import``): rows per second at 100,000 rows, against a baseline
casekit measured in the same run.

    .venv/bin/python benchmarks/import_bench.py                     # 100,000 rows
    .venv/bin/python benchmarks/import_bench.py --rows 20000 --baseline-rev d7a9133

Writes an evidence-only case (two short works, no models) and a JSONL file of free-form rows
(a prompt, a one-sentence output, capture time, source; a tenth of them of kind
``name_cloze`` with their masked name and passage), then imports the same file into a fresh run
twice, each in its own process: once with casekit as it is in this checkout and once with
casekit as it was at ``--baseline-rev`` (extracted with ``git archive`` into a temporary
folder and put first on the child's ``sys.path``; default: the commit before the import's
speed work). Each child times ``import_outputs`` alone (the case and the file are written
before) and reports wall time, its own CPU time and the fsyncs the ledger made; the parent
checks the ledger verifies. The machine is shared: CPU seconds are steadier than wall time.
Nothing is asserted; the figures are printed with their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BASELINE_REV = "d7a9133"
"""main before the import's speed work (issue 17): the canonical form walked in Python."""

SUBJECT = ("The miller's daughter counted the sacks of grain twice before the cart left the "
           "yard, because her father had once been cheated by a merchant from the coast. ") * 8
CONTROL = ("Copper kettles hummed in the lantern shop while the rain fell on the harbour "
           "roofs and nobody came to buy a lamp that evening. ") * 8

CASE = textwrap.dedent("""\
    case: {id: import-bench, title: Import bench, matter: none, examiner: Bench,
           organization: casekit}
    works:
      - {id: subject, title: The Mill, author: Anon, path: subject.txt, role: subject}
      - {id: control, title: The Lantern Shop, author: casekit, path: control.txt,
         role: control}
    """)

CHILD = textwrap.dedent("""\
    import json, os, sys, time
    from pathlib import Path
    import casekit.ledger as L
    fsyncs = [0]
    real = L.os.fsync
    def counting(fd):
        fsyncs[0] += 1
        return real(fd)
    L.os.fsync = counting
    from casekit.run.importer import import_outputs
    case, rows = Path(sys.argv[1]), Path(sys.argv[2])
    c0, w0 = time.process_time(), time.perf_counter()
    res = import_outputs(case, rows)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    print(json.dumps({"imported": res.imported, "wall": wall, "cpu": cpu,
                      "fsyncs": fsyncs[0], "ledger": str(res.ledger_path),
                      "casekit": __import__("casekit").__file__}))
    """)


def write_rows(path: Path, n: int) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            if i % 10 == 9:
                row = {"kind": "name_cloze", "work_id": "subject", "model": "GPT-4 (study)",
                       "masked_name": "Miller", "output": "<name>Miller</name>",
                       "passage": f"The [MASK] daughter counted the sacks (passage {i})",
                       "source": "a published study"}
            else:
                row = {"work_id": "subject" if i % 2 else "control", "model": "ChatGPT 4o",
                       "intent": "adversarial", "prompt": f"Continue the story, part {i}.",
                       "output": f"The miller's daughter counted the sacks ({i}) and the "
                                 "cart left the yard before the rain.",
                       "captured_at": "2025-06-03T14:05:00Z", "captured_by": "A. Colleague",
                       "source": "chatgpt.com web UI"}
            fh.write(json.dumps(row) + "\n")


def run_child(tree: Path, work: Path, rows: Path) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(tree), "CASEKIT_HOME": str(work / "home")}
    out = subprocess.run([sys.executable, "-c", CHILD, str(work / "case.yaml"), str(rows)],
                         cwd=work, env=env, check=True, capture_output=True, text=True)
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def setup(root: Path, name: str) -> Path:
    work = root / name
    work.mkdir()
    (work / "subject.txt").write_text(SUBJECT, encoding="utf-8")
    (work / "control.txt").write_text(CONTROL, encoding="utf-8")
    (work / "case.yaml").write_text(CASE, encoding="utf-8")
    return work


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--baseline-rev", default=BASELINE_REV,
                    help="the git revision to compare with ('none': this checkout only)")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from casekit.ledger import verify_chain

    with tempfile.TemporaryDirectory(prefix="casekit-import-bench-") as tmp:
        root = Path(tmp)
        rows = root / "rows.jsonl"
        write_rows(rows, args.rows)
        print(f"  {args.rows:,} rows ({rows.stat().st_size / 1e6:.1f} MB of JSONL), "
              f"load average {os.getloadavg()[0]:.1f}")
        trees = [("this checkout", REPO)]
        if args.baseline_rev != "none":
            base = root / "baseline"
            base.mkdir()
            archive = subprocess.run(["git", "-C", str(REPO), "archive", args.baseline_rev,
                                      "casekit"], check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
            trees.append((f"baseline {args.baseline_rev}", base))
        results = []
        for i, (label, tree) in enumerate(trees):
            res = run_child(tree, setup(root, f"run{i}"), rows)
            assert str(res["casekit"]).startswith(str(tree)), res["casekit"]
            check = verify_chain(Path(str(res["ledger"])))
            wall, cpu = float(str(res["wall"])), float(str(res["cpu"]))
            print(f"  {label:<22} {res['imported']:>9,} rows  wall {wall:6.2f} s "
                  f"({int(str(res['imported'])) / wall:>8,.0f} rows/s)  CPU {cpu:6.2f} s "
                  f"({int(str(res['imported'])) / cpu:>8,.0f} rows/s)  fsyncs {res['fsyncs']}  "
                  f"ledger verifies: {check.ok}")
            results.append((wall, cpu))
        if len(results) == 2:
            (w1, c1), (w0, c0) = results
            print(f"  speed-up over the baseline: {w0 / w1:.1f}x wall, {c0 / c1:.1f}x CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
