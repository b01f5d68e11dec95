"""A short live run: a real KVM guest, the libvirt exporter, a real Prometheus scraping it, and
the metering job over the hour in progress. It also settles the traffic direction on a real
guest: libvirt's receive counter is what the guest's tap delivered to the guest."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from exporters.http import ExporterServer
from exporters.libvirt.source import LibvirtCollector, LibvirtSource
from lab.libvirt import LibvirtLab
from lab.prometheus import PrometheusServer
from metering.job import Job, Options
from metering.meters import enabled
from metering.models import UsageRecord
from metering.periods import floor_hour
from metering.pricing import load_price_book
from metering.records import Rules
from metering.source import QuerySource
from metering.store import engine_for, upgrade
from tests.support import need_binary
from zcp.inventory.cache import InventoryCache
from zcp.inventory.model import Inventory
from zcp.wait import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def live(
    libvirt_lab: LibvirtLab, default_inventory: Inventory, prometheus: PrometheusServer
) -> Iterator[tuple[str, str, str, str]]:
    need_binary("virsh", "libvirt-clients")
    vm = next(v for v in default_inventory.vms if v.name == "web-2")
    nic = next(n for n in default_inventory.nics if n.vm_id == vm.id)
    libvirt_lab.create_guest(vm.instance_name, vm.id, macs=(nic.mac,))
    cache = InventoryCache(lambda: default_inventory, refresh_interval=3600)
    cache.refresh()
    source = LibvirtSource(libvirt_lab.uri)
    server = ExporterServer(
        "libvirt", LibvirtCollector(source, cache, "kvm-live", 8.0), "127.0.0.1", 0, 8.0
    ).start()
    prometheus.write_config(
        {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": "libvirt",
                    "static_configs": [{"targets": [f"127.0.0.1:{server.port}"]}],
                }
            ],
        }
    )
    try:
        yield vm.id, nic.id, vm.account_id, libvirt_lab.uri
    finally:
        prometheus.write_config({"global": {"scrape_interval": "1s"}, "scrape_configs": []})
        server.shutdown()
        source.close()
        libvirt_lab.destroy_guest(vm.instance_name)


def test_live_run_and_traffic_direction(
    live: tuple[str, str, str, str], prometheus: PrometheusServer, tmp_path: object
) -> None:
    vm_id, nic_id, account, uri = live
    rx = f'libvirt_domain_interface_receive_bytes_total{{nic_id="{nic_id}"}}'
    state = f'libvirt_domain_state{{vm_id="{vm_id}"}}'
    assert wait_until(lambda: prometheus.query(rx), 30), "no interface series scraped"
    # direction, on the real guest: libvirt's "receive" is what its tap device transmitted
    # to the guest, "transmit" what the tap received from it (libvirt swaps the tap's view),
    # so network.bytes_received is what the guest received and bytes_sent what it sent
    device = prometheus.query(rx)[0]["metric"]["device"]
    sysfs = Path(f"/sys/class/net/{device}/statistics")
    tap_tx0, tap_rx0 = int((sysfs / "tx_bytes").read_text()), int((sysfs / "rx_bytes").read_text())
    stats = subprocess.run(
        ["virsh", "-c", uri, "domifstat", vm_id, device], capture_output=True, text=True, check=True
    ).stdout
    tap_tx1, tap_rx1 = int((sysfs / "tx_bytes").read_text()), int((sysfs / "rx_bytes").read_text())
    got = dict(line.split()[1:] for line in stats.splitlines() if line.strip())
    assert tap_tx0 <= int(got["rx_bytes"]) <= tap_tx1
    assert tap_rx0 <= int(got["tx_bytes"]) <= tap_rx1
    # let a few scrapes land, then meter the hour in progress as if it had settled
    first = wait_until(lambda: prometheus.query(f"count_over_time({state}[1h]) >= 5"), 30)
    assert first
    hour = floor_hour(datetime.now(UTC))
    engine = engine_for(f"sqlite:///{tmp_path}/live.db")
    upgrade(engine)
    job = Job(
        QuerySource(prometheus.url),
        engine,
        load_price_book(None),
        enabled(),
        Options(rules=Rules(max_gap_ms=10_000, hold_ms=1_000)),
        now=lambda: hour + timedelta(hours=1, minutes=20),
    )
    at = datetime.now(UTC)
    job.run(hour, hour + timedelta(hours=1))
    with Session(engine) as s:
        records = {(r.meter, r.resource_id): r for r in s.scalars(select(UsageRecord))}
    running = records[("vm.running_hours", vm_id)]
    # the state samples Prometheus holds for this hour bound the running time: from the
    # first to the last sample, plus at most one hold after the last
    ts = prometheus.query(f"timestamp({state})")
    span = prometheus.query(
        f"max_over_time(timestamp({state})[1h:1s]) - min_over_time(timestamp({state})[1h:1s])"
    )
    assert ts and span
    assert (
        Decimal(span[0]["value"][1]) - 2
        <= running.quantity
        <= Decimal(span[0]["value"][1]) + 2 + Decimal((datetime.now(UTC) - at).total_seconds())
    )
    assert running.account_id == account and running.flags == ""
