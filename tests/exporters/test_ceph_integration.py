"""The Ceph exporter against a real single-node Ceph 16.2 cluster (lab/ceph.py): pools in the
three storage classes, RBD images with known writes, RGW users and buckets filled over S3, and
pools' replication, CRUSH rules and device classes as the cluster changes them."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from exporters.ceph import CephCollector, CephSources
from exporters.http import ExporterServer
from lab.ceph import CephLab
from tests.samples import Samples, parse, series, value, wait_until
from tests.support import MIB, need_binary
from zcp.config import CephConfig
from zcp.inventory.cache import InventoryCache
from zcp.inventory.model import Inventory

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cloud(ceph_cloud: dict[str, Any]) -> dict[str, Any]:
    """The session's tenant data in Ceph (tests/conftest.py: ``ceph_cloud``)."""
    return ceph_cloud


@pytest.fixture
def exporter(
    ceph_lab: CephLab, default_inventory: Inventory, cloud: dict[str, Any]
) -> Iterator[tuple[CephSources, Any]]:
    cfg = CephConfig(
        conf=ceph_lab.conf,
        keyring=ceph_lab.keyring,
        rgw_endpoint=ceph_lab.rgw_url,
        rbd_interval_seconds=3600,
        rgw_interval_seconds=3600,
        df_interval_seconds=3600,
        workers=4,
        command_timeout_seconds=8,
    )
    cache = InventoryCache(lambda: default_inventory, refresh_interval=3600)
    cache.refresh()
    sources = CephSources(cfg)
    sources.refresh_df()
    sources.refresh_rbd()
    sources.refresh_rgw()
    sources.refresh_cephfs()
    sources.refresh_placement()
    server = ExporterServer("ceph", CephCollector(sources, cache, cfg), "127.0.0.1", 0, 8.0).start()
    url = f"http://127.0.0.1:{server.port}/metrics"

    def scrape() -> Samples:
        return parse(requests.get(url, timeout=30).text)

    scrape.url = url  # type: ignore[attr-defined]
    yield sources, scrape
    server.shutdown()


def test_rbd_usage_equals_what_ceph_reports(
    exporter: tuple[CephSources, Any],
    ceph_lab: CephLab,
    cloud: dict[str, Any],
    default_inventory: Inventory,
) -> None:
    _, scrape = exporter
    got = scrape()
    by_image = default_inventory.volume_by_rbd_image
    for rbd_image, written in cloud["written"].items():
        pool, image = rbd_image.split("/")
        du = ceph_lab.json("rbd", "du", f"{pool}/{image}")["images"][0]
        labels = {
            "pool": pool,
            "image": image,
            "volume_id": by_image[rbd_image].id,
            "storage_class": pool.removeprefix("rbd-"),
        }
        assert (
            value(got, "ceph_rbd_image_provisioned_bytes", **labels)
            == du["provisioned_size"]
            == 32 * MIB
        )
        assert value(got, "ceph_rbd_image_used_bytes", **labels) == du["used_size"] == written
    # the pool the storage-class map does not know: its images keep their numbers, no class
    assert value(got, "ceph_rbd_image_used_bytes", pool="odd-pool", storage_class="") == 4 * MIB
    assert value(got, "zcp_ceph_pool_info", pool="odd-pool", storage_class="") == 1
    assert value(got, "zcp_ceph_pool_info", pool="rbd-flow", storage_class="flow") == 1
    assert value(got, "ceph_exporter_pools_unmapped") >= 1
    assert value(got, "ceph_exporter_source_up", source="rbd") == 1


def test_rgw_usage_equals_what_ceph_reports(
    exporter: tuple[CephSources, Any], ceph_lab: CephLab, cloud: dict[str, Any]
) -> None:
    sources, scrape = exporter
    account = cloud["account"]
    seen: list[dict[str, Any]] = []

    def flushed() -> bool:
        seen.append(
            ceph_lab.json(
                "radosgw-admin", "usage", "show", "--uid", account, "--show-log-entries=false"
            )["summary"][0]["total"]
        )
        return bool(seen[-1]["successful_ops"] >= 6)

    wait_until(flushed, timeout=20, interval=1)  # the usage log is flushed every second
    usage = seen[-1]
    sources.refresh_rgw()
    got = scrape()
    for bucket, sizes in cloud["objects"].items():
        assert value(got, "ceph_rgw_bucket_stored_bytes", bucket=bucket, account_id=account) == sum(
            sizes
        )
        assert value(got, "ceph_rgw_bucket_objects", bucket=bucket) == len(sizes)
    total = sum(sum(s) for s in cloud["objects"].values())
    assert value(got, "ceph_rgw_user_stored_bytes", user=account, account_id=account) == total
    assert value(got, "ceph_rgw_user_buckets", user=account) == 2
    exported = value(got, "ceph_rgw_user_received_bytes_total", user=account)
    assert exported == usage["bytes_received"] >= total
    assert value(got, "ceph_rgw_user_successful_ops_total", user=account) == usage["successful_ops"]


def test_cephfs_subvolumes_equal_what_ceph_reports(
    exporter: tuple[CephSources, Any], ceph_lab: CephLab, cloud: dict[str, Any]
) -> None:
    sources, scrape = exporter
    account = cloud["account"]
    ceph_lab.run("ceph", "fs", "subvolumegroup", "create", "cephfs", account)
    ceph_lab.run(
        "ceph",
        "fs",
        "subvolume",
        "create",
        "cephfs",
        "home",
        "--group_name",
        account,
        "--size",
        str(64 * MIB),
    )
    path = ceph_lab.run(
        "ceph", "fs", "subvolume", "getpath", "cephfs", "home", "--group_name", account
    ).stdout.strip()
    ceph_lab.write_cephfs(f"{path}/a", b"q" * 2_500_000)
    seen: list[dict[str, Any]] = []

    def reached() -> bool:
        seen.append(
            ceph_lab.json(
                "ceph", "fs", "subvolume", "info", "cephfs", "home", "--group_name", account
            )
        )
        return bool(seen[-1]["bytes_used"] == 2_500_000)

    # recursive stats reach the subvolume within seconds
    wait_until(reached, timeout=30, interval=1)
    info = seen[-1]
    sources.refresh_cephfs()
    got = scrape()
    labels = {"fs": "cephfs", "group": account, "subvolume": "home", "account_id": account}
    assert (
        value(got, "ceph_cephfs_subvolume_used_bytes", **labels) == info["bytes_used"] == 2_500_000
    )
    assert value(got, "ceph_cephfs_subvolume_quota_bytes", **labels) == 64 * MIB
    assert value(got, "ceph_exporter_source_up", source="cephfs") == 1
    assert value(got, "ceph_cephfs_filesystems") == 1


def test_an_image_deleted_between_refreshes_disappears(
    exporter: tuple[CephSources, Any], ceph_lab: CephLab
) -> None:
    sources, scrape = exporter
    ceph_lab.create_image("odd-pool", "short-lived", "8M")
    sources.refresh_rbd()
    assert series(scrape(), "ceph_rbd_image_used_bytes", image="short-lived")
    ceph_lab.run("rbd", "rm", "odd-pool/short-lived")
    sources.refresh_rbd()
    got = scrape()
    assert not series(got, "ceph_rbd_image_used_bytes", image="short-lived")
    assert series(got, "ceph_rbd_image_used_bytes", image="scratch")


def test_exposition_passes_promtool_and_leaves_the_mgr_modules_families_alone(
    exporter: tuple[CephSources, Any], ceph_lab: CephLab
) -> None:
    need_binary("promtool", "prometheus")
    _, scrape = exporter
    ours = {n for n, _ in scrape()}
    mgr = {n for n, _ in parse(requests.get(ceph_lab.mgr_prometheus_url, timeout=30).text)}
    assert "ceph_health_status" in mgr
    assert not ours & mgr, sorted(ours & mgr)[:5]
    text = requests.get(scrape.url, timeout=30).text  # type: ignore[attr-defined]
    proc = subprocess.run(
        ["promtool", "check", "metrics"], capture_output=True, text=True, input=text, timeout=30
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_stopped_radosgw_costs_only_the_rgw_source(
    exporter: tuple[CephSources, Any], ceph_lab: CephLab
) -> None:
    sources, scrape = exporter
    ceph_lab.stop_rgw()
    try:
        sources.refresh_rgw()
        sources.refresh_rbd()
        got = scrape()
        assert value(got, "ceph_exporter_source_up", source="rgw") == 0
        assert value(got, "ceph_exporter_source_up", source="rbd") == 1
        assert series(got, "ceph_rgw_bucket_stored_bytes", bucket="site")  # last result kept
        assert "does not answer" in sources.snapshot().states["rgw"].error
    finally:
        ceph_lab.start_rgw()
    sources.refresh_rgw()
    assert value(scrape(), "ceph_exporter_source_up", source="rgw") == 1


def test_a_stopped_osd_costs_the_data_sources_not_the_scrape(
    exporter: tuple[CephSources, Any], ceph_lab: CephLab
) -> None:
    sources, scrape = exporter
    before = value(scrape(), "ceph_exporter_source_last_refresh_timestamp_seconds", source="rbd")
    ceph_lab.stop_osd()
    try:
        ceph_lab.run("ceph", "osd", "down", "0")
        t0 = time.monotonic()
        sources.refresh_rbd()
        assert time.monotonic() - t0 < 30  # every rbd du has its 8 s deadline
        sources.refresh_df()
        t1 = time.monotonic()
        got = scrape()
        assert time.monotonic() - t1 < 2  # a scrape never waits on Ceph
        assert value(got, "ceph_exporter_source_up", source="rbd") == 0
        assert value(got, "ceph_exporter_source_up", source="df") == 1  # the mon answers
        # the last complete result is still served, and says how old it is
        assert (
            value(got, "ceph_exporter_source_last_refresh_timestamp_seconds", source="rbd")
            == before
        )
        assert series(got, "ceph_rbd_image_used_bytes", pool="rbd-fast")
    finally:
        ceph_lab.start_osd()

    def rbd_up() -> bool:
        sources.refresh_rbd()
        return value(scrape(), "ceph_exporter_source_up", source="rbd") == 1

    assert wait_until(rbd_up, timeout=60, interval=1), sources.snapshot().states["rbd"].error


def test_a_hung_ceph_mon_costs_deadlines_not_the_scrape(
    exporter: tuple[CephSources, Any], ceph_lab: CephLab
) -> None:
    """ceph-mon SIGSTOPped: every ceph/rbd CLI call hangs; each is killed at its deadline, the
    scrape answers at once from the last results, and the sources recover after SIGCONT."""
    import signal

    sources, scrape = exporter
    before = value(scrape(), "ceph_exporter_source_last_refresh_timestamp_seconds", source="df")
    assert ceph_lab.mon is not None
    ceph_lab.mon.signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        sources.refresh_df()  # two CLI calls, each with its 8 s deadline
        assert time.monotonic() - t0 < 2 * 8 + 5
        got = scrape()
        assert value(got, "ceph_exporter_source_up", source="df") == 0
        assert "no answer within" in sources.snapshot().states["df"].error
        # the last complete result is still served, with its age
        assert (
            value(got, "ceph_exporter_source_last_refresh_timestamp_seconds", source="df") == before
        )
        assert series(got, "zcp_ceph_pool_info", pool="rbd-fast")
    finally:
        ceph_lab.mon.signal(signal.SIGCONT)

    def df_up() -> bool:
        sources.refresh_df()
        return value(scrape(), "ceph_exporter_source_up", source="df") == 1

    assert wait_until(df_up, timeout=90, interval=1), sources.snapshot().states["df"].error

    def rbd_up() -> bool:
        sources.refresh_rbd()
        return value(scrape(), "ceph_exporter_source_up", source="rbd") == 1

    assert wait_until(rbd_up, timeout=90, interval=1), sources.snapshot().states["rbd"].error


PLACED = "zcp-placed"
CLASS_RULE = "zcp-nvme-host"


@pytest.fixture
def placed_pool(ceph_lab: CephLab) -> Iterator[str]:
    """A pool of this test's own with size 2 / min_size 1: undersized on the lab's one OSD,
    still active. Deleted afterwards (it makes the cluster warn)."""
    ceph_lab.create_pool(PLACED, rbd=False)
    try:
        ceph_lab.set_pool(PLACED, "size", 2)
        ceph_lab.set_pool(PLACED, "min_size", 1)
        yield PLACED
    finally:
        ceph_lab.delete_pool(PLACED)


def all_active(ceph_lab: CephLab, pool: str) -> bool:
    states = ceph_lab.pg_states(pool)
    return bool(states) and all(s.startswith("active") for s in states)


def test_pools_show_their_replication_rule_and_hosts(
    exporter: tuple[CephSources, Any], ceph_lab: CephLab, placed_pool: str
) -> None:
    sources, scrape = exporter
    assert wait_until(lambda: all_active(ceph_lab, placed_pool), timeout=60, interval=0.5)
    sources.refresh_df()
    sources.refresh_placement()
    got = scrape()
    placed = {"pool": placed_pool}
    assert value(got, "ceph_pool_size", **placed) == 2
    assert value(got, "ceph_pool_min_size", **placed) == 1
    fast = ceph_lab.json("ceph", "osd", "pool", "get", "rbd-fast", "all")
    assert (
        value(got, "ceph_pool_size", pool="rbd-fast", pool_id=str(fast["pool_id"]))
        == (fast["size"])
    )
    # the lab's default rule: take default; choose firstn 0 type osd
    rule = {"rule": "replicated_rule", "failure_domain": "osd", "device_class": ""}
    assert value(got, "ceph_pool_crush_rule_info", **placed, **rule) == 1
    cls = ceph_lab.device_class(0)
    assert value(got, "ceph_pool_osds", **placed, device_class=cls) == 1
    # one host: every pool's PGs span exactly one
    spans = {
        dict(ls)["pool"]: v for (n, ls), v in got.items() if n == "ceph_pool_pg_acting_hosts_min"
    }
    assert spans[placed_pool] == 1 and spans["rbd-fast"] == 1
    assert set(spans.values()) == {1}
    assert value(got, "ceph_exporter_source_up", source="placement") == 1


def test_a_pool_moved_to_a_device_class_rule_shows_it(
    exporter: tuple[CephSources, Any], ceph_lab: CephLab, placed_pool: str
) -> None:
    """osd.0 becomes nvme, a rule takes default~nvme with failure domain host, the pool moves
    onto it: rule, failure domain, class and OSDs follow at the next df refresh. Restored after:
    pool back on the default rule, rule removed, osd.0's class back."""
    sources, scrape = exporter
    original = ceph_lab.device_class(0)
    try:
        ceph_lab.set_device_class(0, "nvme")
        ceph_lab.create_rule(CLASS_RULE, "nvme", "host")
        ceph_lab.set_pool(placed_pool, "crush_rule", CLASS_RULE)
        sources.refresh_df()
        got = scrape()
        assert (
            value(
                got,
                "ceph_pool_crush_rule_info",
                pool=placed_pool,
                rule=CLASS_RULE,
                failure_domain="host",
                device_class="nvme",
            )
            == 1
        )
        classes = {
            dict(ls)["device_class"]: v
            for (n, ls), v in got.items()
            if n == "ceph_pool_osds" and dict(ls)["pool"] == placed_pool
        }
        assert classes == {"nvme": 1}
        # a pool still on the default rule: no class taken, the OSD now counted as nvme
        assert value(got, "ceph_pool_crush_rule_info", pool="rbd-fast", device_class="") == 1
        assert value(got, "ceph_pool_osds", pool="rbd-fast", device_class="nvme") == 1
        # the PGs re-peer on the new rule: still one host
        assert wait_until(lambda: all_active(ceph_lab, placed_pool), timeout=60, interval=0.5)
        sources.refresh_placement()
        assert value(scrape(), "ceph_pool_pg_acting_hosts_min", pool=placed_pool) == 1
    finally:
        ceph_lab.set_pool(placed_pool, "crush_rule", "replicated_rule")
        ceph_lab.remove_rule(CLASS_RULE)
        ceph_lab.set_device_class(0, original)
    sources.refresh_df()
    got = scrape()
    assert value(got, "ceph_pool_crush_rule_info", pool=placed_pool, rule="replicated_rule") == 1
    assert value(got, "ceph_pool_osds", pool=placed_pool, device_class=original) == 1
