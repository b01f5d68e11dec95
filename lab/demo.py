"""``zcp-obs demo``: the whole stack on real daemons on this machine, as a newcomer first meets it.

The inventory service (the embedded demo cloud unless configured otherwise) serving identity and
state metrics and snapshots; a private libvirtd running the inventory's VMs as tiny real guests
(KVM, or TCG emulation without ``/dev/kvm``) plus one VM CloudStack does not know, watched by the
libvirt exporter; a private userspace Open vSwitch with a port per inventory NIC and a VXLAN
tunnel port, carrying real traffic, watched by the OVS exporter; a single-node Ceph cluster with
an RBD image per inventory volume, watched by the mgr module and the Ceph exporter;
node_exporter and the Pushgateway; every exporter the production command, fed by the inventory
service (lab/stack.py); an operator Prometheus with the built rules, remote-writing to
VictoriaMetrics, sending to Alertmanager, whose webhook receiver prints each notification; the
tenants' own Prometheus, made by the reconciler, federating through the gate. Then one real
fault (a guest the inventory says is running is destroyed), its page and its resolution; what
one tenant's Prometheus holds and that another's series are absent; and a summary.

Each step is shown as it goes (``[n/N +elapsed]``); a failing step is named with its log, and
everything started is stopped. ``summary.json`` in the work dir records the URLs, PIDs and
namespaces for ``demo status`` and ``demo down`` (lab/demo_control.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import requests
import yaml
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from tabulate import tabulate

from alerts.build import build as build_alerts
from lab.alerting import Notification, WebhookReceiver
from lab.ceph import CephLab
from lab.demo_control import record_network, start_reaper
from lab.demo_dashboards import build as build_dashboards
from lab.demo_dashboards import dashboards as draw_dashboards
from lab.demo_finance import estimate, finance, finance_table
from lab.libvirt import KVM_DEVICE, LibvirtLab
from lab.ovs import OvsLab
from lab.procs import Daemon, free_port, run_checked
from lab.prometheus import PrometheusServer
from lab.stack import ZCP_OBS, Stack, lab_promises, write_private
from lab.victoriametrics import VictoriaMetricsServer
from zcp.binaries import missing
from zcp.config import Config, PromisesConfig
from zcp.config import WebhookReceiver as WebhookConfig
from zcp.errors import DaemonError
from zcp.files import private_dir, write_atomic
from zcp.inventory import make_cache
from zcp.inventory.model import VM, Inventory
from zcp.wait import wait_until

log = logging.getLogger(__name__)
HOST = "kvm-demo"
# the demo shortens every alert's for: and Alertmanager's waits so a fault pages in seconds
# (production values: alerts/); the interval is the operator Prometheus's scrape and evaluation
FOR = "6s"
INTERVAL = "3s"
FAULT_ALERT = "VMDownUnexpectedly"
FAULT_DOWN_SECONDS = 20.0  # over five scrapes (metering's max_gap in the demo: 15 s)
STRANGER = "i-99-999-VM"


@dataclass
class Options:
    """What the demo brings up (everything by default)."""

    libvirt: bool = True
    ovs: bool = True
    ceph: bool = True
    tenants: bool = True
    fault: bool = True


@dataclass
class Demo:
    """The state of one demo run: what runs where, filled in step by step."""

    cfg: Config
    config_path: Path | None
    workdir: Path
    opts: Options
    stack: Stack
    started: float = field(default_factory=time.monotonic)
    inventory: Inventory | None = None
    libvirt: LibvirtLab | None = None
    ovs: OvsLab | None = None
    ceph: CephLab | None = None
    pinger: tuple[str, str] | None = None
    receiver: WebhookReceiver | None = None
    prometheus: PrometheusServer | None = None
    victoria: VictoriaMetricsServer | None = None
    urls: dict[str, str] = field(default_factory=dict)
    tenant_urls: dict[str, str] = field(default_factory=dict)  # account name -> Prometheus
    tenant_ids: dict[str, str] = field(default_factory=dict)  # account name -> account id
    tenants_config: Path | None = None
    fault: dict[str, Any] = field(default_factory=dict)
    isolation: list[dict[str, Any]] = field(default_factory=list)
    dashboards: dict[str, Any] = field(default_factory=dict)
    finance: dict[str, Any] = field(default_factory=dict)
    estimate: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    ready_file: Path | None = None
    started_wall: float = field(default_factory=time.time)
    namespaces: list[str] = field(default_factory=list)
    zone: str = "zone1"
    gate_port: int = field(default_factory=free_port)
    prometheus_port: int = field(default_factory=free_port)
    gate_metrics_port: int = field(default_factory=free_port)

    def elapsed(self) -> float:
        return time.monotonic() - self.started


class StepFailed(DaemonError):
    """A step of the demo failed: which one, why, and where its log is."""


def _say(text: str) -> None:
    click.echo(text, err=True)


@contextlib.contextmanager
def _step(demo: Demo, n: int, total: int, text: str, logs: Path) -> Iterator[None]:
    _say(f"[{n}/{total} +{demo.elapsed():5.1f}s] {text}")
    try:
        yield
    except StepFailed:
        raise
    except Exception as exc:  # the step's edge: whatever broke is one line naming the step
        log.debug("demo step failed", extra={"step": text}, exc_info=True)
        what = (
            str(exc) if isinstance(exc, DaemonError | OSError) else f"{type(exc).__name__}: {exc}"
        )
        raise StepFailed(
            f"step {n}/{total} ({text}) failed: {what[:600]}; its logs: {logs}"
        ) from None


class Query:
    """Instant queries to a running Prometheus (prometheus-api-client); any failure is one
    DaemonError line."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.api = PrometheusConnect(url, timeout=10)

    def query(self, expr: str) -> list[dict[str, Any]]:
        try:
            return list(self.api.custom_query(expr))
        except (PrometheusApiClientException, requests.RequestException) as exc:
            raise DaemonError(f"{self.url}: query {expr!r}: {str(exc)[:200]}") from None


def _wait_for(prom: PrometheusServer | Query, expr: str, timeout: float) -> list[dict[str, Any]]:
    result = wait_until(lambda: prom.query(expr), timeout, interval=0.5)
    if not result:
        raise DaemonError(f"Prometheus returned nothing for {expr!r} within {timeout:.0f}s")
    return result


def _boot(lab: LibvirtLab, inv: Inventory, vm: VM) -> None:
    """An inventory VM as a guest: disks by device id, NICs by MAC, as CloudStack defines it."""
    disks = sorted((v.device_id or 0) for v in inv.volumes_by_vm.get(vm.id, ()))
    targets = tuple("vd" + chr(ord("a") + d) for d in disks) or ("vda",)
    macs = tuple(n.mac for n in inv.nics_by_vm.get(vm.id, ()))
    lab.create_guest(vm.instance_name, vm.id, disks=targets, macs=macs)


def _create_images(lab: CephLab, inv: Inventory) -> int:
    """The inventory's RBD volumes as images in their pools, 4-12 MiB written to each."""
    volumes = [v for v in inv.volumes if v.rbd_image]
    for pool in sorted({v.rbd_image.split("/", 1)[0] for v in volumes}):
        lab.create_pool(pool)
    for n, vol in enumerate(volumes):
        pool, image = vol.rbd_image.split("/", 1)
        lab.create_image(pool, image, "64M", write_bytes=(n % 3 + 1) * 4 * 1024 * 1024)
    return len(volumes)


def _print_page(n: Notification) -> None:
    """One line a notification: what Alertmanager sent the on-call engineer."""
    for a in n.alerts():
        labels = a.get("labels", {})
        _say(
            f"      page: {a.get('status', '?').upper():8} {labels.get('alertname', '?')} "
            f"({labels.get('severity', '?')}) {a.get('annotations', {}).get('summary', '')}"
        )


# -- the steps -------------------------------------------------------------------------------------
def step_inventory(demo: Demo) -> None:
    demo.inventory = make_cache(demo.cfg).refresh()
    counts = demo.inventory.counts()
    _say("      " + ", ".join(f"{v} {k}" for k, v in counts.items() if v))
    demo.tenant_ids = {t.name: t.account_id for t in demo.inventory.tenants}
    # the lab's one hypervisor stands in the inventory's (first) zone: the dashboards' and
    # rules' zone label
    demo.zone = next((v.zone for v in demo.inventory.vms if v.zone), "zone1")


def step_inventory_service(demo: Demo) -> None:
    demo.stack.inventory_service()
    demo.urls["inventory service"] = f"{demo.stack.inventory_url}/metrics"
    _say(f"      serving identity metrics and snapshots on {demo.stack.inventory_url}")


def step_guests(demo: Demo) -> None:
    assert demo.inventory is not None
    lab = LibvirtLab(demo.workdir / "libvirt")
    demo.stack.on_close("libvirtd", lab.stop)
    lab.start()
    demo.libvirt = lab
    for vm in demo.inventory.vms:
        _boot(lab, demo.inventory, vm)
    lab.create_guest(STRANGER, str(uuid.uuid5(uuid.NAMESPACE_DNS, "zcp-demo-stranger")))
    exporter = demo.stack.libvirt(lab, HOST, demo.zone)
    kind = "KVM" if KVM_DEVICE.exists() else "TCG-emulated (no /dev/kvm)"
    _say(
        f"      {len(demo.inventory.vms) + 1} {kind} guests running (one unknown to CloudStack); "
        f"libvirt exporter on {exporter.ready_url}"
    )


def step_switch(demo: Demo) -> None:
    assert demo.inventory is not None
    ovs = OvsLab(demo.workdir / "ovs")
    demo.stack.on_close("openvswitch", ovs.stop)
    ovs.start()
    demo.ovs = ovs
    plugged = ovs.plug_nics(demo.inventory.nics)
    # the overlay: a VXLAN tunnel port towards another hypervisor, as CloudStack's OVS plugin
    ovs.add_tunnel("br-int", "vxlan-demo", "192.0.2.2")
    demo.pinger = (plugged[0][0], plugged[1][1]) if len(plugged) > 1 else None
    exporter = demo.stack.ovs(ovs, HOST, demo.zone)
    demo.namespaces = ovs.namespaces()
    _say(
        f"      {len(plugged)} VM ports and a VXLAN tunnel port on br-int; "
        f"OVS exporter on {exporter.ready_url}"
    )


def step_ceph(demo: Demo) -> None:
    assert demo.inventory is not None
    ceph = CephLab(demo.workdir / "ceph", rgw=True, cephfs=True)
    demo.stack.on_close("ceph", ceph.stop)
    ceph.start()
    demo.ceph = ceph
    images = _create_images(ceph, demo.inventory)
    buckets = _fill_buckets(ceph, demo.inventory)
    share = _cephfs_share(ceph, demo.inventory)
    exporter = demo.stack.ceph(
        ceph,
        demo.zone,
        rbd_interval_seconds=10.0,
        df_interval_seconds=10.0,
        rgw_interval_seconds=10.0,
    )
    demo.urls["radosgw (S3)"] = ceph.rgw_url
    _say(
        f"      {images} RBD images in pools fast/flow/bulk; {buckets} RGW buckets; "
        f"{share}\n      Ceph exporter on {exporter.ready_url}, mgr module on "
        f"{ceph.mgr_prometheus_url}"
    )


def _fill_buckets(ceph: CephLab, inv: Inventory) -> int:
    """Each tenant an RGW user (uid: the account id) and a bucket with objects, over S3."""
    made = 0
    for n, tenant in enumerate(inv.tenants):
        s3 = ceph.s3_client(tenant.account_id)
        bucket = f"{tenant.name.lower()}-assets"[:63]
        s3.create_bucket(Bucket=bucket)
        for k in range(n + 2):
            s3.put_object(Bucket=bucket, Key=f"object-{k}", Body=b"z" * (256 * 1024 * (k + 1)))
        made += 1
    return made


def _cephfs_share(ceph: CephLab, inv: Inventory) -> str:
    """A CephFS subvolume (in a group named after the account id, as the exporter expects) for
    the first tenant, with a file written into it."""
    tenant = inv.tenants[0]
    ceph.run("ceph", "fs", "subvolumegroup", "create", "cephfs", tenant.account_id)
    ceph.run(
        "ceph",
        "fs",
        "subvolume",
        "create",
        "cephfs",
        "share",
        "--group_name",
        tenant.account_id,
        "--size",
        str(64 * 1024 * 1024),
    )
    path = ceph.run(
        "ceph", "fs", "subvolume", "getpath", "cephfs", "share", "--group_name", tenant.account_id
    ).stdout.strip()
    ceph.write_cephfs(f"{path}/report.bin", b"y" * (3 * 1024 * 1024))
    return f"a CephFS subvolume of {tenant.name} (3 MiB written)"


def step_host_exporters(demo: Demo) -> None:
    demo.stack.node_exporter(HOST, demo.zone)
    demo.urls["Pushgateway"] = demo.stack.pushgateway()
    _say(f"      node_exporter for {HOST}; Pushgateway on {demo.urls['Pushgateway']}")


def step_operator(demo: Demo) -> None:
    """VictoriaMetrics, Alertmanager with the webhook receiver, the operator Prometheus."""
    receiver = WebhookReceiver(record=demo.workdir / "pages.jsonl", on_notification=_print_page)
    demo.receiver = receiver
    demo.stack.on_close("webhook receiver", receiver.close)
    vm = VictoriaMetricsServer(demo.workdir / "victoria-metrics")
    vm.start(60)
    demo.stack.daemons.append(vm)
    demo.stack.on_close("victoria-metrics", vm.stop)
    demo.victoria = vm
    demo.stack.add_job("victoria-metrics", vm.url.removeprefix("http://"))
    alerting = demo.cfg.alerting.model_copy(
        update={
            "webhook": WebhookConfig(url=receiver.url),
            "group_wait_seconds": 1.0,
            "group_interval_seconds": 2.0,
            "repeat_interval_seconds": 3600.0,
            # the promises a one-node lab keeps, unless the demo's config states its own
            **(
                {}
                if "promises" in demo.cfg.alerting.model_fields_set
                else {"promises": PromisesConfig.model_validate(lab_promises())}
            ),
        }
    )
    built = build_alerts(demo.workdir / "alerts", alerting, for_override=FOR)
    am = demo.stack.alertmanager(yaml.safe_load(built.alertmanager.read_text()))
    if demo.ceph is not None and not missing("prometheus-blackbox-exporter"):
        # S3 as a customer's tool sees it, through Debian's blackbox exporter
        demo.stack.s3_probe(built.blackbox, {demo.zone: demo.ceph.rgw_url})
    if demo.opts.tenants:
        _start_gate(demo)
    prom = demo.stack.prometheus(
        [built.rules],
        INTERVAL,
        am,
        remote_write=[f"{vm.url}/api/v1/write"],
        port=demo.prometheus_port,
    )
    demo.prometheus = prom
    demo.urls.update(
        {
            "operator Prometheus": prom.url,
            "Alertmanager": am.url,
            "VictoriaMetrics (long-term store)": vm.url,
        }
    )
    _wait_for(prom, 'up{job="zcp-inventory"} == 1', 30)
    if demo.libvirt is not None:
        _wait_for(prom, 'libvirt_up{job="libvirt"} == 1', 30)
    _say(
        f"      rules built (every for: shortened to {FOR} for the demo), "
        f"Prometheus {prom.url} -> remote write -> VictoriaMetrics {vm.url}"
    )


def _start_gate(demo: Demo) -> None:
    """The tenants' config and the federation gate, as production runs it (its own command),
    before the operator Prometheus scrapes it; its upstream is that Prometheus."""
    assert demo.inventory is not None
    gate, metrics = demo.gate_port, demo.gate_metrics_port
    demo.urls["federation gate"] = f"http://127.0.0.1:{gate}/federate"
    demo.urls["federation gate metrics"] = f"http://127.0.0.1:{metrics}/metrics"
    state = demo.workdir / "tenants"
    cfg: dict[str, Any] = {
        "tenants": {
            "state_dir": str(state),
            "accounts": {t.account_id: "standard" for t in demo.inventory.tenants},
            "tiers": {"standard": {"retention": "1d", "scrape_interval": "5s"}},
            "pushgateway_url": demo.urls.get("Pushgateway"),
            "local": {"port_base": 20000 + free_port() % 400 * 100},
            "gate": {
                "listen": f"127.0.0.1:{gate}",
                "metrics_listen": f"127.0.0.1:{metrics}",
                "upstream": f"http://127.0.0.1:{demo.prometheus_port}",
                "tokens_file": str(state / "gate-tokens.yaml"),
            },
        }
    }
    # the tenant stacks provision the built tenant dashboards into their Grafana
    cfg["tenants"]["dashboards_dir"] = str(build_dashboards(demo.workdir, demo.stack.log_format))
    if demo.config_path is not None:
        cfg["inventory"] = yaml.safe_load(demo.config_path.read_text()).get("inventory", {})
    demo.tenants_config = write_private(demo.workdir / "tenants.yaml", cfg)
    daemon = Daemon(
        "federation-gate",
        [*_tenants_command(demo, demo.stack.log_format), "federation-proxy"],
        demo.workdir / "federation-gate",
        demo.urls["federation gate metrics"],
    )
    daemon.start(60)
    demo.stack.daemons.append(daemon)
    demo.stack.on_close("federation gate", daemon.stop)
    demo.stack.add_job("zcp-federation-gate", f"127.0.0.1:{metrics}")
    # the tenants' Prometheus, as the reconciler makes them (their ports known after it)
    demo.stack.jobs.append(
        {
            "job_name": "tenant-prometheus",
            "file_sd_configs": [{"files": [str(_tenant_targets(demo))], "refresh_interval": "5s"}],
        }
    )


def _tenant_targets(demo: Demo) -> Path:
    """The file_sd file of the tenants' Prometheus (job ``tenant-prometheus``)."""
    return demo.workdir / "tenant-prometheus.json"


def _tenants_command(demo: Demo, log_format: str = "json") -> list[str]:
    return [*ZCP_OBS, "--log-format", log_format, "--config", str(demo.tenants_config), "tenants"]


def step_tenant_stacks(demo: Demo) -> None:
    """The reconciler makes a stack per tenant; each federates through the gate."""
    base = _tenants_command(demo, demo.stack.log_format)
    demo.stack.on_close("tenant stacks", lambda: _retire_all(demo))
    run_checked([*base, "reconcile"], timeout=300)
    listing = run_checked([*base, "list", "--json"], timeout=60).stdout
    names = {v: k for k, v in demo.tenant_ids.items()}
    for row in json.loads(listing):
        demo.tenant_urls[names.get(row["tenant"], row["tenant"])] = (
            f"http://127.0.0.1:{row['prometheus']}"
        )
    targets = [
        {
            "targets": [url.removeprefix("http://")],
            "labels": {"tenant": demo.tenant_ids.get(name, name), "zone": demo.zone},
        }
        for name, url in sorted(demo.tenant_urls.items())
    ]
    write_atomic(_tenant_targets(demo), json.dumps(targets, indent=1) + "\n")
    for name, url in sorted(demo.tenant_urls.items()):
        _wait_for(Query(url), 'count({__name__=~"tenant:.+"})', 90)
        _say(f"      {name}: its own Prometheus on {url}, federating through the gate")


def _retire_all(demo: Demo) -> None:
    """Stop every tenant stack the demo made (their data stays in the work dir)."""
    if demo.tenants_config is None:
        return
    base = _tenants_command(demo)
    for tenant_id in demo.tenant_ids.values():
        with contextlib.suppress(DaemonError):
            run_checked([*base, "retire", tenant_id, "--wait", "30"], timeout=120)


def step_report(demo: Demo) -> None:
    """What the operator Prometheus sees, joined with identity."""
    prom = demo.prometheus
    assert prom is not None
    rows = [
        [r["metric"].get("account") or "(unknown to CloudStack)", r["value"][1]]
        for r in _wait_for(prom, "count by (account) (max by (vm_id, account) (zcp_vm_info))", 30)
    ]
    _say("\n" + tabulate(sorted(rows), headers=["account", "VMs"]))
    if demo.libvirt is not None:
        cpu = prom.query(
            "sum by (account) (libvirt_domain_cpu_time_seconds_total * on (vm_id) "
            "group_left (account) max by (vm_id, account) (zcp_vm_info{job='libvirt'}))"
        )
        rows = [
            [r["metric"].get("account") or "(unknown)", f"{float(r['value'][1]):.2f}"] for r in cpu
        ]
        _say("\n" + tabulate(sorted(rows), headers=["account", "guest CPU s"]))
    if demo.ovs is not None and demo.pinger is not None:
        demo.ovs.ping(*demo.pinger, count=10, size=1000)
        traffic = _wait_for(
            prom,
            "sum by (account) (ovs_interface_receive_bytes_total * on (vm_id) "
            "group_left (account) max by (vm_id, account) (zcp_vm_info)) > 10000",
            40,
        )
        rows = [[r["metric"].get("account", ""), int(float(r["value"][1]))] for r in traffic]
        _say("\n" + tabulate(sorted(rows), headers=["account", "bytes into OVS (ping)"]))
    if demo.ceph is not None:
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
        _say("\n" + tabulate(sorted(rows), headers=["account", "class", "RBD bytes used"]))
        rows = [
            [r["metric"].get("account", ""), int(float(r["value"][1]))]
            for r in _wait_for(
                prom,
                "tenant:ceph_rgw_user_stored_bytes:sum * on (tenant) group_left (account) "
                'label_replace(zcp_tenant_info, "tenant", "$1", "account_id", "(.+)")',
                60,
            )
        ]
        _say("\n" + tabulate(sorted(rows), headers=["account", "RGW bytes stored"]))
    _say("")


def step_fault(demo: Demo) -> None:
    """Destroy a guest CloudStack says is running; the page; boot it again; the resolution."""
    assert demo.libvirt is not None and demo.inventory is not None
    assert demo.receiver is not None and demo.prometheus is not None
    vm = next(v for v in demo.inventory.vms if v.state == "Running")
    _say(f"      destroying {vm.instance_name} ({vm.id}) behind CloudStack's back")
    t0 = time.monotonic()
    demo.libvirt.destroy_guest(vm.instance_name, delete_disks=False)

    def about(a: dict[str, Any]) -> bool:
        labels = a.get("labels", {})
        return bool(labels.get("alertname") == FAULT_ALERT and labels.get("vm_id") == vm.id)

    fired = demo.receiver.wait_for(about, "firing", t0, 120)
    if fired is None:
        raise DaemonError(f"no {FAULT_ALERT} page for {vm.instance_name} within 120s")
    alert = next(
        a for n in demo.receiver.snapshot() if n.at >= t0 for a in n.alerts("firing") if about(a)
    )
    labels, notes = alert["labels"], alert.get("annotations", {})
    _say(
        f"      paged after {fired - t0:.1f}s: {FAULT_ALERT} for {labels.get('instance_name')} "
        f"of account {labels.get('account')}\n        runbook: {notes.get('runbook_url')}"
        f"\n        (in this repository: alerts/runbooks/{labels.get('area', 'compute')}.md)"
    )
    # down long enough to be an outage for metering too: a gap up to metering's max_gap (five
    # scrapes) is a missed scrape and billed as running
    time.sleep(max(0.0, FAULT_DOWN_SECONDS - (time.monotonic() - t0)))
    _boot(demo.libvirt, demo.inventory, vm)
    t1 = time.monotonic()
    down = t1 - t0
    resolved = demo.receiver.wait_for(about, "resolved", t1, 120)
    if resolved is None:
        raise DaemonError(f"{FAULT_ALERT} for {vm.instance_name} not resolved within 120s")
    _say(f"      booted again after {down:.0f}s down; resolved after {resolved - t1:.1f}s")
    demo.fault = {
        "down_seconds": round(down, 1),
        "alert": FAULT_ALERT,
        "vm_id": vm.id,
        "instance_name": vm.instance_name,
        "account": labels.get("account"),
        "runbook_url": notes.get("runbook_url"),
        "paged_after_seconds": round(fired - t0, 1),
        "resolved_after_seconds": round(resolved - t1, 1),
    }


def classify(series: list[dict[str, str]], tenant: str, own: str) -> dict[str, int]:
    """A tenant Prometheus's series: the tenant's own (its ``tenant`` label), the Prometheus's
    own (its scrape's ``up``/``scrape_*`` and its self-scrape at ``own`` host:port), and
    anything else, which must not be there."""
    counts = {"own": 0, "self": 0, "other": 0}
    for labels in series:
        if labels.get("tenant") == tenant:
            counts["own"] += 1
        elif "tenant" not in labels and (
            (labels.get("job") == "prometheus" and labels.get("instance") == own)
            or (
                labels.get("job") == "federate"
                and re.fullmatch(r"up|scrape_.+", labels["__name__"])
            )
        ):
            counts["self"] += 1
        else:
            counts["other"] += 1
    return counts


def step_isolation(demo: Demo) -> None:
    """What each tenant's Prometheus holds: its own series, none of another's."""
    rows = []
    for name, url in sorted(demo.tenant_urls.items()):
        series = _series(url)
        counts = classify(series, demo.tenant_ids.get(name, name), url.removeprefix("http://"))
        rows.append(
            {
                "tenant": name,
                "its Prometheus": url,
                "own tenant:* series": counts["own"],
                "its own scrape's": counts["self"],
                "anyone else's": counts["other"],
            }
        )
    demo.isolation = rows
    leaked = [str(r["tenant"]) for r in rows if r["anyone else's"]]
    _say("\n" + tabulate(rows, headers="keys") + "\n")
    if leaked:
        raise DaemonError(f"tenant Prometheus holding others' series: {', '.join(leaked)}")


def _series(url: str) -> list[dict[str, str]]:
    """Every series a Prometheus holds now (its series API)."""
    try:
        resp = requests.get(
            f"{url}/api/v1/series", params={"match[]": '{__name__=~".+"}'}, timeout=10
        )
        return list(resp.json()["data"])
    except (requests.RequestException, ValueError, KeyError) as exc:
        raise DaemonError(f"{url}: the series API: {str(exc)[:200]}") from None


def step_dashboards(demo: Demo) -> None:
    """The dashboards built, checked against live data and drawn to PNG previews: the
    operator's from the operator Prometheus, the tenant's from the first tenant's own."""
    assert demo.prometheus is not None
    first = sorted(demo.tenant_urls)[0] if demo.tenant_urls else None
    tenant = (demo.tenant_ids[first], demo.tenant_urls[first]) if first else None
    demo.dashboards = draw_dashboards(
        demo.workdir, demo.prometheus.url, demo.stack.log_format, tenant=tenant
    )
    rows = [
        [
            Path(p["path"]).stem,
            p["audience"],
            f"{p['panels'] - len(p['no_data'])}/{p['panels']}",
            "blank" if p["blank"] else "drawn",
        ]
        for p in demo.dashboards["previews"]
    ]
    _say("\n" + tabulate(rows, headers=["dashboard", "for", "panels with data", "preview"]))
    _say(f"      previews in {demo.dashboards['previews_dir']}\n")


def step_finance(demo: Demo) -> None:
    """Finance's view with the real ``zcp-obs metering`` commands against the long-term
    store (lab/demo_finance.py): now, the estimate of the usage so far (``metering
    estimate``: FOCUS CSV and HTML statement, status estimate); the bill itself needs whole
    settled hours (metering/job.py ``Job.plan``), so a thread waits for the demo's first
    hour to settle, then meters it and prints the billed report (``zcp-obs demo finance``
    does the same on demand)."""
    assert demo.victoria is not None
    store = demo.victoria.url
    # what finance sees now: the usage so far, estimated (nothing billed)
    demo.estimate = estimate(
        demo.workdir, store, demo.started_wall, demo.stack.log_format, demo.config_path
    )
    _say("\n" + finance_table(demo.estimate))
    _say(f"      FOCUS CSV: {demo.estimate['focus_csv'][0]}")
    _say(f"      statement: {demo.estimate['html'][0]}\n")

    def meter() -> None:
        try:
            result = finance(
                demo.workdir,
                store,
                demo.started_wall,
                demo.stack.log_format,
                demo.config_path,
                pushgateway_url=demo.urls.get("Pushgateway"),
            )
        except DaemonError as exc:
            log.error("demo finance failed", extra={"error": str(exc)[:500]})
            _say(f"finance: {exc}")
            return
        demo.finance = result
        click.echo("\n" + finance_table(result))
        click.echo(f"FOCUS CSV: {', '.join(result['focus_csv'])}")
        click.echo(f"statement: {', '.join(result['html'])}")
        if demo.ready_file is not None and demo.ready_file.exists():
            doc = json.loads(demo.ready_file.read_text())
            write_atomic(demo.ready_file, json.dumps({**doc, "finance": result}, indent=1) + "\n")

    threading.Thread(target=meter, name="demo-finance", daemon=True).start()


STEPS: list[tuple[str, str, Callable[[Demo], None]]] = [
    ("", "loading the inventory", step_inventory),
    ("", "starting the inventory service", step_inventory_service),
    ("libvirt", "starting libvirtd and the inventory's VMs as guests", step_guests),
    ("ovs", "starting Open vSwitch (userspace): VM ports, a VXLAN tunnel", step_switch),
    ("ceph", "starting a single-node Ceph cluster: RBD volumes, RGW buckets, CephFS", step_ceph),
    ("", "starting node_exporter and the Pushgateway", step_host_exporters),
    ("", "VictoriaMetrics, Alertmanager, the operator Prometheus", step_operator),
    ("", "what the operator Prometheus sees", step_report),
    ("tenants", "the tenants' own Prometheus, through the federation gate", step_tenant_stacks),
    ("fault", "a real fault: a running VM destroyed outside CloudStack", step_fault),
    ("", "finance: the usage so far, metered from the long-term store", step_finance),
    ("tenants", "isolation: what each tenant's Prometheus holds", step_isolation),
    ("", "the dashboards: built, checked and drawn from live data", step_dashboards),
]


def _skip_reason(what: str, opts: Options) -> str:
    if what == "libvirt":
        return "" if opts.libvirt else "disabled with --no-libvirt"
    if what == "ovs":
        return "" if opts.ovs else "disabled with --no-ovs"
    if what == "ceph":
        return "" if opts.ceph else "disabled with --no-ceph"
    if what == "tenants":
        return "" if opts.tenants else "disabled with --no-tenants"
    if what == "fault":
        return "" if opts.fault and opts.libvirt else "needs the guests (--fault, --libvirt)"
    return ""


def _requirements(opts: Options) -> Options:
    """Turn off what this machine cannot run, saying why (guests run under TCG without KVM)."""
    needs = {
        "libvirt": ("libvirtd", "qemu-system-x86_64"),
        "ovs": ("ovsdb-server", "ovs-vswitchd", "ip", "ping"),
        "ceph": ("ceph-mon", "ceph-mgr", "ceph-osd", "rbd", "monmaptool"),
    }
    for what, binaries in needs.items():
        if getattr(opts, what):
            reason = missing(*binaries)
            if reason:
                _say(f"      not running {what}: {reason}")
                setattr(opts, what, False)
    return opts


def summary(demo: Demo) -> dict[str, Any]:
    """What ``demo status``, ``demo down`` and a reader need: URLs, files, PIDs, namespaces."""
    pids = {d.name: d.pid for d in demo.stack.daemons if d.pid}
    for lab in (demo.ovs, demo.ceph):
        for d in lab.daemons() if lab is not None else ():
            if d.pid:
                pids[d.name] = d.pid
    if demo.libvirt is not None:
        for name, pid in (
            ("libvirtd", demo.libvirt.libvirtd_pid),
            ("virtlogd", demo.libvirt.virtlogd_pid),
        ):
            if pid:
                pids[name] = pid
    for pidfile in sorted((demo.workdir / "tenants").glob("tenants/*/*/*.pid")):
        with contextlib.suppress(OSError, ValueError):
            pids[f"tenant {pidfile.parent.parent.name[:8]} {pidfile.stem}"] = int(
                pidfile.read_text().strip()
            )
    return {
        "pid": None,  # the demo's own, filled in by the caller
        "workdir": str(demo.workdir),
        "urls": demo.urls,
        "tenant_prometheus": demo.tenant_urls,
        "tenant_ids": demo.tenant_ids,
        "tenants_config": str(demo.tenants_config) if demo.tenants_config else None,
        "pages": str(demo.workdir / "pages.jsonl"),
        "fault": demo.fault,
        "isolation": demo.isolation,
        "dashboards": demo.dashboards,
        "finance": demo.finance,
        "estimate": demo.estimate,
        "steps": demo.steps,
        "started_at": demo.started_wall,
        "config_path": str(demo.config_path) if demo.config_path else None,
        "daemons": pids,
        "namespaces": demo.namespaces,
        "bridges": _bridges(demo),
        "seconds_to_summary": round(demo.elapsed(), 1),
    }


def _bridges(demo: Demo) -> list[str]:
    return [demo.libvirt.bridge] if demo.libvirt is not None else []


def summary_text(doc: dict[str, Any], control: str = "Ctrl-C") -> str:
    """The closing screen: URLs, files and logs, and what to try next."""
    urls = doc["urls"]
    lines = ["", f"The stack is up ({doc['seconds_to_summary']:.0f}s). Open:"]
    lines += [f"  {name:34} {url}" for name, url in urls.items()]
    lines += [
        f"  {'Prometheus of tenant ' + n:34} {u}" for n, u in doc["tenant_prometheus"].items()
    ]
    if doc["fault"]:
        f = doc["fault"]
        lines.append(
            f"Fault: {f['alert']} for {f['instance_name']} paged in {f['paged_after_seconds']}s,"
            f" resolved in {f['resolved_after_seconds']}s (every page: {doc['pages']})"
        )
    if doc.get("dashboards"):
        d = doc["dashboards"]
        drawn = sum(not p["blank"] for p in d["previews"])
        lines.append(
            f"Dashboards: {len(d['previews'])} drawn from live data ({drawn} with data) "
            f"in {d['previews_dir']}"
        )
    if doc.get("estimate"):
        est = doc["estimate"]
        lines.append(
            f"Finance: usage so far (estimate) {est['focus_csv'][0]} and {est['html'][0]}; the "
            "bill once the hour has settled (zcp-obs demo finance)"
        )
    lines.append(f"Files and logs: {doc['workdir']}")
    prom = urls.get("operator Prometheus", "")
    lines += ["Try:", f"  curl -s '{prom}/api/v1/query?query=tenant:ceph_rbd_image_used_bytes:sum'"]
    if doc["tenants_config"]:
        lines.append(f"  zcp-obs --config {doc['tenants_config']} tenants list")
    lines.append(f"  stop: {control}")
    return "\n".join(lines)


def run_demo(
    cfg: Config,
    config_path: Path | None,
    workdir: Path | None,
    duration: float | None,
    opts: Options | None = None,
    ready_file: Path | None = None,
) -> None:
    """Start everything, show it working, run until Ctrl-C, SIGTERM or ``duration``."""
    # 0700: the work dir holds configs with the operator's receivers and secrets
    workdir = private_dir(workdir or Path(tempfile.mkdtemp(prefix="zcp-demo-")))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    opts = _requirements(opts or Options())
    stack = Stack(workdir / "stack", config_path, log_format=cfg.logging.format)
    demo = Demo(cfg, config_path, workdir, opts, stack, ready_file=ready_file)
    start_reaper(workdir)  # so that nothing outlives even a SIGKILLed demo
    try:
        total = len(STEPS)
        for n, (what, text, fn) in enumerate(STEPS, 1):
            if stop.is_set():
                raise DaemonError("stopped before the demo was up")
            reason = _skip_reason(what, opts)
            if reason:
                _say(f"[{n}/{total} +{demo.elapsed():5.1f}s] skipped: {text} ({reason})")
                continue
            demo.steps.append({"n": n, "step": text, "started_at": time.time()})
            with _step(demo, n, total, text, workdir):
                fn(demo)
            record_network(workdir, demo.namespaces, _bridges(demo))
        doc = summary(demo)
        doc["pid"] = None
        if ready_file is None:
            click.echo(summary_text(doc, "Ctrl-C"))
        else:  # detached: `demo up` prints it
            write_atomic(ready_file, json.dumps(doc, indent=1) + "\n")
        log.info("demo up", extra={"prometheus": demo.urls.get("operator Prometheus")})
        if duration is None and ready_file is None:
            _say("Running; press Ctrl-C to stop.")
        stop.wait(duration)
    finally:
        _say("stopping")
        stack.close()
        _say(f"stopped; files and logs kept in {workdir}")
