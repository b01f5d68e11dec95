"""A private single-node Ceph cluster (Debian's Ceph 16.2) for tests, benchmarks and the demo.

One mon, one mgr (prometheus module on), one OSD, optionally radosgw; cephx on; everything on
127.0.0.1 with every file (config, keyrings, data, sockets, logs) in a work dir; daemons in the
foreground as children, stopped by PID in the order rgw, osd, mgr, mon. Settings from the lab
notes: ``paxos propose interval`` 0.05 s (map changes in ~0.05 s instead of ~1 s),
``mgr stats period`` 1 s, single-replica pools allowed and not warned about.

The OSD is ``memstore`` by default (RAM, fastest to start; reports logical sizes) or
``bluestore`` on a sparse file (real allocation), chosen per lab.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

from lab.procs import Daemon, run_checked
from zcp.binaries import require
from zcp.errors import DaemonError
from zcp.wait import wait_until

log = logging.getLogger(__name__)


def free_low_port() -> int:
    """A free TCP port below the ephemeral range (fixed ports above 32768 can collide with
    outgoing connections' ports, and Ceph daemons bind late)."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise DaemonError("no free port in 20000-32000")


class _CephDaemon(Daemon):
    def __init__(
        self, name: str, argv: Sequence[str], workdir: Path, lab: CephLab, check: str
    ) -> None:
        super().__init__(name, argv, workdir, "")
        self.lab = lab
        self.check = check

    def ready(self) -> bool:
        return self.lab.is_ready(self.check)


class CephLab:
    """A single-node Ceph cluster in ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        objectstore: str = "memstore",
        rgw: bool = True,
        osd_bytes: int = 2 * 1024**3,
        cephfs: bool = False,
    ) -> None:
        self.workdir = workdir.resolve()
        self.with_cephfs = cephfs
        self.objectstore = objectstore
        self.with_rgw = rgw
        self.osd_bytes = osd_bytes
        self.fsid = str(uuid.uuid4())
        self.conf = self.workdir / "ceph.conf"
        self.keyring = self.workdir / "ceph.client.admin.keyring"
        self.mon_port = free_low_port()
        self.mgr_prometheus_port = free_low_port()
        self.rgw_port = free_low_port()
        self.rgw_url = f"http://127.0.0.1:{self.rgw_port}"
        self.mgr_prometheus_url = f"http://127.0.0.1:{self.mgr_prometheus_port}/metrics"
        self.mon: _CephDaemon | None = None
        self.mgr: _CephDaemon | None = None
        self.osd: _CephDaemon | None = None
        self.rgw: _CephDaemon | None = None
        self.mds: _CephDaemon | None = None

    def __enter__(self) -> CephLab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- tools -------------------------------------------------------------------------------
    def run(
        self, *argv: str, timeout: float = 60, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """A Ceph CLI (``ceph``, ``rbd``, ``radosgw-admin``...) against this cluster."""
        return run_checked(
            [argv[0], "-c", str(self.conf), *argv[1:]], timeout=timeout, check=check, input=input
        )

    def json(self, *argv: str, timeout: float = 60) -> Any:
        return json.loads(self.run(*argv, "--format", "json", timeout=timeout).stdout or "null")

    def is_ready(self, what: str) -> bool:
        try:
            if what == "mon":
                return (
                    self.run(
                        "ceph", "--connect-timeout", "2", "mon", "stat", timeout=10, check=False
                    ).returncode
                    == 0
                )
            if what == "mgr":
                return requests.get(self.mgr_prometheus_url, timeout=2).status_code == 200
            if what == "osd":
                stat = self.json("ceph", "osd", "stat", timeout=10)
                return int(stat.get("num_up_osds", 0)) >= 1 and int(stat.get("num_in_osds", 0)) >= 1
            if what == "rgw":
                return requests.get(self.rgw_url, timeout=2).status_code == 200
            if what == "mds":
                return (
                    "up:standby" in self.run("ceph", "mds", "stat", timeout=10).stdout
                    or "up:active" in self.run("ceph", "mds", "stat", timeout=10).stdout
                )
        except (requests.RequestException, DaemonError, subprocess.TimeoutExpired, ValueError):
            return False
        return False

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 90.0) -> None:
        for binary in (
            "ceph-mon",
            "ceph-mgr",
            "ceph-osd",
            "ceph-authtool",
            "monmaptool",
            "ceph",
            "rbd",
        ):
            require(binary, "ceph")
        if self.with_rgw:
            require("radosgw", "radosgw")
        t0 = time.monotonic()
        for sub in ("run", "log", "mon", "mgr", "osd", "rgw", "mds"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self._write_conf()
        mon_keyring = self.workdir / "mon.keyring"
        self._tool(
            "ceph-authtool",
            "--create-keyring",
            str(mon_keyring),
            "--gen-key",
            "-n",
            "mon.",
            "--cap",
            "mon",
            "allow *",
        )
        self._tool(
            "ceph-authtool",
            "--create-keyring",
            str(self.keyring),
            "--gen-key",
            "-n",
            "client.admin",
            "--cap",
            "mon",
            "allow *",
            "--cap",
            "osd",
            "allow *",
            "--cap",
            "mds",
            "allow *",
            "--cap",
            "mgr",
            "allow *",
        )
        self._tool("ceph-authtool", str(mon_keyring), "--import-keyring", str(self.keyring))
        monmap = self.workdir / "monmap"
        self._tool(
            "monmaptool",
            "--create",
            "--addv",
            "a",
            f"[v2:127.0.0.1:{self.mon_port}]",
            "--fsid",
            self.fsid,
            str(monmap),
        )
        self._tool(
            "ceph-mon",
            "-c",
            str(self.conf),
            "--mkfs",
            "-i",
            "a",
            "--monmap",
            str(monmap),
            "--keyring",
            str(mon_keyring),
        )
        self.mon = _CephDaemon(
            "ceph-mon",
            [shutil.which("ceph-mon") or "ceph-mon", "-f", "-c", str(self.conf), "-i", "a"],
            self.workdir / "log",
            self,
            "mon",
        )
        self.mon.start(timeout)
        # the prometheus module's address, set before the mgr starts
        self.run(
            "ceph", "config", "set", "mgr", "mgr/prometheus/server_addr", "127.0.0.1", "--force"
        )
        self.run(
            "ceph",
            "config",
            "set",
            "mgr",
            "mgr/prometheus/server_port",
            str(self.mgr_prometheus_port),
            "--force",
        )
        self.run(
            "ceph",
            "auth",
            "get-or-create",
            "mgr.x",
            "mon",
            "allow profile mgr",
            "osd",
            "allow *",
            "mds",
            "allow *",
            "-o",
            str(self.workdir / "mgr" / "keyring"),
        )
        self.mgr = _CephDaemon(
            "ceph-mgr",
            [shutil.which("ceph-mgr") or "ceph-mgr", "-f", "-c", str(self.conf), "-i", "x"],
            self.workdir / "log",
            self,
            "mgr",
        )
        self.mgr.start(timeout)
        osd_uuid = str(uuid.uuid4())
        osd_id = self.run("ceph", "osd", "new", osd_uuid).stdout.strip()
        if osd_id != "0":
            raise DaemonError(f"unexpected OSD id {osd_id!r}")
        self._tool(
            "ceph-osd",
            "-c",
            str(self.conf),
            "-i",
            "0",
            "--mkfs",
            "--mkkey",
            "--osd-uuid",
            osd_uuid,
            "--no-mon-config",
        )
        self.run(
            "ceph",
            "auth",
            "add",
            "osd.0",
            "osd",
            "allow *",
            "mon",
            "allow profile osd",
            "mgr",
            "allow profile osd",
            "-i",
            str(self.workdir / "osd" / "keyring"),
        )
        self.osd = self._osd_daemon()
        self.osd.start(timeout)
        if self.with_rgw:
            self.run(
                "ceph",
                "auth",
                "get-or-create",
                "client.rgw.a",
                "mon",
                "allow rw",
                "osd",
                "allow rwx",
                "mgr",
                "allow rw",
                "-o",
                str(self.workdir / "rgw" / "keyring"),
            )
            self.rgw = self._rgw_daemon()
            self.rgw.start(timeout)
        if self.with_cephfs:
            require("ceph-mds", "ceph-mds")
            self.run(
                "ceph",
                "auth",
                "get-or-create",
                "mds.a",
                "mon",
                "allow profile mds",
                "osd",
                "allow rwx",
                "mds",
                "allow",
                "mgr",
                "allow profile mds",
                "-o",
                str(self.workdir / "mds" / "keyring"),
            )
            self.mds = _CephDaemon(
                "ceph-mds",
                [shutil.which("ceph-mds") or "ceph-mds", "-f", "-c", str(self.conf), "-i", "a"],
                self.workdir / "log",
                self,
                "mds",
            )
            self.mds.start(timeout)
            self.run("ceph", "fs", "volume", "create", "cephfs", timeout=120)
            if not wait_until(
                lambda: "up:active" in self.run("ceph", "mds", "stat").stdout, timeout, 0.3
            ):
                raise DaemonError("no active MDS for cephfs")
        log.info(
            "ceph lab up",
            extra={"seconds": round(time.monotonic() - t0, 1), "workdir": str(self.workdir)},
        )

    def _osd_daemon(self) -> _CephDaemon:
        return _CephDaemon(
            "ceph-osd",
            [shutil.which("ceph-osd") or "ceph-osd", "-f", "-c", str(self.conf), "-i", "0"],
            self.workdir / "log",
            self,
            "osd",
        )

    def _rgw_daemon(self) -> _CephDaemon:
        return _CephDaemon(
            "radosgw",
            [
                shutil.which("radosgw") or "radosgw",
                "-f",
                "-c",
                str(self.conf),
                "-n",
                "client.rgw.a",
            ],
            self.workdir / "log",
            self,
            "rgw",
        )

    def stop(self) -> None:
        for daemon in (self.rgw, self.mds, self.osd, self.mgr, self.mon):
            if daemon is not None:
                daemon.stop(timeout=20)

    def stop_osd(self) -> None:
        if self.osd is not None:
            self.osd.stop(timeout=20)

    def start_osd(self) -> None:
        self.osd = self._osd_daemon()
        self.osd.start(90)

    def stop_rgw(self) -> None:
        if self.rgw is not None:
            self.rgw.stop(timeout=20)

    def start_rgw(self) -> None:
        self.rgw = self._rgw_daemon()
        self.rgw.start(60)

    def daemons(self) -> list[Daemon]:
        return [d for d in (self.mon, self.mgr, self.osd, self.rgw, self.mds) if d is not None]

    def _tool(self, *argv: str) -> None:
        run_checked(argv)

    def _write_conf(self) -> None:
        wd = self.workdir
        store = (
            f"osd objectstore = memstore\nmemstore device bytes = {self.osd_bytes}\n"
            if self.objectstore == "memstore"
            else f"osd objectstore = bluestore\nbluestore block size = {self.osd_bytes}\n"
            "bluestore block create = true\n"
        )
        self.conf.write_text(f"""[global]
fsid = {self.fsid}
mon host = [v2:127.0.0.1:{self.mon_port}]
ms bind msgr1 = false
public addr = 127.0.0.1
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
keyring = {self.keyring}
run dir = {wd / "run"}
admin socket = {wd / "run"}/$cluster-$name.asok
log file = {wd / "log"}/$cluster-$name.log
pid file = {wd / "run"}/$cluster-$name.pid
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
osd crush chooseleaf type = 0
paxos propose interval = 0.05
mgr stats period = 1
mon max pg per osd = 1000
mgr initial modules = prometheus

[mon.a]
mon data = {wd / "mon"}

[mgr.x]
mgr data = {wd / "mgr"}
keyring = {wd / "mgr" / "keyring"}

[osd.0]
osd data = {wd / "osd"}
keyring = {wd / "osd" / "keyring"}
{store}
[mds.a]
mds data = {wd / "mds"}
keyring = {wd / "mds" / "keyring"}

[client.rgw.a]
keyring = {wd / "rgw" / "keyring"}
rgw data = {wd / "rgw"}
rgw frontends = beast endpoint=127.0.0.1:{self.rgw_port}
rgw enable usage log = true
rgw usage log tick interval = 1
rgw usage log flush threshold = 1
rgw thread pool size = 32
""")

    # -- data --------------------------------------------------------------------------------
    def create_pool(self, name: str, rbd: bool = True, pg_num: int = 8) -> None:
        self.run("ceph", "osd", "pool", "create", name, str(pg_num))
        if rbd:
            self.run("rbd", "pool", "init", name)

    def delete_pool(self, name: str) -> None:
        """Delete a pool and its data (the lab allows pool deletion)."""
        self.run("ceph", "osd", "pool", "rm", name, name, "--yes-i-really-really-mean-it")

    def set_pool(self, pool: str, key: str, value: str | int) -> None:
        """``ceph osd pool set`` (size, min_size, crush_rule...)."""
        self.run("ceph", "osd", "pool", "set", pool, key, str(value))

    def pg_states(self, pool: str) -> list[str]:
        """States of ``pool``'s PGs as the mgr reports them (``unknown`` until it has)."""
        pool_id = self.json("ceph", "osd", "pool", "stats", pool)[0]["pool_id"]
        stats = self.json("ceph", "pg", "dump", "pgs_brief")["pg_stats"]
        return [pg["state"] for pg in stats if pg["pgid"].split(".")[0] == str(pool_id)]

    # -- CRUSH -------------------------------------------------------------------------------
    def device_class(self, osd: int = 0) -> str:
        """The CRUSH device class of ``osd.N`` ("" without one)."""
        devices = self.json("ceph", "osd", "crush", "dump")["devices"]
        return str(next(d for d in devices if d["id"] == osd).get("class", ""))

    def set_device_class(self, osd: int, cls: str) -> None:
        """Give ``osd.N`` the class ``cls`` ("" leaves it without one); Ceph refuses to change
        a class without removing the old one first."""
        self.run("ceph", "osd", "crush", "rm-device-class", f"osd.{osd}")
        if cls:
            self.run("ceph", "osd", "crush", "set-device-class", cls, f"osd.{osd}")

    def create_rule(
        self, name: str, cls: str = "", failure_domain: str = "host", root: str = "default"
    ) -> None:
        """A replicated CRUSH rule: one copy per ``failure_domain`` bucket under ``root``,
        on OSDs of class ``cls`` only (Ceph's shadow tree ``root~cls``) unless it is ""."""
        self.run(
            "ceph",
            "osd",
            "crush",
            "rule",
            "create-replicated",
            name,
            root,
            failure_domain,
            *([cls] if cls else []),
        )

    def remove_rule(self, name: str) -> None:
        """Remove a CRUSH rule; one that does not exist is no error (Ceph's own answer), one
        a pool uses is."""
        self.run("ceph", "osd", "crush", "rule", "rm", name)

    def create_image(self, pool: str, name: str, size: str = "64M", write_bytes: int = 0) -> None:
        """An RBD image (fast-diff on); ``write_bytes`` written with ``rbd bench``."""
        self.run(
            "rbd",
            "create",
            f"{pool}/{name}",
            "--size",
            size,
            "--image-feature",
            "layering,exclusive-lock,object-map,fast-diff",
        )
        if write_bytes:
            self.run(
                "rbd",
                "bench",
                "--io-type",
                "write",
                "--io-size",
                "4M",
                "--io-pattern",
                "seq",
                "--io-threads",
                "1",
                "--io-total",
                str(write_bytes),
                f"{pool}/{name}",
                timeout=120,
            )

    def rgw_user(self, uid: str) -> dict[str, str]:
        """An RGW user; its S3 access/secret key."""
        out = self.json("radosgw-admin", "user", "create", "--uid", uid, "--display-name", uid)
        key = out["keys"][0]
        return {"access_key": key["access_key"], "secret_key": key["secret_key"]}

    def s3_client(self, uid: str) -> Any:
        """A new RGW user ``uid`` and a boto3 S3 client speaking as it (path-style addressing:
        the lab's radosgw has no DNS name for virtual-host buckets)."""
        import boto3
        from botocore.config import Config as BotoConfig

        keys = self.rgw_user(uid)
        return boto3.client(
            "s3",
            endpoint_url=self.rgw_url,
            region_name="default",
            aws_access_key_id=keys["access_key"],
            aws_secret_access_key=keys["secret_key"],
            config=BotoConfig(s3={"addressing_style": "path"}),
        )

    def write_cephfs(self, path: str, data: bytes) -> None:
        """Write ``data`` to ``path`` in the CephFS ``cephfs`` through libcephfs (Debian's
        python3-cephfs, run by the system Python: its extension is built for it)."""
        code = (
            "import cephfs, sys\n"
            f"fs = cephfs.LibCephFS(conffile={str(self.conf)!r})\n"
            "fs.mount()\n"
            f"fd = fs.open({path!r}.encode(), 'w', 0o644)\n"
            "fs.write(fd, sys.stdin.buffer.read(), 0)\n"
            "fs.fsync(fd, 0)\n"
            "fs.close(fd)\n"
            "fs.unmount()\n"
        )
        proc = subprocess.run(
            ["/usr/bin/python3", "-c", code], input=data, capture_output=True, timeout=60
        )
        if proc.returncode != 0:
            raise DaemonError(f"cephfs write failed: {proc.stderr.decode()[-300:]}")
