"""RFC 3161 timestamps from an outside time-stamping authority (TSA) on the log's checkpoints.

A checkpoint's own ``at`` is the signer's word; a TSA's signed reply over the checkpoint's token
fixes a time by which that signed tree head existed, which whoever holds the member's signing
key cannot move. :class:`Timestamper` asks a TSA over HTTP (``urllib``) and checks its reply
against the request before handing it back; :func:`verify_timestamp` checks a stored reply
offline. Replies are kept whole (DER ``TimeStampResp``, as ``openssl ts -verify -in`` reads
them): the signed ``timeStampToken`` is inside.

Errors, each with a stable ``code``::

    AuditError
     └── TimestampError          timestamp_error
          ├── TimestampUnavailable   timestamp_unavailable: no answer, an HTTP error, an answer
          │                          that is not a timestamp reply, or the TSA's refusal
          └── TimestampInvalid       timestamp_invalid: a reply that does not verify (another
                                     TSA, another message, another request's nonce, a forgery)
"""

from __future__ import annotations

import datetime as dt
import http.client
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from rfc3161_client import (
    HashAlgorithm,
    PKIStatus,
    TimestampRequestBuilder,
    TimeStampResponse,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

from audit._log import AuditError

# A reply is a few KiB (a token and the TSA's certificate); anything much larger is not one.
MAX_REPLY_BYTES = 1 << 20
_DIGESTS = {"sha256": HashAlgorithm.SHA256, "sha512": HashAlgorithm.SHA512}


class TimestampError(AuditError):
    """A timestamp could not be had or does not verify; ``code`` is stable."""

    code = "timestamp_error"


class TimestampUnavailable(TimestampError):
    """The TSA gave no timestamp: unreachable, too slow, an HTTP error, an answer that is not a
    timestamp reply, or a refusal. Checkpoints go on being signed; ask again later."""

    code = "timestamp_unavailable"


class TimestampInvalid(TimestampError):
    """A timestamp reply does not verify: not signed by a TSA under the trusted roots, not over
    the message, or not the answer to the request sent."""

    code = "timestamp_invalid"


@dataclass(frozen=True, slots=True)
class Timestamp:
    """A verified TSA reply (DER ``TimeStampResp``) and the time it stamped (``genTime``)."""

    reply: bytes
    at: dt.datetime


class Timestamper:
    """Asks one TSA for RFC 3161 timestamps, over HTTP(S), and verifies each reply.

    Blocking (``urllib``): call it from a worker thread, never on an event loop.

    Args:
        url: the TSA's ``http://`` or ``https://`` address.
        roots: the CA certificates the TSA's certificate chains to (the TSA's own certificate
            is not enough: it is not self-signed). The TSA certificate must carry a critical
            ``extendedKeyUsage`` of ``timeStamping``.
        intermediates: CA certificates between ``roots`` and the TSA's certificate, if the TSA
            does not send them. A reply embedding several certificates must list them in DER
            order (rfc3161-client refuses others); TSAs that embed only their own certificate,
            as ``openssl ts`` does by default, always do.
        timeout: seconds allowed to connect and for each read.
        digest: the hash the TSA is asked to stamp (``sha256`` suits every TSA).
        ssl_context: trust for an ``https://`` TSA (default: the system's).

    Raises:
        ValueError: a field is unusable; the message names it.
    """

    def __init__(
        self,
        url: str,
        roots: Iterable[x509.Certificate],
        *,
        intermediates: Iterable[x509.Certificate] = (),
        timeout: float = 10.0,
        digest: Literal["sha256", "sha512"] = "sha256",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"timestamper.url: not an http(s) address: {url!r}")
        self.url = url
        self.roots = tuple(roots)
        if not self.roots:
            raise ValueError("timestamper.roots: at least one CA certificate is needed")
        self.intermediates = tuple(intermediates)
        if not timeout > 0:
            raise ValueError(f"timestamper.timeout: must be positive, not {timeout}")
        self.timeout = timeout
        if digest not in _DIGESTS:
            raise ValueError(f"timestamper.digest: one of {sorted(_DIGESTS)}, not {digest!r}")
        self.digest = digest
        self._ssl_context = ssl_context

    def stamp(self, message: bytes) -> Timestamp:
        """A timestamp over ``message``, its reply verified against the request sent (nonce,
        message imprint, the TSA's signature under ``roots``).

        Raises:
            TimestampUnavailable: no timestamp was had (see the class).
            TimestampInvalid: the TSA answered with a reply that does not verify.
        """
        request = (
            TimestampRequestBuilder()
            .data(message)
            .hash_algorithm(_DIGESTS[self.digest])
            .nonce(nonce=True)
            .cert_request(cert_request=True)
            .build()
        )
        reply = self._post(request.as_bytes())
        try:
            response = decode_timestamp_response(reply)
        except ValueError as error:
            raise TimestampUnavailable(
                f"the TSA at {self.url} sent no timestamp reply: {error}"
            ) from None
        if response.status != PKIStatus.GRANTED:
            said = "; ".join(response.status_string) or "no reason given"
            raise TimestampUnavailable(
                f"the TSA at {self.url} refused: status {response.status} ({said})"
            )
        verifier = VerifierBuilder(
            roots=list(self.roots),
            intermediates=list(self.intermediates),
            nonce=request.nonce,
        )
        return Timestamp(reply, _verified(response, message, verifier, f"from {self.url}"))

    def _post(self, query: bytes) -> bytes:
        # The scheme was checked to be http(s) when the timestamper was made.
        request = urllib.request.Request(  # noqa: S310
            self.url,
            data=query,
            method="POST",
            headers={
                "Content-Type": "application/timestamp-query",
                "Accept": "application/timestamp-reply",
            },
        )
        try:
            with urllib.request.urlopen(  # noqa: S310
                request, timeout=self.timeout, context=self._ssl_context
            ) as answer:
                reply: bytes = answer.read(MAX_REPLY_BYTES + 1)
        except urllib.error.HTTPError as error:
            error.close()
            raise TimestampUnavailable(
                f"the TSA at {self.url} answered HTTP {error.code} {error.reason}"
            ) from None
        except (OSError, http.client.HTTPException, ValueError) as error:
            reason = error.reason if isinstance(error, urllib.error.URLError) else error
            raise TimestampUnavailable(
                f"the TSA at {self.url} cannot be reached: {reason or type(error).__name__}"
            ) from None
        if len(reply) > MAX_REPLY_BYTES:
            raise TimestampUnavailable(
                f"the TSA at {self.url} sent more than {MAX_REPLY_BYTES} bytes"
            )
        return reply


def verify_timestamp(
    reply: bytes,
    message: bytes,
    tsa_roots: Iterable[x509.Certificate],
    *,
    intermediates: Iterable[x509.Certificate] = (),
) -> dt.datetime:
    """The time a stored TSA ``reply`` stamped over ``message`` (timezone-aware, UTC), its
    signature checked under ``tsa_roots`` (the TSA's certificate valid at that time, with a
    critical ``timeStamping`` extended key usage).

    Raises:
        TimestampInvalid: it is not a granted reply, not over ``message``, or not signed by a
            TSA under ``tsa_roots``.
        ValueError: ``tsa_roots`` is empty.
    """
    roots = list(tsa_roots)
    if not roots:
        raise ValueError("tsa_roots: at least one CA certificate is needed")
    try:
        response = decode_timestamp_response(reply)
    except ValueError as error:
        raise TimestampInvalid(f"not a timestamp reply: {error}") from None
    verifier = VerifierBuilder(roots=roots, intermediates=list(intermediates))
    return _verified(response, message, verifier, "")


def _verified(
    response: TimeStampResponse, message: bytes, verifier: VerifierBuilder, whence: str
) -> dt.datetime:
    try:
        verifier.build().verify_message(response, message)
        stamped = response.tst_info.gen_time
    except (VerificationError, ValueError) as error:
        where = f" {whence}" if whence else ""
        raise TimestampInvalid(f"the timestamp reply{where} does not verify: {error}") from None
    # rfc3161-client gives genTime in UTC; keep it aware whatever a later version does.
    return stamped if stamped.tzinfo is not None else stamped.replace(tzinfo=dt.UTC)
