"""Expected failures: each carries a message a user can act on; the CLI prints it on one line."""

from __future__ import annotations


class ZcpError(Exception):
    """Base class for every expected failure of zcp-observability."""


class ConfigError(ZcpError):
    """The configuration file is missing, unreadable or invalid."""


class InventoryError(ZcpError):
    """The inventory could not be loaded from its source."""


class CloudStackError(InventoryError):
    """The CloudStack API answered with an error or could not be reached."""


class CloudStackAuthError(CloudStackError):
    """CloudStack rejected the API key or the request signature."""


class DaemonError(ZcpError):
    """A helper daemon (Prometheus, Alertmanager, ...) failed to start or stop."""


class MissingProgramError(ZcpError):
    """A program zcp-observability runs (promtool, a lab daemon) is not installed."""
