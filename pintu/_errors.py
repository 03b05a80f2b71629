"""Errors of the ``pintu`` command.

::

    PintuError               (code: pintu_error)
    ├── ConfigError          (code: config_invalid)     a configuration file names a bad value
    └── FederationError      (code: federation_failed)  a local federation could not start or died
"""

from __future__ import annotations

from typing import ClassVar


class PintuError(Exception):
    """Root of the errors the ``pintu`` command reports; ``code`` is stable."""

    code: ClassVar[str] = "pintu_error"


class ConfigError(PintuError):
    """A configuration file is unreadable or a value in it is invalid; the message names it."""

    code: ClassVar[str] = "config_invalid"


class FederationError(PintuError):
    """A local federation could not be prepared or started, or one of its processes died."""

    code: ClassVar[str] = "federation_failed"
