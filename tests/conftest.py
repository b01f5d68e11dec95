"""Shared fixtures: daemons are started once per session and stopped by PID. Helpers that
test modules import live in tests/support.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.cloudstack_sim import CloudStackSim, CloudStackState
from lab.procs import copy_logs
from lab.prometheus import AlertmanagerServer, PrometheusServer
from tests.support import ADMIN_KEY, ADMIN_SECRET, MIB, need_binary, unavailable
from zcp.binaries import missing
from zcp.inventory.model import Inventory
from zcp.inventory.yamlfile import load_inventory_file

FAILED_LOGS = Path(os.environ.get("ZCP_TEST_LOGS", "/tmp/zcp-test-logs"))


@pytest.fixture(scope="session")
def default_inventory() -> Inventory:
    """The embedded demo cloud."""
    return load_inventory_file(None)


@pytest.fixture
def cloudstack(default_inventory: Inventory) -> Iterator[CloudStackSim]:
    """A CloudStack API test server holding the demo cloud (one per test: tests stop it)."""
    sim = CloudStackSim(
        CloudStackState.from_inventory(default_inventory),
        keys={ADMIN_KEY: ADMIN_SECRET},
        job_seconds=0.1,
    )
    with sim:
        yield sim


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """One real Prometheus for the session; tests rewrite its config through ``write_config``."""
    need_binary("prometheus", "prometheus")
    server = PrometheusServer(
        tmp_path_factory.mktemp("prometheus"),
        {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [],
        },
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlertmanagerServer]:
    """One real Alertmanager for the session."""
    need_binary("prometheus-alertmanager", "prometheus-alertmanager")
    server = AlertmanagerServer(
        tmp_path_factory.mktemp("alertmanager"),
        {
            "route": {"receiver": "null"},
            "receivers": [{"name": "null"}],
        },
    )
    server.start()
    yield server
    server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep the session daemons' logs when a test that used them fails."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed and call.when == "call":
        daemons = [
            item.funcargs[n]
            for n in ("prometheus", "alertmanager")
            if n in getattr(item, "funcargs", {})
        ]
        if daemons:
            copy_logs(daemons, FAILED_LOGS / item.name)


@pytest.fixture(scope="module")
def libvirt_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A private libvirtd (+ virtlogd and a bridge) per test module.

    Only one private libvirtd can run per host and it starts in ~0.1 s, so each module gets its
    own and never overlaps another module's (or the demo's).
    """
    need_binary("libvirtd", "libvirt-daemon")
    need_binary("qemu-system-x86_64", "qemu-system-x86")
    if missing("/dev/kvm"):
        unavailable("/dev/kvm missing: KVM guests cannot run here")
    from lab.libvirt import LibvirtLab

    lab = LibvirtLab(tmp_path_factory.mktemp("libvirt"))
    lab.start()
    yield lab
    lab.stop()


@pytest.fixture(scope="session")
def ovs_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A private ovsdb-server + ovs-vswitchd (userspace datapath, own network namespace),
    shared by the session."""
    need_binary("ovs-vswitchd", "openvswitch-switch")
    need_binary("ip", "iproute2")
    from lab.ovs import OvsLab

    lab = OvsLab(tmp_path_factory.mktemp("ovs"))
    lab.start()
    yield lab
    lab.stop()


@pytest.fixture(scope="session")
def ceph_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A private single-node Ceph cluster (mon, mgr with the prometheus module, a bluestore OSD
    on a sparse file, radosgw, an MDS serving a CephFS) shared by the session: it takes ~10 s
    to start. Bluestore, not memstore: the OSD keeps its data across the restart the fault
    tests do."""
    need_binary("ceph-mon", "ceph-mon")
    need_binary("ceph-osd", "ceph-osd")
    need_binary("radosgw", "radosgw")
    from lab.ceph import CephLab

    lab = CephLab(tmp_path_factory.mktemp("ceph"), objectstore="bluestore", cephfs=True)
    lab.start()
    yield lab
    lab.stop()


@pytest.fixture(scope="session")
def ceph_cloud(ceph_lab: Any, default_inventory: Inventory) -> dict[str, Any]:
    """Tenant data in the session's Ceph, created once: the demo inventory's volumes as RBD
    images in rbd-fast/flow/bulk (some written to), an unmapped pool with an image, acme's RGW
    user with two buckets filled over S3, and a CephFS subvolume of globex's."""
    for pool in ("rbd-fast", "rbd-flow", "rbd-bulk", "odd-pool"):
        ceph_lab.create_pool(pool)
    written: dict[str, int] = {}
    for n, vol in enumerate(v for v in default_inventory.volumes if v.rbd_image):
        pool, image = vol.rbd_image.split("/")
        size = (n % 3) * 4 * MIB  # 0, 4 or 8 MiB written
        ceph_lab.create_image(pool, image, "32M", write_bytes=size)
        written[vol.rbd_image] = size
    ceph_lab.create_image("odd-pool", "scratch", "16M", write_bytes=4 * MIB)
    acme = next(t for t in default_inventory.tenants if t.name == "acme")
    s3 = ceph_lab.s3_client(acme.account_id)
    objects = {"site": [50_000, 70_000], "logs": [1_000]}
    for bucket, sizes in objects.items():
        s3.create_bucket(Bucket=bucket)
        for k, size in enumerate(sizes):
            s3.put_object(Bucket=bucket, Key=f"o{k}", Body=b"z" * size)
    s3.get_object(Bucket="site", Key="o0")["Body"].read()
    globex = next(t for t in default_inventory.tenants if t.name == "globex")
    ceph_lab.run("ceph", "fs", "subvolumegroup", "create", "cephfs", globex.account_id)
    ceph_lab.run(
        "ceph",
        "fs",
        "subvolume",
        "create",
        "cephfs",
        "data",
        "--group_name",
        globex.account_id,
        "--size",
        str(32 * MIB),
    )
    return {"written": written, "account": acme.account_id, "objects": objects, "s3": s3}


@pytest.fixture(scope="session")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One VictoriaMetrics for the session (tests load what they need)."""
    need_binary("victoria-metrics", "victoria-metrics")
    from lab.victoriametrics import VictoriaMetricsServer

    server = VictoriaMetricsServer(tmp_path_factory.mktemp("victoria"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def history_victoria(victoria: object) -> str:
    """The metering scenario's history in VictoriaMetrics."""
    from lab.victoriametrics import VictoriaMetricsServer
    from tests.metering import scenario

    assert isinstance(victoria, VictoriaMetricsServer)
    victoria.load(scenario.history())
    return victoria.url
