"""``zcp-obs``: the root command. It parses the config and the log format once, turns expected
failures into one-line errors, and mounts each part's group; the commands live with their parts.
The demo comes from the lab (``zcp-observability-lab``), mounted only where it is installed.
"""

from __future__ import annotations

from pathlib import Path

import click

from alerts.cli import alerts
from dashboards.cli import dashboards
from exporters.cli import exporter
from metering.cli import metering
from tenant_stack.cli import tenants
from zcp.cliutil import CONTEXT, ZcpGroup
from zcp.config import CONFIG_ENV, load_config
from zcp.errors import ZcpError
from zcp.inventory.cli import inventory
from zcp.logs import setup_logging


@click.group(cls=ZcpGroup, context_settings=CONTEXT)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=CONFIG_ENV,
    help=f"YAML config file (default: ${CONFIG_ENV}, else built-in "
    "defaults: the embedded demo inventory, logs to stderr).",
)
@click.option(
    "--log-format",
    type=click.Choice(["json", "text"]),
    default=None,
    help="Override logging.format from the config.",
)
@click.version_option(package_name="zcp-observability")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, log_format: str | None) -> None:
    """Observability and metering for a CloudStack + KVM + Ceph + Open vSwitch cloud.

    Exporters, alert rules, dashboards, metering and per-tenant monitoring stacks, all driven by
    one YAML config. Where the lab is installed, `zcp-obs demo` brings up a local demo on real
    daemons.
    """
    try:
        cfg = load_config(config_path)
    except ZcpError as exc:
        raise click.ClickException(str(exc)) from None
    if log_format is not None:
        cfg = cfg.model_copy(
            update={"logging": cfg.logging.model_copy(update={"format": log_format})}
        )
    ctx.ensure_object(dict).update(config=cfg, config_path=config_path)
    setup_logging(f"zcp-obs-{ctx.invoked_subcommand or 'cli'}", cfg.logging)


cli.add_command(inventory)
cli.add_command(exporter)
cli.add_command(alerts)
cli.add_command(dashboards)
cli.add_command(metering)
cli.add_command(tenants)

try:  # the lab is not in the production wheel
    from lab.cli import demo
except ModuleNotFoundError as exc:
    if exc.name != "lab":
        raise
else:
    cli.add_command(demo)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="zcp-obs")


if __name__ == "__main__":  # pragma: no cover
    main()
