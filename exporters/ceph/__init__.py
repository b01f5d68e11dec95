"""Ceph exporter: per-tenant storage usage by storage class (RBD images, RGW users and buckets),
refreshed in the background; cluster health stays with Ceph's own mgr prometheus module."""

from __future__ import annotations

from exporters.ceph.collector import CephCollector
from exporters.ceph.sources import CephSources
from exporters.http import ExporterServer, serve_until_signal, served
from zcp.config import CephExporterConfig, Config, split_listen
from zcp.errors import ConfigError
from zcp.inventory import make_cache

DEFAULT_PORT = 9284  # the mgr module has 9283

__all__ = ["DEFAULT_PORT", "CephCollector", "CephSources", "run"]


def run(cfg: Config, section: CephExporterConfig) -> None:
    """Run the exporter until SIGTERM/SIGINT."""
    if not section.conf.exists():
        raise ConfigError(
            f"{section.conf} not found (--conf, or exporters.ceph.conf in the config)"
        )
    cache = make_cache(cfg)
    cache.start()
    sources = CephSources(section).start()
    host, port = split_listen(section.listen)
    server = ExporterServer(
        "ceph",
        CephCollector(sources, cache, section),
        host,
        port,
        section.deadline_seconds,
        **served(section),
    )
    serve_until_signal(
        server,
        [sources.stop, cache.stop],
        conf=str(section.conf),
        id=section.id,
        inventory=cfg.inventory.source,
    )
