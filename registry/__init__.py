"""The federation's registry: members, subsystems, security servers and services.

The registry's content is the global configuration every security server routes and
authenticates from. Operators change it through the registry service (:class:`RegistryService`,
``pintu registry ...``); it is stored in SQLite or PostgreSQL (:class:`RegistryStore`, with
Alembic migrations) and distributed as a signed, versioned, expiring snapshot
(:func:`sign_snapshot`, :class:`SnapshotVerifier`). Security servers bootstrap from an
:class:`Anchor` and keep their copy fresh with :class:`ConfigurationClient`.
"""

from registry._changes import (
    apply_changes,
    certificate_fingerprint,
    describe,
    descriptor_set,
    import_changes,
)
from registry._client import (
    Anchor,
    ConfigurationClient,
    RegistryClient,
    RegistryRefusal,
)
from registry._errors import (
    ChangeRefused,
    ConfigurationExpired,
    ConfigurationMalformed,
    ConfigurationRollback,
    ConfigurationSignatureInvalid,
    ConfigurationSignerUntrusted,
    GlobalConfigurationInvalid,
    OperatorNotAuthorized,
    RegistryError,
    RegistryUnavailable,
)
from registry._global_configuration import (
    GlobalConfiguration,
    GlobalGroup,
    Member,
    SecurityServer,
    Service,
    parse_address,
)
from registry._service import ADMIN, ROLES, VIEWER, RegistryService, RegistrySettings
from registry._snapshot import (
    SnapshotVerifier,
    VerifiedSnapshot,
    accept,
    from_content,
    sign_snapshot,
    snapshot_tag,
    state_hash,
    to_content,
)
from registry._source import ConfigurationSource, StaticConfiguration, Subscriber
from registry._store import JournalRecord, RegistryStore, StoredSnapshot

__all__ = [
    "ADMIN",
    "ROLES",
    "VIEWER",
    "Anchor",
    "ChangeRefused",
    "ConfigurationClient",
    "ConfigurationExpired",
    "ConfigurationMalformed",
    "ConfigurationRollback",
    "ConfigurationSignatureInvalid",
    "ConfigurationSignerUntrusted",
    "ConfigurationSource",
    "GlobalConfiguration",
    "GlobalConfigurationInvalid",
    "GlobalGroup",
    "JournalRecord",
    "Member",
    "OperatorNotAuthorized",
    "RegistryClient",
    "RegistryError",
    "RegistryRefusal",
    "RegistryService",
    "RegistrySettings",
    "RegistryStore",
    "RegistryUnavailable",
    "SecurityServer",
    "Service",
    "SnapshotVerifier",
    "StaticConfiguration",
    "StoredSnapshot",
    "Subscriber",
    "VerifiedSnapshot",
    "accept",
    "apply_changes",
    "certificate_fingerprint",
    "describe",
    "descriptor_set",
    "from_content",
    "import_changes",
    "parse_address",
    "sign_snapshot",
    "snapshot_tag",
    "state_hash",
    "to_content",
]
