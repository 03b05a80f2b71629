"""Pintu's contracts: the ``pintu.v1`` protobuf messages and the federation's identifiers.

Generated modules live in ``proto.pintu.v1`` (regenerate with ``make proto``); this package adds the
one strict parser for identifiers (see ``proto._identifiers`` for the grammar).
"""

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
    PartyId,
    SecurityServerId,
    ServiceId,
    SubsystemId,
    parse_identity_uri,
    parse_purpose,
    parse_reference,
    parse_subject,
)

__all__ = [
    "MAX_METHOD_NAME_LENGTH",
    "MAX_PART_LENGTH",
    "MAX_REFERENCE_LENGTH",
    "MAX_SERVICE_NAME_LENGTH",
    "MAX_SUBJECT_LENGTH",
    "IdentifierError",
    "IdentifierProblem",
    "MemberId",
    "MethodPath",
    "PartyId",
    "SecurityServerId",
    "ServiceId",
    "SubsystemId",
    "parse_identity_uri",
    "parse_purpose",
    "parse_reference",
    "parse_subject",
]
