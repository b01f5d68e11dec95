"""``zcp-obs demo up | status | down``: the demo detached, with a state directory of its own.

``up`` starts ``zcp-obs demo`` in a session of its own (its output in ``<state>/demo.log``),
shows its progress until the summary (``<state>/summary.json``) is written or the demo fails,
and returns. ``status`` shows what runs. ``down`` stops the demo by PID (SIGTERM: it stops
everything it started, in reverse order), waits, then checks that no daemon, network namespace
or bridge of it is left, removing any that is.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import requests

from zcp.errors import DaemonError
from zcp.files import private_dir, write_atomic

PID = "demo.pid"
LOG = "demo.log"
SUMMARY = "summary.json"
#: in the work dir: the namespaces and bridges made so far, for the reaper
NETWORK = "network.json"
#: in the work dir: what the reaper found left and removed
REAPED = "reaped.json"
_REAP_ENV = "ZCP_DEMO_REAP"


def default_state_dir() -> Path:
    return Path(os.environ.get("ZCP_DEMO_STATE", "/var/tmp/zcp-obs-demo"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive: it has exited, its parent has not reaped it
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def running_pid(state: Path) -> int | None:
    """The demo's PID if it runs."""
    try:
        pid = int((state / PID).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def read_summary(state: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads((state / SUMMARY).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _follow(log: Path, offset: int) -> int:
    """Echo what the log gained since ``offset``; the new offset."""
    try:
        with log.open("rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return offset
    if data:
        click.echo(data.decode(errors="replace"), nl=False, err=True)
    return offset + len(data)


def up(root_args: list[str], state: Path, demo_args: list[str], timeout: float) -> dict[str, Any]:
    """Start the demo detached; its progress shown until it is up. The summary."""
    state = private_dir(state)
    pid = running_pid(state)
    if pid is not None:
        raise DaemonError(f"the demo already runs (pid {pid}); `zcp-obs demo down` first")
    (state / SUMMARY).unlink(missing_ok=True)
    # a fresh work dir each time (the daemons' databases would carry the last run's state);
    # the last run's files and logs are kept beside it until the next up
    work, previous = state / "work", state / "work.previous"
    if work.exists():
        shutil.rmtree(previous, ignore_errors=True)
        work.rename(previous)
    log = state / LOG
    log.unlink(missing_ok=True)
    argv = [
        sys.executable,
        "-m",
        "zcp_obs",
        *root_args,
        "demo",
        "--workdir",
        str(work),
        "--ready-file",
        str(state / SUMMARY),
        *demo_args,
    ]
    with log.open("ab") as out:
        offset = out.tell()
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    write_atomic(state / PID, f"{proc.pid}\n")
    deadline = time.monotonic() + timeout
    while True:
        offset = _follow(log, offset)
        doc = read_summary(state)
        if doc is not None:
            return doc
        if proc.poll() is not None:
            _follow(log, offset)
            raise DaemonError(f"the demo failed (exit {proc.returncode}); its log: {log}")
        if time.monotonic() > deadline:
            proc.terminate()
            raise DaemonError(f"the demo was not up within {timeout:.0f}s; its log: {log}")
        time.sleep(0.2)


def status(state: Path) -> list[dict[str, str]]:
    """Each URL of the running demo and whether it answers."""
    pid = running_pid(state)
    doc = read_summary(state) or {}
    rows = [
        {"what": "demo", "where": str(state), "state": f"running (pid {pid})" if pid else "down"}
    ]
    urls = {
        **doc.get("urls", {}),
        **{f"Prometheus of tenant {k}": v for k, v in doc.get("tenant_prometheus", {}).items()},
    }
    for name, url in urls.items():
        try:
            code = requests.get(url, timeout=3).status_code
            answer = "up" if code < 500 else f"HTTP {code}"
        except requests.RequestException:
            answer = "down"
        rows.append({"what": name, "where": url, "state": answer})
    return rows


def _processes_of(workdir: str) -> dict[int, str]:
    """Processes whose command line names the demo's work dir (every daemon it starts does:
    configs, data dirs, guest disks), but this one."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if workdir and any(workdir.encode() in a for a in argv) and _alive(int(proc.name)):
                found[int(proc.name)] = Path(argv[0].decode(errors="replace")).name
    return found


def leftovers(doc: dict[str, Any]) -> dict[str, list[str]]:
    """What of a demo still exists: its daemons' processes, its namespaces, its bridges."""
    pids = {int(p): n for n, p in doc.get("daemons", {}).items() if _alive(int(p))}
    pids.update(_processes_of(doc.get("workdir", "")))
    daemons = [f"{n} ({p})" for p, n in sorted(pids.items())]
    namespaces = set(
        subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    )
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return {
        "daemons": daemons,
        "namespaces": [n for n in doc.get("namespaces", []) if n in namespaces],
        "bridges": [b for b in doc.get("bridges", []) if f": {b}:" in links],
    }


def remove(forced: dict[str, list[str]]) -> None:
    """Remove what :func:`leftovers` found: kill the processes, delete namespaces and bridges."""
    for entry in forced["daemons"]:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(entry.rsplit("(", 1)[1].rstrip(")")), signal.SIGKILL)
    for ns in forced["namespaces"]:
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
    for bridge in forced["bridges"]:
        subprocess.run(["ip", "link", "delete", bridge], capture_output=True)


def start_reaper(workdir: Path) -> subprocess.Popen[bytes]:
    """Watch this process from a session of its own: when it dies, however it dies (SIGKILL
    included, when its own clean-up never runs), remove whatever of the demo is left, as
    ``demo down`` does. The work dir goes by environment, so the reaper's command line does
    not name it (and it is no leftover of its own)."""
    return subprocess.Popen(
        [sys.executable, "-m", "lab.demo_control"],
        env={**os.environ, _REAP_ENV: f"{os.getpid()}:{workdir}"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def record_network(workdir: Path, namespaces: list[str], bridges: list[str]) -> None:
    """Note the namespaces and bridges made so far, for the reaper."""
    doc = {"namespaces": namespaces, "bridges": bridges}
    write_atomic(workdir / NETWORK, json.dumps(doc) + "\n")


def reap(pid: int, workdir: Path) -> dict[str, list[str]]:
    """Wait for ``pid`` to exit, then remove what is left of its demo in ``workdir``."""
    with contextlib.suppress(ProcessLookupError):
        fd = os.pidfd_open(pid)
        try:
            select.select([fd], [], [])
        finally:
            os.close(fd)
    doc: dict[str, Any] = {"workdir": str(workdir)}
    with contextlib.suppress(OSError, ValueError):
        doc.update(json.loads((workdir / NETWORK).read_text()))
    forced = leftovers(doc)
    remove(forced)
    with contextlib.suppress(OSError):
        write_atomic(workdir / REAPED, json.dumps(forced) + "\n")
    return forced


def down(state: Path, timeout: float) -> dict[str, list[str]]:
    """Stop the demo and check what is left; what had to be removed by force."""
    pid = running_pid(state)
    doc = read_summary(state) or {}
    log = state / LOG
    offset = log.stat().st_size if log.exists() else 0
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            offset = _follow(log, offset)
            time.sleep(0.2)
        _follow(log, offset)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    forced = leftovers(doc)
    remove(forced)
    (state / PID).unlink(missing_ok=True)
    return forced


if __name__ == "__main__" and _REAP_ENV in os.environ:
    _pid, _, _workdir = os.environ[_REAP_ENV].partition(":")
    reap(int(_pid), Path(_workdir))
