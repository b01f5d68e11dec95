"""What every part's commands share: one-line errors, the parsed config, the service name the
logs carry. Parts build their click groups with these; the application mounts them."""

from __future__ import annotations

from typing import Any

import click

from zcp.config import Config, load_config
from zcp.errors import ZcpError
from zcp.logs import setup_logging

CONTEXT = {"help_option_names": ["-h", "--help"]}


class ZcpGroup(click.Group):
    """A group that turns expected failures into one ``Error: ...`` line and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; a :class:`ZcpError` becomes a one-line error."""
        try:
            return super().invoke(ctx)
        except ZcpError as exc:
            raise click.ClickException(str(exc)) from None


def config_of(ctx: click.Context) -> Config:
    """The config the root command parsed (the defaults when a group runs on its own)."""
    obj = ctx.find_root().ensure_object(dict)
    cfg = obj.get("config")
    if not isinstance(cfg, Config):
        try:
            cfg = load_config()
        except ZcpError as exc:
            raise click.ClickException(str(exc)) from None
        obj["config"] = cfg
    return cfg


def log_as(ctx: click.Context, service: str) -> None:
    """Log under ``service`` (``zcp-obs-libvirt-exporter``, ...) from here on."""
    setup_logging(service, config_of(ctx).logging)
