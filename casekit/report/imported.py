"""What is known about how imported outputs were obtained (``casekit import``): per kind, how
many, from which files and sources, and which provenance the source recorded. Shown in Methods
(partials/methods.html.j2) and summed up in Limitations.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from casekit.records import AttemptRecord, LedgerRecord, is_imported
from casekit.report import catalogue as C
from casekit.report.views import KV

log = logging.getLogger(__name__)

#: Provenance fields an import may lack, with their label.
PROVENANCE_FIELDS = (("captured_at", "capture time"), ("captured_by", "who captured it"),
                     ("source", "source"))


@dataclass
class _Group:
    n: int = 0
    files: set[str] = field(default_factory=set)
    sources: set[str] = field(default_factory=set)
    recorded: dict[str, int] = field(default_factory=dict)
    prompts: int = 0
    decoding: int = 0
    strategy: str = ""


@dataclass(frozen=True)
class ImportedSummary:
    rows: list[KV]
    """One row per kind: label, what is known."""
    total: int
    unstated: int
    """Outputs whose importer stated no kind (analyzed as free-form)."""
    missing: list[str]
    """"capture time not recorded for 3 of 10", ... (empty when every field was recorded)."""


def _provenance(rec: AttemptRecord) -> dict[str, Any]:
    raw = rec.result.raw_response if rec.result else None
    prov = raw.get("imported") if isinstance(raw, dict) else None
    return prov if isinstance(prov, dict) else {}


class ImportedTally:
    """The imported attempts' provenance, counted one record at a time (the report's one pass
    over the ledger feeds it; see :mod:`casekit.report.ledger_facts`)."""

    def __init__(self) -> None:
        self.groups: dict[str, _Group] = {}

    def add(self, r: AttemptRecord) -> None:
        a = r.attempt
        if not is_imported(a.strategy, a.strategy_key):
            return
        prov = _provenance(r)
        key = str(prov.get("kind")) if prov.get("kind_stated") else ""
        g = self.groups.setdefault(key, _Group(strategy=a.strategy))
        g.n += 1
        file = prov.get("file")
        if isinstance(file, dict) and file.get("name"):
            g.files.add(str(file["name"]))
        if prov.get("source"):
            g.sources.add(str(prov["source"]))
        for name, _ in PROVENANCE_FIELDS:
            g.recorded[name] = g.recorded.get(name, 0) + (prov.get(name) is not None)
        g.prompts += prov.get("prompt_recorded", True) is not False
        if r.result and isinstance(r.result.raw_request.get("decoding"), dict):
            g.decoding += 1

    def summary(self) -> ImportedSummary:
        return _summary(self.groups)


def build_imported(records: Iterable[LedgerRecord]) -> ImportedSummary:
    tally = ImportedTally()
    for r in records:
        if isinstance(r, AttemptRecord):
            tally.add(r)
    return tally.summary()


def _summary(groups: dict[str, _Group]) -> ImportedSummary:
    rows = []
    missing_total: dict[str, int] = {}
    for key in sorted(groups):
        g = groups[key]
        label = (C.IMPORTED_KIND.format(kind=key, strategy=g.strategy) if key
                 else C.IMPORTED_UNSTATED)
        known = [C.IMPORTED_FILES.format(n=f"{g.n:,}", files=", ".join(sorted(g.files)))]
        if g.sources:
            srcs = sorted(g.sources)
            known.append(C.IMPORTED_SOURCES.format(
                sources="; ".join(srcs[:5]) + ("; ..." if len(srcs) > 5 else "")))
        for name, what in PROVENANCE_FIELDS:
            lacking = g.n - g.recorded.get(name, 0)
            missing_total[what] = missing_total.get(what, 0) + lacking
            known.append(C.IMPORTED_FIELD.format(what=what, k=f"{g.recorded.get(name, 0):,}",
                                                 n=f"{g.n:,}"))
        missing_total["prompt"] = missing_total.get("prompt", 0) + g.n - g.prompts
        known.append(C.IMPORTED_FIELD.format(what="prompt", k=f"{g.prompts:,}", n=f"{g.n:,}"))
        known.append(C.IMPORTED_DECODING.format(k=f"{g.decoding:,}", n=f"{g.n:,}"))
        rows.append(KV(label, "; ".join(known)))
    total = sum(g.n for g in groups.values())
    missing = [C.IMPORTED_MISSING.format(what=what, k=f"{k:,}", n=f"{total:,}")
               for what, k in missing_total.items() if k]
    return ImportedSummary(rows=rows, total=total,
                           unstated=groups[""].n if "" in groups else 0, missing=missing)
