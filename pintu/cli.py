"""The ``pintu`` command.

::

    pintu up [--dir DIR]                    start a whole local federation and keep it running
    pintu demo                              start one in a temporary folder and run the scenario
    pintu gateway run --config FILE         run one security server
    pintu gateway enroll --config F --token T   get a security server's first certificates
                                            and register them with the registry
    pintu gateway register --config F       register its current certificate again
    pintu ca init|serve|token|revoke|list|rollover --dir DIR ...   operate the federation's CA
    pintu registry init|operator|rotate-signing-key|serve --dir DIR ...   run the registry
    pintu registry member|subsystem|server|service|group|import ... --operator DIR   change it
    pintu registry state|journal --operator DIR                           read it
    pintu consent init|serve --dir DIR ...  run the consent service
    pintu consent grant|list|get|pause|resume|revoke ... --operator DIR   citizens' consents
    pintu consent accesses --subject NIK [--limit N] --operator DIR   who obtained a citizen's data
    pintu consent verify RECEIPT --roots PEM --signer MEMBER   check a receipt offline
    pintu audit verify LOG --roots PEM --signer MEMBER [--log-name S] [--trusted FILE]
                                            check an audit log and its checkpoints
    pintu audit checkpoint LOG              its newest checkpoint, to keep outside it
    pintu policy test [--dir DIR]           run the policies' test cases (default: Pintu's own)
    pintu policy decisions LOG [--instance ID]   a decision log as OPA decision-log events
    pintu policy bundle --dir DIR --key K --certificate C --out FILE   sign a policy bundle
    pintu policy verify-bundle FILE --roots R --member ID   check one as a security server would
    pintu agency run NAME --listen ADDR     run a sample agency's backend

Exit status: 0 on success, 1 when a run or the scenario failed, 2 on invalid input (the message
names the stable error code).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from consent import ConsentError
from gateway import SettingsError
from pintu._errors import PintuError
from pintu._federation import LocalFederation
from pintu._logging import configure_logging
from pki import PkiError, certificate_pem, write_public
from policy import PolicyError
from registry import RegistryError, RegistryRefusal


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pintu", description="Pintu: secure data exchange between agencies."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="start a local federation and keep it running")
    up.add_argument(
        "--dir",
        type=Path,
        default=Path("pintu-state"),
        help="state folder (default: ./pintu-state)",
    )

    commands.add_parser("demo", help="run the one-stop birth-support scenario end to end")

    gateway = commands.add_parser("gateway", help="security server commands")
    gateway_commands = gateway.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = gateway_commands.add_parser("run", help="run one security server")
    run.add_argument("--config", type=Path, required=True, help="gateway.toml")
    run.add_argument("--ready-file", type=Path, help="written once the server listens")

    enroll = gateway_commands.add_parser(
        "enroll", help="generate this server's keys and have the CA certify them"
    )
    enroll.add_argument("--config", type=Path, required=True, help="gateway.toml")
    enroll.add_argument("--token", required=True, help="the token `pintu ca token` printed")
    register = gateway_commands.add_parser(
        "register", help="register this server's current certificate with the registry"
    )
    register.add_argument("--config", type=Path, required=True, help="gateway.toml")

    ca = commands.add_parser("ca", help="the federation's certificate authority")
    ca_commands = ca.add_subparsers(dest="action", required=True, metavar="ACTION")
    init = ca_commands.add_parser("init", help="create a CA (root, issuing CA, OCSP responder)")
    init.add_argument("--dir", type=Path, required=True)
    init.add_argument("--instance", required=True, help="the federation instance, e.g. DEMO")
    init.add_argument("--listen", default="127.0.0.1:7400", help="CA service (gRPC over TLS)")
    init.add_argument("--http-listen", default="127.0.0.1:7401", help="CRLs and OCSP (HTTP)")
    init.add_argument(
        "--renewal-listen", default="127.0.0.1:7402", help="renewal (gRPC over mutual TLS)"
    )
    init.add_argument("--public-url", help="base URL of the HTTP side, as relying parties see it")
    init.add_argument(
        "--authentication-lifetime",
        type=int,
        default=86_400,
        help="seconds an authentication certificate is valid (default: a day)",
    )
    init.add_argument("--pkcs11-module", help="keep the CA keys in this PKCS#11 module's token")
    init.add_argument("--pkcs11-token", help="the token's label")
    serve_ca = ca_commands.add_parser("serve", help="run the CA service")
    serve_ca.add_argument("--ready-file", type=Path, help="written once the service listens")
    new_token = ca_commands.add_parser("token", help="a one-time enrollment token")
    new_token.add_argument("--server", required=True, help="INSTANCE/CLASS/MEMBER/SERVER")
    new_token.add_argument("--lifetime", type=int, help="seconds the token stays valid")
    revoke = ca_commands.add_parser("revoke", help="revoke a certificate")
    revoke.add_argument("serial", help="decimal, or hex with 0x")
    revoke.add_argument("--reason", required=True, help="key_compromise, superseded, ...")
    listing = ca_commands.add_parser("list", help="issued certificates, or the journal")
    listing.add_argument("--journal", action="store_true", help="the journal instead")
    rollover = ca_commands.add_parser("rollover", help="introduce, switch to, retire roots")
    rollover.add_argument("step", choices=["begin", "switch", "retire"])
    for sub in (init, serve_ca, new_token, revoke, listing, rollover):
        if sub is not init:
            sub.add_argument("--dir", type=Path, required=True, help="the CA's folder")
        sub.add_argument(
            "--passphrase-file",
            type=Path,
            help="the CA keys' passphrase (default: $PINTU_CA_PASSPHRASE); with a PKCS#11 "
            "token, its PIN (default: $PINTU_CA_PIN)",
        )

    _registry_parser(commands)
    _consent_parser(commands)
    audit = commands.add_parser("audit", help="the tamper-evident audit log")
    audit_actions = audit.add_subparsers(dest="action", required=True, metavar="ACTION")
    audit_verify = audit_actions.add_parser(
        "verify", help="check a security server's audit log and its signed checkpoints"
    )
    audit_verify.add_argument("log", type=Path, help="the log file (SQLite)")
    audit_verify.add_argument("--roots", type=Path, required=True, help="federation roots (PEM)")
    audit_verify.add_argument("--signer", required=True, help="the member that signs it")
    audit_verify.add_argument("--log-name", help="the security server whose log it must be")
    audit_verify.add_argument(
        "--trusted",
        type=Path,
        help="checkpoints kept outside the log (pintu audit checkpoint), one per line",
    )
    audit_verify.add_argument(
        "--tsa-roots", type=Path, help="check the checkpoints' RFC 3161 timestamps (TSA roots, PEM)"
    )
    audit_checkpoint = audit_actions.add_parser(
        "checkpoint", help="print the log's newest signed checkpoint, to keep outside it"
    )
    audit_checkpoint.add_argument("log", type=Path)
    prove = audit_actions.add_parser(
        "prove", help="export the evidence of one exchange (records, proofs, seals) as JSON"
    )
    prove.add_argument("message_id", help="the exchange's pintu-message-id")
    prove.add_argument(
        "--log", type=Path, default=Path("audit.db"), help="the log file (default: audit.db)"
    )
    prove.add_argument("--out", type=Path, help="write here (default: standard output)")
    evidence = audit_actions.add_parser("verify-evidence", help="check an evidence file offline")
    archive = audit_actions.add_parser(
        "archive", help="export the records not yet archived, up to the newest checkpoint"
    )
    archive.add_argument("log", type=Path, help="the log file (SQLite)")
    archive.add_argument("--out", type=Path, required=True, help="the archive to write")
    verify_archive = audit_actions.add_parser(
        "verify-archive", help="check an archive on its own, against its signed checkpoint"
    )
    verify_archive.add_argument("archive", type=Path)
    verify_archive.add_argument("--roots", type=Path, required=True, help="federation roots")
    verify_archive.add_argument("--signer", required=True, help="the member that signs the log")
    prune = audit_actions.add_parser(
        "prune", help="remove from the log the bodies of the records an archive holds"
    )
    prune.add_argument("log", type=Path, help="the log file (SQLite)")
    prune.add_argument("--archive", type=Path, required=True, help="its verified archive")
    prune.add_argument("--roots", type=Path, required=True, help="federation roots (PEM)")
    prune.add_argument("--signer", required=True, help="the member that signs the log")
    bodies = audit_actions.add_parser(
        "bodies", help="decrypt the bodies a log keeps of one exchange (with the body key)"
    )
    bodies.add_argument("message_id", help="the exchange's pintu-message-id")
    bodies.add_argument("--log", type=Path, default=Path("audit.db"), help="the log file")
    bodies.add_argument("--body-key", type=Path, required=True, help="the [audit] body_key file")
    bodies.add_argument("--out", type=Path, help="write each message to DIR/DIRECTION-INDEX.bin")
    evidence.add_argument("file", type=Path, help="the evidence (pintu audit prove)")
    evidence.add_argument("--roots", type=Path, required=True, help="federation roots (PEM)")
    evidence.add_argument(
        "--signer", required=True, help="the member whose security server kept the log"
    )
    policy = commands.add_parser("policy", help="the exchange policies")
    policy_actions = policy.add_subparsers(dest="action", required=True, metavar="ACTION")
    policy_test = policy_actions.add_parser("test", help="run every *_test.rego's cases")
    policy_test.add_argument(
        "--dir", type=Path, help="the policy folder (default: the policies Pintu ships)"
    )
    bundle = policy_actions.add_parser("bundle", help="sign a policy folder into a bundle")
    bundle.add_argument("--dir", type=Path, required=True, help="the policy folder")
    bundle.add_argument("--key", type=Path, required=True, help="the member's signing key")
    bundle.add_argument(
        "--certificate", type=Path, required=True, help="its certificate and chain (PEM)"
    )
    bundle.add_argument("--revision", help="the bundle's revision (default: the set's)")
    bundle.add_argument("--out", type=Path, required=True, help="the bundle file to write")
    verify = policy_actions.add_parser(
        "verify-bundle", help="verify, compile and test a bundle as a security server would"
    )
    verify.add_argument("bundle", type=Path)
    verify.add_argument("--roots", type=Path, required=True, help="the federation's roots")
    verify.add_argument("--member", required=True, help="the member that must have signed it")
    decisions = policy_actions.add_parser(
        "decisions", help="print a decision log as OPA decision-log events (JSON lines)"
    )
    decisions.add_argument("log", type=Path, help="the decision log file")
    decisions.add_argument(
        "--instance", default="pintu", help="the labels.id of the events (the security server)"
    )

    agency = commands.add_parser("agency", help="sample agency commands")
    agency_commands = agency.add_subparsers(dest="action", required=True, metavar="ACTION")
    serve = agency_commands.add_parser("run", help="run a sample agency's backend")
    serve.add_argument("name", help="welfare, popreg, nhis or tax")
    serve.add_argument("--listen", required=True, help="host:port")
    serve.add_argument("--ready-file", type=Path, help="written once the backend listens")
    return parser


def _registry_parser(commands: Any) -> None:
    registry = commands.add_parser("registry", help="the federation's registry")
    actions = registry.add_subparsers(dest="action", required=True, metavar="ACTION")

    def with_ca(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--dir", type=Path, required=True, help="the registry's folder")
        sub.add_argument("--ca-dir", type=Path, required=True, help="the CA's folder")
        sub.add_argument(
            "--passphrase-file",
            type=Path,
            help="the CA keys' passphrase (default: $PINTU_CA_PASSPHRASE)",
        )

    init = actions.add_parser("init", help="create a registry: settings, keys, anchor")
    with_ca(init)
    init.add_argument("--instance", required=True, help="the federation instance, e.g. DEMO")
    init.add_argument("--listen", default="127.0.0.1:7500", help="management (gRPC, mTLS)")
    init.add_argument("--http-listen", default="127.0.0.1:7501", help="distribution (HTTP)")
    init.add_argument("--address", help="management address as servers reach it")
    init.add_argument(
        "--distribution", action="append", help="URL of GET /global-configuration (repeatable)"
    )
    init.add_argument("--database", help="SQLAlchemy URL (default: SQLite in the folder)")
    init.add_argument("--validity", type=int, default=3600, help="snapshot lifetime, seconds")
    operator = actions.add_parser("operator", help="issue an operator's credentials")
    with_ca(operator)
    operator.add_argument("--name", required=True)
    operator.add_argument("--role", required=True, choices=["admin", "viewer"])
    operator.add_argument("--out", type=Path, required=True, help="credentials folder")
    rotate = actions.add_parser(
        "rotate-signing-key",
        help="new signing and TLS keys from the CA's active generation, and its current roots",
    )
    with_ca(rotate)
    serve = actions.add_parser("serve", help="run the registry service")
    serve.add_argument("--dir", type=Path, required=True)
    serve.add_argument("--ready-file", type=Path, help="written once the service listens")

    def change(name: str, help_text: str, verbs: list[str]) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = actions.add_parser(name, help=help_text)
        sub.add_argument("verb", choices=verbs)
        return sub

    member = change("member", "put or remove a member", ["put", "remove"])
    member.add_argument("id", help="INSTANCE/CLASS/MEMBER")
    member.add_argument("--name", help="display name")
    subsystem = change("subsystem", "add or remove a subsystem", ["add", "remove"])
    subsystem.add_argument("id", help="INSTANCE/CLASS/MEMBER/SUBSYSTEM")
    server = change(
        "server",
        "put or remove a security server, or one of its certificates",
        ["put", "remove", "add-certificate", "remove-certificate"],
    )
    server.add_argument("id", help="INSTANCE/CLASS/MEMBER/SERVER")
    server.add_argument("--address", action="append", help="peer listener host:port")
    server.add_argument(
        "--serves", action="append", help="a subsystem code it serves (default: all)"
    )
    server.add_argument("--certificate", type=Path, help="PEM file (add-certificate)")
    server.add_argument("--sha256", help="certificate fingerprint (remove-certificate)")
    service = change("service", "put or remove a service", ["put", "remove"])
    service.add_argument("id", help="INSTANCE/CLASS/MEMBER/SUBSYSTEM/package.Service")
    service.add_argument("--descriptors", type=Path, help="FileDescriptorSet (protoc -o)")
    service.add_argument("--method", action="append", help="a method name")
    service.add_argument("--description", default="")
    service.add_argument("--personal-data", action="store_true")
    service.add_argument("--category", action="append", help="personal data category")
    service.add_argument("--purpose", action="append", help="a purpose it serves")
    service.add_argument("--consent-required", action="store_true")
    service.add_argument("--legal-basis", default="", help="what allows it without consent")
    group = change("group", "put or remove a global group", ["put", "remove"])
    group.add_argument("code")
    group.add_argument("--description", default="")
    group.add_argument("--member", action="append", help="a subsystem in the group")
    imported = actions.add_parser("import", help="put a JSON configuration's content")
    imported.add_argument("file", type=Path)
    imported.add_argument(
        "--descriptors", type=Path, action="append", default=[], help="FileDescriptorSet"
    )
    state = actions.add_parser("state", help="the registry's content (JSON)")
    journal = actions.add_parser("journal", help="the journal of changes")
    journal.add_argument("--after", type=int, default=0, help="only after this version")
    for sub in (member, subsystem, server, service, group, imported, state, journal):
        sub.add_argument(
            "--operator", type=Path, help="operator credentials folder ($PINTU_OPERATOR)"
        )
    for sub in (member, subsystem, server, service, group, imported):
        sub.add_argument("--reason", default="", help="why, for the journal")


def _consent_parser(commands: Any) -> None:
    consent = commands.add_parser("consent", help="citizens' consents and the consent service")
    actions = consent.add_subparsers(dest="action", required=True, metavar="ACTION")
    init = actions.add_parser("init", help="create a consent service: settings and keys")
    init.add_argument("--dir", type=Path, required=True, help="the consent service's folder")
    init.add_argument("--ca-dir", type=Path, required=True, help="the CA's folder")
    init.add_argument(
        "--passphrase-file", type=Path, help="the CA keys' passphrase ($PINTU_CA_PASSPHRASE)"
    )
    init.add_argument("--anchor", type=Path, required=True, help="the registry's anchor.json")
    init.add_argument("--signer", required=True, help="member whose key signs receipts")
    init.add_argument(
        "--operator", action="append", default=[], help="an operator that may grant (repeatable)"
    )
    init.add_argument("--listen", default="127.0.0.1:7600", help="gRPC over mutual TLS")
    init.add_argument("--address", help="the address as servers and operators reach it")
    init.add_argument("--database", help="SQLAlchemy URL (default: SQLite in the folder)")
    init.add_argument(
        "--pseudonym-key",
        type=Path,
        help="the federation's pseudonym key (lets operators read citizens' access histories)",
    )
    serve = actions.add_parser("serve", help="run the consent service")
    serve.add_argument("--dir", type=Path, required=True)
    serve.add_argument("--ready-file", type=Path, help="written once the service listens")
    grant = actions.add_parser("grant", help="record a consent (for testing and support)")
    grant.add_argument("--subject", required=True, help="the citizen, e.g. NIK:3174...")
    grant.add_argument("--provider", required=True, help="member or subsystem of the data")
    grant.add_argument("--consumer", required=True, help="the subsystem that may obtain it")
    grant.add_argument("--service", action="append", default=[], help="a service id")
    grant.add_argument("--category", action="append", default=[], help="a data category")
    grant.add_argument("--purpose", required=True)
    grant.add_argument("--text", required=True, help="the purpose in plain words")
    grant.add_argument("--days", type=float, default=365.0, help="validity from now")
    grant.add_argument("--request-id", default="", help="idempotency key")
    listing = actions.add_parser("list", help="a citizen's consents")
    listing.add_argument("subject")
    get = actions.add_parser("get", help="one consent")
    get.add_argument("id")
    get.add_argument("--subject", required=True, help="the citizen whose consent it is")
    get.add_argument("--receipt", type=Path, help="write its signed receipt here")
    changes = []
    for verb in ("pause", "resume", "revoke"):
        change = actions.add_parser(verb, help=f"{verb} a consent")
        change.add_argument("id")
        change.add_argument("--subject", required=True, help="the citizen whose consent it is")
        change.add_argument("--reason", default="")
        change.add_argument("--request-id", default="", help="idempotency key")
        changes.append(change)
    accesses = actions.add_parser("accesses", help="a citizen's access history, newest first")
    accesses.add_argument("--subject", required=True, help="the citizen, e.g. NIK:3174...")
    accesses.add_argument(
        "--limit", type=_access_limit, default=0, help="at most N events (1-1000; default 1000)"
    )
    accesses.add_argument(
        "--before", type=_aware_time, help="only events before this ISO 8601 time (paging)"
    )
    for sub in (grant, listing, get, *changes, accesses):
        sub.add_argument(
            "--operator", type=Path, help="operator credentials folder ($PINTU_OPERATOR)"
        )
        sub.add_argument("--consent-service", help="host:port (default: the credentials')")
    verify = actions.add_parser("verify", help="check a consent receipt offline")
    verify.add_argument("receipt", type=Path)
    verify.add_argument("--roots", type=Path, required=True, help="the federation's roots (PEM)")
    verify.add_argument(
        "--signer", required=True, help="the member that must have signed it (the service's)"
    )


def _access_limit(text: str) -> int:
    try:
        limit = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 1 <= limit <= 1000:
        raise argparse.ArgumentTypeError("from 1 to 1000")
    return limit


def _aware_time(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError("a time zone is required (e.g. 2026-11-25T09:30:00Z)")
    return moment


def _audit_checkpoint(log: Path) -> int:
    """Print the newest checkpoint stored in a log (for an auditor to keep)."""
    import sqlite3

    from pintu._errors import ConfigError

    if not log.is_file():
        raise ConfigError(f"{log}: no such file")
    try:
        db = sqlite3.connect(f"file:{log}?mode=ro", uri=True)
        row = db.execute("SELECT token FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        db.close()
    except sqlite3.Error as error:
        raise ConfigError(f"{log}: {error}") from None
    if row is None:
        raise ConfigError(f"{log}: no checkpoint yet")
    print(row[0])
    return 0


def _audit_verify(options: argparse.Namespace) -> int:
    """Verify an audit log file; print what holds, or fail with the tampering found."""
    from audit import AuditError, Checkpoint, verify_log
    from pintu._errors import ConfigError
    from pki import load_certificates
    from proto import IdentifierError, MemberId

    log: Path = options.log
    try:
        member = MemberId.parse(options.signer)
    except IdentifierError as error:
        raise ConfigError(f"--signer: {error}") from None
    if not log.is_file():
        raise ConfigError(f"{log}: no such file")
    roots = load_certificates(options.roots)
    try:
        tokens = options.trusted.read_text().split() if options.trusted else []
    except OSError as error:
        raise ConfigError(f"--trusted: {error.strerror}") from None
    tsa_roots = load_certificates(options.tsa_roots) if options.tsa_roots else None
    try:
        trusted = [Checkpoint.verified(token, roots, member) for token in tokens]
        verified = verify_log(
            log, roots, member, name=options.log_name, trusted=trusted, tsa_roots=tsa_roots
        )
    except AuditError as error:
        print(f"pintu: error [{error.code}]: {log}: {error}", file=sys.stderr)
        return 1
    print(
        f"{log}: {verified.records} records, {verified.checkpoints} checkpoints signed by"
        f" {member}; the first {verified.covered} records are fixed by the last checkpoint"
        + (f", {verified.uncovered} written since" if verified.uncovered else "")
        + (
            f"; {verified.timestamped} of {verified.checkpoints} checkpoints timestamped"
            if tsa_roots is not None
            else ""
        )
        + (
            f"; {verified.archived} archived records have their bodies removed"
            if verified.archived
            else ""
        )
    )
    return 0


def _audit_prove(options: argparse.Namespace) -> int:
    """Export the evidence of one exchange."""
    import json

    from audit import AuditError, prove
    from pintu._errors import ConfigError

    if not options.log.is_file():
        raise ConfigError(f"{options.log}: no such file")
    try:
        document = prove(options.log, options.message_id)
    except AuditError as error:
        print(f"pintu: error [{error.code}]: {error}", file=sys.stderr)
        return 1
    text = json.dumps(document, indent=2) + "\n"
    if options.out is None:
        sys.stdout.write(text)
    else:
        options.out.write_text(text)
        print(f"evidence of {options.message_id} written to {options.out}")
    return 0


def _audit_archives(options: argparse.Namespace) -> int:
    """``pintu audit archive|verify-archive|prune``."""
    from audit import AuditError, archive, prune, verify_archive
    from pintu._errors import ConfigError
    from pki import load_certificates
    from proto import IdentifierError, MemberId

    try:
        if options.action == "archive":
            if not options.log.is_file():
                raise ConfigError(f"{options.log}: no such file")
            start, end = archive(options.log, options.out)
            print(f"records {start} to {end - 1} archived to {options.out}")
            return 0
        try:
            member = MemberId.parse(options.signer)
        except IdentifierError as error:
            raise ConfigError(f"--signer: {error}") from None
        roots = load_certificates(options.roots)
        if options.action == "verify-archive":
            held = verify_archive(options.archive, roots, member)
            print(
                f"{options.archive}: records {held.start} to {held.end - 1} of log {held.log},"
                f" fixed by its checkpoint of {held.end} records signed by {member}"
            )
            return 0
        if not options.log.is_file():
            raise ConfigError(f"{options.log}: no such file")
        held = prune(options.log, options.archive, roots, member)
        print(f"{options.log}: the bodies of records {held.start} to {held.end - 1} removed")
        return 0
    except AuditError as error:
        print(f"pintu: error [{error.code}]: {error}", file=sys.stderr)
        return 1


def _audit_bodies(options: argparse.Namespace) -> int:
    """Decrypt the kept bodies of one exchange; list them (and write them with --out)."""
    import hashlib

    from audit import AuditError, BodyKeyError, BodyUnreadable, read_bodies
    from pintu._errors import ConfigError

    if not options.log.is_file():
        raise ConfigError(f"{options.log}: no such file")
    try:
        key = options.body_key.read_bytes()
    except OSError as error:
        raise ConfigError(f"--body-key: {error.strerror}") from None
    try:
        found = read_bodies(options.log, options.message_id, key)
    except (AuditError, BodyKeyError, BodyUnreadable) as error:
        print(f"pintu: error [{error.code}]: {error}", file=sys.stderr)
        return 1
    if options.out is not None:
        options.out.mkdir(parents=True, exist_ok=True)
    for direction, index, body in found:
        print(f"{direction} {index}: {len(body)} bytes, SHA-256 {hashlib.sha256(body).hexdigest()}")
        if options.out is not None:
            (options.out / f"{direction}-{index}.bin").write_bytes(body)
    return 0


def _audit_verify_evidence(options: argparse.Namespace) -> int:
    """Check an evidence file offline; print what it proves."""
    import json

    from audit import AuditError, verify_evidence
    from pintu._errors import ConfigError
    from pki import load_certificates
    from proto import IdentifierError, MemberId

    try:
        member = MemberId.parse(options.signer)
    except IdentifierError as error:
        raise ConfigError(f"--signer: {error}") from None
    try:
        document = json.loads(options.file.read_text())
    except OSError as error:
        raise ConfigError(f"{options.file}: {error.strerror}") from None
    except ValueError:
        print(f"pintu: error [evidence_invalid]: {options.file}: not JSON", file=sys.stderr)
        return 1
    roots = load_certificates(options.roots)
    try:
        if not isinstance(document, dict):
            raise ValueError
        evidence = verify_evidence(document, roots, member)
    except (AuditError, ValueError) as error:
        code = getattr(error, "code", "evidence_invalid")
        print(f"pintu: error [{code}]: {options.file}: {error}", file=sys.stderr)
        return 1
    print(
        f"{options.file}: {len(evidence.records)} records of exchange {evidence.message_id} are"
        f" in log {evidence.log} (checkpoint of {evidence.checkpoint_size} records, signed by"
        f" {member})"
    )
    ended = next((r for r in evidence.records if r.kind == "outcome"), None)
    if ended is not None:
        print(f"outcome recorded: {ended.status}")
    if evidence.request is not None:
        print(
            f"request sealed by {evidence.request_signer}: {evidence.request['client']} asked"
            f" {evidence.request['provider']} {evidence.request['method']} for purpose"
            f" {evidence.request['purpose']} ({evidence.request['messages']} messages,"
            f" {evidence.request['bytes']} bytes, SHA-256 {evidence.request['digest']})"
        )
    if evidence.response is not None:
        print(
            f"answer sealed by {evidence.response_signer}: status {evidence.response['status']}"
            f" ({evidence.response['messages']} messages, {evidence.response['bytes']} bytes,"
            f" SHA-256 {evidence.response['digest']})"
        )
    return 0


def _consent_command(options: argparse.Namespace) -> int:
    from pintu import _consent

    if options.action == "verify":
        print(_consent.verify(options.receipt, options.roots, options.signer))
        return 0
    if options.action == "serve":
        asyncio.run(_consent.serve(options.dir, options.ready_file))
        return 0
    if options.action == "init":
        from pintu import _ca

        with _ca.open_folder(options.ca_dir, options.passphrase_file) as ca:
            ledger = ca.ledger()
            try:
                folder = _consent.init_consent(
                    options.dir,
                    ca.authority(ca.active, ledger),
                    list(ca.trust_bundle().roots),
                    listen=options.listen,
                    anchor=options.anchor,
                    signer=options.signer,
                    operators=options.operator,
                    address=options.address,
                    database=options.database,
                    pseudonym_key=options.pseudonym_key,
                    actor=_ca.actor(),
                )
            finally:
                ledger.close()
        print(f"consent service created in {folder.path}")
        return 0

    async def run() -> None:
        async with _consent.operator_client(options.operator, options.consent_service) as client:
            if options.action == "grant":
                detail = _consent.detail_from_options(
                    subject=options.subject,
                    provider=options.provider,
                    consumer=options.consumer,
                    services=options.service,
                    categories=options.category,
                    purpose=options.purpose,
                    text=options.text,
                    days=options.days,
                )
                granted, _ = await client.grant(detail, request_id=options.request_id)
                print("\n".join(_consent.consent_lines(granted)))
            elif options.action == "list":
                for consent in await client.of_subject(options.subject):
                    print("\n".join(_consent.consent_lines(consent)))
            elif options.action == "accesses":
                events = await client.access_of(
                    options.subject, limit=options.limit, before=options.before
                )
                for line in _consent.access_lines(events):
                    print(line)
            elif options.action == "get":
                found, receipt = await client.get(options.id, subject=options.subject)
                print("\n".join(_consent.consent_lines(found)))
                if options.receipt is not None:
                    options.receipt.write_text(receipt + "\n", encoding="utf-8")
            else:
                changed = await client.change(
                    options.id,
                    _consent.Change(options.action),
                    subject=options.subject,
                    reason=options.reason,
                    request_id=options.request_id,
                )
                print("\n".join(_consent.consent_lines(changed)))

    asyncio.run(run())
    return 0


def _policy_test(folder: Path | None) -> int:
    """Run the test cases of a policy folder; 1 when one fails."""
    import policy

    policies = policy.PolicySet.load(folder or policy.DEFAULT_POLICIES)
    outcomes = policy.run_tests(policies)
    failed = [outcome for outcome in outcomes if not outcome.passed]
    for outcome in outcomes:
        mark = "ok  " if outcome.passed else "FAIL"
        detail = f": {outcome.detail}" if outcome.detail else ""
        print(f"{mark} {outcome.file}: {outcome.case}{detail}")
    print(
        f"{len(outcomes) - len(failed)} of {len(outcomes)} policy cases passed"
        f" (revision {policies.revision})"
    )
    return 1 if failed else 0


def _policy_bundle(options: argparse.Namespace) -> int:
    """Sign the policy folder into a bundle (its tests must pass first)."""
    import policy
    from pki import load_certificates, load_private_key, write_public

    policies = policy.PolicySet.load(options.dir)
    outcomes = policy.tested(policies)
    key = load_private_key(options.key)
    chain = load_certificates(options.certificate)
    files = {name: text.encode() for name, text in {**policies.modules, **policies.tests}.items()}
    data_file = options.dir / "data.json"
    if data_file.exists():
        files["data.json"] = data_file.read_bytes()
    if not isinstance(key, policy.SIGNING_KEY_TYPES):
        raise policy.PolicyError("policy bundles are signed with P-256 keys (ES256)")
    revision = options.revision or policies.revision
    write_public(options.out, policy.build_bundle(files, key, chain, revision=revision))
    print(f"{options.out}: revision {revision}, {len(files)} files, {len(outcomes)} cases passed")
    return 0


def _policy_verify_bundle(bundle: Path, roots: Path, member: str) -> int:
    """Verify, compile and test a bundle as a security server does before using it."""
    import datetime as dt

    import policy
    from pki import load_certificates
    from proto import IdentifierError, MemberId

    try:
        owner = MemberId.parse(member)
    except IdentifierError as error:
        raise policy.PolicyError(f"--member: {error}") from None
    try:
        blob = bundle.read_bytes()
    except OSError as error:
        raise policy.PolicyBundleInvalid(f"{bundle}: {error.strerror}") from None
    policies, label = policy.verify_bundle(
        blob, load_certificates(roots), owner, now=dt.datetime.now(dt.UTC)
    )
    outcomes = policy.tested(policies)
    policy.EmbeddedEngine(policies)
    print(
        f"{bundle}: signed by {owner}, revision {label} (set {policies.revision}),"
        f" {len(outcomes)} cases passed"
    )
    return 0


def _policy_decisions(log: Path, instance: str) -> int:
    """Print every record of a decision log as an OPA decision-log event, one per line."""
    import json

    import policy

    for record in policy.DecisionLog(log).records():
        print(json.dumps(record.to_opa_event(instance), sort_keys=True))
    return 0


def _registry_command(options: argparse.Namespace) -> int:
    from pintu import _registry

    action = options.action
    if action in ("init", "operator", "rotate-signing-key"):
        return _registry_with_ca(options)
    if action == "serve":
        asyncio.run(_registry.serve(options.dir, options.ready_file))
        return 0
    client = _registry.operator_client(options.operator)
    if action == "state":
        print(_registry.state_text(asyncio.run(client.state())))
        return 0
    if action == "journal":
        for line in _registry.journal_lines(asyncio.run(client.journal(options.after))):
            print(line)
        return 0
    if action == "member":
        changes = [_registry.member_change(options.verb, options.id, options.name)]
    elif action == "subsystem":
        changes = [_registry.subsystem_change(options.verb, options.id)]
    elif action == "server":
        changes = [
            _registry.server_change(
                options.verb,
                options.id,
                addresses=options.address,
                serves=options.serves,
                certificate=options.certificate,
                sha256=options.sha256,
            )
        ]
    elif action == "service":
        changes = [
            _registry.service_change(
                options.verb,
                options.id,
                descriptors=options.descriptors,
                methods=options.method,
                description=options.description,
                personal_data=options.personal_data,
                categories=options.category,
                purposes=options.purpose,
                consent_required=options.consent_required,
                legal_basis=options.legal_basis,
            )
        ]
    elif action == "group":
        changes = [
            _registry.group_change(options.verb, options.code, options.description, options.member)
        ]
    else:
        changes = _registry.import_file(options.file, options.descriptors)
    version = asyncio.run(client.change(changes, options.reason))
    print(f"registry version {version}")
    return 0


def _registry_with_ca(options: argparse.Namespace) -> int:
    from pintu import _ca, _registry

    with _ca.open_folder(options.ca_dir, options.passphrase_file) as ca:
        ledger = ca.ledger()
        try:
            authority = ca.authority(ca.active, ledger)
            if options.action == "init":
                folder = _registry.init_registry(
                    options.dir,
                    authority,
                    list(ca.trust_bundle().roots),
                    instance=options.instance,
                    listen=options.listen,
                    http_listen=options.http_listen,
                    address=options.address,
                    distribution=options.distribution,
                    database=options.database,
                    validity_seconds=options.validity,
                    actor=_ca.actor(),
                )
                print(
                    f"registry created in {folder.path}; anchor for servers: {folder.anchor_file}"
                )
            elif options.action == "operator":
                out = _registry.add_operator(
                    _registry.RegistryFolder(options.dir),
                    authority,
                    options.name,
                    options.role,
                    options.out,
                    actor=_ca.actor(),
                )
                print(f"operator {options.name} ({options.role}): credentials in {out}")
            else:
                folder = _registry.RegistryFolder(options.dir)
                document = folder.read()
                # The CA's current roots (a root rollover adds and retires some), then keys
                # issued by the CA's active generation.
                write_public(folder.path / "roots.pem", certificate_pem(*ca.trust_bundle().roots))
                host = document["address"].rpartition(":")[0].strip("[]")
                # Servers and operators that still trust only the previous root reach the
                # service and verify snapshots through the active root's cross-certificate.
                cross = ca.generation(ca.active).cross
                crosses = [cross] if cross is not None else []
                folder.issue_tls(
                    authority,
                    document["instance"],
                    {host, "localhost"},
                    actor=_ca.actor(),
                    cross=crosses,
                )
                folder.issue_signer(
                    authority, document["instance"], actor=_ca.actor(), cross=crosses
                )
                folder.anchor().save(folder.anchor_file)
                print(
                    "new configuration-signing and TLS keys and the CA's current roots in place;"
                    " a running registry takes them within a second"
                )
        finally:
            ledger.close()
    return 0


def _print_endpoints(federation: LocalFederation) -> None:
    document = federation.document
    print(f"Pintu federation {document['instance']} is running from {federation.state}")
    print(f"  CA bundle:  {document['ca_bundle']}")
    for key, gateway in document["gateways"].items():
        agency = document["agencies"][key]
        print(f"  {agency['name']} ({agency['subsystem']})")
        print(f"    security server {gateway['server']}")
        print(
            f"      agency (h2c) {gateway['agency_address']}   agency (mTLS) "
            f"{gateway['agency_tls_address']}   peer (mTLS) {gateway['peer_address']}"
        )
        if agency["backend_address"]:
            print(f"    backend {agency['backend_address']}: {', '.join(agency['services'])}")
    print(f"  endpoints:  {federation.federation_file}")
    print("Press Ctrl+C to stop.", flush=True)


def _up(state: Path) -> int:
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    federation = LocalFederation(state)
    federation.prepare()
    with federation:
        _print_endpoints(federation)
        while not stop.wait(0.5):
            federation.check()
    print("Pintu federation stopped.", flush=True)
    return 0


def _demo() -> int:
    from demo import run_scenario

    with tempfile.TemporaryDirectory(prefix="pintu-demo-") as scratch:
        print(
            "Starting a local federation: a CA, a registry, a consent service, four security"
            " servers, three agency backends..."
        )
        with LocalFederation(Path(scratch)) as federation:
            print(f"Federation up ({len(federation.document['gateways'])} security servers).\n")
            ok = asyncio.run(
                run_scenario(
                    federation.document,
                    lambda line: print(line, flush=True),
                    federation.consent_desk(),
                )
            )
    print("\nDemo finished: every step did what it should." if ok else "\nDemo FAILED.")
    return 0 if ok else 1


def _ca_command(options: argparse.Namespace) -> int:
    from pintu import _ca

    secret = options.passphrase_file
    if options.action == "init":
        folder = _ca.init(
            options.dir,
            instance=options.instance,
            listen=options.listen,
            http_listen=options.http_listen,
            renewal_listen=options.renewal_listen,
            public_url=options.public_url,
            secret_file=secret,
            pkcs11_module=options.pkcs11_module,
            pkcs11_token=options.pkcs11_token,
            authentication_lifetime=options.authentication_lifetime,
        )
        print(f"CA created in {folder.path}; root certificate: {folder.path}/G1/root.pem")
    elif options.action == "serve":
        asyncio.run(_ca.serve(options.dir, secret, options.ready_file))
    elif options.action == "token":
        print(_ca.token(options.dir, secret, options.server, options.lifetime))
    elif options.action == "revoke":
        _ca.revoke(options.dir, secret, options.serial, options.reason)
        print(f"revoked {options.serial} ({options.reason})")
    elif options.action == "list":
        for line in _ca.listing(options.dir, options.journal):
            print(line)
    else:
        print(_ca.rollover(options.dir, secret, options.step))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pintu`` command; returns the exit status."""
    options = _parser().parse_args(argv)
    quiet = options.command in ("up", "demo") or (
        options.command in ("ca", "registry", "consent") and options.action != "serve"
    )
    configure_logging(logging.WARNING if quiet else logging.INFO)
    try:
        if options.command == "up":
            return _up(options.dir)
        if options.command == "demo":
            return _demo()
        if options.command == "gateway" and options.action == "enroll":
            from pintu import _ca

            print(_ca.enroll(options.config, options.token))
            return 0
        if options.command == "gateway" and options.action == "register":
            from pintu import _ca

            print(_ca.register(options.config))
            return 0
        if options.command == "gateway":
            from pintu._processes import run_gateway

            asyncio.run(run_gateway(options.config, options.ready_file))
            return 0
        if options.command == "ca":
            return _ca_command(options)
        if options.command == "registry":
            return _registry_command(options)
        if options.command == "consent":
            return _consent_command(options)
        if options.command == "audit" and options.action == "checkpoint":
            return _audit_checkpoint(options.log)
        if options.command == "audit" and options.action in ("archive", "verify-archive", "prune"):
            return _audit_archives(options)
        if options.command == "audit" and options.action == "bodies":
            return _audit_bodies(options)
        if options.command == "audit" and options.action == "prove":
            return _audit_prove(options)
        if options.command == "audit" and options.action == "verify-evidence":
            return _audit_verify_evidence(options)
        if options.command == "audit":
            return _audit_verify(options)
        if options.command == "policy":
            if options.action == "decisions":
                return _policy_decisions(options.log, options.instance)
            if options.action == "bundle":
                return _policy_bundle(options)
            if options.action == "verify-bundle":
                return _policy_verify_bundle(options.bundle, options.roots, options.member)
            return _policy_test(options.dir)
        if options.command == "agency":
            from pintu._processes import run_agency

            asyncio.run(run_agency(options.name, options.listen, options.ready_file))
            return 0
    except RegistryRefusal as error:
        # The registry's own code (change_refused, operator_not_authorized, ...).
        print(f"pintu: error [{error.reason}]: {error.detail}", file=sys.stderr)
        return 2
    except (
        PintuError,
        PkiError,
        PolicyError,
        RegistryError,
        SettingsError,
        ConsentError,
    ) as error:
        print(f"pintu: error [{error.code}]: {error}", file=sys.stderr)
        return 2 if not isinstance(error, PintuError) or error.code != "federation_failed" else 1
    raise AssertionError(options.command)
