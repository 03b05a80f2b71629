"""Checking a peer's revocation status: stapled OCSP responses and the CRL's revoked serials.

Both are checked on every exchange, so both are O(1) after the first sight: a staple's
verification is cached by its bytes (a security server staples the same response to many
exchanges), and revoked serials are a set.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from pki._authority import issuer_hashes
from pki._errors import (
    CertificateRevoked,
    StatusInvalid,
    StatusMissing,
    StatusStale,
    StatusUnknown,
)
from pki._keys import issued_by, verify_signature

DEFAULT_MAX_AGE = dt.timedelta(minutes=10)
# Clocks differ a little between the responder and relying parties.
CLOCK_SKEW = dt.timedelta(seconds=30)
_CACHE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """A verified OCSP answer: the certificate it is about, and when it was produced."""

    serial: int
    this_update: dt.datetime
    next_update: dt.datetime | None
    revoked: bool
    unknown: bool
    # The validity of the certificate that signed the response.
    signer_from: dt.datetime
    signer_until: dt.datetime


class StatusVerifier:
    """Verifies stapled OCSP responses of certificates issued by the trusted issuing CAs.

    A response is accepted when it is signed by an issuing CA itself or by a responder
    certificate that CA issued for OCSP signing, is about a certificate of that CA, and is at
    most ``max_age`` old. Everything takes the time as an argument.
    """

    def __init__(self, issuers: Iterable[x509.Certificate], max_age: dt.timedelta) -> None:
        self._issuers = list(issuers)
        self.max_age = max_age
        self._seen: dict[bytes, PeerStatus] = {}
        self._hashes: dict[tuple[int, str], tuple[bytes, bytes]] = {}

    @property
    def issuers(self) -> list[x509.Certificate]:
        """The issuing CAs trusted to vouch for certificates."""
        return list(self._issuers)

    def replace_issuers(self, issuers: Iterable[x509.Certificate]) -> None:
        """Trust another set of issuing CAs (root rollover); forget earlier verifications."""
        self._issuers = list(issuers)
        self._seen = {}
        self._hashes = {}

    def verify(self, staple: bytes) -> PeerStatus:
        """Verify a staple's signature and origin (not its age); cached by its bytes.

        Raises:
            StatusMissing: no staple.
            StatusInvalid: unparsable, unsuccessful, unsigned by a trusted issuer.
        """
        if not staple:
            raise StatusMissing("no OCSP response was stapled")
        known = self._seen.get(staple)
        if known is not None:
            return known
        try:
            response = ocsp.load_der_ocsp_response(staple)
        except ValueError as error:
            raise StatusInvalid(f"the stapled OCSP response is unreadable: {error}") from None
        if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
            raise StatusInvalid(f"the OCSP responder answered {response.response_status.name}")
        issuer = self._issuer_of(response)
        signer = self._signer(response, issuer)
        try:
            verify_signature(
                signer,
                response.signature,
                response.tbs_response_bytes,
                response.signature_hash_algorithm,
            )
        except InvalidSignature:
            raise StatusInvalid("the OCSP response's signature does not verify") from None
        status = PeerStatus(
            serial=response.serial_number,
            this_update=response.this_update_utc,
            next_update=response.next_update_utc,
            revoked=response.certificate_status is ocsp.OCSPCertStatus.REVOKED,
            unknown=response.certificate_status is ocsp.OCSPCertStatus.UNKNOWN,
            signer_from=signer.not_valid_before_utc,
            signer_until=signer.not_valid_after_utc,
        )
        if len(self._seen) >= _CACHE_LIMIT:
            self._seen.clear()
        self._seen[staple] = status
        return status

    def check(self, staple: bytes, *, now: dt.datetime, serial: int | None = None) -> PeerStatus:
        """Verify a staple and judge it: good, fresh and (when ``serial`` is given) about that
        certificate.

        Raises:
            StatusMissing, StatusInvalid, StatusStale, StatusUnknown, CertificateRevoked.
        """
        status = self.verify(staple)
        if not status.signer_from <= now <= status.signer_until:
            raise StatusInvalid("the OCSP response's signing certificate is not valid now")
        if serial is not None and status.serial != serial:
            raise StatusInvalid("the stapled OCSP response is about another certificate")
        if status.revoked:
            raise CertificateRevoked(f"certificate {status.serial} is revoked")
        if status.unknown:
            raise StatusUnknown(f"the responder does not know certificate {status.serial}")
        age = now - status.this_update
        if status.next_update is not None and now > status.next_update + CLOCK_SKEW:
            raise StatusStale("the stapled OCSP response is past its nextUpdate")
        if age > self.max_age or age < -CLOCK_SKEW:
            raise StatusStale(
                f"the stapled OCSP response is {age.total_seconds():.0f} s old; "
                f"at most {self.max_age.total_seconds():.0f} s are accepted"
            )
        return status

    def _issuer_of(self, response: ocsp.OCSPResponse) -> x509.Certificate:
        algorithm = response.hash_algorithm
        asked = (response.issuer_name_hash, response.issuer_key_hash)
        for index, issuer in enumerate(self._issuers):
            known = self._hashes.get((index, algorithm.name))
            if known is None:
                known = self._hashes[(index, algorithm.name)] = issuer_hashes(issuer, algorithm)
            if known == asked:
                return issuer
        raise StatusInvalid("the stapled OCSP response is about a certificate of an unknown CA")

    @staticmethod
    def _signer(response: ocsp.OCSPResponse, issuer: x509.Certificate) -> x509.Certificate:
        if _matches_responder(response, issuer):
            return issuer
        for candidate in response.certificates:
            if not _matches_responder(response, candidate) or not issued_by(candidate, issuer):
                continue
            try:
                usage = candidate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            except x509.ExtensionNotFound:
                continue
            if ExtendedKeyUsageOID.OCSP_SIGNING in usage:
                return candidate
        raise StatusInvalid("the OCSP response is not signed by the issuing CA or its responder")


def _matches_responder(response: ocsp.OCSPResponse, certificate: x509.Certificate) -> bool:
    if response.responder_name is not None:
        return bool(response.responder_name == certificate.subject)
    return response.responder_key_hash == _key_hash(certificate)


def _key_hash(certificate: x509.Certificate) -> bytes:
    """SHA-1 of the subjectPublicKey bits: RFC 6960's ResponderID byKey. The OCSP request
    builder computes exactly this as the issuer key hash."""
    algorithm = hashes.SHA1()  # noqa: S303 - fixed by RFC 6960
    probe = ocsp.OCSPRequestBuilder().add_certificate(certificate, certificate, algorithm).build()
    return probe.issuer_key_hash


class RevokedSerials:
    """The serials the trusted issuing CAs have revoked, from their CRLs: an O(1) look-up."""

    def __init__(self) -> None:
        self._serials: frozenset[int] = frozenset()
        self.next_update: dt.datetime | None = None

    def __contains__(self, serial: int) -> bool:
        return serial in self._serials

    def __len__(self) -> int:
        return len(self._serials)

    def load(
        self, crls: Iterable[bytes], issuers: Iterable[x509.Certificate], *, now: dt.datetime
    ) -> None:
        """Replace the set from DER CRLs, each verified against its issuing CA.

        Raises:
            StatusInvalid: a CRL is unreadable, unsigned by a trusted issuer, or expired.
        """
        trusted = list(issuers)
        serials: set[int] = set()
        next_update: dt.datetime | None = None
        for der in crls:
            try:
                crl = x509.load_der_x509_crl(der)
            except ValueError as error:
                raise StatusInvalid(f"unreadable CRL: {error}") from None
            issuer = next((i for i in trusted if i.subject == crl.issuer), None)
            if issuer is None or not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
                raise StatusInvalid("a CRL is not signed by a trusted issuing CA")
            if crl.next_update_utc is not None and crl.next_update_utc < now:
                raise StatusInvalid("a CRL is past its nextUpdate")
            serials.update(entry.serial_number for entry in crl)
            if crl.next_update_utc is not None:
                next_update = min(next_update or crl.next_update_utc, crl.next_update_utc)
        self._serials = frozenset(serials)
        self.next_update = next_update
