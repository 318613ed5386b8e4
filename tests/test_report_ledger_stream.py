"""The report and verify hold the case's shape of the ledger, not its records (issue 14).

load_inputs reads the ledger once and keeps tallies and an index (casekit.report.ledger_facts);
the PDF embeds the ledger by streaming it into an incremental update (casekit.report.embed);
verify inflates it to a file in chunks (casekit.report.attachments.extract_attachment).
"""

from __future__ import annotations

import random
import threading
import tracemalloc
import zlib
from pathlib import Path

import pytest
from pypdf import PdfReader

from casekit.canonical import sha256_bytes
from casekit.errors import CasekitError
from casekit.ledger import read_records
from casekit.records import AttemptRecord
from casekit.report.ledger_facts import AttemptFacts, EffortGroup, _time_str
from tests.test_report_scale import make_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    return make_run(tmp_path_factory.mktemp("stream"), 150)


def test_load_inputs_keeps_no_attempt_record(run: tuple[Path, Path, object]) -> None:
    from casekit.report.inputs import load_inputs

    run_dir, _, findings = run
    ledger = run_dir / "ledger.jsonl"
    records = read_records(ledger)
    attempts = [r for r in records if isinstance(r, AttemptRecord)]
    assert len(attempts) >= 1_000
    # A first call imports what the pass needs (modules are not what is measured).
    load_inputs(run_dir, findings)  # type: ignore[arg-type]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        inputs = load_inputs(run_dir, findings)  # type: ignore[arg-type]
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # Holding the parsed records took several times the file's size; the tallies and the
    # index (a few bytes per record) are a small fraction of it.
    assert held < ledger.stat().st_size / 4, (held, ledger.stat().st_size)
    assert not any(isinstance(r, AttemptRecord) for r in inputs.ledger.run_records)
    assert inputs.ledger.attempts == len(attempts) and inputs.ledger.records == len(records)
    assert inputs.ledger_file.size == ledger.stat().st_size
    assert inputs.ledger_file.sha256 == sha256_bytes(ledger.read_bytes())
    # Records are read back on demand, the same as the verified ones.
    lookup = inputs.attempts_by_seq
    for rec in (attempts[0], attempts[len(attempts) // 2], attempts[-1]):
        assert lookup.get(rec.seq) == rec
    assert lookup.get(records[0].seq) is None  # run_start: not an attempt
    assert lookup.get(len(records) + 5) is None


def test_a_record_changed_after_the_pass_is_refused(run: tuple[Path, Path, object],
                                                    tmp_path: Path) -> None:
    from casekit.report.ledger_facts import read_ledger_facts

    run_dir, _, _ = run
    copy = tmp_path / "ledger.jsonl"
    copy.write_bytes((run_dir / "ledger.jsonl").read_bytes())
    facts, lookup = read_ledger_facts(copy)
    seq = next(s for s in range(facts.records) if s in lookup)
    data = bytearray(copy.read_bytes())
    at = data.index(b'"seq":%d' % seq)
    data[at - 2:at - 1] = b"X" if data[at - 2:at - 1] != b"X" else b"Y"
    copy.write_bytes(bytes(data))
    with pytest.raises(CasekitError, match="changed after the ledger was verified"):
        lookup.get(seq)


def test_the_embedded_ledger_is_an_incremental_update_of_the_exact_file(
        run: tuple[Path, Path, object], tmp_path: Path) -> None:
    from casekit.report import build_report
    from casekit.report.attachments import extract_attachment, read_attachments
    from casekit.report.verify import pdf_revisions

    run_dir, _, findings = run
    paths = build_report(run_dir, findings, out_dir=tmp_path / "out")  # type: ignore[arg-type]
    data = paths.pdf.read_bytes()
    ledger = (run_dir / "ledger.jsonl").read_bytes()
    assert data.count(b"%%EOF") == 2  # WeasyPrint's revision, then casekit's ledger update
    assert pdf_revisions(paths.pdf).count == 1  # ... which belongs to the rendering
    assert PdfReader(paths.pdf).attachments["ledger.jsonl"] == [ledger]
    assert "ledger.jsonl" not in read_attachments(paths.pdf, skip=("ledger.jsonl",))
    got = extract_attachment(paths.pdf, "ledger.jsonl", tmp_path / "x.jsonl",
                             keep_encoded=tmp_path / "x.deflate")
    assert got is not None and (tmp_path / "x.jsonl").read_bytes() == ledger
    assert (got.size, got.sha256) == (len(ledger), sha256_bytes(ledger))
    # casekit's stream is one whole zlib stream: kept, as it is in the file.
    encoded = (tmp_path / "x.deflate").read_bytes()
    assert got.encoded == tmp_path / "x.deflate" and zlib.decompress(encoded) == ledger
    assert data.count(encoded) == 1
    # The same inputs give the same bytes.
    again = build_report(run_dir, findings, out_dir=tmp_path / "again")  # type: ignore[arg-type]
    assert again.pdf.read_bytes() == data


def test_a_ledger_changed_while_the_report_is_written_is_refused(
        run: tuple[Path, Path, object], tmp_path: Path) -> None:
    import shutil

    from casekit.report.build import render_report
    from casekit.report.evidence import ReportOptions
    from casekit.report.inputs import load_inputs

    run_dir, case_path, findings = run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    inputs = load_inputs(copy, findings, case_path)  # type: ignore[arg-type]
    rendered = render_report(findings, inputs, ReportOptions(3))  # type: ignore[arg-type]
    ledger = copy / "ledger.jsonl"
    data = bytearray(ledger.read_bytes())
    data[100] ^= 1
    ledger.write_bytes(bytes(data))
    with pytest.raises(CasekitError, match="changed while the report was written"):
        rendered.write_pdf(tmp_path / "x.pdf")


def _pdf_attaching(pdf: Path, ledger: bytes) -> Path:
    """A one-page PDF written by pypdf with ``ledger`` attached as ledger.jsonl (stored
    unencoded)."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(100, 100)
    writer.add_attachment("ledger.jsonl", ledger)
    with open(pdf, "wb") as fh:
        writer.write(fh)
    return pdf


def test_extract_attachment_inflates_in_chunks_and_bounds_it(tmp_path: Path) -> None:
    from casekit.report import attachments
    from casekit.report.attachments import DamagedReport, extract_attachment

    data = b"".join(b'{"seq":%d,"text":"%s"}\n' % (i, b"x" * (i % 97)) for i in range(40_000))
    pdf = _pdf_attaching(tmp_path / "a.pdf", data)
    assert len(data) > 2 << 20  # several chunks
    got = extract_attachment(pdf, "ledger.jsonl", tmp_path / "out")
    assert got is not None and (tmp_path / "out").read_bytes() == data
    assert got.sha256 == sha256_bytes(data)
    assert extract_attachment(pdf, "nothing.json", tmp_path / "none") is None
    # A stream inflating beyond the limit is refused, not written out whole.
    bomb = zlib.compress(b"\0" * 50_000_000, 9)
    with pytest.raises(DamagedReport, match="inflates beyond"):
        for _ in attachments._inflated(_Raw(bomb), 10_000_000):
            pass


def test_only_one_whole_zlib_stream_is_kept_encoded(tmp_path: Path) -> None:
    # casekit verify embeds the PDF's own stream of the ledger in its fresh rendering only
    # when that stream is one complete zlib stream of the bytes extracted, nothing after it.
    from casekit.report import attachments

    data = b"".join(b'{"seq":%d}\n' % i for i in range(300_000))  # several 1 MiB chunks
    packed = zlib.compress(data, 6)
    for raw, whole in ((packed, True), (packed + b"trailing", False),
                       (packed + zlib.compress(b"more"), False), (packed[:-9], False)):
        got: list[bool] = []
        done: list[bytes] = []
        # Bytes after the stream's end once made the inflation loop forever: a hostile PDF
        # hung casekit verify. In a thread, so that a regression fails here instead.
        t = threading.Thread(target=lambda r=raw, g=got, d=done: d.append(
            b"".join(attachments._inflated(_Raw(r), 100_000_000, g))), daemon=True)
        t.start()
        t.join(60)
        assert done, "the inflation did not end"
        assert got == [whole], len(raw)
        assert (done[0] == data) is (raw[:len(packed)] == packed)

    pdf = _pdf_attaching(tmp_path / "a.pdf", data)
    # pypdf stores it unencoded: nothing to keep.
    got_file = attachments.extract_attachment(pdf, "ledger.jsonl", tmp_path / "out",
                                              keep_encoded=tmp_path / "enc")
    assert got_file is not None and got_file.encoded is None
    assert (tmp_path / "out").read_bytes() == data and not (tmp_path / "enc").exists()


class _Raw(dict):  # type: ignore[type-arg]
    """A FlateDecode stream as pypdf holds it (its encoded bytes in ``_data``)."""

    def __init__(self, raw: bytes) -> None:
        super().__init__({"/Filter": "/FlateDecode"})
        self._data = raw


def _old_first(keys: list[tuple[object, int]], hits: list[bool]) -> int | None:
    """The effort table's former computation: sort every record, find the first hit."""
    for i, (_, hit) in enumerate(sorted(zip(keys, hits, strict=True), key=lambda t: t[0]),
                                 start=1):
        if hit:
            return i
    return None


@pytest.mark.parametrize("seed", range(30))
def test_effort_group_places_the_first_hit_as_sorting_the_records_did(seed: int) -> None:
    rng = random.Random(seed)
    group = EffortGroup()
    plan: list[tuple[object, int]] = []
    time: list[tuple[object, int]] = []
    hits: list[bool] = []
    odd = seed % 3 == 0  # some groups hold a started_at in another form
    for seq in rng.sample(range(10_000), rng.randint(1, 60)):
        ordinal = rng.randint(0, 20)
        started = _time_str(rng.randint(26_01_01_00_00_00_000000, 26_01_01_00_00_59_999999))
        if odd and rng.random() < 0.2:
            started = started[:19] + rng.choice(["Z", "+00:00", ".5Z"])
        hit = rng.random() < 0.2
        if hit:
            group.hits.append(len(hits))  # as LedgerFacts.flag places it, after the pass
        group.add(_facts(seq, ordinal, started))
        plan.append(((ordinal, seq), 0))
        time.append(((started, seq), 0))
        hits.append(hit)
    assert group.first_in_plan() == _old_first(plan, hits)
    assert group.first_in_time() == _old_first(time, hits)


def _facts(seq: int, ordinal: int, started: str) -> AttemptFacts:
    return AttemptFacts(
        id=f"a{seq}", seq=seq, model_id="m", work_id="w", intent="benign", strategy="s",
        imported=False, ordinal=ordinal, status="ok", retried=False, recorded_at=started,
        started_at=started, completed_at=started, has_result=False, with_output=False,
        finish_reason=None, server_date=False, offers_tools=False, reports_tool_use=False,
        returned_model=None, system_fingerprint=None, dropped=False, tries=1, failed_tries=(),
        error=None, provenance=None)


def test_the_ledger_compressed_ahead_is_used_only_for_the_verified_bytes(tmp_path: Path) -> None:
    """The report compresses the ledger in a background thread; what it embeds is that copy
    only when it is of the very bytes verified (size, SHA-256, MD5), and the same bytes either
    way, so the PDF does not depend on whether the thread finished first."""
    import hashlib
    import io
    import time

    from casekit.report import embed
    from casekit.report.ledger_facts import LedgerFile

    path = tmp_path / "ledger.jsonl"
    data = bytes(random.Random(3).getrandbits(8) for _ in range(300_000)) * 8
    path.write_bytes(data)

    def source(b: bytes) -> LedgerFile:
        return LedgerFile(path, len(b), sha256_bytes(b), hashlib.md5(b).hexdigest())

    inline = io.BytesIO()
    embed._deflate(source(data), inline)
    with embed.deflating(path, tmp_path):
        t0 = time.monotonic()
        while embed._precompressed(source(data)) is None:
            assert time.monotonic() - t0 < 30, "the background compression never finished"
            time.sleep(0.01)
        ahead = io.BytesIO()
        n = embed._deflate(source(data), ahead)
        assert n == len(ahead.getvalue())
        assert ahead.getvalue() == inline.getvalue()
        assert zlib.decompress(ahead.getvalue()) == data
        # The file changed after it was compressed: the copy is not of the bytes verified now.
        changed = bytearray(data)
        changed[1000] ^= 1
        path.write_bytes(bytes(changed))
        assert embed._precompressed(source(bytes(changed))) is None
        again = io.BytesIO()
        embed._deflate(source(bytes(changed)), again)
        assert zlib.decompress(again.getvalue()) == bytes(changed)
        # The copy is of the bytes verified before the change: embedding it embeds them.
        kept = io.BytesIO()
        embed._deflate(source(data), kept)
        assert kept.getvalue() == inline.getvalue()
    # Without the copy, bytes that no longer hash as verified are refused.
    with pytest.raises(CasekitError, match="changed while the report was written"):
        embed._deflate(source(data), io.BytesIO())
    assert list(tmp_path.glob(".ledger-*")) == []  # the copy is removed


def test_leaving_early_stops_the_background_compression(tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """casekit verify starts compressing the ledger before its analysis; when it stops early
    (the findings differ), it does not wait for the rest of the file to be compressed."""
    import logging
    import os

    from casekit.report import embed

    path = tmp_path / "ledger.jsonl"
    path.write_bytes(os.urandom(64 << 20))  # incompressible: seconds of zlib, 64 chunks
    with caplog.at_level(logging.DEBUG, logger="casekit.report.embed"):
        with embed.deflating(path, tmp_path):
            pass  # the caller stops at once
    stopped = [r.getMessage() for r in caplog.records if "stopped after" in r.getMessage()]
    assert stopped, "the thread compressed the whole file after its caller had left"
    read = int(stopped[0].split("stopped after ")[1].split(" of ")[0])
    assert read < 64 << 20
    assert list(tmp_path.glob(".ledger-*")) == []
