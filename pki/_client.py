"""A security server's side of the CA service: enrollment, renewal, trust bundle, OCSP and CRLs.

Private keys are generated here, on the security server, and never sent anywhere: the CA sees
certificate signing requests only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import grpc
import grpc.aio
import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509 import ocsp

from pki._ca import _signature_hash
from pki._errors import KeyMaterialError, PkiError
from pki._keys import PrivateKey, TlsIdentity, certificate_pem, generate_key, key_pem
from proto import ERROR_CODE_KEY, SecurityServerId
from proto.pintu.v1 import ca_pb2

SERVICE_TLS_NAME = "ca.pintu.invalid"
_TIMEOUT = 20.0


class CaUnavailable(PkiError):
    """The CA service could not be reached, or answered with an error of its own."""

    code = "ca_unavailable"


class CaRefused(PkiError):
    """The CA service refused the request; ``reason`` is the CA's stable error code."""

    code = "ca_refused"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


def certificate_request(key: PrivateKey, identity_uri: str) -> bytes:
    """A PKCS#10 request (DER) for ``key``, naming ``identity_uri`` in its SAN."""
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity_uri)]),
            critical=False,
        )
        .sign(key, _signature_hash(key))
        .public_bytes(serialization.Encoding.DER)
    )


@dataclass(frozen=True, slots=True)
class TrustUpdate:
    """The CA's trust bundle as received (not yet accepted: see :func:`accepted_roots`)."""

    roots: tuple[x509.Certificate, ...]
    cross_certificates: tuple[x509.Certificate, ...]
    crl_url: str
    ocsp_url: str
    issuing: tuple[tuple[int, x509.Certificate], ...]
    renewal_address: str


@dataclass(frozen=True, slots=True)
class Credential:
    """A private key with its certificate and chain (issuing CA first)."""

    key: PrivateKey
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]

    @staticmethod
    def of(identity: TlsIdentity) -> Credential:
        """The key and certificates of TLS material.

        Raises:
            KeyMaterialError: the key is not one the CA issues for.
        """
        chain = x509.load_pem_x509_certificates(identity.certificate_chain)
        key = serialization.load_pem_private_key(identity.private_key, None)
        if not isinstance(
            key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
        ):
            raise KeyMaterialError(f"unsupported key type {type(key).__name__}")
        return Credential(key, chain[0], tuple(chain[1:]))

    def identity(self, trust_anchors: bytes) -> TlsIdentity:
        """As TLS material, trusting ``trust_anchors`` (PEM)."""
        return TlsIdentity(
            key_pem(self.key), certificate_pem(self.certificate, *self.chain), trust_anchors
        )


def _trust(bundle: ca_pb2.TrustBundle) -> TrustUpdate:
    return TrustUpdate(
        tuple(x509.load_der_x509_certificate(der) for der in bundle.roots),
        tuple(x509.load_der_x509_certificate(der) for der in bundle.cross_certificates),
        bundle.crl_url,
        bundle.ocsp_url,
        tuple(
            (ca.generation, x509.load_der_x509_certificate(ca.certificate))
            for ca in bundle.issuing_cas
        ),
        bundle.renewal_address,
    )


def _credential(key: PrivateKey, issued: ca_pb2.IssuedCertificate) -> Credential:
    return Credential(
        key,
        x509.load_der_x509_certificate(issued.certificate),
        tuple(x509.load_der_x509_certificate(der) for der in issued.chain),
    )


class CaClient:
    """Calls the CA service at ``address`` over TLS, trusting ``trust_anchors`` (PEM roots).

    Renewal goes to ``renewal_address`` (the CA's mutual-TLS port; the trust bundle names it).
    """

    def __init__(self, address: str, trust_anchors: bytes, renewal_address: str = "") -> None:
        self.address = address
        self.trust_anchors = trust_anchors
        self.renewal_address = renewal_address

    def _channel(self, identity: TlsIdentity | None = None) -> grpc.aio.Channel:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.trust_anchors,
            private_key=identity.private_key if identity else None,
            certificate_chain=identity.certificate_chain if identity else None,
        )
        return grpc.aio.secure_channel(
            self.renewal_address if identity else self.address,
            credentials,
            options=[
                ("grpc.ssl_target_name_override", SERVICE_TLS_NAME),
                ("grpc.use_local_subchannel_pool", 1),
            ],
        )

    async def _call(
        self, method: str, request: bytes, identity: TlsIdentity | None = None
    ) -> bytes:
        channel = self._channel(identity)
        try:
            answer: bytes = await channel.unary_unary(
                f"/pintu.v1.CertificateAuthority/{method}", None, None
            )(request, timeout=_TIMEOUT)
            return answer
        except grpc.aio.AioRpcError as error:
            trailers = cast(Iterable[tuple[str, str | bytes]], error.trailing_metadata() or ())
            code = next((value for key, value in trailers if key == ERROR_CODE_KEY), None)
            if isinstance(code, str):
                raise CaRefused(code, error.details() or code) from None
            raise CaUnavailable(
                f"CA service at {self.address}: {error.code().name}: {error.details()}"
            ) from None
        finally:
            await channel.close(None)

    async def enroll(
        self, token: str, server: SecurityServerId
    ) -> tuple[Credential, Credential, TrustUpdate]:
        """Generate the server's authentication and signing keys here, and have the CA certify
        them with a one-time token.

        Raises:
            CaRefused: the CA refused (its code: ``token_used``, ``csr_identity_mismatch``, ...).
            CaUnavailable: the CA could not be reached.
        """
        authentication, signing = generate_key(), generate_key()
        request = ca_pb2.EnrollRequest(
            token=token,
            authentication_csr=certificate_request(authentication, server.uri),
            signing_csr=certificate_request(signing, server.owner.uri),
        )
        response = ca_pb2.EnrollResponse.FromString(
            await self._call("Enroll", request.SerializeToString())
        )
        return (
            _credential(authentication, response.authentication),
            _credential(signing, response.signing),
            _trust(response.trust),
        )

    async def renew(
        self, current: TlsIdentity, identity_uri: str, *, signing: bool = False
    ) -> tuple[Credential, TrustUpdate]:
        """A new key and certificate, authenticated by the ``current`` authentication identity.

        Raises:
            CaRefused, CaUnavailable: as for :meth:`enroll` (unavailable, too, when the renewal
                address is not known yet).
        """
        if not self.renewal_address:
            raise CaUnavailable("the CA's renewal address is not known (no trust bundle yet)")
        key = generate_key()
        kind = (
            ca_pb2.CERTIFICATE_KIND_SIGNING if signing else ca_pb2.CERTIFICATE_KIND_AUTHENTICATION
        )
        request = ca_pb2.RenewRequest(kind=kind, csr=certificate_request(key, identity_uri))
        response = ca_pb2.RenewResponse.FromString(
            await self._call("Renew", request.SerializeToString(), current)
        )
        return _credential(key, response.certificate), _trust(response.trust)

    async def trust_bundle(self) -> TrustUpdate:
        """The CA's current trust bundle.

        Raises:
            CaRefused, CaUnavailable: as for :meth:`enroll`.
        """
        return _trust(
            ca_pb2.TrustBundle.FromString(
                await self._call(
                    "GetTrustBundle", ca_pb2.GetTrustBundleRequest().SerializeToString()
                )
            )
        )


async def fetch_ocsp(
    http: httpx.AsyncClient, url: str, certificate: x509.Certificate, issuer: x509.Certificate
) -> bytes:
    """The responder's current answer about ``certificate`` (DER), by HTTP POST.

    Raises:
        CaUnavailable: the responder could not be reached or answered badly.
    """
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(certificate, issuer, hashes.SHA1())  # noqa: S303 - what responders index
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    try:
        response = await http.post(
            url, content=request, headers={"Content-Type": "application/ocsp-request"}
        )
    except httpx.HTTPError as error:
        raise CaUnavailable(f"OCSP responder {url}: {error}") from None
    if response.status_code != 200:
        raise CaUnavailable(f"OCSP responder {url}: HTTP {response.status_code}")
    return response.content


async def fetch_crl(http: httpx.AsyncClient, url: str) -> bytes:
    """A CRL (DER) by HTTP GET.

    Raises:
        CaUnavailable: it could not be fetched.
    """
    try:
        response = await http.get(url)
    except httpx.HTTPError as error:
        raise CaUnavailable(f"CRL {url}: {error}") from None
    if response.status_code != 200:
        raise CaUnavailable(f"CRL {url}: HTTP {response.status_code}")
    return response.content
