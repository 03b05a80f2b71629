"""The security server (gateway): one process type serving both the consumer and provider roles.

Agency systems call their own security server with ordinary gRPC stubs and ``pintu-*`` metadata;
security servers talk to each other over mTLS with certificates from the federation's CA; each
provider's security server forwards to the agency backend that implements the service. Payloads
are relayed as raw bytes, never deserialized.
"""

from gateway._errors import (
    ERROR_CODE_KEY,
    ERROR_DETAIL_KEY,
    ERROR_ORIGIN_KEY,
    MESSAGE_ID_KEY,
    ErrorCode,
    GatewayError,
    Origin,
    SettingsError,
)
from gateway._metadata import (
    CLIENT_KEY,
    ISSUE_KEY,
    PROVIDER_KEY,
    PURPOSE_KEY,
    SUBJECT_KEY,
    USER_KEY,
)
from gateway._server import SecurityServer, security_server
from gateway._settings import (
    DEFAULT_MAX_MESSAGE_BYTES,
    AgencyListener,
    AuditSettings,
    ConsentReplicaSettings,
    GatewaySettings,
    Limits,
    LocalClient,
    LocalService,
    PolicySettings,
)

__all__ = [
    "CLIENT_KEY",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "ERROR_CODE_KEY",
    "ERROR_DETAIL_KEY",
    "ERROR_ORIGIN_KEY",
    "ISSUE_KEY",
    "MESSAGE_ID_KEY",
    "PROVIDER_KEY",
    "PURPOSE_KEY",
    "SUBJECT_KEY",
    "USER_KEY",
    "AgencyListener",
    "AuditSettings",
    "ConsentReplicaSettings",
    "ErrorCode",
    "GatewayError",
    "GatewaySettings",
    "Limits",
    "LocalClient",
    "LocalService",
    "Origin",
    "PolicySettings",
    "SecurityServer",
    "SettingsError",
    "security_server",
]
