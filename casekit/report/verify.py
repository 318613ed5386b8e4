"""``casekit verify REPORT.pdf``: check a report against the data it carries.

The checks, in order, each reported as ok or FAILED with its reason:

1. the PDF holds casekit's attachments (manifest.json, ledger.jsonl, findings.json, case.json);
2. every attachment hashes to what the manifest says;
3. the attached ledger's hash chain verifies, and its head is the one the manifest and the
   findings cite;
4. the attached case is the one the ledger's run_start records (same hash);
5. every work is found on disk (or attached) and hashes to the run's recorded SHA-256;
6. the findings recomputed from the attached ledger and those works are byte-identical to the
   attached findings.json;
7. the local templates are the set the report was rendered with (same hash);
8. the report's HTML re-rendered from the recomputed findings hashes to the manifest's HTML hash,
   and the re-rendered manifest equals the attached one;
9. the text of every page, re-rendered to PDF, equals the text of the given PDF's pages: every
   number printed in the report is reproduced (byte-identical PDFs are noted, not required,
   since fonts and WeasyPrint versions differ between machines).

The PDF is untrusted input: attachment names are never used as file names, work paths come from
the verified ledger and must stay inside the works folder, and templates are never taken from
the PDF (only the local ones, checked by hash).
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from casekit.canonical import canonical_json, sha256_bytes
from casekit.errors import CasekitError
from casekit.report.evidence import (
    CASE_ATTACHMENT,
    FINDINGS_ATTACHMENT,
    LEDGER_ATTACHMENT,
    MANIFEST_ATTACHMENT,
    REQUIRED_ATTACHMENTS,
    ReportOptions,
    manifest_bytes,
    template_set,
)

log = logging.getLogger(__name__)


class BadReport(CasekitError):
    """Not a PDF, or a PDF without casekit's attachments (exit code 2)."""


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


# --------------------------------------------------------------------------- reading the PDF


def read_attachments(pdf: Path) -> dict[str, bytes]:
    """The PDF's embedded files by name. Raises BadReport if the file is not a PDF."""
    from pypdf import PdfReader

    try:
        head = pdf.open("rb").read(1024)
    except OSError as exc:
        raise BadReport(f"{pdf}: cannot read it ({exc.strerror}); give the report's PDF file") \
            from None
    if b"%PDF-" not in head:
        raise BadReport(f"{pdf}: not a PDF file; give the report.pdf that `casekit report` "
                        "wrote")
    try:
        reader = PdfReader(pdf)
        found = reader.attachments
        out: dict[str, bytes] = {}
        for name in found:
            data = found[name]
            if len(data) != 1:
                raise _Damaged(f"attachment {name!r} appears {len(data)} times")
            out[name] = data[0]
    except _Damaged:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse failure of untrusted input
        raise _Damaged(f"the PDF's structure cannot be read ({type(exc).__name__}: "
                       f"{str(exc)[:200]})") from None
    return out


class _Damaged(Exception):
    """A PDF whose attachments cannot be read: a damaged or altered report (exit code 1)."""


def page_texts(pdf: Path) -> list[str]:
    """Each page's text without whitespace (robust to line-wrapping differences)."""
    from pypdf import PdfReader

    return [re.sub(r"\s+", "", p.extract_text() or "") for p in PdfReader(pdf).pages]


# --------------------------------------------------------------------------- the checks


def verify_report(pdf: Path, works_dir: Path | None = None, template_dir: Path | None = None,
                  *, compare_pages: bool = True,
                  page_texts_of: Callable[[Path], list[str]] = page_texts,
                  ) -> ReportVerification:
    """Run every check; never raises for a failed check (BadReport for bad input only)."""
    res = ReportVerification(pdf=pdf)
    try:
        att = read_attachments(pdf)
    except _Damaged as exc:
        res.add("attachments", False, str(exc))
        return res
    missing = [n for n in REQUIRED_ATTACHMENTS if n not in att]
    if MANIFEST_ATTACHMENT not in att and LEDGER_ATTACHMENT not in att:
        raise BadReport(f"{pdf}: no casekit attachments (manifest.json, ledger.jsonl) in this PDF;"
                        " it is not a casekit report, or a tool that re-saved it dropped them "
                        "(verify the original file)")
    if not res.add("attachments", not missing,
                   f"missing {', '.join(missing)}" if missing else
                   f"{len(att)} attached files: {', '.join(sorted(att))}"):
        return res
    with tempfile.TemporaryDirectory(prefix="casekit-verify-") as tmp:
        _verify(res, att, Path(tmp), pdf, works_dir, template_dir, compare_pages,
                page_texts_of)
    return res


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
                  att: dict[str, bytes]) -> bool:
    problems = []
    entries = [manifest.get(k) for k in ("ledger", "findings", "case")]
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
        if data is None:
            problems.append(f"{name} is not attached")
        elif sha256_bytes(data) != e.get("sha256") or len(data) != e.get("size"):
            problems.append(f"{name} hashes to {sha256_bytes(data)} ({len(data):,} bytes), the "
                            f"manifest says {e.get('sha256')} ({e.get('size')} bytes)")
    extra = sorted(set(att) - listed)
    if extra:
        problems.append("attachments the manifest does not list: " + ", ".join(extra))
    return res.add("attachment hashes", not problems, "; ".join(problems) or
                   f"{len(listed) - 1} attachments match the manifest's SHA-256 and sizes")


def _verify(res: ReportVerification, att: dict[str, bytes], tmp: Path, pdf: Path,
            works_dir: Path | None, template_dir: Path | None, compare_pages: bool,
            page_texts_of: Callable[[Path], list[str]]) -> None:
    from casekit.analysis.analyze import analyze_run, findings_bytes
    from casekit.ledger import LEDGER_NAME, read_records, verify_chain
    from casekit.records import RunStart
    from casekit.report.build import load_inputs, render_report
    from casekit.report.render import template_dirs

    manifest = _manifest(res, att)
    if manifest is None:
        return
    _check_hashes(res, manifest, att)

    # The ledger: its chain, from the attached bytes.
    run_dir = tmp / "run"
    run_dir.mkdir()
    (run_dir / LEDGER_NAME).write_bytes(att[LEDGER_ATTACHMENT])
    chain = verify_chain(run_dir / LEDGER_NAME)
    res.ledger_head_hash = chain.head_hash if chain.ok else None
    cited = manifest["ledger"].get("head_hash")
    findings_head = _json_field(att[FINDINGS_ATTACHMENT], "ledger_head_hash")
    if not chain.ok:
        res.add("ledger chain", False, f"{chain.problem}; {chain.records} records before it "
                "verify")
        return
    heads_ok = chain.head_hash == cited == findings_head
    res.add("ledger chain", heads_ok,
            f"{chain.records} records verify; head {chain.head_hash}" if heads_ok else
            f"the chain verifies to head {chain.head_hash}, but the manifest cites {cited} "
            f"and findings.json {findings_head}")
    records = read_records(run_dir / LEDGER_NAME)
    start = next((r for r in records if isinstance(r, RunStart)), None)
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

    # The findings, recomputed.
    try:
        findings = analyze_run(run_dir, case_path)
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
                            attach_works=bool(rep.get("attach_works", False)))
    inputs = load_inputs(run_dir, findings, case_path)
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
    theirs, ours = page_texts_of(pdf), page_texts_of(again)
    identical = again.read_bytes() == pdf.read_bytes()
    if theirs == ours:
        res.add("numbers in the report", True,
                f"the text of all {len(ours)} pages is reproduced"
                + ("; the PDF is byte-identical to a fresh rendering" if identical else
                   " (the PDF bytes differ: another WeasyPrint or font version)"))
    else:
        res.add("numbers in the report", False, _page_diff(theirs, ours))


def _page_diff(theirs: list[str], ours: list[str]) -> str:
    if len(theirs) != len(ours):
        return (f"the report has {len(theirs)} pages, a fresh rendering {len(ours)}: its text "
                "was changed")
    for i, (a, b) in enumerate(zip(theirs, ours, strict=True)):
        if a != b:
            j = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]),
                     min(len(a), len(b)))
            return (f"page {i + 1} differs from a fresh rendering near "
                    f"{a[max(0, j - 30):j + 30]!r} (expected {b[max(0, j - 30):j + 30]!r})")
    return "the pages differ"


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
