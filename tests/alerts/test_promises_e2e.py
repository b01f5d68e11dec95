"""The promises broken and mended on real daemons: the session's Ceph and OVS, our Ceph and OVS
exporters (the real commands, fed by the real inventory service), and a real Prometheus
evaluating the built rules (``for:`` shortened to 1 s). Each alert is watched in Prometheus's
own ``ALERTS`` series for the object the test changes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from alerts.build import build
from lab.alerting import HOST, single_host_inventory
from lab.ceph import CephLab
from lab.ovs import OvsLab
from lab.prometheus import PrometheusServer
from lab.stack import Stack, lab_promises
from tests.support import need_binary
from zcp.config import parse_config
from zcp.inventory import make_cache
from zcp.wait import wait_until

pytestmark = pytest.mark.integration
ZONE = "zone1"
SIZED = "promise-size"  # a pool whose replica count the tests change
PLACED = "promise-fast"  # a pool of storage class fast whose CRUSH rule the tests change
# the lab's own promises, but two replicas, copies on separate hosts, and fast on NVMe
PROMISES = lab_promises(
    ceph_pool_size=2, ceph_failure_domain="host", storage_media={"fast": "nvme"}
)
WAIT = 60.0
TUNNEL = "vx-promise"


@dataclass
class Promised:
    prometheus: PrometheusServer
    ceph: CephLab
    ovs: OvsLab
    ports: dict[str, str]  # OVS port -> the VM it belongs to

    def firing(self, alert: str, **labels: str) -> bool:
        matchers = "".join(f',{k}="{v}"' for k, v in labels.items())
        return bool(
            self.prometheus.query(f'ALERTS{{alertname="{alert}",alertstate="firing"{matchers}}}')
        )

    def seen(self, expr: str) -> bool:
        return bool(self.prometheus.query(expr))

    def quiet(self, alert: str, once: str, **labels: str) -> bool:
        """``alert`` is not firing for ``labels`` once Prometheus has seen ``once`` (so the
        rule has evaluated on the new state), waited for, not slept on."""
        return wait_until(lambda: self.seen(once), WAIT, 0.2) and wait_until(
            lambda: not self.firing(alert, **labels), WAIT, 0.2
        )


@pytest.fixture(scope="module")
def promised(
    ceph_lab: CephLab, ovs_lab: OvsLab, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Promised]:
    need_binary("prometheus", "prometheus")
    workdir = Path(tmp_path_factory.mktemp("promises"))
    config = workdir / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "inventory": {
                    "source": "file",
                    "file": str(single_host_inventory(workdir)),
                    "refresh_interval_seconds": 5,
                },
                "alerting": {"promises": PROMISES},
            }
        )
    )
    cfg = parse_config(yaml.safe_load(config.read_text()), "promises lab")
    built = build(workdir / "alerts", cfg.alerting, for_override="1s")
    for pool in (SIZED, PLACED):
        ceph_lab.create_pool(pool)
    ceph_lab.run("ceph", "osd", "pool", "set", SIZED, "min_size", "1")
    ovs_lab.add_bridge("br-int")
    ovs_lab.del_port("br-int", TUNNEL)
    ovs_lab.add_tunnel("br-int", TUNNEL, "192.0.2.88", key="7088")  # over the lab's br-phy
    inventory = make_cache(cfg).refresh()
    nics = inventory.nics[:2]
    ovs_lab.plug_nics(nics, prefix="pmvm", net="10.202")
    stack = Stack(workdir / "stack", config, inventory_refresh_seconds=2)
    try:
        stack.inventory_service()
        stack.ovs(ovs_lab, HOST, ZONE, call_timeout_seconds=1.0)
        stack.ceph(
            ceph_lab,
            ZONE,
            df_interval_seconds=1,
            placement_interval_seconds=2,
            rbd_interval_seconds=30,
            rgw_interval_seconds=30,
            command_timeout_seconds=10,
            pool_classes={PLACED: "fast"},
        )
        prom = stack.prometheus([built.rules], "1s")
        yield Promised(
            prom, ceph_lab, ovs_lab, {f"pmvm{n}": nic.vm_id for n, nic in enumerate(nics)}
        )
    finally:
        stack.close()
        for pool in (SIZED, PLACED):
            ceph_lab.run(
                "ceph",
                "osd",
                "pool",
                "rm",
                pool,
                pool,
                "--yes-i-really-really-mean-it",
                check=False,
            )


def test_a_pool_below_its_promised_replicas_fires_and_resolves_when_raised(
    promised: Promised,
) -> None:
    alert, pool = "CephPoolReplicasBelowPromise", {"pool": SIZED}
    assert wait_until(lambda: promised.firing(alert, **pool), WAIT, 0.2), "size 1 < 2: no alert"
    promised.ceph.run("ceph", "osd", "pool", "set", SIZED, "size", "2")
    assert promised.quiet(alert, f'ceph_pool_size{{pool="{SIZED}"}} == 2', **pool)
    promised.ceph.run("ceph", "osd", "pool", "set", SIZED, "size", "1", "--yes-i-really-mean-it")
    assert wait_until(lambda: promised.firing(alert, **pool), WAIT, 0.2), "lowered: no alert"
    (page,) = promised.prometheus.query(f'ALERTS{{alertname="{alert}",pool="{SIZED}"}}')
    assert page["metric"]["severity"] == "critical" and page["metric"]["area"] == "storage"


def test_a_storage_class_on_the_wrong_media_fires_and_resolves_on_its_rule(
    promised: Promised,
) -> None:
    """Fast is promised on NVMe: a classless rule (any OSD) fires; a rule that takes only NVMe
    OSDs, with copies on separate hosts, resolves the media and the failure domain alerts."""
    media, domain, pool = (
        "CephStorageClassWrongMedia",
        "CephPoolFailureDomainTooSmall",
        {"pool": PLACED},
    )
    ceph = promised.ceph
    assert wait_until(lambda: promised.firing(media, **pool, storage_class="fast"), WAIT, 0.2)
    assert promised.firing(domain, **pool, failure_domain="osd")
    # the lab's one OSD becomes NVMe, and a rule per promise places the pool on it
    ceph.run("ceph", "osd", "crush", "rm-device-class", "osd.0")
    ceph.run("ceph", "osd", "crush", "set-device-class", "nvme", "osd.0")
    ceph.run(
        "ceph",
        "osd",
        "crush",
        "rule",
        "create-replicated",
        "fast-nvme",
        "default",
        "host",
        "nvme",
        check=False,
    )  # exists already on a re-run of the module
    ceph.run("ceph", "osd", "pool", "set", PLACED, "crush_rule", "fast-nvme")
    placed = f'ceph_pool_crush_rule_info{{pool="{PLACED}",rule="fast-nvme"}}'
    assert promised.quiet(media, placed, **pool)
    assert promised.quiet(domain, placed, **pool)
    assert promised.seen(
        f'ceph_pool_crush_rule_info{{pool="{PLACED}",device_class="nvme",failure_domain="host"}}'
    )
    # back on the classless rule: any OSD will do, so the promise is broken again
    ceph.run("ceph", "osd", "pool", "set", PLACED, "crush_rule", "replicated_rule")
    # (an empty matcher matches the series without the label: the classless rule's)
    assert wait_until(lambda: promised.firing(media, **pool, device_class=""), WAIT, 0.2)


def test_a_vm_port_at_mtu_9000_fires_and_resolves_at_1500(promised: Promised) -> None:
    alert = "OverlayPortMTUWrong"
    port, vm_id = next(iter(promised.ports.items()))
    assert promised.quiet(
        alert, f'ovs_interface_mtu_bytes{{interface="{port}"}} == 1500', interface=port
    )
    promised.ovs.vsctl("set", "Interface", port, "mtu_request=9000")
    try:
        assert wait_until(lambda: promised.firing(alert, interface=port, vm_id=vm_id), WAIT, 0.2), (
            "MTU 9000 on a VM port: no alert"
        )
    finally:
        promised.ovs.vsctl("set", "Interface", port, "mtu_request=1500")
    assert promised.quiet(
        alert, f'ovs_interface_mtu_bytes{{interface="{port}"}} == 1500', interface=port
    )


def test_a_tunnel_underlay_below_1550_fires_and_resolves(promised: Promised) -> None:
    """The lab's underlay (br-phy) carries 9000; at 1500 it cannot carry 1500 + VXLAN's 50."""
    alert, where = "TunnelUnderlayMTUTooSmall", {"interface": TUNNEL, "underlay": "br-phy"}
    seen = f'ovs_tunnel_underlay_mtu_bytes{{interface="{TUNNEL}"}}'
    assert promised.quiet(alert, f"{seen} == 9000", **where)
    promised.ovs.vsctl("set", "Interface", "br-phy", "mtu_request=1500")
    try:
        assert wait_until(lambda: promised.firing(alert, **where), WAIT, 0.2), "no alert at 1500"
        (page,) = promised.prometheus.query(f'ALERTS{{alertname="{alert}",alertstate="firing"}}')
        assert page["metric"]["remote_ip"] == "192.0.2.88"
        assert page["metric"]["severity"] == "critical"
    finally:
        promised.ovs.vsctl("set", "Interface", "br-phy", "mtu_request=9000")
    assert promised.quiet(alert, f"{seen} == 9000", **where)
