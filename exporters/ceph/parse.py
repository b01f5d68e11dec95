"""Pure parsing core of the Ceph exporter: the JSON of ``rbd du``, ``radosgw-admin`` and
``ceph df`` in, plain records out. Tests feed it recorded real Ceph 16.2 output
(tests/fixtures/ceph)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from zcp.errors import ZcpError


class CephOutputError(ZcpError):
    """A command's output is not what Ceph 16.2 prints."""


def _load(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CephOutputError(f"{what}: not JSON ({exc})") from None


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CephOutputError(f"{what}: expected a number, got {value!r:.60}")
    return value


@dataclass
class ImageUsage:
    """One RBD image: head provisioned/used, and its snapshots (count, used bytes)."""

    pool: str
    image: str
    provisioned_bytes: int
    used_bytes: int
    snapshots: int = 0
    snapshot_used_bytes: int = 0


def parse_rbd_du(text: str, pool: str) -> list[ImageUsage]:
    """``rbd du -p POOL --format json``: one entry per image head, snapshots folded in
    (``rbd du`` lists a snapshot as an entry with ``snapshot`` set, the head without)."""
    doc = _load(text, f"rbd du {pool}")
    entries = doc.get("images") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise CephOutputError(f"rbd du {pool}: no images list")
    heads: dict[str, ImageUsage] = {}
    snaps: list[dict[str, Any]] = []
    for e in entries:
        if not isinstance(e, dict) or "name" not in e:
            raise CephOutputError(f"rbd du {pool}: bad entry {e!r:.80}")
        if "snapshot" in e:
            snaps.append(e)
            continue
        heads[e["name"]] = ImageUsage(
            pool,
            str(e["name"]),
            _int(e.get("provisioned_size"), "provisioned_size"),
            _int(e.get("used_size"), "used_size"),
        )
    for e in snaps:
        head = heads.get(e["name"])
        if head is not None:
            head.snapshots += 1
            head.snapshot_used_bytes += _int(e.get("used_size"), "used_size")
    return list(heads.values())


@dataclass
class Bucket:
    """One RGW bucket: owner (RGW uid), stored bytes and objects over all its categories."""

    name: str
    owner: str
    tenant: str
    stored_bytes: int
    actual_bytes: int
    objects: int


def parse_bucket_stats(text: str) -> list[Bucket]:
    """``radosgw-admin bucket stats --format json`` (all buckets)."""
    doc = _load(text, "radosgw-admin bucket stats")
    if not isinstance(doc, list):
        raise CephOutputError("radosgw-admin bucket stats: expected a list")
    out = []
    for b in doc:
        if not isinstance(b, dict) or "bucket" not in b:
            raise CephOutputError(f"radosgw-admin bucket stats: bad entry {b!r:.80}")
        usage = b.get("usage") or {}
        size = actual = objects = 0
        for cat in usage.values():  # rgw.main, rgw.multimeta, ...
            size += _int(cat.get("size", 0), "size")
            actual += _int(cat.get("size_actual", 0), "size_actual")
            objects += _int(cat.get("num_objects", 0), "num_objects")
        out.append(
            Bucket(
                str(b["bucket"]),
                str(b.get("owner", "")),
                str(b.get("tenant", "")),
                size,
                actual,
                objects,
            )
        )
    return out


@dataclass
class UserUsage:
    """Totals of one RGW user in the usage log."""

    user: str
    ops: int
    successful_ops: int
    bytes_sent: int
    bytes_received: int


def parse_usage(text: str) -> list[UserUsage]:
    """``radosgw-admin usage show --show-log-entries=false --format json``: per-user totals."""
    doc = _load(text, "radosgw-admin usage show")
    summary = doc.get("summary") if isinstance(doc, dict) else None
    if not isinstance(summary, list):
        raise CephOutputError("radosgw-admin usage show: no summary list")
    out = []
    for u in summary:
        total = u.get("total") if isinstance(u, dict) else None
        if not isinstance(total, dict) or "user" not in u:
            raise CephOutputError(f"radosgw-admin usage show: bad entry {u!r:.80}")
        out.append(
            UserUsage(
                str(u["user"]),
                _int(total.get("ops", 0), "ops"),
                _int(total.get("successful_ops", 0), "successful_ops"),
                _int(total.get("bytes_sent", 0), "bytes_sent"),
                _int(total.get("bytes_received", 0), "bytes_received"),
            )
        )
    return out


def parse_user_list(text: str) -> list[str]:
    """``radosgw-admin user list --format json``."""
    doc = _load(text, "radosgw-admin user list")
    if not isinstance(doc, list) or not all(isinstance(u, str) for u in doc):
        raise CephOutputError("radosgw-admin user list: expected a list of uids")
    return list(doc)


@dataclass
class Pool:
    """A pool of ``ceph df``: its name and id (the mgr module exports its numbers)."""

    name: str
    id: int
    stored_bytes: int
    max_avail_bytes: int


def parse_df(text: str) -> list[Pool]:
    """``ceph df detail --format json``: the pools."""
    doc = _load(text, "ceph df")
    pools = doc.get("pools") if isinstance(doc, dict) else None
    if not isinstance(pools, list):
        raise CephOutputError("ceph df: no pools list")
    out = []
    for p in pools:
        stats = p.get("stats") if isinstance(p, dict) else None
        if not isinstance(stats, dict) or "name" not in p:
            raise CephOutputError(f"ceph df: bad pool {p!r:.80}")
        out.append(
            Pool(
                str(p["name"]),
                _int(p.get("id"), "id"),
                _int(stats.get("stored", 0), "stored"),
                _int(stats.get("max_avail", 0), "max_avail"),
            )
        )
    return out


def rbd_pool_names(text: str) -> list[str]:
    """Pools with the ``rbd`` application in ``ceph osd pool ls detail --format json``."""
    doc = _load(text, "ceph osd pool ls detail")
    if not isinstance(doc, list):
        raise CephOutputError("ceph osd pool ls detail: expected a list")
    return [
        str(p["pool_name"])
        for p in doc
        if isinstance(p, dict) and "rbd" in (p.get("application_metadata") or {})
    ]


def parse_fs_ls(text: str) -> list[str]:
    """``ceph fs ls --format json``: the file system names (empty: no CephFS)."""
    doc = _load(text, "ceph fs ls")
    if not isinstance(doc, list):
        raise CephOutputError("ceph fs ls: expected a list")
    return [str(fs["name"]) for fs in doc if isinstance(fs, dict) and "name" in fs]


def parse_name_list(text: str, what: str) -> list[str]:
    """``ceph fs subvolumegroup ls`` / ``subvolume ls`` (``[{"name": ...}]``)."""
    doc = _load(text, what)
    if not isinstance(doc, list):
        raise CephOutputError(f"{what}: expected a list")
    return [str(e["name"]) for e in doc if isinstance(e, dict) and "name" in e]


@dataclass
class Subvolume:
    """One CephFS subvolume: used bytes, quota (None: none) and its data pool."""

    fs: str
    group: str
    name: str
    used_bytes: int
    quota_bytes: int | None
    data_pool: str


def parse_subvolume_info(text: str, fs: str, group: str, name: str) -> Subvolume:
    """``ceph fs subvolume info FS NAME [--group_name G] --format json``."""
    doc = _load(text, f"ceph fs subvolume info {fs} {name}")
    if not isinstance(doc, dict):
        raise CephOutputError(f"ceph fs subvolume info {name}: expected an object")
    quota = doc.get("bytes_quota")
    return Subvolume(
        fs,
        group,
        name,
        _int(doc.get("bytes_used"), "bytes_used"),
        quota if isinstance(quota, int) and not isinstance(quota, bool) else None,
        str(doc.get("data_pool", "")),
    )
