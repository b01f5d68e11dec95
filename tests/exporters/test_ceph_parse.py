"""The Ceph exporter's parsing core and collector on recorded real Ceph 16.2 output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exporters.ceph.collector import CephCollector
from exporters.ceph.parse import (
    CephOutputError,
    CrushMap,
    CrushRule,
    RuleFacts,
    acting_hosts_min,
    osd_hosts,
    parse_bucket_stats,
    parse_crush_dump,
    parse_df,
    parse_pgs_brief,
    parse_pool_ls_detail,
    parse_rbd_du,
    parse_usage,
    parse_user_list,
    rbd_pool_names,
    rule_facts,
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
    details = parse_pool_ls_detail(text("ceph_osd_pool_ls_detail.json"))
    assert rbd_pool_names(details) == ["rbd-fast", "rbd-bulk"]


def test_pool_replication_and_rule() -> None:
    pools = {p.name: p for p in parse_pool_ls_detail(text("ceph_osd_pool_ls_detail.json"))}
    bulk, fast, ec = pools["rbd-bulk"], pools["rbd-fast"], pools["ec-data"]
    assert (bulk.id, bulk.size, bulk.min_size, bulk.crush_rule) == (9, 2, 1, 0)
    assert (fast.size, fast.min_size, fast.crush_rule, fast.applications) == (1, 1, 1, ("rbd",))
    assert (ec.size, ec.min_size, ec.crush_rule) == (3, 2, 2)  # k=2 + m=1


def test_crush_rules_failure_domain_class_and_osds() -> None:
    crush = parse_crush_dump(text("ceph_osd_crush_dump.json"))
    facts = {r.name: rule_facts(crush, r) for r in crush.rules.values()}
    # the lab's default rule: take default; choose firstn 0 type osd
    assert facts["replicated_rule"] == RuleFacts("replicated_rule", "osd", "", {"nvme": 1})
    # create-replicated fast-nvme default host nvme: take default~nvme; chooseleaf ... host
    fast = facts["fast-nvme"]
    assert (fast.failure_domain, fast.device_class, fast.osds) == ("host", "nvme", {"nvme": 1})
    ec = facts["ec-data"]  # set_*_tries steps, then choose indep 0 type osd
    assert (ec.failure_domain, ec.device_class) == ("osd", "")
    # choose firstn 0 type host; chooseleaf firstn 1 type osd: the higher type is the domain
    two = facts["two-step"]
    assert (two.failure_domain, two.device_class) == ("host", "nvme")
    # a rack between root and host; the shadow node-a~nvme is not a second host
    assert osd_hosts(crush) == {0: "node-a"}


def test_pg_acting_sets_and_the_hosts_they_span() -> None:
    pgs = parse_pgs_brief(text("ceph_pg_dump_pgs_brief.json"))
    assert len(pgs) == 89
    # ec-data (12): k+m=3 shards on one OSD, the two without an OSD are not hosts
    assert {acting for pool, acting in pgs if pool == 12} == {(0,)}
    crush = parse_crush_dump(text("ceph_osd_crush_dump.json"))
    spans = acting_hosts_min(pgs, osd_hosts(crush))
    assert spans == {pool: 1 for pool in range(1, 13)}


def test_hosts_min_and_osds_by_class_on_a_larger_map() -> None:
    """The same pure functions on a hand-made map of three hosts (the lab has one OSD)."""
    crush = CrushMap(
        device_classes={0: "ssd", 1: "ssd", 2: "hdd", 3: ""},
        bucket_names={-1: "default", -2: "a", -3: "b", -4: "c"},
        bucket_types={-1: "root", -2: "host", -3: "host", -4: "host"},
        bucket_items={-1: (-2, -3, -4), -2: (0,), -3: (1, 2), -4: (3,)},
        type_ids={"osd": 0, "host": 1, "root": 11},
        rules={0: CrushRule(0, "r", ((-1, "default"),), ("host",))},
    )
    assert rule_facts(crush, crush.rules[0]).osds == {"ssd": 2, "hdd": 1, "": 1}
    hosts = osd_hosts(crush)
    pgs = [(1, (0, 1)), (1, (1, 2)), (2, (0, 1, 3)), (2, (5,)), (3, ())]
    # pool 1: one PG on hosts a+b, one on b only; osd.5 in no host counts as its own
    assert acting_hosts_min(pgs, hosts) == {1: 1, 2: 1, 3: 0}


@pytest.mark.parametrize(
    ("parse", "bad", "message"),
    [
        (parse_crush_dump, "Error EACCES: access denied", "ceph osd crush dump: not JSON"),
        (parse_crush_dump, '{"devices": [], "buckets": []}', "no rules or types list"),
        (
            parse_crush_dump,
            '{"devices": [], "buckets": [], "types": [], "rules": [{"rule_id": 0}]}',
            "ceph osd crush dump: unexpected layout",
        ),
        (parse_pgs_brief, '{"pg_ready": false, "pg_stats": []}', "no PG statistics yet"),
        (parse_pgs_brief, '{"pg_ready": true}', "no pg_stats list"),
        (parse_pgs_brief, '[{"pgid": "x", "acting": [0]}]', "bad PG"),
        (
            parse_pgs_brief,
            '[{"pgid": "2.0", "state": "active", "acting": ["0"]}]',
            "acting of 2.0: expected a number",
        ),
        (
            parse_pool_ls_detail,
            '[{"pool_name": "p", "pool_id": 1, "min_size": 1, "crush_rule": 0}]',
            "ceph osd pool ls detail: size: expected a number",
        ),
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
    with pytest.raises(CephOutputError, match=message) as err:
        parse(bad)  # type: ignore[operator]
    assert "\n" not in str(err.value)


class Recorded:
    """The command runner seam fed with the recorded outputs (a real cluster is in
    test_ceph_integration); a pool listed in ``failing`` fails like a timed-out command, a
    command in ``replies`` answers that text instead."""

    def __init__(self, failing: set[str] | None = None) -> None:
        self.failing = failing or set()
        self.replies: dict[str, str] = {}
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str], timeout: float) -> str:
        self.calls.append(argv)
        key = " ".join(argv)
        if any(f in key for f in self.failing):
            raise CephCommandError(f"{key}: no answer within {timeout:.0f}s")
        if key in self.replies:
            return self.replies[key]
        files = {
            "ceph df detail": "ceph_df.json",
            "ceph osd pool ls detail": "ceph_osd_pool_ls_detail.json",
            "ceph osd crush dump": "ceph_osd_crush_dump.json",
            "ceph pg dump pgs_brief": "ceph_pg_dump_pgs_brief.json",
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
    sources.refresh_placement()
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
    assert value(got, "ceph_exporter_pools_unmapped") == 10
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
    for source in ("df", "rbd", "rgw", "cephfs", "placement"):
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
    assert ups == {"df", "rbd", "cephfs", "placement"}


def test_collector_exports_replication_failure_domain_and_media(
    default_inventory: Inventory,
) -> None:
    got = from_families(list(collector(default_inventory, Recorded()).collect()))
    bulk = {"pool": "rbd-bulk", "pool_id": "9"}
    assert value(got, "ceph_pool_size", **bulk) == 2
    assert value(got, "ceph_pool_min_size", **bulk) == 1
    assert value(got, "ceph_pool_size", pool="ec-data") == 3
    assert (
        value(
            got,
            "ceph_pool_crush_rule_info",
            pool="rbd-fast",
            pool_id="8",
            rule="fast-nvme",
            failure_domain="host",
            device_class="nvme",
        )
        == 1
    )
    assert (
        value(
            got,
            "ceph_pool_crush_rule_info",
            **bulk,
            rule="replicated_rule",
            failure_domain="osd",
            device_class="",
        )
        == 1
    )
    assert value(got, "ceph_pool_osds", **bulk, device_class="nvme") == 1
    assert value(got, "ceph_pool_pg_acting_hosts_min", **bulk) == 1
    assert value(got, "ceph_pool_pg_acting_hosts_min", pool="ec-data") == 1
    assert value(got, "ceph_exporter_source_up", source="placement") == 1


def test_a_rule_reaching_no_osd_says_zero_in_its_class(default_inventory: Inventory) -> None:
    """osd.0's class removed while rule fast-nvme still takes default~nvme: the shadow tree
    stays, empty (as Ceph 16.2 does)."""
    runner = Recorded()
    col = collector(default_inventory, runner)
    doc = json.loads(text("ceph_osd_crush_dump.json"))
    del doc["devices"][0]["class"]
    for bucket in doc["buckets"]:
        if "~" in bucket["name"]:
            bucket["items"] = []
    runner.replies["ceph osd crush dump"] = json.dumps(doc)
    col.sources.refresh_df()
    got = from_families(list(col.collect()))
    fast = [ls for n, ls in got if n == "ceph_pool_osds" and ("pool", "rbd-fast") in ls]
    assert fast == [frozenset({("pool", "rbd-fast"), ("pool_id", "8"), ("device_class", "nvme")})]
    assert value(got, "ceph_pool_osds", pool="rbd-fast") == 0
    assert value(got, "ceph_pool_osds", pool="rbd-bulk", device_class="") == 1


def test_a_failing_pg_dump_keeps_the_last_spans_and_marks_placement_only(
    default_inventory: Inventory,
) -> None:
    runner = Recorded()
    col = collector(default_inventory, runner)
    runner.failing = {"ceph pg dump"}
    col.sources.refresh_placement()
    col.sources.refresh_df()
    got = from_families(list(col.collect()))
    assert value(got, "ceph_exporter_source_up", source="placement") == 0
    assert value(got, "ceph_exporter_source_up", source="df") == 1
    assert value(got, "ceph_pool_pg_acting_hosts_min", pool="rbd-bulk") == 1  # last result


def test_placement_before_any_df_refresh_reads_the_crush_map_first(
    default_inventory: Inventory,
) -> None:
    runner = Recorded()
    sources = CephSources(CephConfig(), runner)
    sources.refresh_placement()
    assert [" ".join(a) for a in runner.calls][-1] == "ceph pg dump pgs_brief"
    assert "ceph osd crush dump" in [" ".join(a) for a in runner.calls]
    snap = sources.snapshot()
    assert snap.states["placement"].ok and snap.acting_hosts_min[9] == 1
