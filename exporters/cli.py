"""``zcp-obs exporter ...``: the exporters' commands.

Every exporter reads its section of the one YAML config (``exporters.<name>``); a flag given on
the command line overrides that key. Each logs under the name of its systemd unit
(``zcp-obs-<name>-exporter``, ``zcp-obs-inventory``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from zcp.cliutil import CONTEXT, ZcpGroup, config_of, log_as
from zcp.config import with_overrides

LISTEN = "HOST:PORT to serve on (default: exporters.{name}.listen, {default})."
DEADLINE = (
    "Longest a scrape may take, in seconds (default: exporters.{name}.deadline_seconds, "
    "8; Prometheus's X-Prometheus-Scrape-Timeout-Seconds lowers it)."
)


def _listen(name: str, default: str) -> Any:
    return click.option(
        "--listen",
        default=None,
        metavar="HOST:PORT",
        help=LISTEN.format(name=name, default=default),
    )


def _deadline(name: str) -> Any:
    return click.option(
        "--deadline",
        "deadline_seconds",
        type=click.FloatRange(0.1, 120),
        default=None,
        help=DEADLINE.format(name=name),
    )


def _web(func: Any) -> Any:
    """The HTTP server's flags, named as node_exporter's."""
    func = click.option(
        "--web.max-requests",
        "max_requests",
        type=click.IntRange(1, 10000),
        default=None,
        help="Requests handled at once; beyond them the answer is 503 (default: "
        "exporters.<name>.max_requests, 40).",
    )(func)
    return click.option(
        "--web.config.file",
        "web_config_file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Prometheus's web configuration file: TLS and basic auth, reloaded on change "
        "(default: exporters.<name>.web_config_file, none).",
    )(func)


@click.group(cls=ZcpGroup, context_settings=CONTEXT)
@click.pass_context
def exporter(ctx: click.Context) -> None:
    """Run a Prometheus exporter: libvirt/KVM, Open vSwitch, Ceph, or the inventory service.

    Settings come from the config's exporters.<name> section; flags override them.
    """
    if ctx.invoked_subcommand:
        log_as(ctx, service_name(ctx.invoked_subcommand))


def service_name(exporter_name: str) -> str:
    """The name an exporter logs under: its systemd unit's (deploy/systemd/)."""
    return (
        "zcp-obs-inventory" if exporter_name == "inventory" else f"zcp-obs-{exporter_name}-exporter"
    )


@exporter.command("libvirt")
@click.option(
    "--uri", default=None, help="libvirt URI (default: exporters.libvirt.uri, qemu:///system)."
)
@_listen("libvirt", "127.0.0.1:9177")
@_deadline("libvirt")
@_web
@click.option(
    "--hostname",
    default=None,
    help="This hypervisor's name in zcp_vm_info of VMs the inventory does not know "
    "(default: the system host name).",
)
@click.option(
    "--groups",
    default=None,
    help="Comma-separated libvirt stat groups to collect (default: all of state, "
    "cpu, balloon, vcpu, interface, block).",
)
@click.option(
    "--chunks",
    type=click.IntRange(1, 64),
    default=None,
    help="Split the domains into this many chunks, each fetched by one concurrent "
    "bulk stats call (1: a single getAllDomainStats call; default 4).",
)
@click.option(
    "--connections",
    type=click.IntRange(1, 8),
    default=None,
    help="libvirt connections the concurrent bulk calls are spread over (default 2).",
)
@click.option(
    "--procfs/--no-procfs",
    default=None,
    help="Read CPU, vCPU and RSS figures of the guests' QEMU processes from /proc "
    "(as libvirt does) instead of libvirt's cpu/vcpu groups, which cost QEMU "
    "monitor round-trips. Default: on for a local qemu:/// URI.",
)
@click.pass_context
def exporter_libvirt(ctx: click.Context, groups: str | None, **flags: Any) -> None:
    """Export per-VM CPU, vCPU, memory, disk and vNIC counters from libvirt/KVM.

    Bulk stats calls per scrape (state, disks, vNICs; guest memory where the guest reports
    it), CPU/vCPU/RSS from /proc for local guests; domain XML cached and refreshed on libvirt
    events; CloudStack identity from the inventory in zcp_vm_info/zcp_volume_info/zcp_nic_info.
    """
    from exporters.libvirt import run

    cfg = config_of(ctx)
    if groups is not None:
        flags["groups"] = tuple(g.strip() for g in groups.split(",") if g.strip())
    run(cfg, with_overrides(cfg.exporters.libvirt, "(command line)", **flags))


@exporter.command("ovs")
@click.option(
    "--db",
    default=None,
    help="OVSDB remote, unix:PATH or tcp:IP:PORT (default: "
    "exporters.ovs.db, unix:/var/run/openvswitch/db.sock).",
)
@click.option(
    "--rundir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where ovs-vswitchd keeps its pid file and control socket (default: "
    "/var/run/openvswitch).",
)
@click.option(
    "--vswitchd-ctl",
    default=None,
    help="ovs-vswitchd's unixctl socket (default: from the pid file in --rundir).",
)
@_listen("ovs", "127.0.0.1:9475")
@_deadline("ovs")
@_web
@click.pass_context
def exporter_ovs(ctx: click.Context, **flags: Any) -> None:
    """Export Open vSwitch interfaces (per-VM ports with CloudStack identity), tunnels,
    bridges, datapath, coverage and memory of ovs-vswitchd."""
    from exporters.ovs import run

    cfg = config_of(ctx)
    run(cfg, with_overrides(cfg.exporters.ovs, "(command line)", **flags))


@exporter.command("ceph")
@click.option(
    "--conf",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="ceph.conf (default: exporters.ceph.conf, /etc/ceph/ceph.conf).",
)
@click.option(
    "--id",
    "id",
    default=None,
    help="cephx client id, as in client.<id> (default: exporters.ceph.id, admin).",
)
@_listen("ceph", "127.0.0.1:9284; the mgr prometheus module has 9283")
@_deadline("ceph")
@_web
@click.pass_context
def exporter_ceph(ctx: click.Context, **flags: Any) -> None:
    """Export per-tenant Ceph usage by storage class: RBD images (provisioned/used bytes,
    snapshots) with CloudStack volume ids, RGW users and buckets (bytes, objects, requests),
    refreshed in the background on their own schedules; storage class per pool."""
    from exporters.ceph import run

    cfg = config_of(ctx)
    run(cfg, with_overrides(cfg.exporters.ceph, "(command line)", **flags))


@exporter.command("inventory")
@_listen("inventory", "127.0.0.1:9180")
@_deadline("inventory")
@_web
@click.pass_context
def exporter_inventory(ctx: click.Context, **flags: Any) -> None:
    """The inventory service (one per region or zone): keeps CloudStack's inventory cached and
    serves it as job="zcp-inventory" identity and state metrics (/metrics) and as JSON
    snapshots for the hypervisor exporters (/v1/inventory[?host=NAME], ETag/If-None-Match),
    so that no hypervisor needs a CloudStack key."""
    from exporters.inventory import run

    cfg = config_of(ctx)
    run(cfg, with_overrides(cfg.exporters.inventory, "(command line)", **flags))
