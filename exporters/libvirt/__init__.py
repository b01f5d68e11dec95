"""libvirt/KVM exporter: per-VM counters with CloudStack identity, one bulk stats call a scrape."""

from __future__ import annotations

import logging
import signal
import socket
import threading

from exporters.http import ExporterServer
from exporters.libvirt.source import GROUP_FLAGS, LibvirtCollector, LibvirtSource
from zcp.config import Config
from zcp.inventory import make_cache

log = logging.getLogger(__name__)
DEFAULT_PORT = 9177

__all__ = ["DEFAULT_PORT", "GROUP_FLAGS", "LibvirtCollector", "LibvirtSource", "run"]


def run(cfg: Config, uri: str, host: str, port: int, deadline: float, hostname: str | None,
        groups: tuple[str, ...], chunks: int = 4, connections: int = 2,
        procfs: bool | None = None) -> None:
    """Run the exporter until SIGTERM/SIGINT."""
    cache = make_cache(cfg)
    cache.start()
    source = LibvirtSource(uri, groups, chunks=chunks, connections=connections, procfs=procfs)
    collector = LibvirtCollector(source, cache, hostname or socket.gethostname(), deadline)
    server = ExporterServer("libvirt", collector, host, port, deadline)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    log.info("libvirt exporter listening",
             extra={"listen": f"{host}:{server.port}", "uri": uri, "deadline_s": deadline})
    stop.wait()
    log.info("libvirt exporter stopping")
    server.shutdown()
    source.close()
    cache.stop()
