"""Optional proofs on top of a report: an RFC 3161 timestamp of its manifest and a PAdES signature.

Both are incremental updates after the reproducible bytes, so that a timestamped or signed
report still re-renders byte for byte (its first revision). The token is over the exact
manifest.json bytes attached to the PDF. Usage and what ``casekit verify`` checks: docs/report.md.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from casekit.tsa import (
    DEFAULT_TSA_TIMEOUT,
    SHA256_OID,
    TSR_MEDIA_TYPE,
    SignError,
    Timestamp,
    check_timestamp_response,
    missing_extra,
    post_timestamp_query,
    request_timestamp,
)

TOKEN_ATTACHMENT = "manifest.tsr"
TOKEN_NAME = "manifest.tsr"
SIGNED_PDF_NAME = "report.signed.pdf"
SIGNATURE_FIELD = "casekit-signature"
#: Re-exported: the RFC 3161 client lives in casekit.tsa (a run's checkpoints use it too).
__all__ = ["DEFAULT_TSA_TIMEOUT", "SHA256_OID", "TSR_MEDIA_TYPE", "SignError", "Timestamp",
           "check_timestamp_response", "missing_extra", "request_timestamp"]


def _pdf_date(when: datetime) -> str:
    utc = when.astimezone(UTC) if when.tzinfo else when
    return "D:" + utc.strftime("%Y%m%d%H%M%S") + "Z"


def embed_token(pdf: Path, ts: Timestamp) -> None:
    """Add ``manifest.tsr`` to ``pdf`` (in place) as an incremental update: a PDF/A-3
    associated file (AFRelationship ``Supplement``), kept in the sorted EmbeddedFiles tree."""
    try:
        from pyhanko.pdf_utils import generic
        from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    except ImportError as exc:
        raise missing_extra(exc) from None

    original = pdf.read_bytes()
    w = IncrementalPdfFileWriter(io.BytesIO(original), strict=False)
    root = w.root
    stamp = generic.TextStringObject(_pdf_date(ts.gen_time))
    ef = generic.StreamObject({
        generic.NameObject("/Type"): generic.NameObject("/EmbeddedFile"),
        generic.NameObject("/Subtype"): generic.NameObject("/" + TSR_MEDIA_TYPE),
        generic.NameObject("/Params"): generic.DictionaryObject({
            generic.NameObject("/Size"): generic.NumberObject(len(ts.response)),
            generic.NameObject("/CreationDate"): stamp,
            generic.NameObject("/ModDate"): stamp,
        }),
    }, stream_data=ts.response)
    ef.compress()
    ef_ref = w.add_object(ef)
    spec = generic.DictionaryObject({
        generic.NameObject("/Type"): generic.NameObject("/Filespec"),
        generic.NameObject("/F"): generic.TextStringObject(TOKEN_ATTACHMENT),
        generic.NameObject("/UF"): generic.TextStringObject(TOKEN_ATTACHMENT),
        generic.NameObject("/Desc"): generic.TextStringObject(
            "RFC 3161 timestamp response over the SHA-256 of manifest.json"),
        generic.NameObject("/AFRelationship"): generic.NameObject("/Supplement"),
        generic.NameObject("/EF"): generic.DictionaryObject({
            generic.NameObject("/F"): ef_ref, generic.NameObject("/UF"): ef_ref}),
    })
    spec_ref = w.add_object(spec)

    if "/Names" not in root:
        root["/Names"] = w.add_object(generic.DictionaryObject())
    names = root["/Names"]
    if "/EmbeddedFiles" not in names:
        names["/EmbeddedFiles"] = w.add_object(generic.DictionaryObject())
    tree = names["/EmbeddedFiles"]
    if "/Kids" in tree:
        raise SignError(f"{pdf}: its EmbeddedFiles name tree has /Kids; not a casekit report")
    arr = tree["/Names"] if "/Names" in tree else None
    pairs: list[tuple[Any, Any]] = []
    if arr is not None:
        pairs = [(arr[i], arr.raw_get(i + 1)) for i in range(0, len(arr), 2)]
    if any(str(k) == TOKEN_ATTACHMENT for k, _ in pairs):
        raise SignError(f"{pdf} already holds a {TOKEN_ATTACHMENT}")
    pairs.append((generic.TextStringObject(TOKEN_ATTACHMENT), spec_ref))
    pairs.sort(key=lambda p: str(p[0]).encode("utf-8"))
    new_arr = generic.ArrayObject([x for pair in pairs for x in pair])
    tree["/Names"] = new_arr
    _touch(w, names)
    _touch(w, tree)

    af = root["/AF"] if "/AF" in root else None
    af_arr = generic.ArrayObject(list(af.raw_get(i) for i in range(len(af))) if af else [])
    af_arr.append(spec_ref)
    root["/AF"] = af_arr
    w.update_root()

    out = io.BytesIO()
    w.write(out)
    tmp = pdf.with_name(pdf.name + ".tmp")
    tmp.write_bytes(out.getvalue())
    tmp.replace(pdf)


def _touch(w: Any, obj: Any) -> None:
    """Mark a (possibly indirect) container as changed in the incremental update."""
    if getattr(obj, "container_ref", None) is not None:
        w.update_container(obj)


def timestamp_report(pdf: Path, url: str, *, timeout: float = DEFAULT_TSA_TIMEOUT) -> Path:
    """Timestamp the manifest attached to ``pdf``, embed the token, write it beside the PDF.
    Returns the path of ``manifest.tsr``."""
    from casekit.report.attachments import read_attachments
    from casekit.report.evidence import MANIFEST_ATTACHMENT, STREAMED_ATTACHMENTS

    manifest = read_attachments(pdf, skip=STREAMED_ATTACHMENTS).get(MANIFEST_ATTACHMENT)
    if manifest is None:
        raise SignError(f"{pdf} holds no manifest.json to timestamp")
    ts = request_timestamp(manifest, url, timeout=timeout)
    embed_token(pdf, ts)
    out = pdf.with_name(TOKEN_NAME)
    out.write_bytes(ts.response)
    return out


# --------------------------------------------------------------------------- PAdES


def _http_timestamper(url: str, timeout: float) -> Any:
    """A pyHanko TimeStamper that posts its requests to ``url`` with httpx (pyHanko's own HTTP
    client needs ``requests``, which casekit does not depend on)."""
    from asn1crypto import tsp
    from pyhanko.sign.timestamps.api import TimeStamper

    class HttpxTimeStamper(TimeStamper):  # type: ignore[misc]
        async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> tsp.TimeStampResp:
            return tsp.TimeStampResp.load(post_timestamp_query(url, req.dump(), timeout))

    return HttpxTimeStamper()


def sign_report(pdf: Path, pkcs12: Path, password: bytes | None = None,
                out: Path | None = None, *, tsa_url: str | None = None,
                tsa_timeout: float = DEFAULT_TSA_TIMEOUT) -> Path:
    """Sign ``pdf`` with the key and certificate in ``pkcs12`` (incremental update) into ``out``
    (default ``report.signed.pdf`` beside it); ``pdf`` is not changed.

    PAdES baseline B; with ``tsa_url``, baseline B-T: the TSA timestamps the signature value
    and the token goes into the signature's unsigned attributes, so the signing time no longer
    rests on the signer's clock."""
    try:
        from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
        from pyhanko.sign import fields, signers
    except ImportError as exc:
        raise missing_extra(exc) from None

    try:
        data = pkcs12.read_bytes()
    except OSError as exc:
        raise SignError(f"{pkcs12}: cannot read the PKCS#12 file ({exc.strerror})") from None
    try:
        signer = signers.SimpleSigner.load_pkcs12_data(data, other_certs=[],
                                                       passphrase=password)
    except (ValueError, TypeError) as exc:
        raise SignError(f"{pkcs12}: cannot load the key and certificate ({exc}); check the "
                        "file and --sign-password-env") from None
    if signer is None:
        raise SignError(f"{pkcs12}: cannot load the key and certificate; check the file and "
                        "--sign-password-env")
    target = out or pdf.with_name(SIGNED_PDF_NAME)
    meta = signers.PdfSignatureMetadata(field_name=SIGNATURE_FIELD,
                                        subfilter=fields.SigSeedSubFilter.PADES,
                                        reason="casekit report: certified copy",
                                        md_algorithm="sha256")
    timestamper = _http_timestamper(tsa_url, tsa_timeout) if tsa_url else None
    buf = io.BytesIO()
    w = IncrementalPdfFileWriter(io.BytesIO(pdf.read_bytes()), strict=False)
    try:
        signers.sign_pdf(w, meta, signer=signer, timestamper=timestamper, output=buf)
    except SignError:
        raise
    except Exception as exc:
        if timestamper is None:
            raise
        # pyHanko's TimestampRequestError and friends: the TSA's answer was unusable.
        raise SignError(f"timestamp authority {tsa_url} did not timestamp the signature "
                        f"({type(exc).__name__}: {str(exc)[:160]}); check --tsa") from None
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(target)
    return target


def password_from_env(var: str | None) -> bytes | None:
    if var is None:
        return None
    value = os.environ.get(var)
    if value is None:
        raise SignError(f"--sign-password-env {var}: the environment variable is not set")
    return value.encode("utf-8")


# --------------------------------------------------------------------------- verification


def load_certs(paths: Sequence[Path]) -> list[Any]:
    if not paths:
        return []
    try:
        from cryptography import x509
    except ImportError as exc:
        raise missing_extra(exc) from None

    out = []
    for p in paths:
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise SignError(f"{p}: cannot read the certificate ({exc.strerror})") from None
        try:
            if b"-----BEGIN" in data:
                out.extend(x509.load_pem_x509_certificates(data))
            else:
                out.append(x509.load_der_x509_certificate(data))
        except ValueError as exc:
            raise SignError(f"{p}: not a PEM or DER certificate ({exc})") from None
    return out


@dataclass(frozen=True)
class TokenCheck:
    """The verdict on an RFC 3161 token over a manifest."""

    ok: bool
    detail: str
    trusted: bool = False
    """The TSA's certificate chains to a given trust root."""
    gen_time: datetime | None = None


def _token_signer(raw: bytes) -> tuple[bool, str]:
    """Whether the token's CMS signature verifies with the certificate the token carries
    (integrity only, no trust): (ok, the signer's name or the reason it fails)."""
    from asn1crypto import cms, tsp
    from pyhanko.sign.validation.generic_cms import validate_sig_integrity

    try:
        token = tsp.TimeStampResp.load(raw)["time_stamp_token"]
        sd = token["content"]
        si = sd["signer_infos"][0]
        sid = si["sid"]
        certs = ([c.chosen for c in sd["certificates"] if c.name == "certificate"]
                 if isinstance(sd["certificates"], cms.CertificateSet) else [])
        if sid.name == "issuer_and_serial_number":
            want = sid.chosen
            cert = next((c for c in certs if c.issuer == want["issuer"]
                         and c.serial_number == want["serial_number"].native), None)
        else:
            cert = next((c for c in certs if c.key_identifier == sid.chosen.native), None)
        if cert is None:
            return False, ("the token carries no certificate of its signer (a TSA asked without "
                           "certReq); give --tsa-root and the TSA certificate to check it")
        content = sd["encap_content_info"]["content"].parsed.dump()
        digest = hashlib.new(si["digest_algorithm"]["algorithm"].native, content).digest()
        intact, valid = validate_sig_integrity(si, cert, "tst_info", digest)
    except Exception as exc:  # noqa: BLE001 - untrusted input
        return False, f"the token's signature cannot be checked ({type(exc).__name__}: " \
                      f"{str(exc)[:120]})"
    if not (intact and valid):
        return False, "the token's signature does not verify with the certificate it carries"
    return True, cert.subject.human_friendly


def check_token(token: bytes, manifest: bytes, roots: Sequence[Any]) -> TokenCheck:
    """Check a TimeStampResp against the manifest bytes: granted, its message imprint the
    SHA-256 of ``manifest``, its signature intact, and (if ``roots`` are given) its TSA
    certificate chaining to one of them. Without roots a valid token is ``ok`` but not
    ``trusted``, and the detail says to give --tsa-root."""
    from rfc3161_client import (
        PKIStatus,
        VerificationError,
        VerifierBuilder,
        decode_timestamp_response,
    )

    try:
        tsr = decode_timestamp_response(token)
        info = tsr.tst_info
        imprint = info.message_imprint
        gen_time = info.gen_time
    except Exception as exc:  # noqa: BLE001 - untrusted input
        return TokenCheck(False, f"manifest.tsr is not a timestamp response "
                                 f"({str(exc)[:120]})")
    if tsr.status not in (PKIStatus.GRANTED, PKIStatus.GRANTED_WITH_MODS):
        return TokenCheck(False, f"manifest.tsr is not a granted timestamp (PKIStatus "
                                 f"{tsr.status})")
    digest = hashlib.sha256(manifest).digest()
    if imprint.hash_algorithm.dotted_string != SHA256_OID or imprint.message != digest:
        return TokenCheck(False, (
            f"the token's message imprint ({imprint.message.hex()}) is not the SHA-256 of "
            f"the manifest.json ({digest.hex()}): the manifest was changed after it was "
            "timestamped, or the token is another manifest's"), gen_time=gen_time)
    when = gen_time.astimezone(UTC).isoformat() if gen_time.tzinfo else gen_time.isoformat()
    if not roots:
        intact, signer = _token_signer(token)
        if not intact:
            return TokenCheck(False, signer, gen_time=gen_time)
        return TokenCheck(True, (
            f"token valid: it covers the manifest.json (sha256:{digest.hex()}), time {when}, "
            f"signed by {signer} (signature intact); TSA not trusted: give --tsa-root"),
            gen_time=gen_time)
    builder = VerifierBuilder()
    for root in roots:
        builder = builder.add_root_certificate(root)
    try:
        builder.build().verify(tsr, digest)
    except (VerificationError, ValueError) as exc:
        return TokenCheck(False, f"the token's signer does not verify against --tsa-root: {exc}",
                          gen_time=gen_time)
    return TokenCheck(True, (
        f"the manifest.json (sha256:{digest.hex()}) existed at {when}, signed by a TSA that "
        f"chains to --tsa-root (serial {info.serial_number})"), trusted=True, gen_time=gen_time)


def check_signatures(pdf: Path, roots: Sequence[Any], tsa_roots: Sequence[Any] = (),
                     ) -> list[tuple[bool, str]]:
    """Validate every signature in ``pdf`` with pyHanko, offline. Empty if there is none.

    The signer is checked against ``roots``; a signature timestamp (PAdES B-T) against
    ``tsa_roots`` when given, else against ``roots`` too."""
    from asn1crypto import x509 as asn1_x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    trust = [asn1_x509.Certificate.load(c.public_bytes(Encoding.DER)) for c in roots]
    ts_trust = [asn1_x509.Certificate.load(c.public_bytes(Encoding.DER))
                for c in tsa_roots] or trust
    out: list[tuple[bool, str]] = []
    with pdf.open("rb") as fh:
        try:
            reader = PdfFileReader(fh, strict=False)
            sigs = list(reader.embedded_signatures)
        except Exception as exc:  # noqa: BLE001 - untrusted input
            return [(False, f"the PDF's signatures cannot be read ({type(exc).__name__}: "
                            f"{str(exc)[:160]})")]
        for sig in sigs:
            name = sig.field_name
            try:
                st = validate_pdf_signature(
                    sig, ValidationContext(trust_roots=trust, allow_fetching=False),
                    ts_validation_context=ValidationContext(trust_roots=ts_trust,
                                                            allow_fetching=False))
            except Exception as exc:  # noqa: BLE001 - a broken signature is a failed check
                out.append((False, f"{name}: cannot be validated ({type(exc).__name__}: "
                                   f"{str(exc)[:160]})"))
                continue
            out.append(_signature_verdict(name, st, bool(trust), bool(ts_trust)))
    return out


def _signature_verdict(name: str, st: Any, have_roots: bool,
                       have_ts_roots: bool = False) -> tuple[bool, str]:
    from pyhanko.sign.diff_analysis import ModificationLevel
    from pyhanko.sign.validation.status import SignatureCoverageLevel

    signer = st.signing_cert.subject.human_friendly if st.signing_cert else "unknown signer"
    coverage = st.coverage
    whole = coverage == SignatureCoverageLevel.ENTIRE_FILE
    later_ok = (coverage == SignatureCoverageLevel.ENTIRE_REVISION
                and st.modification_level in (ModificationLevel.NONE,
                                              ModificationLevel.LTA_UPDATES))
    facts = [f"intact={'yes' if st.intact else 'NO'}", f"valid={'yes' if st.valid else 'NO'}",
             f"trusted={'yes' if st.trusted else ('no' if have_roots else 'not checked')}",
             "covers the whole file" if whole else
             ("later revisions add only timestamps" if later_ok else
              f"the file was changed after signing ({coverage.name})")]
    ts = getattr(st, "timestamp_validity", None)
    ts_ok = True
    if ts is not None:
        ts_ok = bool(ts.intact and ts.valid and (ts.trusted or not have_ts_roots))
        facts.append(f"signature timestamp (PAdES B-T) {ts.timestamp.isoformat()} "
                     + ("trusted" if ts.trusted else
                        ("NOT trusted" if have_ts_roots else "TSA not checked"))
                     + ("" if ts.intact and ts.valid else ", its token is broken"))
    else:
        facts.append("no signature timestamp (PAdES B-B)")
    detail = f"{name} by {signer}: " + ", ".join(facts)
    ok = bool(st.intact and st.valid and (whole or later_ok) and ts_ok)
    if have_roots:
        ok = ok and bool(st.trusted)
        if not st.trusted:
            detail += "; the signer does not chain to --sign-root"
    elif ok:
        detail += "; signer not verified: give --sign-root"
    return ok, detail


def has_signature(pdf: Path) -> bool:
    """Cheap pre-check: a signature dictionary's /ByteRange appears in the file."""
    try:
        return b"/ByteRange" in pdf.read_bytes()
    except OSError:
        return False
