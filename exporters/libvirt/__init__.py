"""libvirt/KVM exporter: per-VM counters with CloudStack identity, one bulk stats call a scrape."""

from __future__ import annotations

import socket

from exporters.http import ExporterServer, serve_until_signal, served
from exporters.libvirt.source import GROUP_FLAGS, LibvirtCollector, LibvirtSource
from zcp.config import Config, LibvirtExporterConfig, split_listen
from zcp.inventory import make_cache

DEFAULT_PORT = 9177

__all__ = ["DEFAULT_PORT", "GROUP_FLAGS", "LibvirtCollector", "LibvirtSource", "run"]


def run(cfg: Config, section: LibvirtExporterConfig) -> None:
    """Run the exporter until SIGTERM/SIGINT."""
    cache = make_cache(cfg)
    cache.start()
    source = LibvirtSource(
        section.uri,
        section.groups,
        chunks=section.chunks,
        connections=section.connections,
        procfs=section.procfs,
    )
    collector = LibvirtCollector(
        source, cache, section.hostname or socket.gethostname(), section.deadline_seconds
    )
    host, port = split_listen(section.listen)
    server = ExporterServer(
        "libvirt", collector, host, port, section.deadline_seconds, **served(section)
    )
    serve_until_signal(
        server, [source.close, cache.stop], uri=section.uri, inventory=cfg.inventory.source
    )
