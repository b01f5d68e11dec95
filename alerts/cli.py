"""``zcp-obs alerts ...``: build and check the rules and the Alertmanager configuration."""

from __future__ import annotations

from pathlib import Path

import click

from zcp.cliutil import CONTEXT, ZcpGroup, config_of


@click.group(cls=ZcpGroup, context_settings=CONTEXT)
def alerts() -> None:
    """Build and check the Prometheus rules and the Alertmanager configuration."""


@alerts.command("build")
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory for rules/zcp.rules.yml, rules/zcp.tests.yml, alertmanager.yml, "
    "blackbox.yml and prometheus.s3-probe.yml (the S3 probe's scrape job).",
)
@click.pass_context
def alerts_build(ctx: click.Context, out: Path) -> None:
    """Write the rule file, its promtool tests and alertmanager.yml (receivers and their
    secrets from the config's `alerting` section; the file is written 0600), the blackbox
    exporter's S3 module and the operator Prometheus's scrape job probing
    `alerting.promises.s3_endpoints`."""
    from alerts.build import build

    cfg = config_of(ctx).alerting
    built = build(out, cfg)
    if cfg.webhook is None and cfg.email is None and cfg.pagerduty is None:
        click.echo(
            "warning: no receivers configured (alerting.webhook/email/pagerduty): "
            "alerts will be routed but not delivered",
            err=True,
        )
    for path in (
        built.rules,
        built.tests,
        built.alertmanager,
        built.route_tests,
        built.blackbox,
        built.s3_probe_job,
    ):
        click.echo(str(path))


@alerts.command("check")
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The directory `alerts build` wrote.",
)
def alerts_check(out: Path) -> None:
    """promtool check rules, promtool test rules, amtool check-config and every routing test."""
    from alerts.build import check

    done = check(out, progress=lambda label: click.echo(f"... {label}", err=True))
    click.echo(f"ok: {len(done)} checks passed")
