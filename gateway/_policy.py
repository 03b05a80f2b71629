"""The provider side's policy enforcement point: every exchange is decided by policy.

For each exchange the :class:`Authorizer` builds the policy input (docs/policy.md) from what the
provider's security server knows — the verified client and its server, the service's facts in
the global configuration, the client's global groups, the access rights and closed windows that
apply, the purpose and whether a citizen is concerned — and asks the engine. A denial becomes
``access_denied`` with the policy's reasons and the decision's id; a failure to decide becomes
``policy_error``. An obligation the security server does not know also denies the exchange: a
policy may not be obeyed halfway.

The engine is the embedded one by default (behind a decision cache) or a remote OPA; decisions
are written to the decision log when one is configured. While running, the rights file and the
signed policy bundle are watched: a changed file is checked and used at once, or refused with
an error log (``policy_rights_refused``, ``policy_bundle_refused``) and counted, the previous
one staying in force.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from consent import ConsentReplica
from gateway._errors import ErrorCode, GatewayError, SettingsError
from gateway._settings import PolicySettings, check_rights
from monitoring import PolicyFigures
from policy import (
    DEFAULT_POLICIES,
    AccessRights,
    CachedEngine,
    Decision,
    DecisionLog,
    EmbeddedEngine,
    LoggedEngine,
    PolicyEngine,
    PolicyError,
    PolicyInput,
    PolicyPoint,
    PolicySet,
    ServiceFacts,
)
from proto import SecurityServerId, ServiceId, SubsystemId
from registry import GlobalConfiguration, Service

LOGGER = logging.getLogger("pintu.gateway")

# The obligations this security server knows how to meet (docs/policy.md).
KNOWN_OBLIGATIONS = frozenset({"log_body", "notify_subject"})


@dataclass(frozen=True, slots=True)
class Authorization:
    """An allowing decision and the consent it relied on ("" for none)."""

    decision: Decision
    consent_id: str


@dataclass
class PolicyCounts:
    """What the authorizer has done since it started (read by the metrics at scrape time)."""

    allowed: int = 0
    denied: int = 0
    failed: int = 0
    bundle_refusals: int = 0
    rights_refusals: int = 0
    bundles_installed: int = 0
    rights_loaded: int = 0
    stale: int = 0
    denials_by_reason: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Watched:
    """What a watched file looked like when it was last read (a changed ``ctime`` also
    catches a file made readable again)."""

    mtime_ns: int
    ctime_ns: int
    size: int
    inode: int


def _stat(path: Path) -> _Watched | None:
    try:
        found = path.stat()
    except OSError:
        return None
    return _Watched(found.st_mtime_ns, found.st_ctime_ns, found.st_size, found.st_ino)


class Authorizer:
    """Decides exchanges for the provider side of one security server."""

    def __init__(
        self,
        settings: PolicySettings,
        owner_services: Iterable[ServiceId],
        trust_anchors: Callable[[], list[x509.Certificate]],
        owner: SecurityServerId,
        clock: Callable[[], float],
        *,
        consent: ConsentReplica | None = None,
        max_staleness: float = 5.0,
        audited: bool = False,
    ) -> None:
        self._audited = audited
        self._settings = settings
        self._replica = consent
        self._max_staleness = max_staleness
        self._services = frozenset(owner_services)
        self._anchors = trust_anchors
        self._owner = owner
        self._clock = clock
        self._rights = settings.rights
        self._facts: dict[ServiceId, tuple[Service, ServiceFacts]] = {}
        self._point: PolicyPoint | None = None
        self._engine: PolicyEngine | None = None
        self._cache: CachedEngine | None = None
        self._log: DecisionLog | None = None
        self._watched: dict[Path, _Watched | None] = {}
        self._watcher: asyncio.Task[None] | None = None
        self.counts = PolicyCounts()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Build the engine (installing the configured bundle) and start watching the files.

        Raises:
            SettingsError: the built-in policies, the bundle or the rights file cannot be used.
        """
        settings = self._settings
        base = settings.engine
        if base is None:
            try:
                base = EmbeddedEngine(PolicySet.load(DEFAULT_POLICIES))
            except PolicyError as error:
                raise SettingsError("policy", f"the built-in policies: {error}") from None
        engine: PolicyEngine = base
        if isinstance(base, EmbeddedEngine):
            engine = self._point = PolicyPoint(base)
            if settings.cache_size:
                engine = self._cache = CachedEngine(engine, settings.cache_size)
        if settings.decision_log is not None:
            # With an audit log (synced, holding each decision's id and result) the decision
            # log need not be synced as well.
            self._log = DecisionLog(settings.decision_log, durable=not self._audited)
            engine = LoggedEngine(engine, self._log)
        self._engine = engine
        for path in (settings.rights_file, settings.bundle_file):
            if path is not None:
                self._watched[path] = _stat(path)
        if settings.rights_file is not None and self._watched[settings.rights_file] is not None:
            # Read again: the file may have changed since the settings were loaded (or since
            # an earlier start of this server).
            try:
                self._rights = AccessRights.load(settings.rights_file)
                check_rights(self._rights, self._services)
            except (PolicyError, SettingsError) as error:
                raise SettingsError("policy.rights", str(error)) from None
        if settings.bundle_file is not None and not settings.bundle_file.exists():
            LOGGER.warning(
                "no policy bundle at %s yet; the configured policies decide until one appears",
                settings.bundle_file,
                extra={
                    "pintu_event": {
                        "event": "policy_bundle_missing",
                        "path": str(settings.bundle_file),
                    }
                },
            )
        elif settings.bundle_file is not None:
            try:
                self._install(settings.bundle_file)
            except PolicyError as error:
                raise SettingsError("policy.bundle", f"{settings.bundle_file}: {error}") from None
        if self._watched:
            self._watcher = asyncio.create_task(self._watch(), name="policy files")

    async def stop(self) -> None:
        """Stop watching; close a remote engine's connections."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        close = getattr(self._settings.engine, "close", None)
        if close is not None:
            await close()
        if self._log is not None:
            self._log.close()

    @property
    def revision(self) -> str:
        """The revision of the policies deciding now ("" before :meth:`start`)."""
        return self._engine.revision if self._engine is not None else ""

    @property
    def cache(self) -> CachedEngine | None:
        """The decision cache, when there is one."""
        return self._cache

    @property
    def rights(self) -> AccessRights:
        """The access rights in force."""
        return self._rights

    def figures(self) -> PolicyFigures:
        """The figures the metrics report."""
        counts, cache = self.counts, self._cache
        return PolicyFigures(
            revision=self.revision,
            allowed=counts.allowed,
            denied=counts.denied,
            failed=counts.failed,
            bundle_refusals=counts.bundle_refusals,
            rights_refusals=counts.rights_refusals,
            cache_hits=cache.hits if cache is not None else 0,
            cache_misses=cache.misses if cache is not None else 0,
            denials_by_reason=dict(counts.denials_by_reason),
        )

    # -- watching the rights file and the bundle ---------------------------------------------

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._settings.watch_seconds)
            try:
                self.check_files()
            except Exception:  # the watcher must outlive any one bad file
                LOGGER.exception("checking the policy files failed; trying again")

    def check_files(self) -> None:
        """Re-read whichever watched file changed since it was last read."""
        settings = self._settings
        for path, before in list(self._watched.items()):
            now = _stat(path)
            if now == before:
                continue
            self._watched[path] = now
            if now is None:
                LOGGER.error(
                    "%s is gone; the policy file read last stays in force",
                    path,
                    extra={"pintu_event": {"event": "policy_file_missing", "path": str(path)}},
                )
            elif path == settings.rights_file:
                self._reload_rights(path)
            else:
                try:
                    self._install(path)
                except PolicyError:
                    self.counts.bundle_refusals += 1  # logged by PolicyPoint or _install

    def _reload_rights(self, path: Path) -> None:
        try:
            rights = AccessRights.load(path)
            check_rights(rights, self._services)
        except (PolicyError, SettingsError) as error:
            self.counts.rights_refusals += 1
            LOGGER.error(
                "access rights %s refused: %s; the rights read last stay in force",
                path,
                error,
                extra={
                    "pintu_event": {
                        "event": "policy_rights_refused",
                        "path": str(path),
                        "message": str(error),
                    }
                },
            )
            return
        self._rights = rights
        self.counts.rights_loaded += 1
        LOGGER.info(
            "access rights %s loaded: %d rights",
            path,
            len(rights),
            extra={"pintu_event": {"event": "policy_rights_loaded", "path": str(path)}},
        )

    def _install(self, path: Path) -> None:
        """Verify, test and use the bundle in ``path`` (PolicyError: refused)."""
        assert self._point is not None, "bundles need an embedded engine (checked in settings)"
        try:
            blob = path.read_bytes()
        except OSError as error:
            LOGGER.error(
                "policy bundle %s refused: cannot read it: %s; revision %s still decides",
                path,
                error.strerror,
                self.revision,
                extra={
                    "pintu_event": {
                        "event": "policy_bundle_refused",
                        "code": "policy_error",
                        "revision": self.revision,
                    }
                },
            )
            raise PolicyError(f"cannot read {path}: {error.strerror}") from None
        self._point.install(
            blob,
            self._anchors(),
            self._owner.owner,
            now=dt.datetime.fromtimestamp(self._clock(), dt.UTC),
        )
        self.counts.bundles_installed += 1

    # -- the exchange path -------------------------------------------------------------------

    def facts(self, service: Service) -> ServiceFacts:
        """The registry's facts of ``service`` as the policy input holds them."""
        known = self._facts.get(service.id)
        if known is not None and known[0] is service:
            return known[1]
        facts = ServiceFacts(
            personal_data=service.personal_data,
            data_categories=service.data_categories,
            purposes=service.purposes,
            consent_required=service.consent_required,
            legal_basis=service.legal_basis,
        )
        self._facts[service.id] = (service, facts)
        return facts

    def holds_any_right(
        self, conf: GlobalConfiguration, client: SubsystemId, service: ServiceId
    ) -> bool:
        """Whether ``client`` holds some access right on ``service``."""
        return self._rights.holds_any(str(client), conf.groups_of(client), str(service))

    async def authorize(
        self,
        conf: GlobalConfiguration,
        *,
        client: SubsystemId,
        client_server: SecurityServerId,
        service: Service,
        method: str,
        purpose: str,
        subject: str,
        now: float,
    ) -> Authorization:
        """The policy's decision to let the exchange through, with the consent it relied on.

        For personal data about a citizen (``subject``), the citizen's consent comes from the
        consent replica; when the replica is older than allowed (or there is none), a service
        that requires consent is refused and any other is decided as without consent.

        Raises:
            GatewayError: ``access_denied`` (with reasons and the decision id),
                ``policy_error`` or ``consent_state_stale``.
        """
        assert self._engine is not None, "start() first"
        client_name = str(client)
        service_key = str(service.id)
        groups = conf.groups_of(client)
        rights = self._rights
        moment = dt.datetime.fromtimestamp(now, dt.UTC)
        consent, consent_id = "none", ""
        if subject and service.personal_data:
            replica = self._replica
            if replica is not None and replica.age() <= self._max_staleness:
                consent, consent_id = replica.state(subject, client, service, purpose, moment)
            elif service.consent_required:
                self.counts.stale += 1
                raise GatewayError(
                    ErrorCode.CONSENT_STATE_STALE,
                    "the provider's consent replica is stale; the citizen's consent cannot be"
                    " checked"
                    if replica is not None
                    else "the provider's security server keeps no consent replica",
                )
        try:
            decision = await self._engine.decide(
                PolicyInput(
                    client=client_name,
                    client_server=str(client_server),
                    provider=str(service.id.provider),
                    service=service.id.service_name,
                    method=method,
                    time=moment,
                    purpose=purpose,
                    client_groups=tuple(sorted(groups)),
                    subject_concerned=bool(subject),
                    consent=consent,
                    facts=self.facts(service),
                    rights=rights.applicable(client_name, groups, service_key),
                    windows=rights.windows_for(service_key),
                )
            )
        except PolicyError as error:
            self.counts.failed += 1
            LOGGER.error("the policy could not decide: %s", error)
            raise GatewayError(
                ErrorCode.POLICY_ERROR,
                "the provider's policy could not decide; the exchange is denied",
            ) from None
        except Exception as error:  # an engine without a decision log to convert it
            self.counts.failed += 1
            LOGGER.exception("the policy engine failed")
            raise GatewayError(
                ErrorCode.POLICY_ERROR,
                f"the provider's policy could not decide ({type(error).__name__});"
                " the exchange is denied",
            ) from None
        if not decision.allow:
            counts = self.counts
            counts.denied += 1
            for reason in decision.reasons:
                counts.denials_by_reason[reason] = counts.denials_by_reason.get(reason, 0) + 1
            raise GatewayError(
                ErrorCode.ACCESS_DENIED,
                f"denied by the provider's policy: {', '.join(decision.reasons)}",
                reasons=decision.reasons,
                decision_id=decision.decision_id,
            )
        unknown = [o for o in decision.obligations if o not in KNOWN_OBLIGATIONS]
        if unknown:
            self.counts.failed += 1
            raise GatewayError(
                ErrorCode.POLICY_ERROR,
                f"the policy set an obligation this security server cannot meet: {unknown[0]}",
                decision_id=decision.decision_id,
            )
        self.counts.allowed += 1
        return Authorization(decision, consent_id)
