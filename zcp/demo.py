"""``zcp-obs demo``: the whole stack on real daemons on this machine.

The inventory (embedded demo cloud unless configured otherwise) exposed as identity info metrics;
a private libvirtd running the inventory's VMs as tiny real KVM guests (plus one VM CloudStack
does not know), watched by the libvirt exporter; a private userspace Open vSwitch with a port per
inventory NIC carrying real traffic, watched by the OVS exporter; a single-node Ceph cluster
with an RBD image per inventory volume, watched by the mgr module and the Ceph exporter; a real
Prometheus scraping them all with the built alerting and recording rules, sending to a real
Alertmanager with the built configuration. Later parts add their exporters and dashboards here.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import click
import requests
import yaml
from prometheus_client import CollectorRegistry, start_http_server
from tabulate import tabulate

from alerts.build import build as build_alerts
from exporters.ceph import CephCollector, CephSources
from exporters.http import ExporterServer, TimedCollector
from exporters.libvirt.source import LibvirtCollector, LibvirtSource
from exporters.ovs import OvsCollector, OvsdbReplica
from lab.ceph import CephLab
from lab.libvirt import LibvirtLab
from lab.ovs import OvsLab
from lab.procs import free_port
from lab.prometheus import AlertmanagerServer, PrometheusServer
from zcp.config import Config
from zcp.errors import DaemonError
from zcp.inventory import make_cache
from zcp.inventory.metrics import InventoryCollector
from zcp.inventory.model import Inventory
from zcp.logs import collect_log_metrics

log = logging.getLogger(__name__)


class _LogMetrics:
    def collect(self) -> Any:
        yield from collect_log_metrics()


def _step(n: int, total: int, text: str) -> None:
    click.echo(f"[{n}/{total}] {text}", err=True)


def _wait_for(prom: PrometheusServer, expr: str, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = prom.query(expr)
        if result:
            return result
        time.sleep(0.5)
    raise DaemonError(f"Prometheus returned nothing for {expr!r} within {timeout:.0f}s")


def _missing(*binaries: str) -> str:
    """The first of ``binaries`` not installed, as a reason; ``""`` if all are."""
    for binary in binaries:
        if shutil.which(binary) is None:
            return f"{binary} not installed"
    return ""


def _libvirt_missing() -> str:
    """Why KVM guests cannot run here, or ``""`` if they can."""
    missing = _missing("libvirtd", "qemu-system-x86_64")
    if not missing and not Path("/dev/kvm").exists():
        return "/dev/kvm missing"
    return missing


def _boot_guests(lab: LibvirtLab, inv: Inventory) -> int:
    """The inventory's VMs as guests (disks by device id, NICs by MAC) and one stranger."""
    for vm in inv.vms:
        disks = sorted((v.device_id or 0) for v in inv.volumes_by_vm.get(vm.id, ()))
        targets = tuple("vd" + chr(ord("a") + d) for d in disks) or ("vda",)
        macs = tuple(n.mac for n in inv.nics_by_vm.get(vm.id, ()))
        lab.create_guest(vm.instance_name, vm.id, disks=targets, macs=macs)
    lab.create_guest("i-99-999-VM", str(uuid.uuid5(uuid.NAMESPACE_DNS, "zcp-demo-stranger")))
    return len(inv.vms) + 1


def _serve(stack: contextlib.ExitStack, scrape_configs: list[dict[str, Any]], job: str,
           collector: TimedCollector) -> ExporterServer:
    """Serve ``collector`` on a free 127.0.0.1 port (stopped with ``stack``) and add it to the
    scrape configs as ``job``."""
    server = ExporterServer(job.removeprefix("zcp-"), collector, "127.0.0.1", free_port(),
                            8.0).start()
    stack.callback(server.shutdown)
    scrape_configs.append({"job_name": job,
                           "static_configs": [{"targets": [f"127.0.0.1:{server.port}"]}]})
    return server


def _create_images(lab: CephLab, inv: Inventory) -> int:
    """The inventory's RBD volumes as images in their pools, 4-12 MiB written to each."""
    volumes = [v for v in inv.volumes if v.rbd_image]
    for pool in sorted({v.rbd_image.split("/", 1)[0] for v in volumes}):
        lab.create_pool(pool)
    for n, vol in enumerate(volumes):
        pool, image = vol.rbd_image.split("/", 1)
        lab.create_image(pool, image, "64M", write_bytes=(n % 3 + 1) * 4 * 1024 * 1024)
    return len(volumes)


def run_demo(cfg: Config, workdir: Path | None, duration: float | None,
             with_libvirt: bool = True, with_ovs: bool = True, with_ceph: bool = True) -> None:
    """Start everything, show what Prometheus sees, run until Ctrl-C or ``duration``."""
    total = 7
    workdir = workdir or Path(tempfile.mkdtemp(prefix="zcp-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)

    with contextlib.ExitStack() as stack:  # everything started is stopped in reverse order
        try:
            _run_demo(stack, cfg, workdir, duration, total, with_libvirt, with_ovs, with_ceph)
        finally:
            click.echo("stopping", err=True)


def _run_demo(stack: contextlib.ExitStack, cfg: Config, workdir: Path, duration: float | None,
              total: int, with_libvirt: bool, with_ovs: bool, with_ceph: bool) -> None:
    """The demo's steps; each daemon started registers its stop on ``stack``."""
    _step(1, total, f"loading the inventory ({cfg.inventory.source})")
    cache = make_cache(cfg)
    cache.start()
    stack.callback(cache.stop)
    if not cache.wait_loaded(30):
        raise DaemonError(f"inventory did not load within 30s: {cache.last_error}")
    counts = cache.current().counts()
    click.echo("      " + ", ".join(f"{v} {k}" for k, v in counts.items()), err=True)

    _step(2, total, "serving inventory identity metrics")
    registry = CollectorRegistry()
    registry.register(InventoryCollector(cache))
    registry.register(_LogMetrics())
    port = free_port()
    server, _thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    stack.callback(server.shutdown)
    ovs_lab: OvsLab | None = None
    ovs_exporter: ExporterServer | None = None
    pinger: tuple[str, str] | None = None
    ceph_exporter: ExporterServer | None = None
    exporter: ExporterServer | None = None
    scrape_configs: list[dict[str, Any]] = [
        {"job_name": "zcp-inventory", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]},
    ]
    missing = _libvirt_missing() if with_libvirt else "disabled with --no-libvirt"
    if missing:
        _step(3, total, f"skipping libvirt/KVM guests: {missing}")
    else:
        _step(3, total, "starting libvirtd, booting the inventory's VMs as KVM guests")
        lab = LibvirtLab(workdir / "libvirt")
        lab.start()
        stack.callback(lab.stop)
        booted = _boot_guests(lab, cache.current())
        source = LibvirtSource(lab.uri)
        stack.callback(source.close)
        exporter = _serve(stack, scrape_configs, "libvirt",
                          LibvirtCollector(source, cache, "kvm-demo", 8.0))
        click.echo(f"      {booted} guests running; libvirt exporter on "
                   f"http://127.0.0.1:{exporter.port}/metrics", err=True)
    ovs_missing = _missing("ovsdb-server", "ovs-vswitchd", "ip", "ping") if with_ovs \
        else "disabled with --no-ovs"
    if ovs_missing:
        _step(4, total, f"skipping Open vSwitch: {ovs_missing}")
    else:
        _step(4, total, "starting Open vSwitch (userspace), a port per inventory NIC")
        ovs_lab = OvsLab(workdir / "ovs")
        ovs_lab.start()
        stack.callback(ovs_lab.stop)
        plugged = ovs_lab.plug_nics(cache.current().nics)
        pinger = (plugged[0][0], plugged[1][1]) if len(plugged) > 1 else None
        replica = OvsdbReplica(ovs_lab.db).start()
        stack.callback(replica.stop)
        ovs_exporter = _serve(stack, scrape_configs, "ovs", OvsCollector(
            replica, cache, ovs_lab.workdir, str(ovs_lab.vswitchd_ctl)))
        click.echo(f"      OVS exporter on http://127.0.0.1:{ovs_exporter.port}/metrics",
                   err=True)
    ceph_missing = _missing("ceph-mon", "ceph-mgr", "ceph-osd", "rbd", "monmaptool") \
        if with_ceph else "disabled with --no-ceph"
    if ceph_missing:
        _step(5, total, f"skipping Ceph: {ceph_missing}")
    else:
        _step(5, total, "starting a single-node Ceph cluster, an RBD image per volume")
        ceph_lab = CephLab(workdir / "ceph", rgw=False)
        ceph_lab.start()
        stack.callback(ceph_lab.stop)
        images = _create_images(ceph_lab, cache.current())
        ceph_cfg = cfg.ceph.model_copy(update={
            "conf": ceph_lab.conf, "keyring": ceph_lab.keyring, "rgw_endpoint": None,
            "rgw_enabled": False,
            "rbd_interval_seconds": 10.0, "rgw_interval_seconds": 60.0,
            "df_interval_seconds": 10.0})
        ceph_sources = CephSources(ceph_cfg).start()
        stack.callback(ceph_sources.stop)
        ceph_exporter = _serve(stack, scrape_configs, "zcp-ceph",
                               CephCollector(ceph_sources, cache, ceph_cfg))
        mgr = ceph_lab.mgr_prometheus_url.removeprefix("http://").removesuffix("/metrics")
        scrape_configs.append({"job_name": "ceph", "honor_labels": True,
                               "static_configs": [{"targets": [mgr]}]})
        click.echo(f"      {images} RBD images; Ceph exporter on "
                   f"http://127.0.0.1:{ceph_exporter.port}/metrics, mgr module on "
                   f"{ceph_lab.mgr_prometheus_url}", err=True)
    _step(6, total, "building the alerting rules, starting Alertmanager and Prometheus")
    built = build_alerts(workdir / "alerts", cfg.alerting)
    am = AlertmanagerServer(workdir / "alertmanager",
                            yaml.safe_load(built.alertmanager.read_text()))
    am.start()
    stack.callback(am.stop)
    am_target = am.url.removeprefix("http://")
    scrape_configs.append({"job_name": "alertmanager",
                           "static_configs": [{"targets": [am_target]}]})
    prom = PrometheusServer(workdir / "prometheus", {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [am_target]}]}]},
        "scrape_configs": scrape_configs,
    }, rule_files=[built.rules])
    prom.start()
    stack.callback(prom.stop)
    _step(7, total, "waiting for the first scrapes")
    _wait_for(prom, 'up{job="zcp-inventory"} == 1', 30)
    if exporter is not None:
        _wait_for(prom, 'libvirt_up{job="libvirt"} == 1', 30)
    # zcp_vm_info comes from the inventory and from the libvirt exporter: count VMs once
    rows = [
        [r["metric"].get("account") or "(unknown to CloudStack)",
         r["metric"].get("domain_path", ""), r["value"][1]]
        for r in _wait_for(prom, "count by (account, domain_path) "
                                 "(max by (vm_id, account, domain_path) (zcp_vm_info))", 30)
    ]
    click.echo("\nVMs per tenant, as Prometheus sees them:")
    click.echo(tabulate(sorted(rows), headers=["account", "domain", "vms"]))
    classes = [[r["metric"].get("storage_class", ""), r["value"][1]]
               for r in prom.query("count by (storage_class) "
                                   "(max by (volume_id, storage_class) (zcp_volume_info))")]
    click.echo("\nVolumes per storage class:")
    click.echo(tabulate(sorted(classes), headers=["storage_class", "volumes"]))
    if exporter is not None:
        # counters joined with identity: what the tenant:* recording rules will do
        cpu = prom.query(
            "sum by (account) (libvirt_domain_cpu_time_seconds_total * on (vm_id) "
            "group_left (account) max by (vm_id, account) (zcp_vm_info{job='libvirt'}))")
        rows = [[r["metric"].get("account") or "(unknown to CloudStack)",
                 f"{float(r['value'][1]):.2f}"] for r in cpu]
        click.echo("\nGuest CPU seconds per tenant, from real KVM guests:")
        click.echo(tabulate(sorted(rows), headers=["account", "cpu_seconds"]))
    if ovs_lab is not None and ovs_exporter is not None and pinger is not None:
        ovs_lab.ping(*pinger, count=10, size=1000)
        traffic = _wait_for(
            prom, "sum by (account) (ovs_interface_receive_bytes_total * on (vm_id) "
            "group_left (account) max by (vm_id, account) (zcp_vm_info)) > 10000", 40)
        rows = [[r["metric"].get("account", ""), int(float(r["value"][1]))] for r in traffic]
        click.echo("\nBytes VMs sent into Open vSwitch, per tenant (real ping traffic):")
        click.echo(tabulate(sorted(rows), headers=["account", "bytes"]))
    if ceph_exporter is not None:
        # RBD bytes per tenant and storage class, from the tenant:* recording rule
        rows = [[r["metric"].get("account", ""), r["metric"].get("storage_class", ""),
                 int(float(r["value"][1]))] for r in _wait_for(
            prom, "tenant:ceph_rbd_image_used_bytes:sum * on (tenant) group_left (account) "
            'label_replace(zcp_tenant_info, "tenant", "$1", "account_id", "(.+)")', 60)]
        click.echo("\nRBD bytes used per tenant and storage class (real Ceph, rbd du):")
        click.echo(tabulate(sorted(rows), headers=["account", "storage_class", "bytes"]))
    if exporter is not None:
        # the stranger guest: a domain no CloudStack account owns (info, for: 30m)
        _wait_for(prom, 'ALERTS{alertname="VMUnknownToCloudStack"}', 30)
    rules = requests.get(f"{prom.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    kinds = [r["type"] for g in rules for r in g["rules"]]
    pending = prom.query('ALERTS{alertstate=~"pending|firing"}')
    click.echo(f"\nRules loaded: {kinds.count('recording')} recording, "
               f"{kinds.count('alerting')} alerting (promtool-tested, "
               f"`zcp-obs alerts check`); pending or firing now: "
               + (", ".join(sorted({r['metric']['alertname'] for r in pending})) or "none"))
    click.echo(f"\nPrometheus:      {prom.url}\nAlertmanager:    {am.url}\nInventory metrics: "
               f"http://127.0.0.1:{port}/metrics\nWork dir (logs): {workdir}")
    log.info("demo up", extra={"prometheus": prom.url, "workdir": str(workdir)})
    stop = threading.Event()
    if duration is None:
        click.echo("Running; press Ctrl-C to stop.", err=True)
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait(duration)
