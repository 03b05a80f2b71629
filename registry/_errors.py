"""Errors raised by ``registry``.

::

    RegistryError                         registry_error
    ├── GlobalConfigurationInvalid        global_configuration_invalid: inconsistent content
    │   ├── ConfigurationMalformed        configuration_malformed: unparsable snapshot or anchor
    │   ├── ConfigurationSignatureInvalid configuration_signature_invalid: the signature fails
    │   ├── ConfigurationSignerUntrusted  configuration_signer_untrusted: unknown, expired or
    │   │                                 unsuitable signing certificate
    │   ├── ConfigurationExpired          configuration_expired: past its expiry
    │   └── ConfigurationRollback         configuration_rollback: older than the one in use
    ├── RegistryUnavailable               registry_unavailable: cannot be reached or stored
    ├── ChangeRefused                     change_refused: a registry change that contradicts it
    └── OperatorNotAuthorized             operator_not_authorized: the caller's role forbids it
"""

from __future__ import annotations

from typing import ClassVar


class RegistryError(Exception):
    """Root of every error raised by ``registry``; ``code`` is stable."""

    code: ClassVar[str] = "registry_error"


class GlobalConfigurationInvalid(RegistryError):
    """The global configuration's content is inconsistent; the message names the field."""

    code: ClassVar[str] = "global_configuration_invalid"


class ConfigurationMalformed(GlobalConfigurationInvalid):
    """A signed snapshot (or an anchor file) that cannot be parsed."""

    code: ClassVar[str] = "configuration_malformed"


class ConfigurationSignatureInvalid(GlobalConfigurationInvalid):
    """The snapshot's signature does not verify with its signing certificate."""

    code: ClassVar[str] = "configuration_signature_invalid"


class ConfigurationSignerUntrusted(GlobalConfigurationInvalid):
    """The signing certificate is not a valid configuration-signing certificate of the
    federation (unknown issuer, expired, wrong usage or identity)."""

    code: ClassVar[str] = "configuration_signer_untrusted"


class ConfigurationExpired(GlobalConfigurationInvalid):
    """The snapshot is past its expiry."""

    code: ClassVar[str] = "configuration_expired"


class ConfigurationRollback(GlobalConfigurationInvalid):
    """The snapshot is older than the configuration in use (or conflicts with its version)."""

    code: ClassVar[str] = "configuration_rollback"


class RegistryUnavailable(RegistryError):
    """The registry cannot be reached, or its storage failed."""

    code: ClassVar[str] = "registry_unavailable"


class ChangeRefused(RegistryError):
    """A change the registry refuses: it would contradict the registry or names unknown parts."""

    code: ClassVar[str] = "change_refused"


class OperatorNotAuthorized(RegistryError):
    """The caller is not an operator, or its role does not allow the request."""

    code: ClassVar[str] = "operator_not_authorized"
