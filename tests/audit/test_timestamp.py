"""RFC 3161 timestamps on the audit log's checkpoints, against a real TSA: ``openssl ts -reply``
behind an HTTP server on 127.0.0.1, with its CA and TSA certificate made for each test. Stamps
are stored and verify (also with the OpenSSL CLI); checkpoints go on while the TSA is down and
are stamped later; forged, moved or untrusted stamps and broken TSAs are each found."""

from __future__ import annotations

import datetime as dt
import http.server
import sqlite3
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from audit import (
    AuditLog,
    LogTampered,
    Timestamper,
    TimestampInvalid,
    TimestampUnavailable,
    verify_log,
    verify_timestamp,
)
from tests.audit.test_log import NOW, OWNER, ROOTS, body, filled, signer, tamper

pytestmark = pytest.mark.integration

HOUR = dt.timedelta(hours=1)
# How long a held TSA waits to be released, and a test for a thread: bounds, never reached.
WAIT = 10.0


def tsa_certificates(folder: Path, name: str) -> x509.Certificate:
    """A CA and a TSA certificate under it (critical extendedKeyUsage timeStamping), written to
    ``folder`` as ca.pem, tsa.pem and tsa.key; the CA certificate."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    tsa_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} root")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - HOUR)
        .not_valid_after(now + HOUR * 24)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    tsa = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(tsa_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - HOUR)
        .not_valid_after(now + HOUR * 24)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "tsa.pem").write_bytes(tsa.public_bytes(serialization.Encoding.PEM))
    (folder / "tsa.key").write_bytes(
        tsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca


def tsa_config(folder: Path, digests: str) -> Path:
    """An ``openssl ts`` configuration signing with ``folder``'s TSA key, for ``digests``."""
    config = folder / f"tsa-{digests.replace(', ', '-')}.cnf"
    config.write_text(
        f"""[tsa]
default_tsa = tsa_config

[tsa_config]
serial = {folder}/serial
crypto_device = builtin
signer_cert = {folder}/tsa.pem
signer_key = {folder}/tsa.key
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.1
digests = {digests}
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""
    )
    return config


class LocalTsa:
    """``openssl ts -reply`` behind an HTTP server on 127.0.0.1, answering as ``mode`` says:
    ``ok``, ``refuse`` (a digest it does not support), ``http500``, ``garbage``, ``replay`` (the
    last reply again, whatever was asked), ``hold`` (ok, once :attr:`release` is set;
    :attr:`arrived` tells a request came) or ``silent`` (no answer until the test ends)."""

    def __init__(self, folder: Path, name: str = "Test TSA") -> None:
        folder.mkdir()
        self.folder = folder
        self.root = tsa_certificates(folder, name)
        self.config = tsa_config(folder, "sha256, sha384, sha512")
        self.refusing = tsa_config(folder, "sha384")
        self.mode = "ok"
        self.requests = 0
        self.last_reply = b""
        self.arrived, self.release, self.ending = (threading.Event() for _ in range(3))
        self._openssl = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self.port = 0
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/tsr"

    def start(self) -> None:
        """Listen (again) on the same port, or a free one the first time."""
        tsa = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                query = self.rfile.read(int(self.headers["Content-Length"]))
                tsa.requests += 1
                if tsa.mode == "silent":
                    tsa.ending.wait(WAIT)
                    return
                if tsa.mode == "hold":
                    tsa.arrived.set()
                    assert tsa.release.wait(WAIT)
                if tsa.mode == "http500":
                    self.send_error(500, "the TSA is broken")
                    return
                reply = b"this is not a timestamp reply"
                if tsa.mode == "replay":
                    reply = tsa.last_reply
                elif tsa.mode != "garbage":
                    reply = tsa.reply(query, tsa.refusing if tsa.mode == "refuse" else tsa.config)
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(
            target=server.serve_forever, args=(0.05,), name="local TSA", daemon=True
        ).start()

    def stop(self) -> None:
        """Stop listening: the TSA is down (connections refused)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def close(self) -> None:
        self.ending.set()
        self.release.set()
        self.stop()

    def reply(self, query: bytes, config: Path) -> bytes:
        with self._openssl:  # one serial-number file
            query_file, reply_file = self.folder / "query.tsq", self.folder / "reply.tsr"
            query_file.write_bytes(query)
            command = ["openssl", "ts", "-reply", "-config", str(config)]
            subprocess.run(
                [*command, "-queryfile", str(query_file), "-out", str(reply_file)],
                capture_output=True,
                check=True,
                timeout=30,
            )
            self.last_reply = reply_file.read_bytes()
            return self.last_reply

    def timestamper(self, **options: Any) -> Timestamper:
        return Timestamper(self.url, [self.root], **options)


@pytest.fixture
def tsa(tmp_path: Path) -> Iterator[LocalTsa]:
    started = LocalTsa(tmp_path / "tsa")
    yield started
    started.close()


OpenLog = Callable[[Timestamper | None], AuditLog]


@pytest.fixture
def open_log(tmp_path: Path) -> Iterator[OpenLog]:
    """Opens the test's log with a timestamper (or none), and closes it at the end."""
    opened: list[AuditLog] = []

    def make(timestamper: Timestamper | None) -> AuditLog:
        key, chain = signer()
        log = AuditLog(
            tmp_path / "audit.db", "DEMO/GOV/POPREG/ss1", key, chain, timestamper=timestamper
        )
        opened.append(log)
        return log

    yield make
    for log in opened:
        log.close()


@pytest.fixture
def log(open_log: OpenLog, tsa: LocalTsa) -> AuditLog:
    return open_log(tsa.timestamper())


def stored(log: AuditLog) -> list[tuple[int, bytes, str]]:
    db = sqlite3.connect(log.path)
    try:
        return [
            (size, bytes(reply), at)
            for size, reply, at in db.execute(
                "SELECT size, reply, at FROM timestamps ORDER BY size"
            )
        ]
    finally:
        db.close()


def tampered(log: AuditLog, tsa: LocalTsa) -> str:
    with pytest.raises(LogTampered) as error:
        verify_log(log.path, ROOTS, OWNER, tsa_roots=[tsa.root])
    assert error.value.code == "audit_log_tampered"
    return str(error.value)


# -- stamping and verifying ----------------------------------------------------------------------


@pytest.mark.parametrize("digest", ["sha256", "sha512"])
def test_timestamps_are_stored_and_verify(
    tmp_path: Path, open_log: OpenLog, tsa: LocalTsa, digest: str
) -> None:
    log = open_log(tsa.timestamper(digest=digest))
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    checkpoints = filled(log, 9, checkpoint_every=3)
    assert log.stamp_pending() == 3
    after = dt.datetime.now(dt.UTC)
    assert log.stamp_pending() == 0  # nothing left to stamp
    rows = stored(log)
    assert [size for size, _, _ in rows] == [3, 6, 9]
    for checkpoint, (_, reply, at) in zip(checkpoints, rows, strict=True):
        stamped = verify_timestamp(reply, checkpoint.token.encode(), [tsa.root])
        assert before <= stamped <= after
        assert dt.datetime.fromisoformat(at) == stamped
    verified = verify_log(log.path, ROOTS, OWNER, tsa_roots=[tsa.root])
    assert (verified.checkpoints, verified.covered, verified.timestamped) == (3, 9, 3)
    assert verify_log(log.path, ROOTS, OWNER).timestamped == 0  # not checked without roots

    # The stored reply is an ordinary RFC 3161 reply: OpenSSL's CLI verifies it too.
    _, reply, _ = rows[-1]
    (tmp_path / "reply.tsr").write_bytes(reply)
    (tmp_path / "checkpoint.jws").write_bytes(checkpoints[-1].token.encode())
    command = ["openssl", "ts", "-verify", "-in", str(tmp_path / "reply.tsr")]
    command += ["-CAfile", str(tsa.folder / "ca.pem")]
    checked = subprocess.run(
        [*command, "-data", str(tmp_path / "checkpoint.jws")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    assert "Verification: OK" in checked.stdout
    (tmp_path / "other.jws").write_bytes(checkpoints[0].token.encode())
    other = subprocess.run(
        [*command, "-data", str(tmp_path / "other.jws")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert other.returncode != 0


def test_a_timestamp_is_over_exactly_the_message(tsa: LocalTsa) -> None:
    stamp = tsa.timestamper().stamp(b"a checkpoint's token")
    assert stamp.at.tzinfo is not None
    assert verify_timestamp(stamp.reply, b"a checkpoint's token", [tsa.root]) == stamp.at
    with pytest.raises(TimestampInvalid) as error:
        verify_timestamp(stamp.reply, b"another token", [tsa.root])
    assert error.value.code == "timestamp_invalid"
    with pytest.raises(TimestampInvalid):
        verify_timestamp(b"not a reply", b"a checkpoint's token", [tsa.root])


def test_a_log_without_a_timestamper_stamps_nothing_and_verifies_as_before(
    open_log: OpenLog, tsa: LocalTsa
) -> None:
    log = open_log(None)
    filled(log, 4, checkpoint_every=2)
    assert log.stamp_pending() == 0
    verified = verify_log(log.path, ROOTS, OWNER, tsa_roots=[tsa.root])
    assert (verified.checkpoints, verified.timestamped) == (2, 0)


def test_a_log_from_before_timestamps_still_verifies_with_tsa_roots(
    log: AuditLog, tsa: LocalTsa
) -> None:
    filled(log, 4, checkpoint_every=4)
    tamper(log, ("DROP TABLE timestamps", ()))  # as a log written by an older version
    verified = verify_log(log.path, ROOTS, OWNER, tsa_roots=[tsa.root])
    assert (verified.covered, verified.timestamped) == (4, 0)


# -- the TSA down, and catching up -------------------------------------------------------------


def test_checkpoints_go_on_while_the_tsa_is_down_and_are_all_stamped_later(
    log: AuditLog, tsa: LocalTsa
) -> None:
    filled(log, 2, checkpoint_every=2)
    assert log.stamp_pending() == 1
    tsa.stop()
    for n in range(2, 8):
        log.append_now(body(n))
        log.checkpoint(NOW + dt.timedelta(seconds=n))  # signing does not need the TSA
        with pytest.raises(TimestampUnavailable) as error:
            log.stamp_pending()
        assert error.value.code == "timestamp_unavailable"
    assert [size for size, _, _ in stored(log)] == [2]
    assert verify_log(log.path, ROOTS, OWNER, tsa_roots=[tsa.root]).timestamped == 1

    tsa.start()  # back, on the same address
    assert log.stamp_pending(limit=2) == 2  # oldest first, as many as asked
    assert [size for size, _, _ in stored(log)] == [2, 3, 4]
    assert log.stamp_pending() == 4
    assert [size for size, _, _ in stored(log)] == [2, 3, 4, 5, 6, 7, 8]
    verified = verify_log(log.path, ROOTS, OWNER, tsa_roots=[tsa.root])
    assert (verified.checkpoints, verified.covered, verified.timestamped) == (7, 8, 7)


def test_the_log_is_not_held_while_the_tsa_answers(log: AuditLog, tsa: LocalTsa) -> None:
    filled(log, 2, checkpoint_every=2)
    tsa.mode = "hold"
    outcome: list[int | BaseException] = []

    def stamp() -> None:
        try:
            outcome.append(log.stamp_pending())
        except BaseException as error:
            outcome.append(error)

    stamping = threading.Thread(target=stamp)
    stamping.start()
    try:
        assert tsa.arrived.wait(WAIT)
        # The TSA has the request and has not answered: the log takes records and checkpoints.
        assert log.append_now(body(2)) == 2
        log.checkpoint(NOW + dt.timedelta(seconds=3))
    finally:
        tsa.release.set()
        stamping.join(WAIT)
    assert outcome == [1]
    assert log.stamp_pending() == 1  # the checkpoint signed meanwhile
    assert verify_log(log.path, ROOTS, OWNER, tsa_roots=[tsa.root]).timestamped == 2


def test_a_checkpoint_signed_again_is_stamped_again(log: AuditLog, tsa: LocalTsa) -> None:
    filled(log, 2, checkpoint_every=2)
    assert log.stamp_pending() == 1
    log.checkpoint(NOW + dt.timedelta(seconds=5))  # the same tree, signed again
    assert stored(log) == []  # the old stamp was over the replaced token
    # ... and one signed again while its stamp is on the way is not stored with the old one.
    tsa.mode = "hold"
    outcome: list[int] = []
    stamping = threading.Thread(target=lambda: outcome.append(log.stamp_pending()))
    stamping.start()
    try:
        assert tsa.arrived.wait(WAIT)
        log.checkpoint(NOW + dt.timedelta(seconds=6))
    finally:
        tsa.release.set()
        stamping.join(WAIT)
    assert outcome == [0]
    assert stored(log) == []
    tsa.mode = "ok"
    assert log.stamp_pending() == 1
    assert verify_log(log.path, ROOTS, OWNER, tsa_roots=[tsa.root]).timestamped == 1


# -- a TSA that fails or is not the trusted one: nothing stored --------------------------------


@pytest.mark.parametrize(
    ("mode", "said"),
    [
        ("http500", "answered HTTP 500"),
        ("garbage", "sent no timestamp reply"),
        ("refuse", "refused: status 2"),
    ],
)
def test_a_tsa_that_answers_no_timestamp_is_unavailable(
    log: AuditLog, tsa: LocalTsa, mode: str, said: str
) -> None:
    filled(log, 2, checkpoint_every=2)
    tsa.mode = mode
    with pytest.raises(TimestampUnavailable, match=said) as error:
        log.stamp_pending()
    assert error.value.code == "timestamp_unavailable"
    assert tsa.requests == 1
    assert stored(log) == []


def test_a_tsa_that_does_not_answer_in_time_is_unavailable(
    open_log: OpenLog, tsa: LocalTsa
) -> None:
    log = open_log(tsa.timestamper(timeout=0.3))
    filled(log, 2, checkpoint_every=2)
    tsa.mode = "silent"
    with pytest.raises(TimestampUnavailable, match="cannot be reached"):
        log.stamp_pending()
    assert stored(log) == []


def test_a_replayed_reply_is_refused(tsa: LocalTsa) -> None:
    # A genuine reply over the very same message, but to an earlier request (another nonce).
    timestamper = tsa.timestamper()
    timestamper.stamp(b"a checkpoint's token")
    tsa.mode = "replay"
    with pytest.raises(TimestampInvalid, match="Nonce mismatch"):
        timestamper.stamp(b"a checkpoint's token")


def test_a_reply_from_an_untrusted_tsa_is_refused(
    tmp_path: Path, open_log: OpenLog, tsa: LocalTsa
) -> None:
    stranger = LocalTsa(tmp_path / "stranger", "Stranger TSA")
    try:
        # A TSA that signs well, under a CA the log does not trust.
        log = open_log(Timestamper(stranger.url, [tsa.root]))
        filled(log, 2, checkpoint_every=2)
        with pytest.raises(TimestampInvalid, match="does not verify") as error:
            log.stamp_pending()
        assert error.value.code == "timestamp_invalid"
        assert stranger.requests == 1
        assert stored(log) == []
    finally:
        stranger.close()


# -- tampering with stored timestamps ------------------------------------------------------------


def test_a_tampered_timestamp_reply_is_found(log: AuditLog, tsa: LocalTsa) -> None:
    filled(log, 4, checkpoint_every=2)
    log.stamp_pending()
    ((_, reply, _), _) = stored(log)
    # The signed time (genTime, "YYYYMMDDhhmmssZ") moved back a year: the signature breaks.
    year = str(dt.datetime.now(dt.UTC).year).encode()
    forged = reply.replace(year, str(int(year) - 1).encode(), 1)
    assert forged != reply
    tamper(log, ("UPDATE timestamps SET reply = ? WHERE size = 2", (forged,)))
    assert "the timestamp of checkpoint 2" in tampered(log, tsa)


def test_a_timestamp_moved_to_another_checkpoint_is_found(log: AuditLog, tsa: LocalTsa) -> None:
    filled(log, 4, checkpoint_every=2)
    log.stamp_pending()
    tamper(
        log,
        ("DELETE FROM timestamps WHERE size = 4", ()),
        ("UPDATE timestamps SET size = 4 WHERE size = 2", ()),
    )
    assert "the timestamp of checkpoint 4" in tampered(log, tsa)


def test_a_timestamp_of_a_checkpoint_the_log_does_not_hold_is_found(
    log: AuditLog, tsa: LocalTsa
) -> None:
    filled(log, 4, checkpoint_every=2)
    log.stamp_pending()
    tamper(log, ("UPDATE timestamps SET size = 3 WHERE size = 2", ()))
    assert "which the log does not hold" in tampered(log, tsa)


@pytest.mark.parametrize(
    ("column", "value", "said"),
    [
        ("at", (NOW - HOUR).isoformat(), "gives the time"),
        ("at", "yesterday", "gives the time"),
        ("reply", "not a blob", "is malformed"),
    ],
    ids=["time moved", "time not a time", "reply not a blob"],
)
def test_a_timestamp_row_changed_beside_its_reply_is_found(
    log: AuditLog, tsa: LocalTsa, column: str, value: object, said: str
) -> None:
    filled(log, 2, checkpoint_every=2)
    log.stamp_pending()
    tamper(log, (f"UPDATE timestamps SET {column} = ? WHERE size = 2", (value,)))
    assert said in tampered(log, tsa)


def test_a_timestamp_under_another_tsas_roots_is_found(
    log: AuditLog, tsa: LocalTsa, tmp_path: Path
) -> None:
    filled(log, 2, checkpoint_every=2)
    log.stamp_pending()
    other = tsa_certificates(tmp_path, "Another TSA")
    with pytest.raises(LogTampered, match="does not verify"):
        verify_log(log.path, ROOTS, OWNER, tsa_roots=[other])


def test_a_checkpoint_dated_after_its_timestamp_is_found(log: AuditLog, tsa: LocalTsa) -> None:
    log.append_now(body(0))
    log.checkpoint(dt.datetime.now(dt.UTC) + HOUR)  # the signer's clock an hour ahead
    assert log.stamp_pending() == 1
    assert "before that" in tampered(log, tsa)
    # Within the skew allowed, it verifies.
    verified = verify_log(log.path, ROOTS, OWNER, tsa_roots=[tsa.root], tsa_skew=HOUR * 2)
    assert verified.timestamped == 1


# -- the timestamper's own configuration ---------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "roots", "options", "field"),
    [
        ("file:///etc/passwd", True, {}, "timestamper.url"),
        ("http://", True, {}, "timestamper.url"),
        ("http://127.0.0.1:1/tsr", False, {}, "timestamper.roots"),
        ("http://127.0.0.1:1/tsr", True, {"timeout": 0}, "timestamper.timeout"),
        ("http://127.0.0.1:1/tsr", True, {"digest": "md5"}, "timestamper.digest"),
    ],
)
def test_an_unusable_timestamper_is_refused_naming_the_field(
    tmp_path: Path, url: str, roots: bool, options: dict[str, Any], field: str
) -> None:
    root = tsa_certificates(tmp_path, "Test TSA")
    with pytest.raises(ValueError, match=field):
        Timestamper(url, [root] if roots else [], **options)
