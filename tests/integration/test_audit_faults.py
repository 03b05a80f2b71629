"""An audit store that cannot be written fails exchanges closed: the caller gets
``audit_unavailable`` (UNAVAILABLE) from the security server whose log failed, the backend is not
called when the provider's ``request`` record cannot be written, no caller sees OK for an exchange
whose records are not on disk, and once the store is writable again the log verifies, holds no
partial record and goes on.

The faults are real filesystems, not stand-ins: a small tmpfs that is filled up (writes fail with
ENOSPC, as on a full disk), and an ext4 filesystem (a loop device, ``errors=remount-ro``) that the
kernel turns read-only after an error, as it does with a failing disk. Both need root with
CAP_SYS_ADMIN (a VM, or a privileged container); without it the tests fail and say so, never skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import sqlite3
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from audit import OUTCOME, REQUEST, ExchangeRecord, verify_log
from gateway import AuditSettings, SecurityServer
from proto import MemberId
from tests.integration.support import assert_refusal, refused
from tests.integration.test_signed_exchanges import sealed_call
from tests.integration.testbed import (
    A,
    B,
    ThrowawayPki,
    TwoGateways,
    metadata,
    probe,
    trailers,
)

pytestmark = pytest.mark.integration

S = grpc.StatusCode
MakeTestbed = Callable[..., Awaitable[TwoGateways]]
# Room for a few dozen exchanges' records, small enough to fill in a moment.
DISK_BYTES = 4 * 1024 * 1024
# Records nothing waits on (refusals, outcomes of refused exchanges) are written within 50 ms
# (docs/audit.md); a fault is kept this long after the last refused call, so that they meet it.
BACKGROUND_WRITES = 0.5
PRIVILEGES = (
    "these tests make an audit store fail for real and need root with CAP_SYS_ADMIN (mount, and"
    " for the read-only store a loop device and mkfs.ext4): run them in a VM or a privileged"
    " container"
)


# -- the stores ------------------------------------------------------------------------------------


def privileged(*command: str) -> None:
    """Run a mount command; fail the test (never skip) when this machine does not allow it."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError as error:
        pytest.fail(f"{PRIVILEGES}; {command[0]} is missing: {error}", pytrace=False)
    if result.returncode != 0:
        pytest.fail(
            f"{PRIVILEGES}; `{' '.join(command)}` exited {result.returncode}:"
            f" {result.stderr.strip()}",
            pytrace=False,
        )


def unmount(where: Path) -> None:
    """Unmount ``where`` (lazily if something still holds it, so nothing outlives the test)."""
    done = subprocess.run(["umount", str(where)], capture_output=True, timeout=30, check=False)
    if done.returncode != 0:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30, check=False)


class FullDisk:
    """A tmpfs of :data:`DISK_BYTES` for one audit log, that fills up and is freed again."""

    def __init__(self, mountpoint: Path) -> None:
        self.mountpoint = mountpoint
        self.filler = mountpoint / "filler"

    def fill(self) -> None:
        """Take every free byte (as another program filling the disk would)."""
        block = b"\0" * 65536
        descriptor = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for _ in range(DISK_BYTES // len(block) + 8):
                try:
                    os.write(descriptor, block)  # short near the end, then ENOSPC
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    break
            else:
                pytest.fail(f"{self.mountpoint} never filled up")
        finally:
            os.close(descriptor)
        assert os.statvfs(self.mountpoint).f_bavail == 0

    def free(self) -> None:
        self.filler.unlink()


@contextlib.contextmanager
def full_disk(mountpoint: Path) -> Iterator[FullDisk]:
    mountpoint.mkdir()
    privileged(
        "mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES},mode=0700", "pintu-audit", str(mountpoint)
    )
    try:
        yield FullDisk(mountpoint)
    finally:
        unmount(mountpoint)


class FailingDisk:
    """An ext4 filesystem on a loop device, mounted ``errors=remount-ro``: on an error the kernel
    makes it read-only under the programs writing to it, as it does when a disk fails."""

    def __init__(self, mountpoint: Path, image: Path) -> None:
        self.mountpoint = mountpoint
        self.image = image

    def mount(self) -> None:
        privileged("mount", "-o", "loop,errors=remount-ro", str(self.image), str(self.mountpoint))

    def fail(self) -> None:
        """An ext4 error (the kernel's own test hook): the filesystem turns read-only."""
        device = subprocess.run(
            ["findmnt", "-n", "-o", "SOURCE", str(self.mountpoint)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
        trigger = Path(f"/sys/fs/ext4/{Path(device).name}/trigger_fs_error")
        try:
            trigger.write_text("pintu test\n")
        except OSError as error:
            pytest.fail(f"{PRIVILEGES}; writing {trigger} failed: {error}", pytrace=False)
        with pytest.raises(OSError, match="Read-only file system") as refusal:
            (self.mountpoint / "probe").write_bytes(b"x")
        assert refusal.value.errno == errno.EROFS

    def repair(self) -> None:
        """What an operator does: unmount, check the filesystem, mount it again."""
        privileged("umount", str(self.mountpoint))
        checked = subprocess.run(
            ["e2fsck", "-f", "-y", str(self.image)], capture_output=True, timeout=60, check=False
        )
        assert checked.returncode in (0, 1), checked  # 1: errors corrected
        self.mount()


@contextlib.contextmanager
def failing_disk(mountpoint: Path) -> Iterator[FailingDisk]:
    mountpoint.mkdir()
    image = mountpoint.with_suffix(".img")
    with image.open("wb") as file:
        file.truncate(16 * 1024 * 1024)
    privileged("mkfs.ext4", "-q", "-F", str(image))
    disk = FailingDisk(mountpoint, image)
    disk.mount()
    try:
        yield disk
    finally:
        unmount(mountpoint)


def logs_in(monkeypatch: pytest.MonkeyPatch, folders: dict[MemberId, Path]) -> None:
    """Have the testbed keep the audit log of each member's security server in ``folders``."""
    placed = ThrowawayPki.audit_settings

    def audit_settings(
        self: ThrowawayPki, member: MemberId, path: Path, *more: Any, **named: Any
    ) -> AuditSettings:
        return placed(self, member, folders.get(member, path.parent) / path.name, *more, **named)

    monkeypatch.setattr(ThrowawayPki, "audit_settings", audit_settings)


# The tests ask for these before ``make_testbed``, so that they are torn down after it: the
# security servers close their logs before the filesystems are unmounted.
@pytest.fixture
def full_disks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[MemberId, FullDisk]]:
    """A small tmpfs for each security server's log."""
    with full_disk(tmp_path / "consumer") as consumer, full_disk(tmp_path / "provider") as provider:
        logs_in(monkeypatch, {A: consumer.mountpoint, B: provider.mountpoint})
        yield {A: consumer, B: provider}


@pytest.fixture
def failing_provider_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FailingDisk]:
    """An ext4 filesystem that fails for the provider's log."""
    with failing_disk(tmp_path / "provider") as disk:
        logs_in(monkeypatch, {B: disk.mountpoint})
        yield disk


# -- what the logs hold ----------------------------------------------------------------------------


def stored_records(path: Path) -> list[ExchangeRecord]:
    """Every record of a log file, read as an auditor does (read-only, one snapshot)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT body FROM records ORDER BY seq").fetchall()
    finally:
        db.close()
    return [ExchangeRecord.decode(bytes(body)) for (body,) in rows]


def log_path(server: SecurityServer) -> Path:
    assert server.audit is not None
    return server.audit.log.path


def assert_whole(testbed: TwoGateways, server: SecurityServer, member: MemberId) -> None:
    """The log on disk is a sound SQLite file that verifies, and holds exactly the records the
    security server counts: nothing of a failed write was left behind."""
    assert server.audit is not None
    path = server.audit.log.path
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        db.close()
    verified = verify_log(path, [testbed.pki.root], member)
    assert verified.records == server.audit.log.size == len(stored_records(path))


def assert_recorded(server: SecurityServer, message_ids: list[str]) -> None:
    """Each exchange has its ``request`` and its ``OK`` ``outcome`` in the log on disk."""
    written = stored_records(log_path(server))
    for message_id in message_ids:
        kinds = {(r.kind, r.status) for r in written if r.message_id == message_id}
        assert {(REQUEST, ""), (OUTCOME, "OK")} <= kinds, (message_id, kinds)


def kinds_of(server: SecurityServer, message_id: str) -> list[tuple[str, str]]:
    return [
        (r.kind, r.status or r.code)
        for r in stored_records(log_path(server))
        if r.message_id == message_id
    ]


async def acknowledged(testbed: TwoGateways) -> str:
    """A successful exchange's message id."""
    answer, message_id = await sealed_call(testbed, "Echo", "unary", b"x")
    assert answer == b"x"
    return message_id


async def refused_echo(testbed: TwoGateways, origin: str) -> str:
    """An exchange refused with ``audit_unavailable`` by ``origin``, the backend not called; its
    message id."""
    calls = list(testbed.probe.calls)
    call = probe(testbed.agency_channel(), "Echo")(b"x", metadata=metadata(), timeout=10)
    error = await refused(call)
    assert_refusal(error, S.UNAVAILABLE, "audit_unavailable", origin)
    assert testbed.probe.calls == calls  # the backend never saw it
    return str(trailers(error)["pintu-message-id"])


async def refused_answer(testbed: TwoGateways, fault: Callable[[], None], origin: str) -> str:
    """A client-streaming exchange that both security servers recorded and the backend received;
    ``fault`` strikes before the caller ends its request, so that only the answer's records are
    left to write. The caller must not see it succeed; its message id."""
    testbed.probe.called.clear()
    call = probe(testbed.agency_channel(), "ClientStream", "client")(
        metadata=metadata(), timeout=10
    )
    await call.write(b"first")
    await testbed.probe.wait_for_call()
    fault()
    await call.done_writing()
    error = await refused(call)
    assert_refusal(error, S.UNAVAILABLE, "audit_unavailable", origin)
    return str(trailers(error)["pintu-message-id"])


async def covered(testbed: TwoGateways, server: SecurityServer, member: MemberId) -> None:
    """Checkpoints go on: one soon covers every record (they come every 0.2 s)."""
    for _ in range(100):
        if verify_log(log_path(server), [testbed.pki.root], member).uncovered == 0:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"no checkpoint of {log_path(server)} covers its records")


# -- the tests -------------------------------------------------------------------------------------


async def test_a_full_disk_fails_exchanges_closed_and_writes_nothing_half(
    full_disks: dict[MemberId, FullDisk],
    make_testbed: MakeTestbed,
    caplog: pytest.LogCaptureFixture,
) -> None:
    testbed = await make_testbed(audit=True)
    consumer, provider = testbed.consumer, testbed.provider
    succeeded = [await acknowledged(testbed) for _ in range(3)]

    # The provider's disk fills up while an exchange is under way: its answer is withheld.
    withheld = await refused_answer(testbed, full_disks[B].fill, "provider_gateway")
    # New exchanges are refused before the backend sees them.
    refused_here = [await refused_echo(testbed, "provider_gateway") for _ in range(3)]
    await asyncio.sleep(BACKGROUND_WRITES)
    full_disks[B].free()
    succeeded.append(await acknowledged(testbed))  # the provider recovers by itself

    assert ("request", "") in kinds_of(provider, withheld)
    assert ("outcome", "OK") not in kinds_of(provider, withheld)
    assert ("outcome", "audit_unavailable") in kinds_of(consumer, withheld)
    for message_id in refused_here:
        assert kinds_of(provider, message_id) == []  # nothing written, then or later
        assert ("outcome", "audit_unavailable") in kinds_of(consumer, message_id)

    # The consumer's disk fills up: the provider answered, the consumer withholds the answer.
    withheld = await refused_answer(testbed, full_disks[A].fill, "consumer_gateway")
    refused_here = [await refused_echo(testbed, "consumer_gateway") for _ in range(3)]
    await asyncio.sleep(BACKGROUND_WRITES)
    full_disks[A].free()
    succeeded.append(await acknowledged(testbed))  # the consumer recovers by itself

    assert ("outcome", "OK") in kinds_of(provider, withheld)
    assert ("request", "") in kinds_of(consumer, withheld)
    assert ("outcome", "OK") not in kinds_of(consumer, withheld)
    for message_id in refused_here:
        assert kinds_of(consumer, message_id) == []
        assert kinds_of(provider, message_id) == []  # never forwarded

    for server, member in ((consumer, A), (provider, B)):
        assert_recorded(server, succeeded)
        await covered(testbed, server, member)
        assert_whole(testbed, server, member)
    assert "database or disk is full" in caplog.text  # SQLite's word for ENOSPC


async def test_a_read_only_audit_store_fails_exchanges_closed(
    failing_provider_disk: FailingDisk, make_testbed: MakeTestbed
) -> None:
    testbed = await make_testbed(audit=True)
    succeeded = [await acknowledged(testbed) for _ in range(3)]

    withheld = await refused_answer(testbed, failing_provider_disk.fail, "provider_gateway")
    refused_here = [await refused_echo(testbed, "provider_gateway") for _ in range(3)]
    await asyncio.sleep(BACKGROUND_WRITES)
    # Still refused: a filesystem the kernel made read-only stays so until it is repaired.
    refused_here.append(await refused_echo(testbed, "provider_gateway"))

    # The operator stops the security server, repairs the filesystem and starts it again: it
    # continues its log.
    address = testbed.provider.settings.peer_address
    await testbed.provider.stop(0)
    failing_provider_disk.repair()
    await testbed.move_provider(address)
    succeeded.append(await serving_again(testbed))

    provider = testbed.provider
    assert ("request", "") in kinds_of(provider, withheld)
    assert ("outcome", "OK") not in kinds_of(provider, withheld)
    for message_id in refused_here:
        assert kinds_of(provider, message_id) == []
    for server, member in ((testbed.consumer, A), (provider, B)):
        assert_recorded(server, succeeded)
        await covered(testbed, server, member)
        assert_whole(testbed, server, member)


async def serving_again(testbed: TwoGateways) -> str:
    """The first exchange that succeeds (the consumer reconnects to the restarted provider)."""
    for _ in range(100):
        with contextlib.suppress(grpc.aio.AioRpcError):
            return await acknowledged(testbed)
        await asyncio.sleep(0.1)
    pytest.fail("the security servers did not serve again")
