"""Ceph exporter: per-tenant storage usage by storage class (RBD images, RGW users and buckets),
refreshed in the background; cluster health stays with Ceph's own mgr prometheus module."""

from __future__ import annotations

from exporters.ceph.collector import CephCollector
from exporters.ceph.sources import CephSources
from exporters.http import ExporterServer, serve_until_signal
from zcp.config import Config
from zcp.inventory import make_cache

DEFAULT_PORT = 9284  # the mgr module has 9283

__all__ = ["DEFAULT_PORT", "CephCollector", "CephSources", "run"]


def run(cfg: Config, host: str, port: int, deadline: float) -> None:
    """Run the exporter until SIGTERM/SIGINT."""
    cache = make_cache(cfg)
    cache.start()
    sources = CephSources(cfg.ceph).start()
    server = ExporterServer("ceph", CephCollector(sources, cache, cfg.ceph), host, port,
                            deadline)
    serve_until_signal(server, [sources.stop, cache.stop], conf=str(cfg.ceph.conf),
                       id=cfg.ceph.id)
