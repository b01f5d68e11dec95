#!/usr/bin/env python3
"""Scrape-time benchmark: our OVS exporter vs the floor of the CLI approach.

Starts a private Open vSwitch (lab/ovs.py, userspace datapath) with N ports on one bridge,
runs `zcp-obs exporter ovs` against it, and alternately times (a) one scrape of our exporter
and (b) the floor of what a CLI-based exporter must do per scrape: `ovs-vsctl --format=json
list Interface` plus `ovs-appctl dpif/show` (two process spawns, nothing parsed). Prints the
median and p95 of each, the ratio, and the series our exporter exports.

    .venv/bin/python bench/ovs_scrape.py --ports 50
    .venv/bin/python bench/ovs_scrape.py --ports 500
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stats import count_series, p95
from lab.ovs import OvsLab
from lab.procs import Daemon, free_port
from zcp.wait import wait_until


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ports", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument(
        "--tunnels",
        type=int,
        default=0,
        help="VXLAN tunnels over the lab's underlay (each scrape resolves their underlay MTU; "
        "the CLI floor then also reads ovs/route/show)",
    )
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="zcp-bench-ovs-"))
    lab = OvsLab(workdir / "ovs")
    exporter: Daemon | None = None
    try:
        print(f"starting Open vSwitch in {workdir}", file=sys.stderr)
        lab.start()
        lab.add_bridge("br-int")
        t0 = time.monotonic()
        lab.add_internal_ports("br-int", [f"p{i}" for i in range(args.ports)])
        print(f"{args.ports} ports in {time.monotonic() - t0:.1f}s", file=sys.stderr)
        for i in range(min(args.tunnels, 240)):
            lab.add_tunnel("br-int", f"vx{i}", f"192.0.2.{10 + i}", key=str(5000 + i))
        lab.wait_stats()
        port = free_port()
        exporter = Daemon(
            "ovs-exporter",
            [
                str(Path(sys.executable).parent / "zcp-obs"),
                "exporter",
                "ovs",
                "--db",
                lab.db,
                "--rundir",
                str(lab.workdir),
                "--vswitchd-ctl",
                str(lab.vswitchd_ctl),
                "--listen",
                f"127.0.0.1:{port}",
            ],
            workdir / "exporter",
            f"http://127.0.0.1:{port}/metrics",
        )
        exporter.start()
        url = f"http://127.0.0.1:{port}/metrics"
        session = requests.Session()

        def connected() -> str | None:
            text = session.get(url, timeout=30).text
            return text if 'ovs_collector_success{collector="ovsdb"} 1.0' in text else None

        body = wait_until(connected, timeout=30)
        if body is None:
            raise SystemExit("the exporter never connected to ovsdb-server")
        cli = [
            ["ovs-vsctl", f"--db={lab.db}", "--format=json", "list", "Interface"],
            ["ovs-appctl", "-t", str(lab.vswitchd_ctl), "dpif/show"],
        ]
        if args.tunnels:
            cli.append(["ovs-appctl", "-t", str(lab.vswitchd_ctl), "ovs/route/show"])
        ours: list[float] = []
        floor: list[float] = []
        for r in range(args.rounds):
            for which in (0, 1) if r % 2 == 0 else (1, 0):
                t = time.perf_counter()
                if which == 0:
                    resp = session.get(url, timeout=30)
                    resp.raise_for_status()
                    ours.append(time.perf_counter() - t)
                else:
                    for argv in cli:
                        subprocess.run(argv, capture_output=True, check=True, timeout=30)
                    floor.append(time.perf_counter() - t)
            print(f"\rround {r + 1}/{args.rounds}", end="", file=sys.stderr)
        print(file=sys.stderr)

        n_series = count_series(body)
        n_iface = sum(
            1 for line in body.splitlines() if line.startswith("ovs_interface_receive_bytes_total{")
        )
        print(
            f"\novs scrape benchmark: {args.ports} ports (+ the bridge's own), "
            f"{min(args.tunnels, 240)} tunnels, "
            f"{args.rounds} alternating rounds\n"
        )
        print("| what | median ms | p95 ms |")
        print("|---|---|---|")
        print(
            f"| zcp-obs exporter ovs, one scrape ({n_series} series, {n_iface} interfaces) | "
            f"{statistics.median(ours) * 1000:.1f} | {p95(ours) * 1000:.1f} |"
        )
        print(
            f"| CLI floor: ovs-vsctl list Interface + ovs-appctl dpif/show"
            f"{' + ovs/route/show' if args.tunnels else ''} | "
            f"{statistics.median(floor) * 1000:.1f} | {p95(floor) * 1000:.1f} |"
        )
        print(
            f"\nratio ours/floor: median "
            f"{statistics.median(ours) / statistics.median(floor):.2f}, "
            f"p95 {p95(ours) / p95(floor):.2f}"
        )
    finally:
        if exporter is not None:
            exporter.stop()
        lab.stop()


if __name__ == "__main__":
    main()
