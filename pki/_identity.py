"""Identities in certificates: URI SANs and the TLS name that pins a member's security servers."""

from __future__ import annotations

import hashlib
from functools import lru_cache

from cryptography import x509

from pki._errors import CertificateIdentityError
from proto import IdentifierError, PartyId, SecurityServerId, parse_identity_uri

TLS_NAME_SUFFIX = ".pintu.invalid"


def tls_server_name(server: SecurityServerId) -> str:
    """The DNS name that ``server``'s authentication certificate carries, and only that one.

    A consumer gateway connects to a registered server's address expecting this name, so the
    handshake itself proves that the peer holds the certificate issued to exactly that registered
    server. The name is a hash because identifiers are case-sensitive and DNS names are not. The
    CA issues names under :data:`TLS_NAME_SUFFIX` in authentication certificates only.
    """
    digest = hashlib.sha256(str(server).encode("ascii")).hexdigest()
    return f"s-{digest[:56]}{TLS_NAME_SUFFIX}"


def certificate_identity(certificate: x509.Certificate) -> PartyId:
    """The one Pintu identity named by ``certificate``'s URI SANs.

    Raises:
        CertificateIdentityError: no SAN extension, no Pintu URI, several, or a malformed one.
    """
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise CertificateIdentityError("certificate has no subjectAltName") from None
    return identity_from_uris(san.get_values_for_type(x509.UniformResourceIdentifier))


def identity_from_uris(uris: list[str] | tuple[str, ...]) -> PartyId:
    """The one Pintu identity among certificate URI SANs (as TLS stacks report them)."""
    ours = [uri for uri in uris if uri.startswith("urn:pintu:")]
    if len(ours) != 1:
        raise CertificateIdentityError(
            f"certificate must carry exactly one urn:pintu: URI SAN; found {len(ours)}"
        )
    return _parse_uri(ours[0])


@lru_cache(maxsize=1024)
def _parse_uri(uri: str) -> PartyId:
    try:
        return parse_identity_uri(uri)
    except IdentifierError as error:
        raise CertificateIdentityError(str(error)) from error
