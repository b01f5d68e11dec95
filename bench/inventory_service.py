#!/usr/bin/env python3
"""What the inventory service saves: a hypervisor's inventory refresh through the service vs
straight from CloudStack (what every hypervisor exporter did before), on one synthetic cloud.

A cloud of --vms VMs (2 volumes and 1 NIC each) on --hosts hypervisors is served by the
CloudStack API test server (lab/cloudstack_sim.py, which signs, pages and serialises as
CloudStack does). Measured in the same run, alternating:
* peer: one full CloudStack listing (CloudStackSource.load): the API calls and the time;
* ours: a hypervisor's refresh through the inventory service (ServiceSource.load): unchanged
  (a 304), changed (the whole view), and the host view (?host=).
Then per refresh round of all hypervisors: CloudStack calls with and without the service.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stats import p95
from exporters.inventory import InventoryService, serve
from lab.cloudstack_sim import CloudStackSim, CloudStackState
from zcp.config import CloudStackConfig, InventoryServiceSource
from zcp.inventory.cache import InventoryCache
from zcp.inventory.cloudstack import CloudStackSource
from zcp.inventory.model import Inventory
from zcp.inventory.remote import ServiceSource
from zcp.inventory.snapshot import PATH
from zcp.inventory.yamlfile import load_inventory_file

KEY, SECRET = "bench-key", "bench-secret"


def synthetic(vms: int, hosts: int) -> Inventory:
    """The demo cloud's tenants and pools with ``vms`` VMs spread over ``hosts`` hosts."""
    base = load_inventory_file(None)
    tenants = [t.account_id for t in base.tenants]
    pools = [p for p in base.storage_pools if p.storage_class]
    doc = base.model_dump(mode="json")
    doc.update(vms=[], volumes=[], nics=[], public_ips=[])
    for i in range(vms):
        vm_id = f"00000000-0000-4000-8000-{i:012d}"
        account = tenants[i % len(tenants)]
        doc["vms"].append(
            {
                "id": vm_id,
                "instance_name": f"i-2-{i}-VM",
                "name": f"vm-{i}",
                "account_id": account,
                "zone": "zone1",
                "host": f"kvm{i % hosts:03d}",
                "vcpus": 2,
                "memory_bytes": 2 << 30,
                "service_offering": "m2",
            }
        )
        for d in range(2):
            pool = pools[(i + d) % len(pools)]
            doc["volumes"].append(
                {
                    "id": f"10000000-0000-4000-8000-{i:010d}{d:02d}",
                    "name": f"vol-{i}-{d}",
                    "account_id": account,
                    "vm_id": vm_id,
                    "type": "ROOT" if d == 0 else "DATADISK",
                    "device_id": d,
                    "pool_id": pool.id,
                    "pool": pool.name,
                    "storage_class": pool.storage_class,
                    "size_bytes": 10 << 30,
                    "rbd_image": f"{pool.path}/vol-{i}-{d}",
                }
            )
        doc["nics"].append(
            {
                "id": f"20000000-0000-4000-8000-{i:012d}",
                "mac": f"02:00:{i >> 24 & 255:02x}:{i >> 16 & 255:02x}:"
                f"{i >> 8 & 255:02x}:{i & 255:02x}",
                "vm_id": vm_id,
                "network_id": "net-1",
                "network_name": "guest",
                "ip": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
            }
        )
    return Inventory.model_validate(doc)


def timed(fn: object, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vms", type=int, default=2000)
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    inv = synthetic(args.vms, args.hosts)
    print(f"cloud: {inv.counts()}", file=sys.stderr)
    sim = CloudStackSim(CloudStackState.from_inventory(inv), keys={KEY: SECRET}).start()
    cs = CloudStackSource(
        CloudStackConfig(url=sim.url, api_key=KEY, secret_key=SECRET, timeout_seconds=60)
    )
    cache = InventoryCache(cs.load, refresh_interval=3600)
    cache.refresh()
    server = serve(InventoryService(cache), "127.0.0.1:0", 30.0).start()
    url = f"http://127.0.0.1:{server.port}"
    try:
        before = len(sim.requests)
        cs.load()
        calls = len(sim.requests) - before
        cs_ms, unchanged_ms, full_ms, host_ms = [], [], [], []
        for r in range(args.rounds):
            steps = ["cs", "svc"] if r % 2 == 0 else ["svc", "cs"]
            for step in steps:
                if step == "cs":
                    cs_ms += timed(cs.load, 1)
                else:
                    client = ServiceSource(InventoryServiceSource(url=url, timeout_seconds=60))
                    full_ms += timed(client.load, 1)
                    unchanged_ms += timed(client.load, 1)
                    one = ServiceSource(
                        InventoryServiceSource(url=url, host="kvm000", timeout_seconds=60)
                    )
                    host_ms += timed(one.load, 1)
        full = requests.get(url + PATH, timeout=60)
        gz = requests.get(url + PATH, headers={"Accept-Encoding": "gzip"}, stream=True, timeout=60)
        gz_bytes = len(gz.raw.read())
        host = requests.get(url + PATH, params={"host": "kvm000"}, timeout=60)
        med = statistics.median
        print(
            f"\nCloudStack listing (peer): {calls} API calls, median {med(cs_ms):.0f} ms, "
            f"p95 {p95(cs_ms):.0f} ms"
        )
        print(
            f"service, changed (whole view): median {med(full_ms):.0f} ms "
            f"({len(full.content) / 1e6:.1f} MB, {gz_bytes / 1e6:.2f} MB gzip), "
            f"ratio {med(full_ms) / med(cs_ms):.3f}"
        )
        print(
            f"service, unchanged (304): median {med(unchanged_ms):.1f} ms, "
            f"ratio {med(unchanged_ms) / med(cs_ms):.4f}"
        )
        print(
            f"service, one host's view: median {med(host_ms):.1f} ms "
            f"({len(host.content) / 1e3:.0f} kB), ratio {med(host_ms) / med(cs_ms):.4f}"
        )
        print(
            f"per refresh round of {args.hosts} hypervisors: {calls * args.hosts} CloudStack "
            f"calls straight from the hypervisors, {calls} through the service"
        )
    finally:
        server.shutdown()
        sim.stop()


if __name__ == "__main__":
    main()
