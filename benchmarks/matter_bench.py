"""End to end at a matter's size: run, analyze, report and verify a whole-novel case.

    .venv/bin/python benchmarks/matter_bench.py                      # 5,000 and 50,000 attempts
    .venv/bin/python benchmarks/matter_bench.py --sizes 5000         # one size
    .venv/bin/python benchmarks/matter_bench.py --large              # adds 500,000 attempts

A fast part inside a slow pipeline is a slow product, so this measures the pipeline as a user
runs it: each stage is the `casekit` command in its own process, timed (wall) with its peak
resident memory (the child's ru_maxrss). The model is benchmarks/memorized_server.py on
127.0.0.1: an OpenAI-compatible server that answers a known share of prompts with the book's
next words (one word in 15 replaced) and filler otherwise, so the recall of the planted
continuations is checked against ground truth. Also printed: analysis cost per attempt on a
2,000-word work against the whole novel (the ratio should be near 1: cost must not grow with
the work). Targets are those of issue 14; every figure is printed with its target, none is
asserted.

The novel: --novel PATH, else ../shared/corpus/austen-emma.txt when that folder is there, else
benchmarks/data/austen-emma.txt.gz (Project Gutenberg #158, public domain, shipped here).

With ``--wam-reference PATH`` (Liu et al.'s evaluation/memorization_eval_metrics.py from
cauchy221/Alignment-Whack-a-Mole-Code, kept outside this repository) it also compares casekit
with that script on a Whack-a-Mole-format workload built from the whole novel
(benchmarks/wam_workload.py): the script runs in its own interpreter with nltk and tqdm
(``--wam-python``, else $WAM_PYTHON, else /tmp/wam-venv/bin/python), casekit analyzes the same
generations imported into a run, and the four numbers of both are printed side by side with
the time ratio. The exit status is 1 when they differ.

    .venv/bin/python benchmarks/matter_bench.py --sizes "" --cost-attempts 0 \
        --wam-reference /path/to/memorization_eval_metrics.py
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from benchmarks.memorized_server import Book, planted  # noqa: E402
from benchmarks.wam_workload import Workload, make_workload  # noqa: E402

SHARED_NOVEL = REPO.parent / "shared" / "corpus" / "austen-emma.txt"
SHIPPED_NOVEL = HERE / "data" / "austen-emma.txt.gz"
MEMORIZER, FORGETTER = "memorizer", "forgetter"
RECALL = {MEMORIZER: 0.3, FORGETTER: 0.0}
"""Share of prompts each model answers from the book."""
ANSWER_WORDS = 60
SMALL_WORDS = 2000
COST_REPEATS = 3
"""Analyses of each run of the cost comparison; the fastest is kept."""
COST_PASSES = 7
"""Passes of the analysis over each work's attempt records (attempt_costs); the fastest is
kept."""


@dataclasses.dataclass
class Stage:
    name: str
    wall: float
    rss_mb: float
    rc: int
    tail: str
    cpu: float = 0.0
    """User + system CPU seconds of the child and the children it waited for (workers)."""


def novel_text(path: Path | None) -> tuple[str, str]:
    """(text, where it came from)."""
    if path is not None:
        return path.read_text(encoding="utf-8"), str(path)
    if SHARED_NOVEL.is_file():
        return SHARED_NOVEL.read_text(encoding="utf-8"), str(SHARED_NOVEL)
    return gzip.decompress(SHIPPED_NOVEL.read_bytes()).decode("utf-8"), str(SHIPPED_NOVEL)


def control_text(vocabulary: list[str], words: int, seed: int = 7) -> str:
    """An unseen text: seeded sentences of the novel's own words (same word frequencies, no
    long shared runs), in paragraphs."""
    rng = random.Random(seed)
    out: list[str] = []
    sentence: list[str] = []
    for _ in range(words):
        sentence.append(rng.choice(vocabulary))
        if len(sentence) >= rng.randint(8, 24):
            out.append(" ".join(sentence).capitalize() + ".")
            sentence = []
            if rng.random() < 0.15:
                out.append("\n\n")
    return " ".join(out).replace(" \n\n ", "\n\n") + "\n"


def write_case(folder: Path, subject: str, control: str, url: str, per_model: int,
               models: list[str]) -> Path:
    """A case with one subject and one control, ``models`` on the server, prefix continuation
    with ``per_model`` windows of the subject and a matching share of the control."""
    works = folder / "works"
    works.mkdir(parents=True, exist_ok=True)
    (works / "subject.txt").write_text(subject, encoding="utf-8")
    (works / "control.txt").write_text(control, encoding="utf-8")
    subj_words, ctrl_words = len(subject.split()), len(control.split())
    ctrl_windows = max(1, round(per_model * ctrl_words / (subj_words + ctrl_words)))
    subj_windows = max(1, per_model - ctrl_windows)
    model_yaml = "".join(textwrap.dedent(f"""\
          - id: {m}
            provider: openai-compatible
            model: {m}
            base_url: {url}
            params: {{max_connections: 64}}
        """) for m in models)
    (folder / "case.yaml").write_text(textwrap.dedent("""\
        case:
          id: matter-bench
          title: "Matter benchmark: a whole novel"
          matter: benchmark
          examiner: benchmark
          organization: casekit
        works:
          - id: novel
            title: The Novel
            author: Anon
            path: works/subject.txt
            role: subject
            published: 1815-12-23
          - id: control
            title: The Control
            author: casekit benchmark
            path: works/control.txt
            role: control
            published: 2026-12-01
        models:
        """) + model_yaml + textwrap.dedent(f"""\
        strategies:
          - name: prefix_continuation
            params: {{prefix_words: 50, suffix_words: 50, stride_words: 1,
                      max_windows: {subj_windows}}}
            works: [novel]
          - name: prefix_continuation
            params: {{prefix_words: 50, suffix_words: 50, stride_words: 1,
                      max_windows: {ctrl_windows}}}
            works: [control]
        decoding: {{temperature: 0.0, max_tokens: 100}}
        seed: 20261204
        """), encoding="utf-8")
    return folder / "case.yaml"


def run_stage(name: str, args: list[str], log: Path, timeout: float) -> Stage:
    """One `casekit` command in its own process: wall time and the child's peak RSS."""
    return run_timed(name, [sys.executable, "-m", "casekit.cli", *args], log, timeout,
                     f"casekit {' '.join(args)}")


def run_timed(name: str, cmd: list[str], log: Path, timeout: float, shown: str) -> Stage:
    """A command in its own process, output appended to ``log``: wall time and the child's
    peak RSS."""
    t0 = time.perf_counter()
    with log.open("ab") as out:
        out.write(f"\n$ {shown}\n".encode())
        out.flush()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = t0 + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                status = -9
                break
            time.sleep(0.05)
    wall = time.perf_counter() - t0
    rc = os.waitstatus_to_exitcode(status) if status != -9 else -9
    proc.returncode = rc
    tail = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
    return Stage(name, wall, usage.ru_maxrss / 1024, rc, tail[0][:200],
                 usage.ru_utime + usage.ru_stime)


def start_server(book: Path, models: list[str]) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, str(HERE / "memorized_server.py"), "--book", str(book),
           "--words", str(ANSWER_WORDS)]
    for m in models:
        cmd += ["--recall", f"{m}={RECALL.get(m, 0.0)}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"listening on (\S+)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"the memorized server did not start: {line!r}")
    return proc, m.group(1)


def recall_of(run_dir: Path, book: Book) -> tuple[int, int, int]:
    """(planted continuations, of them found as a match, matches on unplanted attempts) from
    the ledger (prompts) and attempts.parquet (outcomes). Planted: the server's own rule (the
    hash, and a prompt it can place in the book)."""
    import pyarrow.parquet as pq

    table = pq.read_table(run_dir / "attempts.parquet", columns=["attempt_id", "outcome"])
    outcome = dict(zip(table.column("attempt_id").to_pylist(),
                       table.column("outcome").to_pylist(), strict=True))
    planted_n = found = spurious = 0
    with (run_dir / "ledger.jsonl").open("rb") as fh:
        for line in fh:
            rec = json.loads(line)
            if rec.get("record_type") != "attempt":
                continue
            att = rec["attempt"]
            prompt = next((m["content"] for m in reversed(att["messages"])
                           if m["role"] == "user"), "")
            is_planted = (att["work_id"] == "novel"
                          and planted(att["model_id"], prompt, RECALL.get(att["model_id"], 0))
                          and book.after(prompt) is not None)
            hit = outcome.get(att["id"]) == "match"
            planted_n += is_planted
            found += is_planted and hit
            spurious += (not is_planted) and hit
    return planted_n, found, spurious


def pipeline(label: str, root: Path, subject: str, control: str, book: Path, per_model: int,
             models: list[str], timeout: float, stages: tuple[str, ...]) -> dict[str, Stage]:
    folder = root / label
    case = write_case(folder, subject, control, "URL", per_model, models)
    server, url = start_server(book, models)
    try:
        case.write_text(case.read_text().replace("URL", url))
        run_dir = folder / "run"
        log = folder / "casekit.log"
        out: dict[str, Stage] = {}
        plan = {"run": ["run", str(case), "--run-dir", str(run_dir)],
                "analyze": ["analyze", str(run_dir)],
                "report": ["report", str(run_dir)],
                "verify": ["verify", str(run_dir / "report" / "report.pdf")]}
        for name in stages:
            st = run_stage(name, ["-q", *plan[name]], log, timeout)
            if name in out and st.rc == 0 and st.wall >= out[name].wall:
                continue  # a stage given more than once: its fastest run is kept
            out[name] = st
            if st.rc != 0:
                print(f"    {name}: exit {st.rc} after {st.wall:.1f} s ({st.tail}); see {log}")
                break
        return out
    finally:
        server.terminate()
        server.wait(10)


def attempt_costs(runs: dict[str, Path], passes: int) -> dict[str, tuple[float, int]]:
    """Per label, (seconds of this process per analyzed attempt, attempts): the subject work's
    attempt records of each run, read and verified once, then analyzed ``passes`` times, each
    pass by an Analyzer built afresh, in batches of casekit.analysis.parallel.BATCH records as
    an analysis in one process takes them (Analyzer.seed_hints, then Analyzer.attempt: what a
    worker process does per attempt; the records' parsing and checking and the table rows are
    left out; a fresh analyzer, so that no pass
    finds the prompts' m-grams another pass left in its cache), the labels' passes alternating
    so that a change in the machine's speed touches both alike; the fastest pass counts. Only
    the subject's attempts: the planner gives the 2,000-word control half the attempts beside
    a 2,000-word work and 1% beside the novel, and its outputs are filler (cheaper to analyze),
    so the mix of the whole runs differs. The collector is paused, as in an analysis."""
    import gc

    from casekit.analysis.analyze import _analyzer_for
    from casekit.analysis.parallel import BATCH
    from casekit.ledger import iter_records
    from casekit.records import AttemptRecord, RunStart

    work: dict[str, tuple[Path, RunStart, list[AttemptRecord]]] = {}
    for label, folder in runs.items():
        recs = list(iter_records(folder / "run" / "ledger.jsonl"))
        start = next(r for r in recs if isinstance(r, RunStart))
        subject = {w["id"] for w in start.case["works"] if w.get("role", "subject") == "subject"}
        work[label] = (folder, start, [r for r in recs if isinstance(r, AttemptRecord)
                                       and r.attempt.work_id in subject])
    best = {label: float("inf") for label in work}
    gc.disable()
    try:
        for _ in range(passes):
            for label, (folder, start, attempts) in work.items():
                an = _analyzer_for(folder / "run", start, folder / "case.yaml")
                t = time.process_time()
                for i in range(0, len(attempts), BATCH):
                    batch = attempts[i:i + BATCH]
                    for rec, hint in zip(batch, an.seed_hints(batch), strict=True):
                        an.attempt(rec, hint)
                best[label] = min(best[label], time.process_time() - t)
                del an
    finally:
        gc.enable()
    return {label: (best[label] / len(work[label][2]), len(work[label][2])) for label in work}


def fmt_stage(s: Stage, attempts: int) -> str:
    rate = f"{attempts / s.wall:,.0f} attempts/s" if s.wall > 0 else ""
    state = "" if s.rc == 0 else f"  FAILED (exit {s.rc})"
    return f"{s.name:8s} wall {s.wall:9.1f} s  peak RSS {s.rss_mb:8.0f} MB  {rate}{state}"


def target(ok: bool) -> str:
    return "met" if ok else "MISSED"


# --- the Whack-a-Mole reference comparison ------------------------------------------------------

WAM_VENV = "/tmp/wam-venv/bin/python"
WAM_HOWTO = "python -m venv /tmp/wam-venv && /tmp/wam-venv/bin/pip install nltk tqdm"
WAM_MODEL, WAM_WORK = "wam", "novel"
WAM_ARGS = ["--k", "5", "--trim_k", "5", "--span_threshold", "20"]
WAM_KEYS = ("bmc_score", "longest_memorized_block", "longest_regurgitated_span",
            "num_regurgitated_spans")
# Runs the reference script as __main__, unchanged, with its own command line, then writes the
# `results` its main block computed (exact, where it prints BMC@k rounded to 0.01 %).
WAM_RUN = """
import json, runpy, sys
out, sys.argv = sys.argv[1], sys.argv[2:]
results = runpy.run_path(sys.argv[0], run_name="__main__")["results"]
with open(out, "w") as fh:
    json.dump(results, fh)
"""
# The reference's book words (its own tokenizer and excerpt order), for the equality check.
WAM_WORDS = """
import json, runpy, sys
ref = runpy.run_path(sys.argv[1], run_name="wam_reference")
with open(sys.argv[2], encoding="utf-8") as fh:
    index, _ = ref["_build_book_index"](json.load(fh))
with open(sys.argv[3], "w") as fh:
    json.dump(index.words, fh)
"""
_WAM_PRINTED = {
    "bmc_score": r"BMC@\d+:\s+([\d.]+)%", "longest_memorized_block": r"Longest Memorized Block:"
    r"\s+(\d+) words", "longest_regurgitated_span": r"Longest Regurgitated Span:\s+(\d+) words",
    "num_regurgitated_spans": r"# Regurgitated Spans \(>\d+w\):\s+(\d+)"}


def find_wam_python(arg: str | None) -> str | None:
    for cand in (arg, os.environ.get("WAM_PYTHON"), WAM_VENV):
        if cand and Path(cand).exists():
            res = subprocess.run([cand, "-c", "import nltk, tqdm"], capture_output=True)
            if res.returncode == 0:
                return cand
    return None


def write_wam_case(folder: Path, wl: Workload) -> Path:
    """An evidence-only case (works, no models, no strategies) for the imported generations:
    the novel as the excerpts joined, counted whole (the reference counts every word)."""
    works = folder / "works"
    works.mkdir(parents=True, exist_ok=True)
    (works / "novel.txt").write_text(wl.work, encoding="utf-8")
    (folder / "case.yaml").write_text(textwrap.dedent(f"""\
        case:
          id: wam-bench
          title: "Whack-a-Mole reference comparison"
          matter: benchmark
          examiner: benchmark
          organization: casekit
        works:
          - id: {WAM_WORK}
            title: The Novel, in excerpts
            author: Anon
            path: works/novel.txt
            role: subject
            published: 1815-12-23
            boilerplate: keep
        models: []
        strategies: []
        allow_no_control: true
        """), encoding="utf-8")
    return folder / "case.yaml"


def casekit_wam_numbers(run_dir: Path) -> dict[str, float]:
    """casekit's four numbers for the imported generations, from findings.json: BMC@5, the
    longest block of its mask, the longest regurgitated span and spans > 20 words. The longest
    regurgitated span is checked against attempts.parquet's per-attempt figures (their
    maximum), which older findings.json files do not summarize."""
    import pyarrow.parquet as pq

    doc = json.loads((run_dir / "findings.json").read_text(encoding="utf-8"))
    f = next(x for x in doc["findings"]
             if x["model_id"] == WAM_MODEL and x["work_id"] == WAM_WORK)
    t = pq.read_table(run_dir / "attempts.parquet",
                      columns=["model_id", "work_id", "longest_regurgitated_words"]).to_pydict()
    regurg = max((n for m, w, n in zip(t["model_id"], t["work_id"],
                                       t["longest_regurgitated_words"], strict=True)
                  if m == WAM_MODEL and w == WAM_WORK), default=0)
    if "longest_regurgitated_words" in f and f["longest_regurgitated_words"] != regurg:
        print(f"  findings.json's longest regurgitated span ({f['longest_regurgitated_words']}) "
              f"is not the largest in attempts.parquet ({regurg})")
        regurg = -1
    return {"bmc_score": f["bmc"]["5"], "longest_memorized_block": f["longest_block_bmc5"],
            "longest_regurgitated_span": regurg, "num_regurgitated_spans": f["spans_over_t"]}


def trim_effect(wl: Workload, tokens: Any) -> dict[str, int]:
    """BMC@5's covered words of the workload (casekit's library, in process) with the
    instruction m-grams not trimmed, trimmed as the reference does (an m-gram wholly inside a
    matched span) and as casekit's default profile discounts (any word an instruction m-gram
    of the work touches): shows that the workload's instructions matter, at span edges too."""
    import numpy as np

    from casekit.analysis.leakage import MgramTrim, prompt_words, trim_inside
    from casekit.analysis.matcher import WorkMatcher
    from casekit.normalize import tokenize

    k = 5
    m = WorkMatcher(tokens, k)
    trim = MgramTrim(m.vocab, m.index)
    n = len(tokens)
    masks = {name: np.zeros(n, dtype=bool) for name in ("untrimmed", "reference", "any")}
    for i, gens in enumerate(wl.generations):
        pw = prompt_words([wl.instructions[i]], tokens.profile)
        starts = trim.starts(pw)
        touched = trim.positions(pw).to_bool(n)
        for g in gens:
            spans = [(e.work_start, e.work_end)
                     for e in m.exact_spans(tokenize(g, tokens.profile))]
            for s0, e0 in spans:
                masks["untrimmed"][s0:e0] = True
            for s0, e0 in trim_inside(spans, starts, k, k):
                masks["reference"][s0:e0] = True
            for s0, e0 in spans:
                free = ~touched[s0:e0]
                d = np.diff(np.concatenate(([0], free.astype(np.int8), [0])))
                for a, b in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1), strict=True):
                    if b - a >= k:
                        masks["any"][s0 + a:s0 + b] = True
    return {name: int(mask.sum()) for name, mask in masks.items()}


def wam_comparison(root: Path, text: str, reference: Path, python: str, generations: int,
                   words: int, seed: int, timeout: float) -> bool:
    """Runs both on the same workload and prints the comparison; True when the numbers are
    equal."""
    folder = root / "wam"
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "wam.log"
    # A cache of its own: the analysis builds the work's index cold, whatever ran before.
    os.environ["CASEKIT_CACHE"] = str(folder / "cache")
    t0 = time.perf_counter()
    wl = make_workload(text, generations=generations, words=words, seed=seed)
    test_book, gen_file = folder / "test_book.json", folder / "generations.json"
    test_book.write_text(json.dumps(wl.test_book()), encoding="utf-8")
    gen_file.write_text(json.dumps(wl.generation_file()), encoding="utf-8")
    print(f"\nWhack-a-Mole reference comparison ({reference}; python {python}):")
    print(f"  workload (seed {seed}): {len(wl.excerpts)} excerpts "
          f"({len(wl.work.split()):,} words), {wl.n_generations:,} generations, "
          f"{wl.generated_words:,} generated words; built in {time.perf_counter() - t0:.1f} s")

    # The same book words on both sides, or nothing below is comparable.
    from casekit.case import load_case
    from casekit.works import load_works

    case = write_wam_case(folder, wl)
    words_json = folder / "reference_words.json"
    res = subprocess.run([python, "-c", WAM_WORDS, str(reference), str(test_book),
                          str(words_json)], capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        print(f"  the reference script could not be loaded: {res.stderr.strip()[-500:]}")
        return False
    ref_words = json.loads(words_json.read_text(encoding="utf-8"))
    novel = next(w for w in load_works(load_case(case)) if w.id == WAM_WORK)
    ck_words = list(novel.liu_tokens.words)
    if ck_words != ref_words:
        i = next((i for i, (a, b) in enumerate(zip(ck_words, ref_words, strict=False))
                  if a != b), min(len(ck_words), len(ref_words)))
        print(f"  WORDS DIFFER: casekit's words profile gives {len(ck_words):,} words, the "
              f"reference {len(ref_words):,}; first difference at word {i}: casekit "
              f"{ck_words[i:i + 5]}, reference {ref_words[i:i + 5]}")
        return False
    print(f"  book words: casekit's words profile of the work = the reference's per-excerpt "
          f"words, concatenated ({len(ck_words):,} words): equal")

    rows = folder / "generations.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in wl.import_rows(WAM_WORK, WAM_MODEL)),
                    encoding="utf-8")
    st = run_stage("import", ["-q", "import", str(case), str(rows)], log, timeout)
    if st.rc != 0:
        print(f"  casekit import: exit {st.rc} ({st.tail}); see {log}")
        return False
    print(f"  casekit import (starts the evidence-only case's run): {st.wall:.1f} s "
          "(not timed below)")
    from casekit.run.runner import default_run_dir

    run_dir = default_run_dir(load_case(case))
    ck_stage = run_stage("analyze", ["-q", "analyze", str(run_dir)], log, timeout)
    if ck_stage.rc != 0:
        print(f"  casekit analyze: exit {ck_stage.rc} ({ck_stage.tail}); see {log}")
        return False
    ck = casekit_wam_numbers(run_dir)

    out_json = folder / "reference_results.json"
    ref_log = folder / "reference.log"
    ref_stage = run_timed(
        "reference", [python, "-c", WAM_RUN, str(out_json), str(reference), "--test_book",
                      str(test_book), "--generation_file", str(gen_file), *WAM_ARGS],
        ref_log, timeout, f"{reference} {' '.join(WAM_ARGS)}")
    if ref_stage.rc != 0:
        print(f"  reference script: exit {ref_stage.rc} ({ref_stage.tail}); see {ref_log}")
        return False
    ref = json.loads(out_json.read_text(encoding="utf-8"))
    printed = ref_log.read_text(errors="replace")
    shown = {k: (m.group(1) if (m := re.search(rx, printed)) else "?")
             for k, rx in _WAM_PRINTED.items()}

    n = len(ref_words)
    same = {"bmc_score": round(ref["bmc_score"], 6) == ck["bmc_score"]}
    same.update({k: int(ref[k]) == int(ck[k]) for k in WAM_KEYS[1:]})
    labels = {"bmc_score": "BMC@5", "longest_memorized_block": "longest memorized block",
              "longest_regurgitated_span": "longest regurgitated span",
              "num_regurgitated_spans": "spans > 20 words"}
    print(f"  {'':28s}{'reference':>22s}{'casekit':>22s}")
    for k in WAM_KEYS:
        if k == "bmc_score":
            r = f"{ref[k]:.6f} ({round(ref[k] * n):,} w)"
            c = f"{ck[k]:.6f} ({round(ck[k] * n):,} w)"
        else:
            r, c = f"{int(ref[k]):,}", f"{int(ck[k]):,}"
        print(f"  {labels[k]:28s}{r:>22s}{c:>22s}  {'equal' if same[k] else 'DIFFERENT'}")
    print(f"  (the script printed: BMC@5 {shown['bmc_score']} %, block "
          f"{shown['longest_memorized_block']}, span {shown['longest_regurgitated_span']}, "
          f"spans > 20w {shown['num_regurgitated_spans']})")
    equal = all(same.values())
    print(f"  numbers: {'EQUAL' if equal else 'NOT EQUAL'}")
    eff = trim_effect(wl, novel.liu_tokens)
    print(f"  the instruction trim on this workload (BMC@5 covered words): untrimmed "
          f"{eff['untrimmed']:,}; trimmed as the reference (m-grams wholly inside a span) "
          f"{eff['reference']:,}; discounting every word an instruction m-gram touches (the "
          f"rule of casekit's default profile) {eff['any']:,}")
    ratio = ref_stage.wall / ck_stage.wall
    print(f"  reference script: wall {ref_stage.wall:6.1f} s, CPU {ref_stage.cpu:6.1f} s, "
          f"peak RSS {ref_stage.rss_mb:.0f} MB")
    print(f"  casekit analyze:  wall {ck_stage.wall:6.1f} s, CPU {ck_stage.cpu:6.1f} s, "
          f"peak RSS {ck_stage.rss_mb:.0f} MB ({os.cpu_count()} CPUs, default workers)")
    print(f"  time ratio reference / casekit: {ratio:.1f}x wall (target >= 20x: "
          f"{target(ratio >= 20)}), {ref_stage.cpu / max(ck_stage.cpu, 1e-9):.1f}x CPU; load "
          f"average {os.getloadavg()[0]:.1f}")
    return equal


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="5000,50000",
                    help="comma-separated attempt counts (default 5000,50000)")
    ap.add_argument("--large", action="store_true", help="also 500,000 attempts (five models)")
    ap.add_argument("--novel", type=Path, default=None)
    ap.add_argument("--cost-attempts", type=int, default=2000,
                    help="attempts of each run of the cost-per-attempt comparison (0: skip)")
    ap.add_argument("--timeout", type=float, default=3 * 3600, help="seconds per stage")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--stages", default="run,analyze,report,verify",
                    help="comma-separated stages of the sized runs (default: all four)")
    ap.add_argument("--wam-reference", type=Path, default=None, metavar="PATH",
                    help="Liu et al.'s evaluation/memorization_eval_metrics.py "
                         "(cauchy221/Alignment-Whack-a-Mole-Code): also compare casekit with it "
                         "on a WaM-format workload of the novel")
    ap.add_argument("--wam-python", default=None, metavar="PATH",
                    help="an interpreter with nltk and tqdm for the reference script (default: "
                         f"$WAM_PYTHON, else {WAM_VENV})")
    ap.add_argument("--wam-generations", type=int, default=3000)
    ap.add_argument("--wam-words", type=int, default=1_000_000,
                    help="generated words in all (default 1,000,000)")
    ap.add_argument("--wam-seed", type=int, default=20261205)
    args = ap.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    wam_python = None
    if args.wam_reference is not None:
        if not args.wam_reference.is_file():
            ap.error(f"--wam-reference {args.wam_reference}: no such file; give the path of "
                     "evaluation/memorization_eval_metrics.py from "
                     "cauchy221/Alignment-Whack-a-Mole-Code")
        wam_python = find_wam_python(args.wam_python)
        if wam_python is None:
            ap.error("no interpreter with nltk and tqdm for the reference script: pass "
                     f"--wam-python or set $WAM_PYTHON, or create one: {WAM_HOWTO}")
    if args.large:
        sizes.append(500_000)

    text, source = novel_text(args.novel)
    import casekit

    words = text.split()
    vocab = sorted({w.strip('.,;:!?"\'()_-').lower() for w in words} - {""})
    control = control_text(vocab, 40_000)
    root = Path(tempfile.mkdtemp(prefix="casekit-matter-"))
    status = 0
    book = root / "book.txt"
    book.write_text(text, encoding="utf-8")
    print(f"casekit {casekit.__version__} matter benchmark; python "
          f"{sys.version.split()[0]}, {os.cpu_count()} CPUs; work folder {root}")
    print(f"  novel: {source} ({len(words):,} words); control: {len(control.split()):,} words "
          f"(seeded, unseen); planted recall: {RECALL}")
    try:
        for n in sizes:
            models = [MEMORIZER, FORGETTER] if n < 500_000 else \
                [MEMORIZER, FORGETTER, "model-c", "model-d", "model-e"]
            per_model = n // len(models)
            print(f"\n{n:,} attempts ({len(models)} models x {per_model:,} prefix windows):")
            res = pipeline(f"n{n}", root, text, control, book, per_model, models,
                           args.timeout, tuple(x for x in args.stages.split(",") if x))
            for st in res.values():
                print("  " + fmt_stage(st, n))
            if "analyze" in res and res["analyze"].rc == 0:
                p, f, s = recall_of(root / f"n{n}" / "run", Book(text))
                print(f"  recall of planted continuations: {f:,} of {p:,} "
                      f"({f / p:.1%}); matches on unplanted attempts: {s:,}" if p else
                      "  no planted continuation")
                a = res["analyze"]
                print(f"  analyze: {n / a.wall:,.0f} attempts/s (target >= 5,000: "
                      f"{target(n / a.wall >= 5000)})")
                # What the figure is: attempts over the wall time of the whole `casekit
                # analyze` command (interpreter start, imports, the works' indexes, the
                # aggregates and the writes included), on a machine other work may share.
                print(f"    (attempts / the command's wall time, start-up included; CPU "
                      f"{a.cpu:.1f} s in the command and its workers on {os.cpu_count()} "
                      f"CPUs; load average {os.getloadavg()[0]:.1f})")
                if n >= 500_000:
                    ok = a.wall <= 180 and a.rss_mb <= 2048
                    print(f"  analyze <= 180 s and <= 2 GB: {target(ok)}")
            if "report" in res and res["report"].rc == 0:
                r = res["report"]
                if n <= 5000:
                    print(f"  report <= 20 s: {target(r.wall <= 20)}")
                if n >= 500_000:
                    ok = r.wall <= 120 and r.rss_mb <= 1024
                    print(f"  report <= 120 s and <= 1 GB: {target(ok)}")
                pdf = root / f"n{n}" / "run" / "report" / "report.pdf"
                if pdf.exists():
                    print(f"  report.pdf: {pdf.stat().st_size / 1e6:.1f} MB")
            if {"analyze", "report", "verify"} <= set(res):
                v = res["verify"].wall
                ar = res["analyze"].wall + res["report"].wall
                print(f"  verify / (analyze + report): {v / ar:.2f} "
                      f"(target <= 1: {target(v <= ar)})")

        if args.cost_attempts:
            m = args.cost_attempts
            q = max(1, m // 4)
            small = " ".join(words[:SMALL_WORDS]) + "\n"
            print(f"\nanalysis cost per attempt, one model: the marginal cost is the difference "
                  f"of the walls of {m:,}- and {q:,}-attempt analyses over the {m - q:,} attempts "
                  "between them (it leaves out the one-time start-up: reading the works and "
                  "building their indexes, which grows with the work once per analysis); each "
                  f"wall is the fastest of {COST_REPEATS} analyses of the same run, as the "
                  "difference of two walls of 1-2 s moves with the machine's load by more than "
                  "the quantity measured")
            costs = {}
            runs: dict[str, Path] = {}
            for label, subj in (("2k-word work", small), ("whole novel", text)):
                walls = {}
                runs[label] = root / f"cost-{label.split()[0]}-{m}"
                for n_att in (q, m):
                    res = pipeline(f"cost-{label.split()[0]}-{n_att}", root, subj,
                                   control_text(vocab, 2000), book, n_att, [MEMORIZER],
                                   args.timeout, ("run",) + ("analyze",) * COST_REPEATS)
                    a = res.get("analyze")
                    if a is None or a.rc != 0:
                        break
                    walls[n_att] = a
                if len(walls) != 2:
                    print(f"  {label}: analyze failed")
                    continue
                marginal = (walls[m].wall - walls[q].wall) / (m - q)
                setup = walls[q].wall - marginal * q
                costs[label] = marginal
                print(f"  {label:13s} ({len(subj.split()):,} words): {1000 * marginal:.2f} ms per "
                      f"attempt (marginal); start-up {setup:.1f} s; {m:,} attempts in "
                      f"{walls[m].wall:.1f} s = {1000 * walls[m].wall / m:.2f} ms each with the "
                      f"start-up; peak RSS {walls[m].rss_mb:.0f} MB")
            if len(costs) == 2:
                ratio = costs["whole novel"] / costs["2k-word work"]
                print(f"  ratio whole novel / 2k-word work, marginal: {ratio:.2f} (a cross-check: "
                      "on this machine it has moved between 0.8 and 1.4 from run to run)")
                # The quantity itself, without the commands around it: the same attempt records
                # analyzed over and over in this process, the two works' passes alternating so
                # that a change in the machine's speed touches both alike.
                per = attempt_costs(runs, COST_PASSES)
                for label, (sec, n_rec) in per.items():
                    print(f"  {label:13s}: {1e6 * sec:.0f} us per attempt in one process "
                          f"(casekit.analysis.analyze.Analyzer.seed_hints and .attempt over "
                          f"the {n_rec:,} attempts on the work in the {m:,}-attempt run, read "
                          "beforehand, in batches as one process takes them; "
                          f"fastest of {COST_PASSES} passes, each by a fresh analyzer)")
                ratio = per["whole novel"][0] / per["2k-word work"][0]
                print(f"  ratio whole novel / 2k-word work, per attempt in one process: "
                      f"{ratio:.2f} (target <= 1.3: {target(ratio <= 1.3)})")

        if args.wam_reference is not None and wam_python is not None:
            if not wam_comparison(root, text, args.wam_reference, wam_python,
                                  args.wam_generations, args.wam_words, args.wam_seed,
                                  args.timeout):
                status = 1
    finally:
        if args.keep:
            print(f"\nkept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
