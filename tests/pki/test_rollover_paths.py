"""During a root rollover, tools nobody here wrote can build paths through the cross-certificate."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pki
from proto import SecurityServerId

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def test_a_new_generation_leaf_verifies_with_only_the_old_root(tmp_path: Path) -> None:
    storage = pki.FileKeyStorage(tmp_path, None)
    folder = pki.CaFolder.create(tmp_path, pki.CaSettings("DEMO"), storage, now=NOW, actor="test")
    folder.rollover_begin(now=NOW, actor="test")
    g2 = folder.generation(2)
    issuing = pki.CertificateAuthority(storage.load("G2-issuing"), g2.issuing)
    key = pki.generate_key()
    leaf = issuing.issue_server_certificate(
        SecurityServerId.parse("DEMO/GOV/X/ss1"),
        key.public_key(),
        now=NOW,
        lifetime=dt.timedelta(hours=1),
    )
    (tmp_path / "leaf.pem").write_bytes(pki.certificate_pem(leaf))
    (tmp_path / "chain.pem").write_bytes(pki.certificate_pem(g2.issuing, g2.cross))  # type: ignore[arg-type]
    result = subprocess.run(
        [
            "openssl",
            "verify",
            "-attime",
            str(int(NOW.timestamp()) + 60),
            "-CAfile",
            str(tmp_path / "G1/root.pem"),
            "-untrusted",
            str(tmp_path / "chain.pem"),
            str(tmp_path / "leaf.pem"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Without the cross-certificate, the old root alone does not vouch for the new leaf.
    (tmp_path / "issuing.pem").write_bytes(pki.certificate_pem(g2.issuing))
    refused = subprocess.run(
        [
            "openssl",
            "verify",
            "-attime",
            str(int(NOW.timestamp()) + 60),
            "-CAfile",
            str(tmp_path / "G1/root.pem"),
            "-untrusted",
            str(tmp_path / "issuing.pem"),
            str(tmp_path / "leaf.pem"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode != 0
