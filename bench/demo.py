#!/usr/bin/env python3
"""The demo as a newcomer meets it: time from ``zcp-obs demo up`` to its summary, the machine's
memory in use at its peak (sampled from /proc/meminfo every 0.25 s, above what was in use
before), and the time ``demo down`` takes to leave nothing behind.

    .venv/bin/python bench/demo.py [--runs 2] [-- extra demo up flags]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

MIB = 1024 * 1024


def used_bytes() -> int:
    """MemTotal - MemAvailable: what the machine's processes and kernel hold."""
    info = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, value = line.split(":", 1)
        info[key] = int(value.split()[0]) * 1024
    return info["MemTotal"] - info["MemAvailable"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("flags", nargs="*", help="extra `demo up` flags (after --)")
    args = ap.parse_args()
    zcp = [sys.executable, "-m", "zcp_obs", "--log-format", "json", "demo"]
    print(
        "| run | up to summary s | (as the demo counts) s | peak memory above idle MiB | down s |"
    )
    print("|---|---|---|---|---|")
    for run in range(1, args.runs + 1):
        state = Path(tempfile.mkdtemp(prefix="zcp-bench-demo-"))
        idle = used_bytes()
        peak = idle
        done = threading.Event()

        def sample(done: threading.Event = done) -> None:
            nonlocal peak
            while not done.wait(0.25):
                peak = max(peak, used_bytes())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.monotonic()
        up = subprocess.run(
            [*zcp, "up", "--state-dir", str(state), *args.flags], capture_output=True, text=True
        )
        t1 = time.monotonic()
        done.set()
        sampler.join()
        try:
            if up.returncode != 0:
                sys.exit(f"demo up failed: {up.stderr[-2000:]}")
            doc = json.loads((state / "summary.json").read_text())
        finally:
            t2 = time.monotonic()
            subprocess.run([*zcp, "down", "--state-dir", str(state)], capture_output=True)
            t3 = time.monotonic()
        print(
            f"| {run} | {t1 - t0:.1f} | {doc['seconds_to_summary']:.1f} "
            f"| {(peak - idle) / MIB:.0f} | {t3 - t2:.1f} |"
        )
        summary_lines = up.stdout.strip().count("\n") + 1
    print(f"\nthe summary: {summary_lines} lines")


if __name__ == "__main__":
    main()
