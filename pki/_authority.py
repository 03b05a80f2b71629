"""The online issuing authority: enrollment, renewal, revocation, CRL and OCSP.

Pure of any network: the CA service (``pki._service``) and the ``pintu ca`` commands call it.
Every method takes the time as an argument.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509 import ocsp

from pki._ca import CertificateAuthority, PublicKey, _signature_hash
from pki._errors import (
    CsrIdentityMismatch,
    CsrMalformed,
    CsrSignatureInvalid,
    IssuanceRefused,
    KeyRejected,
    LedgerError,
    OcspIssuerUnknown,
    OcspRequestInvalid,
    RenewalRefused,
)
from pki._identity import certificate_identity
from pki._keys import PrivateKey
from pki._ledger import CaLedger, CertificateRecord
from proto import (
    IdentifierError,
    MemberId,
    OperatorId,
    RegistryId,
    SecurityServerId,
    SubsystemId,
)

# The TLS names the registry's and the consent service's certificates carry and their clients
# expect.
REGISTRY_TLS_NAME = "registry.pintu.invalid"
CONSENT_TLS_NAME = "consent.pintu.invalid"
AUTHENTICATION = "authentication"
SIGNING = "signing"

REASONS: dict[str, x509.ReasonFlags] = {
    "unspecified": x509.ReasonFlags.unspecified,
    "key_compromise": x509.ReasonFlags.key_compromise,
    "ca_compromise": x509.ReasonFlags.ca_compromise,
    "affiliation_changed": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessation_of_operation": x509.ReasonFlags.cessation_of_operation,
    "privilege_withdrawn": x509.ReasonFlags.privilege_withdrawn,
}
_TOKEN_PREFIX = "pintu-enroll-"  # noqa: S105 - a visible marker, not a secret


@dataclass(frozen=True, slots=True)
class IssuancePolicy:
    """Lifetimes the authority issues with."""

    authentication_lifetime: dt.timedelta = dt.timedelta(days=1)
    signing_lifetime: dt.timedelta = dt.timedelta(days=365)
    token_lifetime: dt.timedelta = dt.timedelta(hours=24)
    # How long a signed OCSP response is served from cache, and its nextUpdate.
    ocsp_refresh: dt.timedelta = dt.timedelta(seconds=60)
    ocsp_validity: dt.timedelta = dt.timedelta(hours=1)
    crl_validity: dt.timedelta = dt.timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A certificate the authority issued, and the chain above it (issuing CA first)."""

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]

    @property
    def serial(self) -> int:
        """The certificate's serial number."""
        return int(self.certificate.serial_number)


@dataclass(frozen=True, slots=True)
class TrustBundle:
    """What relying parties trust, and where revocation status is published."""

    roots: tuple[x509.Certificate, ...]
    cross_certificates: tuple[x509.Certificate, ...]
    crl_url: str
    ocsp_url: str
    issuing: tuple[tuple[int, x509.Certificate], ...] = ()
    renewal_address: str = ""


def enrollment_token() -> str:
    """A new random enrollment token (256 bits)."""
    return _TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """What the ledger stores of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def check_key(public_key: object) -> PublicKey:
    """The CA's key policy: ECDSA P-256 or P-384, Ed25519, or RSA of at least 3072 bits.

    Raises:
        KeyRejected: any other key.
    """
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if isinstance(public_key.curve, ec.SECP256R1 | ec.SECP384R1):
            return public_key
        raise KeyRejected(f"elliptic curve {public_key.curve.name} is not allowed")
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return public_key
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size >= 3072:
            return public_key
        raise KeyRejected(f"RSA keys need at least 3072 bits, not {public_key.key_size}")
    raise KeyRejected(f"{type(public_key).__name__} keys are not allowed")


def _csr(der: bytes, what: str) -> x509.CertificateSigningRequest:
    try:
        request = x509.load_der_x509_csr(der)
    except ValueError as error:
        raise CsrMalformed(f"{what}: not a DER PKCS#10 request: {error}") from None
    try:
        public = request.public_key()
    except (ValueError, UnsupportedAlgorithm) as error:
        raise KeyRejected(f"{what}: the key's type or curve is not supported: {error}") from None
    check_key(public)
    try:
        valid = request.is_signature_valid
    except (ValueError, TypeError) as error:
        raise CsrMalformed(f"{what}: unreadable signature: {error}") from None
    if not valid:
        raise CsrSignatureInvalid(f"{what}: the signature does not verify with the request's key")
    return request


def _csr_identity(request: x509.CertificateSigningRequest, what: str) -> str:
    """The one ``urn:pintu:`` URI the CSR asks for."""
    try:
        san = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise CsrIdentityMismatch(f"{what}: the request names no identity (no SAN)") from None
    except ValueError as error:
        raise CsrMalformed(f"{what}: unreadable extensions: {error}") from None
    ours = [
        u
        for u in san.get_values_for_type(x509.UniformResourceIdentifier)
        if u.startswith("urn:pintu:")
    ]
    if len(ours) != 1:
        raise CsrIdentityMismatch(f"{what}: the request must name exactly one urn:pintu: URI")
    return ours[0]


def key_digest(key: PublicKey) -> str:
    """SHA-256 of a public key's SubjectPublicKeyInfo, hex: how the ledger remembers keys."""
    return hashlib.sha256(_public_der(key)).hexdigest()


def _public_der(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True, slots=True)
class OcspQuery:
    """What an OCSP request asks: the certificate's serial, the hash it names the issuer with,
    and the nonce to echo (if any)."""

    algorithm: hashes.HashAlgorithm
    serial: int
    nonce: bytes | None


@dataclass
class _Cached:
    der: bytes
    until: dt.datetime


@dataclass
class Authority:
    """The issuing CA at work, with its ledger.

    ``issuing`` signs leaves and CRLs; ``chain`` is what leaves present above themselves
    (the issuing CA's certificate first); ``ocsp_key``/``ocsp_certificate`` sign OCSP responses
    (a delegated responder).
    """

    issuing: CertificateAuthority
    chain: tuple[x509.Certificate, ...]
    ocsp_key: PrivateKey
    ocsp_certificate: x509.Certificate
    ledger: CaLedger
    trust: TrustBundle
    policy: IssuancePolicy = field(default_factory=IssuancePolicy)
    _crl: _Cached | None = field(default=None, init=False, repr=False)
    _ocsp: dict[int, _Cached] = field(default_factory=dict, init=False, repr=False)
    _issuer_hashes: dict[str, tuple[bytes, bytes]] = field(
        default_factory=dict, init=False, repr=False
    )

    @property
    def issuer_name(self) -> str:
        """The issuing CA's subject, as the ledger records it."""
        return self.issuing.certificate.subject.rfc4514_string()

    # -- tokens ----------------------------------------------------------------------------------

    def create_token(
        self,
        server: SecurityServerId,
        *,
        actor: str,
        now: dt.datetime,
        lifetime: dt.timedelta | None = None,
    ) -> str:
        """A one-time enrollment token bound to ``server`` (and so to its owner member).

        Raises:
            LedgerError: a lifetime beyond the policy's maximum, or the database failed.
        """
        lifetime = self.policy.token_lifetime if lifetime is None else lifetime
        if not dt.timedelta(0) < lifetime <= self.policy.token_lifetime:
            raise LedgerError(
                f"a token lives at most {self.policy.token_lifetime}; {lifetime} was asked"
            )
        token = enrollment_token()
        self.ledger.add_token(
            token_digest(token), str(server), expires_at=now + lifetime, actor=actor, now=now
        )
        return token

    # -- issuance ------------------------------------------------------------------------------

    def _issue(
        self,
        kind: str,
        server: SecurityServerId,
        public_key: PublicKey,
        *,
        action: str,
        actor: str,
        now: dt.datetime,
        renewed_from: int | None = None,
    ) -> IssuedCertificate:
        if kind == AUTHENTICATION:
            identity = str(server)
            certificate = self.issuing.issue_server_certificate(
                server, public_key, now=now, lifetime=self.policy.authentication_lifetime
            )
        else:
            identity = str(server.owner)
            certificate = self.issuing.issue_signing_certificate(
                server.owner, public_key, now=now, lifetime=self.policy.signing_lifetime
            )
        self.ledger.record_issue(
            serial=certificate.serial_number,
            kind=kind,
            identity=identity,
            issuer=self.issuer_name,
            not_before=certificate.not_valid_before_utc,
            not_after=certificate.not_valid_after_utc,
            der=certificate.public_bytes(serialization.Encoding.DER),
            action=action,
            actor=actor,
            now=now,
            renewed_from=renewed_from,
        )
        return IssuedCertificate(certificate, self.chain)

    def enroll(
        self, token: str, authentication_csr: bytes, signing_csr: bytes, *, now: dt.datetime
    ) -> tuple[IssuedCertificate, IssuedCertificate]:
        """Issue a server's first authentication and signing certificates for a token.

        The token is used up only when both requests pass every check.

        Raises:
            EnrollmentRefused: a subclass naming what was wrong (token, CSR, key, identity).
        """
        digest = token_digest(token)
        binding = self.ledger.peek_token(digest, now=now)
        server = SecurityServerId.parse(binding.server)
        auth = _csr(authentication_csr, "authentication CSR")
        sign = _csr(signing_csr, "signing CSR")
        if _csr_identity(auth, "authentication CSR") != server.uri:
            raise CsrIdentityMismatch(f"the authentication CSR must name {server.uri}")
        if _csr_identity(sign, "signing CSR") != server.owner.uri:
            raise CsrIdentityMismatch(f"the signing CSR must name {server.owner.uri}")
        auth_key, sign_key = check_key(auth.public_key()), check_key(sign.public_key())
        if _public_der(auth_key) == _public_der(sign_key):
            raise KeyRejected("the authentication and signing certificates need different keys")
        self.ledger.take_token(digest, now=now)
        actor = f"token of {server} from {binding.created_by}"
        return (
            self._issue(AUTHENTICATION, server, auth_key, action="enroll", actor=actor, now=now),
            self._issue(SIGNING, server, sign_key, action="enroll", actor=actor, now=now),
        )

    def renew(
        self, current: x509.Certificate, kind: str, csr: bytes, *, now: dt.datetime
    ) -> IssuedCertificate:
        """Issue a new certificate for a new key, to the holder of a current authentication
        certificate (authenticated by mutual TLS).

        Raises:
            EnrollmentRefused: the current certificate is unknown, revoked or expired
                (``renewal_refused``), or the request is wrong.
        """
        record = self.ledger.certificate(current.serial_number)
        if record is None or record.der != current.public_bytes(serialization.Encoding.DER):
            raise RenewalRefused("the presented certificate was not issued by this CA")
        if record.kind != AUTHENTICATION:
            raise RenewalRefused("renewal is authenticated with an authentication certificate")
        if record.revoked_at is not None:
            raise RenewalRefused(f"the presented certificate was revoked ({record.reason})")
        if not record.not_before <= now < record.not_after:
            raise RenewalRefused("the presented certificate is not valid now")
        try:
            server = certificate_identity(current)
        except IdentifierError as error:  # pragma: no cover - issued certificates parse
            raise RenewalRefused(str(error)) from None
        if not isinstance(server, SecurityServerId):
            raise RenewalRefused("the presented certificate names no security server")
        if kind not in (AUTHENTICATION, SIGNING):
            raise CsrMalformed(f"unknown certificate kind {kind!r}")
        request = _csr(csr, f"{kind} CSR")
        expected = server.uri if kind == AUTHENTICATION else server.owner.uri
        if _csr_identity(request, f"{kind} CSR") != expected:
            raise CsrIdentityMismatch(f"the {kind} CSR must name {expected}")
        key = check_key(request.public_key())
        if self.ledger.key_certified(key_digest(key), (str(server), str(server.owner))):
            raise KeyRejected("renewal needs a key never certified before for this server")
        return self._issue(
            kind,
            server,
            key,
            action="renew",
            actor=f"{server} (mutual TLS)",
            now=now,
            renewed_from=record.serial,
        )

    def issue_agency_certificate(
        self,
        kind: str,
        subject: SecurityServerId | SubsystemId,
        public_key: PublicKey,
        *,
        names: tuple[str, ...] = (),
        actor: str,
        now: dt.datetime,
        lifetime: dt.timedelta,
    ) -> IssuedCertificate:
        """A certificate for the agency side of a security server, issued by an operator:
        ``"listener"`` (the mTLS agency listener of ``subject``, a server, at ``names``) or
        ``"client"`` (an agency system, ``subject`` a subsystem). Journaled like every issue."""
        if kind == "listener" and isinstance(subject, SecurityServerId):
            certificate = self.issuing.issue_listener_certificate(
                subject, names, public_key, now=now, lifetime=lifetime
            )
        elif kind == "client" and isinstance(subject, SubsystemId):
            certificate = self.issuing.issue_client_certificate(
                subject, public_key, now=now, lifetime=lifetime
            )
        else:
            raise IssuanceRefused(f"no {kind} certificate for {subject}")
        self.ledger.record_issue(
            serial=certificate.serial_number,
            kind=kind,
            identity=str(subject),
            issuer=self.issuer_name,
            not_before=certificate.not_valid_before_utc,
            not_after=certificate.not_valid_after_utc,
            der=certificate.public_bytes(serialization.Encoding.DER),
            action="issue",
            actor=actor,
            now=now,
        )
        return IssuedCertificate(certificate, self.chain)

    def certify(
        self,
        profile: str,
        subject: str,
        csr: bytes,
        *,
        names: tuple[str, ...] = (),
        actor: str,
        now: dt.datetime,
        lifetime: dt.timedelta,
    ) -> IssuedCertificate:
        """Certify an operator-presented CSR (proof of possession and key policy checked) with
        one of the profiles tokens do not cover:

        ``configuration-signing``  the registry's snapshot signer; ``subject`` is the instance
        ``operator``               a registry operator; ``subject`` is the operator's name
        ``service``                a federation service's TLS certificate for ``names``
                                   (``subject`` labels it)
        ``registry``               the registry's TLS certificate: ``names`` and the name
                                   ``registry.pintu.invalid`` its clients expect
        ``consent``                the consent service's TLS certificate: ``names`` and
                                   ``consent.pintu.invalid``
        ``document-signing``       a member's document-signing certificate (consent receipts,
                                   policy bundles); ``subject`` is the member
        ``listener``, ``client``   as :meth:`issue_agency_certificate`; ``subject`` is a server
                                   or a subsystem

        Raises:
            EnrollmentRefused: a bad CSR or key; IssuanceRefused: unknown profile or names.
        """
        request = _csr(csr, "CSR")
        key = check_key(request.public_key())
        try:
            if profile == "configuration-signing":
                identity = str(RegistryId(subject))
                certificate = self.issuing.issue_configuration_signing_certificate(
                    RegistryId(subject), key, now=now, lifetime=lifetime
                )
            elif profile == "operator":
                identity = str(OperatorId(subject))
                certificate = self.issuing.issue_operator_certificate(
                    OperatorId(subject), key, now=now, lifetime=lifetime
                )
            elif profile == "service":
                identity = subject
                certificate = self.issuing.issue_service_certificate(
                    subject, names, key, now=now, lifetime=lifetime
                )
            elif profile == "registry":
                identity = subject
                certificate = self.issuing.issue_service_certificate(
                    subject,
                    names,
                    key,
                    now=now,
                    lifetime=lifetime,
                    reserved=(REGISTRY_TLS_NAME,),
                )
            elif profile == "consent":
                identity = subject
                certificate = self.issuing.issue_service_certificate(
                    subject,
                    names,
                    key,
                    now=now,
                    lifetime=lifetime,
                    reserved=(CONSENT_TLS_NAME,),
                )
            elif profile == "document-signing":
                identity = str(MemberId.parse(subject))
                certificate = self.issuing.issue_signing_certificate(
                    MemberId.parse(subject), key, now=now, lifetime=lifetime
                )
            elif profile == "listener":
                return self.issue_agency_certificate(
                    "listener",
                    SecurityServerId.parse(subject),
                    key,
                    names=names,
                    actor=actor,
                    now=now,
                    lifetime=lifetime,
                )
            elif profile == "client":
                return self.issue_agency_certificate(
                    "client",
                    SubsystemId.parse(subject),
                    key,
                    actor=actor,
                    now=now,
                    lifetime=lifetime,
                )
            else:
                raise IssuanceRefused(f"unknown profile {profile!r}")
        except IdentifierError as error:
            raise IssuanceRefused(f"subject: {error}") from None
        self.ledger.record_issue(
            serial=certificate.serial_number,
            kind=profile,
            identity=identity,
            issuer=self.issuer_name,
            not_before=certificate.not_valid_before_utc,
            not_after=certificate.not_valid_after_utc,
            der=certificate.public_bytes(serialization.Encoding.DER),
            action="certify",
            actor=actor,
            now=now,
        )
        return IssuedCertificate(certificate, self.chain)

    # -- revocation ----------------------------------------------------------------------------

    def revoke(self, serial: int, reason: str, *, actor: str, now: dt.datetime) -> None:
        """Revoke a certificate; the CRL and OCSP answers change at once.

        Raises:
            LedgerError: unknown reason or serial, or already revoked.
        """
        if reason not in REASONS:
            raise LedgerError(f"unknown reason {reason!r}; one of {', '.join(REASONS)}")
        self.ledger.revoke(serial, reason=reason, actor=actor, now=now)
        self._crl = None
        self._ocsp.pop(serial, None)

    def forget_cached_status(self) -> None:
        """Drop the cached CRL and OCSP answers (the ledger changed behind the authority)."""
        self._crl = None
        self._ocsp.clear()

    def crl(self, now: dt.datetime) -> bytes:
        """The issuing CA's current CRL (DER), rebuilt after a revocation or halfway through
        its validity."""
        cached = self._crl
        if cached is not None and now < cached.until:
            return cached.der
        revoked = [
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(revoked_at)
            .add_extension(x509.CRLReason(REASONS[reason]), critical=False)
            .build()
            for serial, revoked_at, reason in self.ledger.revocations(self.issuer_name)
        ]
        # All entries at once: adding them one by one copies the list each time.
        builder = x509.CertificateRevocationListBuilder(
            issuer_name=self.issuing.certificate.subject,
            last_update=now,
            next_update=now + self.policy.crl_validity,
            extensions=[
                x509.Extension(
                    x509.CRLNumber.oid, False, x509.CRLNumber(int(now.timestamp() * 1000))
                ),
                x509.Extension(
                    x509.AuthorityKeyIdentifier.oid,
                    False,
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(
                        self.issuing.key.public_key()
                    ),
                ),
            ],
            revoked_certificates=revoked,
        )
        der = builder.sign(self.issuing.key, _signature_hash(self.issuing.key)).public_bytes(
            serialization.Encoding.DER
        )
        self._crl = _Cached(der, now + self.policy.crl_validity / 2)
        return der

    # -- OCSP ----------------------------------------------------------------------------------

    def _hashes(self, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
        """The issuing CA's name and key hashes as OCSP computes them with ``algorithm``."""
        found = self._issuer_hashes.get(algorithm.name)
        if found is None:
            found = issuer_hashes(self.issuing.certificate, algorithm)
            self._issuer_hashes[algorithm.name] = found
        return found

    def ocsp(self, request_der: bytes, now: dt.datetime) -> bytes:
        """Answer an OCSP request (RFC 6960) with a response signed by the delegated responder.

        Malformed requests and requests for other CAs get the unsuccessful responses
        ``malformedRequest`` and ``unauthorized``; use :meth:`check_ocsp_request` to learn why.
        """
        try:
            query = self.check_ocsp_request(request_der)
        except OcspRequestInvalid:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.MALFORMED_REQUEST
            ).public_bytes(serialization.Encoding.DER)
        except OcspIssuerUnknown:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.UNAUTHORIZED
            ).public_bytes(serialization.Encoding.DER)
        if query.nonce is None:
            cached = self._ocsp.get(query.serial)
            if cached is not None and now < cached.until and query.algorithm.name == "sha1":
                return cached.der
        der = self._sign_status(query.serial, query.algorithm, query.nonce, now)
        if query.nonce is None and query.algorithm.name == "sha1":
            self._ocsp[query.serial] = _Cached(der, now + self.policy.ocsp_refresh)
        return der

    def check_ocsp_request(self, request_der: bytes) -> OcspQuery:
        """Parse an OCSP request and check it is about a certificate of this issuing CA.

        Raises:
            OcspRequestInvalid: unparsable.
            OcspIssuerUnknown: about another CA.
        """
        try:
            request = ocsp.load_der_ocsp_request(request_der)
            query = OcspQuery(
                request.hash_algorithm, request.serial_number, _nonce(request.extensions)
            )
            hashes_asked = (request.issuer_name_hash, request.issuer_key_hash)
        except (ValueError, TypeError) as error:
            raise OcspRequestInvalid(f"not an OCSP request: {error}") from None
        except UnsupportedAlgorithm as error:
            raise OcspRequestInvalid(f"unsupported OCSP request: {error}") from None
        if hashes_asked != self._hashes(query.algorithm):
            raise OcspIssuerUnknown("the request is about a certificate of another CA")
        return query

    def _sign_status(
        self,
        serial: int,
        algorithm: hashes.HashAlgorithm,
        nonce: bytes | None,
        now: dt.datetime,
    ) -> bytes:
        record: CertificateRecord | None = self.ledger.certificate(serial)
        name_hash, key_hash = self._hashes(algorithm)
        status = ocsp.OCSPCertStatus.GOOD
        revoked_at: dt.datetime | None = None
        reason: x509.ReasonFlags | None = None
        if record is None or record.issuer != self.issuer_name:
            status = ocsp.OCSPCertStatus.UNKNOWN
        elif record.revoked_at is not None:
            status = ocsp.OCSPCertStatus.REVOKED
            revoked_at = record.revoked_at
            reason = REASONS.get(record.reason or "unspecified")
        builder = (
            ocsp.OCSPResponseBuilder()
            .add_response_by_hash(
                name_hash,
                key_hash,
                serial,
                algorithm,
                status,
                now,
                now + self.policy.ocsp_validity,
                revoked_at,
                reason,
            )
            .responder_id(ocsp.OCSPResponderEncoding.HASH, self.ocsp_certificate)
            .certificates([self.ocsp_certificate])
        )
        if nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        response = builder.sign(self.ocsp_key, _signature_hash(self.ocsp_key) or hashes.SHA256())
        return response.public_bytes(serialization.Encoding.DER)


def issuer_hashes(issuer: x509.Certificate, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    """An issuer's (name hash, key hash) as OCSP CertIDs carry them (RFC 6960 4.1.1)."""
    name = hashes.Hash(algorithm)
    name.update(issuer.subject.public_bytes())
    # The request builder hashes the issuer's subjectPublicKey bits the same way; the
    # certificate it is given only contributes a serial (and its issuer's name, unused here).
    probe = ocsp.OCSPRequestBuilder().add_certificate(issuer, issuer, algorithm).build()
    return name.finalize(), probe.issuer_key_hash


def _nonce(extensions: x509.Extensions) -> bytes | None:
    try:
        return extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return None
