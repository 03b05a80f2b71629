"""The federation's PKI: CA hierarchy, enrollment, renewal, revocation, OCSP and key storage.

The CA side: :class:`CaFolder` (root and issuing CAs, delegated OCSP responder, root rollover),
:class:`Authority` (tokens, enrollment, renewal, revocation, CRL, OCSP) with its
:class:`CaLedger`, and :class:`CaService` (gRPC and HTTP). Keys live in encrypted files
(:class:`FileKeyStorage`) or in a PKCS#11 token (:class:`Pkcs11Key`).

The security server's side: :class:`CaClient` (enroll, renew, trust bundle),
:class:`CertificateKeeper` (renewal, stapling, CRLs and trust in the background) and
:class:`StatusVerifier` / :class:`RevokedSerials` (peer checks on the exchange path).

Identities are URI SANs parsed by :mod:`proto`'s one identifier parser.
"""

from pki._authority import (
    AUTHENTICATION,
    REASONS,
    SIGNING,
    Authority,
    IssuancePolicy,
    IssuedCertificate,
    TrustBundle,
    check_key,
    issuer_hashes,
)
from pki._ca import DOCUMENT_SIGNING, CertificateAuthority, PublicKey, RevocationUrls
from pki._client import (
    SERVICE_TLS_NAME,
    CaClient,
    CaRefused,
    CaUnavailable,
    Credential,
    TrustUpdate,
    certificate_request,
)
from pki._errors import (
    CertificateIdentityError,
    CertificateRevoked,
    CsrIdentityMismatch,
    CsrMalformed,
    CsrSignatureInvalid,
    EnrollmentRefused,
    IssuanceRefused,
    KeyMaterialError,
    KeyRejected,
    LedgerError,
    OcspIssuerUnknown,
    OcspRequestInvalid,
    PkiError,
    RenewalRefused,
    StatusInvalid,
    StatusMissing,
    StatusRefused,
    StatusStale,
    StatusUnknown,
    TokenExpired,
    TokenUnknown,
    TokenUsed,
)
from pki._folder import (
    CaFolder,
    CaSettings,
    FileKeyStorage,
    Generation,
    KeyStorage,
    TokenKeyStorage,
)
from pki._identity import (
    TLS_NAME_SUFFIX,
    certificate_identity,
    identity_from_uris,
    tls_server_name,
)
from pki._keeper import CertificateKeeper, KeeperSettings, accepted_roots
from pki._keys import (
    PrivateKey,
    TlsIdentity,
    certificate_pem,
    generate_key,
    key_pem,
    load_certificates,
    load_private_key,
    write_private,
    write_public,
)
from pki._ledger import CaLedger, CertificateRecord, JournalEntry, TokenRecord
from pki._pkcs11 import Pkcs11Key, Pkcs11Token, TokenKeyUnavailable
from pki._service import CaService
from pki._status import DEFAULT_MAX_AGE, PeerStatus, RevokedSerials, StatusVerifier

__all__ = [
    "AUTHENTICATION",
    "DEFAULT_MAX_AGE",
    "DOCUMENT_SIGNING",
    "REASONS",
    "SERVICE_TLS_NAME",
    "SIGNING",
    "TLS_NAME_SUFFIX",
    "Authority",
    "CaClient",
    "CaFolder",
    "CaLedger",
    "CaRefused",
    "CaService",
    "CaSettings",
    "CaUnavailable",
    "CertificateAuthority",
    "CertificateIdentityError",
    "CertificateKeeper",
    "CertificateRecord",
    "CertificateRevoked",
    "Credential",
    "CsrIdentityMismatch",
    "CsrMalformed",
    "CsrSignatureInvalid",
    "EnrollmentRefused",
    "FileKeyStorage",
    "Generation",
    "IssuancePolicy",
    "IssuanceRefused",
    "IssuedCertificate",
    "JournalEntry",
    "KeeperSettings",
    "KeyMaterialError",
    "KeyRejected",
    "KeyStorage",
    "LedgerError",
    "OcspIssuerUnknown",
    "OcspRequestInvalid",
    "PeerStatus",
    "Pkcs11Key",
    "Pkcs11Token",
    "PkiError",
    "PrivateKey",
    "PublicKey",
    "RenewalRefused",
    "RevocationUrls",
    "RevokedSerials",
    "StatusInvalid",
    "StatusMissing",
    "StatusRefused",
    "StatusStale",
    "StatusUnknown",
    "StatusVerifier",
    "TlsIdentity",
    "TokenExpired",
    "TokenKeyStorage",
    "TokenKeyUnavailable",
    "TokenRecord",
    "TokenUnknown",
    "TokenUsed",
    "TrustBundle",
    "TrustUpdate",
    "accepted_roots",
    "certificate_identity",
    "certificate_pem",
    "certificate_request",
    "check_key",
    "generate_key",
    "identity_from_uris",
    "issuer_hashes",
    "key_pem",
    "load_certificates",
    "load_private_key",
    "tls_server_name",
    "write_private",
    "write_public",
]
