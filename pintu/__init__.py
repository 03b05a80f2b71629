"""Pintu's composition root: the ``pintu`` command, configuration files, ``up`` and ``demo``.

Nothing imports this package; it builds the other packages' objects from files and runs them.
"""

from pintu._config import load_gateway_settings
from pintu._errors import ConfigError, FederationError, PintuError
from pintu._federation import LocalFederation
from pintu._ports import free_port

__all__ = [
    "ConfigError",
    "FederationError",
    "LocalFederation",
    "PintuError",
    "free_port",
    "load_gateway_settings",
]
