"""A provider's access rights, looked up in Python so that the engine sees only those that apply.

Rights are held by a subsystem (``subsystem:INSTANCE/CLASS/MEMBER/SUBSYSTEM``), a global group of
the registry (``group:CODE``) or one of the provider's local groups (``local:CODE``), for a service
and some of its methods (none: all). A security server names services by their full identifier
(``INSTANCE/CLASS/MEMBER/SUBSYSTEM/package.Service``); the lookup itself treats the name as an
opaque key. The same file holds the service's closed windows (maintenance). Looking up what
applies to one exchange costs a few dictionary look-ups whatever the number of rights.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policy._errors import PolicyError
from policy._model import CODE_CHARACTERS, Right, Window, nanoseconds

HOLDER_KINDS = ("subsystem", "group", "local")


@dataclass(frozen=True, slots=True)
class Grant:
    """One access right: ``holder`` may call ``service`` (``methods``; none: all)."""

    service: str
    holder: str
    methods: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    """A time in which ``service`` is closed (``until`` excluded), e.g. for maintenance."""

    service: str
    start: dt.datetime
    until: dt.datetime
    reason: str = "maintenance"


class AccessRights:
    """Grants indexed by (service, holder), the provider's local groups, and closed windows."""

    def __init__(
        self,
        grants: Iterable[Grant],
        local_groups: Mapping[str, Iterable[str]] | None = None,
        windows: Iterable[ClosedWindow] = (),
    ) -> None:
        index: dict[tuple[str, str], set[str] | None] = {}
        for grant in grants:
            kind, _, name = grant.holder.partition(":")
            if kind not in HOLDER_KINDS or not name:
                raise PolicyError(
                    f"right for {grant.service}: holder {grant.holder!r} is not"
                    f" {' | '.join(k + ':NAME' for k in HOLDER_KINDS)}"
                )
            key = (grant.service, grant.holder)
            known = index.get(key, set())
            # Every method (None) absorbs any list of methods.
            index[key] = None if known is None or not grant.methods else known | set(grant.methods)
        self._index = {
            key: () if methods is None else tuple(sorted(methods)) for key, methods in index.items()
        }
        groups_of: dict[str, set[str]] = {}
        for code, members in (local_groups or {}).items():
            for member in members:
                groups_of.setdefault(member, set()).add(code)
        self._groups_of = {member: tuple(sorted(codes)) for member, codes in groups_of.items()}
        closed: dict[str, list[Window]] = {}
        for window in windows:
            if window.until <= window.start:
                raise PolicyError(f"window of {window.service}: it must end after it starts")
            closed.setdefault(window.service, []).append(
                Window(nanoseconds(window.start), nanoseconds(window.until), window.reason)
            )
        self._windows = {
            service: tuple(sorted(found, key=lambda w: w.from_ns))
            for service, found in closed.items()
        }

    def __len__(self) -> int:
        return len(self._index)

    @property
    def services(self) -> frozenset[str]:
        """Every service named by a right or a window."""
        return frozenset(service for service, _ in self._index) | frozenset(self._windows)

    def windows_for(self, service: str) -> tuple[Window, ...]:
        """The closed windows of ``service``, earliest first."""
        return self._windows.get(service, ())

    def holds_any(self, client: str, client_groups: Iterable[str], service: str) -> bool:
        """Whether ``client`` holds some right on ``service`` (for the list of allowed services)."""
        return bool(self.applicable(client, client_groups, service))

    def local_groups_of(self, client: str) -> tuple[str, ...]:
        """The provider's local groups ``client`` belongs to."""
        return self._groups_of.get(client, ())

    def applicable(
        self, client: str, client_groups: Iterable[str], service: str
    ) -> tuple[Right, ...]:
        """The rights on ``service`` that ``client`` holds itself or through a group."""
        holders = [
            f"subsystem:{client}",
            *(f"group:{code}" for code in sorted(client_groups)),
            *(f"local:{code}" for code in self.local_groups_of(client)),
        ]
        found = []
        for holder in holders:
            methods = self._index.get((service, holder))
            if methods is not None:
                found.append(Right(holder, methods))
        return tuple(found)

    @staticmethod
    def load(path: Path) -> AccessRights:
        """Rights from a JSON file::

            {"local_groups": {"caseworkers": ["DEMO/GOV/WELFARE/birthsupport"]},
             "rights": [{"service": "DEMO/GOV/POPREG/civilregistry/popreg.v1.CivilRegistry",
                         "holder": "local:caseworkers", "methods": ["GetPerson"]}],
             "windows": [{"service": "DEMO/GOV/POPREG/civilregistry/popreg.v1.CivilRegistry",
                          "from": "2026-12-01T01:00:00Z", "until": "2026-12-01T03:00:00Z",
                          "reason": "maintenance"}]}

        Times need a time zone (``Z`` or an offset).

        Raises:
            PolicyError: unreadable, or not of that shape.
        """
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise PolicyError(f"access rights {path}: {error}") from None
        except RecursionError:
            raise PolicyError(f"access rights {path}: nested too deeply (RecursionError)") from None
        return AccessRights.from_json(document, str(path))

    @staticmethod
    def from_json(document: Any, where: str = "access rights") -> AccessRights:
        """Rights from the document :meth:`load` reads."""
        if not isinstance(document, dict):
            raise PolicyError(f"{where}: expected an object")
        groups = document.get("local_groups", {})
        if not isinstance(groups, dict) or not all(
            isinstance(m, list) and all(isinstance(s, str) for s in m) for m in groups.values()
        ):
            raise PolicyError(f"{where}: local_groups must map codes to lists of subsystems")
        grants = []
        items = document.get("rights", [])
        if not isinstance(items, list):
            raise PolicyError(f"{where}: rights must be a list")
        for position, item in enumerate(items):
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("service"), str)
                or not isinstance(item.get("holder"), str)
                or not isinstance(item.get("methods", []), list)
                or not all(isinstance(m, str) for m in item.get("methods", []))
            ):
                raise PolicyError(
                    f"{where}: rights[{position}] needs service and holder (strings) and"
                    " methods (a list of strings)"
                )
            kind, _, name = item["holder"].partition(":")
            if kind not in HOLDER_KINDS or not name:
                raise PolicyError(
                    f"{where}: rights[{position}].holder: {item['holder']!r} is not"
                    f" {' | '.join(k + ':NAME' for k in HOLDER_KINDS)}"
                )
            grants.append(Grant(item["service"], item["holder"], tuple(item.get("methods", []))))
        unknown = sorted(set(document) - {"local_groups", "rights", "windows"})
        if unknown:
            raise PolicyError(f"{where}: unknown key {unknown[0]!r}")
        return AccessRights(grants, groups, _windows(document.get("windows", []), where))


def _windows(items: object, where: str) -> list[ClosedWindow]:
    if not isinstance(items, list):
        raise PolicyError(f"{where}: windows must be a list")
    windows = []
    for position, item in enumerate(items):
        at = f"{where}: windows[{position}]"
        if not isinstance(item, dict) or not all(
            isinstance(item.get(key), str) for key in ("service", "from", "until")
        ):
            raise PolicyError(f"{at} needs service, from and until (strings)")
        reason = item.get("reason", "maintenance")
        if not isinstance(reason, str) or not reason or set(reason) - CODE_CHARACTERS:
            raise PolicyError(f"{at}.reason: a code of a-z, 0-9 and _ is expected")
        moments = []
        for key in ("from", "until"):
            try:
                moment = dt.datetime.fromisoformat(item[key])
            except ValueError:
                raise PolicyError(f"{at}.{key}: not an ISO 8601 time: {item[key]!r}") from None
            if moment.tzinfo is None:
                raise PolicyError(f"{at}.{key}: a time zone is required (Z or +HH:MM)")
            if not 1970 <= moment.year <= 2261:  # what the input's window bounds can hold
                raise PolicyError(f"{at}.{key}: must lie between the years 1970 and 2261")
            moments.append(moment)
        if moments[1] <= moments[0]:
            raise PolicyError(f"{at}: until must come after from")
        windows.append(ClosedWindow(item["service"], moments[0], moments[1], reason))
    return windows
