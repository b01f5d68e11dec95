"""The reconciler's own record of the stacks it made (``state.json``) and its run lock.

The state is written atomically after each tenant's change, so a run killed at any point leaves
the last complete step on disk; the next run compares the real files and processes with what
should be, so it converges whatever the record says. One run at a time: an exclusive ``flock``.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zcp.errors import ZcpError
from zcp.files import private_dir, write_atomic

STATE = "state.json"
LOCK = "reconcile.lock"


@dataclass
class Record:
    """One tenant's stack as the reconciler left it."""

    name: str
    tier: str
    prometheus_port: int
    grafana_port: int
    status: str = "active"  # active | retired
    config_version: str = ""
    created_at: float = field(default_factory=time.time)
    retired_at: float | None = None
    held: bool = False  # retired by an operator: not re-created until undone
    drift_repaired: int = 0
    last_reconcile: float = 0.0


@dataclass
class State:
    tenants: dict[str, Record] = field(default_factory=dict)
    last_run: float = 0.0
    last_run_ok: bool = True

    def ports_in_use(self) -> set[int]:
        return {p for r in self.tenants.values() for p in (r.prometheus_port, r.grafana_port)}


def load(state_dir: Path) -> State:
    path = state_dir / STATE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return State()
    except (OSError, ValueError) as exc:
        raise ZcpError(f"cannot read {path}: {exc}") from None
    try:
        return State(
            tenants={k: Record(**v) for k, v in doc.get("tenants", {}).items()},
            last_run=float(doc.get("last_run", 0.0)),
            last_run_ok=bool(doc.get("last_run_ok", True)),
        )
    except TypeError as exc:
        raise ZcpError(f"{path} is not a state this version wrote: {exc}") from None


def save(state_dir: Path, state: State) -> None:
    doc: dict[str, Any] = {
        "version": 1,
        "last_run": state.last_run,
        "last_run_ok": state.last_run_ok,
        "tenants": {k: asdict(v) for k, v in sorted(state.tenants.items())},
    }
    write_atomic(state_dir / STATE, json.dumps(doc, indent=1, sort_keys=True) + "\n", 0o600)


@contextmanager
def locked(state_dir: Path, wait: float = 0.0) -> Iterator[None]:
    """Hold the run lock; another run holding it -> wait up to ``wait`` s, then a clear error."""
    private_dir(state_dir)
    path = state_dir / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                    raise ZcpError(
                        f"another reconcile is running (pid {holder}, lock {path}); "
                        "it will converge; pass --wait SECONDS to wait for it"
                    ) from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock
