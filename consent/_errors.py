"""Errors raised by ``consent``.

::

    ConsentError                  consent_error
    ├── ConsentInvalid            consent_invalid: a malformed consent or request
    │   ├── ValidityInvalid       consent_validity_invalid: ends before it starts, no time zone
    │   ├── ServiceUnknown        consent_service_unknown: a service not in the registry
    │   ├── PurposeNotServed      consent_purpose_not_served: a purpose the services do not serve
    │   └── AccessInvalid         consent_access_invalid: a malformed access event, or too many
    ├── ConsentNotFound           consent_not_found
    ├── TransitionRefused         consent_transition_invalid: pause a paused one, resume an
    │   │                         active one
    │   ├── AlreadyRevoked        consent_already_revoked: a revoked consent never changes again
    │   └── ConsentExpired        consent_expired: an expired consent never changes again
    ├── RequestConflict           consent_request_conflict: a request id reused for another request
    ├── ReceiptInvalid            consent_receipt_invalid: tampered, or signed by an unknown key
    ├── CallerNotAllowed          consent_caller_not_allowed: the caller may not do this
    ├── PseudonymKeyMissing       consent_pseudonym_key_missing: no key to find a citizen's
    │                             access history with
    └── ConsentUnavailable        consent_unavailable: the store cannot be read or written
"""

from __future__ import annotations

from typing import ClassVar


class ConsentError(Exception):
    """Root of every error raised by ``consent``; ``code`` is stable."""

    code: ClassVar[str] = "consent_error"


class ConsentInvalid(ConsentError):
    """A consent or request that is malformed; the message names the field."""

    code: ClassVar[str] = "consent_invalid"


class ValidityInvalid(ConsentInvalid):
    """A validity that ends before it starts, or times without a time zone."""

    code: ClassVar[str] = "consent_validity_invalid"


class ServiceUnknown(ConsentInvalid):
    """A consent for a service (or data categories) the registry does not know."""

    code: ClassVar[str] = "consent_service_unknown"


class PurposeNotServed(ConsentInvalid):
    """A consent for a purpose none of its services serves."""

    code: ClassVar[str] = "consent_purpose_not_served"


class AccessInvalid(ConsentInvalid):
    """A malformed access event, or a report of more events than one request may carry; the
    message names the event and the field. Nothing of the report is recorded."""

    code: ClassVar[str] = "consent_access_invalid"


class ConsentNotFound(ConsentError):
    """No consent with that id (for that subject)."""

    code: ClassVar[str] = "consent_not_found"


class TransitionRefused(ConsentError):
    """A status change the consent's current status does not allow."""

    code: ClassVar[str] = "consent_transition_invalid"


class AlreadyRevoked(TransitionRefused):
    """A revoked consent never changes again."""

    code: ClassVar[str] = "consent_already_revoked"


class ConsentExpired(TransitionRefused):
    """An expired consent never changes again."""

    code: ClassVar[str] = "consent_expired"


class RequestConflict(ConsentError):
    """A request id already used for a different request."""

    code: ClassVar[str] = "consent_request_conflict"


class ReceiptInvalid(ConsentError):
    """A receipt that must not be trusted: altered, or not signed by the consent service."""

    code: ClassVar[str] = "consent_receipt_invalid"


class CallerNotAllowed(ConsentError):
    """The caller's certificate does not allow the call."""

    code: ClassVar[str] = "consent_caller_not_allowed"


class PseudonymKeyMissing(ConsentError):
    """The service holds no pseudonym key, so it cannot find a citizen's access history (which
    is stored by pseudonym only)."""

    code: ClassVar[str] = "consent_pseudonym_key_missing"


class ConsentUnavailable(ConsentError):
    """The consent store cannot be read or written."""

    code: ClassVar[str] = "consent_unavailable"
