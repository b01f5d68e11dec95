#!/usr/bin/env python3
"""Tenant stacks benchmark: reconcile time, memory per tenant Prometheus, and the federation
gate's cost per scrape against scraping the operator's /federate directly.

1. gate: an operator Prometheus holding ``--series`` series of one tenant; ``/federate`` for that
   tenant scraped directly and through the gate, alternating, plain and gzip (as Prometheus
   asks); medians and the ratio;
2. reconcile: for each N of ``--tenants``, a cold run (N stacks created: files, a Prometheus each,
   readiness awaited) and a warm one (nothing to do), with the local driver; then the RSS of
   the tenant Prometheus processes once they have federated for a while.

    .venv/bin/python bench/tenants.py --tenants 20 50 --series 5000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab.procs import free_port
from lab.prometheus import PrometheusServer
from tenant_stack.gate import Gate, token_digest, write_tokens
from tenant_stack.reconcile import Reconciler
from tenant_stack.render import Tenant
from zcp.config import GateConfig, LocalDriverConfig, TenantsConfig, TierConfig
from zcp.httpserver import HttpServer, Reply
from zcp.wait import wait_until

TENANT = "7f9c2ba4-e88f-11e9-81b4-2a2ae2dbcce4"


def source_text(series: int, tenants: list[str]) -> bytes:
    lines = []
    for i in range(series):
        t = tenants[i % len(tenants)]
        lines.append(f'tenant:bench_value:sum{{tenant="{t}",vm_id="vm-{i:06d}"}} {i}.5')
    return ("\n".join(lines) + "\n").encode()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tenants", type=int, nargs="+", default=[20, 50])
    ap.add_argument("--series", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=60)
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
        gate = Gate(
            GateConfig(
                listen="127.0.0.1:0",
                metrics_listen="127.0.0.1:0",
                upstream=prom.url,
                tokens_file=tokens,
            )
        ).start()
        direct = requests.Session()
        via = requests.Session()
        match = {"match[]": f'{{__name__=~"tenant:.+",tenant="{TENANT}"}}'}
        gated = {"match[]": '{__name__=~"tenant:.+"}'}
        auth = {"Authorization": "Bearer bench-token"}
        print(f"\ngate: /federate of {args.series} series, {args.rounds} rounds alternating")
        print("| encoding | direct ms | through the gate ms | gate / direct |\n|---|---|---|---|")
        for enc in ("identity", "gzip"):
            d, g = [], []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                r1 = direct.get(
                    f"{prom.url}/federate",
                    params=match,
                    headers={"Accept-Encoding": enc},
                    timeout=30,
                )
                t1 = time.perf_counter()
                r2 = via.get(
                    f"http://127.0.0.1:{gate.port}/federate",
                    params=gated,
                    headers={**auth, "Accept-Encoding": enc},
                    timeout=30,
                )
                t2 = time.perf_counter()
                assert r1.status_code == r2.status_code == 200
                assert r1.text.count("\n") == r2.text.count("\n"), "not the same answer"
                d.append(t1 - t0)
                g.append(t2 - t1)
            md, mg = statistics.median(d) * 1000, statistics.median(g) * 1000
            print(f"| {enc} | {md:.1f} | {mg:.1f} | **{mg / md:.2f}** |")
        lines = r1.text.count("\n")
        print(f"({lines} lines per answer)")

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
            gate.shutdown()
        prom.stop()
        source.shutdown()


if __name__ == "__main__":
    main()
