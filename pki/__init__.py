"""The federation's PKI: the CA, certificate profiles, key material and identities in certificates.

This package covers what one local federation needs: a root CA that issues security server
(authentication), member signing, agency client and agency listener certificates. Identities are
URI SANs parsed by :mod:`proto`'s one identifier parser.
"""

from pki._ca import DOCUMENT_SIGNING, CertificateAuthority, PublicKey
from pki._errors import CertificateIdentityError, IssuanceRefused, KeyMaterialError, PkiError
from pki._identity import (
    TLS_NAME_SUFFIX,
    certificate_identity,
    identity_from_uris,
    tls_server_name,
)
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

__all__ = [
    "DOCUMENT_SIGNING",
    "TLS_NAME_SUFFIX",
    "CertificateAuthority",
    "CertificateIdentityError",
    "IssuanceRefused",
    "KeyMaterialError",
    "PkiError",
    "PrivateKey",
    "PublicKey",
    "TlsIdentity",
    "certificate_identity",
    "certificate_pem",
    "generate_key",
    "identity_from_uris",
    "key_pem",
    "load_certificates",
    "load_private_key",
    "tls_server_name",
    "write_private",
    "write_public",
]
