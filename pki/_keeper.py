"""Keeping a security server's certificate, trust and revocation view fresh, in the background.

:class:`CertificateKeeper` renews the authentication certificate at two thirds of its lifetime
(a new key each time, authenticated by the current certificate), fetches the OCSP response to
staple to exchanges, the CRLs of the trusted issuing CAs, and the CA's trust bundle (root
rollover). Every change is written to disk (so a restart keeps it) and announced to subscribers
(the gateway reloads its TLS material). A CA that cannot be reached is retried; the last good
state is kept until it is too old, and that is logged well before and at that moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization

from pki._client import CaClient, Credential, TrustUpdate, fetch_crl, fetch_ocsp
from pki._errors import PkiError, RenewalNotAnnounced, StatusInvalid, StatusMissing
from pki._keys import (
    TlsIdentity,
    certificate_pem,
    issued_by,
    key_pem,
    write_private,
    write_public,
)
from pki._status import DEFAULT_MAX_AGE, RevokedSerials, StatusVerifier
from proto import SecurityServerId

LOGGER = logging.getLogger("pintu.pki")

_SHA256 = hashes.SHA256()

Clock = Callable[[], dt.datetime]
Subscriber = Callable[[TlsIdentity], Awaitable[None]]
# Called with the renewed identity before it is used (e.g. to register its certificate).
BeforeSwitch = Callable[[TlsIdentity, TlsIdentity], Awaitable[None]]


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def accepted_roots(
    current: Iterable[x509.Certificate], update: TrustUpdate, now: dt.datetime
) -> list[x509.Certificate]:
    """The roots to trust after a trust-bundle update.

    A trusted root stays while the bundle lists it; a new root is accepted only when a
    cross-certificate issued by a root trusted now certifies its name and key; the result is
    never empty (an update that would remove every root is ignored).
    """
    trusted = list(current)
    offered = {root.fingerprint(_SHA256): root for root in update.roots}
    kept = [root for root in trusted if root.fingerprint(_SHA256) in offered]
    for fingerprint, root in offered.items():
        if any(t.fingerprint(_SHA256) == fingerprint for t in kept):
            continue
        if _cross_certified(root, trusted, update.cross_certificates, now):
            kept.append(root)
    return kept or trusted


def _cross_certified(
    root: x509.Certificate,
    trusted: list[x509.Certificate],
    crosses: Iterable[x509.Certificate],
    now: dt.datetime,
) -> bool:
    for cross in crosses:
        if cross.subject != root.subject or cross.public_key() != root.public_key():
            continue
        if not cross.not_valid_before_utc <= now <= cross.not_valid_after_utc:
            continue
        for anchor in trusted:
            try:
                cross.verify_directly_issued_by(anchor)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return True
    return False


@dataclass(frozen=True)
class KeeperSettings:
    """Where the keeper reaches the CA and writes what it receives."""

    server: SecurityServerId
    ca_address: str
    key_path: Path
    certificate_path: Path
    trust_anchors_path: Path
    ocsp_max_age: dt.timedelta = DEFAULT_MAX_AGE
    renew_fraction: float = 2 / 3
    refresh: dt.timedelta = dt.timedelta(seconds=30)


@dataclass
class _Snapshot:
    credential: Credential
    roots: list[x509.Certificate]
    issuing: list[x509.Certificate]
    identity: TlsIdentity = field(init=False)

    def __post_init__(self) -> None:
        anchors = b"".join(r.public_bytes(serialization.Encoding.PEM) for r in self.roots)
        self.identity = self.credential.identity(anchors)


class CertificateKeeper:
    """Renews, staples and watches revocation for one security server (see module docstring)."""

    def __init__(
        self,
        settings: KeeperSettings,
        credential: Credential,
        roots: list[x509.Certificate],
        *,
        clock: Clock = _utc_now,
        http: httpx.AsyncClient | None = None,
        before_switch: BeforeSwitch | None = None,
    ) -> None:
        self.settings = settings
        self._before_switch = before_switch
        self._clock = clock
        self._snapshot = _Snapshot(credential, roots, list(credential.chain))
        self._http = http or httpx.AsyncClient(timeout=10.0)
        self._ca = CaClient(settings.ca_address, self._snapshot.identity.trust_anchors)
        self._subscribers: list[Subscriber] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._ocsp_url = ""
        self._crl_url = ""
        self._generations: list[int] = []
        self._failing: set[str] = set()
        self._age_level = 0
        self.staple = b""
        self.staple_this_update: dt.datetime | None = None
        self.verifier = StatusVerifier(self._snapshot.issuing, settings.ocsp_max_age)
        self.revoked = RevokedSerials()
        self.renewals = 0

    # -- what the gateway reads ----------------------------------------------------------------

    @property
    def identity(self) -> TlsIdentity:
        """The current authentication key, certificate chain and trust anchors."""
        return self._snapshot.identity

    @property
    def certificate(self) -> x509.Certificate:
        """The current authentication certificate."""
        return self._snapshot.credential.certificate

    def staple_age(self) -> float:
        """Seconds since the stapled OCSP response was produced (infinity without one)."""
        if self.staple_this_update is None:
            return float("inf")
        return (self._clock() - self.staple_this_update).total_seconds()

    def seconds_to_expiry(self) -> float:
        """Seconds until the authentication certificate expires."""
        return (self.certificate.not_valid_after_utc - self._clock()).total_seconds()

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber`` with the new identity after every renewal or trust change."""
        self._subscribers.append(subscriber)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Fetch the trust bundle, staple and CRLs once (failures are logged and retried in
        the background), then keep them fresh."""
        await self._refresh_all()
        self._tasks = [
            asyncio.create_task(self._renewal_loop(), name="certificate renewal"),
            asyncio.create_task(self._status_loop(), name="revocation status"),
        ]

    async def stop(self) -> None:
        """Stop the background work."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self._http.aclose()

    # -- renewal -------------------------------------------------------------------------------

    def renewal_due(self) -> dt.datetime:
        """When the current certificate should be renewed."""
        certificate = self.certificate
        lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
        return certificate.not_valid_before_utc + lifetime * self.settings.renew_fraction

    async def _renewal_loop(self) -> None:
        failures = 0
        while True:
            try:
                failures = await self._renewal_step(failures)
            except Exception:
                LOGGER.exception("the renewal loop failed; trying again in 10 s")
                await asyncio.sleep(10.0)

    async def _renewal_step(self, failures: int) -> int:
        """Wait for the renewal time, or renew; returns the count of consecutive failures."""
        wait = (self.renewal_due() - self._clock()).total_seconds()
        if wait > 0:
            await asyncio.sleep(min(wait, 60.0))
            return failures
        try:
            await self.renew()
        except PkiError as error:
            failures += 1
            left = self.seconds_to_expiry()
            LOGGER.warning(
                "renewing the authentication certificate failed (%s); %.0f s of validity left",
                error,
                left,
                extra={
                    "pintu_event": {
                        "event": "renewal_failed",
                        "code": error.code,
                        "seconds_left": round(left),
                    }
                },
            )
            await asyncio.sleep(min(30.0, max(1.0, left / 20), 2.0**failures))
            return failures
        return 0

    async def renew(self) -> None:
        """Renew the authentication certificate now (a new key), save it and announce it.

        The new certificate is used only once its own OCSP staple is in hand, and the switch to
        both is one step: an exchange never carries a staple about another certificate than the
        one its TLS connection presents.

        Raises:
            PkiError: the CA refused or could not be reached, or no staple could be had.
        """
        server = self.settings.server
        credential, trust = await self._ca.renew(self.identity, server.uri)
        await self._accept_trust(trust, announce=False, may_renew=False)
        staple, this_update = await self._fetch_staple(credential)
        renewed = _Snapshot(credential, self._snapshot.roots, self._snapshot.issuing)
        if self._before_switch is not None:
            try:
                await self._before_switch(self.identity, renewed.identity)
            except Exception as error:
                raise RenewalNotAnnounced(f"{type(error).__name__}: {error}") from error
        self._snapshot = renewed
        self.staple, self.staple_this_update = staple, this_update
        self._save_credential()
        self.renewals += 1
        LOGGER.info(
            "renewed the authentication certificate: serial %d, valid until %s",
            credential.certificate.serial_number,
            credential.certificate.not_valid_after_utc.isoformat(),
            extra={
                "pintu_event": {
                    "event": "certificate_renewed",
                    "serial": str(credential.certificate.serial_number),
                }
            },
        )
        await self._announce()

    async def _fetch_staple(self, credential: Credential) -> tuple[bytes, dt.datetime]:
        """The responder's signed answer about ``credential``'s certificate (whatever status).

        Raises:
            PkiError: no responder known, unreachable, or an answer that does not verify.
        """
        if not self._ocsp_url or not credential.chain:
            raise StatusMissing("no OCSP responder is known for this certificate")
        certificate = credential.certificate
        staple = await fetch_ocsp(self._http, self._ocsp_url, certificate, credential.chain[0])
        status = self.verifier.verify(staple)
        if status.serial != certificate.serial_number:
            raise StatusInvalid("the responder answered about another certificate")
        return staple, status.this_update

    def _save_credential(self) -> None:
        credential = self._snapshot.credential
        write_private(self.settings.key_path, key_pem(credential.key))
        write_public(
            self.settings.certificate_path,
            certificate_pem(credential.certificate, *credential.chain),
        )

    async def _announce(self) -> None:
        for subscriber in self._subscribers:
            try:
                await subscriber(self.identity)
            except Exception:
                LOGGER.exception("a subscriber failed to take the new identity")

    # -- trust, staple, CRLs -------------------------------------------------------------------

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.refresh.total_seconds())
            try:
                await self._refresh_all()
            except Exception:
                LOGGER.exception("refreshing the revocation status failed; trying again")

    async def _refresh_all(self) -> None:
        try:
            await self._accept_trust(await self._ca.trust_bundle(), announce=True)
            self._succeeded("fetch the CA's trust bundle")
        except PkiError as error:
            self._failed("fetch the CA's trust bundle", error)
        await self._refresh_staple()
        await self._refresh_crls()

    async def _accept_trust(
        self, update: TrustUpdate, *, announce: bool, may_renew: bool = True
    ) -> None:
        self._ocsp_url, self._crl_url = update.ocsp_url, update.crl_url
        self._ca.renewal_address = update.renewal_address
        now = self._clock()
        roots = accepted_roots(self._snapshot.roots, update, now)
        issuing = [
            certificate
            for _, certificate in update.issuing
            if any(issued_by(certificate, root) for root in roots)
        ] or self._snapshot.issuing
        self._generations = [number for number, _ in update.issuing]
        changed_roots = {r.fingerprint(_SHA256) for r in roots} != {
            r.fingerprint(_SHA256) for r in self._snapshot.roots
        }
        if issuing != self._snapshot.issuing:
            self.verifier.replace_issuers(issuing)
        if not changed_roots and issuing == self._snapshot.issuing:
            return
        self._snapshot = _Snapshot(self._snapshot.credential, roots, issuing)
        write_public(
            self.settings.trust_anchors_path,
            b"".join(r.public_bytes(serialization.Encoding.PEM) for r in roots),
        )
        LOGGER.info(
            "trust anchors now: %s",
            ", ".join(r.subject.rfc4514_string() for r in roots),
            extra={"pintu_event": {"event": "trust_updated", "roots": len(roots)}},
        )
        self._ca = CaClient(
            self.settings.ca_address, self.identity.trust_anchors, update.renewal_address
        )
        chain = self._snapshot.credential.chain
        own_root_trusted = not chain or any(issued_by(chain[-1], root) for root in roots)
        if not own_root_trusted and may_renew:
            LOGGER.warning("the own certificate's root is no longer trusted: renewing now")
            try:
                await self.renew()
            except PkiError as error:
                LOGGER.error("renewal after a root change failed: %s", error)
        elif announce:
            await self._announce()

    async def _refresh_staple(self) -> None:
        """Fetch a new staple; keep the last one when the responder cannot be had."""
        credential = self._snapshot.credential
        try:
            staple, this_update = await self._fetch_staple(credential)
            self._succeeded("refresh the OCSP staple")
        except PkiError as error:
            self._failed("refresh the OCSP staple", error)
            self._warn_about_age()
            return
        if credential is not self._snapshot.credential:
            return  # renewed meanwhile: that staple is about a certificate no longer in use
        self.staple, self.staple_this_update = staple, this_update
        self._age_level = 0
        status = self.verifier.verify(staple)
        if status.revoked or status.unknown:
            LOGGER.error(
                "the OCSP responder says this server's certificate is %s: peers refuse it",
                "revoked" if status.revoked else "unknown",
                extra={
                    "pintu_event": {"event": "own_certificate_refused", "revoked": status.revoked}
                },
            )

    def _warn_about_age(self) -> None:
        """Log once when the staple passes half the maximum age, and once when it passes it."""
        age = self.staple_age()
        limit = self.settings.ocsp_max_age.total_seconds()
        level = 2 if age >= limit else 1 if age >= limit / 2 else 0
        if level <= self._age_level:
            return
        self._age_level = level
        if level == 2:
            LOGGER.error(
                "the OCSP staple is %.0f s old, past the %.0f s peers accept: exchanges are"
                " refused until the responder answers",
                age,
                limit,
                extra={"pintu_event": {"event": "staple_stale", "age_seconds": _rounded(age)}},
            )
        else:
            LOGGER.warning(
                "the OCSP staple is %.0f s old; peers refuse it at %.0f s",
                age,
                limit,
                extra={"pintu_event": {"event": "staple_ageing", "age_seconds": _rounded(age)}},
            )

    def _failed(self, what: str, error: PkiError) -> None:
        """Log the first failure of an outage as a warning, the rest quietly."""
        if what in self._failing:
            LOGGER.debug("still cannot %s: %s", what, error)
            return
        self._failing.add(what)
        LOGGER.warning(
            "cannot %s: %s",
            what,
            error,
            extra={"pintu_event": {"event": "ca_unreachable", "what": what, "code": error.code}},
        )

    def _succeeded(self, what: str) -> None:
        if what in self._failing:
            self._failing.discard(what)
            LOGGER.info("can %s again", what)

    async def _refresh_crls(self) -> None:
        if not self._crl_url:
            return
        try:
            crls = [
                await fetch_crl(self._http, f"{self._crl_url}/G{number}.crl")
                for number in self._generations
            ]
            self.revoked.load(crls, self._snapshot.issuing, now=self._clock())
            self._succeeded("refresh the CRLs")
        except PkiError as error:
            self._failed("refresh the CRLs", error)


def _rounded(seconds: float) -> int | None:
    """Seconds for a log field; None for "never" (no staple yet)."""
    return round(seconds) if seconds != float("inf") else None
