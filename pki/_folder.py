"""The CA's folder: its hierarchy of keys and certificates, its settings, its ledger.

``pintu ca init`` creates it; ``pintu ca serve``, ``token``, ``revoke``, ``list`` and
``rollover`` use it::

    DIR/ca.toml                      settings (written by init; see CaSettings)
    DIR/generations.json             root generations: which are trusted, which one issues
    DIR/G<n>/root.pem                root CA of generation n
    DIR/G<n>/issuing.pem             issuing CA of generation n, under its root
    DIR/G<n>/ocsp.pem                delegated OCSP responder of that issuing CA
    DIR/G<n>/cross.pem               generation n's root certified by generation n-1's root
    DIR/G<n>-{root,issuing,ocsp}.key their keys, passphrase-encrypted (absent with a PKCS#11
                                     token: there the keys carry these names as labels)
    DIR/service/tls.pem, tls.key     the CA service's own TLS certificate (from the issuing CA)
    DIR/ca.sqlite                    tokens, certificates, journal (pki._ledger)

Root keys are only needed by ``init`` and ``rollover begin``: they can stay offline (encrypted
on removable media, or in a token) the rest of the time. Issuing and responder keys are online.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509

from pki._authority import Authority, IssuancePolicy, TrustBundle
from pki._ca import CertificateAuthority, RevocationUrls
from pki._errors import KeyMaterialError, LedgerError
from pki._keys import (
    PrivateKey,
    certificate_pem,
    generate_key,
    key_pem,
    load_certificates,
    load_private_key,
    write_private,
    write_public,
)
from pki._ledger import CaLedger
from pki._pkcs11 import Pkcs11Key, Pkcs11Token

ROOT_LIFETIME = dt.timedelta(days=3650)
ISSUING_LIFETIME = dt.timedelta(days=1825)
OCSP_SIGNER_LIFETIME = dt.timedelta(days=30)
SERVICE_LIFETIME = dt.timedelta(days=30)
SERVICE_TLS_NAME = "ca.pintu.invalid"


class KeyStorage(Protocol):
    """Where the CA's private keys live: encrypted files, or a PKCS#11 token."""

    def create(self, label: str) -> PrivateKey:
        """A new key stored under ``label`` (refusing an existing label)."""

    def load(self, label: str) -> PrivateKey:
        """The key stored under ``label``."""


@dataclass(frozen=True)
class FileKeyStorage:
    """Keys as passphrase-encrypted PKCS#8 files (``<label>.key``) in the CA's folder.

    Without a passphrase the files are not encrypted (owner-only files still): that is for
    throwaway federations and tests; ``pintu ca init`` always asks for a passphrase or a token.
    """

    folder: Path
    passphrase: bytes | None

    def create(self, label: str) -> PrivateKey:
        """A new P-256 key in ``<label>.key``, encrypted with the passphrase."""
        path = self.folder / f"{label}.key"
        if path.exists():
            raise KeyMaterialError(f"{path} exists already")
        key = generate_key()
        write_private(path, key_pem(key, self.passphrase))
        return key

    def load(self, label: str) -> PrivateKey:
        """The key in ``<label>.key``."""
        return load_private_key(self.folder / f"{label}.key", self.passphrase)


def _number(span: dt.timedelta) -> str:
    seconds = span.total_seconds()
    return str(int(seconds)) if seconds == int(seconds) else repr(seconds)


@dataclass(frozen=True)
class CaSettings:
    """The CA's settings (``ca.toml``)."""

    instance: str
    listen: str = "127.0.0.1:7400"
    http_listen: str = "127.0.0.1:7401"
    renewal_listen: str = "127.0.0.1:7402"
    public_url: str = "http://127.0.0.1:7401"
    policy: IssuancePolicy = field(default_factory=IssuancePolicy)
    # "file" (passphrase-encrypted PKCS#8) or "pkcs11" (a token; module and token label below).
    key_storage: str = "file"
    pkcs11_module: str = ""
    pkcs11_token: str = ""

    def urls(self, generation: int) -> RevocationUrls:
        """Where generation ``generation``'s revocation status is published."""
        return RevocationUrls(
            ocsp=f"{self.public_url}/ocsp", crl=f"{self.public_url}/crl/G{generation}.crl"
        )

    def to_toml(self) -> str:
        """The settings as ``ca.toml`` text."""
        policy = self.policy
        return "\n".join(
            [
                "# Written by `pintu ca init`.",
                f"instance = {json.dumps(self.instance)}",
                f"listen = {json.dumps(self.listen)}",
                f"http_listen = {json.dumps(self.http_listen)}",
                f"renewal_listen = {json.dumps(self.renewal_listen)}",
                f"public_url = {json.dumps(self.public_url)}",
                "",
                "[keys]",
                f"storage = {json.dumps(self.key_storage)}",
                f"pkcs11_module = {json.dumps(self.pkcs11_module)}",
                f"pkcs11_token = {json.dumps(self.pkcs11_token)}",
                "",
                "[lifetimes]",
                f"authentication_seconds = {_number(policy.authentication_lifetime)}",
                f"signing_seconds = {_number(policy.signing_lifetime)}",
                f"token_seconds = {_number(policy.token_lifetime)}",
                f"ocsp_refresh_seconds = {_number(policy.ocsp_refresh)}",
                f"ocsp_validity_seconds = {_number(policy.ocsp_validity)}",
                f"crl_validity_seconds = {_number(policy.crl_validity)}",
                "",
            ]
        )

    @staticmethod
    def load(path: Path) -> CaSettings:
        """Read ``ca.toml``.

        Raises:
            LedgerError: unreadable or invalid, naming the setting.
        """
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise LedgerError(f"{path}: {error}") from None
        lifetimes = document.get("lifetimes", {})

        def seconds(key: str, default: dt.timedelta) -> dt.timedelta:
            value = lifetimes.get(key, default.total_seconds())
            if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
                raise LedgerError(f"{path}: lifetimes.{key}: expected a positive number")
            return dt.timedelta(seconds=value)

        base = IssuancePolicy()
        policy = IssuancePolicy(
            authentication_lifetime=seconds("authentication_seconds", base.authentication_lifetime),
            signing_lifetime=seconds("signing_seconds", base.signing_lifetime),
            token_lifetime=seconds("token_seconds", base.token_lifetime),
            ocsp_refresh=seconds("ocsp_refresh_seconds", base.ocsp_refresh),
            ocsp_validity=seconds("ocsp_validity_seconds", base.ocsp_validity),
            crl_validity=seconds("crl_validity_seconds", base.crl_validity),
        )
        values: dict[str, str] = {}
        for key in ("instance", "listen", "http_listen", "renewal_listen", "public_url"):
            value = document.get(key)
            if not isinstance(value, str) or not value:
                raise LedgerError(f"{path}: {key}: expected a non-empty string")
            values[key] = value
        keys = document.get("keys", {})
        storage = keys.get("storage", "file")
        if storage not in ("file", "pkcs11"):
            raise LedgerError(f'{path}: keys.storage: expected "file" or "pkcs11"')
        module, token = keys.get("pkcs11_module", ""), keys.get("pkcs11_token", "")
        if storage == "pkcs11" and not (
            isinstance(module, str) and module and isinstance(token, str) and token
        ):
            raise LedgerError(f"{path}: keys: pkcs11 storage needs pkcs11_module and pkcs11_token")
        return CaSettings(
            policy=policy,
            key_storage=storage,
            pkcs11_module=str(module),
            pkcs11_token=str(token),
            **values,
        )


@dataclass(frozen=True)
class Generation:
    """One root generation: its root, issuing CA and responder."""

    number: int
    root: x509.Certificate
    issuing: x509.Certificate
    ocsp: x509.Certificate
    cross: x509.Certificate | None


class CaFolder:
    """A CA folder on disk (see the module docstring)."""

    def __init__(self, path: Path, storage: KeyStorage) -> None:
        self.path = path
        self.storage = storage

    # -- state ---------------------------------------------------------------------------------

    @property
    def settings(self) -> CaSettings:
        """The CA's settings."""
        return CaSettings.load(self.path / "ca.toml")

    def _state(self) -> dict[str, Any]:
        try:
            state: dict[str, Any] = json.loads((self.path / "generations.json").read_text())
        except (OSError, ValueError) as error:
            raise LedgerError(f"{self.path}/generations.json: {error}") from None
        return state

    def _write_state(self, state: dict[str, Any]) -> None:
        write_public(self.path / "generations.json", json.dumps(state, indent=2).encode())

    def generation(self, number: int) -> Generation:
        """The certificates of generation ``number``."""
        folder = self.path / f"G{number}"
        cross = folder / "cross.pem"
        return Generation(
            number,
            load_certificates(folder / "root.pem")[0],
            load_certificates(folder / "issuing.pem")[0],
            load_certificates(folder / "ocsp.pem")[0],
            load_certificates(cross)[0] if cross.exists() else None,
        )

    @property
    def trusted(self) -> list[int]:
        """The generations whose roots relying parties trust, oldest first."""
        return list(self._state()["trusted"])

    @property
    def active(self) -> int:
        """The generation that issues new certificates."""
        return int(self._state()["active"])

    def ledger(self) -> CaLedger:
        """The CA's database."""
        return CaLedger(self.path / "ca.sqlite")

    def trust_bundle(self) -> TrustBundle:
        """The roots relying parties should trust now, with cross-certificates."""
        settings = self.settings
        generations = [self.generation(n) for n in self.trusted]
        return TrustBundle(
            roots=tuple(g.root for g in generations),
            cross_certificates=tuple(g.cross for g in generations if g.cross is not None),
            crl_url=f"{settings.public_url}/crl",
            ocsp_url=f"{settings.public_url}/ocsp",
            issuing=tuple((g.number, g.issuing) for g in generations),
            renewal_address=settings.renewal_listen,
        )

    def authority(self, number: int, ledger: CaLedger) -> Authority:
        """The online authority of generation ``number`` (loads its issuing and responder keys)."""
        generation = self.generation(number)
        issuing = CertificateAuthority(
            self.storage.load(f"G{number}-issuing"),
            generation.issuing,
            self.settings.urls(number),
        )
        return Authority(
            issuing=issuing,
            chain=(generation.issuing,),
            ocsp_key=self.storage.load(f"G{number}-ocsp"),
            ocsp_certificate=generation.ocsp,
            ledger=ledger,
            trust=self.trust_bundle(),
            policy=self.settings.policy,
        )

    # -- creating generations ------------------------------------------------------------------

    def _create_generation(
        self,
        number: int,
        settings: CaSettings,
        now: dt.datetime,
        previous: CertificateAuthority | None,
    ) -> CertificateAuthority:
        folder = self.path / f"G{number}"
        root = CertificateAuthority.create(
            settings.instance,
            now=now,
            lifetime=ROOT_LIFETIME,
            key=self.storage.create(f"G{number}-root"),
            generation=number,
        )
        write_public(folder / "root.pem", certificate_pem(root.certificate))
        issuing_key = self.storage.create(f"G{number}-issuing")
        suffix = "" if number == 1 else f" G{number}"
        issuing = CertificateAuthority(
            issuing_key,
            root.issue_intermediate(
                f"Pintu issuing CA ({settings.instance}){suffix}",
                issuing_key.public_key(),
                now=now,
                lifetime=ISSUING_LIFETIME,
            ),
        )
        write_public(folder / "issuing.pem", certificate_pem(issuing.certificate))
        ocsp_key = self.storage.create(f"G{number}-ocsp")
        write_public(
            folder / "ocsp.pem",
            certificate_pem(
                issuing.issue_ocsp_signer(
                    ocsp_key.public_key(), now=now, lifetime=OCSP_SIGNER_LIFETIME
                )
            ),
        )
        if previous is not None:
            write_public(
                folder / "cross.pem",
                certificate_pem(
                    previous.cross_certify(root.certificate, now=now, lifetime=ROOT_LIFETIME)
                ),
            )
        return issuing

    def _issue_service_certificate(self, issuing: CertificateAuthority, now: dt.datetime) -> None:
        """The CA service's TLS certificate: a listener certificate for ``ca.pintu.invalid``."""
        key = generate_key()
        host = self.settings.listen.rpartition(":")[0].strip("[]")
        names = ["localhost", "127.0.0.1"] if host in ("127.0.0.1", "localhost") else [host]
        certificate = issuing.issue_service_certificate(
            "Pintu CA service",
            names,
            key.public_key(),
            now=now,
            lifetime=SERVICE_LIFETIME,
            reserved=[SERVICE_TLS_NAME],
        )
        # With the cross-certificate in the chain, a client that still trusts only the previous
        # root (a server enrolling with an old anchor during a rollover) reaches the service too.
        crosses = [
            self.generation(number).cross
            for number in self.trusted
            if self.generation(number).issuing == issuing.certificate
        ]
        write_private(self.path / "service/tls.key", key_pem(key))
        write_public(
            self.path / "service/tls.pem",
            certificate_pem(certificate, issuing.certificate, *(c for c in crosses if c)),
        )

    def online_certificates_due(self) -> dt.datetime:
        """When :meth:`refresh_online_certificates` will next have something to re-issue."""
        responder = self.generation(self.active).ocsp.not_valid_after_utc
        service = load_certificates(self.path / "service/tls.pem")[0].not_valid_after_utc
        return min(responder - OCSP_SIGNER_LIFETIME / 2, service - SERVICE_LIFETIME / 2)

    def refresh_online_certificates(self, now: dt.datetime) -> None:
        """Re-issue the responder and service certificates of the active generation when less
        than half of their lifetime is left (they are short-lived; the issuing key is online)."""
        number = self.active
        generation = self.generation(number)
        issuing = CertificateAuthority(self.storage.load(f"G{number}-issuing"), generation.issuing)
        if generation.ocsp.not_valid_after_utc - now < OCSP_SIGNER_LIFETIME / 2:
            key = self.storage.load(f"G{number}-ocsp")
            write_public(
                self.path / f"G{number}/ocsp.pem",
                certificate_pem(
                    issuing.issue_ocsp_signer(
                        key.public_key(), now=now, lifetime=OCSP_SIGNER_LIFETIME
                    )
                ),
            )
        service = self.path / "service/tls.pem"
        current = load_certificates(service)
        if (
            current[0].not_valid_after_utc - now < SERVICE_LIFETIME / 2
            or current[1] != generation.issuing
        ):
            self._issue_service_certificate(issuing, now)

    @staticmethod
    def create(
        path: Path, settings: CaSettings, storage: KeyStorage, *, now: dt.datetime, actor: str
    ) -> CaFolder:
        """Create a new CA folder with generation 1.

        Raises:
            LedgerError: the folder already holds a CA.
        """
        if (path / "ca.toml").exists():
            raise LedgerError(f"{path} already holds a CA")
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o700)
        write_public(path / "ca.toml", settings.to_toml().encode())
        folder = CaFolder(path, storage)
        issuing = folder._create_generation(1, settings, now, None)
        folder._write_state({"trusted": [1], "active": 1})
        folder._issue_service_certificate(issuing, now)
        ledger = folder.ledger()
        ledger.note(actor=actor, action="init", now=now, detail={"generation": 1})
        ledger.close()
        return folder

    # -- root rollover -------------------------------------------------------------------------

    def rollover_begin(self, *, now: dt.datetime, actor: str) -> int:
        """Introduce a new root generation beside the current ones (trusted, not yet issuing).

        Raises:
            LedgerError: a newer generation is already introduced.
        """
        state = self._state()
        if max(state["trusted"]) != state["active"]:
            raise LedgerError("a new root is already introduced; switch to it or retire first")
        current = int(state["active"])
        previous_root = CertificateAuthority(
            self.storage.load(f"G{current}-root"), self.generation(current).root
        )
        number = current + 1
        self._create_generation(number, self.settings, now, previous_root)
        state["trusted"].append(number)
        self._write_state(state)
        self._note(actor, "rollover_begin", now, {"generation": number})
        return number

    def rollover_switch(self, *, now: dt.datetime, actor: str) -> int:
        """Issue from the newest trusted generation from now on."""
        state = self._state()
        newest = int(max(state["trusted"]))
        if newest == state["active"]:
            raise LedgerError("no newer root is introduced; run `rollover begin` first")
        state["active"] = newest
        self._write_state(state)
        self._issue_service_certificate(
            CertificateAuthority(
                self.storage.load(f"G{newest}-issuing"), self.generation(newest).issuing
            ),
            now,
        )
        self._note(actor, "rollover_switch", now, {"generation": newest})
        return newest

    def rollover_retire(self, *, now: dt.datetime, actor: str) -> list[int]:
        """Stop trusting the generations older than the active one."""
        state = self._state()
        retired = [n for n in state["trusted"] if n < state["active"]]
        if not retired:
            raise LedgerError("no older root to retire")
        state["trusted"] = [n for n in state["trusted"] if n >= state["active"]]
        self._write_state(state)
        self._note(actor, "rollover_retire", now, {"generations": retired})
        return retired

    def _note(self, actor: str, action: str, now: dt.datetime, detail: dict[str, Any]) -> None:
        ledger = self.ledger()
        try:
            ledger.note(actor=actor, action=action, now=now, detail=detail)
        finally:
            ledger.close()


@dataclass(frozen=True)
class TokenKeyStorage:
    """Keys in a PKCS#11 token (see :class:`pki.Pkcs11Key`), found by label."""

    token: Pkcs11Token

    def create(self, label: str) -> PrivateKey:
        """A new P-256 key generated inside the token under ``label``."""
        return Pkcs11Key.generate(self.token, label)

    def load(self, label: str) -> PrivateKey:
        """The token's key labelled ``label``."""
        return Pkcs11Key.find(self.token, label)
