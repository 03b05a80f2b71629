"""Errors raised by ``pki``.

::

    PkiError                        pki_error
    ├── KeyMaterialError            key_material_invalid: unreadable or unsuitable key or cert
    ├── CertificateIdentityError    certificate_identity_invalid: no usable Pintu identity SAN
    ├── IssuanceRefused             issuance_refused: the CA cannot issue (expired, naive time)
    ├── LedgerError                 ca_database_error: the CA's database failed or refused
    ├── EnrollmentRefused           (an enrollment or renewal request the CA turns down)
    │   ├── TokenUnknown            token_unknown
    │   ├── TokenExpired            token_expired
    │   ├── TokenUsed               token_used
    │   ├── CsrMalformed            csr_malformed
    │   ├── CsrSignatureInvalid     csr_signature_invalid: no proof of possession of the key
    │   ├── CsrIdentityMismatch     csr_identity_mismatch: the CSR names another identity
    │   ├── KeyRejected             key_rejected: not ECDSA P-256/P-384, Ed25519 or RSA >= 3072
    │   └── RenewalRefused          renewal_refused: the current certificate is revoked/unknown
    ├── RenewalNotAnnounced         renewal_not_announced: the renewed certificate could not be
    │                               made known (registered) before its use
    ├── OcspRequestInvalid          ocsp_request_malformed
    ├── OcspIssuerUnknown           ocsp_issuer_unknown: the request is for another CA
    └── StatusRefused               (a peer's revocation status that fails verification)
        ├── StatusMissing           ocsp_status_missing
        ├── StatusInvalid           ocsp_status_invalid: unparsable, wrong signer or certificate
        ├── StatusStale             ocsp_status_stale: older than the maximum age
        ├── StatusUnknown           ocsp_status_unknown: the responder does not know the cert
        └── CertificateRevoked      certificate_revoked
"""

from __future__ import annotations

from typing import ClassVar


class PkiError(Exception):
    """Root of every error raised by ``pki``; ``code`` is stable."""

    code: ClassVar[str] = "pki_error"


class KeyMaterialError(PkiError):
    """A key or certificate file is missing, unreadable, or not what it should be."""

    code: ClassVar[str] = "key_material_invalid"


class CertificateIdentityError(PkiError):
    """A certificate does not carry exactly one valid Pintu identity (URI SAN)."""

    code: ClassVar[str] = "certificate_identity_invalid"


class IssuanceRefused(PkiError):
    """The CA cannot issue the certificate asked for (e.g. the CA itself is not valid then)."""

    code: ClassVar[str] = "issuance_refused"


class LedgerError(PkiError):
    """The CA's database failed, or refused a change (unknown serial, already revoked)."""

    code: ClassVar[str] = "ca_database_error"


class EnrollmentRefused(PkiError):
    """An enrollment or renewal request the CA turns down; subclasses say why."""

    code: ClassVar[str] = "enrollment_refused"


class TokenUnknown(EnrollmentRefused):
    """No such enrollment token."""

    code: ClassVar[str] = "token_unknown"


class TokenExpired(EnrollmentRefused):
    """The enrollment token has expired."""

    code: ClassVar[str] = "token_expired"


class TokenUsed(EnrollmentRefused):
    """The enrollment token was already used (a token works once)."""

    code: ClassVar[str] = "token_used"


class CsrMalformed(EnrollmentRefused):
    """The certificate signing request cannot be parsed."""

    code: ClassVar[str] = "csr_malformed"


class CsrSignatureInvalid(EnrollmentRefused):
    """The CSR's signature does not verify with its own key: no proof of possession."""

    code: ClassVar[str] = "csr_signature_invalid"


class CsrIdentityMismatch(EnrollmentRefused):
    """The CSR names another identity than the token or the current certificate."""

    code: ClassVar[str] = "csr_identity_mismatch"


class KeyRejected(EnrollmentRefused):
    """The key type or size is outside the CA's key policy, or a key is reused."""

    code: ClassVar[str] = "key_rejected"


class RenewalRefused(EnrollmentRefused):
    """The certificate presented for renewal is revoked, expired or not from this CA."""

    code: ClassVar[str] = "renewal_refused"


class RenewalNotAnnounced(PkiError):
    """A renewed certificate could not be made known to peers (the keeper's ``before_switch``
    step failed); the current certificate stays in use and renewal is tried again."""

    code: ClassVar[str] = "renewal_not_announced"


class OcspRequestInvalid(PkiError):
    """An OCSP request that cannot be parsed."""

    code: ClassVar[str] = "ocsp_request_malformed"


class OcspIssuerUnknown(PkiError):
    """An OCSP request about a certificate of another CA."""

    code: ClassVar[str] = "ocsp_issuer_unknown"


class StatusRefused(PkiError):
    """A peer's revocation status that does not allow the exchange; subclasses say why."""

    code: ClassVar[str] = "ocsp_status_refused"


class StatusMissing(StatusRefused):
    """The peer sent no OCSP response."""

    code: ClassVar[str] = "ocsp_status_missing"


class StatusInvalid(StatusRefused):
    """The OCSP response is unparsable, badly signed, or about another certificate."""

    code: ClassVar[str] = "ocsp_status_invalid"


class StatusStale(StatusRefused):
    """The OCSP response is older than the maximum age (or from the future)."""

    code: ClassVar[str] = "ocsp_status_stale"


class StatusUnknown(StatusRefused):
    """The responder does not know the certificate."""

    code: ClassVar[str] = "ocsp_status_unknown"


class CertificateRevoked(StatusRefused):
    """The certificate is revoked."""

    code: ClassVar[str] = "certificate_revoked"
