"""The error catalogues are complete, stable in form, and documented."""

from __future__ import annotations

import re
from pathlib import Path

import consent
import policy
from consent._service import STATUSES as CONSENT_STATUSES
from gateway import ErrorCode
from pki._service import STATUSES
from registry import (
    ConfigurationExpired,
    ConfigurationMalformed,
    ConfigurationRollback,
    ConfigurationSignatureInvalid,
    ConfigurationSignerUntrusted,
    GlobalConfigurationInvalid,
    RegistryUnavailable,
)
from registry._service import STATUSES as REGISTRY_STATUSES

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
ROW = re.compile(r"^\| `([a-z_0-9]+)` \| ([A-Z_]+) \|", re.M)


def section(title: str) -> str:
    text = DOC.read_text()
    start = text.index(f"## {title}")
    following = text.find("\n## ", start + 1)
    return text[start : following if following != -1 else None]


def test_codes_are_unique_snake_case() -> None:
    labels = [code.label for code in ErrorCode]
    assert len(labels) == len(set(labels))
    assert all(re.fullmatch(r"[a-z]+(_[a-z0-9]+)*", label) for label in labels)


def test_every_gateway_code_is_documented_with_its_status() -> None:
    rows = {m.group(1): m.group(2) for m in ROW.finditer(section("Catalogue"))}
    assert rows == {code.label: code.status.name for code in ErrorCode}


def test_every_ca_code_is_documented_with_its_status() -> None:
    rows = {m.group(1): m.group(2) for m in ROW.finditer(section("CA service"))}
    assert rows == {error.code: status.name for error, status in STATUSES.items()}


def test_every_registry_service_code_is_documented_with_its_status() -> None:
    rows = {m.group(1): m.group(2) for m in ROW.finditer(section("Registry service"))}
    assert rows == {error.code: status.name for error, status in REGISTRY_STATUSES.items()}


def test_every_configuration_refusal_code_is_documented() -> None:
    text = section("Global configuration (security servers)")
    documented = set(re.findall(r"^\| `([a-z_0-9]+)` \|", text, re.M))
    refusals = {
        ConfigurationMalformed,
        ConfigurationSignatureInvalid,
        ConfigurationSignerUntrusted,
        ConfigurationExpired,
        ConfigurationRollback,
        GlobalConfigurationInvalid,
        RegistryUnavailable,
    }
    assert documented == {error.code for error in refusals}


def test_every_policy_code_is_documented() -> None:
    documented = set(re.findall(r"^\| `([a-z_0-9]+)` \|", section("Policy"), re.M))
    assert documented == {
        policy.PolicyError.code,
        policy.PolicyTestsFailed.code,
        policy.PolicyBundleInvalid.code,
    }


def test_every_consent_service_code_is_documented_with_its_status() -> None:
    text = section("Consent service")
    rows = {m.group(1): m.group(2) for m in ROW.finditer(text)}
    assert rows == {error.code: status.name for error, status in CONSENT_STATUSES.items()}
    assert f"| `{consent.ReceiptInvalid.code}` | — |" in text


def test_gateway_and_ca_codes_never_share_a_name_but_internal_error() -> None:
    shared = {code.label for code in ErrorCode} & {error.code for error in STATUSES}
    assert shared == {"internal_error"}  # the same meaning on both
