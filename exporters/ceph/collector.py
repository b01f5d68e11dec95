"""The Ceph exporter's collector: the sources' last complete results as families, with
storage classes and CloudStack identity, and each pool's replication, failure domain and media.
Never runs a Ceph command."""

from __future__ import annotations

import re
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporters.ceph.sources import CephSources, Snapshot
from zcp.config import CephConfig
from zcp.inventory.cache import InventoryCache
from zcp.inventory.metrics import volume_info_metric
from zcp.inventory.model import Inventory

IMAGE = ["pool", "image", "storage_class", "volume_id"]


def pool_classes(inv: Inventory, cfg: CephConfig) -> dict[str, str]:
    """Ceph pool -> storage class: the inventory's RBD pools (``path`` is the Ceph pool),
    overridden by the config's ``ceph.pool_classes``."""
    out: dict[str, str] = {
        sp.path: sp.storage_class for sp in inv.storage_pools if sp.path and sp.storage_class
    }
    out.update(cfg.pool_classes)
    return out


class CephCollector:
    """Prometheus collector over :class:`CephSources`."""

    def __init__(self, sources: CephSources, inventory: InventoryCache, cfg: CephConfig) -> None:
        self.sources = sources
        self.inventory = inventory
        self.cfg = cfg
        self.uid_pattern = re.compile(cfg.rgw_uid_pattern)
        self.group_pattern = re.compile(cfg.cephfs_group_pattern)

    def account_of(self, uid: str) -> str:
        m = self.uid_pattern.fullmatch(uid)
        return m.group("account_id") if m else ""

    def collect(self, timeout: float | None = None) -> Iterator[Metric]:
        yield from self.collect_versioned()
        yield from self.collect_live()

    def version(self) -> object:
        """Changes whenever a source refresh ends or the inventory is replaced: the versioned
        families are rendered once per version (the HTTP server caches them)."""
        return (self.sources.generation, id(self.inventory.current()))

    def collect_versioned(self) -> Iterator[Metric]:
        snap = self.sources.snapshot()
        inv = self.inventory.current()
        classes = pool_classes(inv, self.cfg)
        yield from self._pools(snap, classes)
        yield from self._placement(snap)
        yield from self._rbd(snap, classes, inv)
        yield from self._rgw(snap)
        yield from self._cephfs(snap, classes)
        yield from self._health(snap)

    def collect_live(self) -> Iterator[Metric]:
        yield from self.inventory.collect()

    def _pools(self, snap: Snapshot, classes: dict[str, str]) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "zcp_ceph_pool_info",
            "A Ceph pool and its storage class (value 1; empty class: not mapped).",
            labels=["pool", "pool_id", "storage_class"],
        )
        unmapped = 0
        for p in snap.pools:
            cls = classes.get(p.name, "")
            unmapped += 0 if cls else 1
            info.add_metric([p.name, str(p.id), cls], 1)
        yield info
        yield GaugeMetricFamily(
            "ceph_exporter_pools_unmapped",
            "Pools no storage class is configured for.",
            value=unmapped,
        )

    def _placement(self, snap: Snapshot) -> Iterator[Metric]:
        pool = ["pool", "pool_id"]
        size = GaugeMetricFamily(
            "ceph_pool_size",
            "Copies of a pool's objects (Ceph's size; k+m for an erasure-coded pool).",
            labels=pool,
        )
        min_size = GaugeMetricFamily(
            "ceph_pool_min_size",
            "Copies (shards) a PG of the pool needs to serve I/O.",
            labels=pool,
        )
        rule = GaugeMetricFamily(
            "ceph_pool_crush_rule_info",
            "A pool's CRUSH rule: its failure domain (the highest bucket type it chooses) and "
            "the device class it takes (empty: any); value 1.",
            labels=[*pool, "rule", "failure_domain", "device_class"],
        )
        osds = GaugeMetricFamily(
            "ceph_pool_osds",
            "OSDs the pool's CRUSH rule can select (those under its take items), by device "
            "class (empty: OSDs without one).",
            labels=[*pool, "device_class"],
        )
        hosts = GaugeMetricFamily(
            "ceph_pool_pg_acting_hosts_min",
            "Least number of distinct CRUSH hosts the acting set of any of the pool's PGs "
            "spans (ceph pg dump; PGs the mgr has no report of are left out).",
            labels=pool,
        )
        for p in snap.pool_details:
            labels = [p.name, str(p.id)]
            size.add_metric(labels, p.size)
            min_size.add_metric(labels, p.min_size)
            facts = snap.rules.get(p.crush_rule)
            if facts is not None:
                rule.add_metric([*labels, facts.rule, facts.failure_domain, facts.device_class], 1)
                # a rule reaching no OSD says so in its own class, rather than not at all
                for cls, n in (facts.osds or {facts.device_class: 0}).items():
                    osds.add_metric([*labels, cls], n)
            span = snap.acting_hosts_min.get(p.id)
            if span is not None:
                hosts.add_metric(labels, span)
        yield from (size, min_size, rule, osds, hosts)

    def _rbd(self, snap: Snapshot, classes: dict[str, str], inv: Inventory) -> Iterator[Metric]:
        prov = GaugeMetricFamily(
            "ceph_rbd_image_provisioned_bytes",
            "Provisioned size of an RBD image (rbd du).",
            labels=IMAGE,
        )
        used = GaugeMetricFamily(
            "ceph_rbd_image_used_bytes", "Bytes an RBD image's head uses (rbd du).", labels=IMAGE
        )
        snaps = GaugeMetricFamily(
            "ceph_rbd_image_snapshots", "Snapshots of an RBD image.", labels=IMAGE
        )
        snap_used = GaugeMetricFamily(
            "ceph_rbd_image_snapshot_used_bytes",
            "Bytes an RBD image's snapshots use (rbd du).",
            labels=IMAGE,
        )
        by_image = inv.volume_by_rbd_image
        found = []
        for pool, images in sorted(snap.images.items()):
            cls = classes.get(pool, "")
            for img in images:
                vol = by_image.get(f"{pool}/{img.image}")
                if vol is not None:
                    found.append(vol)
                labels = [pool, img.image, cls, vol.id if vol else ""]
                prov.add_metric(labels, img.provisioned_bytes)
                used.add_metric(labels, img.used_bytes)
                snaps.add_metric(labels, img.snapshots)
                snap_used.add_metric(labels, img.snapshot_used_bytes)
        yield from (prov, used, snaps, snap_used)
        yield volume_info_metric(found)

    def _rgw(self, snap: Snapshot) -> Iterator[Metric]:
        b_bytes = GaugeMetricFamily(
            "ceph_rgw_bucket_stored_bytes",
            "Bytes stored in a bucket.",
            labels=["bucket", "owner", "account_id"],
        )
        b_objs = GaugeMetricFamily(
            "ceph_rgw_bucket_objects",
            "Objects in a bucket.",
            labels=["bucket", "owner", "account_id"],
        )
        per_user: dict[str, list[int]] = {}
        for b in snap.buckets:
            account = self.account_of(b.owner)
            b_bytes.add_metric([b.name, b.owner, account], b.stored_bytes)
            b_objs.add_metric([b.name, b.owner, account], b.objects)
            agg = per_user.setdefault(b.owner, [0, 0, 0])
            agg[0] += b.stored_bytes
            agg[1] += b.objects
            agg[2] += 1
        yield from (b_bytes, b_objs)
        user = ["user", "account_id"]
        u_bytes = GaugeMetricFamily(
            "ceph_rgw_user_stored_bytes", "Bytes stored in a user's buckets.", labels=user
        )
        u_objs = GaugeMetricFamily(
            "ceph_rgw_user_objects", "Objects in a user's buckets.", labels=user
        )
        u_bkts = GaugeMetricFamily("ceph_rgw_user_buckets", "Buckets a user owns.", labels=user)
        for uid, (nbytes, objs, bkts) in sorted(per_user.items()):
            labels = [uid, self.account_of(uid)]
            u_bytes.add_metric(labels, nbytes)
            u_objs.add_metric(labels, objs)
            u_bkts.add_metric(labels, bkts)
        yield from (u_bytes, u_objs, u_bkts)
        fams = {
            "ops": CounterMetricFamily(
                "ceph_rgw_user_ops", "S3/Swift requests (usage log).", labels=user
            ),
            "successful_ops": CounterMetricFamily(
                "ceph_rgw_user_successful_ops", "Successful requests (usage log).", labels=user
            ),
            "bytes_sent": CounterMetricFamily(
                "ceph_rgw_user_sent_bytes", "Bytes sent to clients (usage log).", labels=user
            ),
            "bytes_received": CounterMetricFamily(
                "ceph_rgw_user_received_bytes",
                "Bytes received from clients (usage log).",
                labels=user,
            ),
        }
        for u in snap.usage:
            labels = [u.user, self.account_of(u.user)]
            for key, fam in fams.items():
                fam.add_metric(labels, getattr(u, key))
        yield from fams.values()

    def _cephfs(self, snap: Snapshot, classes: dict[str, str]) -> Iterator[Metric]:
        labels = ["fs", "group", "subvolume", "account_id", "storage_class"]
        used = GaugeMetricFamily(
            "ceph_cephfs_subvolume_used_bytes",
            "Bytes used in a CephFS subvolume (recursive).",
            labels=labels,
        )
        quota = GaugeMetricFamily(
            "ceph_cephfs_subvolume_quota_bytes",
            "Quota of a CephFS subvolume (only where one is set).",
            labels=labels,
        )
        for v in snap.subvolumes:
            m = self.group_pattern.fullmatch(v.group)
            values = [
                v.fs,
                v.group,
                v.name,
                m.group("account_id") if m else "",
                classes.get(v.data_pool, ""),
            ]
            used.add_metric(values, v.used_bytes)
            if v.quota_bytes is not None:
                quota.add_metric(values, v.quota_bytes)
        yield from (used, quota)
        yield GaugeMetricFamily(
            "ceph_cephfs_filesystems", "CephFS file systems present.", value=len(snap.filesystems)
        )

    def _health(self, snap: Snapshot) -> Iterator[Metric]:
        src = ["source"]
        up = GaugeMetricFamily(
            "ceph_exporter_source_up", "1 if the source's last refresh succeeded.", labels=src
        )
        last = GaugeMetricFamily(
            "ceph_exporter_source_last_refresh_timestamp_seconds",
            "Unix time of the source's last complete refresh (its data is as old as this).",
            labels=src,
        )
        dur = GaugeMetricFamily(
            "ceph_exporter_source_refresh_duration_seconds",
            "Duration of the source's last refresh.",
            labels=src,
        )
        fails = CounterMetricFamily(
            "ceph_exporter_source_refresh_failures", "Failed refreshes of the source.", labels=src
        )
        for name, st in sorted(snap.states.items()):
            up.add_metric([name], 1 if st.ok else 0)
            last.add_metric([name], st.last_success)
            dur.add_metric([name], st.duration)
            fails.add_metric([name], st.failures)
        yield from (up, last, dur, fails)
        yield GaugeMetricFamily(
            "ceph_rbd_images",
            "RBD images in the last rbd refresh.",
            value=sum(len(v) for v in snap.images.values()),
        )
