"""Citizens' consent: immutable consent records with a status history and signed receipts
(:class:`Consent`, :func:`sign_receipt`, :func:`verify_receipt`), their storage
(:class:`ConsentStore`: SQLite or PostgreSQL), the consent service, the replica each
provider security server enforces from, and the citizens' access history
(:class:`AccessEvent`) that providers' security servers report.
"""

from consent._client import ConsentClient
from consent._convert import (
    access_event_from_proto,
    access_event_to_proto,
    consent_from_proto,
    consent_to_proto,
    detail_from_proto,
    detail_to_proto,
)
from consent._errors import (
    AccessInvalid,
    AlreadyRevoked,
    CallerNotAllowed,
    ConsentError,
    ConsentExpired,
    ConsentInvalid,
    ConsentNotFound,
    ConsentUnavailable,
    PseudonymKeyMissing,
    PurposeNotServed,
    ReceiptInvalid,
    RequestConflict,
    ServiceUnknown,
    TransitionRefused,
    ValidityInvalid,
)
from consent._model import (
    AccessEvent,
    Change,
    Consent,
    ConsentDetail,
    ConsentStatus,
    Provider,
    StatusChange,
    consent_state,
    next_status,
    parse_provider,
)
from consent._receipt import Receipt, sign_receipt, verify_receipt
from consent._replica import ConsentReplica, ReplicaFollower
from consent._service import ConsentService, ConsentSettings
from consent._store import ConsentStore

__all__ = [
    "AccessEvent",
    "AccessInvalid",
    "AlreadyRevoked",
    "CallerNotAllowed",
    "Change",
    "Consent",
    "ConsentClient",
    "ConsentDetail",
    "ConsentError",
    "ConsentExpired",
    "ConsentInvalid",
    "ConsentNotFound",
    "ConsentReplica",
    "ConsentService",
    "ConsentSettings",
    "ConsentStatus",
    "ConsentStore",
    "ConsentUnavailable",
    "Provider",
    "PseudonymKeyMissing",
    "PurposeNotServed",
    "Receipt",
    "ReceiptInvalid",
    "ReplicaFollower",
    "RequestConflict",
    "ServiceUnknown",
    "StatusChange",
    "TransitionRefused",
    "ValidityInvalid",
    "access_event_from_proto",
    "access_event_to_proto",
    "consent_from_proto",
    "consent_state",
    "consent_to_proto",
    "detail_from_proto",
    "detail_to_proto",
    "next_status",
    "parse_provider",
    "sign_receipt",
    "verify_receipt",
]
