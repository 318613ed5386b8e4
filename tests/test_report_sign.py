"""Optional proofs on a report, fully offline: an RFC 3161 timestamp of the manifest
(``casekit report --tsa``) and a PAdES signature (``--sign``), checked by ``casekit verify``.

The tests make their own certificate authority (a root, a TSA certificate with the critical
timeStamping extended key usage, a signer with a PKCS#12 file) and run a tiny timestamp
authority on 127.0.0.1 that answers TimeStampReq with real signed tokens (pyHanko's
DummyTimeStamper: a TSTInfo in CMS SignedData, signed with the TSA key).
"""

from __future__ import annotations

import re
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pypdf import PdfReader, PdfWriter

pytest.importorskip("rfc3161_client")
pytest.importorskip("pyhanko")

from asn1crypto import keys as asn1_keys  # noqa: E402
from asn1crypto import tsp  # noqa: E402
from asn1crypto import x509 as asn1_x509  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from cryptography.hazmat.primitives.serialization import pkcs12  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

from casekit.cli import cli  # noqa: E402
from tests.test_report import Fixture, build_fixture  # noqa: E402

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery"


# --------------------------------------------------------------------------- a test PKI


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "casekit tests")])


def _cert(subject: str, key: rsa.RSAPrivateKey, issuer: x509.Certificate | None,
          issuer_key: rsa.RSAPrivateKey, *, ca: bool = False,
          eku: x509.ObjectIdentifier | None = None) -> x509.Certificate:
    now = datetime.now(UTC)
    b = (x509.CertificateBuilder().subject_name(_name(subject))
         .issuer_name(issuer.subject if issuer else _name(subject))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                        critical=False))
    if issuer is not None:
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer_key.public_key()), critical=False)
    b = b.add_extension(x509.KeyUsage(
        digital_signature=not ca, content_commitment=not ca, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
        encipher_only=False, decipher_only=False), critical=True)
    if eku is not None:
        b = b.add_extension(x509.ExtendedKeyUsage([eku]), critical=True)
    return b.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@dataclass
class Pki:
    root_pem: Path
    other_root_pem: Path
    tsa_cert: x509.Certificate
    tsa_key: rsa.RSAPrivateKey
    p12: Path
    other_p12: Path


def _p12(path: Path, cn: str, issuer: x509.Certificate, issuer_key: rsa.RSAPrivateKey) -> Path:
    key = _key()
    cert = _cert(cn, key, issuer, issuer_key)
    path.write_bytes(pkcs12.serialize_key_and_certificates(
        b"signer", key, cert, [issuer],
        serialization.BestAvailableEncryption(PASSWORD.encode())))
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    root_key, other_key = _key(), _key()
    root = _cert("casekit test root", root_key, None, root_key, ca=True)
    other = _cert("someone else's root", other_key, None, other_key, ca=True)
    tsa_key = _key()
    tsa = _cert("casekit test TSA", tsa_key, root, root_key,
                eku=ExtendedKeyUsageOID.TIME_STAMPING)
    return Pki(root_pem=_pem(root, d / "root.pem"), other_root_pem=_pem(other, d / "other.pem"),
               tsa_cert=tsa, tsa_key=tsa_key,
               p12=_p12(d / "signer.p12", "Examiner", root, root_key),
               other_p12=_p12(d / "stranger.p12", "Stranger", other, other_key))


# --------------------------------------------------------------------------- a local TSA


class _Tsa(ThreadingHTTPServer):
    stamper: Any
    requests: list[bytes]


class _Handler(BaseHTTPRequestHandler):
    server: _Tsa

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests.append(body)
        if self.path == "/broken":
            self._answer(500, b"internal error", "text/plain")
            return
        if self.headers.get("Content-Type") != "application/timestamp-query":
            self._answer(415, b"", "text/plain")
            return
        req = tsp.TimeStampReq.load(body)
        if self.path == "/refuse":  # TimeStampResp ::= SEQUENCE { status, no token }
            status = tsp.PKIStatusInfo({"status": tsp.PKIStatus("rejection"),
                                        "status_string": ["policy says no"]}).dump()
            assert len(status) < 128
            self._answer(200, bytes([0x30, len(status)]) + status,
                         "application/timestamp-reply")
            return
        else:
            if self.path == "/replay":  # an answer to someone else's request
                req = tsp.TimeStampReq({"version": "v1",
                                        "message_imprint": req["message_imprint"],
                                        "nonce": 12345, "cert_req": True})
            resp = self.server.stamper.request_tsa_response(req)
        self._answer(200, resp.dump(), "application/timestamp-reply")

    def _answer(self, status: int, data: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def tsa(pki: Pki) -> Iterator[str]:
    from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper

    der = serialization.Encoding.DER
    server = _Tsa(("127.0.0.1", 0), _Handler)
    server.requests = []
    server.stamper = DummyTimeStamper(
        tsa_cert=asn1_x509.Certificate.load(pki.tsa_cert.public_bytes(der)),
        tsa_key=asn1_keys.PrivateKeyInfo.load(pki.tsa_key.private_bytes(
            der, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- the report


@dataclass
class Stamped:
    fx: Fixture
    plain: bytes
    """report.pdf as built without --tsa."""
    pdf: Path
    signed: Path
    output: str


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    res = CliRunner().invoke(cli, list(args), env=env)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.output


def _failed(output: str) -> list[str]:
    return [line.split(":")[0].removeprefix("FAILED").strip()
            for line in output.splitlines() if line.startswith("FAILED")]


@pytest.fixture(scope="module")
def stamped(tmp_path_factory: pytest.TempPathFactory, pki: Pki, tsa: str) -> Stamped:
    from casekit.report import build_report

    fx = build_fixture(tmp_path_factory.mktemp("sign"))
    # The same rendering as `casekit report --tsa --sign` before it stamps and signs: the
    # Disclosures page says a token and a signature are being applied (issue 16 item 7).
    plain = build_report(fx.run_dir, fx.findings, out_dir=tmp_path_factory.mktemp("plain"),
                         timestamp_tsa=tsa, sign=True)
    code, out = _run("report", str(fx.run_dir), "--tsa", tsa, "--sign", str(pki.p12),
                     "--sign-password-env", "CASEKIT_TEST_P12",
                     env={"CASEKIT_TEST_P12": PASSWORD})
    assert code == 0, out
    pdf = fx.run_dir / "report" / "report.pdf"
    return Stamped(fx=fx, plain=plain.pdf.read_bytes(), pdf=pdf,
                   signed=pdf.with_name("report.signed.pdf"), output=out)


def test_token_is_embedded_and_written_beside_the_pdf(stamped: Stamped) -> None:
    att = PdfReader(stamped.pdf).attachments
    assert sorted(att) == ["attempts.csv", "attempts.parquet", "case.json", "effort.csv",
                           "findings.json",
                           "ledger.jsonl", "manifest.json", "manifest.tsr"]
    token = att["manifest.tsr"][0]
    assert token == stamped.pdf.with_name("manifest.tsr").read_bytes()
    assert "timestamp:" in stamped.output and "signed:" in stamped.output
    # The token is an incremental update: the reproducible report's bytes come first, unchanged.
    assert stamped.pdf.read_bytes().startswith(stamped.plain)
    # Over SHA-256 of the attached manifest (also the manifest.json written beside the PDF).
    from rfc3161_client import decode_timestamp_response

    from casekit.canonical import sha256_bytes

    manifest = att["manifest.json"][0]
    assert manifest == stamped.pdf.with_name("manifest.json").read_bytes()
    imprint = decode_timestamp_response(token).tst_info.message_imprint.message
    assert "sha256:" + imprint.hex() == sha256_bytes(manifest)
    # A PDF/A-3 associated file, listed once, and the name tree stays sorted.
    root = PdfReader(stamped.pdf).trailer["/Root"]
    af = [ref.get_object()["/F"] for ref in root["/AF"]]
    assert sorted(af) == sorted(att)
    tree = root["/Names"]["/EmbeddedFiles"].get_object()["/Names"]
    assert list(tree[::2]) == sorted(att)


def test_verify_accepts_the_token_with_the_tsa_root(stamped: Stamped, pki: Pki) -> None:
    code, out = _run("verify", str(stamped.pdf), "--tsa-root", str(pki.root_pem))
    assert code == 0, out
    assert re.search(r"^ok +timestamp: .*chains to --tsa-root", out, re.M), out
    assert re.search(r"^ok +attachment hashes: .*manifest\.tsr", out, re.M), out
    assert "verified: every check passed" in out


def test_verify_without_a_root_says_the_signer_is_unverified(stamped: Stamped) -> None:
    code, out = _run("verify", str(stamped.pdf))
    assert code == 0, out
    assert "token valid" in out and "TSA not trusted: give --tsa-root" in out


def test_verify_rejects_the_token_with_another_root(stamped: Stamped, pki: Pki) -> None:
    code, out = _run("verify", str(stamped.pdf), "--tsa-root", str(pki.other_root_pem))
    assert code == 1, out
    assert _failed(out) == ["timestamp"], out


def test_altered_manifest_fails_the_timestamp(stamped: Stamped, pki: Pki,
                                              tmp_path: Path) -> None:
    from casekit.report.sign import check_token

    att = {k: v[0] for k, v in PdfReader(stamped.pdf).attachments.items()}
    altered = att["manifest.json"].replace(b'"casekit_version"', b'"casekit_versioN"', 1)
    assert altered != att["manifest.json"]
    tc = check_token(att["manifest.tsr"], altered, [])
    assert not tc.ok and not tc.trusted and "changed after it was timestamped" in tc.detail
    assert check_token(att["manifest.tsr"], att["manifest.json"], []).ok
    # The same, in a whole PDF: the pages and every attachment, the manifest edited.
    reader = PdfReader(stamped.pdf)
    writer = PdfWriter()
    for page in reader.pages:
        writer.add_page(page)
    for name, data in att.items():
        writer.add_attachment(name, altered if name == "manifest.json" else data)
    bad = tmp_path / "altered.pdf"
    with bad.open("wb") as fh:
        writer.write(fh)
    code, out = _run("verify", str(bad), "--tsa-root", str(pki.root_pem))
    assert code == 1, out
    assert "timestamp" in _failed(out), out
    assert "changed after it was timestamped" in out


# --------------------------------------------------------------------------- the signature


def test_signed_pdf_is_intact_and_trusted(stamped: Stamped, pki: Pki) -> None:
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko.sign.validation.status import SignatureCoverageLevel
    from pyhanko_certvalidator import ValidationContext

    # report.pdf is kept; the signature is an incremental update over its bytes.
    assert stamped.signed.read_bytes().startswith(stamped.pdf.read_bytes())
    root = asn1_x509.Certificate.load(x509.load_pem_x509_certificate(
        pki.root_pem.read_bytes()).public_bytes(serialization.Encoding.DER))
    with stamped.signed.open("rb") as fh:
        sigs = PdfFileReader(fh).embedded_signatures
        assert len(sigs) == 1
        assert sigs[0].sig_object["/SubFilter"] == "/ETSI.CAdES.detached"  # PAdES
        st = validate_pdf_signature(sigs[0], ValidationContext(trust_roots=[root],
                                                               allow_fetching=False))
        assert st.intact and st.valid and st.trusted, st.pretty_print_details()
        assert st.coverage == SignatureCoverageLevel.ENTIRE_FILE


def test_verify_passes_on_the_signed_pdf(stamped: Stamped, pki: Pki) -> None:
    code, out = _run("verify", str(stamped.signed), "--sign-root", str(pki.root_pem),
                     "--tsa-root", str(pki.root_pem))
    assert code == 0, out
    for name in ("attachments", "attachment hashes", "ledger chain", "findings recomputed",
                 "numbers in the report", "timestamp", "signature"):
        assert re.search(rf"^ok +{name}: ", out, re.M), (name, out)
    assert "intact=yes, valid=yes, trusted=yes, covers the whole file" in out
    code, out = _run("verify", str(stamped.signed))
    assert code == 0, out
    assert "signer not verified: give --sign-root" in out


def test_signature_from_another_root_is_not_trusted(stamped: Stamped, pki: Pki) -> None:
    code, out = _run("verify", str(stamped.signed), "--sign-root", str(pki.other_root_pem))
    assert code == 1, out
    assert _failed(out) == ["signature"], out
    assert "does not chain to --sign-root" in out


def test_one_byte_edit_after_signing_fails(stamped: Stamped, tmp_path: Path) -> None:
    raw = bytearray(stamped.signed.read_bytes())
    at = raw.index(b"RFC 3161 timestamp response")  # the token's description, signed
    raw[at + 6] ^= 0x01  # "3161" -> "3061"
    bad = tmp_path / "edited.signed.pdf"
    bad.write_bytes(bytes(raw))
    code, out = _run("verify", str(bad))
    assert code == 1, out
    assert "signature" in _failed(out), out
    assert "intact=NO" in out


def test_signing_keeps_report_pdf_and_needs_the_password(stamped: Stamped, pki: Pki,
                                                        tmp_path: Path) -> None:
    from casekit.report.sign import SignError, sign_report

    copy = tmp_path / "report.pdf"
    shutil.copyfile(stamped.pdf, copy)
    before = copy.read_bytes()
    out = sign_report(copy, pki.other_p12, PASSWORD.encode())
    assert out == tmp_path / "report.signed.pdf" and copy.read_bytes() == before
    with pytest.raises(SignError, match="cannot load the key"):
        sign_report(copy, pki.p12, b"wrong password")
    code, text = _run("report", str(stamped.fx.run_dir), "--sign", str(pki.p12),
                      "--sign-password-env", "CASEKIT_TEST_UNSET_VARIABLE")
    assert code == 2 and text.strip().count("\n") == 0, text
    assert "CASEKIT_TEST_UNSET_VARIABLE" in text


# --------------------------------------------------------------------------- TSA failures


def test_unreachable_or_failing_tsa_is_one_line_exit_2(stamped: Stamped, tsa: str,
                                                       tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import casekit.cli as cli_module
    from casekit.report.sign import SignError, request_timestamp

    with pytest.raises(SignError, match="unreachable"):
        request_timestamp(b"manifest", f"http://127.0.0.1:{_closed_port()}/", timeout=2)
    with pytest.raises(SignError, match="HTTP 500"):
        request_timestamp(b"manifest", tsa + "/broken")
    with pytest.raises(SignError, match="refused the request.*policy says no"):
        request_timestamp(b"manifest", tsa + "/refuse")
    with pytest.raises(SignError, match="another nonce"):
        request_timestamp(b"manifest", tsa + "/replay")

    plain = tmp_path / "plain" / "report.pdf"
    plain.parent.mkdir()
    plain.write_bytes(stamped.plain)
    monkeypatch.setattr(cli_module, "_report", lambda *a, **k: plain)
    code, out = _run("report", str(stamped.fx.run_dir), "--tsa",
                     f"http://127.0.0.1:{_closed_port()}/", "--tsa-timeout", "2")
    assert code == 2, out
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: timestamp authority"), out
    assert plain.read_bytes() == stamped.plain  # nothing embedded
    assert not plain.with_name("manifest.tsr").exists()


# --------------------------------------------------------------------------- manifest.tsr alone


def _beside(stamped: Stamped, tmp_path: Path, *, manifest: bytes | None = None,
            token: bytes | None = None) -> Path:
    """A copy of the run's report folder (and its ledger) with the token and manifest, either
    replaced; returns the token's path."""
    run = tmp_path / "run"
    (run / "report").mkdir(parents=True)
    shutil.copyfile(stamped.fx.run_dir / "ledger.jsonl", run / "ledger.jsonl")
    src = stamped.pdf.parent
    shutil.copyfile(src / "report.pdf", run / "report" / "report.pdf")
    (run / "report" / "manifest.json").write_bytes(
        manifest if manifest is not None else (src / "manifest.json").read_bytes())
    tsr = run / "report" / "manifest.tsr"
    tsr.write_bytes(token if token is not None else (src / "manifest.tsr").read_bytes())
    return tsr


def test_verify_the_token_file_against_the_tsa_root(stamped: Stamped, pki: Pki) -> None:
    token = stamped.pdf.with_name("manifest.tsr")
    code, out = _run("verify", str(token), "--tsa-root", str(pki.root_pem))
    assert code == 0, out
    assert re.search(r"^ok +timestamp: the manifest manifest\.json \(sha256:[0-9a-f]{64}\) "
                     r"existed at .*chains to --tsa-root", out, re.M), out
    assert re.search(r"^ok +report\.pdf: .* carries this manifest and this token$", out,
                     re.M), out
    assert re.search(r"^ok +ledger: .* is the ledger the manifest names", out, re.M), out
    assert "verified: every check passed" in out
    manifest = stamped.pdf.with_name("manifest.json").read_bytes()
    import json

    head = json.loads(manifest)["ledger"]["head_hash"]
    assert f"ledger head named by the manifest: {head}" in out


def test_the_token_file_without_a_root_is_valid_but_untrusted(stamped: Stamped) -> None:
    code, out = _run("verify", str(stamped.pdf.with_name("manifest.tsr")))
    assert code == 0, out
    assert "token valid" in out and "TSA not trusted: give --tsa-root" in out
    assert re.search(r"signed by [^;]*casekit test TSA", out), out  # the token's own signer


def test_the_token_file_fails_against_another_root(stamped: Stamped, pki: Pki) -> None:
    code, out = _run("verify", str(stamped.pdf.with_name("manifest.tsr")),
                     "--tsa-root", str(pki.other_root_pem))
    assert code == 1, out
    assert _failed(out) == ["timestamp"], out


def test_the_token_file_fails_on_an_edited_manifest(stamped: Stamped, pki: Pki,
                                                   tmp_path: Path) -> None:
    manifest = stamped.pdf.with_name("manifest.json").read_bytes()
    edited = manifest.replace(b'"casekit_version"', b'"casekit_versioN"', 1)
    tsr = _beside(stamped, tmp_path, manifest=edited)
    code, out = _run("verify", str(tsr), "--tsa-root", str(pki.root_pem))
    assert code == 1, out
    assert _failed(out) == ["timestamp", "report.pdf"], out
    assert "changed after it was timestamped" in out
    # --manifest names the manifest the token is over, wherever it lies.
    good = tmp_path / "elsewhere.json"
    good.write_bytes(manifest)
    code, out = _run("verify", str(tsr), "--manifest", str(good), "--tsa-root",
                     str(pki.root_pem))
    assert re.search(r"^ok +timestamp: the manifest elsewhere\.json", out, re.M), out


def test_a_token_with_a_broken_signature_fails_even_without_a_root(stamped: Stamped,
                                                                  tmp_path: Path) -> None:
    raw = bytearray(stamped.pdf.with_name("manifest.tsr").read_bytes())
    raw[-1] ^= 0x01  # the last byte of the signer's signature value
    tsr = _beside(stamped, tmp_path, token=bytes(raw))
    code, out = _run("verify", str(tsr))
    assert code == 1, out
    assert "timestamp" in _failed(out), out
    assert "does not verify with the certificate it carries" in out


def test_token_file_input_errors_are_one_line_exit_2(stamped: Stamped, tmp_path: Path) -> None:
    lone = tmp_path / "lone" / "manifest.tsr"
    lone.parent.mkdir()
    shutil.copyfile(stamped.pdf.with_name("manifest.tsr"), lone)
    code, out = _run("verify", str(lone))
    assert code == 2 and out.strip().count("\n") == 0, out
    assert "give it with --manifest" in out
    code, out = _run("verify", str(stamped.pdf), "--manifest", str(lone))
    assert code == 2 and "--manifest goes with a manifest.tsr" in out, out


# --------------------------------------------------------------------------- bytes vs revisions


def test_verify_explains_bytes_of_a_timestamped_or_signed_pdf(stamped: Stamped,
                                                             pki: Pki) -> None:
    from casekit.report.verify import bytes_verdict, pdf_revisions

    plain, stamped_bytes = stamped.plain, stamped.pdf.read_bytes()
    signed = stamped.signed.read_bytes()
    assert bytes_verdict(plain, plain) == "the PDF is byte-identical to a fresh rendering"
    revs = pdf_revisions(stamped_bytes)
    assert revs.count == 2 and revs.first_end == len(plain)
    assert "an attached file" in revs.added[0]
    text = bytes_verdict(stamped_bytes, plain)
    assert text.startswith("its first revision (as rendered) is byte-identical")
    assert "WeasyPrint" not in text
    sig_revs = pdf_revisions(signed)
    assert sig_revs.count == 3 and "a signature" in sig_revs.added[1]
    # The rendered revision itself differs (as another WeasyPrint would make it): said so.
    other = plain.replace(b"%\xf0\x9f\x96\xa4", b"%\xf0\x9f\x96\xa5", 1)  # header comment
    assert other != plain
    assert "another WeasyPrint" in bytes_verdict(other, plain)
    assert "another WeasyPrint" in bytes_verdict(stamped_bytes, other)
    # And through the command: the signed PDF's text is reproduced, its bytes explained.
    code, out = _run("verify", str(stamped.signed), "--sign-root", str(pki.root_pem))
    assert code == 0, out
    assert any(x.startswith("ok     numbers in the report") for x in out.splitlines())
    line = next(x for x in out.splitlines() if x.startswith("ok     rendering"))
    assert "first revision (as rendered) is byte-identical to a fresh rendering" in line
    assert "2 incremental updates after rendering add" in line and "a signature" in line


# --------------------------------------------------------------------------- PAdES B-T


def test_signature_carries_a_timestamp_from_the_same_tsa(stamped: Stamped, pki: Pki) -> None:
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    root = asn1_x509.Certificate.load(x509.load_pem_x509_certificate(
        pki.root_pem.read_bytes()).public_bytes(serialization.Encoding.DER))
    tsa_der = pki.tsa_cert.public_bytes(serialization.Encoding.DER)
    with stamped.signed.open("rb") as fh:
        sig = PdfFileReader(fh).embedded_signatures[0]
        unsigned = sig.signer_info["unsigned_attrs"]
        kinds = [a["type"].native for a in unsigned]
        assert "signature_time_stamp_token" in kinds  # PAdES B-T
        ctx = ValidationContext(trust_roots=[root], allow_fetching=False)
        st = validate_pdf_signature(sig, ctx, ts_validation_context=ctx)
        ts = st.timestamp_validity
        assert ts is not None and ts.intact and ts.valid and ts.trusted
        assert ts.signing_cert.dump() == tsa_der  # the same TSA as the manifest's token
    code, out = _run("verify", str(stamped.signed), "--sign-root", str(pki.root_pem))
    assert code == 0, out
    assert re.search(r"^ok +signature: .*signature timestamp \(PAdES B-T\) \S+ trusted", out,
                     re.M), out
    # A TSA root that is not the timestamp's: the signature check fails and says why.
    code, out = _run("verify", str(stamped.signed), "--sign-root", str(pki.root_pem),
                     "--tsa-root", str(pki.other_root_pem))
    assert code == 1 and "signature" in _failed(out), out
    assert "signature timestamp (PAdES B-T)" in out and "NOT trusted" in out


def test_sign_without_tsa_is_baseline_b(stamped: Stamped, pki: Pki, tmp_path: Path) -> None:
    from casekit.report.sign import sign_report

    copy = tmp_path / "report.pdf"
    shutil.copyfile(stamped.pdf, copy)
    out = sign_report(copy, pki.p12, PASSWORD.encode())
    code, text = _run("verify", str(out), "--sign-root", str(pki.root_pem))
    assert code == 0, text
    assert "no signature timestamp (PAdES B-B)" in text


def test_a_failing_tsa_while_signing_is_one_line(stamped: Stamped, pki: Pki, tsa: str,
                                                 tmp_path: Path) -> None:
    from casekit.report.sign import SignError, sign_report

    copy = tmp_path / "report.pdf"
    shutil.copyfile(stamped.pdf, copy)
    with pytest.raises(SignError, match="HTTP 500"):
        sign_report(copy, pki.p12, PASSWORD.encode(), tsa_url=tsa + "/broken")
    with pytest.raises(SignError, match="did not timestamp the signature"):
        sign_report(copy, pki.p12, PASSWORD.encode(), tsa_url=tsa + "/refuse")
    assert not copy.with_name("report.signed.pdf").exists()
