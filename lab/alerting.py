"""The alerting path end to end on real daemons: the inventory service (the real
``zcp-obs exporter inventory``), the inventory's VMs as KVM guests with the libvirt exporter, a
userspace Open vSwitch with the VMs' NICs and the OVS exporter, a single-node Ceph cluster with
its mgr prometheus module and our Ceph exporter (every exporter the real command, fed by the
inventory service), Prometheus with the built rules, Alertmanager with the built
configuration, and a local webhook receiver that records every notification; assembled by
:class:`lab.stack.Stack`, as the demo is.

Used by the end-to-end tests (tests/alerts) and by bench/alert_latency.py. ``for:`` and the
intervals are short here (test config only); the production values are in alerts/.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from alerts.build import build
from alerts.model import seconds
from lab.ceph import CephLab
from lab.libvirt import LibvirtLab
from lab.ovs import OvsLab
from lab.procs import Daemon
from lab.prometheus import AlertmanagerServer, PrometheusServer
from lab.stack import Stack, lab_promises
from zcp.config import parse_config
from zcp.errors import DaemonError
from zcp.inventory import make_cache
from zcp.inventory.model import Inventory
from zcp.inventory.yamlfile import default_inventory_text
from zcp.wait import wait_until

log = logging.getLogger(__name__)
HOST = "kvm01"
ZONE = "zone1"
# what the settings do not bound on the way from a fault to its page: the exporter's answer,
# the hops Prometheus -> Alertmanager -> receiver, scheduling (pages measured within the
# settings' floor: bench/README.md, alert latency)
PAGE_MARGIN_SECONDS = 2.0


@dataclass
class Notification:
    """One webhook delivery: when it arrived and Alertmanager's payload (version 4)."""

    at: float
    payload: dict[str, Any]

    def alerts(self, status: str | None = None) -> list[dict[str, Any]]:
        return [
            a for a in self.payload.get("alerts", []) if status is None or a.get("status") == status
        ]


class _ReceiverServer(ThreadingHTTPServer):
    # Alertmanager flushes all its groups at once: socketserver's backlog of 5 would drop
    # some connections, each then delayed by a SYN retransmit (1 s)
    request_queue_size = 128


class WebhookReceiver:
    """An HTTP server that records Alertmanager webhook notifications."""

    def __init__(
        self,
        record: Path | None = None,
        on_notification: Callable[[Notification], None] | None = None,
    ) -> None:
        """``record``: a JSON line appended per notification; ``on_notification``: called
        with each as it arrives (the demo prints it)."""
        self.notifications: list[Notification] = []
        self._lock = threading.Lock()
        self.record = record
        self.on_notification = on_notification
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
                note = Notification(time.monotonic(), payload)
                with receiver._lock:
                    receiver.notifications.append(note)
                    if receiver.record is not None:
                        with receiver.record.open("a") as f:
                            f.write(json.dumps({"at": time.time(), **payload}) + "\n")
                if receiver.on_notification is not None:
                    receiver.on_notification(note)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = _ReceiverServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/alerts"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def snapshot(self) -> list[Notification]:
        with self._lock:
            return list(self.notifications)

    def wait_for(
        self, match: Callable[[dict[str, Any]], bool], status: str, after: float, timeout: float
    ) -> float | None:
        """Arrival time of the first notification after ``after`` holding an alert with
        ``status`` that ``match``es; None if none came within ``timeout``."""

        def arrived() -> float | None:
            return next(
                (
                    n.at
                    for n in self.snapshot()
                    if n.at >= after and any(match(a) for a in n.alerts(status))
                ),
                None,
            )

        return wait_until(arrived, timeout, interval=0.05)

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

    def __init__(
        self,
        lab: LibvirtLab,
        workdir: Path,
        hold: str = "3s",
        scrape_interval: str = "1s",
        group_wait: float = 1.0,
        ovs: OvsLab | None = None,
        ceph: CephLab | None = None,
        node: bool = False,
        pushgateway: bool = False,
        ovs_ports: tuple[str, str] = ("alvm", "10.201"),
    ) -> None:
        self.lab = lab
        # the OVS lab is shared by the session: each AlertLab plugs its own ports
        self.ovs_ports = ovs_ports
        self.node = node
        self.with_pushgateway = pushgateway
        self.pushgateway_url = ""
        self.ovs = ovs
        self.ceph = ceph
        self.workdir = workdir
        self.scrape_interval = scrape_interval
        workdir.mkdir(parents=True, exist_ok=True)
        self.receiver = WebhookReceiver()
        inv_path = single_host_inventory(workdir)
        self.config_path = workdir / "config.yaml"
        self.config_path.write_text(
            yaml.safe_dump(
                {
                    "inventory": {
                        "source": "file",
                        "file": str(inv_path),
                        "refresh_interval_seconds": 5,
                    },
                    "alerting": {
                        "webhook": {"url": self.receiver.url},
                        "group_wait_seconds": group_wait,
                        "group_interval_seconds": 1,
                        "repeat_interval_seconds": 3600,
                        "resolve_timeout_seconds": 60,
                        "promises": lab_promises(),
                    },
                }
            )
        )
        self.cfg = parse_config(yaml.safe_load(self.config_path.read_text()), "alert lab")
        self.built = build(workdir / "alerts", self.cfg.alerting, for_override=hold)
        self.inventory: Inventory | None = None
        self.stack = Stack(workdir / "stack", self.config_path, inventory_refresh_seconds=2)
        self.inventory_service: Daemon | None = None
        self.exporter: Daemon | None = None
        self.alertmanager: AlertmanagerServer | None = None
        self.prometheus: PrometheusServer | None = None

    def start(self) -> None:
        cache = make_cache(self.cfg)
        self.inventory = cache.refresh()
        self.stack.on_close("webhook receiver", self.receiver.close)
        self.stack.on_close("guests", self._destroy_guests)
        for vm in self.inventory.vms:
            self.boot(vm.id)
        self.inventory_service = self.stack.inventory_service()
        self.exporter = self.stack.libvirt(self.lab, HOST, ZONE)
        if self.ovs is not None:
            prefix, net = self.ovs_ports
            self.ovs.plug_nics(self.inventory.nics, prefix=prefix, net=net)
            self.stack.ovs(self.ovs, HOST, ZONE, call_timeout_seconds=1.0)
        if self.ceph is not None:
            self.stack.ceph(
                self.ceph,
                ZONE,
                rbd_interval_seconds=2,
                rgw_interval_seconds=2,
                df_interval_seconds=2,
                command_timeout_seconds=5,
            )
            if self.ceph.with_rgw:
                self.stack.s3_probe(self.built.blackbox, {ZONE: self.ceph.rgw_url})
        if self.node:
            self.stack.node_exporter(HOST, ZONE)
        if self.with_pushgateway:
            self.pushgateway_url = self.stack.pushgateway()
        self.alertmanager = self.stack.alertmanager(
            yaml.safe_load(self.built.alertmanager.read_text())
        )
        self.prometheus = self.stack.prometheus(
            [self.built.rules], self.scrape_interval, self.alertmanager
        )
        self.wait_query(f"count(libvirt_domain_state == 1) >= {len(self.inventory.vms)}", 60)

    def boot(self, vm_id: str) -> None:
        """Start the inventory VM ``vm_id`` as a guest (again)."""
        assert self.inventory is not None
        vm = self.inventory.vm_by_id[vm_id]
        macs = tuple(n.mac for n in self.inventory.nics_by_vm.get(vm.id, ()))
        self.lab.create_guest(vm.instance_name, vm.id, macs=macs)

    def wait_query(self, expr: str, timeout: float) -> None:
        prom = self.prometheus
        assert prom is not None
        if not wait_until(lambda: prom.query(expr), timeout):
            raise DaemonError(f"{expr!r} still empty after {timeout:.0f}s")

    def page_bound(self, alert: str, margin: float = PAGE_MARGIN_SECONDS) -> float:
        """Seconds a fault may take to page as ``alert`` in this lab, read from the running
        configuration: one scrape interval to see it, one evaluation to make the alert pending,
        its ``for:`` rounded up to the next evaluation, Alertmanager's group_wait (a new
        group) or group_interval (a group that exists), and ``margin``."""
        assert self.prometheus is not None, "the lab is not started"
        config = yaml.safe_load(self.prometheus.config_path.read_text())
        prom = config["global"]
        # the slowest job's, should a job have its own
        scrape = max(
            seconds(c.get("scrape_interval", prom["scrape_interval"]))
            for c in [prom, *config["scrape_configs"]]
        )
        rule_groups = yaml.safe_load(self.built.rules.read_text())["groups"]
        group, rule = next(
            (g, r) for g in rule_groups for r in g["rules"] if r.get("alert") == alert
        )
        evaluation = seconds(group.get("interval", prom["evaluation_interval"]))
        am = self.cfg.alerting
        return (
            scrape
            + evaluation
            + seconds(rule["for"])
            + evaluation
            + max(am.group_wait_seconds, am.group_interval_seconds)
            + margin
        )

    def daemons(self) -> list[Daemon]:
        return list(self.stack.daemons)

    def _destroy_guests(self) -> None:
        if self.inventory is not None:
            for vm in self.inventory.vms:
                if vm.instance_name in self.lab.guests:
                    self.lab.destroy_guest(vm.instance_name)

    def stop(self) -> None:
        """Stop every daemon started, then the receiver and the guests."""
        self.stack.close()
