#!/usr/bin/env python3
"""Load benchmark: our shared HTTP server vs prometheus-client's own ``start_http_server``.

Both serve the same families (a hypervisor's worth of per-VM series) from a process of their
own, so threads and RSS are each server's. Two phases, the servers side by side in one run:

1. load: 8 concurrent scrapers (keep-alive, like Prometheus) for ``--scrapes`` scrapes per
   server, in alternating blocks; p50/p99 scrape time, non-200 answers, threads and RSS before
   and after;
2. slow clients: ``--idle`` idle connections and ``--slow`` slowloris clients (a request head
   never finished) held open, then sequential scrapes on fresh connections: their p50, and the
   threads and RSS while the clients are held and once our timeouts have passed.

    .venv/bin/python bench/http_load.py --vms 50 --scrapes 10000
"""

from __future__ import annotations

import argparse
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab.procs import free_port
from zcp.wait import wait_until

TIMEOUT = 5.0  # our idle and read timeouts in the slow-client phase


def families(vms: int) -> list:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    out = []
    for name, kind in (
        ("bench_vm_cpu_seconds", CounterMetricFamily),
        ("bench_vm_memory_bytes", GaugeMetricFamily),
        ("bench_vm_disk_read_bytes", CounterMetricFamily),
        ("bench_vm_disk_write_bytes", CounterMetricFamily),
        ("bench_vm_nic_rx_bytes", CounterMetricFamily),
        ("bench_vm_nic_tx_bytes", CounterMetricFamily),
    ):
        fam = kind(name, f"{name} of a guest.", labels=["vm_id", "account_id", "device"])
        for i in range(vms):
            for dev in ("vda", "vdb", "vnet0", "vnet1"):
                fam.add_metric([f"vm-{i:05d}", f"acct-{i % 37}", dev], i * 1000.5)
        out.append(fam)
    return out


class Fixed:
    def __init__(self, vms: int) -> None:
        self.fams = families(vms)

    def collect(self, timeout: float | None = None) -> Iterator:
        yield from self.fams


def serve(kind: str, port: int, vms: int) -> None:
    """The child: one server until SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if kind == "ours":
        from exporters.http import ExporterServer
        from zcp.httpserver import Limits

        limits = Limits(idle_timeout=TIMEOUT, read_timeout=TIMEOUT)
        server = ExporterServer("bench", Fixed(vms), "127.0.0.1", port, 8.0, limits=limits)
        server.start()
    else:
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry()
        registry.register(Fixed(vms))  # type: ignore[arg-type]
        start_http_server(port, addr="127.0.0.1", registry=registry)
    print("ready", flush=True)
    stop.wait()


def proc_status(pid: int) -> tuple[int, float]:
    """(threads, RSS in MiB) of a process."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["Threads"]), int(fields["VmRSS"].split()[0]) / 1024


class Server:
    def __init__(self, kind: str, vms: int) -> None:
        self.kind = kind
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                kind,
                "--port",
                str(self.port),
                "--vms",
                str(vms),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"
        self.url = f"http://127.0.0.1:{self.port}/metrics"
        self.times: list[float] = []
        self.codes: dict[int, int] = {}
        self.status0 = proc_status(self.proc.pid)

    def status(self) -> tuple[int, float]:
        return proc_status(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def load(server: Server, scrapes: int, workers: int) -> None:
    left = [scrapes]
    lock = threading.Lock()

    def worker() -> None:
        session = requests.Session()
        while True:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            t0 = time.perf_counter()
            r = session.get(server.url, timeout=30)
            dt = time.perf_counter() - t0
            with lock:
                server.times.append(dt)
                server.codes[r.status_code] = server.codes.get(r.status_code, 0) + 1

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def pct(xs: list[float], q: float) -> float:
    return sorted(xs)[max(0, round(q * len(xs)) - 1)]


def slow_clients(server: Server, idle: int, slow: int, scrapes: int) -> dict[str, float]:
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(idle)]
    for _ in range(slow):
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)
    time.sleep(0.5)  # let the server take them all (what is measured is below, not this)
    held = server.status()
    times = []
    for _ in range(scrapes):
        t0 = time.perf_counter()
        r = requests.get(server.url, timeout=30)
        times.append(time.perf_counter() - t0)
        assert r.status_code == 200
    during = server.status()
    # past our timeouts (the clients still hold their sockets): who released the threads?
    wait_until(lambda: server.status()[0] <= server.status0[0] + 1, TIMEOUT * 3, 0.2)
    after = server.status()
    for s in socks:
        s.close()
    return {
        "p50_ms": statistics.median(times) * 1000,
        "threads_held": max(held[0], during[0]),
        "rss_held": during[1],
        "threads_after": after[0],
        "rss_after": after[1],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vms", type=int, default=50)
    ap.add_argument("--scrapes", type=int, default=10000)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--idle", type=int, default=300)
    ap.add_argument("--slow", type=int, default=50)
    ap.add_argument("--serve", choices=("ours", "peer"))
    ap.add_argument("--port", type=int)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.vms)
        return
    servers = [Server("ours", args.vms), Server("peer", args.vms)]
    try:
        body = requests.get(servers[0].url, timeout=30).content
        peer_body = requests.get(servers[1].url, timeout=30).content
        series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
        print(
            f"{series} series per scrape: ours {len(body) / 1024:.0f} KiB, "
            f"peer {len(peer_body) / 1024:.0f} KiB",
            file=sys.stderr,
        )
        for block in range(args.blocks):
            for server in servers if block % 2 == 0 else servers[::-1]:
                load(server, args.scrapes // args.blocks, args.workers)
                print(f"block {block + 1}/{args.blocks} {server.kind} done", file=sys.stderr)
        print(
            f"\nload: {args.workers} scrapers, {args.scrapes} scrapes each, {series} series\n"
            "| server | p50 ms | p99 ms | scrapes/s | non-200 | threads start/end "
            "| RSS MiB start/end |\n|---|---|---|---|---|---|---|"
        )
        res = {}
        for server in servers:
            end = server.status()
            total = sum(server.times) / args.workers
            res[server.kind] = (
                statistics.median(server.times),
                pct(server.times, 0.99),
                len(server.times) / total,
            )
            bad = sum(n for code, n in server.codes.items() if code != 200)
            print(
                f"| {server.kind} | {res[server.kind][0] * 1000:.2f} | "
                f"{res[server.kind][1] * 1000:.2f} | {res[server.kind][2]:.0f} | {bad} | "
                f"{server.status0[0]}/{end[0]} | {server.status0[1]:.1f}/{end[1]:.1f} |"
            )
        o, p = res["ours"], res["peer"]
        print(f"ours/peer: p50 {o[0] / p[0]:.2f}, p99 {o[1] / p[1]:.2f}")
        print(
            f"\nslow clients: {args.idle} idle + {args.slow} slowloris held, then 50 scrapes\n"
            "| server | scrape p50 ms | threads held | RSS MiB held | threads after "
            f"{TIMEOUT:.0f} s timeouts | RSS MiB after |\n|---|---|---|---|---|---|"
        )
        for server in servers:
            s = slow_clients(server, args.idle, args.slow, 50)
            print(
                f"| {server.kind} | {s['p50_ms']:.2f} | {s['threads_held']} | "
                f"{s['rss_held']:.1f} | {s['threads_after']} | {s['rss_after']:.1f} |"
            )
    finally:
        for server in servers:
            server.stop()


if __name__ == "__main__":
    main()
