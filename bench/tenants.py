#!/usr/bin/env python3
"""Tenant stacks benchmark: reconcile time, memory per tenant Prometheus, and the federation
gate's cost per scrape against scraping the operator's /federate directly.

1. gate: an operator Prometheus holding ``--series`` series of one tenant, and the gate as it is
   deployed (``zcp-obs tenants federation-proxy``, a process of its own). ``/federate`` for that
   tenant fetched directly and through the gate, alternating, plain and gzip, from this process;
   then as Prometheus sees it: a tenant Prometheus federating both ways at once, every second,
   its ``scrape_duration_seconds`` compared over ``--scrapes`` scrapes each;
2. reconcile: for each N of ``--tenants``, a cold run (N stacks created: files, a Prometheus each,
   readiness awaited) and a warm one (nothing to do), with the local driver; then the RSS of
   the tenant Prometheus processes once they have federated for a while.

    .venv/bin/python bench/tenants.py --tenants 20 50 --series 5000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab.procs import Daemon, free_port
from lab.prometheus import PrometheusServer
from tenant_stack.gate import token_digest, write_tokens
from tenant_stack.reconcile import Reconciler
from tenant_stack.render import Tenant
from zcp.config import GateConfig, LocalDriverConfig, TenantsConfig, TierConfig
from zcp.files import write_atomic
from zcp.httpserver import HttpServer, Reply
from zcp.wait import wait_until

TENANT = "7f9c2ba4-e88f-11e9-81b4-2a2ae2dbcce4"


def source_text(series: int, tenants: list[str]) -> bytes:
    lines = []
    for i in range(series):
        t = tenants[i % len(tenants)]
        lines.append(f'tenant:bench_value:sum{{tenant="{t}",vm_id="vm-{i:06d}"}} {i}.5')
    return ("\n".join(lines) + "\n").encode()


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Gated(Daemon):
    port: int


def gate_process(work: Path, upstream: str, tokens: Path) -> Gated:
    """The gate as deployed: its own process, from a config file."""
    port, mport = free_port(), free_port()
    cfg = work / "gate.yaml"
    gate = {
        "listen": f"127.0.0.1:{port}",
        "metrics_listen": f"127.0.0.1:{mport}",
        "upstream": upstream,
        "tokens_file": str(tokens),
    }
    write_atomic(cfg, yaml.safe_dump({"tenants": {"gate": gate}}).encode())
    argv = [sys.executable, "-m", "zcp_obs", "--config", str(cfg), "tenants", "federation-proxy"]
    daemon = Gated("gate", argv, work / "gate", f"http://127.0.0.1:{mport}/metrics")
    daemon.port = port
    daemon.start(60)
    return daemon


def as_prometheus(work: Path, upstream: str, gate_port: int, scrapes: int) -> None:
    """A tenant Prometheus federating the same series directly and through the gate, each job
    every second (gzip, as Prometheus asks); the ratio of the mean scrape durations."""
    cred = work / "tenant.token"
    cred.write_text("bench-token")
    cred.chmod(0o600)
    up = upstream.removeprefix("http://")
    job = {"honor_labels": True, "metrics_path": "/federate", "scrape_interval": "1s"}
    tenant = PrometheusServer(
        work / "tenant",
        {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                {
                    **job,
                    "job_name": "direct",
                    "params": {"match[]": [f'{{__name__=~"tenant:.+",tenant="{TENANT}"}}']},
                    "static_configs": [{"targets": [up]}],
                },
                {
                    **job,
                    "job_name": "gate",
                    "params": {"match[]": ['{__name__=~"tenant:.+"}']},
                    "authorization": {"credentials_file": str(cred)},
                    "static_configs": [{"targets": [f"127.0.0.1:{gate_port}"]}],
                },
            ],
        },
    )
    tenant.start()
    try:
        samples = f"count_over_time(scrape_duration_seconds[{scrapes + 5}s])"

        def enough() -> bool:
            got = {x["metric"]["job"]: float(x["value"][1]) for x in tenant.query(samples)}
            return len(got) == 2 and min(got.values()) >= scrapes

        assert wait_until(enough, scrapes * 3 + 60, 1.0), "the tenant Prometheus did not scrape"
        window = f"[{scrapes}s]"
        mean = {
            x["metric"]["job"]: float(x["value"][1]) * 1000
            for x in tenant.query(f"avg_over_time(scrape_duration_seconds{window})")
        }
        p50 = {
            x["metric"]["job"]: float(x["value"][1]) * 1000
            for x in tenant.query(f"quantile_over_time(0.5, scrape_duration_seconds{window})")
        }
        ups = tenant.query(f"min_over_time(up{window})")
        assert all(x["value"][1] == "1" for x in ups), ups
        series = {x["metric"]["job"]: x["value"][1] for x in tenant.query("scrape_samples_scraped")}
        assert series["direct"] == series["gate"], series
        print(f"\nas Prometheus sees it: {scrapes} federation scrapes per job, every 1 s, gzip")
        print("| scrape_duration_seconds | direct ms | through the gate ms | gate / direct |")
        print("|---|---|---|---|")
        for name, got in (("mean", mean), ("median", p50)):
            print(
                f"| {name} | {got['direct']:.1f} | {got['gate']:.1f} "
                f"| **{got['gate'] / got['direct']:.2f}** |"
            )
        print(f"({series['gate']} samples per scrape)")
    finally:
        tenant.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tenants", type=int, nargs="+", default=[20, 50])
    ap.add_argument("--series", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--scrapes", type=int, default=60, help="per job, Prometheus as the client")
    ap.add_argument("--settle", type=float, default=30.0, help="federating before RSS is read")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="zcp-bench-tenants-"))
    biggest = max(args.tenants)
    ids = [TENANT] + [str(uuid.uuid5(uuid.NAMESPACE_URL, f"t{i}")) for i in range(1, biggest)]
    body = source_text(args.series, [TENANT])
    rest = source_text(biggest * 20, ids[1:]) if biggest > 1 else b""
    source = HttpServer(
        "source", "127.0.0.1", 0, {"/metrics": lambda r: Reply(200, "text/plain", body + rest)}
    ).start()
    prom = PrometheusServer(
        work / "operator",
        {
            "global": {"scrape_interval": "5s"},
            "scrape_configs": [
                {
                    "job_name": "source",
                    "honor_labels": True,
                    "static_configs": [{"targets": [f"127.0.0.1:{source.port}"]}],
                }
            ],
        },
    )
    prom.start()
    gate = None
    try:
        assert wait_until(lambda: prom.query(f'count({{tenant="{TENANT}"}})'), 60, 0.5)
        tokens = work / "tokens.yaml"
        write_tokens(tokens, {TENANT: token_digest("bench-token")})
        gate = gate_process(work, prom.url, tokens)
        direct = requests.Session()
        via = requests.Session()
        match = {"match[]": f'{{__name__=~"tenant:.+",tenant="{TENANT}"}}'}
        gated = {"match[]": '{__name__=~"tenant:.+"}'}
        auth = {"Authorization": "Bearer bench-token"}
        print(f"\ngate: /federate of {args.series} series, {args.rounds} rounds, order alternating")
        print(
            "| encoding | bytes | direct ms | through the gate ms | gate / direct | gate CPU ms |"
        )
        print("|---|---|---|---|---|---|")
        for enc in ("identity", "gzip"):
            d, g = [], []
            cpu0 = cpu_seconds(gate.pid or 0)
            for i in range(args.rounds):
                ways = [
                    (d, direct, f"{prom.url}/federate", match, {"Accept-Encoding": enc}),
                    (
                        g,
                        via,
                        f"http://127.0.0.1:{gate.port}/federate",
                        gated,
                        {**auth, "Accept-Encoding": enc},
                    ),
                ]
                got = []
                for times, session, url, params, headers in ways[:: 1 if i % 2 else -1]:
                    t0 = time.perf_counter()
                    r = session.get(url, params=params, headers=headers, stream=True, timeout=30)
                    raw = r.raw.read()  # the bytes as sent: what is relayed
                    times.append(time.perf_counter() - t0)
                    assert r.status_code == 200, r.status_code
                    got.append(raw)
                # the same series and values (a scrape between the two moves the timestamps)
                same = [[x.rsplit(b" ", 1)[0] for x in raw.splitlines()] for raw in got]
                assert same[0] == same[1] or enc == "gzip", "not the same answer"
            cpu = (cpu_seconds(gate.pid or 0) - cpu0) / args.rounds * 1000
            md, mg = statistics.median(d) * 1000, statistics.median(g) * 1000
            print(f"| {enc} | {len(raw):,} | {md:.1f} | {mg:.1f} | **{mg / md:.2f}** | {cpu:.2f} |")
        as_prometheus(work, prom.url, gate.port, args.scrapes)

        print("\nreconcile, local driver (sequential; each Prometheus awaited ready)")
        print("| tenants | cold s | warm s | RSS MiB per tenant Prometheus (median, max) |")
        print("|---|---|---|---|")
        for n in args.tenants:
            state = work / f"state-{n}"
            cfg = TenantsConfig(
                state_dir=state,
                accounts={t: "standard" for t in ids[:n]},
                tiers={"standard": TierConfig(retention="1d", scrape_interval="5s")},
                gate_url=f"http://127.0.0.1:{gate.port}",
                local=LocalDriverConfig(port_base=20000 + (free_port() % 50) * 200),
                gate=GateConfig(tokens_file=tokens),
            )
            rec = Reconciler(
                cfg, lambda cfg=cfg: {t: Tenant(t, t[:8], "standard") for t in cfg.accounts or {}}
            )
            t0 = time.monotonic()
            cold = rec.run()
            t1 = time.monotonic()
            warm = rec.run()
            t2 = time.monotonic()
            assert not cold.failed and not warm.failed, (cold.failed, warm.failed)
            assert all(a.kind == "keep" for a in warm.actions)
            time.sleep(args.settle)  # let them federate; what is measured is RSS after it
            pids = [
                int((state / "tenants" / t / "prometheus" / "prometheus.pid").read_text())
                for t in ids[:n]
            ]
            rss = [rss_mib(p) for p in pids]
            print(
                f"| {n} | {t1 - t0:.1f} | {t2 - t1:.2f} | {statistics.median(rss):.0f}, "
                f"{max(rss):.0f} |"
            )
            for tid in ids[:n]:
                rec.driver.retire(tid)
            write_tokens(tokens, {TENANT: token_digest("bench-token")})
    finally:
        if gate is not None:
            gate.stop()
        prom.stop()
        source.shutdown()


if __name__ == "__main__":
    main()
