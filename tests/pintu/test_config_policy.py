"""The ``[policy]`` table of a security server's configuration: what it builds, and how each
fault is named (``<file>: policy.<key>: ...``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import pintu
import policy
from policy import EmbeddedEngine, RemoteOpaEngine
from tests.pintu.test_config import (
    ARCHIVE,
    CIVIL_REGISTRY_SERVICE,
    Site,
    assert_names,
    document,
    refused,
    site,
)

__all__ = ["document", "site"]  # fixtures

RIGHTS = {
    "local_groups": {"archivists": [ARCHIVE]},
    "rights": [
        {"service": CIVIL_REGISTRY_SERVICE, "holder": "local:archivists", "methods": ["Get"]}
    ],
    "windows": [
        {
            "service": CIVIL_REGISTRY_SERVICE,
            "from": "2026-12-01T01:00:00Z",
            "until": "2026-12-01T03:00:00+00:00",
        }
    ],
}


def with_policy(site: Site, document: dict[str, Any], **table: object) -> Path:
    return site.write({**document, "policy": table})


def write_rights(site: Site, content: object, name: str = "rights.json") -> str:
    path = site.folder / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return name


def test_without_a_policy_table_nothing_is_allowed_and_decisions_are_logged(
    site: Site, document: dict[str, Any]
) -> None:
    settings = pintu.load_gateway_settings(site.write(document))
    assert settings.policy.engine is None  # the shipped policies, embedded
    assert len(settings.policy.rights) == 0
    assert settings.policy.rights_file is None
    assert settings.policy.decision_log == site.folder / "decisions.jsonl"
    assert settings.policy.cache_size == 10_000


def test_every_policy_setting_is_read(site: Site, document: dict[str, Any]) -> None:
    folder = site.folder / "policies"
    for path in policy.DEFAULT_POLICIES.rglob("*.rego"):
        target = folder / path.relative_to(policy.DEFAULT_POLICIES)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    (site.folder / "logs").mkdir()
    config = with_policy(
        site,
        document,
        rights=write_rights(site, RIGHTS),
        policies="policies",
        bundle="bundle.tar.gz",
        decision_log="logs/decisions.jsonl",
        cache_size=50,
        watch_seconds=0.5,
    )
    settings = pintu.load_gateway_settings(config).policy
    assert isinstance(settings.engine, EmbeddedEngine)
    assert settings.rights_file == site.folder / "rights.json"
    assert settings.rights.local_groups_of(ARCHIVE) == ("archivists",)
    assert len(settings.rights.windows_for(CIVIL_REGISTRY_SERVICE)) == 1
    assert settings.bundle_file == site.folder / "bundle.tar.gz"
    assert settings.decision_log == site.folder / "logs/decisions.jsonl"
    assert (settings.cache_size, settings.watch_seconds) == (50, 0.5)


def test_a_remote_opa_is_read_without_a_cache(site: Site, document: dict[str, Any]) -> None:
    config = with_policy(site, document, opa="127.0.0.1:8181", opa_timeout_seconds=0.25)
    settings = pintu.load_gateway_settings(config).policy
    assert isinstance(settings.engine, RemoteOpaEngine)
    assert settings.engine.revision == "opa"
    assert settings.cache_size == 0


@pytest.mark.parametrize(
    ("table", "setting", "why"),
    [
        ({"rights": "absent.json"}, "policy.rights", "No such file"),
        ({"rights": "RIGHTS:not json"}, "policy.rights", "Expecting value"),
        (
            {"rights": {"rights": [{"service": "popreg.v1.CivilRegistry", "holder": "x:y"}]}},
            "policy.rights",
            "holder",
        ),
        (
            {"rights": {"rights": [{"service": "popreg.v1.CivilRegistry", "holder": "group:g"}]}},
            "policy.rights",
            "service 'popreg.v1.CivilRegistry'",
        ),
        (
            {
                "rights": {
                    "rights": [
                        {
                            "service": "DEMO/GOV/TAX/assessment/tax.v1.Assessment",
                            "holder": "group:g",
                        }
                    ]
                }
            },
            "policy.rights",
            "not a service of this security server",
        ),
        (
            {
                "rights": {
                    "windows": [
                        {
                            "service": CIVIL_REGISTRY_SERVICE,
                            "from": "2026-12-01T03:00:00Z",
                            "until": "2026-12-01T01:00:00Z",
                        }
                    ]
                }
            },
            "policy.rights",
            "until must come after from",
        ),
        (
            {
                "rights": {
                    "windows": [
                        {
                            "service": CIVIL_REGISTRY_SERVICE,
                            "from": "2026-12-01T01:00:00",
                            "until": "2026-12-01T03:00:00",
                        }
                    ]
                }
            },
            "policy.rights",
            "time zone",
        ),
        ({"rights": {"grants": []}}, "policy.rights", "unknown key 'grants'"),
        ({"policies": "absent-folder"}, "policy.policies", "no .rego file"),
        ({"opa": "127.0.0.1:8181", "policies": "p"}, "policy.policies", "set with opa"),
        ({"opa": "127.0.0.1:8181", "bundle": "b.tar.gz"}, "policy.bundle", "set with opa"),
        ({"opa": "127.0.0.1:8181", "cache_size": 5}, "policy.cache_size", "set with opa"),
        ({"opa": "localhost"}, "policy.opa", "host:port"),
        (
            {"opa": "127.0.0.1:8181", "opa_timeout_seconds": 0},
            "policy.opa_timeout_seconds",
            "between 0 and 60",
        ),
        (
            {"opa": "127.0.0.1:8181", "opa_key": "k.pem"},
            "policy.opa_certificate",
            "go together",
        ),
        (
            {"opa": "127.0.0.1:8181", "opa_trust_anchors": "absent.pem"},
            "policy.opa_trust_anchors",
            "no such file",
        ),
        (
            {"opa": "127.0.0.1:8181", "opa_certificate": "c.pem", "opa_key": "k.pem"},
            "policy.opa_trust_anchors",
            "required with a client certificate",
        ),
        ({"decision_log": "absent/decisions.jsonl"}, "policy.decision_log", "not a folder"),
        ({"rights": "RIGHTS:" + "[" * 100_000 + "]" * 100_000}, "policy.rights", "RecursionError"),
        ({"opa_timeout_seconds": 1}, "policy.opa_timeout_seconds", "set without opa"),
        ({"cache_size": -1}, "policy.cache_size", "between 0 and"),
        ({"watch_seconds": 0}, "policy.watch_seconds", "between 0.1 and 3600"),
        ({"cache_size": "big"}, "policy.cache_size", "expected int"),
        ({"rules": "x"}, "policy.rules", "unknown setting"),
    ],
)
def test_a_bad_policy_setting_is_refused_by_name(
    site: Site, document: dict[str, Any], table: dict[str, Any], setting: str, why: str
) -> None:
    if "rights" in table:
        value = table["rights"]
        if isinstance(value, dict):
            table = {**table, "rights": write_rights(site, value)}
        elif value.startswith("RIGHTS:"):
            table = {**table, "rights": write_rights(site, value.removeprefix("RIGHTS:"))}
    config = with_policy(site, document, **table)
    message = refused(config)
    assert_names(message, config, setting)
    assert why in message


def test_policies_that_fail_their_own_tests_are_refused(
    site: Site, document: dict[str, Any]
) -> None:
    folder = site.folder / "policies" / "pintu"
    folder.mkdir(parents=True)
    shipped = policy.DEFAULT_POLICIES / "pintu"
    (folder / "authz_test.rego").write_bytes((shipped / "authz_test.rego").read_bytes())
    lenient = (
        (shipped / "authz.rego")
        .read_text()
        .replace("default allow := false", "default allow := true")
        .replace("allow if {\n\tinput.version == 1\n\tcount(deny) == 0\n}", "")
    )
    (folder / "authz.rego").write_text(lenient)
    config = with_policy(site, document, policies="policies")
    message = refused(config)
    assert_names(message, config, "policy.policies")
    assert "failed" in message


def test_watched_files_keep_their_symbolic_links(site: Site, document: dict[str, Any]) -> None:
    data = site.folder / "data-1"
    data.mkdir()
    (data / "rights.json").write_text(json.dumps({"rights": []}))
    (site.folder / "current").symlink_to(data)
    config = with_policy(site, document, rights="current/rights.json", bundle="current/b.tar.gz")
    settings = pintu.load_gateway_settings(config).policy
    assert settings.rights_file == site.folder / "current" / "rights.json"
    assert settings.bundle_file == site.folder / "current" / "b.tar.gz"


# -- [consent] ----------------------------------------------------------------------------------


def test_the_consent_table_names_the_service_and_the_staleness_bound(
    site: Site, document: dict[str, Any]
) -> None:
    assert pintu.load_gateway_settings(site.write(document)).consent is None
    config = site.write(
        {**document, "consent": {"service": "127.0.0.1:7600", "max_staleness_seconds": 2}}
    )
    consent = pintu.load_gateway_settings(config).consent
    assert consent is not None
    assert (consent.address, consent.max_staleness_seconds) == ("127.0.0.1:7600", 2.0)
    defaulted = pintu.load_gateway_settings(
        site.write({**document, "consent": {"service": "localhost:7600"}})
    ).consent
    assert defaulted is not None
    assert defaulted.max_staleness_seconds == 5.0


@pytest.mark.parametrize(
    ("table", "setting", "why"),
    [
        ({"max_staleness_seconds": 5}, "consent.service", "required"),
        ({"service": "nowhere"}, "consent.service", "host:port"),
        (
            {"service": "127.0.0.1:7600", "max_staleness_seconds": 0.5},
            "consent.max_staleness_seconds",
            "between 1 and 3600",
        ),
        (
            {"service": "127.0.0.1:7600", "max_staleness_seconds": "5"},
            "consent.max_staleness_seconds",
            "expected float",
        ),
        ({"service": "127.0.0.1:7600", "watch": 1}, "consent.watch", "unknown setting"),
    ],
)
def test_a_bad_consent_setting_is_refused_by_name(
    site: Site, document: dict[str, Any], table: dict[str, Any], setting: str, why: str
) -> None:
    config = site.write({**document, "consent": table})
    message = refused(config)
    assert_names(message, config, setting)
    assert why in message


# -- [audit] ------------------------------------------------------------------------------------


def signing_files(site: Site) -> None:
    import pki
    from proto import MemberId
    from tests.pintu.test_config import LIFETIME, NOW

    key = pki.generate_key()
    pki.write_private(site.folder / "keys/signing.key", pki.key_pem(key))
    certificate = site.federation.issue_signing_certificate(
        MemberId.parse("DEMO/GOV/POPREG"), key.public_key(), now=NOW, lifetime=LIFETIME
    )
    pki.write_public(site.folder / "keys/signing.pem", pki.certificate_pem(certificate))
    (site.folder / "pseudonym.key").write_bytes(b"k" * 32)


def with_audit(document: dict[str, Any], **table: object) -> dict[str, Any]:
    pki_table = {
        **document["pki"],
        "signing_key": "keys/signing.key",
        "signing_certificate": "keys/signing.pem",
    }
    return {**document, "pki": pki_table, "audit": table}


def test_the_audit_table_builds_the_log_settings(site: Site, document: dict[str, Any]) -> None:
    signing_files(site)
    assert pintu.load_gateway_settings(site.write(document)).audit is None
    config = site.write(with_audit(document, pseudonym_key="pseudonym.key", checkpoint_seconds=2))
    audit = pintu.load_gateway_settings(config).audit
    assert audit is not None
    assert audit.path == site.folder / "audit.db"
    assert (audit.pseudonym_key, audit.checkpoint_seconds) == (b"k" * 32, 2.0)
    assert len(audit.signing_chain) == 1
    assert audit.timestamper is None


def test_the_audit_table_names_an_rfc_3161_authority(site: Site, document: dict[str, Any]) -> None:
    signing_files(site)
    (site.folder / "tsa-roots.pem").write_bytes((site.folder / "keys/signing.pem").read_bytes())
    table = {
        "pseudonym_key": "pseudonym.key",
        "tsa_url": "http://127.0.0.1:9/tsr",
        "tsa_roots": "tsa-roots.pem",
        "tsa_timeout_seconds": 3,
    }
    audit = pintu.load_gateway_settings(site.write(with_audit(document, **table))).audit
    assert audit is not None
    assert audit.timestamper is not None
    assert audit.timestamper.url == "http://127.0.0.1:9/tsr"


@pytest.mark.parametrize(
    ("table", "setting", "why"),
    [
        ({}, "audit.pseudonym_key", "required"),
        ({"pseudonym_key": "absent.key"}, "audit.pseudonym_key", "cannot be read"),
        ({"pseudonym_key": "short.key"}, "audit.pseudonym_key", "at least 32 bytes"),
        (
            {"pseudonym_key": "pseudonym.key", "log": "absent/audit.db"},
            "audit.log",
            "not a folder",
        ),
        (
            {"pseudonym_key": "pseudonym.key", "checkpoint_seconds": 0},
            "audit.checkpoint_seconds",
            "between 0.1 and 3600",
        ),
        (
            {"pseudonym_key": "pseudonym.key", "body_key": "short.key"},
            "audit.body_key",
            "exactly 32 random bytes",
        ),
        (
            {"pseudonym_key": "pseudonym.key", "body_key": "absent.key"},
            "audit.body_key",
            "cannot be read",
        ),
        (
            {"pseudonym_key": "pseudonym.key", "tsa_url": "http://127.0.0.1:9/tsr"},
            "audit.tsa_roots",
            "required with tsa_url",
        ),
        (
            {"pseudonym_key": "pseudonym.key", "tsa_roots": "tsa-roots.pem"},
            "audit.tsa_roots",
            "only with tsa_url",
        ),
        (
            {
                "pseudonym_key": "pseudonym.key",
                "tsa_url": "ftp://tsa.example/",
                "tsa_roots": "tsa-roots.pem",
            },
            "audit.tsa_url",
            "not an http(s) address",
        ),
        (
            {
                "pseudonym_key": "pseudonym.key",
                "tsa_url": "http://127.0.0.1:9/tsr",
                "tsa_roots": "tsa-roots.pem",
                "tsa_timeout_seconds": -1,
            },
            "audit.tsa_timeout_seconds",
            "must be positive",
        ),
    ],
)
def test_a_bad_audit_setting_is_refused_by_name(
    site: Site, document: dict[str, Any], table: dict[str, Any], setting: str, why: str
) -> None:
    signing_files(site)
    (site.folder / "short.key").write_bytes(b"k" * 8)
    (site.folder / "tsa-roots.pem").write_bytes((site.folder / "keys/signing.pem").read_bytes())
    config = site.write(
        with_audit(document, log="audit.db", **table)
        if not table
        else with_audit(document, **table)
    )
    message = refused(config)
    assert_names(message, config, setting)
    assert why in message


def test_the_audit_log_needs_the_members_signing_key(site: Site, document: dict[str, Any]) -> None:
    signing_files(site)
    config = site.write({**document, "audit": {"pseudonym_key": "pseudonym.key"}})
    message = refused(config)
    assert_names(message, config, "pki.signing_key")
    assert "signs the log's checkpoints" in message
