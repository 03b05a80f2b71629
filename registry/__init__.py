"""The federation's registry: members, subsystems, security servers and services.

Today the registry is the global configuration document every gateway loads at start-up; its
model and validation live here so that the signed, distributed configuration builds on them.
"""

from registry._errors import GlobalConfigurationInvalid, RegistryError
from registry._global_configuration import (
    GlobalConfiguration,
    Member,
    SecurityServer,
    Service,
    parse_address,
)

__all__ = [
    "GlobalConfiguration",
    "GlobalConfigurationInvalid",
    "Member",
    "RegistryError",
    "SecurityServer",
    "Service",
    "parse_address",
]
