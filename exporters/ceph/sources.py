"""The Ceph exporter's imperative shell: background refreshes of five sources, each on its
own schedule, each command with a deadline; a scrape only reads their last complete results.

* ``df``: ``ceph df detail``, ``ceph osd pool ls detail`` (pools, their ids, applications,
  size, min_size and CRUSH rule) and ``ceph osd crush dump`` (rules, hierarchy, device
  classes). The CRUSH map goes with the pool list because the pools' rule ids index into it:
  read in the same refresh, just after the pools (a rule in use cannot be removed), every pool's
  rule is in the map, and a pool moved to a new rule shows the new rule's facts at once. It is
  small (it grows with OSDs and buckets, not with PGs: 1.7 KB on the lab) and one more call
  (~270 ms) per df refresh;
* ``placement``: ``ceph pg dump pgs_brief``, the acting set of every PG (~100 bytes per PG:
  10 MB on a cluster of 100,000 PGs), on its own longer interval, with df's last CRUSH map for
  the OSD -> host mapping. One call for all pools, against one ``ceph pg ls-by-pool`` per pool
  printing ~2.2 KB per PG (lab, 577 PGs in 4 pools: 244 ms and 55 KB against 1110 ms and
  1.3 MB);
* ``rbd``: ``rbd du`` of every RBD pool, at most ``workers`` at once. ``rbd du`` reads each
  image's object map (fast-diff) or every object (without it): the slow part, never inside a
  scrape. A pool whose ``rbd du`` fails keeps its previous result; the source is then marked
  failed until a refresh covers every pool again;
* ``rgw``: ``radosgw-admin bucket stats`` (every bucket with owner, bytes, objects) and
  ``usage show`` (per-user totals of the usage log), plus a probe of the radosgw endpoint when
  one is configured (radosgw-admin reads RADOS directly and works while radosgw is down).

Ceph is spoken to through its CLIs with ``--format json``, decided by measurement (single-node
lab, Ceph 16.2): ``ceph df`` 176 ms by CLI against 0.4 ms as a librados ``mon_command``;
``rbd du`` of a pool 32 ms by CLI against 4.4 ms per image through librbd's ``diff_iterate``;
``radosgw-admin bucket stats`` 47 ms (no binding exists for the RGW admin side). The calls run
in the background a few times per refresh interval, where the difference costs nothing a scrape
sees (a full refresh of 220 images and 50 users takes about 1.1 s), and the CLIs need no
binding to the Debian Python's ABI (the project's Python is its own). See docs/design.md.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests

from exporters.ceph.parse import (
    Bucket,
    CephOutputError,
    ImageUsage,
    Pool,
    PoolDetail,
    RuleFacts,
    Subvolume,
    UserUsage,
    acting_hosts_min,
    osd_hosts,
    parse_bucket_stats,
    parse_crush_dump,
    parse_df,
    parse_fs_ls,
    parse_name_list,
    parse_pgs_brief,
    parse_pool_ls_detail,
    parse_rbd_du,
    parse_subvolume_info,
    parse_usage,
    rbd_pool_names,
    rule_facts,
)
from zcp.config import CephConfig
from zcp.errors import ZcpError
from zcp.logs import FailureLog

log = logging.getLogger(__name__)
SOURCES = ("df", "rbd", "rgw", "cephfs", "placement")


class CephCommandError(ZcpError):
    """A Ceph CLI failed, timed out or is missing."""


Runner = Callable[[list[str], float], str]


def cli_runner(cfg: CephConfig) -> Runner:
    """Run a Ceph CLI against ``cfg``'s cluster with ``--format json`` and a deadline."""

    def run(argv: list[str], timeout: float) -> str:
        full = [argv[0], "-c", str(cfg.conf), "--id", cfg.id]
        if cfg.keyring is not None:
            full += ["--keyring", str(cfg.keyring)]
        full += [*argv[1:], "--format", "json"]
        try:
            proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise CephCommandError(f"{' '.join(argv)}: no answer within {timeout:.0f}s") from None
        except OSError as exc:
            raise CephCommandError(f"{argv[0]}: {exc.strerror}") from None
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
            raise CephCommandError(f"{' '.join(argv)} failed ({proc.returncode}): {tail[0]}")
        return proc.stdout

    return run


@dataclass
class SourceState:
    """The last outcome of one source's refreshes."""

    name: str
    ok: bool = False
    last_success: float = 0.0  # unix time of the last complete refresh
    last_attempt: float = 0.0
    duration: float = 0.0
    failures: int = 0
    error: str = ""


@dataclass
class Snapshot:
    """Last complete results of every source (what a scrape reads)."""

    pools: list[Pool] = field(default_factory=list)
    images: dict[str, list[ImageUsage]] = field(default_factory=dict)  # by pool
    buckets: list[Bucket] = field(default_factory=list)
    usage: list[UserUsage] = field(default_factory=list)
    subvolumes: list[Subvolume] = field(default_factory=list)
    filesystems: list[str] = field(default_factory=list)
    states: dict[str, SourceState] = field(default_factory=dict)
    pool_details: list[PoolDetail] = field(default_factory=list)  # df
    rules: dict[int, RuleFacts] = field(default_factory=dict)  # df: by CRUSH rule id
    acting_hosts_min: dict[int, int] = field(default_factory=dict)  # placement: by pool id


class CephSources:
    """Background refresh of the sources; :meth:`snapshot` is what scrapes read."""

    def __init__(self, cfg: CephConfig, runner: Runner | None = None) -> None:
        self.cfg = cfg
        self.run = runner or cli_runner(cfg)
        self._lock = threading.Lock()
        self._failures = FailureLog(log, "ceph source refresh failed")
        self.sources = tuple(n for n in SOURCES if n != "rgw" or cfg.rgw_enabled)
        self._data = Snapshot(states={n: SourceState(n) for n in self.sources})
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pool = ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix="rbd-du")
        self._wake = {n: threading.Event() for n in SOURCES}
        self.generation = 0  # bumped at the end of every refresh (data or state changed)
        self._osd_hosts: dict[int, str] | None = None  # df's last CRUSH map, for placement

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> CephSources:
        for name, interval, fn in (
            ("df", self.cfg.df_interval_seconds, self.refresh_df),
            ("rbd", self.cfg.rbd_interval_seconds, self.refresh_rbd),
            ("rgw", self.cfg.rgw_interval_seconds, self.refresh_rgw),
            ("cephfs", self.cfg.rbd_interval_seconds, self.refresh_cephfs),
            ("placement", self.cfg.placement_interval_seconds, self.refresh_placement),
        ):
            if name not in self.sources:
                continue
            t = threading.Thread(
                target=self._loop, args=(name, interval, fn), name=f"ceph-{name}", daemon=True
            )
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for ev in self._wake.values():
            ev.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def trigger(self, name: str) -> None:
        """Refresh ``name`` now instead of at its next interval (tests, demo)."""
        self._wake[name].set()

    def _loop(self, name: str, interval: float, fn: Callable[[], None]) -> None:
        while not self._stop.is_set():
            fn()
            self._wake[name].wait(interval)
            self._wake[name].clear()

    def snapshot(self) -> Snapshot:
        with self._lock:
            d = self._data
            return Snapshot(
                pools=list(d.pools),
                images=dict(d.images),
                buckets=list(d.buckets),
                usage=list(d.usage),
                subvolumes=list(d.subvolumes),
                filesystems=list(d.filesystems),
                states={k: SourceState(**vars(v)) for k, v in d.states.items()},
                pool_details=list(d.pool_details),
                rules=dict(d.rules),
                acting_hosts_min=dict(d.acting_hosts_min),
            )

    def _finish(self, name: str, started: float, error: str) -> None:
        with self._lock:
            self.generation += 1
            st = self._data.states[name]
            st.last_attempt = time.time()
            st.duration = time.monotonic() - started
            st.ok = not error
            st.error = error
            if error:
                st.failures += 1
            else:
                st.last_success = st.last_attempt
        if error:
            self._failures.failed(name, error)
        else:
            self._failures.ok(name)
            log.debug(
                "ceph source refreshed",
                extra={"source": name, "seconds": round(time.monotonic() - started, 3)},
            )

    # -- sources -------------------------------------------------------------------------------
    def refresh_df(self) -> None:
        """Pools (usage, applications, replication, rule) and the CRUSH map they refer to."""
        started = time.monotonic()
        timeout = self.cfg.command_timeout_seconds
        try:
            pools = parse_df(self.run(["ceph", "df", "detail"], timeout))
            details = parse_pool_ls_detail(
                self.run(["ceph", "osd", "pool", "ls", "detail"], timeout)
            )
            crush = parse_crush_dump(self.run(["ceph", "osd", "crush", "dump"], timeout))
        except (CephCommandError, CephOutputError) as exc:
            self._finish("df", started, str(exc))
            return
        rules = {rid: rule_facts(crush, rule) for rid, rule in crush.rules.items()}
        hosts = osd_hosts(crush)
        with self._lock:
            self._data.pools = pools
            self._data.pool_details, self._data.rules = details, rules
            self._osd_hosts = hosts
        self._finish("df", started, "")

    def refresh_placement(self) -> None:
        """The least number of hosts each pool's PGs' acting sets span (``ceph pg dump``),
        hosts from df's last CRUSH map."""
        started = time.monotonic()
        with self._lock:
            hosts = self._osd_hosts
        if hosts is None:
            self.refresh_df()  # first run: the CRUSH map comes from df
            with self._lock:
                hosts = self._osd_hosts
        if hosts is None:
            self._finish("placement", started, "no CRUSH map yet: the df source has not succeeded")
            return
        try:
            pgs = parse_pgs_brief(
                self.run(["ceph", "pg", "dump", "pgs_brief"], self.cfg.command_timeout_seconds)
            )
        except (CephCommandError, CephOutputError) as exc:
            self._finish("placement", started, str(exc))
            return
        spans = acting_hosts_min(pgs, hosts)
        with self._lock:
            self._data.acting_hosts_min = spans
        self._finish("placement", started, "")

    def refresh_rbd(self) -> None:
        started = time.monotonic()
        timeout = self.cfg.command_timeout_seconds
        with self._lock:
            pools = rbd_pool_names(self._data.pool_details)
            first = not self._data.states["df"].last_success
        if not pools and first:
            self.refresh_df()  # first run: the pool list comes from df
            with self._lock:
                pools = rbd_pool_names(self._data.pool_details)

        def du(pool: str) -> tuple[str, list[ImageUsage] | str]:
            try:
                return pool, parse_rbd_du(self.run(["rbd", "du", "-p", pool], timeout), pool)
            except (CephCommandError, CephOutputError) as exc:
                return pool, str(exc)

        errors = []
        results = list(self._pool.map(du, pools)) if pools else []
        with self._lock:
            images = {p: v for p, v in self._data.images.items() if p in pools}
            for pool, res in results:
                if isinstance(res, str):
                    errors.append(res)  # keep this pool's previous result
                else:
                    images[pool] = res
            self._data.images = images
        self._finish("rbd", started, "; ".join(errors))

    def refresh_rgw(self) -> None:
        if not self.cfg.rgw_enabled:
            return
        started = time.monotonic()
        timeout = self.cfg.command_timeout_seconds
        errors = []
        if self.cfg.rgw_endpoint:
            try:
                requests.get(self.cfg.rgw_endpoint, timeout=min(timeout, 5.0))
            except requests.RequestException as exc:
                errors.append(
                    f"radosgw at {self.cfg.rgw_endpoint} does not answer: {type(exc).__name__}"
                )
        try:
            buckets = parse_bucket_stats(self.run(["radosgw-admin", "bucket", "stats"], timeout))
            usage = parse_usage(
                self.run(["radosgw-admin", "usage", "show", "--show-log-entries=false"], timeout)
            )
        except (CephCommandError, CephOutputError) as exc:
            errors.append(str(exc))
        else:
            with self._lock:
                self._data.buckets, self._data.usage = buckets, usage
        self._finish("rgw", started, "; ".join(errors))

    def refresh_cephfs(self) -> None:
        """Subvolumes of every CephFS (none present: an empty, successful refresh)."""
        started = time.monotonic()
        timeout = self.cfg.command_timeout_seconds
        try:
            filesystems = parse_fs_ls(self.run(["ceph", "fs", "ls"], timeout))
            wanted: list[tuple[str, str, str]] = []
            for fs in filesystems:
                groups = [
                    g
                    for g in parse_name_list(
                        self.run(["ceph", "fs", "subvolumegroup", "ls", fs], timeout),
                        "ceph fs subvolumegroup ls",
                    )
                    if not g.startswith("_")
                ]
                for group in ["_nogroup", *groups]:
                    argv = ["ceph", "fs", "subvolume", "ls", fs]
                    if group != "_nogroup":
                        argv += ["--group_name", group]
                    names = parse_name_list(self.run(argv, timeout), "ceph fs subvolume ls")
                    wanted += [(fs, group, name) for name in names]
        except (CephCommandError, CephOutputError) as exc:
            self._finish("cephfs", started, str(exc))
            return

        def info(item: tuple[str, str, str]) -> Subvolume | str:
            fs, group, name = item
            argv = ["ceph", "fs", "subvolume", "info", fs, name]
            if group != "_nogroup":
                argv += ["--group_name", group]
            try:
                return parse_subvolume_info(self.run(argv, timeout), fs, group, name)
            except (CephCommandError, CephOutputError) as exc:
                return str(exc)

        results = list(self._pool.map(info, wanted))
        errors = [r for r in results if isinstance(r, str)]
        with self._lock:
            previous = {(v.fs, v.group, v.name): v for v in self._data.subvolumes}
            subvolumes = []
            for item, res in zip(wanted, results, strict=True):
                if isinstance(res, str):
                    if item in previous:
                        subvolumes.append(previous[item])  # keep its last result
                else:
                    subvolumes.append(res)
            self._data.subvolumes, self._data.filesystems = subvolumes, filesystems
        self._finish("cephfs", started, "; ".join(errors))
