"""Inventory from CloudStack (through the test server) and from YAML, and its cache."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from lab.cloudstack_sim import CloudStackSim
from tests.support import ADMIN_KEY, ADMIN_SECRET
from zcp.config import CloudStackConfig
from zcp.errors import CloudStackAuthError, CloudStackError, InventoryError
from zcp.inventory.cache import InventoryCache
from zcp.inventory.cloudstack import CloudStackSource, build_inventory, storage_class_of
from zcp.inventory.model import Inventory
from zcp.inventory.yamlfile import load_inventory_file


def cs_config(
    sim: CloudStackSim, secret: str = ADMIN_SECRET, page_size: int = 500, timeout: int = 5
) -> CloudStackConfig:
    return CloudStackConfig.model_validate(
        {
            "url": sim.url,
            "api_key": ADMIN_KEY,
            "secret_key": secret,
            "page_size": page_size,
            "timeout_seconds": timeout,
        }
    )


def comparable(inv: Inventory) -> dict[str, object]:
    doc = inv.model_dump(exclude={"source", "fetched_at"})
    return {k: sorted(map(repr, v)) for k, v in doc.items()}


def test_cloudstack_source_reads_the_whole_cloud(
    cloudstack: CloudStackSim, default_inventory: Inventory
) -> None:
    inv = CloudStackSource(cs_config(cloudstack, page_size=2)).load()
    assert inv.source == "cloudstack"
    # CloudStack also lists its own ROOT admin account; everything else round-trips exactly
    admin = [t for t in inv.tenants if t.name == "admin"]
    assert len(admin) == 1 and admin[0].domain_path == "ROOT"
    tenants = tuple(t for t in inv.tenants if t.name != "admin")
    assert comparable(inv.model_copy(update={"tenants": tenants})) == comparable(default_inventory)
    # paged: more than one page per list with pagesize=2
    assert max(int(r.get("page", 0)) for r in cloudstack.requests) >= 2
    assert all(
        r.get("listall") == "true"
        for r in cloudstack.requests
        if r["command"] not in ("listStoragePools",)
    )


def test_project_vms_belong_to_the_project_owner(cloudstack: CloudStackSim) -> None:
    inv = CloudStackSource(cs_config(cloudstack)).load()
    web = next(v for v in inv.vms if v.name == "web-1")
    assert inv.tenant_by_id[web.account_id].name == "acme"
    assert inv.project_name(web.account_id, web.project_id) == "web"


def test_wrong_secret_is_one_authentication_error(cloudstack: CloudStackSim) -> None:
    with pytest.raises(CloudStackAuthError) as exc:
        CloudStackSource(cs_config(cloudstack, secret="wrong")).load()
    message = str(exc.value)
    assert "rejected the API key or signature (401" in message and "\n" not in message
    assert "wrong" not in message and ADMIN_SECRET not in message


def test_unreachable_cloudstack(cloudstack: CloudStackSim) -> None:
    cfg = cs_config(cloudstack)
    cloudstack.stop()
    with pytest.raises(CloudStackError, match=r"cannot reach CloudStack at http://127\.0\.0\.1"):
        CloudStackSource(cfg).load()


def test_slow_cloudstack_times_out(cloudstack: CloudStackSim) -> None:
    cloudstack.delay_seconds = 2.5
    with pytest.raises(CloudStackError, match="did not answer listDomains in time"):
        CloudStackSource(cs_config(cloudstack, timeout=1)).load()


def test_objects_without_a_known_owner_are_left_out() -> None:
    accounts = [{"id": "a1", "name": "acme", "domainid": "d1"}]
    vms = [
        {"id": "v1", "instancename": "i-2-1-VM", "account": "acme", "domainid": "d1"},
        {"id": "v2", "instancename": "i-9-2-VM", "account": "ghost", "domainid": "d1"},
        {"id": "v3", "instancename": "i-9-3-VM", "projectid": "p-unknown", "domainid": "d1"},
    ]
    inv = build_inventory([{"id": "d1", "path": "ROOT"}], accounts, [], [], vms, [], [], {})
    assert [v.id for v in inv.vms] == ["v1"]


def test_storage_class_by_name_tag_or_class_tag() -> None:
    mapping = {"ceph-nvme": "fast", "ssd": "flow"}
    assert storage_class_of("ceph-nvme", (), mapping) == "fast"  # type: ignore[arg-type]
    assert storage_class_of("p1", ("x", "ssd"), mapping) == "flow"  # type: ignore[arg-type]
    assert storage_class_of("p2", ("bulk",), {}) == "bulk"
    assert storage_class_of("p3", ("hdd",), {}) is None


def test_bad_inventory_file_names_the_record(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(
        "tenants: [{account_id: a, name: x, domain_id: d, domain_path: ROOT}]\n"
        "vms: [{id: v, instance_name: i-1-1-VM, name: n, account_id: a, vcpus: -1}]\n"
    )
    with pytest.raises(InventoryError, match=r"vms\.0\.vcpus: Input should be greater"):
        load_inventory_file(path)
    path.write_text("tenants: []\nvms: [{id: v, instance_name: i, name: n, account_id: zz}]\n")
    with pytest.raises(InventoryError, match="vms: v names unknown account 'zz'"):
        load_inventory_file(path)


# -- the cache ----------------------------------------------------------------------------------
def test_outage_serves_the_cached_copy(cloudstack: CloudStackSim, tmp_path: Path) -> None:
    cache = InventoryCache(
        CloudStackSource(cs_config(cloudstack, timeout=2)).load,
        refresh_interval=3600,
        cache_file=tmp_path / "inv.json",
    )
    first = cache.refresh()
    assert len(first.vms) == 6
    cloudstack.stop()  # CloudStack goes down
    with pytest.raises(CloudStackError):
        cache.refresh()
    assert cache.current() is first
    assert cache.failures == 1 and "cannot reach CloudStack" in cache.last_error
    metrics = {m.name: m for m in cache.collect()}
    assert metrics["zcp_inventory_refresh_failures"].samples[0].value == 1
    assert metrics["zcp_inventory_age_seconds"].samples[0].value >= 0
    # a restart during the outage still has the last good copy, with its true age
    restarted = InventoryCache(
        CloudStackSource(cs_config(cloudstack, timeout=2)).load,
        refresh_interval=3600,
        cache_file=tmp_path / "inv.json",
    )
    assert restarted.current() == first
    assert restarted.current().fetched_at == first.fetched_at
    cloudstack.start()  # and comes back
    assert len(restarted.refresh().vms) == 6


def test_a_hanging_source_never_blocks_readers(default_inventory: Inventory) -> None:
    release, entered = threading.Event(), threading.Event()
    calls = []

    def loader() -> Inventory:
        calls.append(1)
        if len(calls) > 1:
            entered.set()
            release.wait(30)
        return default_inventory

    cache = InventoryCache(loader, refresh_interval=3600)
    cache.refresh()
    worker = threading.Thread(target=cache.refresh)
    worker.start()
    assert entered.wait(5)
    # the refresh is stuck in the source; readers get the last good copy at once
    assert cache.current() is default_inventory
    assert cache.age_seconds() is not None
    release.set()
    worker.join(5)


def test_background_refresh_retries_after_failure(default_inventory: Inventory) -> None:
    outcomes = [InventoryError("down"), InventoryError("still down"), default_inventory]
    done = threading.Event()

    def loader() -> Inventory:
        outcome = outcomes.pop(0) if outcomes else default_inventory
        if isinstance(outcome, Exception):
            raise outcome
        done.set()
        return outcome

    cache = InventoryCache(loader, refresh_interval=3600, min_retry=0.05)
    assert cache.current().vms == ()
    cache.start()
    try:
        assert done.wait(10)
        assert cache.wait_loaded(5)
        assert cache.failures == 2 and len(cache.current().vms) == 6
    finally:
        cache.stop()


def test_unexpected_loader_errors_keep_the_thread_alive(default_inventory: Inventory) -> None:
    def broken() -> Inventory:
        raise KeyError("id")

    cache = InventoryCache(broken, refresh_interval=3600)
    with pytest.raises(InventoryError, match="inventory refresh failed"):
        cache.refresh()
    assert cache.failures == 1


def test_inventory_collector_exports_identity_state_and_pool_classes(
    default_inventory: Inventory,
) -> None:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from zcp.inventory.cache import InventoryCache
    from zcp.inventory.metrics import InventoryCollector

    cache = InventoryCache(lambda: default_inventory, refresh_interval=3600)
    cache.refresh()
    registry = CollectorRegistry()
    registry.register(InventoryCollector(cache))  # type: ignore[arg-type]
    fams = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    states = {s.labels["vm_id"]: s.labels for s in fams["zcp_vm_state"].samples}
    assert set(states) == {vm.id for vm in default_inventory.vms}
    web1 = next(vm for vm in default_inventory.vms if vm.name == "web-1")
    assert states[web1.id]["state"] == "Running" and states[web1.id]["account"] == "acme"
    assert states[web1.id]["host"] == web1.host
    pools = {
        s.labels["ceph_pool"]: s.labels["storage_class"]
        for s in fams["zcp_storage_pool_info"].samples
    }
    assert pools == {sp.path: sp.storage_class for sp in default_inventory.storage_pools}
    assert set(pools.values()) == {"fast", "flow", "bulk"}
    assert len(fams["zcp_vm_info"].samples) == len(default_inventory.vms)


def test_a_copy_is_validated_and_reindexed(default_inventory: Inventory) -> None:
    vol = default_inventory.volumes[0]
    assert default_inventory.volume_by_rbd_image  # the index is cached on the original
    moved = vol.model_copy(update={"rbd_image": "rbd-fast/renamed"})
    copy = default_inventory.model_copy(update={"volumes": (moved, *default_inventory.volumes[1:])})
    assert copy.volume_by_rbd_image["rbd-fast/renamed"].id == vol.id
    assert vol.rbd_image not in copy.volume_by_rbd_image
    with pytest.raises(ValueError, match="names unknown account"):
        default_inventory.model_copy(
            update={"volumes": (vol.model_copy(update={"account_id": "nobody"}),)}
        )


def test_the_cache_file_temp_name_is_never_shared(
    default_inventory: Inventory, tmp_path: Path
) -> None:
    """Another writer's temporary file (here: a directory in its place, as a root exporter's
    file would be to a non-root one) does not stop the cache from being written."""
    path = tmp_path / "inv.json"
    (tmp_path / "inv.json.tmp").mkdir()
    cache = InventoryCache(lambda: default_inventory, refresh_interval=3600, cache_file=path)
    cache.refresh()
    assert path.exists()
    restarted = InventoryCache(lambda: default_inventory, refresh_interval=3600, cache_file=path)
    assert restarted.current() == cache.current()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inv.json", "inv.json.tmp"]
