"""The alerting path end to end on real daemons: the inventory's VMs as KVM guests, the libvirt
exporter, a userspace Open vSwitch with the VMs' NICs and the OVS exporter, a single-node Ceph
cluster with its mgr prometheus module and our Ceph exporter, the inventory's identity
metrics, Prometheus with the built rules, Alertmanager with the built configuration, and a local
webhook receiver that records every notification.

Used by the end-to-end tests (tests/alerts) and by bench/alert_latency.py. ``for:`` and the
intervals are short here (test config only); the production values are in alerts/.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry
from prometheus_client import start_http_server as serve_registry

from alerts.build import build
from exporters.ceph import CephCollector, CephSources
from exporters.http import ExporterServer
from exporters.ovs import OvsCollector, OvsdbReplica
from lab.ceph import CephLab
from lab.libvirt import LibvirtLab
from lab.ovs import OvsLab
from lab.procs import Daemon, free_port
from lab.prometheus import AlertmanagerServer, PrometheusServer
from zcp.config import CephConfig, parse_config
from zcp.errors import DaemonError
from zcp.inventory import make_cache
from zcp.inventory.metrics import InventoryCollector
from zcp.inventory.model import Inventory
from zcp.inventory.yamlfile import default_inventory_text

log = logging.getLogger(__name__)
HOST = "kvm01"
ZONE = "zone1"


@dataclass
class Notification:
    """One webhook delivery: when it arrived and Alertmanager's payload (version 4)."""

    at: float
    payload: dict[str, Any]

    def alerts(self, status: str | None = None) -> list[dict[str, Any]]:
        return [a for a in self.payload.get("alerts", [])
                if status is None or a.get("status") == status]


class WebhookReceiver:
    """An HTTP server that records Alertmanager webhook notifications."""

    def __init__(self) -> None:
        self.notifications: list[Notification] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    payload = json.loads(body)
                except ValueError:
                    self.send_response(400)
                    self.end_headers()
                    return
                with receiver._lock:
                    receiver.notifications.append(Notification(time.monotonic(), payload))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/alerts"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def snapshot(self) -> list[Notification]:
        with self._lock:
            return list(self.notifications)

    def wait_for(self, match: Callable[[dict[str, Any]], bool], status: str, after: float,
                 timeout: float) -> float | None:
        """Arrival time of the first notification after ``after`` holding an alert with
        ``status`` that ``match``es; None if none came within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for n in self.snapshot():
                if n.at >= after and any(match(a) for a in n.alerts(status)):
                    return n.at
            time.sleep(0.05)
        return None

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def single_host_inventory(workdir: Path) -> Path:
    """The demo inventory with every VM on :data:`HOST` (one lab libvirtd plays the host)."""
    data = yaml.safe_load(default_inventory_text())
    for vm in data["vms"]:
        vm["host"] = HOST
    path = workdir / "inventory.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class AlertLab:
    """Everything on the alerting path, started against a running :class:`LibvirtLab`."""

    def __init__(self, lab: LibvirtLab, workdir: Path, hold: str = "3s",
                 scrape_interval: str = "1s", group_wait: float = 1.0,
                 ovs: OvsLab | None = None, ceph: CephLab | None = None) -> None:
        self.lab = lab
        self.ovs = ovs
        self.ceph = ceph
        self.workdir = workdir
        self.hold = hold
        self.scrape_interval = scrape_interval
        workdir.mkdir(parents=True, exist_ok=True)
        self.receiver = WebhookReceiver()
        inv_path = single_host_inventory(workdir)
        self.config_path = workdir / "config.yaml"
        self.config_path.write_text(yaml.safe_dump({
            "inventory": {"source": "file", "file": str(inv_path)},
            "alerting": {"webhook": {"url": self.receiver.url},
                         "group_wait_seconds": group_wait, "group_interval_seconds": 1,
                         "repeat_interval_seconds": 3600, "resolve_timeout_seconds": 60},
        }))
        self.cfg = parse_config(yaml.safe_load(self.config_path.read_text()), "alert lab")
        self.built = build(workdir / "alerts", self.cfg.alerting, for_override=hold)
        self.inventory: Inventory | None = None
        self.exporter_port = free_port()
        self.exporter = Daemon("libvirt-exporter", [
            str(Path(sys.executable).parent / "zcp-obs"), "--config", str(self.config_path),
            "exporter", "libvirt", "--uri", lab.uri, "--hostname", HOST,
            "--listen", f"127.0.0.1:{self.exporter_port}"],
            workdir / "exporter", f"http://127.0.0.1:{self.exporter_port}/metrics")
        self.alertmanager: AlertmanagerServer | None = None
        self.prometheus: PrometheusServer | None = None
        self._inv_server: Any = None
        self.ovs_exporter: ExporterServer | None = None
        self._replica: OvsdbReplica | None = None
        self.ceph_exporter: ExporterServer | None = None
        self.ceph_sources: CephSources | None = None

    def start(self) -> None:
        cache = make_cache(self.cfg)
        cache.refresh()
        self.inventory = cache.current()
        for vm in self.inventory.vms:
            self.boot(vm.id)
        registry = CollectorRegistry()
        registry.register(InventoryCollector(cache))
        inv_port = free_port()
        self._inv_server, _ = serve_registry(inv_port, addr="127.0.0.1", registry=registry)
        self.exporter.start()
        extra_jobs: list[dict[str, Any]] = []
        if self.ovs is not None:
            self.ovs.plug_nics(self.inventory.nics, prefix="alvm", net="10.201")
            self._replica = OvsdbReplica(self.ovs.db).start()
            self.ovs_exporter = ExporterServer(
                "ovs", OvsCollector(self._replica, cache, self.ovs.workdir,
                                    str(self.ovs.vswitchd_ctl), call_timeout=1.0),
                "127.0.0.1", free_port(), 8.0).start()
            extra_jobs.append({"job_name": "ovs", "static_configs": [{
                "targets": [f"127.0.0.1:{self.ovs_exporter.port}"],
                "labels": {"host": HOST, "zone": ZONE}}]})
        if self.ceph is not None:
            ceph_cfg = CephConfig(conf=self.ceph.conf, keyring=self.ceph.keyring,
                                  rgw_endpoint=self.ceph.rgw_url if self.ceph.with_rgw else None,
                                  rbd_interval_seconds=2, rgw_interval_seconds=2,
                                  df_interval_seconds=2, command_timeout_seconds=5)
            self.ceph_sources = CephSources(ceph_cfg).start()
            self.ceph_exporter = ExporterServer(
                "ceph", CephCollector(self.ceph_sources, cache, ceph_cfg), "127.0.0.1",
                free_port(), 8.0).start()
            mgr = self.ceph.mgr_prometheus_url.removeprefix("http://").removesuffix("/metrics")
            extra_jobs += [
                {"job_name": "ceph", "honor_labels": True,
                 "static_configs": [{"targets": [mgr], "labels": {"zone": ZONE}}]},
                {"job_name": "zcp-ceph", "static_configs": [{
                    "targets": [f"127.0.0.1:{self.ceph_exporter.port}"],
                    "labels": {"zone": ZONE}}]}]
        self.alertmanager = AlertmanagerServer(
            self.workdir / "alertmanager",
            yaml.safe_load(self.built.alertmanager.read_text()))
        self.alertmanager.start()
        am = self.alertmanager.url.removeprefix("http://")
        self.prometheus = PrometheusServer(self.workdir / "prometheus", {
            "global": {"scrape_interval": self.scrape_interval,
                       "evaluation_interval": self.scrape_interval},
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [am]}]}]},
            "scrape_configs": [
                {"job_name": "libvirt", "static_configs": [{
                    "targets": [f"127.0.0.1:{self.exporter_port}"],
                    "labels": {"host": HOST, "zone": ZONE}}]},
                {"job_name": "zcp-inventory",
                 "static_configs": [{"targets": [f"127.0.0.1:{inv_port}"]}]},
                {"job_name": "alertmanager", "static_configs": [{"targets": [am]}]},
                *extra_jobs,
            ],
        }, rule_files=[self.built.rules])
        self.prometheus.start()
        self.wait_query('count(libvirt_domain_state == 1) >= '
                        f'{len(self.inventory.vms)}', 60)

    def boot(self, vm_id: str) -> None:
        """Start the inventory VM ``vm_id`` as a guest (again)."""
        assert self.inventory is not None
        vm = self.inventory.vm_by_id[vm_id]
        macs = tuple(n.mac for n in self.inventory.nics_by_vm.get(vm.id, ()))
        self.lab.create_guest(vm.instance_name, vm.id, macs=macs)

    def wait_query(self, expr: str, timeout: float) -> None:
        assert self.prometheus is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.prometheus.query(expr):
                return
            time.sleep(0.2)
        raise DaemonError(f"{expr!r} still empty after {timeout:.0f}s")

    def daemons(self) -> list[Daemon]:
        return [d for d in (self.exporter, self.alertmanager, self.prometheus) if d is not None]

    def stop(self) -> None:
        for d in reversed(self.daemons()):
            d.stop()
        if self.ovs_exporter is not None:
            self.ovs_exporter.shutdown()
        if self._replica is not None:
            self._replica.stop()
        if self.ceph_exporter is not None:
            self.ceph_exporter.shutdown()
        if self.ceph_sources is not None:
            self.ceph_sources.stop()
        if self._inv_server is not None:
            self._inv_server.shutdown()
        self.receiver.close()
        if self.inventory is not None:
            for vm in self.inventory.vms:
                if vm.instance_name in self.lab.guests:
                    self.lab.destroy_guest(vm.instance_name)
