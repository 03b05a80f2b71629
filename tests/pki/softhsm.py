"""A private SoftHSM2 token store for one test: token initialisation belongs to tooling, not pki."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

SOFTHSM_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
SOFTHSM_UTIL = "/usr/bin/softhsm2-util"


@dataclass(frozen=True, slots=True)
class SoftHsmStore:
    """A token directory with one initialised token; point ``SOFTHSM2_CONF`` at ``conf``."""

    conf: Path
    label: str
    pin: str
    so_pin: str

    @property
    def environment(self) -> dict[str, str]:
        """What to set before the module is initialised, so that it uses this store."""
        return {"SOFTHSM2_CONF": str(self.conf)}


def softhsm_token(directory: Path, label: str, pin: str, so_pin: str) -> SoftHsmStore:
    """Create ``directory`` with a SoftHSM2 configuration and a token ``label`` in it (~10 ms).

    SoftHSM2 reads ``SOFTHSM2_CONF`` when the module is initialised (``C_Initialize``): set it
    before the first ``Pkcs11Token`` opens, and close every token before switching stores.
    """
    tokens = directory / "tokens"
    tokens.mkdir(parents=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n",
        encoding="utf-8",
    )
    store = SoftHsmStore(conf, label, pin, so_pin)
    subprocess.run(
        [
            SOFTHSM_UTIL,
            "--init-token",
            "--free",
            "--label",
            label,
            "--pin",
            pin,
            "--so-pin",
            so_pin,
        ],
        env={**os.environ, **store.environment},
        check=True,
        capture_output=True,
    )
    return store
