"""casekit verify's checks of the attached per-attempt table, made beside its analysis.

verify must show that the attached attempts.parquet holds the rows the recomputed findings cite
(the content hash of its rows) and that the attached attempts.csv is that table's CSV. Neither
needs the recomputed findings until the two digests are compared, and both take seconds at a
matter's size (8 s of CPU at 500,000 attempts: every row canonicalized and hashed, 280 MB of CSV
written and hashed). So :class:`TableCheck` makes them in a process of its own, started before
the analysis at a lower scheduling priority (``nice``): it runs on what the analysis leaves
idle (its serial start and tail, the parent's waits) and yields the cores to the analysis'
workers otherwise. The process is spawned, not forked: it imports pyarrow, whose thread pools
do not survive a fork, and it must not inherit the analysis' state.

Its result is the same as :func:`table_facts` made in the caller's process, which is also the
fallback when the process fails (tests/test_report_table.py checks both).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from casekit.report.inputs import CSV_NAME, ScratchFile, hashed_csv

log = logging.getLogger(__name__)

NICENESS = 10
"""How much lower the background check's scheduling priority is than verify's."""
BACKGROUND_MIN_BYTES = 1 << 20
"""Tables smaller than this (about 18,000 rows) are checked in verify's own process when the
result is asked for: a spawned process costs more (some 0.7 s of CPU to start Python and import
pyarrow, taken from the analysis' workers) than such a table's check (0.1 s at 5,000 rows)."""


@dataclass
class TableFacts:
    """What verify compares of the attached table: its rows' count and content hash, and the
    CSV made from it (a file, with its size and hashes)."""

    rows: int
    sha256: str
    csv: ScratchFile


def table_facts(table: Path, folder: tempfile.TemporaryDirectory[str] | None = None,
                ) -> TableFacts:
    """The table's facts, in this process. Raises TableError or ValueError when it does not
    read."""
    from casekit.analysis.attempt_table import table_digest

    digest = table_digest(table)
    folder = folder or tempfile.TemporaryDirectory(prefix="casekit-csv-")
    size, sha, md5 = hashed_csv(table, Path(folder.name) / CSV_NAME)
    return TableFacts(digest.rows, digest.sha256,
                      ScratchFile(path=Path(folder.name) / CSV_NAME, size=size, sha256=sha,
                                  md5=md5, folder=folder))


def _work(table: str, folder: str, out: Any) -> None:
    """The background process: the facts, sent as plain values (or why they could not be
    made)."""
    from casekit.analysis.attempt_table import TableError, table_digest

    try:
        os.nice(NICENESS)
    except OSError:  # pragma: no cover - a platform without nice: run at the same priority
        pass
    try:
        digest = table_digest(Path(table))
        size, sha, md5 = hashed_csv(Path(table), Path(folder) / CSV_NAME)
        out.send(("ok", digest.rows, digest.sha256, size, sha, md5))
    except (TableError, ValueError) as exc:
        out.send(("unreadable", str(exc)))
    except Exception as exc:  # noqa: BLE001 - the caller makes the facts itself
        out.send(("failed", f"{type(exc).__name__}: {exc}"))
    finally:
        out.close()


class TableCheck:
    """:func:`table_facts` of ``table``, made in a background process started now; :meth:`result`
    waits for it. Use as a context manager: leaving stops the process if it still runs.
    ``background``: whether to start that process (default: for a table of at least
    :data:`BACKGROUND_MIN_BYTES`; a smaller one is checked here by :meth:`result`)."""

    def __init__(self, table: Path, background: bool | None = None) -> None:
        self.table = table
        self._folder = tempfile.TemporaryDirectory(prefix="casekit-csv-")
        if background is None:
            background = table.stat().st_size >= BACKGROUND_MIN_BYTES
        self._proc: Any = None
        if not background:
            return
        ctx = mp.get_context("spawn")
        self._recv, send = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_work, args=(str(table), self._folder.name, send),
                                 name="casekit-verify-table", daemon=True)
        self._proc.start()
        send.close()

    def __enter__(self) -> TableCheck:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def result(self) -> TableFacts:
        """The facts; raises TableError or ValueError (as :func:`table_facts` does) when the
        table does not read. If the process failed, they are made here."""
        from casekit.analysis.attempt_table import TableError

        if self._proc is None:
            return table_facts(self.table, self._folder)
        try:
            msg = self._recv.recv()
        except EOFError:  # it died before sending
            self._proc.join(5)
            msg = ("failed", f"the process ended with exit code {self._proc.exitcode}")
        self._proc.join(5)
        if msg[0] == "ok":
            _, rows, sha256, size, sha, md5 = msg
            return TableFacts(rows, sha256, ScratchFile(
                path=Path(self._folder.name) / CSV_NAME, size=size, sha256=sha, md5=md5,
                folder=self._folder))
        if msg[0] == "unreadable":
            raise TableError(msg[1])
        log.warning("checking %s in the background failed (%s); checking it here", self.table,
                    msg[1])
        return table_facts(self.table, self._folder)

    def close(self) -> None:
        if self._proc is None:
            return
        if self._proc.is_alive():
            self._proc.terminate()
        self._proc.join(5)
        self._recv.close()
