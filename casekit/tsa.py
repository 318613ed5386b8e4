"""RFC 3161 timestamps: ask a timestamp authority for a token over some bytes and check the
answer. Used during a run (casekit.anchor: checkpoints) and after it (casekit.report.sign: the
report's manifest), so it sits low in the pipeline, beside the ledger.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from casekit.errors import CasekitError
from casekit.urls import check_base_url

TSR_MEDIA_TYPE = "application/timestamp-reply"
SHA256_OID = "2.16.840.1.101.3.4.2.1"
DEFAULT_TSA_TIMEOUT = 30.0


class SignError(CasekitError):
    """The timestamp or the signature cannot be made (exit code 2)."""


def missing_extra(exc: ImportError) -> SignError:
    return SignError(f"signing and timestamping need the optional packages ({exc.name} is "
                     "missing): pip install 'casekit[sign]'")


# --------------------------------------------------------------------------- RFC 3161


@dataclass(frozen=True)
class Timestamp:
    """A granted timestamp response over the manifest."""

    response: bytes
    """The DER TimeStampResp, as the TSA sent it."""
    gen_time: datetime
    serial_number: int


def request_timestamp(data: bytes, url: str, *, timeout: float = DEFAULT_TSA_TIMEOUT,
                      ) -> Timestamp:
    """Ask the TSA at ``url`` for a token over SHA-256(``data``); check the answer is for our
    hash and nonce. Raises SignError with one line when the TSA is unreachable or refuses."""
    try:
        from rfc3161_client import HashAlgorithm, TimestampRequestBuilder
    except ImportError as exc:
        raise missing_extra(exc) from None

    req = (TimestampRequestBuilder().data(data).hash_algorithm(HashAlgorithm.SHA256)
           .nonce(nonce=True).cert_request(cert_request=True).build())
    raw = post_timestamp_query(url, req.as_bytes(), timeout)
    return check_timestamp_response(raw, data, req.nonce, source=url)


def post_timestamp_query(url: str, query: bytes, timeout: float) -> bytes:
    """POST an RFC 3161 TimeStampReq (DER) to a TSA; the TimeStampResp bytes, or SignError."""
    try:
        import httpx
    except ImportError as exc:
        raise missing_extra(exc) from None
    try:
        resp = httpx.post(url, content=query, timeout=timeout,
                          headers={"Content-Type": "application/timestamp-query",
                                   "Accept": TSR_MEDIA_TYPE})
    except httpx.HTTPError as exc:
        raise SignError(f"timestamp authority {url} is unreachable ({type(exc).__name__}: "
                        f"{str(exc)[:200] or 'no answer'}); check --tsa or try again later") \
            from None
    if resp.status_code != 200:
        raise SignError(f"timestamp authority {url} answered HTTP {resp.status_code} "
                        f"{resp.reason_phrase}; check the --tsa URL")
    return resp.content


def check_timestamp_response(raw: bytes, data: bytes, nonce: int | None, *,
                             source: str) -> Timestamp:
    """Decode a TimeStampResp and check it grants a token over SHA-256(``data``) and ``nonce``."""
    from rfc3161_client import PKIStatus, decode_timestamp_response

    try:
        tsr = decode_timestamp_response(raw)
    except Exception as exc:  # noqa: BLE001 - untrusted bytes from the network
        raise SignError(f"timestamp authority {source} did not answer with a timestamp response "
                        f"({str(exc)[:120]})") from None
    if tsr.status not in (PKIStatus.GRANTED, PKIStatus.GRANTED_WITH_MODS):
        try:
            why = "; ".join(tsr.status_string)
        except Exception:  # noqa: BLE001
            why = ""
        raise SignError(f"timestamp authority {source} refused the request (PKIStatus "
                        f"{tsr.status}{': ' + why if why else ''})")
    info = tsr.tst_info
    imprint = info.message_imprint
    if imprint.hash_algorithm.dotted_string != SHA256_OID or \
            imprint.message != hashlib.sha256(data).digest():
        raise SignError(f"timestamp authority {source} answered with a token over another hash "
                        f"({imprint.message.hex()}); not embedding it")
    if nonce is not None and info.nonce != nonce:
        raise SignError(f"timestamp authority {source} answered with another nonce "
                        f"({info.nonce}, we sent {nonce}); not embedding it")
    return Timestamp(response=raw, gen_time=info.gen_time, serial_number=info.serial_number)


def check_tsa_url(url: str) -> None:
    """Refuse a TSA address that is not plain http(s) or that holds credentials, before
    anything is written or rendered (the message never repeats the URL)."""
    try:
        check_base_url(url, what="the timestamp authority's address",
                       example="e.g. https://freetsa.org/tsr",
                       credentials="use a TSA that needs no credentials in its URL")
    except ValueError as exc:
        raise SignError(f"--tsa: {exc}") from None
