"""Pintu's contracts: the ``pintu.v1`` protobuf messages and the federation's identifiers.

Generated modules live in ``proto.pintu.v1`` (regenerate with ``make proto``); this package adds the
one strict parser for identifiers (see ``proto._identifiers`` for the grammar).
"""

from proto._errors import (
    ERROR_CODE_KEY,
    ERROR_DETAIL_KEY,
    ERROR_ORIGIN_KEY,
    MESSAGE_ID_KEY,
    ORIGIN_LABELS,
    error_trailers,
)
from proto._identifiers import (
    MAX_METHOD_NAME_LENGTH,
    MAX_PART_LENGTH,
    MAX_REFERENCE_LENGTH,
    MAX_SERVICE_NAME_LENGTH,
    MAX_SUBJECT_LENGTH,
    IdentifierError,
    IdentifierProblem,
    MemberId,
    MethodPath,
    OperatorId,
    PartyId,
    RegistryId,
    SecurityServerId,
    ServiceId,
    SubsystemId,
    parse_identity_uri,
    parse_purpose,
    parse_reference,
    parse_subject,
    subject_pseudonym,
)

__all__ = [
    "ERROR_CODE_KEY",
    "ERROR_DETAIL_KEY",
    "ERROR_ORIGIN_KEY",
    "MAX_METHOD_NAME_LENGTH",
    "MAX_PART_LENGTH",
    "MAX_REFERENCE_LENGTH",
    "MAX_SERVICE_NAME_LENGTH",
    "MAX_SUBJECT_LENGTH",
    "MESSAGE_ID_KEY",
    "ORIGIN_LABELS",
    "IdentifierError",
    "IdentifierProblem",
    "MemberId",
    "MethodPath",
    "OperatorId",
    "PartyId",
    "RegistryId",
    "SecurityServerId",
    "ServiceId",
    "SubsystemId",
    "error_trailers",
    "parse_identity_uri",
    "parse_purpose",
    "parse_reference",
    "parse_subject",
    "subject_pseudonym",
]
