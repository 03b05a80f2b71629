"""Errors raised by ``registry``.

::

    RegistryError                     (code: registry_error)
    └── GlobalConfigurationInvalid    (code: global_configuration_invalid)
"""

from __future__ import annotations

from typing import ClassVar


class RegistryError(Exception):
    """Root of every error raised by ``registry``; ``code`` is stable."""

    code: ClassVar[str] = "registry_error"


class GlobalConfigurationInvalid(RegistryError):
    """The global configuration document is malformed; the message names the field."""

    code: ClassVar[str] = "global_configuration_invalid"
