"""The inventory service (``zcp-obs exporter inventory``) and the inventory source that reads it:
views, ETags, 304s, and the hypervisor exporters fed from it instead of CloudStack."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests
import yaml

from exporters.inventory import InventoryService, serve
from exporters.inventory.service import etag_matches
from lab.cloudstack_sim import CloudStackSim
from lab.libvirt import LibvirtLab
from lab.procs import Daemon, free_port
from lab.stack import ZCP_OBS
from tests.samples import Samples, from_families, parse, value, wait_until
from tests.support import ADMIN_KEY, ADMIN_SECRET
from zcp.config import InventoryServiceSource
from zcp.errors import InventoryError
from zcp.inventory.cache import InventoryCache
from zcp.inventory.metrics import fleet_metrics, inventory_info_metrics, tenant_info_metrics
from zcp.inventory.model import Inventory
from zcp.inventory.remote import ServiceSource
from zcp.inventory.snapshot import FETCHED_AT_HEADER, PATH, encode, host_view

IDENTITY = (
    "zcp_tenant_info",
    "zcp_vm_info",
    "zcp_volume_info",
    "zcp_nic_info",
    "zcp_vm_state",
    "zcp_storage_pool_info",
    "zcp_public_ip_info",
)


def identity(samples: Samples, names: tuple[str, ...] = IDENTITY) -> Samples:
    """Only the identity families' samples, without the target labels Prometheus would add."""
    return {k: v for k, v in samples.items() if k[0] in names}


def refreshed(inv: Inventory, minutes: int = 5) -> Inventory:
    """The same records, fetched ``minutes`` later (what an unchanged CloudStack refresh gives)."""
    assert inv.fetched_at is not None
    return inv.model_copy(update={"fetched_at": inv.fetched_at + timedelta(minutes=minutes)})


# -- views and ETags (pure) ----------------------------------------------------------------------
def test_host_view_keeps_the_hosts_vms_and_what_they_reference(
    default_inventory: Inventory,
) -> None:
    view = host_view(default_inventory, "kvm01")
    on_host = {vm.id for vm in default_inventory.vms if vm.host == "kvm01"}
    assert {vm.id for vm in view.vms} == on_host and on_host
    assert {v.id for v in view.volumes} == {
        v.id for v in default_inventory.volumes if v.vm_id in on_host
    }
    assert {n.id for n in view.nics} == {n.id for n in default_inventory.nics if n.vm_id in on_host}
    assert {t.account_id for t in view.tenants} == {
        vm.account_id for vm in default_inventory.vms if vm.id in on_host
    }
    assert view.storage_pools == default_inventory.storage_pools
    assert host_view(default_inventory, "no-such-host").vms == ()


def test_etag_follows_the_records_not_the_fetch_time(default_inventory: Inventory) -> None:
    first = encode(default_inventory)
    assert encode(refreshed(default_inventory)).etag == first.etag
    fewer = default_inventory.model_copy(update={"public_ips": ()})
    assert encode(fewer).etag != first.etag
    assert json.loads(first.body)["vms"][0]["id"] == default_inventory.vms[0].id


def test_if_none_match_lists_weak_tags_and_star() -> None:
    assert etag_matches('"a", W/"b"', '"b"') and etag_matches("*", '"x"')
    assert not etag_matches('"a"', '"b"') and not etag_matches(None, '"b"')


# -- the service over HTTP, in process -----------------------------------------------------------
class Source:
    """A loader whose inventory the test sets (a CloudStack that changes on demand)."""

    def __init__(self, inv: Inventory) -> None:
        self.inv: Inventory | None = inv

    def load(self) -> Inventory:
        if self.inv is None:
            raise InventoryError("CloudStack is down")
        return self.inv


@pytest.fixture
def service(default_inventory: Inventory) -> Iterator[tuple[Source, InventoryCache, str]]:
    source = Source(default_inventory)
    cache = InventoryCache(source.load, refresh_interval=3600)
    cache.refresh()
    server = serve(InventoryService(cache), "127.0.0.1:0", 8.0).start()
    yield source, cache, f"http://127.0.0.1:{server.port}"
    server.shutdown()


def test_snapshot_etag_304_gzip_and_host_view(
    service: tuple[Source, InventoryCache, str], default_inventory: Inventory
) -> None:
    _source, _cache, url = service
    full = requests.get(url + PATH, timeout=10)
    assert full.status_code == 200 and full.headers["Content-Type"] == "application/json"
    assert Inventory.model_validate_json(full.content) == default_inventory
    etag = full.headers["ETag"]
    again = requests.get(url + PATH, headers={"If-None-Match": etag}, timeout=10)
    assert again.status_code == 304 and again.content == b""
    assert again.headers["ETag"] == etag
    assert datetime.fromisoformat(again.headers[FETCHED_AT_HEADER]) == default_inventory.fetched_at
    # gzip when asked (requests asks and inflates); the same document
    raw = requests.get(url + PATH, headers={"Accept-Encoding": "gzip"}, stream=True, timeout=10)
    assert raw.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(raw.raw.read()) == full.content
    one = requests.get(url + PATH, params={"host": "kvm02"}, timeout=10)
    assert Inventory.model_validate_json(one.content) == host_view(default_inventory, "kvm02")
    assert one.headers["ETag"] != etag
    metrics = parse(requests.get(url + "/metrics", timeout=10).text)
    assert value(metrics, "zcp_inventory_service_requests_total", view="all", code="304") == 1
    assert value(metrics, "zcp_inventory_service_requests_total", view="host", code="200") == 1


def test_no_inventory_yet_is_a_503_with_the_reason() -> None:
    cache = InventoryCache(Source(None).load, refresh_interval=3600)  # type: ignore[arg-type]
    with pytest.raises(InventoryError):
        cache.refresh()
    server = serve(InventoryService(cache), "127.0.0.1:0", 8.0).start()
    try:
        resp = requests.get(f"http://127.0.0.1:{server.port}{PATH}", timeout=10)
        assert resp.status_code == 503 and "CloudStack is down" in resp.text
        source = ServiceSource(InventoryServiceSource(url=f"http://127.0.0.1:{server.port}"))
        with pytest.raises(InventoryError, match=r"answered 503: no inventory loaded yet"):
            source.load()
    finally:
        server.shutdown()


def test_service_source_transfers_only_changes(
    service: tuple[Source, InventoryCache, str], default_inventory: Inventory
) -> None:
    source, cache, url = service
    client = ServiceSource(InventoryServiceSource(url=url))
    first = client.load()
    assert first == default_inventory
    assert client.load() is first and client.not_modified == 1  # nothing changed: a 304
    # CloudStack refreshed, nothing changed: still a 304, but the copy is as young as the
    # service's (the hypervisor's inventory age stays true)
    source.inv = refreshed(default_inventory)
    cache.refresh()
    later = client.load()
    assert client.not_modified == 2 and later.fetched_at == source.inv.fetched_at
    assert later.vms == first.vms
    # a real change travels
    source.inv = default_inventory.model_copy(update={"public_ips": ()})
    cache.refresh()
    assert client.load().public_ips == () and client.not_modified == 2


def test_service_down_is_one_line(tmp_path: Path) -> None:
    client = ServiceSource(
        InventoryServiceSource(url=f"http://127.0.0.1:{free_port()}", timeout_seconds=2)
    )
    with pytest.raises(InventoryError) as err:
        client.load()
    assert str(err.value) == (
        f"cannot reach the inventory service at {client.cfg.url}: ConnectionError"
    )


# -- the real commands ---------------------------------------------------------------------------
def _write(path: Path, doc: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


def _command(name: str, workdir: Path, config: Path, *argv: str) -> Daemon:
    port = free_port()
    daemon = Daemon(
        name,
        [*ZCP_OBS, "--config", str(config), *argv, "--listen", f"127.0.0.1:{port}"],
        workdir / name,
        f"http://127.0.0.1:{port}/metrics",
    )
    daemon.start(60)
    return daemon


def _scrape(daemon: Daemon) -> Samples:
    return parse(requests.get(daemon.ready_url, timeout=30).text)


@pytest.mark.integration
def test_service_families_equal_the_inventory_and_feed_a_libvirt_exporter(
    cloudstack: CloudStackSim, libvirt_lab: LibvirtLab, tmp_path: Path
) -> None:
    from zcp.config import CloudStackConfig
    from zcp.inventory.cloudstack import CloudStackSource

    cs = {"url": cloudstack.url, "api_key": ADMIN_KEY, "secret_key": ADMIN_SECRET}
    direct = CloudStackSource(CloudStackConfig.model_validate(cs)).load()
    region = _write(
        tmp_path / "region.yaml", {"cloudstack": cs, "inventory": {"source": "cloudstack"}}
    )
    service = _command("inventory-service", tmp_path, region, "exporter", "inventory")
    daemons = [service]
    try:
        # /metrics of the service: the identity and state families of CloudStack's inventory
        assert wait_until(lambda: value(_scrape(service), "zcp_inventory_refreshes_total") >= 1, 30)
        expected = from_families(
            [*tenant_info_metrics(direct), *inventory_info_metrics(direct), *fleet_metrics(direct)]
        )
        assert identity(_scrape(service)) == expected

        # two libvirt exporters over the same guests: one asks CloudStack, one the service
        for vm in direct.vms[:3]:
            macs = tuple(n.mac for n in direct.nics_by_vm.get(vm.id, ()))
            libvirt_lab.create_guest(vm.instance_name, vm.id, macs=macs)
        base = service.ready_url.removesuffix("/metrics")
        libvirt = {"exporters": {"libvirt": {"uri": libvirt_lab.uri, "hostname": "kvm01"}}}
        from_cs = _command(
            "libvirt-cs",
            tmp_path,
            _write(
                tmp_path / "cs.yaml",
                {**libvirt, "cloudstack": cs, "inventory": {"source": "cloudstack"}},
            ),
            "exporter",
            "libvirt",
        )
        daemons.append(from_cs)
        from_service = _command(
            "libvirt-svc",
            tmp_path,
            _write(
                tmp_path / "hv.yaml",
                {
                    **libvirt,
                    "inventory": {
                        "source": "service",
                        "service": {"url": base},
                        "refresh_interval_seconds": 1,
                    },
                },
            ),
            "exporter",
            "libvirt",
        )
        daemons.append(from_service)
        names = ("zcp_vm_info", "zcp_volume_info", "zcp_nic_info")

        def same_identity() -> Samples:
            got = identity(_scrape(from_service), names)
            return got if got and got == identity(_scrape(from_cs), names) else {}

        labels = wait_until(same_identity, 30)
        assert labels, "the service-fed exporter labels its VMs differently"
        owned = {
            dict(k[1])["vm_id"]
            for k in labels
            if k[0] == "zcp_vm_info" and dict(k[1])["account_id"]
        }
        assert owned == {vm.id for vm in direct.vms[:3]}

        # the service goes away: the exporter keeps its last copy and says how old it is
        before = _scrape(from_service)
        service.stop()

        def failing() -> Samples | None:
            now = _scrape(from_service)
            return now if value(now, "zcp_inventory_refresh_failures_total") >= 2 else None

        after = wait_until(failing, 30)
        assert after is not None, "no failed refresh counted with the service down"
        assert identity(after, names) == identity(before, names)
        assert value(after, "zcp_inventory_age_seconds") > value(
            before, "zcp_inventory_age_seconds"
        )
        # ... and the service back: refreshes succeed again
        service.start(60)
        failures = value(_scrape(from_service), "zcp_inventory_refresh_failures_total")
        refreshes = value(_scrape(from_service), "zcp_inventory_refreshes_total")
        assert wait_until(
            lambda: value(_scrape(from_service), "zcp_inventory_refreshes_total") > refreshes + 1,
            30,
        )
        assert value(_scrape(from_service), "zcp_inventory_refresh_failures_total") == failures
    finally:
        for daemon in reversed(daemons):
            daemon.stop()
        for vm in direct.vms[:3]:
            if vm.instance_name in libvirt_lab.guests:
                libvirt_lab.destroy_guest(vm.instance_name)
