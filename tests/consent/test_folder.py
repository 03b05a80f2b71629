"""The consent service's folder as ``pintu consent serve`` reads it: the optional
``pseudonym_key`` setting (a file of at least 32 bytes, relative to the folder) becomes the
service's key for access histories; a bad one is refused by name at start-up."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, cast

import pytest

import pki
from pintu import free_port
from pintu._consent import ConsentFolder, init_consent, move
from pintu._errors import ConfigError
from proto import RegistryId
from registry import Anchor, sign_snapshot, to_content
from tests.consent.service_site import DAY, NOW, OPERATOR_MEMBER, configuration

KEY = bytes(range(40))


@pytest.fixture
def folder(tmp_path: Path) -> ConsentFolder:
    """A consent folder as ``pintu consent init`` leaves it, with a cached global
    configuration (no registry needs to answer)."""
    ca = pki.CertificateAuthority.create("DEMO", now=NOW - DAY, lifetime=30 * DAY)
    path = tmp_path / "consent"
    path.mkdir()
    tls_key, signing_key, config_key = pki.generate_key(), pki.generate_key(), pki.generate_key()
    tls = ca.issue_service_certificate(
        "consent",
        ["127.0.0.1"],
        tls_key.public_key(),
        now=NOW,
        lifetime=DAY,
        reserved=(pki.CONSENT_TLS_NAME,),
    )
    signing = ca.issue_signing_certificate(
        OPERATOR_MEMBER, signing_key.public_key(), now=NOW, lifetime=DAY
    )
    pki.write_private(path / "tls.key", pki.key_pem(tls_key))
    pki.write_public(path / "tls.pem", pki.certificate_pem(tls))
    pki.write_private(path / "signing.key", pki.key_pem(signing_key))
    pki.write_public(path / "signing.pem", pki.certificate_pem(signing))
    pki.write_public(path / "roots.pem", pki.certificate_pem(ca.certificate))
    signer = ca.issue_configuration_signing_certificate(
        RegistryId("DEMO"), config_key.public_key(), now=NOW, lifetime=DAY
    )
    content = to_content(
        configuration(), version=1, built_at=NOW, expires_at=NOW + dt.timedelta(hours=1)
    )
    pki.write_public(
        path / "global-configuration.pb", sign_snapshot(content, config_key, (signer,))
    )
    anchor = tmp_path / "anchor.json"
    closed = f"http://127.0.0.1:{free_port()}/global-configuration"
    Anchor("DEMO", (closed,), f"127.0.0.1:{free_port()}", (ca.certificate,)).save(anchor)
    made = ConsentFolder(path)
    made.write(
        {
            "database": f"sqlite:///{path / 'consent.db'}",
            "listen": f"127.0.0.1:{free_port()}",
            "anchor": str(anchor),
            "signer": str(OPERATOR_MEMBER),
            "operators": ["portal"],
        }
    )
    return made


def with_setting(folder: ConsentFolder, **settings: object) -> ConsentFolder:
    folder.write({**folder.read(), **settings})
    return folder


def test_without_the_setting_the_service_holds_no_key(folder: ConsentFolder) -> None:
    assert folder.settings().pseudonym_key is None


def test_the_key_file_is_read_relative_to_the_folder(folder: ConsentFolder) -> None:
    (folder.path / "keys").mkdir()
    (folder.path / "keys/pseudonym.key").write_bytes(KEY)
    assert with_setting(folder, pseudonym_key="keys/pseudonym.key").settings().pseudonym_key == KEY


def test_an_absolute_key_path_is_taken_as_it_is(folder: ConsentFolder, tmp_path: Path) -> None:
    (tmp_path / "pseudonym.key").write_bytes(KEY)
    settings = with_setting(folder, pseudonym_key=str(tmp_path / "pseudonym.key")).settings()
    assert settings.pseudonym_key == KEY


@pytest.mark.parametrize(
    ("content", "value", "message"),
    [
        (b"x" * 31, "pseudonym.key", "must hold at least 32 bytes"),
        (None, "pseudonym.key", "cannot be read"),
        (KEY, "", "expected a non-empty path"),
        (KEY, 42, "expected a non-empty path"),
    ],
)
def test_a_bad_pseudonym_key_is_refused_by_name(
    folder: ConsentFolder, content: bytes | None, value: object, message: str
) -> None:
    if content is not None:
        (folder.path / "pseudonym.key").write_bytes(content)
    with pytest.raises(ConfigError, match=f"consent.toml: pseudonym_key: .*{message}"):
        with_setting(folder, pseudonym_key=value).settings()


def test_moving_a_folder_keeps_or_sets_the_key(folder: ConsentFolder, tmp_path: Path) -> None:
    roots = pki.load_certificates(folder.path / "roots.pem")
    key = tmp_path / "pseudonym.key"
    key.write_bytes(KEY)
    move(folder, "127.0.0.1:7601", roots)
    assert "pseudonym_key" not in folder.read()
    move(folder, "127.0.0.1:7602", roots, pseudonym_key=key)
    assert folder.read()["pseudonym_key"] == str(key.resolve())
    move(folder, "127.0.0.1:7603", roots)  # a later move keeps it
    assert folder.read()["pseudonym_key"] == str(key.resolve())
    assert folder.settings().pseudonym_key == KEY


def test_init_refuses_a_short_key_before_writing_anything(tmp_path: Path) -> None:
    short = tmp_path / "pseudonym.key"
    short.write_bytes(b"short")
    with pytest.raises(ConfigError, match=r"--pseudonym-key: .*at least 32 bytes"):
        init_consent(
            tmp_path / "consent",
            cast(Any, None),  # never reached: the key is checked first
            [],
            listen="127.0.0.1:7600",
            anchor=tmp_path / "anchor.json",
            signer=str(OPERATOR_MEMBER),
            operators=["admin"],
            pseudonym_key=short,
            actor="test",
        )
    assert not (tmp_path / "consent").exists()
