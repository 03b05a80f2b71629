"""Pintu's benchmarks: run every suite, or the ones named, each rewriting its own section of
docs/benchmarks.md.

    python -m bench.run [--suite exchange|pki|policy|registry|consent|audit]... [--rounds N]
                        [--seconds S]
                        [--output FILE] [--enrollments N] [--crl-sizes 0,1000,...]
                        [--concurrency 1,8,32] [--members N] [--services N]
                        [--lookup-services 100,1000,...] [--decisions N]
                        [--rights 100,1000,...]

``make bench`` runs every suite with its defaults. Options left out take the suite's default
(``exchange``: 5 rounds of 3 s; ``pki``: 5 rounds, windows of 1 s; ``registry``: 3 rounds,
10,000 members and 100,000 services); each section names the command that reproduces it. The
suites:

* ``exchange`` (bench.exchange): an exchange directly and through two security servers;
* ``pki`` (bench.pki): issuance, OCSP, staple verification and CRL checks;
* ``policy`` (bench.policy): decisions, from the cache and from the engine, as rights grow;
* ``registry`` (bench.registry): the global configuration's snapshot at federation scale,
  built, verified and swapped, and the look-ups an exchange makes in it;
* ``consent`` (bench.consent): consent checks in a replica and in the store, revocation
  propagation to replicas, grant throughput on SQLite and PostgreSQL;
* ``audit`` (bench.audit): the tamper-evident log: appends with group commit against a sync
  per record, checkpoints, proofs and verification of a log of 10 million records.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import audit as audit_suite
from bench import consent as consent_suite
from bench import exchange
from bench import pki as pki_suite
from bench import policy as policy_suite
from bench import registry as registry_suite
from bench._document import write_section


@dataclass(frozen=True)
class Suite:
    """A suite's default settings (a frozen dataclass) and the function that measures."""

    defaults: Any
    run: Callable[[Any, str], str]


SUITES = {
    exchange.NAME: Suite(exchange.ExchangeSettings(), exchange.run),
    pki_suite.NAME: Suite(pki_suite.PkiSettings(), pki_suite.run),
    policy_suite.NAME: Suite(policy_suite.PolicyBenchSettings(), policy_suite.run),
    registry_suite.NAME: Suite(registry_suite.RegistryBenchSettings(), registry_suite.run),
    consent_suite.NAME: Suite(consent_suite.ConsentBenchSettings(), consent_suite.run),
    audit_suite.NAME: Suite(audit_suite.AuditBenchSettings(), audit_suite.run),
}
# Settings fields and the options that set them.
FLAGS = {
    "rounds": "--rounds",
    "seconds": "--seconds",
    "enrollments": "--enrollments",
    "crl_sizes": "--crl-sizes",
    "concurrencies": "--concurrency",
    "members": "--members",
    "services": "--services",
    "lookup_services": "--lookup-services",
    "decisions": "--decisions",
    "rights": "--rights",
    "replica_consents": "--replica-consents",
    "store_consents": "--store-consents",
    "grants": "--grants",
    "gateways": "--gateways",
    "revocations": "--revocations",
    "appenders": "--appenders",
    "appends": "--appends",
    "audit_records": "--audit-records",
    "checkpoints": "--checkpoints",
}


def _counts(minimum: int) -> Callable[[str], tuple[int, ...]]:
    def parse(text: str) -> tuple[int, ...]:
        try:
            values = tuple(int(part) for part in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected numbers, comma-separated"
            ) from None
        if any(value < minimum for value in values):
            raise argparse.ArgumentTypeError(f"{text!r}: every number must be {minimum} or more")
        return values

    return parse


def _positive(kind: Callable[[str], int | float]) -> Callable[[str], Any]:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a number") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a positive number")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--suite",
        action="append",
        choices=sorted(SUITES),
        help="run this suite (repeatable; default: every suite)",
    )
    parser.add_argument("--rounds", type=_positive(int), help="measured rounds")
    parser.add_argument("--seconds", type=_positive(float), help="length of a measured window")
    parser.add_argument("--output", type=Path, default=Path("docs/benchmarks.md"))
    pki_options = parser.add_argument_group("pki suite")
    pki_options.add_argument(
        "--enrollments", type=_positive(int), help="enrollments (and renewals) per round"
    )
    pki_options.add_argument(
        "--crl-sizes", dest="crl_sizes", type=_counts(0), help="revoked entries per CRL"
    )
    pki_options.add_argument(
        "--concurrency", dest="concurrencies", type=_counts(1), help="OCSP requests in flight"
    )
    policy_options = parser.add_argument_group("policy suite")
    policy_options.add_argument(
        "--decisions", type=_positive(int), help="decisions per measured row and round"
    )
    policy_options.add_argument(
        "--rights", type=_counts(1), help="numbers of access rights to measure at"
    )
    registry_options = parser.add_argument_group("registry suite")
    registry_options.add_argument(
        "--members", type=_positive(int), help="members of the federation"
    )
    registry_options.add_argument(
        "--services", type=_positive(int), help="services of the federation"
    )
    registry_options.add_argument(
        "--lookup-services",
        dest="lookup_services",
        type=_counts(1),
        help="federation sizes, in services, to time per-exchange look-ups at",
    )
    consent_options = parser.add_argument_group("consent suite")
    consent_options.add_argument(
        "--replica-consents",
        dest="replica_consents",
        type=_counts(1),
        help="numbers of consents in a replica to time checks at",
    )
    consent_options.add_argument(
        "--store-consents", dest="store_consents", type=_positive(int), help="consents in the store"
    )
    consent_options.add_argument("--grants", type=_positive(int), help="grants per measurement")
    consent_options.add_argument(
        "--gateways", type=_positive(int), help="replicas a revocation must reach"
    )
    consent_options.add_argument(
        "--revocations", type=_positive(int), help="revocations timed per round"
    )
    audit_options = parser.add_argument_group("audit suite")
    audit_options.add_argument(
        "--appenders", type=_counts(1), help="numbers of coroutines appending at once"
    )
    audit_options.add_argument(
        "--appends", type=_positive(int), help="records appended per measurement"
    )
    audit_options.add_argument(
        "--audit-records",
        dest="audit_records",
        type=_positive(int),
        help="records in the large log (proofs, checkpoints, verification)",
    )
    audit_options.add_argument(
        "--checkpoints", type=_positive(int), help="checkpoints signed per measurement"
    )
    return parser


def _flag(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _settings(name: str, options: argparse.Namespace) -> tuple[Any, str]:
    """The suite's settings from the options given, and the command that reproduces them."""
    defaults = SUITES[name].defaults
    changes = {}
    command = f"python -m bench.run --suite {name}"
    for field in dataclasses.fields(defaults):
        value = getattr(options, field.name)
        if value is not None and value != getattr(defaults, field.name):
            changes[field.name] = value
            command += f" {FLAGS[field.name]} {_flag(value)}"
    return dataclasses.replace(defaults, **changes), command


def main(argv: list[str] | None = None) -> int:
    """Run the suites asked for; each writes its section of the output document."""
    parser = _parser()
    options = parser.parse_args(argv)
    chosen = [name for name in SUITES if name in (options.suite or SUITES)]
    taken = {field.name for name in chosen for field in dataclasses.fields(SUITES[name].defaults)}
    for attribute, flag in FLAGS.items():
        if getattr(options, attribute) is not None and attribute not in taken:
            parser.error(f"{flag} applies to none of the suites chosen ({', '.join(chosen)})")
    for name in chosen:
        settings, command = _settings(name, options)
        print(f"== suite {name}: {command}", flush=True)
        body = SUITES[name].run(settings, command)
        write_section(options.output, name, body)
        print(f"wrote the {name} section of {options.output}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
