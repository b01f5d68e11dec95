"""``zcp-obs demo``: the lab's command, mounted by the application where the lab is installed."""

from __future__ import annotations

from pathlib import Path

import click

from zcp.cliutil import config_of


@click.command()
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the demo keeps its daemons' data and logs (default: a temp dir).",
)
@click.option(
    "--duration",
    type=float,
    default=None,
    help="Stop after this many seconds (default: run until Ctrl-C).",
)
@click.option(
    "--libvirt/--no-libvirt",
    "with_libvirt",
    default=True,
    show_default=True,
    help="Boot the inventory's VMs as real KVM guests and run the libvirt exporter.",
)
@click.option(
    "--ovs/--no-ovs",
    "with_ovs",
    default=True,
    show_default=True,
    help="Run a userspace Open vSwitch with a port per inventory NIC and the OVS exporter.",
)
@click.option(
    "--ceph/--no-ceph",
    "with_ceph",
    default=True,
    show_default=True,
    help="Run a single-node Ceph cluster with an RBD image per inventory volume and "
    "the Ceph exporter.",
)
@click.pass_context
def demo(
    ctx: click.Context,
    workdir: Path | None,
    duration: float | None,
    with_libvirt: bool,
    with_ovs: bool,
    with_ceph: bool,
) -> None:
    """Bring up a local demo of the stack on real daemons and print what it sees."""
    from lab.demo import run_demo

    config_path = ctx.find_root().ensure_object(dict).get("config_path")
    run_demo(config_of(ctx), config_path, workdir, duration, with_libvirt, with_ovs, with_ceph)
