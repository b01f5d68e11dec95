"""A real PostgreSQL server (Debian's ``postgresql``) of its own: ``initdb`` in a work dir,
127.0.0.1 on a free port, trust auth for the test user, stopped by PID."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from lab.procs import Daemon, free_port, run_checked
from zcp.errors import DaemonError

BIN = Path("/usr/lib/postgresql/15/bin")


def _binary(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        raise DaemonError(f"{name} not found: install the Debian package postgresql")
    return found


class PostgresServer(Daemon):
    """PostgreSQL 15 on 127.0.0.1; ``url`` is a SQLAlchemy URL of database ``zcp``."""

    USER = "postgres"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        # data and socket outside the caller's (maybe root-only) tree: postgres must reach them
        self.home = Path(tempfile.mkdtemp(prefix="zcp-pg-"))
        self.data = self.home / "data"
        self.url = f"postgresql+psycopg://zcp@127.0.0.1:{self.port}/zcp"
        self._as_user = os.geteuid() == 0  # postgres refuses to run as root
        super().__init__(
            "postgres",
            self._argv(
                [
                    _binary("postgres"),
                    "-D",
                    str(self.data),
                    "-k",
                    str(self.home),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-p",
                    str(self.port),
                    "-c",
                    "fsync=off",
                    "-c",
                    "logging_collector=off",
                ]
            ),
            workdir,
            "",
        )

    def _argv(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", self.USER, "--", *argv] if self._as_user else argv

    def ready(self) -> bool:
        """Accepting connections (pg_isready)."""
        return (
            subprocess.run(
                [_binary("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True,
            ).returncode
            == 0
        )

    def start(self, timeout: float = 60.0) -> None:
        """initdb (once), start, create role and database ``zcp``."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self._as_user:
            try:
                uid = pwd.getpwnam(self.USER).pw_uid
            except KeyError:
                raise DaemonError(
                    "user postgres missing: install the Debian package postgresql"
                ) from None
            os.chown(self.home, uid, -1)
        if not self.data.exists():
            run_checked(
                self._argv(
                    [
                        _binary("initdb"),
                        "-D",
                        str(self.data),
                        "-A",
                        "trust",
                        "-U",
                        self.USER,
                        "--no-sync",
                    ]
                ),
                timeout=120,
            )
        super().start(timeout)
        psql = self._argv(
            [
                _binary("psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.USER,
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
            ]
        )
        run_checked([*psql, "CREATE ROLE zcp LOGIN"], check=False)
        run_checked([*psql, "CREATE DATABASE zcp OWNER zcp"], check=False)

    def new_database(self, name: str) -> str:
        """Create an empty database ``name`` owned by ``zcp``; its SQLAlchemy URL."""
        psql = self._argv(
            [
                _binary("psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.USER,
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
            ]
        )
        run_checked([*psql, f'CREATE DATABASE "{name}" OWNER zcp'])
        return f"postgresql+psycopg://zcp@127.0.0.1:{self.port}/{name}"

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT to the postmaster itself: clients are disconnected, the data
        is left clean), then the generic stop. SIGTERM to ``runuser`` would ask for a smart
        shutdown, which waits for every client, and ``runuser`` SIGKILLs the postmaster after
        two seconds, leaving its backends and ``postmaster.pid`` behind."""
        pid = self._postmaster()
        if pid is not None and self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        super().stop()

    def _postmaster(self) -> int | None:
        """The postmaster's PID from its ``postmaster.pid`` (None before it wrote it)."""
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def remove(self) -> None:
        """Stop the server and delete its data (stop alone keeps it, for a restart)."""
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)
