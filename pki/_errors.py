"""Errors raised by ``pki``.

::

    PkiError                     pki_error
    ├── KeyMaterialError         key_material_invalid: unreadable or unsuitable key or certificate
    ├── CertificateIdentityError certificate_identity_invalid: no usable Pintu identity SAN
    └── IssuanceRefused          issuance_refused: the CA cannot issue (expired, naive time)
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
