"""Disclosures (partials/disclosures.html.j2), each generated from the run's own records: the
inference runtime and quantization of every local model (what an opposing expert needs to
reproduce its numbers), whether a re-run was made, where the times come from and whether
anything was timestamped or signed, and who operated the run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from casekit.case import CaseFile
from casekit.records import Checkpoint, RunStart
from casekit.report import catalogue as C
from casekit.report.text import agree, counted
from casekit.report.views import KV

log = logging.getLogger(__name__)

#: Runtime settings of a local model that change its numbers (log-probs, top choices) and so
#: must be stated for anyone to reproduce them; recorded in its identity at run start.
NUMERIC_SETTINGS = ("n_ctx", "n_threads", "n_batch", "logits_all", "use_extra_bufts", "add_bos",
                    "chat_format", "chat_template_sha256", "seed")


@dataclass(frozen=True)
class Disclosures:
    runtimes: list[KV]
    no_runtime: str
    """What the runtime section says when no local model ran."""
    rerun: str
    time_source: str
    operator: str
    anchoring: list[str] = field(default_factory=list)
    """What signs and timestamps the ledger and this report, as far as the page can know:
    the examiner key (from the ledger), the checkpoints' RFC 3161 tokens (from the ledger), and
    whether ``casekit report`` applies a timestamp or a signature once the PDF is written."""


def _runtime(m_id: str, identity: dict[str, object], versions: dict[str, str | None]) -> KV:
    binding = identity.get("llama_cpp_python") or versions.get("llama-cpp-python")
    settings = ", ".join(f"{k} {identity[k]}" for k in NUMERIC_SETTINGS
                         if identity.get(k) is not None)
    value = C.DISCLOSE_RUNTIME.format(
        binding=binding or C.NOT_RECORDED, quant=identity.get("quantization") or C.NOT_RECORDED,
        gguf=identity.get("gguf_sha256") or C.NOT_RECORDED, settings=settings or C.NOT_RECORDED)
    note = C.DISCLOSE_EXTRA_BUFTS if "use_extra_bufts" in identity else ""
    return KV(m_id, value, note)


def anchoring_lines(anchor: tuple[str, str], checkpoints: list[Checkpoint],
                    timestamp_tsa: str | None, sign: bool) -> list[str]:
    """The signing and timestamping of the ledger and of this report, said as the page can
    know it at render time."""
    fp, anchored = anchor
    signed = bool(checkpoints) and fp not in (C.ANCHOR_NO_KEY, "")
    lines = [C.DISCLOSE_ANCHOR.format(fp=fp, anchored=anchored) if signed
             else C.DISCLOSE_NO_ANCHOR.format(anchored=anchored if fp != C.ANCHOR_NO_KEY
                                              else fp)]
    stamped = [c for c in checkpoints if c.timestamp]
    failed = sum(1 for c in checkpoints if c.timestamp_error)
    if stamped:
        lines.append(C.DISCLOSE_RUN_TSA.format(
            stamped=f"{len(stamped):,}", checkpoints=f"{len(checkpoints):,}",
            tsa=stamped[-1].tsa or C.NOT_RECORDED,
            errors=(C.DISCLOSE_RUN_TSA_ERRORS.format(n=counted(failed, "checkpoint"))
                    if failed else "")))
    else:
        lines.append(C.DISCLOSE_NO_RUN_TSA)
    lines.append(C.DISCLOSE_REPORT_TSA.format(tsa=timestamp_tsa) if timestamp_tsa
                 else C.DISCLOSE_NO_REPORT_TSA)
    lines.append(C.DISCLOSE_REPORT_SIGN if sign else C.DISCLOSE_NO_REPORT_SIGN)
    return lines


def build_disclosures(case: CaseFile, st: RunStart, server_dates: int,
                      rerun: bool, anchor: tuple[str, str] = ("", ""),
                      checkpoints: list[Checkpoint] | None = None,
                      timestamp_tsa: str | None = None, sign: bool = False) -> Disclosures:
    runtimes = [_runtime(m.model_id, m.identity, st.versions) for m in st.models
                if m.provider == "local"]
    time_source = C.DISCLOSE_TIME.format(
        server=C.DISCLOSE_SERVER_DATES.format(
            n=counted(server_dates, "response"), carry=agree(server_dates, "carries", "carry"))
        if server_dates else C.DISCLOSE_NO_SERVER_DATES)
    account = st.host.get("user", "")
    host = st.host.get("hostname", "")
    operator = (C.DISCLOSE_OPERATOR.format(operator=case.case.operator, account=account,
                                           host=host)
                if case.case.operator else
                C.DISCLOSE_NO_OPERATOR.format(account=account, host=host))
    if rerun:
        rerun_text = C.DISCLOSE_RERUN
    elif st.rerun_of:
        rerun_text = C.DISCLOSE_IS_RERUN.format(run=st.rerun_of.get("run_id", ""))
    elif not st.models and not st.planned_attempts:
        rerun_text = C.DISCLOSE_NO_RERUN_IMPORTED  # an evidence-only case
    else:
        rerun_text = C.DISCLOSE_NO_RERUN
    no_runtime = C.DISCLOSE_NO_LOCAL if st.models else C.DISCLOSE_NO_MODEL
    return Disclosures(runtimes=runtimes, no_runtime=no_runtime, rerun=rerun_text,
                       time_source=time_source,
                       operator=operator,
                       anchoring=anchoring_lines(anchor, checkpoints or [], timestamp_tsa, sign))
