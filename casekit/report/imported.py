"""What is known about how imported outputs were obtained (``casekit import``): per kind, how
many, from which files and sources, and which provenance the source recorded. Shown in Methods
(partials/methods.html.j2) and summed up in Limitations.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from casekit.records import AttemptRecord, is_imported
from casekit.report import catalogue as C
from casekit.report.text import counted, some
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
    first: str = ""
    last: str = ""
    """The earliest and latest capture time recorded (UTC), "" when none was."""


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


class ImportedFacts(NamedTuple):
    """What the tally reads of one imported attempt record (:func:`imported_facts`)."""

    kind: str
    """The kind its importer stated ("" when none was)."""
    strategy: str
    file: str | None
    source: str | None
    recorded: tuple[bool, ...]
    """Per :data:`PROVENANCE_FIELDS`: whether the source recorded it."""
    prompt: bool
    decoding: bool
    captured_at_utc: str | None
    """The capture time the source recorded, in UTC (None when it recorded none)."""


def imported_facts(r: AttemptRecord) -> ImportedFacts | None:
    """The provenance facts of an imported attempt record; None for casekit's own."""
    a = r.attempt
    if not is_imported(a.strategy, a.strategy_key):
        return None
    prov = _provenance(r)
    file = prov.get("file")
    return ImportedFacts(
        kind=str(prov.get("kind")) if prov.get("kind_stated") else "", strategy=a.strategy,
        file=str(file["name"]) if isinstance(file, dict) and file.get("name") else None,
        source=str(prov["source"]) if prov.get("source") else None,
        recorded=tuple(prov.get(name) is not None for name, _ in PROVENANCE_FIELDS),
        prompt=prov.get("prompt_recorded", True) is not False,
        decoding=bool(r.result and isinstance(r.result.raw_request.get("decoding"), dict)),
        captured_at_utc=str(prov["captured_at_utc"]) if prov.get("captured_at") is not None
        and prov.get("captured_at_utc") else None)


class ImportedTally:
    """The imported attempts' provenance, counted one record at a time (the report's one pass
    over the ledger feeds it; see :mod:`casekit.report.ledger_facts`)."""

    def __init__(self) -> None:
        self.groups: dict[str, _Group] = {}

    def add(self, f: ImportedFacts) -> None:
        g = self.groups.setdefault(f.kind, _Group(strategy=f.strategy))
        g.n += 1
        if f.file is not None:
            g.files.add(f.file)
        if f.source is not None:
            g.sources.add(f.source)
        for (name, _), recorded in zip(PROVENANCE_FIELDS, f.recorded, strict=True):
            g.recorded[name] = g.recorded.get(name, 0) + recorded
        g.prompts += f.prompt
        g.decoding += f.decoding
        if f.captured_at_utc is not None:
            g.first = min(g.first, f.captured_at_utc) if g.first else f.captured_at_utc
            g.last = max(g.last, f.captured_at_utc)

    def summary(self) -> ImportedSummary:
        return _summary(self.groups)


def _summary(groups: dict[str, _Group]) -> ImportedSummary:
    rows = []
    missing_total: dict[str, int] = {}
    for key in sorted(groups):
        g = groups[key]
        label = (C.IMPORTED_KIND.format(kind=key, strategy=g.strategy) if key
                 else C.IMPORTED_UNSTATED)
        known = [C.IMPORTED_FILES.format(n=counted(g.n, "output"),
                                         files=", ".join(sorted(g.files)))]
        if g.sources:
            srcs = sorted(g.sources)
            known.append(C.IMPORTED_SOURCES.format(
                sources=some(srcs, 5, sep="; ")))
        if g.first:
            first, last = g.first[:19] + "Z", g.last[:19] + "Z"  # to the second
            known.append(C.IMPORTED_WINDOW.format(first=first, last=last)
                         if first != last else C.IMPORTED_AT.format(at=first))
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
