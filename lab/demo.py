"""``zcp-obs demo``: the whole stack on real daemons on this machine.

The inventory service (``zcp-obs exporter inventory``: the embedded demo cloud unless configured
otherwise) serving identity and state metrics and snapshots; a private libvirtd running the
inventory's VMs as tiny real KVM guests (plus one VM CloudStack does not know), watched by the
libvirt exporter; a private userspace Open vSwitch with a port per inventory NIC carrying real
traffic, watched by the OVS exporter; a single-node Ceph cluster with an RBD image per inventory
volume, watched by the mgr module and the Ceph exporter; every exporter the production command,
fed by the inventory service (lab/stack.py); a real Prometheus scraping them all with the built
alerting and recording rules, sending to a real Alertmanager with the built configuration.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

import click
import yaml
from tabulate import tabulate

from alerts.build import build as build_alerts
from lab.ceph import CephLab
from lab.libvirt import LibvirtLab
from lab.ovs import OvsLab
from lab.prometheus import PrometheusServer
from lab.stack import Stack
from zcp.binaries import missing
from zcp.config import Config
from zcp.errors import DaemonError
from zcp.files import private_dir
from zcp.inventory import make_cache
from zcp.inventory.model import Inventory
from zcp.wait import wait_until

log = logging.getLogger(__name__)
HOST = "kvm-demo"


def _step(n: int, total: int, text: str) -> None:
    click.echo(f"[{n}/{total}] {text}", err=True)


def _wait_for(prom: PrometheusServer, expr: str, timeout: float) -> list[dict[str, Any]]:
    result = wait_until(lambda: prom.query(expr), timeout, interval=0.5)
    if not result:
        raise DaemonError(f"Prometheus returned nothing for {expr!r} within {timeout:.0f}s")
    return result


def _boot_guests(lab: LibvirtLab, inv: Inventory) -> int:
    """The inventory's VMs as guests (disks by device id, NICs by MAC) and one stranger."""
    for vm in inv.vms:
        disks = sorted((v.device_id or 0) for v in inv.volumes_by_vm.get(vm.id, ()))
        targets = tuple("vd" + chr(ord("a") + d) for d in disks) or ("vda",)
        macs = tuple(n.mac for n in inv.nics_by_vm.get(vm.id, ()))
        lab.create_guest(vm.instance_name, vm.id, disks=targets, macs=macs)
    lab.create_guest("i-99-999-VM", str(uuid.uuid5(uuid.NAMESPACE_DNS, "zcp-demo-stranger")))
    return len(inv.vms) + 1


def _create_images(lab: CephLab, inv: Inventory) -> int:
    """The inventory's RBD volumes as images in their pools, 4-12 MiB written to each."""
    volumes = [v for v in inv.volumes if v.rbd_image]
    for pool in sorted({v.rbd_image.split("/", 1)[0] for v in volumes}):
        lab.create_pool(pool)
    for n, vol in enumerate(volumes):
        pool, image = vol.rbd_image.split("/", 1)
        lab.create_image(pool, image, "64M", write_bytes=(n % 3 + 1) * 4 * 1024 * 1024)
    return len(volumes)


def run_demo(
    cfg: Config,
    config_path: Path | None,
    workdir: Path | None,
    duration: float | None,
    with_libvirt: bool = True,
    with_ovs: bool = True,
    with_ceph: bool = True,
) -> None:
    """Start everything, show what Prometheus sees, run until Ctrl-C or ``duration``."""
    # 0700: the work dir holds configs with the operator's receivers and secrets
    workdir = private_dir(workdir or Path(tempfile.mkdtemp(prefix="zcp-demo-")))
    stack = Stack(workdir, config_path, log_format=cfg.logging.format)
    try:
        _run_demo(stack, cfg, workdir, duration, with_libvirt, with_ovs, with_ceph)
    finally:
        click.echo("stopping", err=True)
        stack.close()


def _run_demo(
    stack: Stack,
    cfg: Config,
    workdir: Path,
    duration: float | None,
    with_libvirt: bool,
    with_ovs: bool,
    with_ceph: bool,
) -> None:
    """The demo's steps; each daemon started registers its stop on ``stack``."""
    total = 7
    _step(1, total, f"loading the inventory ({cfg.inventory.source})")
    inv = make_cache(cfg).refresh()
    click.echo("      " + ", ".join(f"{v} {k}" for k, v in inv.counts().items()), err=True)

    _step(2, total, "starting the inventory service (identity metrics, snapshots)")
    stack.inventory_service()
    click.echo(
        f"      inventory service on {stack.inventory_url} (/metrics, /v1/inventory)", err=True
    )
    libvirt_up = False
    reason = (
        missing("libvirtd", "qemu-system-x86_64", "/dev/kvm")
        if with_libvirt
        else "disabled with --no-libvirt"
    )
    if reason:
        _step(3, total, f"skipping libvirt/KVM guests: {reason}")
    else:
        _step(3, total, "starting libvirtd, booting the inventory's VMs as KVM guests")
        lab = LibvirtLab(workdir / "libvirt")
        stack.on_close("libvirtd", lab.stop)
        lab.start()
        booted = _boot_guests(lab, inv)
        exporter = stack.libvirt(lab, HOST)
        libvirt_up = True
        click.echo(
            f"      {booted} guests running; libvirt exporter on {exporter.ready_url}", err=True
        )
    ovs_lab: OvsLab | None = None
    pinger: tuple[str, str] | None = None
    reason = (
        missing("ovsdb-server", "ovs-vswitchd", "ip", "ping")
        if with_ovs
        else "disabled with --no-ovs"
    )
    if reason:
        _step(4, total, f"skipping Open vSwitch: {reason}")
    else:
        _step(4, total, "starting Open vSwitch (userspace), a port per inventory NIC")
        ovs_lab = OvsLab(workdir / "ovs")
        stack.on_close("openvswitch", ovs_lab.stop)
        ovs_lab.start()
        plugged = ovs_lab.plug_nics(inv.nics)
        pinger = (plugged[0][0], plugged[1][1]) if len(plugged) > 1 else None
        exporter = stack.ovs(ovs_lab, HOST)
        click.echo(f"      OVS exporter on {exporter.ready_url}", err=True)
    ceph_up = False
    reason = (
        missing("ceph-mon", "ceph-mgr", "ceph-osd", "rbd", "monmaptool")
        if with_ceph
        else "disabled with --no-ceph"
    )
    if reason:
        _step(5, total, f"skipping Ceph: {reason}")
    else:
        _step(5, total, "starting a single-node Ceph cluster, an RBD image per volume")
        ceph_lab = CephLab(workdir / "ceph", rgw=False)
        stack.on_close("ceph", ceph_lab.stop)
        ceph_lab.start()
        images = _create_images(ceph_lab, inv)
        exporter = stack.ceph(ceph_lab, rbd_interval_seconds=10.0, df_interval_seconds=10.0)
        ceph_up = True
        click.echo(
            f"      {images} RBD images; Ceph exporter on {exporter.ready_url}, mgr "
            f"module on {ceph_lab.mgr_prometheus_url}",
            err=True,
        )
    _step(6, total, "building the alerting rules, starting Alertmanager and Prometheus")
    built = build_alerts(workdir / "alerts", cfg.alerting)
    am = stack.alertmanager(yaml.safe_load(built.alertmanager.read_text()))
    prom = stack.prometheus([built.rules], "5s", am)
    _step(7, total, "waiting for the first scrapes")
    _wait_for(prom, 'up{job="zcp-inventory"} == 1', 30)
    if libvirt_up:
        _wait_for(prom, 'libvirt_up{job="libvirt"} == 1', 30)
    _report(prom, libvirt_up, ovs_lab, pinger, ceph_up)
    click.echo(
        f"\nPrometheus:      {prom.url}\nAlertmanager:    {am.url}\n"
        f"Inventory service: {stack.inventory_url}/metrics\nWork dir (logs): {workdir}"
    )
    log.info("demo up", extra={"prometheus": prom.url, "workdir": str(workdir)})
    stop = threading.Event()
    if duration is None:
        click.echo("Running; press Ctrl-C to stop.", err=True)
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait(duration)


def _report(
    prom: PrometheusServer,
    libvirt_up: bool,
    ovs_lab: OvsLab | None,
    pinger: tuple[str, str] | None,
    ceph_up: bool,
) -> None:
    """Print what Prometheus sees."""
    # zcp_vm_info comes from the inventory and from the libvirt exporter: count VMs once
    rows = [
        [
            r["metric"].get("account") or "(unknown to CloudStack)",
            r["metric"].get("domain_path", ""),
            r["value"][1],
        ]
        for r in _wait_for(
            prom,
            "count by (account, domain_path) (max by (vm_id, account, domain_path) (zcp_vm_info))",
            30,
        )
    ]
    click.echo("\nVMs per tenant, as Prometheus sees them:")
    click.echo(tabulate(sorted(rows), headers=["account", "domain", "vms"]))
    classes = [
        [r["metric"].get("storage_class", ""), r["value"][1]]
        for r in prom.query(
            "count by (storage_class) (max by (volume_id, storage_class) (zcp_volume_info))"
        )
    ]
    click.echo("\nVolumes per storage class:")
    click.echo(tabulate(sorted(classes), headers=["storage_class", "volumes"]))
    if libvirt_up:
        # counters joined with identity: what the tenant:* recording rules will do
        cpu = prom.query(
            "sum by (account) (libvirt_domain_cpu_time_seconds_total * on (vm_id) "
            "group_left (account) max by (vm_id, account) (zcp_vm_info{job='libvirt'}))"
        )
        rows = [
            [r["metric"].get("account") or "(unknown to CloudStack)", f"{float(r['value'][1]):.2f}"]
            for r in cpu
        ]
        click.echo("\nGuest CPU seconds per tenant, from real KVM guests:")
        click.echo(tabulate(sorted(rows), headers=["account", "cpu_seconds"]))
    if ovs_lab is not None and pinger is not None:
        ovs_lab.ping(*pinger, count=10, size=1000)
        traffic = _wait_for(
            prom,
            "sum by (account) (ovs_interface_receive_bytes_total * on (vm_id) "
            "group_left (account) max by (vm_id, account) (zcp_vm_info)) > 10000",
            40,
        )
        rows = [[r["metric"].get("account", ""), int(float(r["value"][1]))] for r in traffic]
        click.echo("\nBytes VMs sent into Open vSwitch, per tenant (real ping traffic):")
        click.echo(tabulate(sorted(rows), headers=["account", "bytes"]))
    if ceph_up:
        # RBD bytes per tenant and storage class, from the tenant:* recording rule
        rows = [
            [
                r["metric"].get("account", ""),
                r["metric"].get("storage_class", ""),
                int(float(r["value"][1])),
            ]
            for r in _wait_for(
                prom,
                "tenant:ceph_rbd_image_used_bytes:sum * on (tenant) group_left (account) "
                'label_replace(zcp_tenant_info, "tenant", "$1", "account_id", "(.+)")',
                60,
            )
        ]
        click.echo("\nRBD bytes used per tenant and storage class (real Ceph, rbd du):")
        click.echo(tabulate(sorted(rows), headers=["account", "storage_class", "bytes"]))
    if libvirt_up:
        # the stranger guest: a domain no CloudStack account owns (info, for: 30m)
        _wait_for(prom, 'ALERTS{alertname="VMUnknownToCloudStack"}', 30)
    rules = prom.rules()
    kinds = [r["type"] for g in rules for r in g["rules"]]
    pending = prom.query('ALERTS{alertstate=~"pending|firing"}')
    click.echo(
        f"\nRules loaded: {kinds.count('recording')} recording, "
        f"{kinds.count('alerting')} alerting (promtool-tested, "
        f"`zcp-obs alerts check`); pending or firing now: "
        + (", ".join(sorted({r["metric"]["alertname"] for r in pending})) or "none")
    )
