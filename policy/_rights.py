"""A provider's access rights, looked up in Python so that the engine sees only those that apply.

Rights are held by a subsystem (``subsystem:INSTANCE/CLASS/MEMBER/SUBSYSTEM``), a global group of
the registry (``group:CODE``) or one of the provider's local groups (``local:CODE``), for a service
(``package.Service``) and some of its methods (none: all). Looking up what applies to one
exchange costs a few dictionary look-ups whatever the number of rights.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policy._errors import PolicyError
from policy._model import Right

HOLDER_KINDS = ("subsystem", "group", "local")


@dataclass(frozen=True, slots=True)
class Grant:
    """One access right: ``holder`` may call ``service`` (``methods``; none: all)."""

    service: str
    holder: str
    methods: tuple[str, ...] = ()


class AccessRights:
    """Grants indexed by (service, holder), and the provider's local groups."""

    def __init__(
        self, grants: Iterable[Grant], local_groups: Mapping[str, Iterable[str]] | None = None
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

    def __len__(self) -> int:
        return len(self._index)

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
             "rights": [{"service": "popreg.v1.CivilRegistry",
                         "holder": "local:caseworkers", "methods": ["GetPerson"]}]}

        Raises:
            PolicyError: unreadable, or not of that shape.
        """
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise PolicyError(f"access rights {path}: {error}") from None
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
        return AccessRights(grants, groups)
