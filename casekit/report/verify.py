"""``casekit verify REPORT.pdf``: check a report against the data it carries.

A report is evidence only if anyone can show that its numbers follow from its ledger: this
module re-derives the chain, the findings, the HTML and the PDF from the attachments and the
local works and templates, and names the first check that fails. The ten checks, and how the
timestamp token is checked, are described in docs/report.md. The PDF is untrusted input:
attachment names are never file names, work paths stay inside the works folder, templates are
never taken from the PDF.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from casekit.anchor import AnchorReport
from casekit.canonical import canonical_json, sha256_bytes
from casekit.errors import CasekitError
from casekit.report.attachments import (
    BadReport,
    DamagedReport,
    Extracted,
    extract_attachment,
    read_attachments,
)
from casekit.report.evidence import (
    ATTEMPTS_ATTACHMENT,
    ATTEMPTS_CSV_ATTACHMENT,
    ATTEMPTS_PER_STRATUM,
    CASE_ATTACHMENT,
    COMPARISON_ATTACHMENT,
    FINDINGS_ATTACHMENT,
    LEDGER_ATTACHMENT,
    MANIFEST_ATTACHMENT,
    REQUIRED_ATTACHMENTS,
    STREAMED_ATTACHMENTS,
    ReportOptions,
    manifest_bytes,
    template_set,
)
from casekit.report.inputs import ScratchFile
from casekit.report.ledger_facts import LedgerFacts
from casekit.report.revisions import (  # noqa: F401 - re-exported for verify's callers
    Revisions,
    _chunks,
    _page_diff,
    _same_bytes,
    bytes_verdict,
    pdf_revisions,
    rendering_matches,
)
from casekit.report.sign import (
    TOKEN_ATTACHMENT,
    TokenCheck,
    check_signatures,
    check_token,
    has_signature,
    load_certs,
    missing_extra,
)
from casekit.report.tablecheck import TableCheck, table_facts

log = logging.getLogger(__name__)



@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class ReportVerification:
    pdf: Path
    checks: list[Check] = field(default_factory=list)
    ledger_head_hash: str | None = None
    anchor: AnchorReport | None = None

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append(Check(name, ok, detail))
        return ok

    def lines(self) -> list[str]:
        out = [f"{'ok    ' if c.ok else 'FAILED'} {c.name}: {c.detail}" for c in self.checks]
        failed = sum(1 for c in self.checks if not c.ok)
        out.append(f"{self.pdf}: " + ("verified: every check passed" if self.ok else
                                      f"NOT verified: {failed} of {len(self.checks)} checks "
                                      "failed"))
        return out


def page_texts(pdf: Path) -> list[str]:
    """Each page's text without whitespace (robust to line-wrapping differences)."""
    from pypdf import PdfReader

    return [re.sub(r"\s+", "", p.extract_text() or "") for p in PdfReader(pdf).pages]


# --------------------------------------------------------------------------- the checks


def verify_report(pdf: Path, works_dir: Path | None = None, template_dir: Path | None = None,
                  *, compare_pages: bool = True,
                  page_texts_of: Callable[[Path], list[str]] = page_texts,
                  expect_key: str | None = None, tsa_roots: Sequence[Path] = (),
                  ) -> ReportVerification:
    """Run every check; never raises for a failed check (BadReport for bad input only). The
    anchor of the attached ledger (casekit.anchor: the examiner key that signed it, and
    ``expect_key``, the fingerprint the examiner disclosed) is the first check listed."""
    res = ReportVerification(pdf=pdf)
    with tempfile.TemporaryDirectory(prefix="casekit-verify-") as tmp:
        _verify_in(res, pdf, Path(tmp), works_dir, template_dir, compare_pages, page_texts_of,
                   expect_key, tsa_roots)
    return res


def _verify_in(res: ReportVerification, pdf: Path, tmp: Path, works_dir: Path | None,
               template_dir: Path | None, compare_pages: bool,
               page_texts_of: Callable[[Path], list[str]], expect_key: str | None,
               tsa_roots: Sequence[Path]) -> None:
    """verify_report in its scratch folder ``tmp``: the ledger is written there from the PDF
    as it is inflated (never held in memory), the other attachments are read as bytes."""
    from casekit.ledger import LEDGER_NAME

    run_dir = tmp / "run"
    run_dir.mkdir()
    try:
        att = read_attachments(pdf, skip=STREAMED_ATTACHMENTS)
        # The ledger's encoded stream is kept too: once its bytes verify, the fresh rendering
        # embeds that stream rather than compressing 2 GB again (_verify_after_chain).
        ledger = extract_attachment(pdf, LEDGER_ATTACHMENT, run_dir / LEDGER_NAME,
                                    keep_encoded=tmp / "ledger.jsonl.deflate")
        csv = extract_attachment(pdf, ATTEMPTS_CSV_ATTACHMENT, tmp / ATTEMPTS_CSV_ATTACHMENT,
                                 keep_encoded=tmp / "attempts.csv.deflate")
    except DamagedReport as exc:
        res.add("attachments", False, str(exc))
        return
    # pypdf's readers (each holding the whole PDF, and the ledger's encoded stream) are
    # garbage in reference cycles now; the analysis below pauses the collector, which kept
    # them through it: 90 MB of a 50,000-attempt report's verify, and some ten times that at a
    # matter's size. Collected here, before the analysis.
    gc.collect()
    streamed = {name: got for name, got in ((LEDGER_ATTACHMENT, ledger),
                                            (ATTEMPTS_CSV_ATTACHMENT, csv)) if got is not None}
    present = set(att) | set(streamed)
    missing = [n for n in REQUIRED_ATTACHMENTS if n not in present]
    if MANIFEST_ATTACHMENT not in present and LEDGER_ATTACHMENT not in present:
        raise BadReport(f"{pdf}: no casekit attachments (manifest.json, ledger.jsonl) in this PDF;"
                        " it is not a casekit report, or a tool that re-saved it dropped them "
                        "(verify the original file)")
    if not res.add("attachments", not missing,
                   f"missing {', '.join(missing)}" if missing else
                   f"{len(present)} attached files: {', '.join(sorted(present))}"):
        return
    _verify(res, att, streamed, run_dir, tmp, pdf, works_dir, template_dir, compare_pages,
            page_texts_of, expect_key, tsa_roots)


def anchor_check(ledger: Path, expect_key: str | None,
                 tsa_roots: Sequence[Path] = ()) -> AnchorReport:
    """The anchor of a ledger (casekit.anchor), its timestamp tokens checked against
    ``tsa_roots`` (without roots: intact, the TSA not trusted)."""
    from casekit.anchor import verify_anchoring

    return verify_anchoring(ledger, expect_key=expect_key,
                            check_token=_token_checker(tsa_roots))


def _token_checker(tsa_roots: Sequence[Path]) -> Callable[[bytes, bytes], TokenCheck]:
    roots = load_certs(tsa_roots)

    def token_check(token: bytes, data: bytes) -> TokenCheck:
        return check_token(token, data, roots)

    return token_check


def _manifest(res: ReportVerification, att: dict[str, bytes]) -> dict[str, Any] | None:
    try:
        manifest = json.loads(att[MANIFEST_ATTACHMENT])
    except (ValueError, UnicodeDecodeError) as exc:
        res.add("manifest", False, f"manifest.json is not JSON ({exc})")
        return None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("ledger"), dict):
        res.add("manifest", False, "manifest.json is not a casekit manifest")
        return None
    return manifest


def _check_hashes(res: ReportVerification, manifest: dict[str, Any],
                  att: dict[str, bytes], streamed: dict[str, Extracted]) -> bool:
    problems = []
    entries = [manifest.get(k) for k in ("ledger", "findings", "case", "attempts")]
    attempts = manifest.get("attempts")
    entries.append(attempts.get("csv") if isinstance(attempts, dict) else None)
    if manifest.get("rerun") is not None:
        entries.append(manifest["rerun"])
    if manifest.get("effort") is not None:
        entries.append(manifest["effort"])
    entries += [w for w in manifest.get("works", []) if isinstance(w, dict)
                and w.get("attachment")]
    listed = {MANIFEST_ATTACHMENT}
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("attachment"), str):
            problems.append("an entry of the manifest names no attachment")
            continue
        name = e["attachment"]
        listed.add(name)
        data = att.get(name)
        got = streamed.get(name) or (Extracted(len(data), sha256_bytes(data))
                                     if data is not None else None)
        if got is None:
            problems.append(f"{name} is not attached")
        elif got.sha256 != e.get("sha256") or got.size != e.get("size"):
            problems.append(f"{name} hashes to {got.sha256} ({got.size:,} bytes), the "
                            f"manifest says {e.get('sha256')} ({e.get('size')} bytes)")
    # The timestamp token is over the manifest, so the manifest cannot list it; it is checked
    # on its own (the "timestamp" check).
    token = TOKEN_ATTACHMENT in att
    extra = sorted((set(att) | set(streamed)) - listed - {TOKEN_ATTACHMENT})
    if extra:
        problems.append("attachments the manifest does not list: " + ", ".join(extra))
    return res.add("attachment hashes", not problems, "; ".join(problems) or (
        f"{len(listed) - 1} attachments match the manifest's SHA-256 and sizes"
        + (f" (and {TOKEN_ATTACHMENT}, the timestamp of the manifest, which the manifest "
           "cannot list)" if token else "")))


def _attempt_rows(res: ReportVerification, att: dict[str, bytes], csv: Extracted | None,
                  cited: Any, run_dir: Path, check: TableCheck | None = None,
                  ) -> tuple[bool, ScratchFile | None]:
    """The attached per-attempt table holds the rows the recomputed findings cite (content
    hash, streamed), and the attached CSV (``csv``: as extracted to a file) is that table's
    CSV: whether both hold, and the CSV made from the table (the re-rendered report attaches
    the same; None when the table does not read). ``check``: those facts being made in the
    background (:func:`_place_table` wrote the table and started it); without one, the table
    is written and they are made here. The table is left in ``run_dir`` as attempts.parquet,
    where the re-rendered report reads it."""
    from casekit.analysis.attempt_table import TableError

    try:
        got = check.result() if check is not None else table_facts(_place_table(att, run_dir))
    except (TableError, ValueError) as exc:
        return res.add("attempt rows", False,
                       f"{ATTEMPTS_ATTACHMENT} does not read: {exc}"), None
    rows_ok = (got.rows, got.sha256) == (cited.rows, cited.sha256)
    # Compared by size and hash, the file read in chunks (some 280 MB at 500,000 attempts).
    made = got.csv
    csv_ok = csv is not None and (made.size, made.sha256) == (csv.size, csv.sha256)
    if not rows_ok:
        detail = (f"{ATTEMPTS_ATTACHMENT} holds {got.rows} rows hashing to {got.sha256}; the "
                  f"recomputed findings cite {cited.rows} rows hashing to {cited.sha256}")
    elif not csv_ok:
        detail = f"{ATTEMPTS_CSV_ATTACHMENT} is not the CSV of {ATTEMPTS_ATTACHMENT}"
    else:
        detail = (f"{got.rows:,} rows of {ATTEMPTS_ATTACHMENT} are the recomputed ones "
                  f"({got.sha256}); {ATTEMPTS_CSV_ATTACHMENT} is their CSV")
    return res.add("attempt rows", rows_ok and csv_ok, detail), made


def _own_streams(reused: list[Path], ledger: Path) -> str:
    """What "a fresh rendering" is when it embeds some of the PDF's own compressed streams
    (:func:`_verify_after_chain`): the ledger's, the CSV's, or both."""
    ledger_key = ledger.resolve()
    streams = [(name, proof) for name, proof, hit in (
        ("the ledger", "the ledger verified above", any(p == ledger_key for p in reused)),
        ("the CSV", "the CSV of the verified rows", any(p != ledger_key for p in reused)))
        if hit]
    if not streams:
        return ""
    names, proofs = " and ".join(n for n, _ in streams), " and ".join(p for _, p in streams)
    if len(streams) == 1:
        return (f"; the fresh rendering embeds {names} as the PDF's own compressed stream of "
                f"it, which inflates to exactly {proofs}")
    return (f"; the fresh rendering embeds {names} as the PDF's own compressed streams of "
            f"them, which inflate to exactly {proofs}")


def _place_table(att: dict[str, bytes], run_dir: Path) -> Path:
    """The attached table written to ``run_dir`` as attempts.parquet."""
    from casekit.analysis.attempt_table import ATTEMPTS_NAME

    table = run_dir / ATTEMPTS_NAME
    table.write_bytes(att[ATTEMPTS_ATTACHMENT])
    return table


def _verify(res: ReportVerification, att: dict[str, bytes], streamed: dict[str, Extracted],
            run_dir: Path, tmp: Path, pdf: Path,
            works_dir: Path | None, template_dir: Path | None, compare_pages: bool,
            page_texts_of: Callable[[Path], list[str]], expect_key: str | None = None,
            tsa_roots: Sequence[Path] = ()) -> None:
    from casekit.ledger import LEDGER_NAME

    manifest = _manifest(res, att)
    if manifest is None:
        return
    _check_hashes(res, manifest, att, streamed)

    # The ledger: its chain, from the attached file (written to run_dir as it was inflated).
    if COMPARISON_ATTACHMENT in att:  # a re-run's comparison: shown in the report as attached
        (run_dir / COMPARISON_ATTACHMENT).write_bytes(att[COMPARISON_ATTACHMENT])
    # The chain and its anchor are checked by the passes that need the ledger anyway: the
    # analysis verifies the chain as it reads it, and the report's pass (load_inputs) verifies
    # it again and keeps the records the anchor reads. Only when verify stops before that pass
    # does the anchor get a pass of its own (which re-derives the chain too). Their checks
    # are listed where they were: the anchor first, the chain after the attachments' hashes.
    chain = _ChainChecks(res, run_dir / LEDGER_NAME, expect_key, tsa_roots,
                         cited=manifest["ledger"].get("head_hash"),
                         findings_head=_json_field(att[FINDINGS_ATTACHMENT], "ledger_head_hash"))
    try:
        with contextlib.ExitStack() as later:
            _verify_after_chain(res, att, streamed, run_dir, tmp, pdf, works_dir, template_dir,
                                compare_pages, page_texts_of, manifest, chain, later)
    finally:
        if not chain.settled:
            chain.settle(anchor_check(run_dir / LEDGER_NAME, expect_key, tsa_roots))


class _ChainChecks:
    """The "anchor" and "ledger chain" checks, added once the anchor is known."""

    def __init__(self, res: ReportVerification, ledger: Path, expect_key: str | None,
                 tsa_roots: Sequence[Path], cited: str | None, findings_head: Any) -> None:
        self.res, self.ledger = res, ledger
        self.expect_key, self.tsa_roots = expect_key, tsa_roots
        self.cited, self.findings_head = cited, findings_head
        self.at = len(res.checks)
        self.settled = False

    def settle(self, anchor: AnchorReport) -> bool:
        """Add both checks; True when the chain verifies."""
        from casekit.ledger import verify_chain

        res = self.res
        self.settled = True
        chain = anchor.chain or verify_chain(self.ledger)
        res.ledger_head_hash = chain.head_hash if chain.ok else None
        res.anchor = anchor
        if not chain.ok:
            check = Check("ledger chain", False,
                          f"{chain.problem}; {chain.records} records before it verify")
        else:
            heads_ok = chain.head_hash == self.cited == self.findings_head
            check = Check("ledger chain", heads_ok,
                          f"{chain.records} records verify; head {chain.head_hash}" if heads_ok
                          else f"the chain verifies to head {chain.head_hash}, but the manifest "
                          f"cites {self.cited} and findings.json {self.findings_head}")
        res.checks.insert(self.at, check)
        # First, and plainly: who anchors the ledger, up to where (or why nothing does).
        res.checks.insert(0, Check("anchor", anchor.ok, anchor.summary().removeprefix(
            "NOT anchored: ") + (f"; examiner key {anchor.key.fingerprint}" if anchor.key
                                 else "")))
        return chain.ok

    def settle_from(self, facts: LedgerFacts) -> bool:
        """Settle from the facts of the pass that verified the ledger (the analysis')."""
        from casekit.anchor import anchoring_of_verified

        return self.settle(anchoring_of_verified(
            self.ledger, facts.run_records, facts.records, facts.head_hash,
            expect_key=self.expect_key, check_token=_token_checker(self.tsa_roots)))


def _verify_after_chain(res: ReportVerification, att: dict[str, bytes],
                        streamed: dict[str, Extracted], run_dir: Path, tmp: Path, pdf: Path,
                        works_dir: Path | None, template_dir: Path | None, compare_pages: bool,
                        page_texts_of: Callable[[Path], list[str]], manifest: dict[str, Any],
                        chain: _ChainChecks, later: contextlib.ExitStack) -> None:
    from casekit.analysis.analyze import analyze_run, findings_bytes
    from casekit.ledger import LEDGER_NAME, ChainBroken, iter_records
    from casekit.records import RunStart
    from casekit.report.build import load_inputs, render_report
    from casekit.report.embed import deflating, precompressed
    from casekit.report.ledger_facts import FactsPass
    from casekit.report.render import template_dirs

    # The run_start is near the top, so stop reading there (a chain broken before it: the
    # ledger chain check says where).
    try:
        start = next((r for r in iter_records(run_dir / LEDGER_NAME)
                      if isinstance(r, RunStart)), None)
    except ChainBroken:
        return
    if start is None:
        res.add("case", False, "the ledger has no run_start record")
        return

    # The case as recorded.
    case_bytes = att[CASE_ATTACHMENT]
    case_ok = (sha256_bytes(case_bytes) == start.case_sha256
               and case_bytes == canonical_json(start.case)
               and manifest["case"].get("sha256") == start.case_sha256)
    res.add("case", case_ok, f"case.json is the case the ledger records ({start.case_sha256})"
            if case_ok else f"case.json hashes to {sha256_bytes(case_bytes)}; the ledger's "
            f"run_start records {start.case_sha256}")

    # The works, by hash.
    case_path = _works(res, start, manifest, att, works_dir, tmp)
    if case_path is None:
        return

    # The findings, recomputed. The same pass takes the ledger's facts for the re-rendered
    # report (a pass of the report's own read the 2 GB ledger of a 500,000-attempt matter
    # again). The fresh rendering embeds the ledger compressed: as the PDF's own stream of it
    # when that is one whole zlib stream of exactly the bytes extracted (and so verified here:
    # the embedding checks their size and SHA-256 against the verified ledger's), which
    # spares compressing them again (some 30 s of CPU at 500,000 attempts, beside an
    # analysis that keeps every core busy); else compressed beside the analysis.
    ledger = streamed.get(LEDGER_ATTACHMENT)
    # Filled as the fresh rendering copies a stream (casekit.report.embed.precompressed).
    copied: list[list[Path]] = []
    if ledger is not None and ledger.encoded is not None:
        copied.append(later.enter_context(precompressed(run_dir / LEDGER_NAME, ledger.size,
                                                        ledger.sha256, ledger.encoded)))
    else:
        later.enter_context(deflating(run_dir / LEDGER_NAME, tmp))
    # The attached table's digest and CSV need only the table: made in the background, at a
    # lower priority, on what the analysis leaves idle (casekit.report.tablecheck).
    check = later.enter_context(TableCheck(_place_table(att, run_dir)))
    facts = FactsPass(run_dir / LEDGER_NAME)
    try:
        # All CPUs, as `casekit analyze` does: the bytes are the same for any worker count.
        findings = analyze_run(run_dir, case_path, workers=max(1, len(os.sched_getaffinity(0))),
                               observer=facts)
    except ChainBroken:
        return  # the ledger chain check says where (a pass of the anchor's own finds it)
    except CasekitError as exc:
        res.add("findings recomputed", False, f"the analysis failed: {exc}")
        return
    fbytes = findings_bytes(findings)
    same = fbytes == att[FINDINGS_ATTACHMENT]
    detail = (f"recomputed from the ledger and the works: byte-identical "
              f"({sha256_bytes(fbytes)})")
    if not same:
        made_with = _json_field(att[FINDINGS_ATTACHMENT], "casekit_version")
        detail = (f"recomputed findings hash to {sha256_bytes(fbytes)}, the attached "
                  f"findings.json to {sha256_bytes(att[FINDINGS_ATTACHMENT])}"
                  + (f" (made with casekit {made_with}, recomputed with {findings.casekit_version}"
                     ")" if made_with != findings.casekit_version else ""))
    if not res.add("findings recomputed", same, detail):
        return
    rows_ok, made_csv = _attempt_rows(res, att, streamed.get(ATTEMPTS_CSV_ATTACHMENT),
                                      findings.attempt_rows, run_dir, check)
    if not rows_ok:
        return
    # The CSV made from the table is the attached one (just checked, by size and SHA-256):
    # the fresh rendering embeds the PDF's own stream of it when that is one whole zlib stream
    # of those bytes, as it does the ledger's (some 280 MB at 500,000 attempts, compressed
    # again otherwise).
    csv_src = streamed.get(ATTEMPTS_CSV_ATTACHMENT)
    if made_csv is not None and csv_src is not None and csv_src.encoded is not None:
        copied.append(later.enter_context(precompressed(made_csv.path, csv_src.size,
                                                        csv_src.sha256, csv_src.encoded)))
    # The re-rendered report reads the attached table (its rows are the recomputed ones, just
    # checked), not an object per attempt: drop the analyses (issue 14).
    findings = findings.model_copy(update={"attempts": []})

    # The templates and the re-rendered report.
    dirs = template_dirs(template_dir)
    tset = template_set(dirs)
    recorded = manifest.get("templates", {}).get("sha256")
    if not res.add("templates", tset.sha256 == recorded,
                   f"the local template set is the one recorded ({tset.sha256})"
                   if tset.sha256 == recorded else
                   f"the local template set hashes to {tset.sha256}, the report was rendered "
                   f"with {recorded}; give that set with --templates"):
        return
    rep = manifest.get("report", {})
    options = ReportOptions(exhibits_per_finding=int(rep.get("exhibits_per_finding", 3)),
                            attach_works=bool(rep.get("attach_works", False)),
                            attempts_per_stratum=int(rep.get("attempts_per_stratum",
                                                             ATTEMPTS_PER_STRATUM)),
                            timestamp_tsa=str(rep["timestamp_tsa"]) if rep.get("timestamp_tsa")
                            else None, sign=bool(rep.get("sign", False)))
    # The table was just checked to hold the recomputed rows, and its CSV made.
    inputs = load_inputs(run_dir, findings, case_path, table_checked=True,
                         ledger=facts.finish())
    inputs.attempts_csv = made_csv
    if not chain.settle_from(inputs.ledger):  # pragma: no cover - the analysis verified the chain
        return
    rendered = render_report(findings, inputs, options, template_dir)
    html_sha = sha256_bytes(rendered.html.encode("utf-8"))
    html_ok = html_sha == rep.get("html_sha256")
    manifest_ok = manifest_bytes(rendered.manifest) == att[MANIFEST_ATTACHMENT]
    if not html_ok:
        detail = (f"the HTML re-rendered from the recomputed findings hashes to {html_sha}; the "
                  f"report's was {rep.get('html_sha256')}")
    elif not manifest_ok:
        diff = sorted(k for k in set(rendered.manifest) | set(manifest)
                      if rendered.manifest.get(k) != manifest.get(k))
        detail = "the re-rendered manifest differs in: " + ", ".join(diff)
    else:
        detail = f"the HTML re-rendered from the recomputed findings is identical ({html_sha})"
    if not res.add("report re-rendered", html_ok and manifest_ok, detail):
        return
    if not compare_pages:
        return

    # Every page's text, against a PDF rendered again from the same HTML.
    again = tmp / "again.pdf"
    rendered.write_pdf(again, template_dir)
    # Compared as files, in chunks: a large matter's PDF carries its whole ledger.
    given, fresh = pdf, again
    # What "a fresh rendering" is, when its ledger stream is the PDF's own (see above).
    own = _own_streams([p for c in copied for p in c], run_dir / LEDGER_NAME)
    if _same_bytes(given, fresh):
        # The same bytes have the same pages: reading their text again proves nothing more
        # (and is most of verify's time on a long report).
        from pypdf import PdfReader

        pages = len(PdfReader(again).pages)
        res.add("numbers in the report", True, f"the text of all {pages} pages is reproduced "
                "(the PDF is the fresh rendering's bytes)")
        res.add("rendering", True, bytes_verdict(given, fresh) + own)
        return
    try:
        theirs = page_texts_of(pdf)
    except Exception as exc:  # noqa: BLE001 - any parse failure of the pages is a finding
        res.add("numbers in the report", False,
                f"the pages of this PDF cannot be read ({type(exc).__name__}: "
                f"{str(exc)[:200]}): the file was damaged or edited after rendering")
        return
    ours = page_texts_of(again)
    if theirs != ours:
        res.add("numbers in the report", False, _page_diff(theirs, ours))
        return
    res.add("numbers in the report", True, f"the text of all {len(ours)} pages is reproduced")
    if rendering_matches(given, fresh):
        res.add("rendering", True, bytes_verdict(given, fresh) + own)
        return
    # The re-rendered manifest matched, so this is the WeasyPrint version that made it.
    which = "its first revision (as rendered)" if pdf_revisions(given).count > 1 else "the PDF"
    res.add("rendering", False,
            f"{which} differs from a fresh rendering in its bytes, although the same WeasyPrint "
            f"({manifest.get('weasyprint_version')}) rendered both: the file was altered after "
            "rendering (a font, an image or a drawing can change what a reader sees without "
            "changing the page text), or this machine's fonts differ from those of the machine "
            "that made it; verify it there, or compare the fonts" + own)


def _json_field(data: bytes, key: str) -> Any:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    return value.get(key) if isinstance(value, dict) else None


def _works(res: ReportVerification, start: Any, manifest: dict[str, Any],
           att: dict[str, bytes], works_dir: Path | None, tmp: Path) -> Path | None:
    """Find every work (``works_dir``, else the recorded case folder, else the attachment),
    check it by hash, and lay the verified texts out in a folder for the analyzer. Returns the
    path of a case file in that folder (it need not exist: only its folder is used)."""
    from casekit.report.evidence import work_attachment_name

    base = works_dir.resolve() if works_dir else Path(start.case_path).resolve().parent
    staged = tmp / "case"
    staged.mkdir()
    attached = {w.get("id"): w.get("attachment") for w in manifest.get("works", [])
                if isinstance(w, dict)}
    problems: list[str] = []
    found: list[str] = []
    for wm in start.works:
        rel = Path(wm.path)
        target = (staged / rel).resolve()
        path = (base / rel).resolve()
        if rel.is_absolute() or not path.is_relative_to(base) or \
                not target.is_relative_to(staged.resolve()):
            problems.append(f"{wm.id}: path {wm.path!r} leaves the works folder")
            continue
        data: bytes | None = None
        source = ""
        if path.is_file():
            data = path.read_bytes()
            source = str(path)
            if sha256_bytes(data) != wm.sha256:
                name = attached.get(wm.id)
                if name and name == work_attachment_name(wm.id, wm.path) and name in att \
                        and sha256_bytes(att[name]) == wm.sha256:
                    problems.append(f"{wm.id}: {path} hashes to {sha256_bytes(data)}, the run "
                                    f"recorded {wm.sha256} (the attached copy matches)")
                else:
                    problems.append(f"{wm.id}: {path} hashes to {sha256_bytes(data)}, the run "
                                    f"recorded {wm.sha256}")
                continue
        else:
            name = attached.get(wm.id)
            if name and name in att:
                data = att[name]
                source = f"attached {name}"
                if sha256_bytes(data) != wm.sha256:
                    problems.append(f"{wm.id}: the attached {name} hashes to "
                                    f"{sha256_bytes(data)}, the run recorded {wm.sha256}")
                    continue
            else:
                problems.append(f"{wm.id}: no file at {path}; give the folder that holds the "
                                f"works by their recorded paths with --works")
                continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        found.append(f"{wm.id} ({source})")
    ok = res.add("works", not problems, "; ".join(problems) if problems else
                 f"{len(found)} works match the run's SHA-256: " + ", ".join(found))
    return staged / "case.yaml" if ok else None


# --------------------------------------------------------------------------- manifest.tsr


def verify_timestamp(token_path: Path, manifest_path: Path | None = None,
                     tsa_roots: Sequence[Path] = ()) -> ReportVerification:
    """``casekit verify manifest.tsr``: check the RFC 3161 token that ``casekit report --tsa``
    wrote beside the report, on its own.

    Checks: the token is a granted timestamp whose message imprint is the SHA-256 of the
    manifest (``manifest.json`` beside the token unless ``manifest_path`` is given) and whose
    signature is intact; with ``tsa_roots``, that the TSA certificate chains to one of them
    (without, the token is reported valid but the TSA untrusted). When the run's files are where
    ``casekit report`` put them, also that ``report.pdf`` beside the token carries this manifest
    and this token, and that the run's ``ledger.jsonl`` is the ledger the manifest names.
    Raises BadReport (exit 2) when the token or the manifest cannot be read.
    """

    manifest_path = manifest_path or token_path.with_name(MANIFEST_ATTACHMENT)
    try:
        token = token_path.read_bytes()
    except OSError as exc:
        raise BadReport(f"{token_path}: cannot read it ({exc.strerror}); give the manifest.tsr "
                        "that `casekit report --tsa` wrote") from None
    try:
        manifest = manifest_path.read_bytes()
    except OSError as exc:
        raise BadReport(f"{manifest_path}: cannot read the manifest the token is over "
                        f"({exc.strerror}); give it with --manifest") from None
    roots = load_certs(tsa_roots)
    res = ReportVerification(pdf=token_path)
    try:
        tc = check_token(token, manifest, roots)
    except ImportError as exc:
        tc = TokenCheck(False, str(missing_extra(exc)))
    res.add("timestamp", tc.ok, tc.detail.replace("the manifest.json",
                                                  f"the manifest {manifest_path.name}"))
    try:
        parsed = json.loads(manifest)
    except (ValueError, UnicodeDecodeError):
        parsed = None
    ledger = parsed.get("ledger") if isinstance(parsed, dict) else None
    if not isinstance(ledger, dict):
        res.add("manifest", False, f"{manifest_path} is not a casekit manifest (no ledger entry)")
        return res
    res.ledger_head_hash = ledger.get("head_hash")

    pdf = manifest_path.with_name("report.pdf")
    if pdf.is_file():
        try:
            att = read_attachments(pdf, skip=STREAMED_ATTACHMENTS)
        except (BadReport, DamagedReport) as exc:
            res.add("report.pdf", False, f"{pdf}: {exc}")
        else:
            same = att.get(MANIFEST_ATTACHMENT) == manifest
            carries = att.get(TOKEN_ATTACHMENT) == token
            res.add("report.pdf", same,
                    f"{pdf} carries this manifest" + (" and this token" if carries else
                                                      " (not this token)")
                    if same else f"{pdf} carries another manifest than {manifest_path}")
    run_ledger = manifest_path.parent.parent / "ledger.jsonl"
    if run_ledger.is_file():
        want = ledger.get("sha256")
        # The ledger may have grown since (a resumed run): then its prefix is the one named.
        size = ledger.get("size")
        got, prefix = _file_sha256(run_ledger, size if isinstance(size, int) else None)
        prefix_ok = prefix is not None and prefix == want
        res.add("ledger", got == want or prefix_ok,
                f"{run_ledger} is the ledger the manifest names ({want})" if got == want else
                (f"{run_ledger} begins with the ledger the manifest names ({want}); records "
                 "were appended after the report" if prefix_ok else
                 f"{run_ledger} hashes to {got}; the manifest names {want}"))
    return res


def _file_sha256(path: Path, prefix: int | None) -> tuple[str, str | None]:
    """SHA-256 of a file and of its first ``prefix`` bytes, read in chunks."""
    import hashlib

    from casekit.canonical import HASH_PREFIX

    whole, head = hashlib.sha256(), hashlib.sha256()
    pos = 0
    for chunk in _chunks(path):
        whole.update(chunk)
        if prefix is not None and pos < prefix:
            head.update(chunk[:prefix - pos])
        pos += len(chunk)
    return (HASH_PREFIX + whole.hexdigest(),
            HASH_PREFIX + head.hexdigest() if prefix is not None and pos >= prefix else None)


def verify_extras(res: ReportVerification, pdf: Path, *, tsa_roots: Sequence[Path] = (),
                  sign_roots: Sequence[Path] = ()) -> None:
    """Add the timestamp and signature checks to a report's verification (in place): the
    embedded ``manifest.tsr`` against the attached manifest (and ``tsa_roots``), and each PAdES
    signature against ``sign_roots``, offline."""
    from casekit.report.evidence import MANIFEST_ATTACHMENT

    tsa_certs = load_certs(tsa_roots)
    sign_certs = load_certs(sign_roots)
    try:
        att = read_attachments(pdf, skip=STREAMED_ATTACHMENTS)
    except Exception:  # noqa: BLE001 - verify_report has reported it already
        att = {}
    token = att.get(TOKEN_ATTACHMENT)
    if token is not None and MANIFEST_ATTACHMENT in att:
        try:
            tc = check_token(token, att[MANIFEST_ATTACHMENT], tsa_certs)
        except ImportError as exc:
            tc = TokenCheck(False, str(missing_extra(exc)))
        res.add("timestamp", tc.ok, tc.detail)
    elif tsa_certs:
        res.add("timestamp", False, f"--tsa-root given, but the PDF holds no {TOKEN_ATTACHMENT}")
    if not has_signature(pdf):
        if sign_certs:
            res.add("signature", False, "--sign-root given, but the PDF is not signed")
        return
    try:
        verdicts = check_signatures(pdf, sign_certs, tsa_certs)
    except ImportError as exc:
        verdicts = [(False, str(missing_extra(exc)))]
    for ok, detail in verdicts:
        res.add("signature", ok, detail)
