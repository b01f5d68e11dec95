"""The Ceph exporter's parsing core and collector on recorded real Ceph 16.2 output."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporters.ceph.collector import CephCollector
from exporters.ceph.parse import (
    CephOutputError,
    parse_bucket_stats,
    parse_df,
    parse_rbd_du,
    parse_usage,
    parse_user_list,
    rbd_pool_names,
)
from exporters.ceph.sources import CephCommandError, CephSources
from tests.samples import from_families, value
from zcp.config import CephConfig
from zcp.inventory.cache import InventoryCache
from zcp.inventory.model import Inventory, Volume

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "ceph"
ACME = "7b743d5e-a9e5-5cfe-8cbc-52b3cd725c70"
MIB = 1024 * 1024


def text(name: str) -> str:
    return (FIX / name).read_text()


def test_rbd_du_folds_snapshots_into_their_image() -> None:
    fast = {i.image: i for i in parse_rbd_du(text("rbd_du_rbd-fast.json"), "rbd-fast")}
    assert (fast["vol-a"].provisioned_bytes, fast["vol-a"].used_bytes) == (64 * MIB, 8 * MIB)
    assert (fast["vol-b"].provisioned_bytes, fast["vol-b"].used_bytes) == (128 * MIB, 0)
    (c,) = parse_rbd_du(text("rbd_du_rbd-bulk.json"), "rbd-bulk")
    assert (c.image, c.used_bytes, c.snapshots, c.snapshot_used_bytes) == (
        "vol-c",
        12 * MIB,
        1,
        4 * MIB,
    )


def test_rgw_buckets_usage_and_users() -> None:
    buckets = {b.name: b for b in parse_bucket_stats(text("rgw_bucket_stats.json"))}
    assert (buckets["web-assets"].stored_bytes, buckets["web-assets"].objects) == (600_000, 3)
    assert (buckets["backups"].stored_bytes, buckets["backups"].objects) == (100_000, 1)
    assert {b.owner for b in buckets.values()} == {ACME}
    usage = {u.user: u for u in parse_usage(text("rgw_usage_show.json"))}
    acme = usage[ACME]
    assert (acme.ops, acme.successful_ops, acme.bytes_received, acme.bytes_sent) == (
        7,
        7,
        700_000,
        100_000,
    )
    assert ACME in parse_user_list(text("rgw_user_list.json"))


def test_cephfs_subvolumes() -> None:
    from exporters.ceph.parse import parse_fs_ls, parse_name_list, parse_subvolume_info

    assert parse_fs_ls(text("ceph_fs_ls.json")) == ["cephfs"]
    assert parse_name_list(text("ceph_fs_subvolumegroup_ls.json"), "g") == [ACME]
    assert parse_name_list(text("ceph_fs_subvolume_ls.json"), "s") == ["scratch"]
    share = parse_subvolume_info(
        text("ceph_fs_subvolume_info_share1.json"), "cephfs", ACME, "share1"
    )
    assert (share.used_bytes, share.quota_bytes, share.data_pool) == (
        3_000_000,
        100 * MIB,
        "cephfs.cephfs.data",
    )
    bare = parse_subvolume_info(
        text("ceph_fs_subvolume_info_scratch.json"), "cephfs", "_nogroup", "scratch"
    )
    assert bare.quota_bytes is None  # "infinite"


def test_pools_and_their_applications() -> None:
    pools = {p.name: p for p in parse_df(text("ceph_df.json"))}
    assert pools["rbd-fast"].id == 8 and pools["rbd-fast"].max_avail_bytes > 0
    assert rbd_pool_names(text("ceph_osd_pool_ls_detail.json")) == ["rbd-fast", "rbd-bulk"]


@pytest.mark.parametrize(
    ("parse", "bad", "message"),
    [
        (lambda t: parse_rbd_du(t, "p"), "rbd: error opening pool", "not JSON"),
        (
            lambda t: parse_rbd_du(t, "p"),
            '{"images": [{"name": "x", "provisioned_size": "1"}]}',
            "expected a number",
        ),
        (parse_bucket_stats, '{"bucket": "x"}', "expected a list"),
        (parse_usage, '{"entries": []}', "no summary list"),
        (parse_df, '{"stats": {}}', "no pools list"),
    ],
)
def test_unexpected_output_is_a_clear_error(parse: object, bad: str, message: str) -> None:
    with pytest.raises(CephOutputError, match=message):
        parse(bad)  # type: ignore[operator]


class Recorded:
    """The command runner seam fed with the recorded outputs (a real cluster is in
    test_ceph_integration); a pool listed in ``failing`` fails like a timed-out command."""

    def __init__(self, failing: set[str] | None = None) -> None:
        self.failing = failing or set()
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str], timeout: float) -> str:
        self.calls.append(argv)
        key = " ".join(argv)
        if any(f in key for f in self.failing):
            raise CephCommandError(f"{key}: no answer within {timeout:.0f}s")
        files = {
            "ceph df detail": "ceph_df.json",
            "ceph osd pool ls detail": "ceph_osd_pool_ls_detail.json",
            "rbd du -p rbd-fast": "rbd_du_rbd-fast.json",
            "rbd du -p rbd-bulk": "rbd_du_rbd-bulk.json",
            "radosgw-admin bucket stats": "rgw_bucket_stats.json",
            "radosgw-admin usage show --show-log-entries=false": "rgw_usage_show.json",
            "ceph fs ls": "ceph_fs_ls.json",
            "ceph fs subvolumegroup ls cephfs": "ceph_fs_subvolumegroup_ls.json",
            f"ceph fs subvolume ls cephfs --group_name {ACME}": "ceph_fs_subvolume_ls_group.json",
            "ceph fs subvolume ls cephfs": "ceph_fs_subvolume_ls.json",
            f"ceph fs subvolume info cephfs share1 --group_name {ACME}": "ceph_fs_subvolume_info_share1.json",
            "ceph fs subvolume info cephfs scratch": "ceph_fs_subvolume_info_scratch.json",
        }
        return text(files[key])


def collector(default_inventory: Inventory, runner: Recorded) -> CephCollector:
    # the demo inventory's acme volume on rbd-fast/vol-a
    vol = default_inventory.volumes[0]
    inv = default_inventory.model_copy(
        update={
            "volumes": (
                vol.model_copy(update={"rbd_image": "rbd-fast/vol-a"}),
                *default_inventory.volumes[1:],
            )
        }
    )
    cache = InventoryCache(lambda: inv, refresh_interval=3600)
    cache.refresh()
    cfg = CephConfig(pool_classes={"rbd-bulk": "bulk", "rbd-fast": "fast"})
    sources = CephSources(cfg, runner)
    sources.refresh_df()
    sources.refresh_rbd()
    sources.refresh_rgw()
    sources.refresh_cephfs()
    return CephCollector(sources, cache, cfg)


def test_collector_labels_classes_and_identity(default_inventory: Inventory) -> None:
    runner = Recorded()
    col = collector(default_inventory, runner)
    got = from_families(list(col.collect()))
    vol: Volume = default_inventory.volumes[0]

    assert (
        value(
            got,
            "ceph_rbd_image_used_bytes",
            pool="rbd-fast",
            image="vol-a",
            storage_class="fast",
            volume_id=vol.id,
        )
        == 8 * MIB
    )
    assert value(got, "ceph_rbd_image_snapshots", image="vol-c", storage_class="bulk") == 1
    assert value(got, "zcp_volume_info", volume_id=vol.id, rbd_image="rbd-fast/vol-a") == 1
    assert value(got, "ceph_rgw_user_stored_bytes", user=ACME, account_id=ACME) == 700_000
    assert value(got, "ceph_rgw_user_buckets", user=ACME) == 2
    assert value(got, "ceph_rgw_user_received_bytes_total", user=ACME) == 700_000
    assert value(got, "ceph_rgw_bucket_objects", bucket="web-assets", account_id=ACME) == 3
    # the RGW pools are mapped to no class: said, not guessed
    assert value(got, "zcp_ceph_pool_info", pool="default.rgw.buckets.data", storage_class="") == 1
    assert value(got, "ceph_exporter_pools_unmapped") == 9
    # CephFS: the group is acme's account uuid; the bare subvolume has no quota
    assert (
        value(
            got, "ceph_cephfs_subvolume_used_bytes", subvolume="share1", account_id=ACME, group=ACME
        )
        == 3_000_000
    )
    assert value(got, "ceph_cephfs_subvolume_quota_bytes", subvolume="share1") == 100 * MIB
    assert (
        value(
            got,
            "ceph_cephfs_subvolume_used_bytes",
            subvolume="scratch",
            group="_nogroup",
            account_id="",
        )
        == 0
    )
    assert not [
        k
        for k in got
        if k[0] == "ceph_cephfs_subvolume_quota_bytes" and ("subvolume", "scratch") in k[1]
    ]
    for source in ("df", "rbd", "rgw", "cephfs"):
        assert value(got, "ceph_exporter_source_up", source=source) == 1
    # scrapes never run commands
    calls = len(runner.calls)
    list(col.collect())
    assert len(runner.calls) == calls


def test_a_failing_pool_keeps_its_last_result_and_marks_the_source(
    default_inventory: Inventory,
) -> None:
    runner = Recorded()
    col = collector(default_inventory, runner)
    runner.failing = {"rbd du -p rbd-bulk", "radosgw-admin"}
    col.sources.refresh_rbd()
    col.sources.refresh_rgw()
    got = from_families(list(col.collect()))
    assert got[("ceph_exporter_source_up", frozenset({("source", "rbd")}))] == 0
    assert got[("ceph_exporter_source_up", frozenset({("source", "rgw")}))] == 0
    assert got[("ceph_exporter_source_up", frozenset({("source", "df")}))] == 1
    # last complete results are still served, with their age
    assert any(n == "ceph_rbd_image_used_bytes" and ("image", "vol-c") in ls for n, ls in got)
    assert any(n == "ceph_rgw_bucket_stored_bytes" for n, _ in got)
    state = col.sources.snapshot().states["rbd"]
    assert "rbd du -p rbd-bulk: no answer" in state.error and state.failures == 1


def test_rgw_uid_pattern_maps_users_to_accounts(default_inventory: Inventory) -> None:
    col = collector(default_inventory, Recorded())
    col.uid_pattern = __import__("re").compile(r"tenant-(?P<account_id>.+)")
    assert col.account_of("tenant-abc") == "abc" and col.account_of(ACME) == ""


def test_a_cluster_without_rgw_has_no_rgw_source(default_inventory: Inventory) -> None:
    runner = Recorded()
    cfg = CephConfig(rgw_enabled=False)
    sources = CephSources(cfg, runner)
    sources.refresh_df()
    sources.refresh_rgw()
    assert not any(argv[0] == "radosgw-admin" for argv in runner.calls)
    cache = InventoryCache(lambda: default_inventory, refresh_interval=3600)
    cache.refresh()
    got = from_families(list(CephCollector(sources, cache, cfg).collect()))
    ups = {dict(ls)["source"] for n, ls in got if n == "ceph_exporter_source_up"}
    assert ups == {"df", "rbd", "cephfs"}
