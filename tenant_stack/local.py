"""The ``local`` driver: each tenant's stack on this host, under ``<state_dir>/tenants/<uuid>/``.

Files are written atomically and only when their content changes (secrets 0600, the tenant's
directory 0700). The tenant's Prometheus runs either as a process this driver starts itself
(``direct``: a new session, its pid file, readiness awaited) or as the systemd unit
``zcp-obs-tenant-prometheus@<uuid>`` (deploy/systemd). A changed ``prometheus.yml`` or token is a
reload (``POST /-/reload``), a changed command line (port, retention) a restart, a dead process a
start. Grafana is started the same way only where ``grafana-server`` is installed; its
provisioning files are written either way.
"""

from __future__ import annotations

import difflib
import logging
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import requests

from tenant_stack.render import (
    DASHBOARDS,
    GRAFANA_INI,
    PROMETHEUS_ENV,
    SECRETS,
    Stack,
    parse_env,
    prometheus_args,
    unit_instance,
)
from zcp.config import LocalDriverConfig
from zcp.errors import ZcpError
from zcp.files import private_dir, write_atomic
from zcp.wait import wait_until

log = logging.getLogger(__name__)
PROM_UNIT = "zcp-obs-tenant-prometheus@{}.service"
GRAFANA_UNIT = "zcp-obs-tenant-grafana@{}.service"


@dataclass
class Change:
    """What applying a stack did."""

    files: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)  # components (re)started
    reloaded: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.files or self.started or self.reloaded)


class Processes(Protocol):
    """How a component of a tenant's stack is run."""

    def running(self, tenant: str, component: str, root: Path) -> bool: ...

    def start(self, tenant: str, component: str, root: Path, argv: list[str]) -> None: ...

    def stop(self, tenant: str, component: str, root: Path) -> None: ...


class Direct:
    """Processes started by the driver itself, tracked by pid files (the lab, the demo)."""

    @staticmethod
    def _pidfile(root: Path, component: str) -> Path:
        return root / component / f"{component}.pid"

    def _pid(self, root: Path, component: str) -> int | None:
        """The live process of this component: by its pid file, else (a run killed between
        starting it and writing the file) by a scan of /proc for its command line."""
        marker = str(root / component).encode()
        try:
            pid = int(self._pidfile(root, component).read_text().strip())
        except (OSError, ValueError):
            pid = None
        if pid is not None and _ours(pid, marker):
            return pid
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and _ours(int(entry.name), marker):
                write_atomic(self._pidfile(root, component), f"{entry.name}\n", 0o600)
                return int(entry.name)
        return None

    def running(self, tenant: str, component: str, root: Path) -> bool:
        return self._pid(root, component) is not None

    def start(self, tenant: str, component: str, root: Path, argv: list[str]) -> None:
        logfile = root / component / f"{component}.log"
        with open(logfile, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives this run (cron), not its terminal
                cwd=root / component,
            )
        write_atomic(self._pidfile(root, component), f"{proc.pid}\n", 0o600)
        if proc.poll() is not None:
            raise ZcpError(f"tenant {tenant}: {component} exited at once; see {logfile}")

    def stop(self, tenant: str, component: str, root: Path) -> None:
        pid = self._pid(root, component)
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        if not wait_until(lambda: self._pid(root, component) is None, 20, 0.1):
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: self._pid(root, component) is None, 5, 0.1)
        self._pidfile(root, component).unlink(missing_ok=True)


def _ours(pid: int, marker: bytes) -> bool:
    """Whether ``pid`` is a live (not zombie) process started for ``marker``'s directory (a
    reused pid is not)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return status != "Z" and any(arg.startswith(b"--") and marker in arg for arg in cmdline)


class Systemd:
    """Units of deploy/systemd (a production monitoring host): the driver writes the files,
    systemd runs the processes."""

    def __init__(self, systemctl: str = "systemctl") -> None:
        self.systemctl = systemctl

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [self.systemctl, *args], capture_output=True, text=True, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ZcpError(f"systemctl {' '.join(args)}: {exc}") from None

    @staticmethod
    def _unit(tenant: str, component: str) -> str:
        template = PROM_UNIT if component == "prometheus" else GRAFANA_UNIT
        return template.format(unit_instance(tenant))

    def running(self, tenant: str, component: str, root: Path) -> bool:
        return self._run("is-active", "--quiet", self._unit(tenant, component)).returncode == 0

    def start(self, tenant: str, component: str, root: Path, argv: list[str]) -> None:
        unit = self._unit(tenant, component)
        proc = self._run("enable", "--now", unit)
        if proc.returncode:
            raise ZcpError(f"systemctl enable --now {unit}: {proc.stderr.strip()}")
        self._run("restart", unit)

    def stop(self, tenant: str, component: str, root: Path) -> None:
        self._run("disable", "--now", self._unit(tenant, component))


class LocalDriver:
    """Stacks as files and processes on this host."""

    name = "local"

    def __init__(self, state_dir: Path, cfg: LocalDriverConfig) -> None:
        self.cfg = cfg
        self.base = state_dir / "tenants"
        self.processes: Processes = Direct() if cfg.process == "direct" else Systemd()

    def root(self, tenant: str) -> Path:
        return self.base / unit_instance(tenant)

    def deployed(self) -> set[str]:
        try:
            return {p.name for p in self.base.iterdir() if p.is_dir()}
        except FileNotFoundError:
            return set()

    # -- files ------------------------------------------------------------------------------
    def _wanted(self, stack: Stack) -> dict[str, str]:
        return {**stack.files, **stack.dashboards}

    def _stale_dashboards(self, stack: Stack) -> list[Path]:
        folder = self.root(stack.tenant.id) / DASHBOARDS
        try:
            present = list(folder.glob("*.json"))
        except OSError:
            return []
        return [p for p in present if f"{DASHBOARDS}/{p.name}" not in stack.dashboards]

    def differences(self, stack: Stack) -> list[str]:
        """What applying ``stack`` would change in its files, as a diff (secrets redacted)."""
        root = self.root(stack.tenant.id)
        out: list[str] = []
        for rel, want in sorted(self._wanted(stack).items()):
            try:
                have: str | None = (root / rel).read_text()
            except (OSError, UnicodeDecodeError):
                have = None
            if have == want:
                continue
            if rel in SECRETS:
                out.append(f"  {rel}: secret {'written' if have is None else 'replaced'}")
                continue
            if have is None:
                out.append(f"  + {rel} ({len(want.splitlines())} lines)")
                continue
            diff = difflib.unified_diff(
                have.splitlines(), want.splitlines(), f"a/{rel}", f"b/{rel}", lineterm="", n=1
            )
            out += [f"  {line}" for line in diff]
        out += [f"  - {DASHBOARDS}/{p.name}" for p in self._stale_dashboards(stack)]
        return out

    def _write(self, stack: Stack) -> list[str]:
        root = self.root(stack.tenant.id)
        private_dir(self.base)
        private_dir(root)
        changed = []
        for rel, want in sorted(self._wanted(stack).items()):
            path = root / rel
            try:
                if path.read_text() == want:
                    continue
            except (OSError, UnicodeDecodeError):
                pass
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_atomic(path, want, 0o600 if rel in SECRETS else 0o644)
            changed.append(rel)
        for stale in self._stale_dashboards(stack):
            stale.unlink(missing_ok=True)
            changed.append(f"{DASHBOARDS}/{stale.name} (removed)")
        return changed

    # -- processes ----------------------------------------------------------------------------
    def _ready(self, url: str) -> bool:
        try:
            return requests.get(url, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def _prometheus_url(self, stack: Stack) -> str:
        env = parse_env(stack.files[PROMETHEUS_ENV])
        return f"http://{env['LISTEN']}"

    def apply(self, stack: Stack) -> Change:
        """Make the stack on disk and its processes what ``stack`` says."""
        tenant = stack.tenant.id
        root = self.root(tenant)
        change = Change(files=self._write(stack))
        env = parse_env(stack.files[PROMETHEUS_ENV])
        argv = prometheus_args(self.cfg.prometheus_binary, root, env)
        (root / "prometheus" / "data").mkdir(parents=True, exist_ok=True, mode=0o700)
        url = self._prometheus_url(stack)
        flags_changed = PROMETHEUS_ENV in change.files
        if not self.processes.running(tenant, "prometheus", root) or flags_changed:
            if flags_changed:
                self.processes.stop(tenant, "prometheus", root)
            self.processes.start(tenant, "prometheus", root, argv)
            if not wait_until(
                lambda: self._ready(f"{url}/-/ready"), self.cfg.start_timeout_seconds, 0.2
            ):
                raise ZcpError(
                    f"tenant {tenant}: Prometheus not ready at {url} within "
                    f"{self.cfg.start_timeout_seconds:.0f} s; see {root / 'prometheus'}"
                )
            change.started.append("prometheus")
        elif any(f.startswith("prometheus/") for f in change.files):
            try:
                resp = requests.post(f"{url}/-/reload", timeout=30)
            except requests.RequestException as exc:
                raise ZcpError(f"tenant {tenant}: Prometheus reload failed: {exc}") from None
            if resp.status_code != 200:
                raise ZcpError(f"tenant {tenant}: Prometheus reload failed: {resp.text.strip()}")
            change.reloaded.append("prometheus")
        grafana = shutil.which(self.cfg.grafana_binary)
        if grafana:
            ini_changed = GRAFANA_INI in change.files
            if not self.processes.running(tenant, "grafana", root) or ini_changed:
                self.processes.stop(tenant, "grafana", root)
                self.processes.start(
                    tenant,
                    "grafana",
                    root,
                    [grafana, "--homepath=/usr/share/grafana", f"--config={root / GRAFANA_INI}"],
                )
                change.started.append("grafana")
            self._name_org(stack)
        return change

    def _name_org(self, stack: Stack) -> None:
        """Name the tenant's Grafana organisation after the account, once Grafana answers."""
        from tenant_stack.grafana import name_org
        from tenant_stack.render import GRAFANA_PASSWORD

        port = next(
            line.split("=", 1)[1].strip()
            for line in stack.files[GRAFANA_INI].splitlines()
            if line.startswith("http_port")
        )
        url = f"http://127.0.0.1:{port}"
        if not wait_until(
            lambda: self._ready(f"{url}/api/health"), self.cfg.start_timeout_seconds, 0.5
        ):
            raise ZcpError(f"tenant {stack.tenant.id}: Grafana not ready at {url}")
        name_org(url, stack.files[GRAFANA_PASSWORD].strip(), stack.tenant.name)

    def health(self, tenant: str, url: str) -> dict[str, bool | None]:
        """Up or not, per component (None: not run here)."""
        root = self.root(tenant)
        up = self.processes.running(tenant, "prometheus", root) and self._ready(f"{url}/-/ready")
        grafana: bool | None = None
        if shutil.which(self.cfg.grafana_binary):
            grafana = self.processes.running(tenant, "grafana", root)
        return {"prometheus": up, "grafana": grafana}

    def retire(self, tenant: str) -> None:
        """Stop the stack; its files and data stay."""
        root = self.root(tenant)
        for component in ("grafana", "prometheus"):
            self.processes.stop(tenant, component, root)

    def purge(self, tenant: str) -> None:
        """Delete a retired stack's files and data."""
        self.retire(tenant)
        shutil.rmtree(self.root(tenant), ignore_errors=True)
