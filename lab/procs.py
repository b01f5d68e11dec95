"""Start and stop real daemons by PID in a private directory, bound to 127.0.0.1."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

import requests

from zcp.errors import DaemonError
from zcp.wait import wait_until

log = logging.getLogger(__name__)


def run_checked(
    argv: Sequence[str],
    *,
    timeout: float = 120,
    check: bool = True,
    env: dict[str, str] | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a lab set-up command; a failure (with ``check``) is a DaemonError carrying the
    command's own last words."""
    proc = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, env=env, input=input
    )
    if check and proc.returncode != 0:
        raise DaemonError(
            f"{' '.join(argv)} failed ({proc.returncode}): "
            f"{(proc.stderr or proc.stdout).strip()[-500:]}"
        )
    return proc


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (below the ephemeral range is not guaranteed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Daemon:
    """One child process with its own work dir and log file, stopped by PID."""

    def __init__(self, name: str, argv: Sequence[str], workdir: Path, ready_url: str) -> None:
        self.name = name
        self.argv = list(argv)
        self.workdir = workdir
        self.ready_url = ready_url
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The child's PID while it runs."""
        return self.proc.pid if self.proc is not None else None

    def ready(self) -> bool:
        """True once the daemon serves: ``ready_url`` answers 200 (subclasses may differ)."""
        try:
            return requests.get(self.ready_url, timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait until :meth:`ready`; on failure show the log's tail."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.workdir,
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        log.info("daemon starting", extra={"daemon": self.name, "pid": self.proc.pid})
        proc = self.proc

        def up() -> bool:
            if proc.poll() is not None:
                self.proc = None
                raise DaemonError(f"{self.name} exited with {proc.returncode}: {self.log_tail()}")
            return self.ready()

        if wait_until(up, timeout, 0.05):
            return
        self.stop()
        raise DaemonError(f"{self.name} not ready after {timeout:.0f}s: {self.log_tail()}")

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the daemon (SIGSTOP/SIGCONT in fault tests)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def reload(self) -> None:
        """Ask the daemon to re-read its config (SIGHUP)."""
        self.signal(signal.SIGHUP)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; the log file is kept."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        log.info("daemon stopped", extra={"daemon": self.name, "rc": self.proc.returncode})
        self.proc = None

    def running(self) -> bool:
        """True while the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the daemon's log, for error messages."""
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def copy_logs(daemons: Sequence[Daemon], dest: Path) -> None:
    """Keep daemons' logs (e.g. after a failed test)."""
    dest.mkdir(parents=True, exist_ok=True)
    for d in daemons:
        if d.log_path.exists():
            shutil.copy(d.log_path, dest / d.log_path.name)
