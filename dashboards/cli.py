"""``zcp-obs dashboards ...``: build the dashboards, lint them, prove their panels."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from zcp.cliutil import CONTEXT, ZcpGroup


@click.group(cls=ZcpGroup, context_settings=CONTEXT)
def dashboards() -> None:
    """Grafana dashboards as code (grafanalib): build, check, prove against live data."""


@dashboards.command("build")
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory for operator/<uid>.json and tenant/<uid>.json.",
)
def dashboards_build(out: Path) -> None:
    """Write every dashboard as Grafana JSON (deterministic: two builds are identical)."""
    from dashboards.build import build_all, write

    began = time.monotonic()
    built = build_all()
    for path in write(out, built):
        click.echo(str(path))
    click.echo(f"built {len(built)} dashboards in {time.monotonic() - began:.2f}s", err=True)


@dashboards.command("check")
@click.option(
    "--prometheus",
    "url",
    default=None,
    metavar="URL",
    help="Also run every variable and panel query of the operator dashboards here.",
)
@click.option(
    "--tenant-prometheus",
    "tenant_url",
    default=None,
    metavar="URL",
    help="Run the tenant dashboards against this tenant's own Prometheus.",
)
@click.option(
    "--tenant",
    default=None,
    metavar="ID",
    help="The tenant (account id) --tenant-prometheus belongs to.",
)
@click.option(
    "--window",
    "window_s",
    default=600,
    show_default=True,
    type=int,
    help="Seconds of data the panel queries look at, up to now.",
)
@click.option(
    "--rate-interval",
    default="1m",
    show_default=True,
    help="What $__rate_interval stands for (4 scrape intervals or more).",
)
def dashboards_check(
    url: str | None, tenant_url: str | None, tenant: str | None, window_s: int, rate_interval: str
) -> None:
    """Lint every dashboard (dashboard-linter's rules, ported); with --prometheus, prove that
    every panel shows data. Exit 1 naming each problem."""
    from dashboards.build import build_all
    from dashboards.lint import lint
    from dashboards.proof import Proof, Window, prove_all

    if tenant_url and not tenant:
        raise click.UsageError("--tenant-prometheus needs --tenant")
    built = build_all()
    problems = [str(p) for p in lint(built)]
    click.echo(f"lint: {len(built)} dashboards, {len(problems)} problems", err=True)
    window = Window(datetime.now(UTC), timedelta(seconds=window_s), rate_interval)

    def shown(proof: Proof) -> None:
        click.echo(
            f"... {proof.uid}: {proof.queries} queries, {len(proof.problems)} problems", err=True
        )

    for audience, source, who in (("operator", url, None), ("tenant", tenant_url, tenant)):
        if source:
            proofs = prove_all(built, source, window, audience, who, progress=shown)
            problems += [str(p) for proof in proofs for p in proof.problems]
    for line in problems:
        click.echo(line)
    if problems:
        raise SystemExit(1)
    click.echo("ok", err=True)


@dashboards.command("upload")
@click.option(
    "--grafana",
    "url",
    default=None,
    metavar="URL",
    help="Grafana's base URL (default: dashboards.grafana.url).",
)
@click.option(
    "--audience",
    type=click.Choice(["operator", "tenant"]),
    default="operator",
    show_default=True,
    help="Which dashboards.",
)
@click.option(
    "--org-id",
    type=int,
    default=None,
    help="X-Grafana-Org-Id: a tenant's org (default: dashboards.grafana.org_id).",
)
@click.option("--folder-uid", default=None, help="Folder uid (default: from the config).")
@click.option(
    "--message",
    default="zcp-obs dashboards upload",
    show_default=True,
    help="The version message Grafana records.",
)
@click.option(
    "--no-overwrite",
    is_flag=True,
    help="Refuse to replace a dashboard changed in Grafana since (412).",
)
@click.pass_context
def dashboards_upload(
    ctx: click.Context,
    url: str | None,
    audience: str,
    org_id: int | None,
    folder_uid: str | None,
    message: str,
    no_overwrite: bool,
) -> None:
    """Push the dashboards to Grafana through its HTTP API (the service-account token comes
    from the config's dashboards.grafana.token, never from the command line)."""
    from dashboards.build import build_all
    from dashboards.upload import Uploaded, upload
    from zcp.cliutil import config_of
    from zcp.config import with_overrides

    section = config_of(ctx).dashboards.grafana
    if section is None:
        raise click.ClickException(
            "no Grafana configured: set dashboards.grafana (url, token) in the config"
        )
    cfg = with_overrides(section, "(command line)", url=url, org_id=org_id, folder_uid=folder_uid)
    built = [b for b in build_all() if b.audience == audience]

    def shown(u: Uploaded) -> None:
        click.echo(f"{u.uid}: version {u.version} {cfg.url}{u.url}")

    upload(built, cfg, message, overwrite=not no_overwrite, progress=shown)
    click.echo(f"uploaded {len(built)} dashboards to folder {cfg.folder_uid}", err=True)


@dashboards.command("preview")
@click.option(
    "--prometheus",
    "url",
    required=True,
    metavar="URL",
    help="Where the panels' queries run (the operator Prometheus, or a tenant's).",
)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory for <uid>.png (and <uid>.json: where each panel was drawn).",
)
@click.option(
    "--audience", type=click.Choice(["operator", "tenant"]), default="operator", show_default=True
)
@click.option(
    "--window",
    "window_s",
    default=3600,
    show_default=True,
    type=int,
    help="Seconds of data drawn, up to now.",
)
@click.option("--rate-interval", default="1m", show_default=True)
def dashboards_preview(
    url: str, out: Path, audience: str, window_s: int, rate_interval: str
) -> None:
    """Draw each dashboard to a PNG from live query results (no Grafana needed)."""
    from dashboards.build import build_all
    from dashboards.preview import Renderer
    from dashboards.proof import Window

    built = [b for b in build_all() if b.audience == audience]
    renderer = Renderer(url, Window(datetime.now(UTC), timedelta(seconds=window_s), rate_interval))
    with click.progressbar(
        built,
        label="drawing dashboards",
        file=sys.stderr,
        item_show_func=lambda b: b.uid if b else None,
    ) as bar:
        for b in bar:
            drawn = renderer.draw(b, out)
            empty = [d.title for d in drawn if not d.series]
            click.echo(
                f"{out / (b.uid + '.png')}: {len(drawn)} panels"
                + (f", no data: {', '.join(empty)}" if empty else "")
            )


@dashboards.command("provision")
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="A Grafana's config dir: provisioning/dashboards/zcp.yaml goes here.",
)
@click.option(
    "--json-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the JSON files go (default: OUT/dashboards).",
)
@click.option(
    "--audience", type=click.Choice(["operator", "tenant"]), default="tenant", show_default=True
)
@click.option("--folder", default="My cloud", show_default=True)
@click.option("--folder-uid", default="zcp", show_default=True)
@click.option("--org-id", type=int, default=1, show_default=True)
def dashboards_provision(
    out: Path, json_dir: Path | None, audience: str, folder: str, folder_uid: str, org_id: int
) -> None:
    """Write Grafana provisioning files (a file provider and the dashboards' JSON)."""
    from dashboards.build import build_all
    from dashboards.provision import provision

    built = [b for b in build_all() if b.audience == audience]
    target = (json_dir or out / "dashboards").resolve()
    for path in provision(built, out, target, folder, folder_uid, org_id):
        click.echo(str(path))
