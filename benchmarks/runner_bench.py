"""Runner throughput benchmark: 2,000 attempts at concurrency 64 against a 100 ms stub.

    .venv/bin/python benchmarks/runner_bench.py [--attempts 2000] [--concurrency 64]
        [--latency 0.1] [--profile auto|always|never] [--inspect-python PATH]

The stub (tests/stub_openai.py) runs as a separate process so that casekit's CPU time is its own.
A case with two works (a subject and a control) and ``attempts / 2`` benign templates each runs
through ``provider: openai-compatible`` with ``params.max_connections = concurrency``, for each
``params.transport`` (``http``, the default, aiohttp; ``sdk``, the official openai SDK),
in-process, through casekit.run.runner.Runner: planning, the run_start record, every request, one
ledger record per attempt (fsynced behind the run, group commit) and the final fsync.

Printed: wall time of ``Runner.run()`` against the ideal ``attempts * latency / concurrency`` as
a ratio (target <= 1.10), casekit's CPU time per attempt (``time.process_time``; target < 1 ms,
ledger writes included), the stub's CPU, and an fsync probe of the run folder's disk. When a
target is missed (or ``--profile always``) a second run under cProfile prints the top costs per
attempt, by function and by area.

If an interpreter with inspect_ai is available (``--inspect-python``, ``$INSPECT_PYTHON``, or
/tmp/inspect-venv/bin/python), the same number of samples runs through inspect_ai's
``openai-api`` provider against the same stub, and the two wall times are compared.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CPU_TARGET_MS = 1.0
RATIO_TARGET = 1.10

WORDS = ("river bridge miller daughter grain market salt wool lantern copper kettle brass ledger "
         "apprentice supper frost hedge letter answer beech road town bell square merchant cart "
         "dog whistle morning evening candle window shadow harbour ship sail rope anchor").split()


def synthetic_text(seed: int, words: int) -> str:
    """A deterministic text of ``words`` words (no file shipped with the benchmark)."""
    out, x = [], seed or 1
    for i in range(words):
        x = (x * 1103515245 + 12345) % 2**31
        out.append(WORDS[x % len(WORDS)])
        if i % 13 == 12:
            out[-1] += "."
    return " ".join(out) + "\n"


def start_stub(latency: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "stub_openai.py"), "--port",
                             "0", "--latency", str(latency)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"the stub did not start: {line!r}")
    return proc, line.split()[-1]


def stub_stats(url: str) -> dict:
    with urllib.request.urlopen(url.replace("/v1", "/stub/stats")) as resp:
        return json.loads(resp.read())


def fsync_probe(folder: Path, n: int = 200) -> float:
    """Median milliseconds of write + flush + fsync of a 1.5 kB record (the ledger's pattern)."""
    path = folder / "fsync-probe.bin"
    times = []
    with open(path, "ab") as fh:
        for _ in range(n):
            t = time.perf_counter()
            fh.write(b"x" * 1500)
            fh.flush()
            os.fsync(fh.fileno())
            times.append(time.perf_counter() - t)
    path.unlink()
    return statistics.median(times) * 1000


def raw_client_baseline(url: str, attempts: int, concurrency: int) -> dict:
    """The floor: the same number of chat requests through a bare aiohttp client at the same
    concurrency against the same stub, with nothing recorded (no casekit code at all)."""
    import asyncio

    import aiohttp

    async def main() -> dict:
        conn = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=conn) as session:
            todo = list(range(attempts))

            async def worker() -> None:
                while todo:
                    i = todo.pop()
                    body = json.dumps({"model": "stub-model", "max_tokens": 64, "messages": [
                        {"role": "user", "content": f"Request {i}: tell me about it."}]})
                    async with session.post(url + "/chat/completions", data=body.encode(),
                                            headers={"Content-Type": "application/json"}) as r:
                        json.loads(await r.read())

            c0, t0 = time.process_time(), time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0}

    return asyncio.run(main())


def write_case(folder: Path, url: str, attempts: int, concurrency: int,
               transport: str = "sdk") -> Path:
    (folder / "subject.txt").write_text(synthetic_text(1, 3000))
    (folder / "control.txt").write_text(synthetic_text(2, 3000))
    per_work = attempts // 2
    templates = "".join(f'        - "Request {i}: tell me about {{{{ title }}}}."\n'
                        for i in range(per_work))
    text = textwrap.dedent(f"""\
        case:
          id: bench
          title: Runner benchmark
          matter: none
          examiner: Benchmark
          organization: casekit
        works:
          - {{id: subject, title: The Mill, author: Anon, path: subject.txt, role: subject}}
          - {{id: control, title: The Shop, author: Anon, path: control.txt, role: control}}
        models:
          - id: stub
            provider: openai-compatible
            model: stub-model
            interface: chat
            base_url: {url}
            params: {{max_connections: {concurrency}, timeout: 60, transport: {transport}}}
        decoding: {{max_tokens: 64}}
        strategies:
          - name: benign_prompts
            params:
              templates:
        """) + templates
    path = folder / "case.yaml"
    path.write_text(text)
    return path


def _utc(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def run_casekit(case_path: Path, run_dir: Path, profiler: cProfile.Profile | None = None,
                after_run: Callable[[], None] | None = None) -> dict:
    from casekit.case import load_case
    from casekit.ledger import read_records
    from casekit.records import AttemptRecord
    from casekit.run.runner import Runner

    case = load_case(case_path)
    runner = Runner(case, run_dir, argv=["runner_bench"])
    c0, t0 = time.process_time(), time.perf_counter()
    if profiler is not None:
        profiler.enable()
    out = runner.run()
    if profiler is not None:
        profiler.disable()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if after_run is not None:
        after_run()
    recs = [r for r in read_records(out.ledger_path) if isinstance(r, AttemptRecord)]
    first = min(_utc(r.started_at) for r in recs)
    last = max(_utc(r.completed_at) for r in recs)
    statuses: dict[str, int] = defaultdict(int)
    for r in recs:
        statuses[r.status] += 1
    return {"wall": wall, "cpu": cpu, "attempts": len(recs), "statuses": dict(statuses),
            "attempt_window": last - first, "complete": out.complete,
            "ledger_bytes": out.ledger_path.stat().st_size}


class _Timers:
    """Wall and CPU time of chosen functions, patched in for one run (no profiler)."""

    def __init__(self) -> None:
        self.data: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
        self._undo: list[tuple[object, str, object]] = []

    def wrap(self, owner: object, attr: str, label: str) -> None:
        fn = getattr(owner, attr)
        data = self.data[label]

        def timed(*a: object, **k: object) -> object:
            t, c = time.perf_counter(), time.process_time()
            try:
                return fn(*a, **k)
            finally:
                data[0] += 1
                data[1] += time.perf_counter() - t
                data[2] += time.process_time() - c

        self._undo.append((owner, attr, fn))
        setattr(owner, attr, timed)

    def restore(self) -> None:
        for owner, attr, fn in reversed(self._undo):
            setattr(owner, attr, fn)
        self._undo.clear()


def breakdown(case_path: Path, run_dir: Path, n: int) -> tuple[dict, list[str]]:
    """A run with timers on the known per-attempt costs (plain timers, not cProfile)."""
    import casekit.ledger as ledger_mod
    import casekit.providers.api as op  # where the per-request records call sdk_version
    from casekit.run.runner import Runner

    timers = _Timers()
    import casekit.plan as plan_mod

    timers = _Timers()
    timers.wrap(Runner, "prepare", "plan: Runner.prepare (works, strategies, every prompt)")
    timers.wrap(plan_mod, "plan_sha256", "plan: its hash (for run_start, while requests fly)")
    timers.wrap(ledger_mod.Ledger, "append", "ledger: Ledger.append (run records), all of it")
    timers.wrap(ledger_mod.Ledger, "_drain_pending", "ledger: writing submitted records")
    timers.wrap(ledger_mod, "_canonical_with_hash", "ledger:   of which canonical JSON + hash")
    timers.wrap(os, "fsync", "ledger: os.fsync (behind, in a thread)")
    timers.wrap(op, "sdk_version", "provider: sdk_version()")
    try:
        res = run_casekit(case_path, run_dir, after_run=timers.restore)
    finally:
        timers.restore()
    lines = [f"breakdown run (plain timers): wall {res['wall']:.3f} s, CPU {res['cpu']:.3f} s "
             f"= {res['cpu'] / n * 1000:.3f} ms per attempt",
             "      calls   wall ms/att   CPU ms/att  what"]
    accounted = 0.0
    for label, (calls, wall, cpu) in timers.data.items():
        lines.append(f"    {int(calls):7d}   {wall / n * 1000:10.3f}   {cpu / n * 1000:10.3f}  "
                     f"{label}")
        if "of which" not in label and "thread" not in label:
            accounted += cpu
    lines.append(f"          -            -   {(res['cpu'] - accounted) / n * 1000:10.3f}  the "
                 "rest: HTTP client (aiohttp; the openai SDK + httpx with sdk), asyncio, runner, "
                 "provider")
    return res, lines


AREAS = (  # (label, substrings of "file:line(function)"), first match wins
    ("ledger: fsync", ("posix.fsync",)),
    ("ledger + canonical JSON (rfc8785)", ("casekit/ledger.py", "casekit/canonical.py",
                                           "rfc8785")),
    ("importlib.metadata + email parser (sdk_version per attempt)", (
        "importlib/metadata", "/email/", "zipfile", "pathlib.py", "posixpath.py")),
    ("jinja2 template compiles (planning)", ("jinja2", "builtins.compile")),
    ("pydantic (records: validate/dump)", ("pydantic",)),
    ("openai SDK", ("/openai/", "typing.py", "typing_extensions")),
    ("HTTP client (httpx2/httpcore2/h11/anyio)", ("httpx", "httpcore", "h11", "anyio")),
    ("HTTP client (aiohttp, multidict, yarl)", ("aiohttp", "multidict", "yarl")),
    ("casekit provider + runner", ("casekit/providers", "casekit/run/runner.py")),
    ("casekit other (plan, strategies, works)", ("casekit/",)),
    ("asyncio + selectors + socket", ("asyncio", "selectors", "socket")),
    ("json", ("json/",)),
)


def profile_report(prof: cProfile.Profile, attempts: int, top: int = 25) -> str:
    st = pstats.Stats(prof)
    total = sum(v[2] for v in st.stats.values())  # type: ignore[attr-defined]
    areas: dict[str, float] = defaultdict(float)
    others: list[tuple[float, str]] = []

    def area(file: str, line: int, func: str) -> str:
        name = f"{file}:{line}({func})" if file != "~" else func
        return next((a for a, keys in AREAS if any(k in name for k in keys)), "other")

    for (file, line, func), (_cc, _nc, tt, _ct, callers) in st.stats.items():  # type: ignore
        label = area(file, line, func)
        if label == "other" and file == "~" and callers:
            # A builtin (isinstance, str.encode...): charge each caller's area its share.
            for (cfile, cline, cfunc), stats in callers.items():
                areas[area(cfile, cline, cfunc)] += stats[2]
            continue
        areas[label] += tt
        if label == "other":
            others.append((tt, f"{Path(file).name}:{line}({func})" if file != "~" else func))
    lines = [f"profile (cProfile, {total:.2f} s own time in all functions = "
             f"{total / attempts * 1000:.2f} ms per attempt; cProfile inflates Python-heavy "
             "code, read the shares):", "  by area (own time per attempt):"]
    for label, tt in sorted(areas.items(), key=lambda kv: -kv[1]):
        lines.append(f"    {tt / attempts * 1000:7.3f} ms  {tt / total * 100:5.1f}%  {label}")
    top_other = ", ".join(f"{name} {tt / attempts * 1000:.3f}" for tt, name in
                          sorted(others, reverse=True)[:6])
    lines.append(f"    (builtins are charged to their callers' areas; largest in other, ms per "
                 f"attempt: {top_other})")
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).strip_dirs().sort_stats("tottime").print_stats(top)
    lines.append(f"  top {top} functions by own time (ms per attempt = tottime / {attempts}):")
    started = False
    for row in buf.getvalue().splitlines():
        if row.strip().startswith("ncalls"):
            started = True
            lines.append("      ncalls   ms/att  cum ms/att  function")
            continue
        if not started or not row.strip():
            continue
        parts = row.split(None, 5)
        if len(parts) < 6:
            continue
        ncalls, tottime, _, cumtime, _, func = parts
        lines.append(f"    {ncalls:>9} {float(tottime) / attempts * 1000:8.3f} "
                     f"{float(cumtime) / attempts * 1000:10.3f}  {func}")
    return "\n".join(lines)


INSPECT_SCRIPT = r"""
import json, os, sys, time
from inspect_ai import Task, eval
from inspect_ai.dataset import Sample
from inspect_ai.solver import generate
n, conc, url, log_dir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
os.environ["STUB_API_KEY"] = "x"
samples = [Sample(input=f"Request {i}: tell me about The Mill.", target="x") for i in range(n)]
task = Task(dataset=samples, solver=generate())
c0, t0 = time.process_time(), time.perf_counter()
logs = eval(task, model="openai-api/stub/stub-model", model_base_url=url, max_connections=conc,
            max_samples=conc, log_dir=log_dir, display="none", max_tokens=64, temperature=0.0)
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
log = logs[0]
print(json.dumps({"wall": wall, "cpu": cpu, "status": log.status,
                  "samples": len(log.samples or []),
                  "version": __import__("importlib.metadata").metadata.version("inspect_ai")}))
"""


def find_inspect(arg: str | None) -> str | None:
    for cand in (arg, os.environ.get("INSPECT_PYTHON"), "/tmp/inspect-venv/bin/python"):
        if cand and Path(cand).exists():
            res = subprocess.run([cand, "-c", "import inspect_ai"], capture_output=True)
            if res.returncode == 0:
                return cand
    return None


def run_inspect(python: str, attempts: int, concurrency: int, url: str, tmp: Path) -> dict:
    res = subprocess.run([python, "-c", INSPECT_SCRIPT, str(attempts), str(concurrency), url,
                          str(tmp / "inspect-logs")], capture_output=True, text=True,
                         timeout=900)
    if res.returncode != 0:
        raise RuntimeError(res.stderr.strip().splitlines()[-1] if res.stderr else "failed")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--attempts", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency", type=float, default=0.1)
    ap.add_argument("--profile", choices=("auto", "always", "never"), default="auto")
    ap.add_argument("--transport", choices=("both", "http", "sdk"), default="both",
                    help="which params.transport to run (default: both, http first)")
    ap.add_argument("--run-dir", type=Path, default=None,
                    help="folder for the case and runs (default: a new temporary folder)")
    ap.add_argument("--inspect-python", default=None,
                    help="a Python interpreter with inspect_ai installed")
    args = ap.parse_args()
    n, conc, lat = args.attempts - args.attempts % 2, args.concurrency, args.latency
    ideal = n * lat / conc

    import openai

    import casekit
    import casekit.providers.openai  # noqa: F401 - imports are not the run's cost
    from casekit.providers.http_transport import HttpTransport

    stub, url = start_stub(lat)
    tmp = Path(args.run_dir or tempfile.mkdtemp(prefix="casekit-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        fs = fsync_probe(tmp)
        print(f"casekit {casekit.__version__} runner benchmark: {n} attempts, concurrency {conc}, "
              f"stub latency {lat * 1000:.0f} ms (stub in a separate process)")
        print(f"  python {sys.version.split()[0]}, openai {openai.__version__}, "
              f"{HttpTransport.version()}, {os.cpu_count()} CPUs; run folder {tmp} (fsync "
              f"probe: median {fs:.2f} ms per 1.5 kB record)")
        print(f"  ideal wall ({n} x {lat} / {conc}):            {ideal:8.3f} s")
        raw = raw_client_baseline(url, n, conc)
        print(f"  baseline, a bare aiohttp client (no casekit, nothing recorded): wall "
              f"{raw['wall']:.3f} s, ratio {raw['wall'] / ideal:.2f}; CPU "
              f"{raw['cpu'] / n * 1000:.3f} ms per request")
        transports = ("http", "sdk") if args.transport == "both" else (args.transport,)
        results = {}
        for transport in transports:
            folder = tmp / transport
            folder.mkdir(exist_ok=True)
            case_path = write_case(folder, url, n, conc, transport)
            s0 = stub_stats(url)
            res = run_casekit(case_path, folder / "run")
            s1 = stub_stats(url)
            results[transport] = res
            stub_cpu = s1["cpu_s"] - s0["cpu_s"]
            stub_reqs = s1["requests"] - s0["requests"]
            ratio = res["wall"] / ideal
            cpu_ms = res["cpu"] / n * 1000
            ok_ratio, ok_cpu = ratio <= RATIO_TARGET, cpu_ms < CPU_TARGET_MS
            label = ("params.transport: http (aiohttp, the default)" if transport == "http"
                     else "params.transport: sdk (the official openai SDK)")
            print(f"  {label}")
            print(f"    casekit wall, Runner.run() total:        {res['wall']:8.3f} s   ratio "
                  f"{ratio:.2f}  (target <= {RATIO_TARGET:.2f}: {'met' if ok_ratio else 'MISSED'})")
            print(f"      first attempt start .. last attempt end: {res['attempt_window']:6.3f} s"
                  f"   ratio {res['attempt_window'] / ideal:.2f}")
            print(f"    casekit wall / bare client wall: {res['wall'] / raw['wall']:.2f}")
            print(f"    casekit CPU: {res['cpu']:.3f} s = {cpu_ms:.3f} ms per attempt, ledger "
                  f"writes included  (target < {CPU_TARGET_MS:.0f} ms: "
                  f"{'met' if ok_cpu else 'MISSED'})")
            print(f"    stub CPU: {stub_cpu:.3f} s for {stub_reqs} requests "
                  f"({stub_cpu / max(stub_reqs, 1) * 1000:.3f} ms per request)")
            print(f"    recorded: {res['attempts']} attempts {res['statuses']}, complete="
                  f"{res['complete']}, ledger {res['ledger_bytes'] / 1e6:.1f} MB")
            if args.profile == "always" or (args.profile == "auto"
                                            and not (ok_ratio and ok_cpu)):
                _, lines = breakdown(case_path, folder / "run-timed", n)
                print(textwrap.indent("\n".join(lines), "    "))
                prof = cProfile.Profile()
                pres = run_casekit(case_path, folder / "run-profiled", prof)
                print(f"    profiled run: wall {pres['wall']:.3f} s, CPU {pres['cpu']:.3f} s "
                      "(with cProfile overhead)")
                print(textwrap.indent(profile_report(prof, n), "    "))
        python = find_inspect(args.inspect_python)
        if python is None:
            print("  inspect_ai: not available (pass --inspect-python with an interpreter that "
                  "has inspect_ai, e.g. python -m venv /tmp/inspect-venv && "
                  "/tmp/inspect-venv/bin/pip install inspect_ai)")
        else:
            try:
                ins = run_inspect(python, n, conc, url, tmp)
            except Exception as exc:  # noqa: BLE001 - reported, the casekit numbers stand
                print(f"  inspect_ai: the eval failed ({exc})")
            else:
                print(f"  inspect_ai {ins['version']} eval (openai-api provider, same stub, "
                      f"max_connections {conc}): wall {ins['wall']:.3f} s, ratio "
                      f"{ins['wall'] / ideal:.2f}; CPU {ins['cpu'] / n * 1000:.3f} ms per "
                      f"sample; {ins['samples']} samples, {ins['status']}")
                for transport, r in results.items():
                    print(f"  casekit ({transport}) / inspect_ai wall: "
                          f"{r['wall'] / ins['wall']:.2f}; CPU: {r['cpu'] / ins['cpu']:.2f}")
        return 0
    finally:
        stub.terminate()
        stub.wait(10)


if __name__ == "__main__":
    sys.exit(main())
