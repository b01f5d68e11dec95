"""libvirt/KVM exporter: per-VM counters with CloudStack identity, one bulk stats call a scrape."""

from __future__ import annotations

import socket

from exporters.http import ExporterServer, serve_until_signal
from exporters.libvirt.source import GROUP_FLAGS, LibvirtCollector, LibvirtSource
from zcp.config import Config
from zcp.inventory import make_cache

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
    serve_until_signal(server, [source.close, cache.stop], uri=uri)
