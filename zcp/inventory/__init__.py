"""The CloudStack inventory: one read-only view of the cloud from the API or a YAML file."""

from __future__ import annotations

from collections.abc import Callable

from zcp.config import Config
from zcp.errors import ConfigError
from zcp.inventory.cache import InventoryCache
from zcp.inventory.model import VM, Inventory, Nic, PublicIp, StoragePool, Tenant, Volume
from zcp.inventory.yamlfile import load_inventory_file

__all__ = [
    "VM",
    "Inventory",
    "InventoryCache",
    "Nic",
    "PublicIp",
    "StoragePool",
    "Tenant",
    "Volume",
    "inventory_loader",
    "make_cache",
]


def inventory_loader(cfg: Config, source: str | None = None) -> Callable[[], Inventory]:
    """A function that loads the inventory from the configured (or given) source."""
    source = source or cfg.inventory.source
    if source == "cloudstack":
        if cfg.cloudstack is None:
            raise ConfigError("inventory source is cloudstack but the config has no cloudstack:")
        from zcp.inventory.cloudstack import CloudStackSource

        return CloudStackSource(cfg.cloudstack, cfg.inventory.storage_classes).load
    if source == "service":
        if cfg.inventory.service is None:
            raise ConfigError(
                "inventory source is service but the config has no "
                "inventory.service: (url of the inventory service)"
            )
        from zcp.inventory.remote import ServiceSource

        return ServiceSource(cfg.inventory.service).load
    path = cfg.inventory.file
    return lambda: load_inventory_file(path)


def make_cache(cfg: Config, source: str | None = None) -> InventoryCache:
    """An :class:`InventoryCache` configured from ``cfg`` (not started)."""
    return InventoryCache(
        inventory_loader(cfg, source),
        refresh_interval=cfg.inventory.refresh_interval_seconds,
        cache_file=cfg.inventory.cache_file,
    )
