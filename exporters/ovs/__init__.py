"""Open vSwitch exporter: per-VM ports, VXLAN tunnels and datapath health, with CloudStack
identity. OVSDB through the ``ovs`` library's IDL (a replica kept by one persistent
connection), ovs-vswitchd through its unixctl socket with a deadline on every call."""

from __future__ import annotations

from pathlib import Path

from exporters.http import ExporterServer, serve_until_signal
from exporters.ovs.collector import OvsCollector
from exporters.ovs.replica import OvsdbReplica
from zcp.config import Config
from zcp.inventory import make_cache

DEFAULT_PORT = 9475
DEFAULT_DB = "unix:/var/run/openvswitch/db.sock"
DEFAULT_RUNDIR = Path("/var/run/openvswitch")

__all__ = ["DEFAULT_DB", "DEFAULT_PORT", "DEFAULT_RUNDIR", "OvsCollector", "OvsdbReplica", "run"]


def run(cfg: Config, db: str, rundir: Path, ctl: str | None, host: str, port: int,
        deadline: float) -> None:
    """Run the exporter until SIGTERM/SIGINT."""
    cache = make_cache(cfg)
    cache.start()
    replica = OvsdbReplica(db).start()
    collector = OvsCollector(replica, cache, rundir, ctl)
    server = ExporterServer("ovs", collector, host, port, deadline)
    serve_until_signal(server, [replica.stop, cache.stop], db=db, rundir=str(rundir))
