"""``pintu registry ...`` run as a federation's operator runs it: ``init`` and ``operator`` on a
real CA folder, every change command against a real ``pintu registry serve`` (subprocesses on
127.0.0.1), each change read back with ``registry state`` and ``registry journal`` and in the
signed global configuration the registry serves over HTTP, verified as a security server
verifies it (from the anchor ``init`` wrote).

One registry runs for the whole module (``federation``): every test changes parts of its own
(imported at the start for it, or named for it), so the tests do not depend on each other's
changes; rotating the signing key comes last."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

import grpc_tools
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import descriptor_pb2

from pintu import free_port
from pki import CONFIGURATION_SIGNING
from proto import MemberId, SecurityServerId, ServiceId, SubsystemId
from proto.pintu.v1 import registry_pb2
from registry import Anchor, ConfigurationClient, SnapshotVerifier, VerifiedSnapshot
from tests.pintu.ca_support import (
    COMMAND_TIMEOUT,
    FEDERATION,
    INSTANCE,
    MEMBER,
    GatewayFiles,
    Refusal,
    RegistryDirectory,
    certificates,
    enroll,
    fingerprint,
    gateway_files,
    init_ca,
    init_registry,
    mode,
    openssl,
    pintu,
    refused,
    serving,
    serving_registry,
    succeeded,
    wait_until,
)

pytestmark = pytest.mark.integration

PASSPHRASE = "correct horse battery staple"
SS1 = f"{MEMBER}/ss1"
SS2 = f"{MEMBER}/ss2"
# Parts the module's registry holds from the start, each for one test to change.
RENAMED = "DEMO/GOV/RENAMED"
LEAVING = "DEMO/GOV/LEAVING"
SUBSYSTEMS = "DEMO/GOV/SUBSYSTEMS"
SERVERS = "DEMO/GOV/SERVERS"
POPREG = "DEMO/GOV/POPREG"
HEALTH = "DEMO/GOV/HEALTH"
KOTA1, KOTA2 = "DEMO/GOV/KOTA1", "DEMO/GOV/KOTA2"
RETIRED_SERVER = f"{SERVERS}/retired"
CERTIFIED_SERVER = f"{SERVERS}/certified"
CIVIL_REGISTRY = f"{POPREG}/civilregistry/popreg.v1.CivilRegistry"
PARTS: list[dict[str, Any]] = [
    {"id": RENAMED, "name": "Old name", "subsystems": ["portal"]},
    {"id": LEAVING, "name": "Leaving agency"},
    {"id": SUBSYSTEMS, "name": "Subsystem agency"},
    {"id": SERVERS, "name": "Server agency", "subsystems": ["intake", "archive", "reports"]},
    {"id": POPREG, "name": "Population Registry", "subsystems": ["civilregistry"]},
    {"id": HEALTH, "name": "Ministry of Health", "subsystems": ["clinics"]},
    {"id": KOTA1, "name": "City one", "subsystems": ["services"]},
    {"id": KOTA2, "name": "City two", "subsystems": ["services"]},
]
PART_SERVERS: list[dict[str, Any]] = [
    {"id": RETIRED_SERVER, "address": "127.0.0.1:17301"},
    {"id": CERTIFIED_SERVER, "address": "127.0.0.1:17302"},
]

# What an operator compiles with `protoc --include_imports --descriptor_set_out`.
POPULATION_PROTO = """\
syntax = "proto3";
package popreg.v1;
import "google/protobuf/timestamp.proto";
message PersonRequest { string citizen_id = 1; }
message Person { string name = 1; google.protobuf.Timestamp born = 2; }
service CivilRegistry {
  rpc GetPerson(PersonRequest) returns (Person);
  rpc ListBirths(PersonRequest) returns (stream Person);
}
"""
BENEFITS_PROTO = """\
syntax = "proto3";
package welfare.v1;
message Application { string citizen_id = 1; string benefit = 2; }
message Decision { bool granted = 1; }
service Benefits {
  rpc Apply(Application) returns (Decision);
  rpc Status(Application) returns (Decision);
}
"""
POPULATION_FILE = "popreg/v1/population.proto"
BENEFITS_FILE = "welfare/v1/benefits.proto"
TIMESTAMP_FILE = "google/protobuf/timestamp.proto"

VERSION_LINE = re.compile(r"^registry version (?P<version>\d+)$")
JOURNAL_HEADER = re.compile(
    r"^ *(?P<version>\d+)  (?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)  (?P<actor>.+?)  (?P<reason>.*)$"
)
JOURNAL_CHANGE = re.compile(r"^ {8}(?P<change>\S.*)$")
# How `pintu registry ...` prints a refusal of the registry service (docs/errors.md, "Registry
# service"): the service's code, its address, the gRPC status, the service's message.
REGISTRY_REFUSAL = re.compile(
    r"^registry at (?P<address>\S+): (?P<status>[A-Z_]+): (?P<detail>.+)$"
)
STATUSES = {
    "change_refused": "FAILED_PRECONDITION",
    "operator_not_authorized": "PERMISSION_DENIED",
    "registry_unavailable": "UNAVAILABLE",
}


# --- reading what the commands and the registry say ---------------------------------------------


def together(
    *calls: Callable[[], subprocess.CompletedProcess[str]],
) -> list[subprocess.CompletedProcess[str]]:
    """Run independent commands at the same time (each is mostly a Python start-up): their
    results, in order."""
    with ThreadPoolExecutor(max_workers=min(len(calls), 4)) as pool:
        return [future.result() for future in [pool.submit(call) for call in calls]]


def changed(result: subprocess.CompletedProcess[str]) -> int:
    """The version a change command reported, after checking it succeeded."""
    output = succeeded(result).strip()
    match = VERSION_LINE.match(output)
    assert match, f"expected `registry version N`, got {output!r}"
    return int(match["version"])


def outcome(result: subprocess.CompletedProcess[str]) -> Refusal:
    """The stable code and message of a refused ``pintu registry`` command: the command's own
    (e.g. ``config_invalid``), or, for a refusal of the registry service, its code and the
    service's message after checking the gRPC status that code goes with (docs/errors.md)."""
    refusal = refused(result)
    if refusal.code not in STATUSES:
        return refusal
    match = REGISTRY_REFUSAL.match(refusal.message)
    assert match, f"unexpected registry refusal: {refusal.message!r}"
    assert match["status"] == STATUSES[refusal.code], refusal.message
    return Refusal(refusal.code, match["detail"])


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One entry of ``pintu registry journal``."""

    version: int
    at: dt.datetime
    actor: str
    reason: str
    changes: tuple[str, ...]


def journal_entries(output: str) -> list[JournalEntry]:
    """``pintu registry journal``'s output, parsed."""
    entries: list[JournalEntry] = []
    for line in output.splitlines():
        change = JOURNAL_CHANGE.match(line)
        if change and entries:
            last = entries[-1]
            entries[-1] = JournalEntry(
                last.version, last.at, last.actor, last.reason, (*last.changes, change["change"])
            )
            continue
        header = JOURNAL_HEADER.match(line)
        assert header, f"unexpected journal line: {line!r}"
        at = dt.datetime.strptime(header["at"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC)
        entries.append(
            JournalEntry(int(header["version"]), at, header["actor"], header["reason"], ())
        )
    return entries


def read_back(
    registry: RegistryDirectory, first: int, last: int | None = None
) -> tuple[dict[str, Any], list[JournalEntry]]:
    """``registry state`` and ``registry journal --after FIRST-1`` (at the same time), after the
    changes that made versions ``first`` to ``last`` (default: just ``first``): the state, which
    must be at ``last``, and the journal's entries, which must be those versions', one each,
    recent."""
    last = first if last is None else last
    state_result, journal_result = together(
        lambda: registry.run("state"),
        lambda: registry.run("journal", "--after", str(first - 1)),
    )
    state: dict[str, Any] = json.loads(succeeded(state_result))
    assert state["registry_version"] == last
    entries = journal_entries(succeeded(journal_result))
    assert [e.version for e in entries] == list(range(first, last + 1)), entries
    now = dt.datetime.now(dt.UTC)
    for entry in entries:
        assert abs(entry.at - now) < dt.timedelta(minutes=5), entry
    return state, entries


def part(state: dict[str, Any], kind: str, identifier: str) -> dict[str, Any] | None:
    """The entry of ``state[kind]`` with that id (``code`` for global groups), or None."""
    key = "code" if kind == "global_groups" else "id"
    found = [entry for entry in state[kind] if entry[key] == identifier]
    assert len(found) <= 1, found
    return found[0] if found else None


def distribution(registry: RegistryDirectory) -> str:
    """The first distribution URL the registry's anchor names."""
    document = json.loads(registry.anchor.read_text(encoding="utf-8"))
    url: str = document["distribution"][0]
    return url


def verified(registry: RegistryDirectory, blob: bytes) -> VerifiedSnapshot:
    """A served snapshot, verified as a security server verifies it: against its anchor."""
    anchor = Anchor.load(registry.anchor)
    verifier = SnapshotVerifier(anchor.instance, anchor.roots)
    return verifier.verify(blob, now=dt.datetime.now(dt.UTC))


def served(registry: RegistryDirectory) -> VerifiedSnapshot:
    """``GET`` of the anchor's distribution URL, verified."""
    response = httpx.get(distribution(registry), timeout=COMMAND_TIMEOUT)
    assert response.status_code == 200, response
    return verified(registry, response.content)


def served_version(registry: RegistryDirectory) -> int:
    """The version of the snapshot the registry serves."""
    return served(registry).configuration.version


def signer(blob: bytes) -> bytes:
    """The DER of the certificate that signed a served snapshot."""
    return bytes(registry_pb2.SignedGlobalConfiguration.FromString(blob).signer_chain[0])


def write_json(path: Path, document: object) -> Path:
    """``document`` as a JSON file."""
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def self_signed(path: Path, name: str) -> Path:
    """A self-signed certificate (PEM) to register by hand."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return path


def with_ca(registry: RegistryDirectory, directory: Path | None = None) -> list[str | Path]:
    """``--dir DIR --ca-dir CA --passphrase-file SECRET`` (default DIR: the registry's)."""
    return [
        "--dir",
        registry.path if directory is None else directory,
        "--ca-dir",
        registry.ca.path,
        "--passphrase-file",
        registry.ca.secret,
    ]


# --- fixtures ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Federation:
    """The module's registry (running), its viewer's credentials, and DEMO/GOV/X/ss1 enrolled
    through the CA's service (so its certificate is registered)."""

    registry: RegistryDirectory
    viewer: Path
    server: GatewayFiles


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """A CA, a registry made by ``pintu registry init`` with an admin and a viewer operator,
    ``pintu registry serve`` running for the module, :data:`FEDERATION` and :data:`PARTS`
    imported, and ss1 enrolled (the CA's service runs only for that)."""
    base = tmp_path_factory.mktemp("registry-cli")
    secret = base / "passphrase"
    secret.write_text(PASSPHRASE + "\n", encoding="utf-8")
    secret.chmod(0o600)
    ca = init_ca(base / "ca", secret)
    registry = init_registry(ca, base / "registry")
    viewer = base / "viewer"
    succeeded(
        pintu(
            "registry",
            "operator",
            *with_ca(registry),
            "--name",
            "viewer",
            "--role",
            "viewer",
            "--out",
            viewer,
            env=ca.env,
        )
    )
    members = cast(list[dict[str, Any]], FEDERATION["members"])
    servers = cast(list[dict[str, Any]], FEDERATION["security_servers"])
    document = {
        **FEDERATION,
        "members": [*members, *PARTS],
        "security_servers": [*servers, *PART_SERVERS],
    }
    with serving_registry(registry, base / "run"):
        succeeded(
            registry.run(
                "import", write_json(base / "federation.json", document), "--reason", "setup"
            )
        )
        with serving(ca, base / "run"):
            gateway = gateway_files(base / "ss1", SS1, ca, anchor=registry.anchor)
            succeeded(enroll(gateway, ca.token(SS1)))
        yield Federation(registry, viewer, gateway)


@pytest.fixture(scope="module")
def descriptor_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A FileDescriptorSet of population.proto (which imports timestamp.proto) and
    benefits.proto, compiled with protoc (grpc_tools) as an operator compiles it."""
    base = tmp_path_factory.mktemp("protos")
    for name, text in ((POPULATION_FILE, POPULATION_PROTO), (BENEFITS_FILE, BENEFITS_PROTO)):
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_text(text, encoding="utf-8")
    out = base / "services.pb"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{base}",
            f"-I{Path(grpc_tools.__file__).parent / '_proto'}",
            "--include_imports",
            f"--descriptor_set_out={out}",
            POPULATION_FILE,
            BENEFITS_FILE,
        ],
        cwd=base,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture
def registry(federation: Federation) -> RegistryDirectory:
    """The module's running registry."""
    return federation.registry


# --- registry init -------------------------------------------------------------------------------


def test_init_writes_settings_keys_roots_and_anchor(registry: RegistryDirectory) -> None:
    settings = tomllib.loads((registry.path / "registry.toml").read_text(encoding="utf-8"))
    assert settings["instance"] == INSTANCE
    assert settings["address"] == settings["listen"]
    assert settings["distribution"] == [f"http://{settings['http_listen']}/global-configuration"]
    assert settings["database"] == f"sqlite:///{(registry.path / 'registry.db').resolve()}"
    assert settings["validity_seconds"] == 3600
    assert settings["operators"]["admin"] == "admin"
    for key in ("signing.key", "tls.key"):
        assert mode(registry.path / key) == 0o600, key

    [root] = certificates(registry.ca.pem(1, "root"))
    assert certificates(registry.path / "roots.pem") == [root]
    signing = certificates(registry.path / "signing.pem")
    usage = signing[0].extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [CONFIGURATION_SIGNING]
    names = signing[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"urn:pintu:registry:{INSTANCE}"
    ]
    chain = registry.path / "signing.pem"
    verify = openssl("verify", "-CAfile", registry.ca.pem(1, "root"), "-untrusted", chain, chain)
    assert verify.stdout.strip() == f"{chain}: OK", verify.stderr
    tls = certificates(registry.path / "tls.pem")[0]
    dns = tls.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "registry.pintu.invalid" in dns.get_values_for_type(x509.DNSName)

    # The anchor, as security servers' operators receive it ...
    anchor = json.loads(registry.anchor.read_text(encoding="utf-8"))
    assert anchor["format"] == 1
    assert anchor["instance"] == INSTANCE
    assert anchor["registry"] == settings["address"]
    assert anchor["distribution"] == settings["distribution"]
    assert [x509.load_pem_x509_certificate(r.encode()) for r in anchor["roots"]] == [root]
    # ... is usable: the snapshot served at its URL verifies against its roots.
    assert served(registry).configuration.instance == INSTANCE


def test_init_takes_the_addresses_servers_use(registry: RegistryDirectory, tmp_path: Path) -> None:
    directory = tmp_path / "registry"
    urls = ["http://registry.example.gov:7501/global-configuration", "http://10.0.0.7:7501/gc"]
    output = succeeded(
        pintu(
            "registry",
            "init",
            *with_ca(registry, directory),
            "--instance",
            INSTANCE,
            "--listen",
            "0.0.0.0:7500",
            "--http-listen",
            "0.0.0.0:7501",
            "--address",
            "registry.example.gov:7500",
            "--distribution",
            urls[0],
            "--distribution",
            urls[1],
            "--validity",
            "600",
            env=registry.ca.env,
        )
    )
    assert output.strip() == (
        f"registry created in {directory}; anchor for servers: {directory / 'anchor.json'}"
    )
    settings = tomllib.loads((directory / "registry.toml").read_text(encoding="utf-8"))
    assert (settings["listen"], settings["http_listen"], settings["address"]) == (
        "0.0.0.0:7500",
        "0.0.0.0:7501",
        "registry.example.gov:7500",
    )
    assert settings["validity_seconds"] == 600
    anchor = Anchor.load(directory / "anchor.json")
    assert anchor.instance == INSTANCE
    assert anchor.registry == "registry.example.gov:7500"
    assert anchor.distribution == tuple(urls)
    tls = certificates(directory / "tls.pem")[0]
    dns = tls.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"registry.example.gov", "registry.pintu.invalid"} <= set(
        dns.get_values_for_type(x509.DNSName)
    )


def test_init_twice_in_one_folder_is_refused(registry: RegistryDirectory) -> None:
    kept = ["registry.toml", "anchor.json", "signing.key", "signing.pem", "tls.key", "tls.pem"]
    before = {name: (registry.path / name).read_bytes() for name in kept}

    refusal = refused(
        pintu(
            "registry",
            "init",
            *with_ca(registry),
            "--instance",
            INSTANCE,
            "--listen",
            f"127.0.0.1:{free_port()}",
            env=registry.ca.env,
        )
    )

    assert refusal == Refusal("config_invalid", f"{registry.path} holds a registry already")
    assert {name: (registry.path / name).read_bytes() for name in kept} == before


def test_init_with_a_malformed_instance_is_refused(
    registry: RegistryDirectory, tmp_path: Path
) -> None:
    directory = tmp_path / "registry"
    refusal = refused(
        pintu(
            "registry",
            "init",
            *with_ca(registry, directory),
            "--instance",
            "DE/MO",
            env=registry.ca.env,
        )
    )
    assert refusal.code == "config_invalid"
    assert refusal.message.startswith('--instance: registry "DE/MO": '), refusal.message
    assert '"/"' in refusal.message, refusal.message
    assert not directory.exists()


@pytest.mark.parametrize(("option", "value"), [("--validity", "10"), ("--listen", "no-port-here")])
def test_init_with_settings_the_registry_cannot_serve_with_is_refused(
    registry: RegistryDirectory, tmp_path: Path, option: str, value: str
) -> None:
    # `registry serve` accepts a snapshot validity of 60 s to 30 days only, and cannot listen
    # without a port: init must say so, naming the option, instead of writing a registry that
    # never starts.
    directory = tmp_path / "registry"
    refusal = refused(
        pintu(
            "registry",
            "init",
            *with_ca(registry, directory),
            "--instance",
            INSTANCE,
            option,
            value,
            env=registry.ca.env,
        )
    )
    assert refusal.code == "config_invalid"
    assert refusal.message.startswith(f"{option}: "), refusal.message
    assert not (directory / "registry.toml").exists()


# --- registry operator ---------------------------------------------------------------------------


def test_operator_gets_credentials_and_its_role(federation: Federation) -> None:
    viewer = federation.viewer
    assert mode(viewer / "key.pem") == 0o600
    settings = tomllib.loads((viewer / "operator.toml").read_text(encoding="utf-8"))
    anchor = json.loads(federation.registry.anchor.read_text(encoding="utf-8"))
    assert settings == {
        "registry": anchor["registry"],
        "key": "key.pem",
        "certificate": "cert.pem",
        "trust_anchors": "roots.pem",
    }
    leaf = certificates(viewer / "cert.pem")[0]
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == [
        "urn:pintu:operator:viewer"
    ]
    roots = certificates(federation.registry.ca.pem(1, "root"))
    assert certificates(viewer / "roots.pem") == roots
    registry = tomllib.loads((federation.registry.path / "registry.toml").read_text())
    assert registry["operators"]["admin"] == "admin"
    assert registry["operators"]["viewer"] == "viewer"


def test_operator_with_an_unknown_role_is_refused(
    registry: RegistryDirectory, tmp_path: Path
) -> None:
    settings = (registry.path / "registry.toml").read_bytes()
    result = pintu(
        "registry",
        "operator",
        *with_ca(registry),
        "--name",
        "root",
        "--role",
        "superuser",
        "--out",
        tmp_path / "root",
        env=registry.ca.env,
    )
    # Refused by the argument parser, which lists the roles there are.
    assert result.returncode == 2, result.stderr
    assert "argument --role: invalid choice: 'superuser'" in result.stderr
    assert "'admin'" in result.stderr
    assert "'viewer'" in result.stderr
    assert not (tmp_path / "root").exists()
    assert (registry.path / "registry.toml").read_bytes() == settings


def test_operator_with_a_malformed_name_is_refused(
    registry: RegistryDirectory, tmp_path: Path
) -> None:
    settings = (registry.path / "registry.toml").read_bytes()
    refusal = refused(
        pintu(
            "registry",
            "operator",
            *with_ca(registry),
            "--name",
            "alice smith",
            "--role",
            "admin",
            "--out",
            tmp_path / "alice",
            env=registry.ca.env,
        )
    )
    assert refusal.code == "config_invalid"
    assert refusal.message.startswith('--name: operator "alice smith": '), refusal.message
    assert not (tmp_path / "alice").exists()
    assert (registry.path / "registry.toml").read_bytes() == settings


def test_operator_added_while_the_registry_runs_is_taken_within_a_second(
    registry: RegistryDirectory, tmp_path: Path
) -> None:
    late = tmp_path / "late"
    succeeded(
        pintu(
            "registry",
            "operator",
            *with_ca(registry),
            "--name",
            "late",
            "--role",
            "admin",
            "--out",
            late,
            env=registry.ca.env,
        )
    )
    version = served_version(registry)
    attempts: list[subprocess.CompletedProcess[str]] = []

    def changed_by_late() -> bool:
        attempts.append(
            pintu("registry", "member", "put", "DEMO/GOV/LATE", "--name", "L", "--operator", late)
        )
        return attempts[-1].returncode == 0

    # As docs/registry.md says, the running registry takes the new operator within a second;
    # until then it refuses it in words (not a role of None).
    wait_until(changed_by_late, "the new operator's change", timeout=10)
    for attempt in attempts[:-1]:
        refusal = outcome(attempt)
        assert refusal.code == "operator_not_authorized"
        assert refusal.message.endswith("operator late is not known to this registry")
    assert changed(attempts[-1]) == version + 1
    entries = journal_entries(succeeded(registry.run("journal", "--after", str(version))))
    assert [(e.version, e.actor) for e in entries] == [(version + 1, "operator late")]


# --- members and subsystems ----------------------------------------------------------------------


def test_member_put_and_remove_are_journaled_and_served(registry: RegistryDirectory) -> None:
    member = "DEMO/GOV/POPREG2"
    url = distribution(registry)
    first = httpx.get(url, timeout=COMMAND_TIMEOUT)
    assert first.status_code == 200
    tag = first.headers["etag"]
    assert tag == f'"{hashlib.sha256(first.content).hexdigest()}"'
    assert first.headers["content-type"] == "application/x-protobuf"
    unchanged = httpx.get(url, headers={"If-None-Match": tag}, timeout=COMMAND_TIMEOUT)
    assert (unchanged.status_code, unchanged.content) == (304, b"")
    before = verified(registry, first.content).configuration.version

    put = changed(
        registry.run(
            "member", "put", member, "--name", "Population Registry", "--reason", "onboarding"
        )
    )

    assert put == before + 1
    # The distribution side answers the new snapshot to the old tag.
    after = httpx.get(url, headers={"If-None-Match": tag}, timeout=COMMAND_TIMEOUT)
    assert after.status_code == 200
    assert after.headers["etag"] != tag
    configuration = verified(registry, after.content).configuration
    assert configuration.version == put
    assert member in {str(m) for m in configuration.members}

    removed = changed(registry.run("member", "remove", LEAVING, "--reason", "merged"))

    assert removed == put + 1
    state, entries = read_back(registry, put, removed)
    assert part(state, "members", member) == {
        "id": member,
        "name": "Population Registry",
        "subsystems": [],
    }
    assert part(state, "members", LEAVING) is None
    assert [(e.actor, e.reason, e.changes) for e in entries] == [
        ("operator admin", "onboarding", (f"put_member {member} 'Population Registry'",)),
        ("operator admin", "merged", (f"remove_member {LEAVING}",)),
    ]
    assert LEAVING not in {str(m) for m in served(registry).configuration.members}


def test_member_put_again_renames_it_and_keeps_its_subsystems(
    registry: RegistryDirectory,
) -> None:
    version = changed(registry.run("member", "put", RENAMED, "--name", "New name"))

    configuration = served(registry).configuration
    assert configuration.version == version
    renamed = configuration.members[MemberId.parse(RENAMED)]
    assert renamed.name == "New name"
    # `member put` has no option for subsystems: renaming a member must not drop them.
    assert sorted(renamed.subsystems) == ["portal"]


def test_member_remove_while_it_has_servers_is_refused(registry: RegistryDirectory) -> None:
    version = served_version(registry)

    refusal = outcome(registry.run("member", "remove", MEMBER))

    assert refusal == Refusal(
        "change_refused", f"change 1: {MEMBER} still has security servers: remove them first"
    )
    assert served_version(registry) == version


def test_subsystem_add_and_remove(registry: RegistryDirectory) -> None:
    subsystem = f"{SUBSYSTEMS}/intake"
    added = changed(registry.run("subsystem", "add", subsystem, "--reason", "new intake"))

    assert served(registry).configuration.has_subsystem(SubsystemId.parse(subsystem))
    state = json.loads(succeeded(registry.run("state")))
    assert part(state, "members", SUBSYSTEMS) == {
        "id": SUBSYSTEMS,
        "name": "Subsystem agency",
        "subsystems": ["intake"],
    }

    removed = changed(registry.run("subsystem", "remove", subsystem, "--reason", "closed"))

    assert removed == added + 1
    state, entries = read_back(registry, added, removed)
    assert cast(dict[str, Any], part(state, "members", SUBSYSTEMS))["subsystems"] == []
    assert [(e.reason, e.changes) for e in entries] == [
        ("new intake", (f"add_subsystem {subsystem}",)),
        ("closed", (f"remove_subsystem {subsystem}",)),
    ]
    assert not served(registry).configuration.has_subsystem(SubsystemId.parse(subsystem))


# --- security servers ----------------------------------------------------------------------------


def test_server_put_and_remove(registry: RegistryDirectory) -> None:
    server = f"{SERVERS}/ss1"
    put = changed(
        registry.run(
            "server",
            "put",
            server,
            "--address",
            "127.0.0.1:7101",
            "--address",
            "[::1]:7101",
            "--serves",
            "intake",
            "--serves",
            "archive",
            "--reason",
            "first server",
        )
    )
    removed = changed(registry.run("server", "remove", RETIRED_SERVER, "--reason", "retired"))

    assert removed == put + 1
    state, entries = read_back(registry, put, removed)
    assert part(state, "security_servers", server) == {
        "id": server,
        "addresses": ["127.0.0.1:7101", "[::1]:7101"],
        "certificates_sha256": [],
        "subsystems": ["archive", "intake"],
    }
    assert part(state, "security_servers", RETIRED_SERVER) is None
    assert [(e.reason, e.changes) for e in entries] == [
        (
            "first server",
            (f"put_security_server {server} 127.0.0.1:7101,[::1]:7101 serving archive,intake",),
        ),
        ("retired", (f"remove_security_server {RETIRED_SERVER}",)),
    ]
    configuration = served(registry).configuration
    # A server serving no listed subsystem serves all of its owner's.
    servers_for = {
        code: {str(s.id) for s in configuration.servers_for(SubsystemId.parse(f"{SERVERS}/{code}"))}
        for code in ("intake", "archive", "reports")
    }
    assert servers_for == {
        "intake": {server, CERTIFIED_SERVER},
        "archive": {server, CERTIFIED_SERVER},
        "reports": {CERTIFIED_SERVER},
    }
    assert RETIRED_SERVER not in {str(s) for s in configuration.security_servers}


def test_server_put_again_keeps_the_certificate_it_registered(federation: Federation) -> None:
    registry = federation.registry
    registered = fingerprint(federation.server.certificate)

    version = changed(registry.run("server", "put", SS1, "--address", "127.0.0.1:17104"))

    configuration = served(registry).configuration
    assert configuration.version == version
    server = configuration.security_servers[SecurityServerId.parse(SS1)]
    assert server.addresses == ("127.0.0.1:17104",)
    assert [c.hex() for c in server.certificates] == [registered]
    assert str(configuration.server_with_certificate(bytes.fromhex(registered))) == SS1


def test_server_add_and_remove_certificate(registry: RegistryDirectory, tmp_path: Path) -> None:
    pem = self_signed(tmp_path / "auth.pem", "certified")
    sha256 = fingerprint(pem)

    added = changed(
        registry.run(
            "server",
            "add-certificate",
            CERTIFIED_SERVER,
            "--certificate",
            pem,
            "--reason",
            "by hand",
        )
    )

    owner = served(registry).configuration.server_with_certificate(bytes.fromhex(sha256))
    assert str(owner) == CERTIFIED_SERVER
    assert registry.certificates_of(CERTIFIED_SERVER) == [sha256]

    removed = changed(
        registry.run(
            "server",
            "remove-certificate",
            CERTIFIED_SERVER,
            "--sha256",
            sha256,
            "--reason",
            "compromised",
        )
    )

    assert removed == added + 1
    state, entries = read_back(registry, added, removed)
    certified = cast(dict[str, Any], part(state, "security_servers", CERTIFIED_SERVER))
    assert certified["certificates_sha256"] == []
    assert [(e.reason, e.changes) for e in entries] == [
        ("by hand", (f"add_certificate {CERTIFIED_SERVER} {sha256}",)),
        ("compromised", (f"remove_certificate {CERTIFIED_SERVER} {sha256}",)),
    ]
    assert served(registry).configuration.server_with_certificate(bytes.fromhex(sha256)) is None


def test_certificate_of_another_server_is_refused(federation: Federation) -> None:
    registry = federation.registry
    version = served_version(registry)
    certificate = federation.server.certificate

    refusal = outcome(registry.run("server", "add-certificate", SS2, "--certificate", certificate))

    sha256 = fingerprint(certificate)
    assert refusal.code == "change_refused"
    assert refusal.message.startswith("the registry would be inconsistent: "), refusal.message
    assert refusal.message.endswith(f"certificate {sha256[:16]}... is registered for {SS1} already")
    configuration = served(registry).configuration
    assert configuration.version == version
    assert configuration.security_servers[SecurityServerId.parse(SS2)].certificates == frozenset()


# --- services ------------------------------------------------------------------------------------


def test_service_put_with_descriptors_and_personal_data_facts(
    registry: RegistryDirectory, descriptor_set: Path
) -> None:
    version = changed(
        registry.run(
            "service",
            "put",
            CIVIL_REGISTRY,
            "--descriptors",
            descriptor_set,
            "--description",
            "Residents and births",
            "--personal-data",
            "--category",
            "identity",
            "--category",
            "family",
            "--purpose",
            "birth-support",
            "--legal-basis",
            "Birth Support Act, art. 12",
            "--reason",
            "new service",
        )
    )

    state, [entry] = read_back(registry, version)
    assert part(state, "services", CIVIL_REGISTRY) == {
        "id": CIVIL_REGISTRY,
        # Methods default to those the descriptors declare.
        "methods": ["GetPerson", "ListBirths"],
        "description": "Residents and births",
        "personal_data": True,
        "data_categories": ["identity", "family"],
        "purposes": ["birth-support"],
        "consent_required": False,
        "legal_basis": "Birth Support Act, art. 12",
    }
    assert (entry.reason, entry.changes) == ("new service", (f"put_service {CIVIL_REGISTRY}",))
    configuration = served(registry).configuration
    service = configuration.services[ServiceId.parse(CIVIL_REGISTRY)]
    assert service.descriptor_file == POPULATION_FILE
    # The snapshot carries the defining file and what it imports.
    names = {
        descriptor_pb2.FileDescriptorProto.FromString(raw).name
        for raw in configuration.descriptor_files
    }
    assert {POPULATION_FILE, TIMESTAMP_FILE} <= names


def test_service_put_with_methods_requiring_consent_and_remove(
    registry: RegistryDirectory,
) -> None:
    service = f"{HEALTH}/clinics/health.v1.Eligibility"
    put = changed(
        registry.run(
            "service",
            "put",
            service,
            "--method",
            "Check",
            "--method",
            "Report",
            "--description",
            "Who may be treated",
            "--personal-data",
            "--category",
            "health",
            "--purpose",
            "treatment",
            "--consent-required",
            "--reason",
            "eligibility checks",
        )
    )

    facts = served(registry).configuration.services[ServiceId.parse(service)]
    assert (facts.methods, facts.consent_required, facts.descriptor_file) == (
        ("Check", "Report"),
        True,
        "",
    )
    state = json.loads(succeeded(registry.run("state")))
    assert part(state, "services", service) == {
        "id": service,
        "methods": ["Check", "Report"],
        "description": "Who may be treated",
        "personal_data": True,
        "data_categories": ["health"],
        "purposes": ["treatment"],
        "consent_required": True,
        "legal_basis": "",
    }

    removed = changed(registry.run("service", "remove", service, "--reason", "replaced"))

    assert removed == put + 1
    state, entries = read_back(registry, put, removed)
    assert part(state, "services", service) is None
    assert [(e.reason, e.changes) for e in entries] == [
        ("eligibility checks", (f"put_service {service}",)),
        ("replaced", (f"remove_service {service}",)),
    ]
    assert ServiceId.parse(service) not in served(registry).configuration.services


def test_service_method_not_in_the_descriptors_is_refused(
    registry: RegistryDirectory, descriptor_set: Path
) -> None:
    version = served_version(registry)
    refusal = outcome(
        registry.run(
            "service",
            "put",
            CIVIL_REGISTRY,
            "--descriptors",
            descriptor_set,
            "--method",
            "GetPerson",
            "--method",
            "DeletePerson",
        )
    )
    assert refusal.code == "change_refused"
    assert "popreg.v1.CivilRegistry" in refusal.message
    # The message names the method the descriptors do not declare.
    assert "DeletePerson" in refusal.message, refusal.message
    assert served_version(registry) == version


def test_service_descriptors_that_are_not_a_descriptor_set_are_refused(
    registry: RegistryDirectory, descriptor_set: Path
) -> None:
    # The usual mistake: the .proto source instead of what protoc compiled from it.
    source = descriptor_set.parent / POPULATION_FILE
    refusal = outcome(registry.run("service", "put", CIVIL_REGISTRY, "--descriptors", source))
    assert refusal == Refusal(
        "config_invalid", f"--descriptors: {source} is not a FileDescriptorSet"
    )


def test_service_asking_consent_without_personal_data_is_refused(
    registry: RegistryDirectory,
) -> None:
    version = served_version(registry)
    refusal = outcome(
        registry.run(
            "service",
            "put",
            f"{HEALTH}/clinics/health.v1.Opening",
            "--method",
            "Hours",
            "--consent-required",
        )
    )
    assert refusal.code == "change_refused"
    assert refusal.message.endswith(
        "consent_required: only a service handling personal data asks for consent"
    ), refusal.message
    assert served_version(registry) == version


# --- global groups -------------------------------------------------------------------------------


def test_group_put_and_remove(registry: RegistryDirectory) -> None:
    members = [f"{KOTA1}/services", f"{KOTA2}/services"]
    put = changed(
        registry.run(
            "group",
            "put",
            "municipalities",
            "--description",
            "All municipalities",
            "--member",
            members[0],
            "--member",
            members[1],
            "--reason",
            "regional rollout",
        )
    )

    configuration = served(registry).configuration
    assert configuration.groups["municipalities"].description == "All municipalities"
    for member in members:
        assert "municipalities" in configuration.groups_of(SubsystemId.parse(member))
    state = json.loads(succeeded(registry.run("state")))
    assert part(state, "global_groups", "municipalities") == {
        "code": "municipalities",
        "description": "All municipalities",
        "members": members,
    }

    removed = changed(registry.run("group", "remove", "municipalities", "--reason", "done"))

    assert removed == put + 1
    state, entries = read_back(registry, put, removed)
    assert part(state, "global_groups", "municipalities") is None
    assert [(e.reason, e.changes) for e in entries] == [
        ("regional rollout", ("put_global_group municipalities",)),
        ("done", ("remove_global_group municipalities",)),
    ]
    assert "municipalities" not in served(registry).configuration.groups


# --- import --------------------------------------------------------------------------------------


def test_import_puts_every_part_in_one_version(
    registry: RegistryDirectory, descriptor_set: Path, tmp_path: Path
) -> None:
    welfare = "DEMO/GOV/WELFARE"
    service = f"{welfare}/birthsupport/welfare.v1.Benefits"
    document = {
        "version": 1,
        "instance": INSTANCE,
        "members": [{"id": welfare, "name": "Welfare Agency", "subsystems": ["birthsupport"]}],
        "security_servers": [{"id": f"{welfare}/ss1", "addresses": ["127.0.0.1:7301"]}],
        "services": [
            {
                "id": service,
                "description": "Birth grants",
                "personal_data": True,
                "data_categories": ["family"],
                "purposes": ["birth-support"],
                "legal_basis": "Birth Support Act, art. 3",
            }
        ],
        "global_groups": [{"code": "welfare-agencies", "members": [f"{welfare}/birthsupport"]}],
    }
    before = served_version(registry)

    version = changed(
        registry.run(
            "import",
            write_json(tmp_path / "welfare.json", document),
            "--descriptors",
            descriptor_set,
            "--reason",
            "welfare onboarding",
        )
    )

    assert version == before + 1
    state, [entry] = read_back(registry, version)
    assert part(state, "members", welfare) == {
        "id": welfare,
        "name": "Welfare Agency",
        "subsystems": ["birthsupport"],
    }
    assert part(state, "security_servers", f"{welfare}/ss1") == {
        "id": f"{welfare}/ss1",
        "addresses": ["127.0.0.1:7301"],
        "certificates_sha256": [],
        "subsystems": [],
    }
    assert part(state, "services", service) == {
        "id": service,
        "methods": ["Apply", "Status"],
        "description": "Birth grants",
        "personal_data": True,
        "data_categories": ["family"],
        "purposes": ["birth-support"],
        "consent_required": False,
        "legal_basis": "Birth Support Act, art. 3",
    }
    assert part(state, "global_groups", "welfare-agencies") == {
        "code": "welfare-agencies",
        "description": "",
        "members": [f"{welfare}/birthsupport"],
    }
    assert (entry.actor, entry.reason) == ("operator admin", "welfare onboarding")
    assert entry.changes == (
        f"put_member {welfare} 'Welfare Agency'",
        f"put_security_server {welfare}/ss1 127.0.0.1:7301",
        f"put_service {service}",
        "put_global_group welfare-agencies",
    )
    defined = served(registry).configuration.services[ServiceId.parse(service)]
    assert defined.descriptor_file == BENEFITS_FILE


def test_import_with_an_identifier_given_twice_is_refused(
    registry: RegistryDirectory, tmp_path: Path
) -> None:
    twice = "DEMO/GOV/TWICE"
    document = {
        "version": 1,
        "instance": INSTANCE,
        "members": [{"id": twice, "name": "One"}, {"id": twice, "name": "Two"}],
    }
    version = served_version(registry)

    refusal = outcome(registry.run("import", write_json(tmp_path / "twice.json", document)))

    assert refusal == Refusal("config_invalid", f"members[1].id: {twice} is listed twice")
    assert served_version(registry) == version


def test_import_of_malformed_json_is_refused(registry: RegistryDirectory, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.json"
    truncated.write_text('{"version": 1, "instance": "DEMO", "members": [', encoding="utf-8")

    refusal = outcome(registry.run("import", truncated))

    assert refusal.code == "config_invalid"
    assert refusal.message.startswith(f"{truncated}: not JSON: "), refusal.message


# --- refusals ------------------------------------------------------------------------------------


UNKNOWN_PARTS: list[tuple[list[str], str]] = [
    (["subsystem", "add", "DEMO/GOV/NOPE/app"], "change 1: DEMO/GOV/NOPE is not a member"),
    (
        ["server", "put", "DEMO/GOV/NOPE/ss1", "--address", "127.0.0.1:7000"],
        "owner DEMO/GOV/NOPE is not a member",
    ),
    (
        ["server", "put", f"{MEMBER}/ss9", "--address", "127.0.0.1:7000", "--serves", "nope"],
        f"{MEMBER}/nope is not a registered subsystem",
    ),
    (
        ["service", "put", f"{MEMBER}/nope/x.v1.Y", "--method", "Get"],
        f"provider {MEMBER}/nope is not a subsystem",
    ),
    (
        ["group", "put", "unknown-members", "--member", f"{MEMBER}/nope"],
        f"{MEMBER}/nope is not a registered subsystem",
    ),
    (["member", "remove", "DEMO/GOV/NOPE"], "change 1: DEMO/GOV/NOPE is not a member"),
    (["server", "remove", f"{MEMBER}/ss9"], f"change 1: {MEMBER}/ss9 is not a registered"),
    (["service", "remove", f"{MEMBER}/app/x.v1.Y"], f"change 1: {MEMBER}/app/x.v1.Y is not"),
    (["group", "remove", "no-such-group"], "change 1: no-such-group is not a global group"),
]


def test_changes_naming_unknown_parts_are_refused(registry: RegistryDirectory) -> None:
    version = served_version(registry)

    results = together(*(partial(registry.run, *arguments) for arguments, _ in UNKNOWN_PARTS))

    wrong = []
    for (arguments, expected), result in zip(UNKNOWN_PARTS, results, strict=True):
        refusal = outcome(result)
        if refusal.code != "change_refused" or expected not in refusal.message:
            wrong.append(f"{' '.join(arguments)}: {refusal}")
    assert not wrong, "\n".join(wrong)
    assert served_version(registry) == version


MALFORMED: list[tuple[list[str], Refusal]] = [
    # Refused by the command before it calls the registry ...
    (
        ["member", "put", "DEMO/GOV", "--name", "X"],
        Refusal("config_invalid", 'member: member "DEMO/GOV": '),
    ),
    (
        ["group", "put", "g", "--member", MEMBER],
        Refusal("config_invalid", f'--member: subsystem "{MEMBER}": '),
    ),
    (
        ["server", "put", MEMBER, "--address", "127.0.0.1:7000"],
        Refusal("config_invalid", f'server: security server "{MEMBER}": '),
    ),
    (
        ["service", "put", f"{MEMBER}/app/NoPackage", "--method", "Get"],
        Refusal("config_invalid", f'service: service "{MEMBER}/app/NoPackage": '),
    ),
    (
        ["server", "remove-certificate", SS1, "--sha256", "not-hex"],
        Refusal("config_invalid", "--sha256: the certificate's SHA-256, 64 hex digits"),
    ),
    # ... or well-formed but of another instance: refused by the registry.
    (
        ["member", "put", "OTHER/GOV/X", "--name", "X"],
        Refusal("change_refused", "OTHER/GOV/X is not in DEMO"),
    ),
    (
        ["server", "put", f"{MEMBER}/ss9", "--address", "no-port"],
        Refusal("change_refused", "'no-port' is not 'host:port'"),
    ),
]


def test_malformed_identifiers_are_refused(registry: RegistryDirectory) -> None:
    version = served_version(registry)

    results = together(*(partial(registry.run, *arguments) for arguments, _ in MALFORMED))

    wrong = []
    for (arguments, expected), result in zip(MALFORMED, results, strict=True):
        refusal = outcome(result)
        if expected.code == "config_invalid":
            matches = refusal.message.startswith(expected.message)
        else:
            matches = expected.message in refusal.message
        if refusal.code != expected.code or not matches:
            wrong.append(f"{' '.join(arguments)}: {refusal}")
    assert not wrong, "\n".join(wrong)
    assert served_version(registry) == version


def test_viewer_reads_but_may_not_change(federation: Federation) -> None:
    registry, viewer = federation.registry, federation.viewer
    version = served_version(registry)
    env = {**registry.ca.env, "PINTU_OPERATOR": str(viewer)}

    state_result, journal_result, change_result = together(
        # The credentials folder may come from $PINTU_OPERATOR.
        lambda: pintu("registry", "state", env=env),
        lambda: pintu("registry", "journal", "--operator", viewer, env=registry.ca.env),
        lambda: pintu(
            "registry", "member", "put", "DEMO/GOV/VIEWED", "--name", "V", "--operator", viewer
        ),
    )

    state = json.loads(succeeded(state_result))
    assert state["registry_version"] == version
    assert part(state, "members", MEMBER) is not None
    # Every change so far, one version each, in order; the security server's registration of
    # its own certificate among them.
    journal = journal_entries(succeeded(journal_result))
    assert [e.version for e in journal] == list(range(1, version + 1))
    assert (journal[0].actor, journal[0].reason) == ("operator admin", "setup")
    assert (f"security server {SS1}", "its authentication certificate") in {
        (e.actor, e.reason) for e in journal
    }
    assert outcome(change_result) == Refusal(
        "operator_not_authorized", "operator viewer (role viewer) may not change the registry"
    )
    assert served_version(registry) == version


def test_security_server_certificate_is_not_an_operator(
    federation: Federation, tmp_path: Path
) -> None:
    registry, gateway = federation.registry, federation.server
    # A credentials folder with the security server's key and certificate instead of an
    # operator's.
    folder = tmp_path / "not-an-operator"
    folder.mkdir()
    shutil.copy(gateway.key, folder / "key.pem")
    shutil.copy(gateway.certificate, folder / "cert.pem")
    shutil.copy(registry.admin / "roots.pem", folder / "roots.pem")
    shutil.copy(registry.admin / "operator.toml", folder / "operator.toml")
    version = served_version(registry)

    refusal = outcome(
        pintu(
            "registry",
            "member",
            "put",
            "DEMO/GOV/INTRUDER",
            "--name",
            "I",
            "--operator",
            folder,
            env=registry.ca.env,
        )
    )

    assert refusal == Refusal(
        "operator_not_authorized", "the caller's certificate names no operator"
    )
    assert served_version(registry) == version


def test_registry_not_running_is_reported(registry: RegistryDirectory, tmp_path: Path) -> None:
    folder = tmp_path / "elsewhere"
    shutil.copytree(registry.admin, folder)
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    settings = (folder / "operator.toml").read_text(encoding="utf-8")
    (folder / "operator.toml").write_text(
        re.sub(r'(?m)^registry = ".*"$', f'registry = "{address}"', settings), encoding="utf-8"
    )

    result = pintu("registry", "state", "--operator", folder, env=registry.ca.env)

    assert outcome(result).code == "registry_unavailable"
    assert refused(result).message.startswith(f"registry at {address}: UNAVAILABLE: ")
    assert result.stdout == ""


def test_without_operator_credentials_is_refused(registry: RegistryDirectory) -> None:
    refusal = refused(pintu("registry", "state", env=registry.ca.env))
    assert refusal == Refusal("config_invalid", "give --operator DIR or set PINTU_OPERATOR")


# --- rotating the signing key while the registry runs -------------------------------------------


async def refreshed(client: ConfigurationClient) -> bool:
    """One poll of the registry (``If-None-Match``), then the client closed."""
    try:
        return await client.refresh()
    finally:
        await client.stop()


def test_rotate_signing_key_while_serving(federation: Federation, tmp_path: Path) -> None:
    registry = federation.registry
    before = served(registry)
    version = before.configuration.version
    # A security server that got its configuration from the anchor before the rotation.
    client = ConfigurationClient(Anchor.load(registry.anchor), tmp_path / "configuration.pb")
    client.bootstrap()
    assert client.configuration.version == version
    anchor = json.loads(registry.anchor.read_bytes())

    registry.rotate()

    [rotated, *_] = certificates(registry.path / "signing.pem")
    new_signer = rotated.public_bytes(serialization.Encoding.DER)
    assert new_signer != signer(before.blob)
    url = distribution(registry)

    def signed_with_the_new_key() -> bool:
        return signer(httpx.get(url, timeout=COMMAND_TIMEOUT).content) == new_signer

    wait_until(signed_with_the_new_key, "the served snapshot signed with the rotated key")
    after = served(registry)
    assert after.configuration.version == version  # re-signed, not rolled back
    assert after.configuration.expires_at is not None
    assert before.configuration.expires_at is not None
    assert after.configuration.expires_at >= before.configuration.expires_at
    # The anchor needs no change: the new key chains to the same roots.
    assert json.loads(registry.anchor.read_bytes()) == anchor
    # The security server takes the re-signed snapshot: same version, no rollback.
    assert asyncio.run(refreshed(client))
    assert client.configuration.version == version

    # The management service goes on (with its new TLS certificate too), and what it signs
    # next verifies from the anchor.
    following = changed(registry.run("member", "put", "DEMO/GOV/ROTATED", "--name", "R"))
    assert following == version + 1
    latest = served(registry)
    assert signer(latest.blob) == new_signer
    assert latest.configuration.version == following
