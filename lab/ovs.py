"""A private Open vSwitch (userspace datapath) for tests, benchmarks and the demo.

``ovsdb-server`` and ``ovs-vswitchd`` run as children with every file (database, sockets,
logs, pid files) in a work dir. ``ovs-vswitchd`` runs in its own network namespace: only one
userspace vswitchd can exist per namespace (its ``ovs-netdev`` tap is global), and the ports
it creates stay out of the host's. Its sockets are files, reachable from anywhere.

"VM" ports are veth pairs: one end attached to the bridge (with libvirt-style
``external_ids``: ``iface-id``, ``attached-mac``, ``vm-id``), the other in a namespace of its
own with an IP address, so ``ping`` between two of them is real traffic through the bridge.
Interface ``statistics`` in OVSDB refresh every 5 s (``other_config:stats-update-interval``
makes that shorter).

Tunnel ports get a real underlay (:meth:`OvsLab.add_underlay`), as OVS's userspace tunneling
is set up on a hypervisor: a bridge ``br-phy`` whose internal port holds this host's tunnel
address (192.0.2.1/24, MTU 9000) in the switch's namespace. ovs-vswitchd learns the subnet's
route from that namespace's kernel table, so ``ovs-appctl ovs/route/lookup`` of a remote in
192.0.2.0/24 answers ``dev br-phy``. No physical port and no peer: encapsulated packets go
nowhere (BFD stays down), but the route and the device's MTU are real.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from lab.procs import Daemon, run_checked
from zcp.binaries import require
from zcp.errors import DaemonError
from zcp.inventory.model import Nic
from zcp.wait import wait_until

log = logging.getLogger(__name__)
SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
#: the tunnels' underlay: bridge (and its internal port), this host's address on it, its MTU
#: (jumbo: room for 1500-byte tenant frames plus VXLAN's 50 bytes)
UNDERLAY_BRIDGE = "br-phy"
UNDERLAY_ADDRESS = "192.0.2.1/24"
UNDERLAY_MTU = 9000


def _run(
    argv: Sequence[str], timeout: float = 30, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_checked(argv, timeout=timeout, check=check, env=env)


class _OvsDaemon(Daemon):
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        workdir: Path,
        ready_argv: list[str],
        env: dict[str, str],
    ) -> None:
        super().__init__(name, argv, workdir, "")
        self.ready_argv = ready_argv
        self.env = env

    def ready(self) -> bool:
        return _run(self.ready_argv, timeout=5, check=False, env=self.env).returncode == 0

    def start(self, timeout: float = 30.0) -> None:
        old = dict(os.environ)
        os.environ.update(self.env)  # Daemon.start inherits the environment
        try:
            super().start(timeout)
        finally:
            os.environ.clear()
            os.environ.update(old)


class OvsLab:
    """ovsdb-server + ovs-vswitchd in ``workdir``; helpers to build bridges and ports."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir.resolve()
        self.tag = uuid.uuid4().hex[:6]
        self.netns = f"zcpovs-{self.tag}"
        self.db_path = self.workdir / "conf.db"
        self.db_sock = self.workdir / "db.sock"
        self.db_ctl = self.workdir / "ovsdb-server.ctl"
        self.vswitchd_ctl = self.workdir / "ovs-vswitchd.ctl"
        self.db = f"unix:{self.db_sock}"
        self.env = {
            "OVS_RUNDIR": str(self.workdir),
            "OVS_LOGDIR": str(self.workdir),
            "OVS_DBDIR": str(self.workdir),
        }
        self._namespaces: list[str] = []
        self.ovsdb: _OvsDaemon | None = None
        self.vswitchd: _OvsDaemon | None = None

    def __enter__(self) -> OvsLab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- daemons ---------------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        for binary in ("ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-appctl", "ovsdb-tool"):
            require(binary, "openvswitch-switch")
        require("ip", "iproute2")
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.db_path.exists():
            _run(["ovsdb-tool", "create", str(self.db_path), str(SCHEMA)])
        _run(["ip", "netns", "add", self.netns])
        self._namespaces.append(self.netns)
        _run(["ip", "netns", "exec", self.netns, "ip", "link", "set", "lo", "up"])
        self.ovsdb = self._ovsdb_daemon()
        self.ovsdb.start(timeout)
        self.vsctl("--no-wait", "init")
        self.vswitchd = _OvsDaemon(
            "ovs-vswitchd",
            [
                "ip",
                "netns",
                "exec",
                self.netns,
                shutil.which("ovs-vswitchd") or "ovs-vswitchd",
                self.db,
                f"--unixctl={self.vswitchd_ctl}",
                f"--pidfile={self.workdir / 'ovs-vswitchd.pid'}",
                f"--log-file={self.workdir / 'ovs-vswitchd.log'}",
                "-vconsole:off",
            ],
            self.workdir,
            ["ovs-appctl", "-t", str(self.vswitchd_ctl), "version"],
            self.env,
        )
        self.vswitchd.start(timeout)
        # Interface statistics are written every 5 s (the minimum ovs-vswitchd accepts)
        self.vsctl("set", "Open_vSwitch", ".", "other_config:stats-update-interval=5000")

    def _ovsdb_daemon(self) -> _OvsDaemon:
        return _OvsDaemon(
            "ovsdb-server",
            [
                shutil.which("ovsdb-server") or "ovsdb-server",
                str(self.db_path),
                f"--remote=punix:{self.db_sock}",
                f"--unixctl={self.db_ctl}",
                f"--pidfile={self.workdir / 'ovsdb-server.pid'}",
                f"--log-file={self.workdir / 'ovsdb-server.log'}",
                "-vconsole:off",
            ],
            self.workdir,
            ["ovs-vsctl", f"--db={self.db}", "--timeout=2", "--no-wait", "show"],
            self.env,
        )

    def stop(self) -> None:
        for daemon in (self.vswitchd, self.ovsdb):
            if daemon is not None:
                daemon.stop()
        for ns in reversed(self._namespaces):
            _run(["ip", "netns", "delete", ns], check=False)
        self._namespaces.clear()

    def namespaces(self) -> list[str]:
        """The network namespaces the lab made (the switch's and one a VM port)."""
        return list(self._namespaces)

    def stop_ovsdb(self) -> None:
        """Stop ovsdb-server only (ovs-vswitchd keeps forwarding)."""
        if self.ovsdb is not None:
            self.ovsdb.stop()

    def start_ovsdb(self) -> None:
        """Start ovsdb-server again on the same database and socket."""
        self.ovsdb = self._ovsdb_daemon()
        self.ovsdb.start()

    def daemons(self) -> list[Daemon]:
        return [d for d in (self.ovsdb, self.vswitchd) if d is not None]

    # -- tools -----------------------------------------------------------------------------------
    def vsctl(self, *args: str, timeout: float = 30) -> str:
        return _run(
            ["ovs-vsctl", f"--db={self.db}", "--timeout=20", *args],
            timeout=timeout,
            env={**os.environ, **self.env},
        ).stdout

    def appctl(self, *args: str) -> str:
        return _run(
            ["ovs-appctl", "-t", str(self.vswitchd_ctl), *args], env={**os.environ, **self.env}
        ).stdout

    def in_switch_ns(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(["ip", "netns", "exec", self.netns, *argv], check=check)

    def device_mtu(self, device: str) -> int:
        """The MTU of ``device`` as the kernel of the switch's namespace has it."""
        return int(self.in_switch_ns("cat", f"/sys/class/net/{device}/mtu").stdout)

    # -- topology --------------------------------------------------------------------------------
    def add_bridge(self, name: str) -> None:
        self.vsctl(
            "--may-exist", "add-br", name, "--", "set", "Bridge", name, "datapath_type=netdev"
        )

    def add_vm_port(
        self,
        bridge: str,
        port: str,
        ip_cidr: str,
        *,
        vm_id: str = "",
        iface_id: str = "",
        mac: str = "",
    ) -> str:
        """A veth pair: ``port`` on ``bridge``, its peer (``mac``, ``ip_cidr``) in a new
        namespace standing for the VM; the namespace's name."""
        if len(port) > 13:
            raise ValueError(f"port name {port!r} too long (13 characters at most)")
        ns = f"zcpvm-{self.tag}-{port}"
        peer = f"{port}-p"
        _run(["ip", "netns", "add", ns])
        self._namespaces.append(ns)
        # no IPv6 chatter (router/neighbour solicitations, MLD) in the counters tests check
        _run(
            [
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ],
            check=False,
        )
        self.in_switch_ns("ip", "link", "add", port, "type", "veth", "peer", "name", peer)
        self.in_switch_ns("ip", "link", "set", peer, "netns", ns)
        if mac:
            _run(["ip", "netns", "exec", ns, "ip", "link", "set", peer, "address", mac])
        _run(["ip", "netns", "exec", ns, "ip", "addr", "add", ip_cidr, "dev", peer])
        _run(["ip", "netns", "exec", ns, "ip", "link", "set", peer, "up"])
        _run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"])
        self.in_switch_ns("ip", "link", "set", port, "up")
        ids = []
        if iface_id:
            ids.append(f"external_ids:iface-id={iface_id}")
        if mac:
            ids.append(f'external_ids:attached-mac="{mac}"')
        if vm_id:
            ids.append(f"external_ids:vm-id={vm_id}")
        self.vsctl(
            "add-port", bridge, port, *(["--", "set", "Interface", port, *ids] if ids else [])
        )
        return ns

    def plug_nics(
        self, nics: Sequence[Nic], bridge: str = "br-int", prefix: str = "vnet", net: str = "10.200"
    ) -> list[tuple[str, str]]:
        """A "VM" port per CloudStack NIC on ``bridge`` (its MAC, libvirt-style
        ``external_ids`` with the NIC and VM ids), addresses from ``net``.0.0/16; the
        (namespace, address) of each, to ping between."""
        self.add_bridge(bridge)
        plugged = []
        for n, nic in enumerate(nics):
            ip = f"{net}.{n // 250}.{n % 250 + 1}"
            ns = self.add_vm_port(
                bridge, f"{prefix}{n}", f"{ip}/16", vm_id=nic.vm_id, iface_id=nic.id, mac=nic.mac
            )
            plugged.append((ns, ip))
        return plugged

    def add_internal_port(self, bridge: str, port: str) -> None:
        self.vsctl("add-port", bridge, port, "--", "set", "Interface", port, "type=internal")

    def add_internal_ports(self, bridge: str, names: Sequence[str], batch: int = 100) -> None:
        """Many internal ports, in transactions of ``batch`` (one ovs-vsctl call each), each
        with libvirt-style external_ids naming a made-up VM (benchmarks)."""
        for start in range(0, len(names), batch):
            args: list[str] = []
            for name in names[start : start + batch]:
                args += [
                    "--",
                    "add-port",
                    bridge,
                    name,
                    "--",
                    "set",
                    "Interface",
                    name,
                    "type=internal",
                    f"external_ids:iface-id=nic-{name}",
                    f"external_ids:vm-id=vm-{name}",
                ]
            self.vsctl(*args[1:], timeout=120)

    def add_underlay(
        self,
        bridge: str = UNDERLAY_BRIDGE,
        address: str = UNDERLAY_ADDRESS,
        mtu: int = UNDERLAY_MTU,
        timeout: float = 10.0,
    ) -> None:
        """The tunnels' underlay: ``bridge`` (userspace) with ``address`` (CIDR) on its internal
        port, MTU ``mtu`` (as ``mtu_request``: OVS keeps an internal port's MTU itself), up;
        returns once ovs-vswitchd's routing table has the subnet. Idempotent."""
        network = ipaddress.ip_interface(address).network
        self.add_bridge(bridge)
        self.vsctl("set", "Interface", bridge, f"mtu_request={mtu}")
        self.in_switch_ns("ip", "addr", "replace", address, "dev", bridge)
        self.in_switch_ns("ip", "link", "set", bridge, "up")
        if not wait_until(
            lambda: f"{network} dev {bridge} " in self.appctl("ovs/route/show"), timeout, 0.05
        ):
            raise DaemonError(f"ovs-vswitchd never learned the route to {network} via {bridge}")

    def add_tunnel(
        self,
        bridge: str,
        port: str,
        remote_ip: str,
        *,
        kind: str = "vxlan",
        key: str = "flow",
        bfd: bool = False,
        underlay: bool = True,
    ) -> None:
        """A tunnel port towards ``remote_ip``; with ``underlay`` the lab's underlay
        (:meth:`add_underlay`) is made first, so a remote in its subnet (192.0.2.0/24)
        routes out of ``br-phy``."""
        if underlay:
            self.add_underlay()
        args = [
            "add-port",
            bridge,
            port,
            "--",
            "set",
            "Interface",
            port,
            f"type={kind}",
            f"options:remote_ip={remote_ip}",
            f"options:key={key}",
        ]
        if bfd:
            args.append("bfd:enable=true")
        self.vsctl(*args)

    def del_port(self, bridge: str, port: str) -> None:
        self.vsctl("--if-exists", "del-port", bridge, port)

    def ping(self, ns: str, ip: str, count: int = 5, size: int = 56) -> None:
        _run(
            [
                "ip",
                "netns",
                "exec",
                ns,
                "ping",
                "-q",
                "-c",
                str(count),
                "-i",
                "0.2",
                "-s",
                str(size),
                "-W",
                "2",
                ip,
            ],
            timeout=60,
        )

    def wait_stats(self, seconds: float = 6.0) -> None:
        """Let ovs-vswitchd write fresh Interface statistics (every 5 s)."""
        time.sleep(seconds)
