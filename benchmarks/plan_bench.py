"""Planning and resume at a matter's size: `casekit validate` and a resumed run, before and after.

    .venv/bin/python benchmarks/plan_bench.py                      # 240,000 and 500,000 attempts
    .venv/bin/python benchmarks/plan_bench.py --sizes 240000 --no-resume
    .venv/bin/python benchmarks/plan_bench.py --baseline-rev none  # this tree only

The case: prefix continuation (50 + 50 words, a stride of one word, a seeded sample of windows)
over a whole novel (Emma: ``--novel PATH``, else ../shared/corpus when present, else the copy in
benchmarks/data), on enough scripted models (tests/scripted.py, answered in-process) to plan
the size asked for: 240,000 = 2 models x 120,000 windows, 500,000 = 4 x 125,000.

1. ``casekit validate`` of each size in its own process: wall time and peak RSS (VmHWM of the
   child, read by the child: ``ru_maxrss`` would carry the parent's over the exec).
2. Resume at the largest size: a ledger of a run stopped 2,000 attempts before its end
   (run_start, then realistic attempt records: a 60-word output, the raw request and response,
   a try; written once with casekit's Ledger and kept in ``--workdir``), copied to a fresh run
   folder and resumed with ``Runner(case).run()`` in its own process: the time to the first
   request sent and its parts (planning and the plan's hash, ``Ledger.open``, the rest: checking
   the run and skipping what is recorded), the whole run, and peak RSS.

Both are measured on this tree and on the baseline, the code before plans streamed
(``--baseline-rev``, default 8e264885, extracted with ``git archive`` into a temporary folder and
run with the same interpreter), and printed side by side with their ratios. The baseline resumes
the very ledger this tree's plan wrote, which only works because the plan's hash is the same.
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED_NOVEL = REPO.parent / "shared" / "corpus" / "austen-emma.txt"
SHIPPED_NOVEL = HERE / "data" / "austen-emma.txt.gz"
BASELINE_REV = "8e264885fa63355d92daa8b147d10fd61cb086f2"
"""The last commit before planning streamed (issue 14, part 6)."""
PER_MODEL = 150_000
"""Most windows a model gets (the novel has about 159,700 at a stride of one word)."""
LEFT = 2_000
"""Attempts the resumed run has left to do."""


def novel_text(path: Path | None) -> tuple[str, str]:
    """(text, where it came from)."""
    if path is not None:
        return path.read_text(encoding="utf-8"), str(path)
    if SHARED_NOVEL.is_file():
        return SHARED_NOVEL.read_text(encoding="utf-8"), str(SHARED_NOVEL)
    return gzip.decompress(SHIPPED_NOVEL.read_bytes()).decode("utf-8"), str(SHIPPED_NOVEL)


def write_case(folder: Path, novel: str, size: int) -> Path:
    """A case planning exactly ``size`` attempts (``size`` must split evenly over the models)."""
    models = math.ceil(size / PER_MODEL)
    per_model, rest = divmod(size, models)
    if rest:
        raise SystemExit(f"error: --sizes {size}: give a multiple of {models}")
    (folder / "works").mkdir(parents=True, exist_ok=True)
    (folder / "works" / "novel.txt").write_text(novel, encoding="utf-8")
    model_yaml = "".join(f"  - id: m{i}\n    provider: scripted\n    model: scripted-{i}\n"
                         "    params: {outputs: {novel: \"I cannot recall the next words of "
                         "this passage, but it reads like a novel of manners.\"}}\n"
                         for i in range(models))
    (folder / "case.yaml").write_text(textwrap.dedent("""\
        case: {id: plan-bench, title: Plan benchmark, matter: benchmark, examiner: benchmark,
               organization: casekit}
        works:
          - id: novel
            title: The Novel
            author: Anon
            path: works/novel.txt
            role: subject
            published: 1815-12-23
        allow_no_control: true
        models:
        """) + model_yaml + textwrap.dedent(f"""\
        strategies:
          - name: prefix_continuation
            params: {{prefix_words: 50, suffix_words: 50, stride_words: 1,
                      max_windows: {per_model}}}
        decoding: {{temperature: 0.0, max_tokens: 100}}
        seed: 20261205
        """), encoding="utf-8")
    return folder / "case.yaml"


# -- children: each measured in its own process, on the tree given by PYTHONPATH -------------

def _vmhwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_validate(case: str) -> dict[str, Any]:
    from casekit.cli import cli

    cli.main(["validate", case], standalone_mode=False)
    return {"rss_mb": _vmhwm_mb()}


def child_resume(case: str, run_dir: str) -> dict[str, Any]:
    """Resume the run in ``run_dir``, timing its steps by wrapping them (the same names exist
    in the baseline)."""
    t0 = time.perf_counter()
    import casekit.run.runner as runner_mod
    from casekit.case import load_case
    from casekit.ledger import Ledger
    from casekit.plan import Plan
    from casekit.providers.base import Provider

    times: dict[str, float] = {}

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*a: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                times[name] = times.get(name, 0.0) + time.perf_counter() - t
        return wrapper

    runner_mod.build_plan = timed("plan", runner_mod.build_plan)  # type: ignore[attr-defined]
    Ledger.open = timed("ledger_open", Ledger.open)  # type: ignore[method-assign]
    sha = Plan.sha256
    if isinstance(sha, property):  # this tree: computed on build_plan's pass
        Plan.sha256 = property(timed("hash", sha.fget))  # type: ignore[method-assign,arg-type]
    else:  # the baseline: a cached_property over the list
        sha.func = timed("hash", sha.func)
    original_run = Provider.run
    first: list[float] = []

    async def run(self: Provider, attempt: Any) -> Any:
        if not first:
            first.append(time.perf_counter())
        return await original_run(self, attempt)

    Provider.run = run  # type: ignore[method-assign]
    import tests.scripted  # noqa: F401 - registers the provider
    out = runner_mod.Runner(load_case(Path(case)), Path(run_dir), argv=["plan_bench"]).run()
    end = time.perf_counter()
    return {"to_first_request": (first[0] - t0) if first else None, "wall": end - t0,
            "done": out.stats.done, "skipped": out.stats.skipped, "complete": out.complete,
            "rss_mb": _vmhwm_mb(), **times}


def run_child(tree: Path, args: list[str], timeout: float) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(tree), CASEKIT_PLUGINS="tests.scripted")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(HERE / "plan_bench.py"), "--child", *args],
                          env=env, cwd=tree, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"error: the child {args[0]} on {tree} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["process_wall"] = wall
    return res


# -- the resume ledger -----------------------------------------------------------------------

def write_resume_ledger(case_path: Path, run_dir: Path, left: int) -> int:
    """A ledger of the case's run stopped ``left`` attempts before its end; returns the
    attempts recorded. Uses this tree's casekit (the parent's)."""
    import tests.scripted  # noqa: F401
    from casekit.case import load_case
    from casekit.ledger import Ledger
    from casekit.provenance import iso_utc
    from casekit.records import AttemptRecord, ProviderResult, TryRecord
    from casekit.run.runner import Runner

    case = load_case(case_path)
    runner = Runner(case, run_dir, argv=["plan_bench"])
    works, plan = runner.prepare()
    total = len(plan) - left
    ledger = Ledger(run_dir).open()
    runner._start_or_resume(ledger, works, plan, iso_utc())
    ledger.flush()
    words = works[0].raw.split()
    stamp = "2026-12-05T00:00:00.000000Z"
    t0 = last = time.perf_counter()
    for i, a in enumerate(plan):
        if i == total:
            break
        out = " ".join(words[(i * 7 + j) % len(words)] for j in range(60))
        body = {"model": a.model_id, "messages": [m.model_dump() for m in a.messages],
                "temperature": 0.0, "max_tokens": 100}
        res = ProviderResult(
            text=out, finish_reason="stop", returned_model=a.model_id, request_id=f"req-{i}",
            usage={"prompt_tokens": 90, "completion_tokens": 80},
            raw_request=body,
            raw_response={"id": f"req-{i}", "object": "chat.completion", "created": 1764892800,
                          "choices": [{"index": 0, "finish_reason": "stop",
                                       "message": {"role": "assistant", "content": out}}],
                          "usage": {"prompt_tokens": 90, "completion_tokens": 80,
                                    "total_tokens": 170}})
        ledger._write(AttemptRecord(**ledger.base_fields(), attempt=a, status="ok", result=res,
                                    started_at=stamp, completed_at=stamp,
                                    tries=[TryRecord(started_at=stamp, completed_at=stamp)]),
                      flush=False)
        if (now := time.perf_counter()) - last > 30:
            last = now
            print(f"    ... {i + 1:,} of {total:,} records ({now - t0:.0f} s)", flush=True)
    ledger.close()
    return total


# -- the parent --------------------------------------------------------------------------------

def extract(rev: str, into: Path) -> Path:
    """The tree at ``rev`` (git archive: the repository's worktrees are left alone)."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev],
                             capture_output=True, check=True).stdout
    into.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def _fmt(res: dict[str, Any] | None, key: str, unit: str) -> str:
    if res is None or res.get(key) is None:
        return "-"
    if key == "hash" and res[key] < 0.05:
        return "in planning"
    return f"{res[key]:,.1f} {unit}" if unit == "s" else f"{res[key]:,.0f} {unit}"


def _ratio(before: dict[str, Any] | None, after: dict[str, Any], key: str) -> str:
    if before is None or not before.get(key) or (after.get(key) or 0) < 0.05:
        return ""
    return f"{before[key] / after[key]:,.1f}x"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="240000,500000",
                    help="planned attempts, comma-separated (default 240000,500000)")
    ap.add_argument("--baseline-rev", default=BASELINE_REV,
                    help="git revision of the code to compare with ('none': no baseline)")
    ap.add_argument("--no-resume", action="store_true", help="skip the resume measurement")
    ap.add_argument("--novel", type=Path, default=None)
    ap.add_argument("--workdir", type=Path,
                    default=Path(tempfile.gettempdir()) / "casekit-plan-bench",
                    help="keeps the cases and the resume ledger between runs")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        res = child_validate(*rest) if kind == "validate" else child_resume(*rest)
        print(json.dumps(res))
        return 0
    sys.path.insert(0, str(REPO))
    import casekit

    sizes = [int(x) for x in args.sizes.split(",")]
    text, source = novel_text(args.novel)
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"casekit {casekit.__version__} plan benchmark: python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs; novel {source} ({len(text.split()):,} words); "
          f"baseline {args.baseline_rev}")
    tmp = Path(tempfile.mkdtemp(prefix="casekit-plan-bench-"))
    try:
        trees = {"after": REPO}
        if args.baseline_rev != "none":
            trees = {"before": extract(args.baseline_rev, tmp / "baseline"), "after": REPO}
        cases = {n: write_case(args.workdir / f"case-{n}", text, n) for n in sizes}

        print("\n1. casekit validate (own process; wall includes start-up)")
        print(f"   {'attempts':>9}  {'tree':6} {'wall':>9} {'peak RSS':>10}")
        for n in sizes:
            res: dict[str, dict[str, Any]] = {}
            for name, tree in trees.items():
                res[name] = run_child(tree, ["validate", str(cases[n])], timeout=3600)
                print(f"   {n:>9,}  {name:6} {_fmt(res[name], 'process_wall', 's'):>9} "
                      f"{_fmt(res[name], 'rss_mb', 'MB'):>10}", flush=True)
            if "before" in res:
                wall = _ratio(res["before"], res["after"], "process_wall")
                rss = _ratio(res["before"], res["after"], "rss_mb")
                print(f"   {'':>9}  {'ratio':6} {wall:>9} {rss:>10}")

        if not args.no_resume:
            n = max(sizes)
            base = args.workdir / f"run-{n}"
            marker = base / "written.json"
            if not marker.is_file():
                shutil.rmtree(base, ignore_errors=True)
                print(f"\n   writing the resume ledger ({n - LEFT:,} attempt records; once, kept "
                      f"in {base})", flush=True)
                t0 = time.perf_counter()
                recorded = write_resume_ledger(cases[n], base, LEFT)
                marker.write_text(json.dumps({"recorded": recorded}))
                print(f"   written in {time.perf_counter() - t0:.0f} s")
            recorded = json.loads(marker.read_text())["recorded"]
            size = (base / "ledger.jsonl").stat().st_size
            print(f"\n2. resume: {n:,} planned, {recorded + 1:,} records in the ledger "
                  f"({size / 1e9:.2f} GB), {n - recorded:,} left; Runner.run() in its own "
                  "process")
            rows = [("to the first request", "to_first_request", "s"),
                    ("  planning (build_plan)", "plan", "s"),
                    ("  the plan's hash (outside build_plan)", "hash", "s"),
                    ("  Ledger.open (read, verify, index)", "ledger_open", "s"),
                    ("whole run (incl. the last attempts)", "wall", "s"),
                    ("peak RSS", "rss_mb", "MB")]
            res = {}
            for name, tree in trees.items():
                run_dir = tmp / f"resume-{name}"
                run_dir.mkdir()
                shutil.copyfile(base / "ledger.jsonl", run_dir / "ledger.jsonl")
                res[name] = run_child(tree, ["resume", str(cases[n]), str(run_dir)],
                                      timeout=7200)
                assert res[name]["complete"] and res[name]["done"] == n - recorded, res[name]
                shutil.rmtree(run_dir)
            head = "".join(f"{k:>12}" for k in res)
            print(f"   {'':40}{head}{'ratio':>9}")
            for label, key, unit in rows:
                cells = "".join(f"{_fmt(r, key, unit):>12}" for r in res.values())
                print(f"   {label:40}{cells}{_ratio(res.get('before'), res['after'], key):>9}")
            after = res["after"]
            rest = (after["to_first_request"] or 0) - after.get("plan", 0) - \
                after.get("hash", 0) - after["ledger_open"]
            print(f"   after: the rest before the first request (start-up, checks, skipping "
                  f"the {recorded:,} recorded): {rest:.1f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
