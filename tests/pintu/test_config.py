"""The security server's configuration file: what a valid file builds, and how each fault is named.

Every test builds its own site in ``tmp_path``: a federation CA, a second CA for agency clients,
the keys and certificates, the registry's anchor (``shared/anchor.json``), a signed snapshot of
the global configuration in the cache, and the TOML file (rendered from a dict, so a test changes
one setting and states which). The anchor's distribution address is a closed port on 127.0.0.1:
a valid cache needs no download, and an accidental one fails at once. A refused file must raise
``ConfigError`` (``config_invalid``) whose message starts with ``<file>: <setting>: ``.
"""

from __future__ import annotations

import copy
import datetime as dt
import http.server
import json
import math
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import pintu
import pki
from gateway import AgencyListener, Limits, LocalClient, LocalService
from proto import RegistryId, SecurityServerId, ServiceId, SubsystemId
from registry import (
    Anchor,
    ConfigurationClient,
    GlobalConfiguration,
    sign_snapshot,
    to_content,
)

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
# The CAs date from a day ago, so that a snapshot built (and signed) two hours ago is possible.
EARLIER = NOW - dt.timedelta(days=1)
LIFETIME = dt.timedelta(days=30)
VERSION = 7
KIB = 1024
GIB = 1024 * 1024 * 1024

SERVER = "DEMO/GOV/POPREG/ss1"
CIVIL_REGISTRY = "DEMO/GOV/POPREG/civilregistry"
ARCHIVE = "DEMO/GOV/POPREG/archive"
CIVIL_REGISTRY_SERVICE = f"{CIVIL_REGISTRY}/popreg.v1.CivilRegistry"
ARCHIVE_SERVICE = f"{ARCHIVE}/popreg.v1.Archive"
TAX_SUBSYSTEM = "DEMO/GOV/TAX/assessment"
TAX_SERVICE = f"{TAX_SUBSYSTEM}/tax.v1.Assessment"
DEFAULT_CACHE = "global-configuration.pb"
SNAPSHOT_PATH = "/global-configuration"

# Written as GlobalConfiguration.to_json() writes it, so the loaded one can be compared whole.
GLOBAL_CONFIGURATION: dict[str, Any] = {
    "version": 1,
    "instance": "DEMO",
    "members": [
        {
            "id": "DEMO/GOV/POPREG",
            "name": "Population Registry",
            "subsystems": ["archive", "civilregistry"],
        },
        {"id": "DEMO/GOV/TAX", "name": "Tax Board", "subsystems": ["assessment"]},
    ],
    "security_servers": [
        {
            "id": SERVER,
            "addresses": ["127.0.0.1:7103"],
            "certificates_sha256": [],
            "subsystems": [],
        },
        {
            "id": "DEMO/GOV/TAX/ss1",
            "addresses": ["127.0.0.1:7203", "localhost:7204"],
            "certificates_sha256": [],
            "subsystems": ["assessment"],
        },
    ],
    "services": [
        {
            "id": CIVIL_REGISTRY_SERVICE,
            "methods": ["GetPerson"],
            "description": "People",
            "personal_data": True,
            "data_categories": ["identity", "address"],
            "purposes": ["birth-support"],
            "consent_required": True,
            "legal_basis": "",
        },
        {
            "id": ARCHIVE_SERVICE,
            "methods": ["GetRecord"],
            "description": "Old records",
            "personal_data": False,
            "data_categories": [],
            "purposes": [],
            "consent_required": False,
            "legal_basis": "",
        },
        {
            "id": TAX_SERVICE,
            "methods": ["Assess"],
            "description": "Tax",
            "personal_data": False,
            "data_categories": [],
            "purposes": [],
            "consent_required": False,
            "legal_basis": "",
        },
    ],
    "global_groups": [
        {"code": "registries", "description": "Registers", "members": [ARCHIVE, CIVIL_REGISTRY]}
    ],
}


def valid_document() -> dict[str, Any]:
    """A complete configuration; paths are relative to the site folder (``gateway.toml``'s)."""
    return {
        "server": SERVER,
        "registry": {
            "anchor": "../shared/anchor.json",
            "cache": "state/global-configuration.pb",
            "poll_seconds": 5,
            "propagation_seconds": 20,
        },
        "peer": {
            "listen": "127.0.0.1:7103",
            "key": "keys/auth.key",
            "certificate": "keys/auth.pem",
            "trust_anchors": "pki/federation-root-ca.pem",
        },
        "agency": {
            "listen": "127.0.0.1:7101",
            "tls_listen": "localhost:7102",
            "tls_key": "keys/agency-tls.key",
            "tls_certificate": "keys/agency-tls.pem",
            "tls_client_trust_anchors": "pki/agency-clients-ca.pem",
        },
        "pki": {
            "ca": "127.0.0.1:7400",
            "ocsp_max_age_seconds": 300,
            "refresh_seconds": 15,
            "renew_at": 0.5,
        },
        "limits": {"max_message_bytes": 1024 * KIB, "shutdown_grace_seconds": 2.5},
        "clients": [
            {"id": CIVIL_REGISTRY, "require_tls": True},
            {"id": ARCHIVE, "require_tls": False},
        ],
        "services": [
            {"id": CIVIL_REGISTRY_SERVICE, "backend": "127.0.0.1:7110", "timeout_seconds": 30},
            {"id": ARCHIVE_SERVICE, "backend": "127.0.0.1:7111", "timeout_seconds": 0.5},
        ],
    }


# -- rendering and editing a document --------------------------------------------------------


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)  # TOML spells nan and inf as Python's repr does
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON escapes are valid TOML escapes
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value).__name__)


def is_array_of_tables(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(i, dict) for i in value)


def render(document: dict[str, Any]) -> str:
    """TOML: top-level values first, then ``[table]``s and ``[[array of tables]]``."""
    lines = [
        f"{key} = {toml_value(value)}"
        for key, value in document.items()
        if not isinstance(value, dict) and not is_array_of_tables(value)
    ]
    for key, value in document.items():
        if isinstance(value, dict):
            lines += ["", f"[{key}]", *(f"{k} = {toml_value(v)}" for k, v in value.items())]
        elif is_array_of_tables(value):
            for item in value:
                lines += ["", f"[[{key}]]", *(f"{k} = {toml_value(v)}" for k, v in item.items())]
    return "\n".join(lines) + "\n"


SETTING = re.compile(r"(?:(?P<table>[a-z_]+)(?:\[(?P<index>\d+)\])?\.)?(?P<key>[a-z_]+)")


def locate(document: dict[str, Any], setting: str) -> tuple[dict[str, Any], str]:
    """The table holding ``setting`` (``server``, ``peer.listen``, ``services[1].backend``)."""
    match = SETTING.fullmatch(setting)
    assert match, setting
    table: Any = document
    if match["table"]:
        table = table[match["table"]]
        if match["index"] is not None:
            table = table[int(match["index"])]
    assert isinstance(table, dict)
    return table, match["key"]


def edit(document: dict[str, Any], setting: str, value: object) -> dict[str, Any]:
    """A copy of ``document`` with ``setting`` set to ``value``."""
    changed = copy.deepcopy(document)
    table, key = locate(changed, setting)
    table[key] = value
    return changed


def without(document: dict[str, Any], *settings: str) -> dict[str, Any]:
    """A copy of ``document`` without ``settings`` (each must be present)."""
    changed = copy.deepcopy(document)
    for setting in settings:
        table, key = locate(changed, setting)
        del table[key]
    return changed


# -- the site ---------------------------------------------------------------------------------


def signed_snapshot(
    authority: pki.CertificateAuthority,
    document: dict[str, Any] = GLOBAL_CONFIGURATION,
    *,
    built_at: dt.datetime = NOW,
    expires_at: dt.datetime = NOW + dt.timedelta(hours=1),
    version: int = VERSION,
) -> bytes:
    """``document`` as the registry distributes it: signed by a configuration-signing key (made
    here) whose certificate ``authority`` issued when the snapshot was built."""
    key = pki.generate_key()
    signer = authority.issue_configuration_signing_certificate(
        RegistryId("DEMO"), key.public_key(), now=built_at, lifetime=dt.timedelta(days=2)
    )
    content = to_content(
        GlobalConfiguration.from_json(document),
        version=version,
        built_at=built_at,
        expires_at=expires_at,
    )
    return sign_snapshot(content, key, (signer,))


def closed_url() -> str:
    """A distribution URL nobody listens at (a free port on 127.0.0.1)."""
    return f"http://127.0.0.1:{pintu.free_port()}{SNAPSHOT_PATH}"


@dataclass(frozen=True)
class Site:
    """A security server's folder (``gateway.toml``, key material, snapshot cache) beside a
    shared one (the registry's anchor); ``federation`` is the CA the anchor trusts."""

    folder: Path
    shared: Path
    federation: pki.CertificateAuthority

    @property
    def config(self) -> Path:
        return self.folder / "gateway.toml"

    @property
    def anchor(self) -> Path:
        return self.shared / "anchor.json"

    @property
    def cache(self) -> Path:
        """The cache ``valid_document`` names."""
        return self.folder / "state/global-configuration.pb"

    def write(self, document: dict[str, Any]) -> Path:
        self.config.write_text(render(document), encoding="utf-8")
        return self.config

    def write_anchor(
        self,
        *distribution: str,
        roots: tuple[pki.CertificateAuthority, ...] = (),
        instance: str = "DEMO",
    ) -> None:
        """The anchor: ``distribution`` (default: a closed port), trusting ``roots`` (default:
        the federation CA)."""
        Anchor(
            instance,
            distribution or (closed_url(),),
            f"127.0.0.1:{pintu.free_port()}",
            tuple(r.certificate for r in roots or (self.federation,)),
        ).save(self.anchor)


def issue_key(path: Path) -> pki.PrivateKey:
    key = pki.generate_key()
    pki.write_private(path, pki.key_pem(key))
    return key


@pytest.fixture
def site(tmp_path: Path) -> Site:
    folder, shared = tmp_path / "site", tmp_path / "shared"
    federation = pki.CertificateAuthority.create("DEMO", now=EARLIER, lifetime=LIFETIME)
    clients_ca = pki.CertificateAuthority.create("DEMO", now=EARLIER, lifetime=LIFETIME)
    pki.write_public(
        folder / "pki/federation-root-ca.pem", pki.certificate_pem(federation.certificate)
    )
    pki.write_public(
        folder / "pki/agency-clients-ca.pem", pki.certificate_pem(clients_ca.certificate)
    )
    server = SecurityServerId.parse(SERVER)
    auth = issue_key(folder / "keys/auth.key")
    pki.write_public(
        folder / "keys/auth.pem",
        pki.certificate_pem(
            federation.issue_server_certificate(
                server, auth.public_key(), now=NOW, lifetime=LIFETIME
            )
        ),
    )
    listener = issue_key(folder / "keys/agency-tls.key")
    pki.write_public(
        folder / "keys/agency-tls.pem",
        pki.certificate_pem(
            federation.issue_listener_certificate(
                server,
                ["localhost", "127.0.0.1"],
                listener.public_key(),
                now=NOW,
                lifetime=LIFETIME,
            )
        ),
    )
    issue_key(folder / "keys/other.key")
    built = Site(folder, shared, federation)
    built.write_anchor()
    pki.write_public(built.cache, signed_snapshot(federation))
    return built


@contextmanager
def distributing(blob: bytes, status: int = 200) -> Iterator[tuple[str, list[str]]]:
    """A registry's distribution side on 127.0.0.1: ``GET /global-configuration`` answers
    ``blob`` (with ``status``). Yields its URL and the paths requested so far."""
    requested: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requested.append(self.path)
            found = self.path == SNAPSHOT_PATH
            self.send_response(status if found else 404)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(blob) if found else 0))
            self.end_headers()
            if found:
                self.wfile.write(blob)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{SNAPSHOT_PATH}", requested
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def document() -> dict[str, Any]:
    return valid_document()


def refused(config: Path) -> str:
    """Load ``config``, which must be refused with ``config_invalid``; the message."""
    with pytest.raises(pintu.ConfigError) as caught:
        pintu.load_gateway_settings(config)
    assert caught.value.code == "config_invalid"
    return str(caught.value)


def assert_names(message: str, config: Path, setting: str) -> None:
    assert message.startswith(f"{config}: {setting}: "), message


# -- valid files ------------------------------------------------------------------------------


def test_complete_file_loads_every_setting(
    site: Site, document: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = site.write(document)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative paths must not resolve against the working folder

    settings = pintu.load_gateway_settings(config)

    files = site.folder
    assert settings.server == SecurityServerId.parse(SERVER)
    assert settings.peer_address == "127.0.0.1:7103"
    assert settings.peer_tls == pki.TlsIdentity(
        private_key=(files / "keys/auth.key").read_bytes(),
        certificate_chain=(files / "keys/auth.pem").read_bytes(),
        trust_anchors=(files / "pki/federation-root-ca.pem").read_bytes(),
    )
    assert settings.agency_listeners == (
        AgencyListener("127.0.0.1:7101", None),
        AgencyListener(
            "localhost:7102",
            pki.TlsIdentity(
                private_key=(files / "keys/agency-tls.key").read_bytes(),
                certificate_chain=(files / "keys/agency-tls.pem").read_bytes(),
                trust_anchors=(files / "pki/agency-clients-ca.pem").read_bytes(),
            ),
        ),
    )
    assert settings.global_configuration.to_json() == GLOBAL_CONFIGURATION
    assert settings.global_configuration.version == VERSION
    assert settings.global_configuration.built_at == NOW
    assert settings.global_configuration.expires_at == NOW + dt.timedelta(hours=1)
    source = settings.registry
    assert isinstance(source, ConfigurationClient)
    assert source.anchor == Anchor.load(site.anchor)
    assert source.cache == site.cache
    assert source.poll == dt.timedelta(seconds=5)
    assert settings.certificate_propagation_seconds == 20.0
    assert dict(settings.clients) == {
        SubsystemId.parse(CIVIL_REGISTRY): LocalClient(SubsystemId.parse(CIVIL_REGISTRY), True),
        SubsystemId.parse(ARCHIVE): LocalClient(SubsystemId.parse(ARCHIVE), False),
    }
    civil, archive = ServiceId.parse(CIVIL_REGISTRY_SERVICE), ServiceId.parse(ARCHIVE_SERVICE)
    assert dict(settings.services) == {
        civil: LocalService(civil, "127.0.0.1:7110", 30.0),
        archive: LocalService(archive, "127.0.0.1:7111", 0.5),
    }
    assert type(settings.services[civil].timeout_seconds) is float
    assert settings.limits == Limits(max_message_bytes=1024 * KIB, shutdown_grace_seconds=2.5)
    assert settings.pki == pki.KeeperSettings(
        server=SecurityServerId.parse(SERVER),
        ca_address="127.0.0.1:7400",
        key_path=files / "keys/auth.key",
        certificate_path=files / "keys/auth.pem",
        trust_anchors_path=files / "pki/federation-root-ca.pem",
        ocsp_max_age=dt.timedelta(seconds=300),
        renew_fraction=0.5,
        refresh=dt.timedelta(seconds=15),
    )


def test_absent_optional_settings_take_their_defaults(site: Site, document: dict[str, Any]) -> None:
    minimal = without(
        document,
        "limits",
        "agency.tls_listen",
        "agency.tls_key",
        "agency.tls_certificate",
        "agency.tls_client_trust_anchors",
        "clients[0].require_tls",
        "clients[1].require_tls",
        "services[0].timeout_seconds",
        "services[1].timeout_seconds",
    )

    settings = pintu.load_gateway_settings(site.write(minimal))

    assert settings.limits.max_message_bytes == 64 * 1024 * KIB
    assert settings.limits.shutdown_grace_seconds == 10.0
    assert settings.agency_listeners == (AgencyListener("127.0.0.1:7101", None),)
    assert [client.require_tls for client in settings.clients.values()] == [False, False]
    assert [service.timeout_seconds for service in settings.services.values()] == [None, None]


def test_clients_and_services_may_be_absent(site: Site, document: dict[str, Any]) -> None:
    settings = pintu.load_gateway_settings(site.write(without(document, "clients", "services")))

    assert dict(settings.clients) == {}
    assert dict(settings.services) == {}


def test_relative_config_path_resolves_against_its_own_folder(
    site: Site, document: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.write(document)
    monkeypatch.chdir(tmp_path / "shared")

    settings = pintu.load_gateway_settings(Path("../site/gateway.toml"))

    assert settings.peer_tls.private_key == (site.folder / "keys/auth.key").read_bytes()
    assert settings.global_configuration.to_json() == GLOBAL_CONFIGURATION
    assert settings.pki.key_path == site.folder / "keys/auth.key"
    source = settings.registry
    assert isinstance(source, ConfigurationClient)
    assert source.cache == site.cache


def test_registry_settings_take_their_defaults(site: Site, document: dict[str, Any]) -> None:
    default_cache = site.folder / DEFAULT_CACHE
    site.cache.rename(default_cache)
    minimal = without(
        document, "registry.cache", "registry.poll_seconds", "registry.propagation_seconds"
    )

    settings = pintu.load_gateway_settings(site.write(minimal))

    source = settings.registry
    assert isinstance(source, ConfigurationClient)
    assert source.cache == default_cache
    assert source.poll == dt.timedelta(seconds=30)
    assert settings.certificate_propagation_seconds == 2 * 30 + 10
    assert settings.global_configuration.to_json() == GLOBAL_CONFIGURATION


def test_propagation_defaults_to_two_polls_and_ten_seconds(
    site: Site, document: dict[str, Any]
) -> None:
    settings = pintu.load_gateway_settings(
        site.write(without(document, "registry.propagation_seconds"))
    )

    assert settings.certificate_propagation_seconds == 2 * 5 + 10


def test_default_cache_is_beside_a_config_file_given_by_a_relative_path(
    site: Site, document: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every other path in the settings is absolute (pki.key_path, ...): the cache is written
    # on every refresh, long after start-up, and must not move with the working folder.
    site.cache.rename(site.folder / DEFAULT_CACHE)
    site.write(without(document, "registry.cache"))
    monkeypatch.chdir(tmp_path / "shared")

    settings = pintu.load_gateway_settings(Path("../site/gateway.toml"))

    source = settings.registry
    assert isinstance(source, ConfigurationClient)
    assert source.cache == site.folder / DEFAULT_CACHE


@pytest.mark.parametrize(
    ("max_message_bytes", "shutdown_grace_seconds", "timeout_seconds"),
    [
        pytest.param(KIB, 0, 0.001, id="lower"),
        pytest.param(GIB, 3600, 86_400, id="upper"),
    ],
)
def test_limits_at_their_bounds_are_accepted(
    site: Site,
    document: dict[str, Any],
    max_message_bytes: int,
    shutdown_grace_seconds: float,
    timeout_seconds: float,
) -> None:
    document["limits"] = {
        "max_message_bytes": max_message_bytes,
        "shutdown_grace_seconds": shutdown_grace_seconds,
    }
    document["services"][1]["timeout_seconds"] = timeout_seconds

    settings = pintu.load_gateway_settings(site.write(document))

    assert settings.limits == Limits(max_message_bytes, shutdown_grace_seconds)
    assert settings.services[ServiceId.parse(ARCHIVE_SERVICE)].timeout_seconds == timeout_seconds


# -- the file itself --------------------------------------------------------------------------


def test_missing_file_is_refused(site: Site) -> None:
    message = refused(site.config)

    assert message == f"{site.config}: No such file or directory"


def test_file_that_is_not_toml_is_refused(site: Site) -> None:
    site.config.write_text('server = "DEMO/GOV/POPREG/ss1\n[peer\n', encoding="utf-8")

    message = refused(site.config)

    assert message.startswith(f"{site.config}: not valid TOML: "), message


def test_file_that_is_not_utf8_is_refused(site: Site, document: dict[str, Any]) -> None:
    # A valid file in every other way, with a Latin-1 comment.
    site.config.write_bytes(render(document).encode("utf-8") + b"# caf\xe9\n")

    message = refused(site.config)

    assert message.startswith(f"{site.config}: not valid TOML: "), message
    assert "utf-8" in message


# -- unknown, missing and mistyped settings ---------------------------------------------------


def test_unknown_top_level_setting_is_refused(site: Site, document: dict[str, Any]) -> None:
    document["global_config"] = "global-configuration.json"

    assert_names(refused(site.write(document)), site.config, "global_config")


def test_former_global_configuration_setting_is_refused(
    site: Site, document: dict[str, Any]
) -> None:
    # A file written for the static JSON global configuration must not load half-understood.
    document["global_configuration"] = "../shared/global-configuration.json"

    message = refused(site.write(document))

    assert message == f"{site.config}: global_configuration: unknown setting"


@pytest.mark.parametrize(
    "setting",
    [
        "peer.listen_address",
        "registry.poll",
        "registry.global_configuration",
        "agency.tls_cert",
        "limits.max_message_size",
        "clients[1].requires_tls",
        "services[1].timeout",
    ],
)
def test_unknown_setting_in_a_table_is_refused(
    site: Site, document: dict[str, Any], setting: str
) -> None:
    message = refused(site.write(edit(document, setting, 1)))

    assert_names(message, site.config, setting)
    assert "unknown setting" in message


@pytest.mark.parametrize(
    "setting",
    [
        "server",
        "registry.anchor",
        "peer.listen",
        "peer.key",
        "peer.certificate",
        "peer.trust_anchors",
        "clients[1].id",
        "services[1].id",
        "services[1].backend",
    ],
)
def test_missing_required_setting_is_refused(
    site: Site, document: dict[str, Any], setting: str
) -> None:
    message = refused(site.write(without(document, setting)))

    assert message == f"{site.config}: {setting}: required"


def test_missing_peer_table_is_refused(site: Site, document: dict[str, Any]) -> None:
    assert_names(refused(site.write(without(document, "peer"))), site.config, "peer.listen")


@pytest.mark.parametrize(
    "server",
    [
        pytest.param("DEMO/GOV/POPREG", id="member_not_server"),
        pytest.param("DEMO/GOV/POPREG/ss 1", id="space_in_code"),
        pytest.param("DEMO/GOV/POPREG/ss1/", id="trailing_separator"),
    ],
)
def test_malformed_server_identifier_is_refused(
    site: Site, document: dict[str, Any], server: str
) -> None:
    message = refused(site.write(edit(document, "server", server)))

    assert_names(message, site.config, "server")
    assert "security server" in message


@pytest.mark.parametrize(
    ("setting", "value", "why"),
    [
        pytest.param(
            "limits.max_message_bytes", "1048576", "expected int, got str", id="str_for_int"
        ),
        pytest.param("limits.max_message_bytes", True, "expected int, got bool", id="bool_for_int"),
        pytest.param(
            "limits.max_message_bytes", 1048576.0, "expected int, got float", id="float_for_int"
        ),
        pytest.param(
            "limits.shutdown_grace_seconds", False, "expected float, got bool", id="bool_for_float"
        ),
        pytest.param(
            "services[1].timeout_seconds", "30", "expected float, got str", id="str_for_float"
        ),
        pytest.param("clients[1].require_tls", "yes", "expected bool, got str", id="str_for_bool"),
        pytest.param("clients[1].require_tls", 1, "expected bool, got int", id="int_for_bool"),
        pytest.param("peer.listen", 7103, "expected str, got int", id="int_for_str"),
        pytest.param("peer.key", ["keys/auth.key"], "expected str, got list", id="list_for_str"),
        pytest.param("registry.anchor", 1, "expected str, got int", id="int_for_anchor"),
        pytest.param("registry.cache", True, "expected str, got bool", id="bool_for_cache"),
        pytest.param(
            "registry.poll_seconds", "30", "expected float, got str", id="str_for_poll_seconds"
        ),
        pytest.param(
            "registry.propagation_seconds",
            False,
            "expected float, got bool",
            id="bool_for_propagation_seconds",
        ),
    ],
)
def test_value_of_the_wrong_type_is_refused(
    site: Site, document: dict[str, Any], setting: str, value: object, why: str
) -> None:
    message = refused(site.write(edit(document, setting, value)))

    assert message == f"{site.config}: {setting}: {why}"


@pytest.mark.parametrize(
    ("table", "value"),
    [
        pytest.param("limits", [KIB, 5], id="list_for_limits"),
        pytest.param("registry", "../shared/anchor.json", id="string_for_registry"),
    ],
)
def test_value_where_a_table_is_expected_is_refused(
    site: Site, document: dict[str, Any], table: str, value: object
) -> None:
    document[table] = value

    assert refused(site.write(document)) == f"{site.config}: {table}: expected a table"


def test_table_where_an_array_of_tables_is_expected_is_refused(
    site: Site, document: dict[str, Any]
) -> None:
    document["services"] = document["services"][0]  # [services], not [[services]]

    message = refused(site.write(document))

    assert message == f"{site.config}: services: expected an array of tables"


def test_array_of_strings_where_an_array_of_tables_is_expected_is_refused(
    site: Site, document: dict[str, Any]
) -> None:
    document["clients"] = [CIVIL_REGISTRY, ARCHIVE]

    message = refused(site.write(document))

    assert message == f"{site.config}: clients: expected an array of tables"


# -- addresses --------------------------------------------------------------------------------

BAD_ADDRESSES = {
    "no_port": "127.0.0.1",
    "port_0": "127.0.0.1:0",
    "port_70000": "127.0.0.1:70000",
    "empty_port": "127.0.0.1:",
    "no_host": ":7103",
    "arabic_indic_port_digits": "127.0.0.1:\u0667\u0661\u0660\u0663",
    "fullwidth_port_digits": "127.0.0.1:\uff17\uff11\uff10\uff13",
    "arabic_indic_host_digits": "\u0661\u0662\u0667.0.0.1:7103",
}


@pytest.mark.parametrize(
    "setting", ["peer.listen", "agency.listen", "agency.tls_listen", "services[1].backend"]
)
@pytest.mark.parametrize("address", BAD_ADDRESSES.values(), ids=BAD_ADDRESSES.keys())
def test_bad_address_is_refused(
    site: Site, document: dict[str, Any], setting: str, address: str
) -> None:
    message = refused(site.write(edit(document, setting, address)))

    assert message == f"{site.config}: {setting}: {address!r} is not 'host:port'"


# -- key material -----------------------------------------------------------------------------

KEY_MATERIAL = [
    "peer.key",
    "peer.certificate",
    "peer.trust_anchors",
    "agency.tls_key",
    "agency.tls_certificate",
    "agency.tls_client_trust_anchors",
]


@pytest.mark.parametrize("setting", KEY_MATERIAL)
def test_missing_key_material_file_is_refused(
    site: Site, document: dict[str, Any], setting: str
) -> None:
    message = refused(site.write(edit(document, setting, "keys/missing.pem")))

    assert_names(message, site.config, setting)
    assert f"{site.folder / 'keys/missing.pem'}: No such file or directory" in message


@pytest.mark.parametrize(
    ("setting", "wrong_file"),
    [
        pytest.param("peer.key", "keys/auth.pem", id="certificate_as_key"),
        pytest.param("peer.certificate", "keys/auth.key", id="key_as_certificate"),
        pytest.param("peer.trust_anchors", "keys/auth.key", id="key_as_trust_anchors"),
    ],
)
def test_key_material_file_holding_the_wrong_thing_is_refused(
    site: Site, document: dict[str, Any], setting: str, wrong_file: str
) -> None:
    message = refused(site.write(edit(document, setting, wrong_file)))

    assert_names(message, site.config, setting)
    assert str(site.folder / wrong_file) in message


@pytest.mark.parametrize("setting", ["peer.key", "agency.tls_key"])
def test_key_that_does_not_match_the_certificate_is_refused(
    site: Site, document: dict[str, Any], setting: str
) -> None:
    message = refused(site.write(edit(document, setting, "keys/other.key")))

    assert_names(message, site.config, setting)
    assert "does not match the certificate" in message


def test_path_with_a_nul_character_is_refused(site: Site, document: dict[str, Any]) -> None:
    # TOML allows "\u0000" in strings; the operator must get a config error, not a traceback.
    message = refused(site.write(edit(document, "peer.key", "keys/auth\x00.key")))

    assert_names(message, site.config, "peer.key")


# -- the registry: anchor and settings -------------------------------------------------------


def test_missing_registry_table_is_refused(site: Site, document: dict[str, Any]) -> None:
    message = refused(site.write(without(document, "registry")))

    assert message == f"{site.config}: registry.anchor: required"


def test_missing_anchor_file_is_refused(site: Site, document: dict[str, Any]) -> None:
    config = site.write(edit(document, "registry.anchor", "../shared/nowhere.json"))

    message = refused(config)

    assert_names(message, config, "registry.anchor")
    assert f"anchor {site.shared / 'nowhere.json'}: " in message
    assert "No such file or directory" in message


@pytest.mark.parametrize(
    ("content", "why"),
    [
        pytest.param(b'{"format": 1,', "anchor ", id="not_json"),
        pytest.param(b"[]", "not an anchor of format 1", id="not_an_object"),
        pytest.param(b'{"format": 2}', "not an anchor of format 1", id="other_format"),
        pytest.param(
            b'{"format": 1, "instance": "DEMO", "registry": "127.0.0.1:7500", "roots": []}',
            "'distribution'",
            id="no_distribution",
        ),
        pytest.param(
            b'{"format": 1, "instance": "DEMO", "distribution": ["http://127.0.0.1:1/"],'
            b' "registry": "127.0.0.1:7500", "roots": []}',
            "instance, distribution, registry and roots are all needed",
            id="no_roots",
        ),
        pytest.param(
            b'{"format": 1, "instance": "DEMO", "distribution": ["http://127.0.0.1:1/"],'
            b' "registry": "127.0.0.1:7500", "roots": ["not a certificate"]}',
            "ValueError",
            id="root_not_pem",
        ),
    ],
)
def test_malformed_anchor_is_refused(
    site: Site, document: dict[str, Any], content: bytes, why: str
) -> None:
    site.anchor.write_bytes(content)

    message = refused(site.write(document))

    assert_names(message, site.config, "registry.anchor")
    assert f"anchor {site.anchor}: " in message
    assert why in message


@pytest.mark.parametrize(
    "poll",
    [
        pytest.param(0.099, id="below_a_tenth"),
        pytest.param(0, id="zero"),
        pytest.param(-1, id="negative"),
        pytest.param(3600.5, id="above_an_hour"),
        pytest.param(math.nan, id="nan"),
        pytest.param(math.inf, id="inf"),
    ],
)
def test_poll_seconds_out_of_range_is_refused(
    site: Site, document: dict[str, Any], poll: float
) -> None:
    message = refused(site.write(edit(document, "registry.poll_seconds", poll)))

    assert message == f"{site.config}: registry.poll_seconds: must be between 0.1 and 3600"


@pytest.mark.parametrize("poll", [pytest.param(0.1, id="lower"), pytest.param(3600, id="upper")])
def test_poll_seconds_at_its_bounds_is_accepted_with_the_default_propagation(
    site: Site, document: dict[str, Any], poll: float
) -> None:
    # propagation_seconds is not written: its default must not make a valid poll_seconds fail.
    changed = without(edit(document, "registry.poll_seconds", poll), "registry.propagation_seconds")

    settings = pintu.load_gateway_settings(site.write(changed))

    source = settings.registry
    assert isinstance(source, ConfigurationClient)
    assert source.poll == dt.timedelta(seconds=poll)
    assert 0 <= settings.certificate_propagation_seconds <= 3600


@pytest.mark.parametrize(
    "propagation",
    [
        pytest.param(-0.5, id="negative"),
        pytest.param(3601, id="above_an_hour"),
        pytest.param(math.nan, id="nan"),
        pytest.param(math.inf, id="inf"),
    ],
)
def test_propagation_seconds_out_of_range_is_refused(
    site: Site, document: dict[str, Any], propagation: float
) -> None:
    message = refused(site.write(edit(document, "registry.propagation_seconds", propagation)))

    assert message == (f"{site.config}: registry.propagation_seconds: must be between 0 and 3600")


@pytest.mark.parametrize(
    "propagation", [pytest.param(0, id="lower"), pytest.param(3600, id="upper")]
)
def test_propagation_seconds_at_its_bounds_is_accepted(
    site: Site, document: dict[str, Any], propagation: float
) -> None:
    settings = pintu.load_gateway_settings(
        site.write(edit(document, "registry.propagation_seconds", propagation))
    )

    assert settings.certificate_propagation_seconds == propagation


# -- the registry: the signed snapshot --------------------------------------------------------

NO_CONFIGURATION = "registry.anchor: no global configuration could be had: "


def test_missing_cache_with_the_registry_unreachable_is_refused(
    site: Site, document: dict[str, Any]
) -> None:
    site.cache.unlink()

    message = refused(site.write(document))

    assert message.startswith(f"{site.config}: {NO_CONFIGURATION}"), message
    assert "127.0.0.1" in message  # the distribution address that did not answer
    assert not site.cache.exists()


def test_tampered_cache_with_the_registry_unreachable_is_refused(
    site: Site, document: dict[str, Any]
) -> None:
    blob = site.cache.read_bytes()
    name = b"Population Registry"
    assert blob.count(name) == 1
    tampered = blob.replace(name, b"Population Registrx")  # one byte of the signed content
    site.cache.write_bytes(tampered)

    message = refused(site.write(document))

    assert message.startswith(f"{site.config}: {NO_CONFIGURATION}"), message
    assert site.cache.read_bytes() == tampered  # not replaced by anything


def test_cache_signed_by_a_foreign_ca_is_refused(site: Site, document: dict[str, Any]) -> None:
    foreign = pki.CertificateAuthority.create("DEMO", now=EARLIER, lifetime=LIFETIME)
    pki.write_public(site.cache, signed_snapshot(foreign))

    message = refused(site.write(document))

    assert message.startswith(f"{site.config}: {NO_CONFIGURATION}"), message


def test_anchor_trusting_another_root_refuses_the_cache(
    site: Site, document: dict[str, Any]
) -> None:
    foreign = pki.CertificateAuthority.create("DEMO", now=EARLIER, lifetime=LIFETIME)
    site.write_anchor(roots=(foreign,))

    message = refused(site.write(document))

    assert message.startswith(f"{site.config}: {NO_CONFIGURATION}"), message


def test_anchor_of_another_instance_refuses_the_cache(site: Site, document: dict[str, Any]) -> None:
    site.write_anchor(instance="OTHER")

    message = refused(site.write(document))

    assert message.startswith(f"{site.config}: {NO_CONFIGURATION}"), message


def test_expired_cache_is_used_while_the_registry_is_unreachable(
    site: Site, document: dict[str, Any]
) -> None:
    built_at, expires_at = NOW - dt.timedelta(hours=2), NOW - dt.timedelta(hours=1)
    blob = signed_snapshot(site.federation, built_at=built_at, expires_at=expires_at)
    pki.write_public(site.cache, blob)

    settings = pintu.load_gateway_settings(site.write(document))

    configuration = settings.global_configuration
    assert configuration.to_json() == GLOBAL_CONFIGURATION
    assert configuration.expires_at == expires_at
    assert configuration.expired(dt.datetime.now(dt.UTC))
    assert settings.registry.seconds_to_expiry() < 0
    assert site.cache.read_bytes() == blob


def test_configuration_is_downloaded_and_cached_when_there_is_no_cache(
    site: Site, document: dict[str, Any]
) -> None:
    site.cache.unlink()
    blob = signed_snapshot(site.federation, version=VERSION + 1)
    with distributing(blob) as (url, requested):
        site.write_anchor(url)

        settings = pintu.load_gateway_settings(site.write(document))

    assert requested == [SNAPSHOT_PATH]
    assert settings.global_configuration.to_json() == GLOBAL_CONFIGURATION
    assert settings.global_configuration.version == VERSION + 1
    assert site.cache.read_bytes() == blob


def test_valid_cache_is_used_without_asking_the_registry(
    site: Site, document: dict[str, Any]
) -> None:
    cached = site.cache.read_bytes()
    with distributing(signed_snapshot(site.federation, version=VERSION + 1)) as (url, requested):
        site.write_anchor(url)

        settings = pintu.load_gateway_settings(site.write(document))

    assert requested == []
    assert settings.global_configuration.version == VERSION
    assert site.cache.read_bytes() == cached


def test_expired_cache_is_replaced_by_a_download(site: Site, document: dict[str, Any]) -> None:
    pki.write_public(
        site.cache,
        signed_snapshot(
            site.federation,
            built_at=NOW - dt.timedelta(hours=2),
            expires_at=NOW - dt.timedelta(hours=1),
        ),
    )
    fresh = signed_snapshot(site.federation, version=VERSION + 1)
    with distributing(fresh) as (url, requested):
        site.write_anchor(url)

        settings = pintu.load_gateway_settings(site.write(document))

    assert requested == [SNAPSHOT_PATH]
    assert settings.global_configuration.version == VERSION + 1
    assert not settings.global_configuration.expired(dt.datetime.now(dt.UTC))
    assert site.cache.read_bytes() == fresh


def test_download_signed_by_a_foreign_ca_is_refused_and_not_cached(
    site: Site, document: dict[str, Any]
) -> None:
    site.cache.unlink()
    foreign = pki.CertificateAuthority.create("DEMO", now=EARLIER, lifetime=LIFETIME)
    with distributing(signed_snapshot(foreign)) as (url, requested):
        site.write_anchor(url)

        message = refused(site.write(document))

    assert requested == [SNAPSHOT_PATH]
    assert message.startswith(f"{site.config}: {NO_CONFIGURATION}"), message
    assert "does not chain to a trusted root" in message
    assert not site.cache.exists()


def test_download_answered_with_an_error_status_is_refused(
    site: Site, document: dict[str, Any]
) -> None:
    site.cache.unlink()
    with distributing(b"", status=503) as (url, requested):
        site.write_anchor(url)

        message = refused(site.write(document))

    assert requested == [SNAPSHOT_PATH]
    assert message.startswith(f"{site.config}: {NO_CONFIGURATION}"), message
    assert "HTTP 503" in message
    assert not site.cache.exists()


def test_second_distribution_address_is_tried_when_the_first_does_not_answer(
    site: Site, document: dict[str, Any]
) -> None:
    site.cache.unlink()
    blob = signed_snapshot(site.federation)
    with distributing(blob) as (url, requested):
        site.write_anchor(closed_url(), url)

        settings = pintu.load_gateway_settings(site.write(document))

    assert requested == [SNAPSHOT_PATH]
    assert settings.global_configuration.version == VERSION
    assert site.cache.read_bytes() == blob


# -- the global configuration -----------------------------------------------------------------


def test_server_not_in_the_global_configuration_is_refused(
    site: Site, document: dict[str, Any]
) -> None:
    message = refused(site.write(edit(document, "server", "DEMO/GOV/POPREG/ss2")))

    assert_names(message, site.config, "server")
    assert "DEMO/GOV/POPREG/ss2 is not in the global configuration" in message


# -- clients and services ---------------------------------------------------------------------


def test_malformed_client_identifier_is_refused(site: Site, document: dict[str, Any]) -> None:
    message = refused(site.write(edit(document, "clients[1].id", "DEMO/GOV/POPREG")))

    assert_names(message, site.config, "clients[1].id")


def test_client_of_another_member_is_refused(site: Site, document: dict[str, Any]) -> None:
    message = refused(site.write(edit(document, "clients[1].id", TAX_SUBSYSTEM)))

    assert_names(message, site.config, "clients[1].id")
    assert f"{TAX_SUBSYSTEM} is not a subsystem of the owner DEMO/GOV/POPREG" in message


def test_client_not_in_the_global_configuration_is_refused(
    site: Site, document: dict[str, Any]
) -> None:
    unknown = "DEMO/GOV/POPREG/unregistered"

    message = refused(site.write(edit(document, "clients[1].id", unknown)))

    assert_names(message, site.config, "clients[1].id")
    assert f"{unknown} is not in the global configuration" in message


def test_client_listed_twice_is_refused(site: Site, document: dict[str, Any]) -> None:
    message = refused(site.write(edit(document, "clients[1].id", CIVIL_REGISTRY)))

    assert message == f"{site.config}: clients[1].id: {CIVIL_REGISTRY} is listed twice"


def test_malformed_service_identifier_is_refused(site: Site, document: dict[str, Any]) -> None:
    message = refused(site.write(edit(document, "services[1].id", f"{ARCHIVE}/Archive")))

    assert_names(message, site.config, "services[1].id")


def test_service_listed_twice_is_refused(site: Site, document: dict[str, Any]) -> None:
    message = refused(site.write(edit(document, "services[1].id", CIVIL_REGISTRY_SERVICE)))

    assert message == f"{site.config}: services[1].id: {CIVIL_REGISTRY_SERVICE} is listed twice"


def test_service_of_another_member_is_refused(site: Site, document: dict[str, Any]) -> None:
    message = refused(site.write(edit(document, "services[1].id", TAX_SERVICE)))

    assert_names(message, site.config, "services[1].id")
    assert f"{TAX_SERVICE} is not provided by the owner DEMO/GOV/POPREG" in message


def test_service_of_a_subsystem_not_in_the_global_configuration_is_refused(
    site: Site, document: dict[str, Any]
) -> None:
    unknown = "DEMO/GOV/POPREG/unregistered/popreg.v1.Archive"

    message = refused(site.write(edit(document, "services[1].id", unknown)))

    assert_names(message, site.config, "services[1].id")
    assert f"{unknown} is not in the global configuration" in message


@pytest.mark.parametrize(
    "timeout",
    [
        pytest.param(0, id="zero"),
        pytest.param(-5, id="negative"),
        pytest.param(86_401, id="above_a_day"),
        pytest.param(86_400.5, id="just_above_a_day"),
        pytest.param(math.nan, id="nan"),
        pytest.param(math.inf, id="inf"),
    ],
)
def test_timeout_out_of_range_is_refused(
    site: Site, document: dict[str, Any], timeout: float
) -> None:
    message = refused(site.write(edit(document, "services[1].timeout_seconds", timeout)))

    assert message == f"{site.config}: services[1].timeout_seconds: must be between 0 and 86400"


# -- limits and listeners ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "size", [pytest.param(KIB - 1, id="below_1_KiB"), pytest.param(GIB + 1, id="above_1_GiB")]
)
def test_max_message_bytes_out_of_range_is_refused(
    site: Site, document: dict[str, Any], size: int
) -> None:
    message = refused(site.write(edit(document, "limits.max_message_bytes", size)))

    assert_names(message, site.config, "limits.max_message_bytes")
    assert "between 1 KiB and 1 GiB" in message


@pytest.mark.parametrize(
    "grace",
    [
        pytest.param(-1, id="negative"),
        pytest.param(-0.5, id="negative_fraction"),
        pytest.param(3601, id="above_an_hour"),
    ],
)
def test_shutdown_grace_out_of_range_is_refused(
    site: Site, document: dict[str, Any], grace: float
) -> None:
    message = refused(site.write(edit(document, "limits.shutdown_grace_seconds", grace)))

    assert_names(message, site.config, "limits.shutdown_grace_seconds")
    assert "between 0 and 3600" in message


def test_no_agency_listener_is_refused(site: Site, document: dict[str, Any]) -> None:
    message = refused(site.write(without(document, "agency")))

    assert message == f"{site.config}: agency: at least one listener is required"


def test_tls_listen_without_tls_key_is_refused(site: Site, document: dict[str, Any]) -> None:
    message = refused(site.write(without(document, "agency.tls_key")))

    assert message == f"{site.config}: agency.tls_key: required"


# -- the command ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        pytest.param("peer.listen", "127.0.0.1:70000", id="bad_address"),
        pytest.param("peer.key", "keys/auth\x00.key", id="nul_in_path"),
    ],
)
def test_gateway_run_with_a_bad_config_exits_2_naming_the_setting(
    site: Site, document: dict[str, Any], tmp_path: Path, setting: str, value: str
) -> None:
    config = site.write(edit(document, setting, value))

    result = subprocess.run(
        [sys.executable, "-m", "pintu", "gateway", "run", "--config", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith(
        f"pintu: error [config_invalid]: {config}: {setting}: "
    ), result.stderr


def test_gateway_run_without_a_global_configuration_exits_2_naming_the_anchor(
    site: Site, document: dict[str, Any], tmp_path: Path
) -> None:
    site.cache.unlink()
    config = site.write(document)

    result = subprocess.run(
        [sys.executable, "-m", "pintu", "gateway", "run", "--config", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith(
        f"pintu: error [config_invalid]: {config}: {NO_CONFIGURATION}"
    ), result.stderr


def test_service_not_listed_in_the_global_configuration_is_refused(
    site: Site, document: dict[str, Any]
) -> None:
    unlisted = "DEMO/GOV/POPREG/civilregistry/popreg.v1.NotRegistered"

    message = refused(site.write(edit(document, "services[1].id", unlisted)))

    assert_names(message, site.config, "services[1].id")
    assert f"{unlisted} is not in the global configuration" in message


@pytest.mark.parametrize("key", ["tls_key", "tls_certificate", "tls_client_trust_anchors"])
def test_tls_setting_without_an_mtls_listener_is_refused(
    site: Site, document: dict[str, Any], key: str
) -> None:
    others = [f"agency.{k}" for k in ("tls_key", "tls_certificate", "tls_client_trust_anchors")]
    others.remove(f"agency.{key}")
    message = refused(site.write(without(document, "agency.tls_listen", *others)))

    assert_names(message, site.config, f"agency.{key}")
    assert "without tls_listen" in message


def test_client_requiring_tls_without_an_mtls_listener_is_refused(
    site: Site, document: dict[str, Any]
) -> None:
    no_tls = without(
        document,
        "agency.tls_listen",
        "agency.tls_key",
        "agency.tls_certificate",
        "agency.tls_client_trust_anchors",
    )

    message = refused(site.write(no_tls))  # clients[0] has require_tls = true

    assert_names(message, site.config, "clients[0].id")
    assert "requires TLS but no mTLS listener is set" in message


def test_peer_certificate_naming_another_server_is_refused(
    site: Site, document: dict[str, Any]
) -> None:
    other_ca = pki.CertificateAuthority.create("DEMO", now=NOW, lifetime=LIFETIME)
    key = pki.load_private_key(site.folder / "keys/other.key")
    another = SecurityServerId.parse(SERVER).owner.server("ss9")
    pki.write_public(
        site.folder / "keys/other.pem",
        pki.certificate_pem(
            other_ca.issue_server_certificate(another, key.public_key(), now=NOW, lifetime=LIFETIME)
        ),
    )
    changed = edit(
        edit(document, "peer.key", "keys/other.key"), "peer.certificate", "keys/other.pem"
    )

    message = refused(site.write(changed))

    assert_names(message, site.config, "peer.certificate")
    assert f"names {another}, not the server {SERVER}" in message


def test_pki_defaults(site: Site, document: dict[str, Any]) -> None:
    minimal = without(document, "pki.ocsp_max_age_seconds", "pki.refresh_seconds", "pki.renew_at")
    settings = pintu.load_gateway_settings(site.write(minimal))
    assert settings.pki.ocsp_max_age == dt.timedelta(minutes=10)
    assert settings.pki.refresh == dt.timedelta(seconds=30)
    assert settings.pki.renew_fraction == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("setting", "value", "why"),
    [
        ("pki.ca", "no-port", "is not 'host:port'"),
        ("pki.ocsp_max_age_seconds", 0, "between 1 and 604800"),
        ("pki.ocsp_max_age_seconds", 10**9, "between 1 and 604800"),
        ("pki.refresh_seconds", 200, "half the maximum age"),
        ("pki.refresh_seconds", 0, "half the maximum age"),
        ("pki.renew_at", 1.0, "fraction of the lifetime"),
        ("pki.renew_at", 0.0, "fraction of the lifetime"),
        ("pki.renew_at", "soon", "expected float"),
    ],
)
def test_invalid_pki_setting_is_refused(
    site: Site, document: dict[str, Any], setting: str, value: object, why: str
) -> None:
    message = refused(site.write(edit(document, setting, value)))
    assert_names(message, site.config, setting)
    assert why in message


def test_missing_ca_address_is_refused(site: Site, document: dict[str, Any]) -> None:
    message = refused(site.write(without(document, "pki")))
    assert_names(message, site.config, "pki.ca")
    assert "required" in message
