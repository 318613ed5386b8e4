"""Report benchmark: how long `casekit report` takes against WeasyPrint's own time.

A synthetic run (one model, a 30,000-word subject work and a control; every fifth attempt
reproduces a 60-word passage, the rest do not) is written through the real ledger and analyzed
with the real analyzer; then the report is built (load + model + HTML + PDF/A-3b with the data
attached) and, for the same HTML, WeasyPrint alone renders the PDF with the same options. The
ledger is not in WeasyPrint's PDF: casekit appends it itself, streaming, in an incremental
update (casekit/report/embed.py), so its embedding counts as casekit's own time in the ratio.

    python benchmarks/report_bench.py            # 250, 500 and 1,000 attempts
    python benchmarks/report_bench.py 1000       # one size

Prints, per size: attempts, exhibits, pages, report build time, WeasyPrint's time, their ratio
(target <= 1.3: casekit's own work is not the bottleneck) and the time per attempt (linear
growth keeps it flat). Ends with a one-line summary. No assertion: a benchmark, not a test.
"""

from __future__ import annotations

import logging
import random
import sys
import tempfile
import time
from pathlib import Path

EXHIBIT_EVERY = 5  # 1,000 attempts -> 200 exhibits
PASSAGE_WORDS = 60
SUBJECT_WORDS = 30_000

CASE_YAML = """\
case:
  id: bench
  title: Benchmark v. Synthetic
  matter: "No. 0:00-cv-00000"
  examiner: Bench Examiner
  organization: Bench Lab
  bates: {prefix: BENCH, start: 1}
works:
  - id: subject
    title: The Synthetic Subject
    author: Generator
    path: subject.txt
    role: subject
  - id: control
    title: The Synthetic Control
    author: Generator
    path: control.txt
    role: control
models:
  - id: m1
    provider: local
    model: smollm2-135m-instruct
strategies:
  - name: benign_prompts
    params:
      templates: ["Tell me about {{ title }}."]
thresholds:
  min_span_words: 40
"""


def _text(rng: random.Random, vocab: list[str], words: int, line: int = 14) -> str:
    out = []
    for i in range(words):
        out.append(rng.choice(vocab))
        out.append("\n" if i % line == line - 1 else " ")
    return "".join(out)


def make_run(root: Path, attempts: int) -> tuple[Path, object]:
    """A case folder and a run with ``attempts`` attempts; returns (run_dir, findings)."""
    from casekit.analysis.analyze import analyze_run
    from casekit.case import load_case
    from casekit.ledger import Ledger
    from casekit.records import (
        AttemptRecord,
        Decoding,
        Message,
        ModelIdentity,
        PlannedAttempt,
        ProviderResult,
        RunEnd,
        RunStart,
        WorkManifest,
    )
    from casekit.works import load_works

    rng = random.Random(1000 + attempts)
    vocab = [f"{a}{b}{c}" for a in "bcdfglmnprst" for b in "aeiou" for c in "klmnrstv"]
    other = [f"{a}{b}{c}x" for a in "bcdfglmnprst" for b in "aeiou" for c in "klmnrstv"]
    subject = _text(rng, vocab, SUBJECT_WORDS)
    (root / "subject.txt").write_text(subject, encoding="utf-8")
    (root / "control.txt").write_text(_text(rng, other, 3000), encoding="utf-8")
    (root / "case.yaml").write_text(CASE_YAML, encoding="utf-8")
    loaded = load_case(root / "case.yaml")
    works = load_works(loaded)
    words = subject.split()
    run_dir = root / "runs" / "bench"
    led = Ledger(run_dir).open()
    planned = []
    for i in range(attempts):
        work = "control" if i % 10 == 9 else "subject"
        planned.append(PlannedAttempt(
            id=f"a-{i:020d}", ordinal=i, model_id="m1", strategy="benign_prompts",
            strategy_key="benign_prompts#0", work_id=work, intent="benign", index=i,
            mode="chat", decoding=Decoding(seed=0), label=f"prompt {i}",
            messages=[Message(role="user", content=f"Tell me about the work, part {i}.")]))
    led.append(RunStart(
        **led.base_fields(), run_id="bench", case_path=str(root / "case.yaml"),
        case_sha256=loaded.sha256, case=loaded.spec.model_dump(mode="json"),
        works=[WorkManifest(id=w.id, title=w.spec.title, author=w.spec.author, role=w.spec.role,
                            path=w.spec.path, sha256=w.sha256, chars=len(w.raw),
                            words=len(w.tokens), excluded_chars=0) for w in works],
        models=[ModelIdentity(model_id="m1", provider="local", model="smollm2-135m-instruct",
                              interface="chat")],
        plan_sha256="sha256:" + "0" * 64, planned_attempts=attempts,
        versions={"casekit": "bench"}, git={}, host={"hostname": "bench"}, argv=["bench"]))
    t0 = "2026-01-01T00:00:00.000000Z"
    for i, a in enumerate(planned):
        if a.work_id == "subject" and i % EXHIBIT_EVERY == 0:
            at = rng.randrange(0, len(words) - PASSAGE_WORDS)
            text = ("Here it is:\n" + " ".join(words[at:at + PASSAGE_WORDS]) + "\n"
                    + _text(rng, other, 40))
        else:
            text = _text(rng, other, 80)
        led.append(AttemptRecord(
            **led.base_fields(), attempt=a, status="ok",
            result=ProviderResult(text=text, finish_reason="stop", returned_model="m1-q8",
                                  request_id=f"req-{i}"),
            started_at=t0, completed_at=t0))
    led.append(RunEnd(**led.base_fields(), attempts_recorded=attempts,
                      attempts_planned=attempts, complete=True))
    led.close()
    return run_dir, analyze_run(run_dir)


def measure(attempts: int) -> dict[str, float]:
    from pypdf import PdfReader
    from weasyprint import HTML

    from casekit.report import build_report
    from casekit.report.build import load_inputs, render_report
    from casekit.report.evidence import ReportOptions, pdf_options
    from casekit.report.render import SafeFetcher, template_dirs

    with tempfile.TemporaryDirectory(prefix="casekit-bench-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        run_dir, findings = make_run(root, attempts)
        t_analyze = time.perf_counter() - t
        exhibits = sum(len(f.exhibit_attempts) for f in findings.findings  # type: ignore[attr-defined]
                       if f.role == "subject")
        t = time.perf_counter()
        paths = build_report(run_dir, findings, out_dir=root / "out",  # type: ignore[arg-type]
                             exhibits_per_finding=exhibits)
        t_report = time.perf_counter() - t
        pages = len(PdfReader(paths.pdf).pages)
        # WeasyPrint alone: the same HTML, the same fetcher and the same PDF/A options (the
        # other attachments; the ledger is casekit's own streamed update).
        rendered = render_report(findings, load_inputs(run_dir, findings),  # type: ignore[arg-type]
                                 ReportOptions(exhibits))
        dirs = template_dirs(None)
        t = time.perf_counter()
        HTML(string=rendered.html, base_url=dirs[0].as_uri() + "/",
             url_fetcher=SafeFetcher(dirs)).write_pdf(
            root / "weasy.pdf", **pdf_options(rendered.attached, rendered.ledger_head_hash,
                                              rendered.epoch))
        t_weasy = time.perf_counter() - t
    return {"attempts": attempts, "exhibits": exhibits, "pages": pages, "analyze": t_analyze,
            "report": t_report, "weasyprint": t_weasy, "ratio": t_report / t_weasy}


def main() -> None:
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    sizes = [int(a) for a in sys.argv[1:]] or [250, 500, 1000]
    rows = []
    print(f"{'attempts':>8} {'exhibits':>8} {'pages':>6} {'analyze s':>9} {'report s':>9} "
          f"{'weasy s':>8} {'ratio':>6} {'ms/attempt':>10}")
    for n in sizes:
        r = measure(n)
        rows.append(r)
        print(f"{r['attempts']:>8} {r['exhibits']:>8} {r['pages']:>6} {r['analyze']:>9.2f} "
              f"{r['report']:>9.2f} {r['weasyprint']:>8.2f} {r['ratio']:>6.2f} "
              f"{1000 * r['report'] / n:>10.2f}", flush=True)
    big = rows[-1]
    growth = ""
    if len(rows) > 1:
        first = rows[0]
        growth = (f"; {int(first['attempts'])}->{int(big['attempts'])} attempts: time x"
                  f"{big['report'] / first['report']:.2f} for x"
                  f"{big['attempts'] / first['attempts']:.0f} attempts")
    ratios = ", ".join(f"{int(r['attempts'])}: {r['ratio']:.2f}" for r in rows)
    print(f"SUMMARY report/weasyprint ratio {ratios} (target <= 1.3); "
          f"{int(big['attempts'])} attempts, {int(big['exhibits'])} exhibits, "
          f"{int(big['pages'])} pages in {big['report']:.1f}s (target <= 30 s){growth}")


if __name__ == "__main__":
    main()
