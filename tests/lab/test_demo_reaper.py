"""A demo killed outright (SIGKILL: its own clean-up never runs) leaves nothing behind: its
reaper, watching from a session of its own, removes the daemons and namespaces it left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from lab.demo_control import REAPED, _alive, _processes_of
from zcp.wait import wait_until

PARENT = """
import subprocess, sys, time
from pathlib import Path
from lab.demo_control import record_network, start_reaper
work, ns = Path(sys.argv[1]), sys.argv[2]
start_reaper(work)
# a daemon in a session of its own, its command line naming the work dir, as the lab's do
(work / "daemon.log").touch()
subprocess.Popen(["tail", "-f", str(work / "daemon.log")], start_new_session=True)
subprocess.run(["ip", "netns", "add", ns], check=True)
record_network(work, [ns], [])
print("up", flush=True)
time.sleep(600)
"""


def namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_a_sigkilled_demo_leaves_no_daemon_or_namespace(tmp_path: Path) -> None:
    work, ns = tmp_path / "work", f"zcpreap-{uuid.uuid4().hex[:6]}"
    work.mkdir()
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(work), ns], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "up"
        (daemon,) = set(_processes_of(str(work))) - {parent.pid}
        assert ns in namespaces()
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert wait_until(lambda: (work / REAPED).exists(), 20, 0.05)
        assert not _alive(daemon)
        assert ns not in namespaces()
        reaped = json.loads((work / REAPED).read_text())
        assert reaped["daemons"] == [f"tail ({daemon})"]
        assert reaped["namespaces"] == [ns]
    finally:
        parent.kill()
        for pid in _processes_of(str(work)):
            os.kill(pid, signal.SIGKILL)
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
