"""Pure parsing core of the Ceph exporter: the JSON of ``rbd du``, ``radosgw-admin``,
``ceph df``, ``ceph osd pool ls detail``, ``ceph osd crush dump`` and ``ceph pg dump`` in, plain
records out, and what follows from them (a CRUSH rule's failure domain, device class and OSDs;
the hosts a pool's PGs span). Tests feed it recorded real Ceph 16.2 output
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


def rbd_pool_names(details: list[PoolDetail]) -> list[str]:
    """Pools with the ``rbd`` application, from ``ceph osd pool ls detail``."""
    return [p.name for p in details if "rbd" in p.applications]


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


# -- replication, failure domain and media -----------------------------------------------------


@dataclass(frozen=True)
class PoolDetail:
    """A pool of ``ceph osd pool ls detail``: replication (``size`` is k+m for an
    erasure-coded pool) and the id of its CRUSH rule."""

    name: str
    id: int
    size: int
    min_size: int
    crush_rule: int
    applications: tuple[str, ...]


def parse_pool_ls_detail(text: str) -> list[PoolDetail]:
    """``ceph osd pool ls detail --format json``."""
    what = "ceph osd pool ls detail"
    doc = _load(text, what)
    if not isinstance(doc, list):
        raise CephOutputError(f"{what}: expected a list")
    out = []
    for p in doc:
        if not isinstance(p, dict) or "pool_name" not in p:
            raise CephOutputError(f"{what}: bad pool {p!r:.80}")
        out.append(
            PoolDetail(
                str(p["pool_name"]),
                _int(p.get("pool_id"), f"{what}: pool_id"),
                _int(p.get("size"), f"{what}: size"),
                _int(p.get("min_size"), f"{what}: min_size"),
                _int(p.get("crush_rule"), f"{what}: crush_rule"),
                tuple(str(a) for a in (p.get("application_metadata") or {})),
            )
        )
    return out


@dataclass(frozen=True)
class CrushRule:
    """A CRUSH rule: the items its ``take`` steps start from and the bucket types its
    choose/chooseleaf steps pick."""

    id: int
    name: str
    takes: tuple[tuple[int, str], ...]  # (item id, item name), in step order
    choose_types: tuple[str, ...]


@dataclass
class CrushMap:
    """What ``ceph osd crush dump`` says about placement: the hierarchy (shadow buckets such
    as ``default~nvme`` included), each device's class and the rules."""

    device_classes: dict[int, str]  # OSD id -> class ("" without)
    bucket_names: dict[int, str]  # bucket id (< 0) -> name
    bucket_types: dict[int, str]  # bucket id -> type name (host, rack, root...)
    bucket_items: dict[int, tuple[int, ...]]  # bucket id -> child ids (< 0 buckets, >= 0 OSDs)
    type_ids: dict[str, int]  # type name -> level (osd 0 ... root 11)
    rules: dict[int, CrushRule]


CHOOSE_OPS = frozenset({"choose_firstn", "chooseleaf_firstn", "choose_indep", "chooseleaf_indep"})


def parse_crush_dump(text: str) -> CrushMap:
    """``ceph osd crush dump --format json``."""
    what = "ceph osd crush dump"
    doc = _load(text, what)
    if not isinstance(doc, dict):
        raise CephOutputError(f"{what}: expected an object")
    sections = {k: doc.get(k) for k in ("devices", "buckets", "rules", "types")}
    missing = [k for k, v in sections.items() if not isinstance(v, list)]
    if missing:
        raise CephOutputError(f"{what}: no {' or '.join(missing)} list")
    crush = CrushMap({}, {}, {}, {}, {}, {})
    try:
        for d in doc["devices"]:
            crush.device_classes[_int(d["id"], f"{what}: device id")] = str(d.get("class", ""))
        for t in doc["types"]:
            crush.type_ids[str(t["name"])] = _int(t["type_id"], f"{what}: type_id")
        for b in doc["buckets"]:
            bid = _int(b["id"], f"{what}: bucket id")
            crush.bucket_names[bid] = str(b["name"])
            crush.bucket_types[bid] = str(b["type_name"])
            crush.bucket_items[bid] = tuple(_int(i["id"], f"{what}: item id") for i in b["items"])
        for r in doc["rules"]:
            takes, types = [], []
            for step in r["steps"]:
                if step["op"] == "take":
                    item = _int(step["item"], f"{what}: take item")
                    takes.append((item, str(step.get("item_name", ""))))
                elif step["op"] in CHOOSE_OPS:
                    types.append(str(step["type"]))
            rid = _int(r["rule_id"], f"{what}: rule_id")
            crush.rules[rid] = CrushRule(rid, str(r["rule_name"]), tuple(takes), tuple(types))
    except (KeyError, TypeError, AttributeError) as exc:
        raise CephOutputError(f"{what}: unexpected layout ({type(exc).__name__}: {exc})") from None
    return crush


@dataclass(frozen=True)
class RuleFacts:
    """Where a CRUSH rule puts data: its failure domain (the highest bucket type it chooses
    among), the device class it takes ("" none) and the OSDs it can select, by class."""

    rule: str
    failure_domain: str
    device_class: str
    osds: dict[str, int]  # device class ("" without) -> OSDs under its take items


def osds_under(crush: CrushMap, item: int) -> set[int]:
    """The OSDs at or below ``item`` (an OSD id or a bucket id) in the hierarchy."""
    found: set[int] = set()
    todo, seen = [item], set()
    while todo:
        i = todo.pop()
        if i >= 0:
            found.add(i)
        elif i not in seen:  # a bucket linked twice is walked once
            seen.add(i)
            todo.extend(crush.bucket_items.get(i, ()))
    return found


def take_class(crush: CrushMap, item: int, name: str) -> str:
    """The device class a ``take`` step restricts to: Ceph's shadow bucket of class C under
    bucket B is named ``B~C``; a take of a plain bucket (or an OSD) has none."""
    name = name or crush.bucket_names.get(item, "")
    return name.partition("~")[2]


def rule_facts(crush: CrushMap, rule: CrushRule) -> RuleFacts:
    """Failure domain, device class and selectable OSDs of ``rule``. Several take steps with
    different classes give their classes joined by ``,``; no choose step, no failure domain."""
    domain = max(rule.choose_types, key=lambda t: crush.type_ids.get(t, -1), default="")
    classes = dict.fromkeys(take_class(crush, item, name) for item, name in rule.takes)
    osds: set[int] = set()
    for item, _ in rule.takes:
        osds |= osds_under(crush, item)
    by_class: dict[str, int] = {}
    for osd in sorted(osds):
        cls = crush.device_classes.get(osd, "")
        by_class[cls] = by_class.get(cls, 0) + 1
    return RuleFacts(rule.name, domain, ",".join(classes), by_class)


def osd_hosts(crush: CrushMap) -> dict[int, str]:
    """OSD id -> name of the CRUSH ``host`` bucket holding it (shadow buckets skipped)."""
    out: dict[int, str] = {}
    for bid, type_name in crush.bucket_types.items():
        name = crush.bucket_names[bid]
        if type_name == "host" and "~" not in name:
            for osd in osds_under(crush, bid):
                out.setdefault(osd, name)
    return out


NO_OSD = 2**31 - 1  # CRUSH_ITEM_NONE: an erasure-coded PG's shard without an OSD


def parse_pgs_brief(text: str) -> list[tuple[int, tuple[int, ...]]]:
    """``ceph pg dump pgs_brief --format json``: (pool id, acting OSDs) of every PG the mgr has
    a report of (PGs in state ``unknown`` are left out; so are an erasure-coded PG's missing
    shards). Ceph 15+ wraps the list as ``{"pg_ready": ..., "pg_stats": [...]}``; 14 did not."""
    what = "ceph pg dump pgs_brief"
    doc = _load(text, what)
    if isinstance(doc, dict):
        if doc.get("pg_ready") is False:
            raise CephOutputError(f"{what}: the mgr has no PG statistics yet (pg_ready false)")
        doc = doc.get("pg_stats")
    if not isinstance(doc, list):
        raise CephOutputError(f"{what}: no pg_stats list")
    out = []
    for pg in doc:
        acting = pg.get("acting") if isinstance(pg, dict) else None
        pgid = str(pg.get("pgid", "")) if isinstance(pg, dict) else ""
        pool, dot, _ = pgid.partition(".")
        if not isinstance(acting, list) or not dot or not pool.isdigit():
            raise CephOutputError(f"{what}: bad PG {pg!r:.80}")
        if "unknown" in str(pg.get("state", "")):
            continue
        osds = tuple(_int(o, f"{what}: acting of {pgid}") for o in acting)
        out.append((int(pool), tuple(o for o in osds if o >= 0 and o != NO_OSD)))
    return out


def acting_hosts_min(
    pgs: list[tuple[int, tuple[int, ...]]], hosts: dict[int, str]
) -> dict[int, int]:
    """Pool id -> the least number of distinct hosts any of its PGs' acting sets spans. An
    OSD no host bucket holds counts as a host of its own."""
    out: dict[int, int] = {}
    for pool, acting in pgs:
        n = len({hosts.get(osd, f"osd.{osd}") for osd in acting})
        out[pool] = min(n, out.get(pool, n))
    return out
