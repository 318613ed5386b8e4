"""Reading a ledger at a matter's size: parse, verify and resume, against the old two-pass reader.

    .venv/bin/python benchmarks/ledger_bench.py                 # 50,000 records
    .venv/bin/python benchmarks/ledger_bench.py --records 500000

Writes a ledger of realistic attempt records (a 50-word prompt, a 60-word output, the raw
request and response, a try) with casekit's own Ledger, then measures in the same run:

1. the JSON parsers on its lines: the standard library's json, orjson and msgspec (untyped
   decode), per record (msgspec is measured only when it is installed; casekit depends on
   orjson);
2. the old reader (json.loads, the hash over one canonical encoding, a second encoding for the
   canonical-form check, validate_python, then validate_json of every line again: the code before
   issue 14) against ``iter_records`` (one pass: orjson, one canonical encoding, one validation),
   per record and as a ratio;
3. resume: ``Ledger.open`` on the whole ledger (wall time and peak RSS, in a child process).

Nothing is asserted; the figures are printed with their ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from pydantic import TypeAdapter  # noqa: E402

from casekit.canonical import canonical_json, sha256_bytes  # noqa: E402
from casekit.ledger import LEDGER_NAME, Ledger, iter_records  # noqa: E402
from casekit.records import (  # noqa: E402
    AttemptRecord,
    Decoding,
    LedgerRecord,
    Message,
    PlannedAttempt,
    ProviderResult,
    TryRecord,
    WorkRange,
)

WORDS = ("the of and to a in that was her it his she he had with for as not be you at but on "
         "is my all so which have by were this me from they would no been what could an very "
         "mr emma said must one will any their much more such there said miss harriet").split()


def _text(i: int, n: int) -> str:
    return " ".join(WORDS[(i * 7 + j * 13) % len(WORDS)] for j in range(n)).capitalize() + "."


def write_ledger(run_dir: Path, n: int) -> Path:
    """n attempt records after one note, written by casekit's Ledger (fsync per 1,000)."""
    led = Ledger(run_dir).open()
    led.append_note("bench", "ledger benchmark")
    for i in range(n):
        prompt = _text(i, 50)
        out = _text(i + 1, 60)
        att = PlannedAttempt(
            id=f"a{i:024x}", ordinal=i, model_id=f"model-{i % 2}",
            strategy="prefix_continuation", strategy_key="prefix_continuation#0",
            work_id="novel", intent="adversarial", index=i, mode="chat",
            messages=[Message(role="user", content=prompt)],
            decoding=Decoding(temperature=0.0, max_tokens=100),
            target=WorkRange(start=i * 300, end=i * 300 + 300),
            supplied=[WorkRange(start=i * 300 - 300, end=i * 300)], label=f"window {i}")
        res = ProviderResult(
            text=out, finish_reason="stop", returned_model=f"model-{i % 2}",
            request_id=f"req-{i}", usage={"prompt_tokens": 70, "completion_tokens": 80},
            raw_request={"model": f"model-{i % 2}", "messages": [{"role": "user",
                                                                  "content": prompt}],
                         "temperature": 0.0, "max_tokens": 100},
            raw_response={"id": f"req-{i}", "object": "chat.completion", "created": 1764806400,
                          "choices": [{"index": 0, "finish_reason": "stop",
                                       "message": {"role": "assistant", "content": out}}],
                          "usage": {"prompt_tokens": 70, "completion_tokens": 80,
                                    "total_tokens": 150}})
        led._write(AttemptRecord(
            **led.base_fields(), attempt=att, status="ok", result=res,
            started_at="2026-12-05T00:00:00.000000Z", completed_at="2026-12-05T00:00:00.100000Z",
            tries=[TryRecord(started_at="2026-12-05T00:00:00.000000Z",
                             completed_at="2026-12-05T00:00:00.100000Z")]), flush=False)
        if i % 1000 == 999:
            led._fh.flush()
    led.close()
    return run_dir / LEDGER_NAME


_ADAPTER: TypeAdapter[LedgerRecord] = TypeAdapter(LedgerRecord)


def old_reader(path: Path) -> int:
    """The reader before issue 14: a verify pass (json, hash over one canonical encoding, a
    second encoding for the form check, validate_python) and a read pass (validate_json)."""
    prev = None
    lines = path.read_bytes().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for raw in lines:
        payload = json.loads(raw)
        assert payload.get("prev_hash") == prev
        body = {k: v for k, v in payload.items() if k != "hash"}
        assert payload["hash"] == sha256_bytes(canonical_json(body))
        assert canonical_json(payload) == raw
        _ADAPTER.validate_python(payload)
        prev = payload["hash"]
    records = [_ADAPTER.validate_json(raw) for raw in lines]
    return len(records)


def new_reader(path: Path) -> int:
    n = 0
    for _ in iter_records(path):
        n += 1
    return n


def per_record(fn, arg, n: int, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(arg)
        best = min(best, time.perf_counter() - t0)
    return best / n


def resume_child(run_dir: str) -> None:
    t0 = time.perf_counter()
    led = Ledger(Path(run_dir)).open()
    wall = time.perf_counter() - t0
    n = len(led.recorded_attempt_ids())
    led.close()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall": wall, "rss_mb": rss, "attempts": n}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--resume-child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.resume_child:
        resume_child(args.resume_child)
        return 0
    import orjson

    import casekit
    root = Path(tempfile.mkdtemp(prefix="casekit-ledger-"))
    n = args.records
    t0 = time.perf_counter()
    path = write_ledger(root, n)
    size = path.stat().st_size
    print(f"casekit {casekit.__version__} ledger benchmark: {n + 1:,} records, "
          f"{size / 1e6:,.1f} MB ({size / (n + 1):,.0f} bytes/record), written in "
          f"{time.perf_counter() - t0:.1f} s; python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs")
    lines = path.read_bytes().split(b"\n")[:-1][: min(n + 1, 20_000)]
    m = len(lines)

    def parse_all(loads):  # type: ignore[no-untyped-def]
        def run(_: object) -> None:
            for raw in lines:
                loads(raw)
        return run

    parsers = {"json (stdlib)": json.loads, f"orjson {orjson.__version__}": orjson.loads}
    try:
        import msgspec
        parsers[f"msgspec {msgspec.__version__}"] = msgspec.json.decode
    except ImportError:
        pass
    print(f"\n1. parsing {m:,} lines to dicts (best of 3):")
    base = None
    for name, loads in parsers.items():
        t = per_record(parse_all(loads), None, m)
        base = base or t
        print(f"   {name:22s} {t * 1e6:7.1f} us/record   {base / t:5.2f}x the stdlib")

    print("\n2. reading the whole ledger, verified and validated (best of 3):")
    limit = min(n + 1, 50_000)
    sub = root / "sub"
    sub.mkdir()
    (sub / LEDGER_NAME).write_bytes(b"".join(line + b"\n" for line in
                                             path.read_bytes().split(b"\n")[:limit]))
    t_old = per_record(old_reader, sub / LEDGER_NAME, limit)
    t_new = per_record(new_reader, sub / LEDGER_NAME, limit)
    print(f"   before (two passes, stdlib json, validate twice): {t_old * 1e6:7.1f} us/record")
    print(f"   iter_records (one pass, orjson, validate once):   {t_new * 1e6:7.1f} us/record   "
          f"{t_old / t_new:.2f}x faster")

    print(f"\n3. resume: Ledger.open on all {n + 1:,} records (child process):")
    out = subprocess.run([sys.executable, __file__, "--resume-child", str(root)],
                         capture_output=True, text=True, check=True)
    res = json.loads(out.stdout)
    print(f"   {res['wall']:.1f} s ({(n + 1) / res['wall']:,.0f} records/s), peak RSS "
          f"{res['rss_mb']:,.0f} MB, {res['attempts']:,} attempts indexed")
    import shutil
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
