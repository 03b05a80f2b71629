"""A throwaway PostgreSQL cluster on 127.0.0.1 for tests that need the real database.

``PostgresCluster.start()`` runs ``initdb`` and ``pg_ctl`` from the server package (as the
``postgres`` user when the tests run as root, since ``initdb`` refuses root), listens on a free
loopback port with trust authentication and creates the database ``registry``; ``stop()`` shuts
it down immediately and removes its files. Each test takes a fresh schema in that database from
:meth:`PostgresCluster.create_schema`.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from pintu import free_port

OS_USER = "postgres"
SUPERUSER = "postgres"
DATABASE = "registry"
_START_ATTEMPTS = 3


class PostgresMissing(RuntimeError):
    """The PostgreSQL server binaries are not installed."""


def server_binaries() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``, newest version first.

    Raises:
        PostgresMissing: neither /usr/lib/postgresql/*/bin nor PATH has them.
    """
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda path: int(Path(path).parent.name) if Path(path).parent.name.isdigit() else 0,
        reverse=True,
    )
    for directory in candidates:
        if (Path(directory) / "initdb").is_file() and (Path(directory) / "pg_ctl").is_file():
            return Path(directory)
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).parent == Path(pg_ctl).parent:
        return Path(initdb).parent
    raise PostgresMissing(
        "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin or "
        "on PATH: the environment's setup step installs the `postgresql` Debian package "
        "(apt-get install postgresql); the registry's PostgreSQL tests cannot run without it"
    )


def _as_server_user(command: list[str]) -> list[str]:
    """``initdb`` and ``postgres`` refuse to run as root: run them as the ``postgres`` user."""
    if os.geteuid() == 0:
        return ["runuser", "-u", OS_USER, "--", *command]
    return command


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(
        _as_server_user(command),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "LC_ALL": "C"},
    )
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed ({result.returncode}):\n{result.stdout}{result.stderr}")


@dataclass
class PostgresCluster:
    """A running cluster; ``stop()`` when done."""

    binaries: Path
    root: Path
    port: int
    host: str = "127.0.0.1"
    _names: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    @staticmethod
    def start() -> PostgresCluster:
        """Create and start a cluster in a new temporary directory.

        Raises:
            PostgresMissing: the server binaries are not installed.
            RuntimeError: initdb or the server failed (the message carries their output).
        """
        binaries = server_binaries()
        root = Path(tempfile.mkdtemp(prefix="pintu-postgres-"))
        # mkdtemp makes the directory 0700 for root; the server user must own and enter it.
        root.chmod(0o755)
        if os.geteuid() == 0:
            shutil.chown(root, OS_USER, OS_USER)
        try:
            _run(
                [
                    str(binaries / "initdb"),
                    "-D",
                    str(root / "data"),
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "--no-locale",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ],
                "initdb",
            )
            last: Exception | None = None
            for _ in range(_START_ATTEMPTS):
                cluster = PostgresCluster(binaries, root, free_port())
                try:
                    cluster._start_server()
                except RuntimeError as error:  # most likely the port was taken meanwhile
                    last = error
                    continue
                try:
                    cluster.create_database(DATABASE)
                except BaseException:
                    cluster.stop()
                    raise
                return cluster
            raise RuntimeError(f"the PostgreSQL server did not start: {last}")
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise

    def _start_server(self) -> None:
        options = " ".join(
            [
                f"-p {self.port}",
                f"-c listen_addresses={self.host}",
                f"-c unix_socket_directories={self.root}",
                # A throwaway cluster: durability only costs time.
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=100",
            ]
        )
        _run(
            [
                str(self.binaries / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-w",
                "-t",
                "30",
                "-o",
                options,
                "start",
            ],
            "pg_ctl start",
        )

    def stop(self) -> None:
        """Stop the server at once (``-m immediate``) and remove its files."""
        try:
            _run(
                [str(self.binaries / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                "pg_ctl stop",
            )
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = DATABASE, schema: str | None = None) -> str:
        """The SQLAlchemy URL of ``database`` (psycopg 3 driver), with ``schema`` first on the
        search path when given (where the tables are created and found)."""
        url = f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self.port}/{database}"
        return url if schema is None else f"{url}?options=-csearch_path%3D{schema}"

    def _connect(self, database: str) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=self.host, port=self.port, user=SUPERUSER, dbname=database, autocommit=True
        )

    def create_database(self, name: str = DATABASE) -> str:
        """Create database ``name``; its URL."""
        with self._connect("postgres") as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def create_schema(self, database: str = DATABASE) -> str:
        """A new, empty schema in ``database``, never used before in this cluster; the URL that
        works in it. A schema costs far less than a database (~0.1 ms against ~100 ms), so every
        test gets its own."""
        name = f"test_{next(self._names)}"
        with self._connect(database) as connection:
            connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        return self.url(database, name)
