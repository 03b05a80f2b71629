"""The federation's certificate authority and the certificate profiles it issues.

Profiles (all leaf certificates carry exactly one ``urn:pintu:`` URI SAN):

``security server``  TLS client + server authentication between gateways; URI SAN
                     ``urn:pintu:server:<server>``; DNS SAN :func:`tls_server_name` of the server.
``signing``          digitalSignature + nonRepudiation for a member's signatures on exchanges;
                     URI SAN ``urn:pintu:member:<member>``.
``agency client``    TLS client authentication of an agency system at its own gateway;
                     URI SAN ``urn:pintu:subsystem:<subsystem>``.
``agency listener``  TLS server certificate for a gateway's agency listener.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from pki._errors import IssuanceRefused, KeyMaterialError
from pki._identity import TLS_NAME_SUFFIX, tls_server_name
from pki._keys import (
    PrivateKey,
    certificate_pem,
    generate_key,
    key_pem,
    load_certificates,
    load_private_key,
    write_private,
    write_public,
)
from proto import MemberId, OperatorId, RegistryId, SecurityServerId, SubsystemId

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey

# id-kp-documentSigning (RFC 9336).
DOCUMENT_SIGNING = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")
# Pintu's extended key usage for the registry's global-configuration signing key: a UUID arc
# (2.25, ITU-T X.667), so that no other certificate of the federation can sign a configuration.
CONFIGURATION_SIGNING = x509.ObjectIdentifier("2.25.221885187596914573008269921106693704718")

# Backdating absorbs small clock differences between the CA and relying parties.
_BACKDATE = dt.timedelta(minutes=5)

_NO_KEY_USAGE = dict(
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


def _check_time(now: dt.datetime) -> None:
    if now.tzinfo is None:
        raise IssuanceRefused("the time given to the CA must carry a time zone")


def _tls_names(names: Iterable[str]) -> list[x509.GeneralName]:
    """DNS names and IP addresses as SANs; names under ``.pintu.invalid`` are refused."""
    sans: list[x509.GeneralName] = []
    for name in names:
        if name.lower().rstrip(".").endswith(TLS_NAME_SUFFIX):
            raise IssuanceRefused(
                f"{name}: names under {TLS_NAME_SUFFIX} are reserved for Pintu's own use"
            )
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    return sans


def _common_name(certificate: x509.Certificate) -> str:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else "CA"


def _organization(certificate: x509.Certificate) -> str | None:
    names = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(names[0].value) if names else None


def _ca_certificate(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: PublicKey,
    signer: PrivateKey,
    *,
    path_length: int | None,
    start: dt.datetime,
    end: dt.datetime,
    issuer_key: PublicKey | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                **{**_NO_KEY_USAGE, "key_cert_sign": True, "crl_sign": True},
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if issuer_key is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key), critical=False
        )
    return builder.sign(signer, _signature_hash(signer))


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


@dataclass(frozen=True, slots=True)
class RevocationUrls:
    """Where relying parties find revocation status; written into every leaf certificate."""

    ocsp: str
    crl: str


def _signature_hash(key: PrivateKey) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """A CA key and its certificate; every ``issue_*`` method takes the time as an argument.

    ``urls``, when set, go into every leaf certificate as the OCSP responder (authority
    information access) and the CRL distribution point.
    """

    key: PrivateKey
    certificate: x509.Certificate
    urls: RevocationUrls | None = None

    @staticmethod
    def create(
        instance: str,
        *,
        now: dt.datetime,
        lifetime: dt.timedelta,
        key: PrivateKey | None = None,
        generation: int = 1,
    ) -> CertificateAuthority:
        """A new self-signed federation root CA for ``instance``.

        ``key`` may be held in a token (see :class:`pki.Pkcs11Key`); a fresh P-256 key by
        default. ``generation`` numbers roots across rollovers and appears in the name.

        Raises:
            IssuanceRefused: ``now`` has no time zone.
        """
        _check_time(now)
        key = key or generate_key()
        suffix = "" if generation == 1 else f" G{generation}"
        name = _name(
            f"Pintu federation root CA ({instance}){suffix}", "Pintu federation " + instance
        )
        certificate = _ca_certificate(
            name,
            name,
            key.public_key(),
            key,
            path_length=None,
            start=now - _BACKDATE,
            end=now + lifetime,
        )
        return CertificateAuthority(key, certificate)

    def with_urls(self, urls: RevocationUrls) -> CertificateAuthority:
        """The same CA, writing ``urls`` into the leaf certificates it issues."""
        return CertificateAuthority(self.key, self.certificate, urls)

    def _window(self, now: dt.datetime, lifetime: dt.timedelta) -> tuple[dt.datetime, dt.datetime]:
        _check_time(now)
        ca_from, ca_until = (
            self.certificate.not_valid_before_utc,
            self.certificate.not_valid_after_utc,
        )
        if not ca_from <= now < ca_until:
            raise IssuanceRefused(
                f"the CA is valid from {ca_from:%Y-%m-%d %H:%M:%S} to {ca_until:%Y-%m-%d %H:%M:%S}"
                f" UTC, not at {now.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC"
            )
        # Backdate a little for clock differences, but never by much of a short lifetime.
        backdate = min(_BACKDATE, lifetime / 10)
        return max(now - backdate, ca_from), min(now + lifetime, ca_until)

    def issue_intermediate(
        self,
        common_name: str,
        public_key: PublicKey,
        *,
        now: dt.datetime,
        lifetime: dt.timedelta,
    ) -> x509.Certificate:
        """An issuing CA certificate under this (root) CA: it may issue leaves only."""
        start, end = self._window(now, lifetime)
        return _ca_certificate(
            _name(common_name, _organization(self.certificate)),
            self.certificate.subject,
            public_key,
            self.key,
            path_length=0,
            start=start,
            end=end,
            issuer_key=self.key.public_key(),
        )

    def cross_certify(
        self, root: x509.Certificate, *, now: dt.datetime, lifetime: dt.timedelta
    ) -> x509.Certificate:
        """A cross-certificate: another root's name and key, certified by this root.

        A relying party that trusts this root can check the other root with it before trusting
        the other root in turn (root rollover).
        """
        start, end = self._window(now, lifetime)
        public = root.public_key()
        if not isinstance(
            public, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey
        ):
            raise IssuanceRefused("unsupported root key type")
        return _ca_certificate(
            root.subject,
            self.certificate.subject,
            public,
            self.key,
            path_length=None,
            start=start,
            end=end,
            issuer_key=self.key.public_key(),
        )

    def issue_ocsp_signer(
        self, public_key: PublicKey, *, now: dt.datetime, lifetime: dt.timedelta
    ) -> x509.Certificate:
        """A delegated OCSP signing certificate for this (issuing) CA (RFC 6960 4.2.2.2).

        It carries id-pkix-ocsp-nocheck: relying parties do not check its own revocation, so its
        lifetime should stay short.
        """
        start, end = self._window(now, lifetime)
        builder = (
            x509.CertificateBuilder()
            .subject_name(
                _name(
                    f"{_common_name(self.certificate)} OCSP responder",
                    _organization(self.certificate),
                )
            )
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, **_NO_KEY_USAGE), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False
            )
            .add_extension(x509.OCSPNoCheck(), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        return builder.sign(self.key, _signature_hash(self.key))

    @staticmethod
    def load(key: Path, certificate: Path, passphrase: bytes | None = None) -> CertificateAuthority:
        """Load a CA from its PEM key and certificate.

        Raises:
            KeyMaterialError: unreadable files, or a key that does not match the certificate.
        """
        private_key = load_private_key(key, passphrase)
        cert = load_certificates(certificate)[0]
        if cert.public_key() != private_key.public_key():
            raise KeyMaterialError(f"CA key {key} does not match certificate {certificate}")
        try:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.ca:
            raise KeyMaterialError(f"certificate {certificate} is not a CA certificate")
        return CertificateAuthority(private_key, cert)

    def save(self, key: Path, certificate: Path, passphrase: bytes | None = None) -> None:
        """Write the key (owner-only, encrypted when a passphrase is given) and the certificate."""
        write_private(key, key_pem(self.key, passphrase))
        write_public(certificate, certificate_pem(self.certificate))

    def _leaf(
        self,
        subject: x509.Name,
        public_key: PublicKey,
        sans: Iterable[x509.GeneralName],
        usage: x509.KeyUsage,
        extended: list[x509.ObjectIdentifier],
        now: dt.datetime,
        lifetime: dt.timedelta,
    ) -> x509.Certificate:
        start, end = self._window(now, lifetime)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage(extended), critical=False)
        )
        if self.urls is not None:
            builder = builder.add_extension(
                x509.AuthorityInformationAccess(
                    [
                        x509.AccessDescription(
                            AuthorityInformationAccessOID.OCSP,
                            x509.UniformResourceIdentifier(self.urls.ocsp),
                        )
                    ]
                ),
                critical=False,
            ).add_extension(
                x509.CRLDistributionPoints(
                    [
                        x509.DistributionPoint(
                            [x509.UniformResourceIdentifier(self.urls.crl)], None, None, None
                        )
                    ]
                ),
                critical=False,
            )
        return builder.sign(self.key, _signature_hash(self.key))

    def issue_server_certificate(
        self,
        server: SecurityServerId,
        public_key: PublicKey,
        *,
        now: dt.datetime,
        lifetime: dt.timedelta,
    ) -> x509.Certificate:
        """A security server's authentication certificate (TLS client and server)."""
        return self._leaf(
            _name(str(server), str(server.owner)),
            public_key,
            [
                x509.UniformResourceIdentifier(server.uri),
                x509.DNSName(tls_server_name(server)),
            ],
            x509.KeyUsage(digital_signature=True, **_NO_KEY_USAGE),
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            now,
            lifetime,
        )

    def issue_signing_certificate(
        self,
        member: MemberId,
        public_key: PublicKey,
        *,
        now: dt.datetime,
        lifetime: dt.timedelta,
    ) -> x509.Certificate:
        """A member's signing certificate (digitalSignature + nonRepudiation, document signing).

        The explicit extended key usage (RFC 9336 document signing) keeps TLS stacks from
        accepting it for client or server authentication.
        """
        return self._leaf(
            _name(str(member), str(member)),
            public_key,
            [x509.UniformResourceIdentifier(member.uri)],
            x509.KeyUsage(digital_signature=True, **{**_NO_KEY_USAGE, "content_commitment": True}),
            [DOCUMENT_SIGNING],
            now,
            lifetime,
        )

    def issue_client_certificate(
        self,
        subsystem: SubsystemId,
        public_key: PublicKey,
        *,
        now: dt.datetime,
        lifetime: dt.timedelta,
    ) -> x509.Certificate:
        """An agency system's TLS client certificate for its own gateway's agency listener."""
        return self._leaf(
            _name(str(subsystem), str(subsystem.member)),
            public_key,
            [x509.UniformResourceIdentifier(subsystem.uri)],
            x509.KeyUsage(digital_signature=True, **_NO_KEY_USAGE),
            [ExtendedKeyUsageOID.CLIENT_AUTH],
            now,
            lifetime,
        )

    def issue_configuration_signing_certificate(
        self,
        registry: RegistryId,
        public_key: PublicKey,
        *,
        now: dt.datetime,
        lifetime: dt.timedelta,
    ) -> x509.Certificate:
        """The registry's certificate for signing global configurations: URI SAN
        ``urn:pintu:registry:<instance>``, extended key usage :data:`CONFIGURATION_SIGNING`."""
        return self._leaf(
            _name(f"Pintu registry ({registry})", f"Pintu federation {registry}"),
            public_key,
            [x509.UniformResourceIdentifier(registry.uri)],
            x509.KeyUsage(digital_signature=True, **_NO_KEY_USAGE),
            [CONFIGURATION_SIGNING],
            now,
            lifetime,
        )

    def issue_operator_certificate(
        self,
        operator: OperatorId,
        public_key: PublicKey,
        *,
        now: dt.datetime,
        lifetime: dt.timedelta,
    ) -> x509.Certificate:
        """An operator's TLS client certificate for the registry's management service."""
        return self._leaf(
            _name(f"operator {operator}"),
            public_key,
            [x509.UniformResourceIdentifier(operator.uri)],
            x509.KeyUsage(digital_signature=True, **_NO_KEY_USAGE),
            [ExtendedKeyUsageOID.CLIENT_AUTH],
            now,
            lifetime,
        )

    def issue_service_certificate(
        self,
        label: str,
        names: Iterable[str],
        public_key: PublicKey,
        *,
        now: dt.datetime,
        lifetime: dt.timedelta,
        reserved: Iterable[str] = (),
    ) -> x509.Certificate:
        """A TLS server certificate for one of the federation's own services (the CA service,
        the registry), valid for ``names``; ``reserved`` may add the service's own name under
        ``.pintu.invalid`` (``ca.pintu.invalid``), never a security server's.

        Raises:
            IssuanceRefused: any other name under ``.pintu.invalid``.
        """
        own = list(reserved)
        if any(name.startswith("s-") for name in own):
            raise IssuanceRefused("security servers' names are not for services")
        sans: list[x509.GeneralName] = [x509.DNSName(name) for name in own]
        sans += _tls_names(names)
        return self._leaf(
            _name(label, _organization(self.certificate)),
            public_key,
            sans,
            x509.KeyUsage(digital_signature=True, **_NO_KEY_USAGE),
            [ExtendedKeyUsageOID.SERVER_AUTH],
            now,
            lifetime,
        )

    def issue_listener_certificate(
        self,
        server: SecurityServerId,
        names: Iterable[str],
        public_key: PublicKey,
        *,
        now: dt.datetime,
        lifetime: dt.timedelta,
    ) -> x509.Certificate:
        """A TLS server certificate for a gateway's agency listener, valid for ``names``.

        ``names`` are DNS names or IP addresses the agency systems use to reach the listener.

        Raises:
            IssuanceRefused: a name under ``.pintu.invalid``, reserved for authentication
                certificates (it would let the holder pose as a security server).
        """
        sans = _tls_names(names)
        sans.append(x509.UniformResourceIdentifier(server.uri))
        return self._leaf(
            _name(f"{server} agency listener", str(server.owner)),
            public_key,
            sans,
            x509.KeyUsage(digital_signature=True, **_NO_KEY_USAGE),
            [ExtendedKeyUsageOID.SERVER_AUTH],
            now,
            lifetime,
        )
