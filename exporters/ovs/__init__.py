"""Open vSwitch exporter: per-VM ports, VXLAN tunnels and datapath health, with CloudStack
identity. OVSDB through the ``ovs`` library's IDL (a replica kept by one persistent
connection), ovs-vswitchd through its unixctl socket with a deadline on every call."""

from __future__ import annotations

from exporters.http import ExporterServer, serve_until_signal, served
from exporters.ovs.collector import OvsCollector
from exporters.ovs.replica import OvsdbReplica
from zcp.config import Config, OvsExporterConfig, split_listen
from zcp.inventory import make_cache

DEFAULT_PORT = 9475

__all__ = ["DEFAULT_PORT", "OvsCollector", "OvsdbReplica", "run"]


def run(cfg: Config, section: OvsExporterConfig) -> None:
    """Run the exporter until SIGTERM/SIGINT."""
    cache = make_cache(cfg)
    cache.start()
    replica = OvsdbReplica(section.db).start()
    collector = OvsCollector(
        replica,
        cache,
        section.rundir,
        section.vswitchd_ctl,
        call_timeout=section.call_timeout_seconds,
    )
    host, port = split_listen(section.listen)
    server = ExporterServer(
        "ovs", collector, host, port, section.deadline_seconds, **served(section)
    )
    serve_until_signal(
        server,
        [replica.stop, cache.stop],
        db=section.db,
        rundir=str(section.rundir),
        inventory=cfg.inventory.source,
    )
