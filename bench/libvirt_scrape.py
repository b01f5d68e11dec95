#!/usr/bin/env python3
"""Scrape-time benchmark: our libvirt exporter vs Debian's prometheus-libvirt-exporter.

Boots N tiny KVM guests on a private libvirtd, runs both exporters against it, scrapes them
alternately and prints, for each: median and p95 scrape time, CPU seconds per scrape of the
exporter process and of libvirtd, and the number of series exported; then the ratios.

    .venv/bin/python bench/libvirt_scrape.py --guests 40 --rounds 30
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stats import count_series, p95
from lab.libvirt import LibvirtLab
from lab.procs import free_port
from zcp.wait import wait_until

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def wait_http(url: str, timeout: float = 30) -> None:
    def up() -> bool:
        try:
            return requests.get(url, timeout=10).status_code == 200
        except requests.RequestException:
            return False

    if not wait_until(up, timeout):
        raise SystemExit(f"{url} did not come up")


def domain_series(text: str) -> int:
    """Series about guests (not the exporter's own process/go/self metrics)."""
    return sum(
        1
        for line in text.splitlines()
        if line.startswith(("libvirt_domain", "zcp_vm_info", "zcp_volume_info", "zcp_nic_info"))
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--guests", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--chunks", type=int, default=4, help="our exporter's --chunks")
    ap.add_argument("--connections", type=int, default=2, help="our exporter's --connections")
    ap.add_argument(
        "--groups", default="state,cpu,balloon,vcpu,interface,block", help="our exporter's --groups"
    )
    ap.add_argument(
        "--no-procfs",
        action="store_true",
        help="our exporter with --no-procfs (every figure from libvirt's groups)",
    )
    args = ap.parse_args()

    peer_bin = shutil.which("prometheus-libvirt-exporter")
    if peer_bin is None:
        raise SystemExit(
            "prometheus-libvirt-exporter missing: apt-get install "
            "prometheus-libvirt-exporter (scripts/setup-debian.sh does)"
        )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="zcp-bench-libvirt-"))
    lab = LibvirtLab(workdir)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        print(f"starting libvirtd in {workdir}", file=sys.stderr)
        lab.start()
        print(f"booting {args.guests} guests", file=sys.stderr)
        lab.create_guests(args.guests, prefix="bench")
        time.sleep(2)
        ours_port, peer_port = free_port(), free_port()
        logs = [open(workdir / "ours.log", "wb"), open(workdir / "peer.log", "wb")]  # noqa: SIM115
        zcp_obs = Path(sys.executable).parent / "zcp-obs"
        ours = subprocess.Popen(
            [
                str(zcp_obs),
                "exporter",
                "libvirt",
                "--uri",
                lab.uri,
                "--listen",
                f"127.0.0.1:{ours_port}",
                "--chunks",
                str(args.chunks),
                "--connections",
                str(args.connections),
                "--groups",
                args.groups,
                "--no-procfs" if args.no_procfs else "--procfs",
            ],
            stdout=subprocess.DEVNULL,
            stderr=logs[0],
        )
        peer = subprocess.Popen(
            [peer_bin, f"--libvirt.uri={lab.uri}", f"--web.listen-address=127.0.0.1:{peer_port}"],
            stdout=subprocess.DEVNULL,
            stderr=logs[1],
        )
        procs += [ours, peer]
        targets = {
            "zcp-obs (ours)": (f"http://127.0.0.1:{ours_port}/metrics", ours.pid),
            "prometheus-libvirt-exporter": (f"http://127.0.0.1:{peer_port}/metrics", peer.pid),
        }
        for url, _ in targets.values():
            wait_http(url)
        libvirtd_pid = lab.libvirtd_pid
        times: dict[str, list[float]] = {k: [] for k in targets}
        cpu: dict[str, float] = dict.fromkeys(targets, 0.0)
        daemon_cpu: dict[str, float] = dict.fromkeys(targets, 0.0)
        bodies: dict[str, str] = {}
        session = requests.Session()
        for name, (url, _) in targets.items():  # warm-up
            for _ in range(3):
                bodies[name] = session.get(url, timeout=30).text
        for r in range(args.rounds):
            order = list(targets) if r % 2 == 0 else list(reversed(targets))
            for name in order:
                url, pid = targets[name]
                c0, d0 = cpu_seconds(pid), cpu_seconds(libvirtd_pid)
                t0 = time.perf_counter()
                resp = session.get(url, timeout=30)
                times[name].append(time.perf_counter() - t0)
                cpu[name] += cpu_seconds(pid) - c0
                daemon_cpu[name] += cpu_seconds(libvirtd_pid) - d0
                resp.raise_for_status()
            print(f"\rround {r + 1}/{args.rounds}", end="", file=sys.stderr)
        print(file=sys.stderr)

        print(
            f"\nlibvirt scrape benchmark: {args.guests} guests, {args.rounds} alternating rounds\n"
        )
        print(
            "| exporter | median ms | p95 ms | exporter CPU s/scrape | libvirtd CPU s/scrape "
            "| series | guest series |"
        )
        print("|---|---|---|---|---|---|---|")
        for name in targets:
            print(
                f"| {name} | {statistics.median(times[name]) * 1000:.1f} | "
                f"{p95(times[name]) * 1000:.1f} | {cpu[name] / args.rounds:.4f} | "
                f"{daemon_cpu[name] / args.rounds:.4f} | {count_series(bodies[name])} | "
                f"{domain_series(bodies[name])} |"
            )
        a, b = list(targets)
        med_ratio = statistics.median(times[a]) / statistics.median(times[b])
        print(
            f"\nratio ours/peer: median {med_ratio:.2f}, "
            f"p95 {p95(times[a]) / p95(times[b]):.2f}, exporter CPU "
            f"{cpu[a] / max(cpu[b], 1e-9):.2f}, libvirtd CPU "
            f"{daemon_cpu[a] / max(daemon_cpu[b], 1e-9):.2f}"
        )
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        lab.stop()


if __name__ == "__main__":
    main()
