"""The stack on real daemons, assembled once for the demo and the alerting lab.

Every piece is the production command (``zcp-obs exporter ...``) run as its own process from
YAML config files, as on a real site: ``region.yaml`` (or the caller's config) for the inventory
service, which alone reads the inventory's source, and ``hypervisor.yaml`` for the libvirt, OVS
and Ceph exporters, which take their inventory from the service. Everything started registers
its stop on one :class:`contextlib.ExitStack`, so :meth:`Stack.close` stops every daemon in
reverse order even when one of them fails to stop.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

import requests
import yaml

from alerts.blackbox import scrape_job
from lab.blackbox import BlackboxExporter
from lab.ceph import CephLab
from lab.libvirt import LibvirtLab
from lab.ovs import OvsLab
from lab.procs import Daemon, free_port
from lab.prometheus import AlertmanagerServer, PrometheusServer
from zcp.binaries import require
from zcp.errors import DaemonError
from zcp.files import write_atomic
from zcp.wait import wait_until

log = logging.getLogger(__name__)
ZCP_OBS = [sys.executable, "-m", "zcp_obs"]


def write_private(path: Path, doc: dict[str, Any]) -> Path:
    """Write a YAML config atomically, readable by its owner only (it may hold secrets)."""
    write_atomic(path, yaml.safe_dump(doc, sort_keys=False), 0o600)
    return path


def lab_promises(**overrides: Any) -> dict[str, Any]:
    """``alerting.promises`` for a lab on one machine: what it really keeps, so that the
    promises' alerts stay quiet unless a test breaks one. One Ceph node with one OSD (one
    replica, copies spread over OSDs, one host), guests packed onto two cores, busy on boot;
    media checked only where a test or the demo sets device classes."""
    return {
        "cpu_overcommit_max": 64.0,
        "memory_overcommit_max": 8.0,
        "steal_max": 0.9,
        "ceph_pool_size": 1,
        "ceph_pool_min_size": 1,
        "ceph_failure_domain": "osd",
        "ceph_min_hosts": 1,
        "storage_media": {},
        **overrides,
    }


class Stack:
    """Daemons of the stack, started piece by piece, with the scrape jobs Prometheus needs."""

    def __init__(
        self,
        workdir: Path,
        region_config: Path | None = None,
        log_format: str = "json",
        inventory_refresh_seconds: float = 5.0,
    ) -> None:
        self.workdir = workdir
        self.region_config = region_config
        self.log_format = log_format
        self.refresh = inventory_refresh_seconds
        self.exit = contextlib.ExitStack()
        self.jobs: list[dict[str, Any]] = []
        self.daemons: list[Daemon] = []
        self.exporters: dict[str, dict[str, Any]] = {}
        self.inventory_url = ""
        workdir.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop everything started, in reverse order; every stop runs even if one fails."""
        self.exit.close()

    def on_close(self, name: str, stop: Any) -> None:
        """Run ``stop`` at :meth:`close`; a failure is logged and the other stops still run."""

        def guarded() -> None:
            try:
                stop()
            except Exception as exc:
                log.error("stop failed", extra={"what": name, "error": str(exc)[:300]})

        self.exit.callback(guarded)

    def add_job(self, job: str, target: str, **labels: str) -> None:
        """Scrape ``target`` (host:port) as ``job`` with extra target ``labels``."""
        static: dict[str, Any] = {"targets": [target]}
        if labels:
            static["labels"] = labels
        self.jobs.append(
            {
                "job_name": job,
                "honor_labels": job in ("ceph", "pushgateway"),
                "static_configs": [static],
            }
        )

    # -- the zcp-obs processes -------------------------------------------------------------------
    def _command(
        self, name: str, config: Path | None, *argv: str, job: str, **labels: str
    ) -> Daemon:
        port = free_port()
        args = [*ZCP_OBS, "--log-format", self.log_format]
        if config is not None:
            args += ["--config", str(config)]
        daemon = Daemon(
            name,
            [*args, *argv, "--listen", f"127.0.0.1:{port}"],
            self.workdir / name,
            f"http://127.0.0.1:{port}/metrics",
        )
        daemon.start(60)
        self.daemons.append(daemon)
        self.on_close(name, daemon.stop)
        self.add_job(job, f"127.0.0.1:{port}", **labels)
        return daemon

    def inventory_service(self) -> Daemon:
        """``zcp-obs exporter inventory`` from the region config (job ``zcp-inventory``), once
        it has an inventory to serve."""
        daemon = self._command(
            "inventory-service", self.region_config, "exporter", "inventory", job="zcp-inventory"
        )
        self.inventory_url = daemon.ready_url.removesuffix("/metrics")

        def serving() -> bool:
            try:
                return (
                    requests.get(f"{self.inventory_url}/v1/inventory", timeout=5).status_code == 200
                )
            except requests.RequestException:
                return False

        if not wait_until(serving, 60):
            raise DaemonError(
                f"the inventory service has no inventory after 60s: {daemon.log_tail()}"
            )
        return daemon

    def hypervisor_config(self) -> Path:
        """``hypervisor.yaml``: inventory from the service, the exporters' sections so far."""
        if not self.inventory_url:
            raise DaemonError("start the inventory service before the exporters")
        return write_private(
            self.workdir / "hypervisor.yaml",
            {
                "inventory": {
                    "source": "service",
                    "service": {"url": self.inventory_url},
                    "refresh_interval_seconds": self.refresh,
                },
                "exporters": self.exporters,
            },
        )

    def exporter(self, name: str, section: dict[str, Any], job: str, **labels: str) -> Daemon:
        """``zcp-obs exporter <name>`` from ``hypervisor.yaml`` with ``section`` as its
        ``exporters.<name>``."""
        self.exporters[name] = section
        return self._command(
            f"{name}-exporter", self.hypervisor_config(), "exporter", name, job=job, **labels
        )

    # -- the lab daemons with their exporters ------------------------------------------------------
    def libvirt(self, lab: LibvirtLab, host: str, zone: str = "", **section: Any) -> Daemon:
        """The libvirt exporter on a running ``lab`` (the lab is the caller's to stop)."""
        labels = {"host": host, **({"zone": zone} if zone else {})}
        return self.exporter(
            "libvirt", {"uri": lab.uri, "hostname": host, **section}, "libvirt", **labels
        )

    def ovs(self, lab: OvsLab, host: str, zone: str = "", **section: Any) -> Daemon:
        """The OVS exporter on a running ``lab``."""
        labels = {"host": host, **({"zone": zone} if zone else {})}
        return self.exporter(
            "ovs",
            {
                "db": lab.db,
                "rundir": str(lab.workdir),
                "vswitchd_ctl": str(lab.vswitchd_ctl),
                **section,
            },
            "ovs",
            **labels,
        )

    def ceph(self, lab: CephLab, zone: str = "", **section: Any) -> Daemon:
        """Our Ceph exporter (job ``zcp-ceph``) and the mgr module (job ``ceph``)."""
        labels = {"zone": zone} if zone else {}
        daemon = self.exporter(
            "ceph",
            {
                "conf": str(lab.conf),
                "keyring": str(lab.keyring),
                "rgw_enabled": lab.with_rgw,
                "rgw_endpoint": lab.rgw_url if lab.with_rgw else None,
                **section,
            },
            "zcp-ceph",
            **labels,
        )
        mgr = lab.mgr_prometheus_url.removeprefix("http://").removesuffix("/metrics")
        self.add_job("ceph", mgr, **labels)
        return daemon

    def node_exporter(self, host: str, zone: str = "") -> Daemon:
        """Debian's node_exporter for this machine as hypervisor ``host`` (job ``node``)."""
        binary = require("prometheus-node-exporter", "prometheus-node-exporter")
        port = free_port()
        daemon = Daemon(
            "node-exporter",
            [
                binary,
                f"--web.listen-address=127.0.0.1:{port}",
                "--collector.disable-defaults",
                "--collector.cpu",
                "--collector.meminfo",
                "--collector.diskstats",
                "--collector.netdev",
                "--collector.loadavg",
                "--collector.uname",
                "--collector.filesystem",
            ],
            self.workdir / "node-exporter",
            f"http://127.0.0.1:{port}/metrics",
        )
        daemon.start(30)
        self.daemons.append(daemon)
        self.on_close("node-exporter", daemon.stop)
        self.add_job("node", f"127.0.0.1:{port}", host=host, **({"zone": zone} if zone else {}))
        return daemon

    def pushgateway(self) -> str:
        """Debian's Pushgateway (job ``pushgateway``, honouring the pushed job label); its URL."""
        binary = require("prometheus-pushgateway", "prometheus-pushgateway")
        port = free_port()
        daemon = Daemon(
            "pushgateway",
            [binary, f"--web.listen-address=127.0.0.1:{port}"],
            self.workdir / "pushgateway",
            f"http://127.0.0.1:{port}/-/ready",
        )
        daemon.start(30)
        self.daemons.append(daemon)
        self.on_close("pushgateway", daemon.stop)
        self.add_job("pushgateway", f"127.0.0.1:{port}")
        return f"http://127.0.0.1:{port}"

    def s3_probe(self, blackbox_yml: Path, endpoints: dict[str, str]) -> BlackboxExporter:
        """Debian's blackbox exporter with the S3 module ``alerts build`` wrote, and the
        operator's ``s3-probe`` job probing ``endpoints`` (zone -> S3 URL) through it."""
        exporter = BlackboxExporter(
            self.workdir / "blackbox-exporter", yaml.safe_load(blackbox_yml.read_text())
        )
        exporter.start(30)
        self.daemons.append(exporter)
        self.on_close("blackbox-exporter", exporter.stop)
        self.jobs.append(scrape_job(exporter.address, endpoints))
        return exporter

    # -- Prometheus and Alertmanager -------------------------------------------------------------
    def alertmanager(self, config: dict[str, Any]) -> AlertmanagerServer:
        """Alertmanager with ``config`` (scraped as job ``alertmanager``)."""
        am = AlertmanagerServer(self.workdir / "alertmanager", config)
        am.start()
        self.daemons.append(am)
        self.on_close("alertmanager", am.stop)
        self.add_job("alertmanager", am.url.removeprefix("http://"))
        return am

    def prometheus(
        self,
        rule_files: list[Path],
        interval: str = "5s",
        alertmanager: AlertmanagerServer | None = None,
        remote_write: list[str] | None = None,
        port: int | None = None,
    ) -> PrometheusServer:
        """Prometheus scraping every job added so far and itself (job ``prometheus``), with
        ``rule_files``, remote-writing to each URL of ``remote_write`` (a long-term store)."""
        port = port or free_port()
        self.add_job("prometheus", f"127.0.0.1:{port}")
        config: dict[str, Any] = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": self.jobs,
        }
        if alertmanager is not None:
            config["alerting"] = {
                "alertmanagers": [
                    {"static_configs": [{"targets": [alertmanager.url.removeprefix("http://")]}]}
                ]
            }
        if remote_write:
            config["remote_write"] = [{"url": url} for url in remote_write]
        prom = PrometheusServer(
            self.workdir / "prometheus", config, rule_files=rule_files, port=port
        )
        prom.start()
        self.daemons.append(prom)
        self.on_close("prometheus", prom.stop)
        return prom
