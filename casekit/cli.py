"""The casekit command line: validate, schema, run, analyze, report, verify, demo."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

import casekit
from casekit.errors import CasekitError

if TYPE_CHECKING:
    from casekit.analysis.findings import Findings

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


class _VisibleFormatter(logging.Formatter):
    """Log lines may quote a case, a work, a model or a server: their control and bidi
    characters are shown by code point, never sent to the terminal."""

    def format(self, record: logging.LogRecord) -> str:
        from casekit.visible import visible

        return visible(super().format(record), keep="\t\n")


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_VisibleFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                           "%H:%M:%S"))
    root = logging.getLogger("casekit")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def user_errors(fn: F) -> F:
    """Report CasekitError as one line on stderr with exit code 2, no traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CasekitError as exc:
            # Messages may quote the case, a work or a server: escape control characters so
            # that nothing in them acts on the terminal (and the error stays one line).
            from casekit.visible import visible

            click.echo(f"error: {visible(str(exc))}", err=True)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


@click.group()
@click.version_option(casekit.__version__, prog_name="casekit")
@click.option("-v", "--verbose", count=True, help="More log output.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
def cli(verbose: int, quiet: bool) -> None:
    """casekit: court-ready evidence of whether a language model memorized a work.

    Typical use: casekit validate CASE; casekit run CASE; casekit analyze RUN_DIR;
    casekit report RUN_DIR; casekit verify RUN_DIR.
    """
    _setup_logging(verbose, quiet)
    _load_plugins()


def _load_plugins() -> None:
    """Import the modules named in CASEKIT_PLUGINS (comma-separated): in-process registration of
    providers and strategies without packaging them as entry points."""
    import importlib
    import os

    for name in filter(None, (x.strip() for x in os.environ.get("CASEKIT_PLUGINS", "").split(","))):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            click.echo(f"error: CASEKIT_PLUGINS: cannot import {name!r} ({exc}); fix the module "
                       "name or unset the variable", err=True)
            sys.exit(2)


def anchoring_options(command: str) -> Callable[[F], F]:
    """The options that anchor the records a command writes (``casekit run`` and ``casekit
    import``): the examiner key that signs checkpoints, how often, and the timestamp
    authority that stamps them (docs/anchoring.md)."""
    key_help = ("The examiner's Ed25519 signing key, made on first use" if command == "run" else
                "The examiner's Ed25519 signing key that started the run")
    stop = "the run stops" if command == "run" else "the import ends"

    def apply(f: F) -> F:
        f = click.option(
            "--tsa", "tsa_url", default=None, metavar="URL", envvar="CASEKIT_TSA",
            help="RFC 3161 timestamp authority: timestamp every checkpoint (default: "
                 "$CASEKIT_TSA, else the case's anchoring.tsa).")(f)
        f = click.option(
            "--checkpoint-every", type=click.IntRange(min=1), default=1000, show_default=True,
            help=f"Records between signed checkpoints (one is also written when {stop}).")(f)
        return click.option(
            "--examiner-key", type=click.Path(dir_okay=False, path_type=Path), default=None,
            metavar="KEY.pem", help=f"{key_help} (default: $CASEKIT_EXAMINER_KEY, else "
            "$CASEKIT_HOME or ~/.config/casekit/examiner_ed25519.pem). It signs the "
            "checkpoints of the records; keep it out of the run folder.")(f)

    return apply


@cli.command()
@click.argument("case_path", type=click.Path(dir_okay=False, path_type=Path))
@user_errors
def validate(case_path: Path) -> None:
    """Check a case file, its works and its plan without calling any model."""
    from casekit.case import load_case
    from casekit.plan import build_plan
    from casekit.works import load_works

    case = load_case(case_path)
    works = load_works(case)
    # The strategies' probes, counted one at a time: nothing is kept, rendered or hashed.
    plan = build_plan(case, works, render=False)
    click.echo(f"{case_path}: valid; {len(works)} works, {len(case.spec.models)} models, "
               f"{len(case.spec.strategies)} strategies, {len(plan)} planned attempts; "
               f"case {case.sha256}")


@cli.command()
def schema() -> None:
    """Print the JSON Schema of case files, each provider's params included (for editors)."""
    from casekit.providers.schema import case_json_schema

    click.echo(json.dumps(case_json_schema(), indent=2, sort_keys=True))


def _timestamper(url: str, timeout: float = 30.0) -> Callable[[bytes], bytes]:
    """RFC 3161 tokens from the TSA at ``url`` (casekit.anchor.http_timestamper)."""
    from casekit.anchor import http_timestamper

    return http_timestamper(url, timeout)


def _run(case_path: Path, run_dir: Path | None, batch: bool = False,
         poll_interval: float = 60.0, max_wait: float | None = None,
         anchoring: dict[str, Any] | None = None) -> Path:
    from casekit.case import load_case
    from casekit.run.batch import DEFAULT_MAX_WAIT
    from casekit.run.runner import Runner

    case = load_case(case_path)
    anchoring = dict(anchoring or {})  # --tsa, else the case's anchoring.tsa (the Runner's)
    outcome = Runner(case, run_dir, batch=batch, batch_poll_interval=poll_interval,
                     batch_max_wait=DEFAULT_MAX_WAIT if max_wait is None else max_wait,
                     **anchoring).run()
    s = outcome.stats
    state = "complete" if outcome.complete else ("interrupted" if outcome.interrupted else
                                                 "incomplete")
    click.echo(f"run {state}: {s.done} attempts now ({s.ok} ok, {s.refusal} refused, {s.error} "
               f"failed), {s.skipped} already recorded, {s.planned} planned"
               + (f"; {s.retried} failed attempts sent again (--retry-failed)" if s.retried
                  else ""))
    click.echo(f"ledger: {outcome.ledger_path}")
    if outcome.interrupted:
        sys.exit(130)
    return outcome.run_dir


@cli.command()
@click.argument("case_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (default: runs/<case id>-<case hash> beside the case file).")
@click.option("--batch", is_flag=True,
              help="Send chat/completion attempts through the provider's batch API (OpenAI "
                   "Batch API, Anthropic Message Batches): about half the price, results "
                   "within 24 h. Resumable: batch ids are in the ledger.")
@click.option("--poll-interval", type=click.FloatRange(min=1.0), default=60.0,
              show_default=True, help="Seconds between polls of a running batch.")
@click.option("--max-wait", type=click.FloatRange(min=0.0), default=None,
              help="Seconds to wait for batches before leaving them for a later run "
                   "(default 26 h; 0 submits and returns at once).")
@anchoring_options("run")
@click.option("--retry-failed", is_flag=True, default=False,
              help="Also send again the attempts whose last try failed with a transient error "
                   "(server down, timeout, rate limit); the failures stay on record and the "
                   "analysis uses the last try.")
@user_errors
def run(case_path: Path, run_dir: Path | None, batch: bool, poll_interval: float,
        max_wait: float | None, examiner_key: Path | None, checkpoint_every: int,
        tsa_url: str | None, retry_failed: bool) -> None:
    """Run (or resume) a case: every attempt goes to the run's hash-chained ledger, anchored
    by checkpoints the examiner key signs (docs/anchoring.md)."""
    _run(case_path, run_dir, batch, poll_interval, max_wait,
         {"examiner_key": examiner_key, "checkpoint_every": checkpoint_every,
          "tsa_url": tsa_url, "retry_failed": retry_failed})


def _analyze(run_dir: Path, workers: int | None = None) -> Path:
    from casekit.analysis.analyze import analyze_run, write_findings
    from casekit.analysis.attempt_table import ATTEMPTS_NAME

    findings = analyze_run(run_dir, table=run_dir / ATTEMPTS_NAME,
                           workers=workers or default_workers())
    path = write_findings(run_dir, findings, table_written=True)
    click.echo(f"findings: {path} (ledger head {findings.ledger_head_hash})")
    return path


def default_workers() -> int:
    """One analysis worker per CPU this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes that analyze attempts (default: one per CPU). The output is the "
                   "same bytes for any number.")
@user_errors
def analyze(run_dir: Path, workers: int | None) -> None:
    """Find spans and compute the metrics; write findings.json and attempts.parquet (no model
    is called)."""
    _analyze(run_dir, workers)


def _report(run_dir: Path, template_dir: Path | None, attach_works: bool = False, *,
            timestamp_tsa: str | None = None, sign: bool = False) -> Path:
    from casekit.analysis.analyze import FINDINGS_NAME, load_findings
    from casekit.analysis.attempt_table import TableError
    from casekit.report.build import ReportPaths, build_report
    from casekit.report.inputs import StaleFindings

    def findings() -> Findings:
        # findings.json alone: the report reads attempts.parquet as columns and checks its
        # rows against the hash findings.json cites (a mismatch: TableError, below).
        return load_findings(run_dir, rows=False)

    fpath = run_dir / FINDINGS_NAME
    if fpath.exists():
        try:
            f = findings()
        except CasekitError as exc:
            log.info("%s; re-analyzing", exc)
            _analyze(run_dir)
            f = findings()
        # Whether findings.json is of this ledger (its head) is checked by the report's own
        # verifying pass (StaleFindings below): no second pass over the ledger first.
    else:
        _analyze(run_dir)
        f = findings()

    def build(f: Findings) -> ReportPaths:
        return build_report(run_dir, f, template_dir=template_dir, attach_works=attach_works,
                            timestamp_tsa=timestamp_tsa, sign=sign)

    try:
        paths = build(f)
    except StaleFindings as exc:
        log.info("%s; findings.json is stale or does not match the ledger: re-analyzing", exc)
        _analyze(run_dir)
        paths = build(findings())
    except TableError as exc:
        log.info("%s; re-analyzing", exc)
        _analyze(run_dir)
        paths = build(findings())
    click.echo(f"report: {paths.pdf}")
    click.echo(f"html:   {paths.html}")
    return paths.pdf


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--templates", "template_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Folder whose templates override the default ones.")
@click.option("--attach-works", is_flag=True, default=False,
              help="Also embed the works' texts in the PDF (off by default: they are usually "
                   "the copyrighted texts; their hashes are always in the manifest).")
@click.option("--tsa", "tsa_url", default=None, metavar="URL",
              help="RFC 3161 timestamp authority: timestamp the manifest and embed the token "
                   "(manifest.tsr, also written beside the PDF).")
@click.option("--tsa-timeout", type=click.FloatRange(min=1.0), default=30.0, show_default=True,
              help="Seconds to wait for the timestamp authority.")
@click.option("--sign", "sign_key", type=click.Path(dir_okay=False, path_type=Path),
              default=None, metavar="KEY.p12",
              help="Sign the finished PDF (PAdES baseline B; B-T with --tsa, which then also "
                   "timestamps the signature) into report.signed.pdf with the key and "
                   "certificate in this PKCS#12 file.")
@click.option("--sign-password-env", default=None, metavar="VAR",
              help="Environment variable holding the PKCS#12 password.")
@user_errors
def report(run_dir: Path, template_dir: Path | None, attach_works: bool, tsa_url: str | None,
           tsa_timeout: float, sign_key: Path | None, sign_password_env: str | None) -> None:
    """Render the report of an analyzed run: HTML, and PDF/A-3b with the ledger, findings,
    case and manifest attached; optionally timestamp its manifest and sign it."""
    password = None
    if sign_key is not None:
        from casekit.report.sign import password_from_env

        password = password_from_env(sign_password_env)  # fail before the work, not after
    if tsa_url:
        from casekit.tsa import check_tsa_url

        check_tsa_url(tsa_url)  # before rendering: an ftp:// TSA failed only after it
    # The Disclosures page states what will be applied once the PDF is written.
    pdf = _report(run_dir, template_dir, attach_works, timestamp_tsa=tsa_url,
                  sign=sign_key is not None)
    if tsa_url:
        from casekit.report.sign import timestamp_report

        token = timestamp_report(pdf, tsa_url, timeout=tsa_timeout)
        click.echo(f"timestamp: {token} (embedded in {pdf.name})")
    if sign_key is not None:
        from casekit.report.sign import sign_report

        signed = sign_report(pdf, sign_key, password, tsa_url=tsa_url, tsa_timeout=tsa_timeout)
        click.echo(f"signed: {signed}")


@cli.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--works", "works_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="REPORT.pdf only: folder holding the works by their recorded "
                                 "relative paths (default: the run's case folder).")
@click.option("--templates", "template_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="REPORT.pdf only: the template folder the report was rendered "
                                 "with, if not the default.")
@click.option("--tsa-root", "tsa_roots", multiple=True,
              type=click.Path(dir_okay=False, path_type=Path), metavar="CERT.pem",
              help="REPORT.pdf or manifest.tsr: trust root for the RFC 3161 timestamp's "
                   "authority (repeatable).")
@click.option("--manifest", "manifest_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="manifest.tsr only: the manifest the token is over (default: "
                                 "manifest.json beside the token).")
@click.option("--sign-root", "sign_roots", multiple=True,
              type=click.Path(dir_okay=False, path_type=Path), metavar="CERT.pem",
              help="REPORT.pdf only: trust root for the PDF's signature (repeatable).")
@click.option("--expect-key", default=None, metavar="FINGERPRINT",
              help="RUN_DIR, ledger.jsonl or REPORT.pdf: the examiner key fingerprint "
                   "(sha256:...) the examiner disclosed; fail if the ledger is signed by "
                   "another key.")
@user_errors
def verify(path: Path, works_dir: Path | None, template_dir: Path | None,
           tsa_roots: tuple[Path, ...], manifest_path: Path | None,
           sign_roots: tuple[Path, ...], expect_key: str | None) -> None:
    """Verify a run's ledger (RUN_DIR or ledger.jsonl: re-derive the hash chain, name the first
    bad record), a report (REPORT.pdf: check its attachments, the chain, the works, the
    recomputed findings and every number printed) or a report's timestamp (manifest.tsr: the
    token against the manifest and, with --tsa-root, the authority's certificate chain).
    Exit 0 if all checks pass, 1 if one fails, 2 for unusable input."""
    from casekit.ledger import LEDGER_NAME, verify_chain
    from casekit.visible import visible

    if path.suffix.lower() == ".tsr":
        from casekit.report.verify import verify_timestamp

        result = verify_timestamp(path, manifest_path, tsa_roots)
        for line in result.lines():
            click.echo(visible(line))  # the lines quote the ledger and the manifest
        if result.ledger_head_hash:
            click.echo(f"ledger head named by the manifest: {result.ledger_head_hash}")
        sys.exit(0 if result.ok else 1)
    if manifest_path is not None:
        raise CasekitError("--manifest goes with a manifest.tsr; give the token file, or drop "
                           "--manifest")

    def looks_like_pdf(p: Path) -> bool:
        with p.open("rb") as fh:
            return fh.read(5) == b"%PDF-"

    if path.suffix.lower() == ".pdf" or (path.is_file() and looks_like_pdf(path)):
        from casekit.report.verify import verify_report

        if not path.is_file():
            click.echo(f"error: {path}: no such file; give the report's PDF", err=True)
            sys.exit(2)
        result = verify_report(path, works_dir=works_dir, template_dir=template_dir,
                               expect_key=expect_key, tsa_roots=tsa_roots)
        if result.checks:
            from casekit.report.verify import verify_extras

            verify_extras(result, path, tsa_roots=tsa_roots, sign_roots=sign_roots)
        for line in result.lines():
            click.echo(visible(line))  # the lines quote the ledger and the manifest
        if result.anchor is not None and result.anchor.key is not None:
            click.echo(f"examiner key fingerprint: {result.anchor.key.fingerprint} (compare "
                       "it with the one the examiner disclosed, or give --expect-key)")
        if result.ledger_head_hash:
            click.echo(f"ledger head: {result.ledger_head_hash} (compare it with the head "
                       "hash you were given or that was timestamped)")
        sys.exit(0 if result.ok else 1)
    from casekit.report.verify import anchor_check

    path = path / LEDGER_NAME if path.is_dir() else path
    # The anchor first, plainly: what the ledger proves, or the one reason it does not.
    anchor = anchor_check(path, expect_key, tsa_roots)
    if anchor.ok:
        click.echo(f"ok: {anchor.summary()}")
    else:
        click.echo(visible(f"NOT verified: {path}: {anchor.reason}"))
    for line in anchor.lines()[1:]:
        click.echo(visible(line))
    res = verify_chain(path)
    if res.ok:
        click.echo(f"ok: {res.records} records, chain verifies; head {res.head_hash}")
    else:
        click.echo(f"FAILED: {path}: {res.problem}; {res.records} records before it verify",
                   err=True)
    sys.exit(0 if anchor.ok and res.ok else 1)


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--csv", "as_csv", is_flag=True, required=True,
              help="Write the per-attempt table as CSV (the one format offered).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write it (default: RUN_DIR/attempts.csv).")
@user_errors
def export(run_dir: Path, as_csv: bool, out: Path | None) -> None:
    """Export the per-attempt table of an analyzed run (attempts.parquet) for spreadsheets.

    The rows are checked against the content hash findings.json cites before anything is
    written. Text cells that a spreadsheet would run as a formula get a leading apostrophe.
    """
    from casekit.analysis.analyze import FINDINGS_NAME
    from casekit.analysis.attempt_table import ATTEMPTS_NAME, CSV_NAME, check_table, write_csv
    from casekit.analysis.findings import Findings

    fpath = run_dir / FINDINGS_NAME
    if not fpath.is_file():
        raise CasekitError(f"{run_dir}: no {FINDINGS_NAME} here; run `casekit analyze "
                           f"{run_dir}` first")
    try:
        findings = Findings.model_validate_json(fpath.read_bytes())
    except ValueError:
        raise CasekitError(f"{fpath}: not a findings file of this casekit version; run "
                           f"`casekit analyze {run_dir}` again") from None
    table = run_dir / ATTEMPTS_NAME
    check_table(table, findings.attempt_rows)
    target = out or run_dir / CSV_NAME
    write_csv(table, target)
    click.echo(f"{findings.attempt_rows.rows:,} rows: {target}")


@cli.command(name="import")
@click.argument("target", type=click.Path(path_type=Path))
@click.argument("source", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model-id", default=None,
              help="The case's model the outputs are evidence about (for files without a "
                   "model_id column; needed when the case has several models).")
@anchoring_options("import")
@user_errors
def import_(target: Path, source: Path, model_id: str | None, examiner_key: Path | None,
            checkpoint_every: int, tsa_url: str | None) -> None:
    """Add outputs captured elsewhere (CSV or JSONL) to a run's ledger as imported attempts.

    TARGET is a run folder or the case file of a started run. Columns: prompt, output, model,
    captured_at (ISO 8601 with a time zone), captured_by, source, intent, work_id; optional
    model_id, screenshot (hashed), system, label, target_start/target_end or target_text.
    Re-importing a file records nothing twice.
    """
    from casekit.run.importer import import_outputs
    from casekit.visible import visible

    r = import_outputs(target, source, model_id=model_id, examiner_key=examiner_key,
                       checkpoint_every=checkpoint_every, tsa_url=tsa_url)
    # The file's name is the user's, but may be anyone's: shown by code point, never applied.
    click.echo(f"imported {r.imported} of {r.rows} rows from {visible(str(source))} "
               f"({r.skipped} already recorded)")
    click.echo(f"ledger: {visible(str(r.ledger_path))} (head {r.head_hash})")


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--run-dir", "new_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Folder of the new run (default: RUN_DIR-rerun-N).")
@user_errors
def rerun(run_dir: Path, new_dir: Path | None) -> None:
    """Send a recorded run's planned attempts again as a new linked run, and compare.

    Same prompts and parameters, new timestamps; prints per model how many outputs and spans
    were the same. Running it again resumes an interrupted rerun.
    """
    from casekit.analysis.compare import COMPARISON_NAME, compare_and_write
    from casekit.run.rerun import rerun as do_rerun

    outcome = do_rerun(run_dir, new_dir)
    click.echo(f"rerun {'complete' if outcome.complete else 'incomplete'}: {outcome.run_dir}")
    click.echo(f"ledger: {outcome.ledger_path}")
    if not outcome.complete:
        click.echo("not compared: the rerun is incomplete; run the same command to resume")
        sys.exit(130 if outcome.interrupted else 1)
    comparison = compare_and_write(run_dir, outcome.run_dir)
    for m in comparison.models:
        out = f"{m.same_output} of {m.attempts}" if m.output_agreement is not None else "n/a"
        click.echo(f"{m.model_id}: same output {out}; same spans {m.same_spans} of "
                   f"{m.attempts}; same outcome {m.same_outcome} of {m.attempts}")
    click.echo(f"comparison: {outcome.run_dir / COMPARISON_NAME}")


@cli.command()
@click.argument("case_path", type=click.Path(dir_okay=False, path_type=Path),
                default=Path("cases/demo/case.yaml"))
@user_errors
def demo(case_path: Path) -> None:
    """Run, analyze and report a case in one go (default: the demo case)."""
    run_dir = _run(case_path, None)
    _analyze(run_dir)
    pdf = _report(run_dir, None)
    click.echo(f"\nThe demo report is at: {pdf}")


def main() -> None:
    """The ``casekit`` command. Once the command is done (its files written and closed), the
    process ends without tearing down the interpreter: after a matter's analysis that
    teardown (freeing millions of objects one by one, and the collector's final pass over
    them) took 9.7 s of a 143 s `casekit analyze` on 500,000 attempts, and wrote nothing.
    The atexit handlers still run and the standard streams and logging are flushed first
    (mypy ends its runs the same way)."""
    try:
        cli()
        code: int = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:  # SystemExit("message"): what the interpreter would print, with status 1
            print(exc.code, file=sys.stderr)
            code = 1
    _hard_exit(code)


def _hard_exit(code: int) -> None:
    import atexit
    import threading

    # A thread that the interpreter would wait for (not a daemon) may still be writing:
    # then the normal way out, teardown included.
    main_thread = threading.main_thread()
    if any(t is not main_thread and not t.daemon and t.is_alive()
           for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`casekit ... | head`)
            pass
    os._exit(code)


if __name__ == "__main__":
    main()
