"""A private, real libvirtd (QEMU/KVM driver) with tiny guests, for tests, the demo and benchmarks.

``LibvirtLab`` starts ``virtlogd`` and ``libvirtd`` as children (by PID), with libvirtd's sockets,
log and PID file inside its work dir, creates a Linux bridge for guest NICs and boots tiny KVM
guests that have no OS (they idle in the BIOS) but still give real cpu/vcpu/balloon/block/net stats.

Host-wide facts the lab depends on (it must run as root):

* libvirtd's QEMU driver needs user and group ``libvirt-qemu``, ``/var/log/libvirt`` and
  ``/var/run/libvirt``; ``start()`` creates them when missing, like ``scripts/setup-debian.sh``.
* The QEMU driver checks that its configured user (``libvirt-qemu``) can open ``/dev/kvm``; when
  it cannot, libvirtd throws its capabilities cache away on *every* call and re-probes QEMU (about
  12 s each: a define took 40 s). Without udev ``/dev/kvm`` is ``root:root 0600``, so ``start()``
  applies what Debian's udev rule and packages do: group ``kvm`` owning ``/dev/kvm`` with mode
  0660, ``libvirt-qemu`` a member of it.
* The QEMU driver's state (``/var/run/libvirt/qemu``), the persistent domain definitions
  (``/etc/libvirt/qemu``) and virtlogd's socket are host-wide: run one lab per host at a time.
* Guests run QEMU as root (a per-domain static DAC ``<seclabel>``), so their disk images can live
  in a private work dir (pytest's are 0700) and libvirt does not chown them.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import signal
import socket
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import libvirt

from lab.procs import Daemon, run_checked
from zcp.binaries import require
from zcp.errors import DaemonError

log = logging.getLogger(__name__)

VIRTLOGD_SOCK = Path("/var/run/libvirt/virtlogd-sock")
QEMU_USER = "libvirt-qemu"
KVM_DEVICE = Path("/dev/kvm")
_UUID_NAMESPACE = uuidlib.UUID("5a1f3c9e-0b7d-4c1e-9a55-7a3e2f6c0d11")
_SUN_PATH_MAX = 107

Progress = Callable[[int, int, str], None]
"""``progress(done, total, name)`` after each guest ``create_guests`` made."""


def _run(argv: Sequence[str]) -> None:
    """Run a setup command; a failure becomes a DaemonError carrying its stderr."""
    run_checked(argv)


def _unix_socket_answers(path: Path) -> bool:
    """True if something accepts connections on the Unix socket ``path``."""
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


@contextmanager
def _quiet_libvirt() -> Iterator[None]:
    """Keep libvirt's default error handler from printing expected failures to stderr."""
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    try:
        yield
    finally:
        libvirt.registerErrorHandler(None, None)


def guest_uuid(name: str) -> str:
    """The deterministic UUID the lab gives a guest called ``name``."""
    return str(uuidlib.uuid5(_UUID_NAMESPACE, name))


def guest_mac(guest_uuid_: str, index: int = 0) -> str:
    """A deterministic locally administered MAC (QEMU's 52:54:00 prefix) for NIC ``index``."""
    raw = uuidlib.UUID(guest_uuid_).bytes
    return f"52:54:00:{raw[0]:02x}:{raw[1]:02x}:{(raw[2] + index) % 256:02x}"


def disk_bus(target: str) -> str:
    """The bus a disk target name implies: ``vdX`` virtio, ``hdX`` ide, ``sdX`` scsi."""
    buses = {"vd": "virtio", "hd": "ide", "sd": "scsi"}
    bus = buses.get(target[:2])
    if bus is None or len(target) < 3 or not target[2:].isalpha():
        raise ValueError(f"disk target {target!r}: expected vdX (virtio), hdX (ide) or sdX (scsi)")
    return bus


class _ProcessDaemon(Daemon):
    """A ``Daemon`` whose readiness is a callable (a socket or an API answering), not HTTP."""

    def __init__(
        self, name: str, argv: Sequence[str], workdir: Path, ready: Callable[[], bool]
    ) -> None:
        super().__init__(name, argv, workdir, ready_url="")
        self._ready = ready

    def ready(self) -> bool:
        """True once ``ready`` (given at construction) says so."""
        return self._ready()


class LibvirtLab:
    """A private libvirtd + virtlogd, a Linux bridge and tiny KVM guests, all removed by ``stop()``.

    Use as a context manager or call ``start()`` / ``stop()``. ``uri`` reaches this libvirtd only
    (its socket lives in ``workdir``); ``conn`` is the lab's own connection to it, reopened by
    ``restart_libvirtd()`` (``virDomain`` objects from before a restart must be looked up again).
    """

    def __init__(self, workdir: Path, bridge: str | None = None) -> None:
        self.workdir = workdir.resolve()
        self.sock_dir = self.workdir / "run"
        self.disk_dir = self.workdir / "disks"
        self.config_path = self.workdir / "libvirtd.conf"
        self.bridge = bridge or f"zcpbr{uuidlib.uuid4().hex[:8]}"
        if len(self.bridge) > 15:
            raise ValueError(f"bridge name {self.bridge!r} is longer than 15 characters")
        self._libvirtd: _ProcessDaemon | None = None
        self._virtlogd: _ProcessDaemon | None = None
        self._conn: Any = None
        self._bridge_created = False
        self._paused = False
        self._guests: dict[str, list[Path]] = {}

    # ----------------------------------------------------------------- properties

    @property
    def uri(self) -> str:
        """The connection URI of this lab's libvirtd (a ``qemu:///system`` on a private socket)."""
        return f"qemu:///system?socket={self.sock_dir / 'libvirt-sock'}"

    @property
    def conn(self) -> Any:
        """The lab's open ``virConnect`` to its libvirtd."""
        if self._conn is None:
            raise DaemonError("libvirt lab is not started")
        return self._conn

    @property
    def libvirtd_pid(self) -> int | None:
        """PID of the lab's libvirtd while it runs."""
        return self._libvirtd.pid if self._libvirtd is not None else None

    @property
    def virtlogd_pid(self) -> int | None:
        """PID of the virtlogd the lab started (None if it reuses one already running)."""
        return self._virtlogd.pid if self._virtlogd is not None else None

    @property
    def guests(self) -> list[str]:
        """Names of the guests this lab defined and has not destroyed yet."""
        return list(self._guests)

    @property
    def libvirtd_log(self) -> Path:
        """libvirtd's log file (its stderr and its own warnings)."""
        return self.workdir / "libvirtd.log"

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> LibvirtLab:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout: float = 30.0) -> None:
        """Prepare the host, start virtlogd (or reuse a running one), the bridge and libvirtd."""
        libvirtd = require("libvirtd", "libvirt-daemon")
        virtlogd = require("virtlogd", "libvirt-daemon")
        require("qemu-img", "qemu-utils")
        require("qemu-system-x86_64", "qemu-system-x86")
        require("ip", "iproute2")
        if os.geteuid() != 0:
            raise DaemonError("the libvirt lab runs a system libvirtd: it needs root")
        sock = self.sock_dir / "libvirt-sock"
        if len(str(sock)) > _SUN_PATH_MAX:
            raise DaemonError(
                f"work dir too deep for a Unix socket path ({sock}): use a shorter one"
            )
        t0 = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sock_dir.mkdir(exist_ok=True)
        self.disk_dir.mkdir(exist_ok=True)
        self._prepare_host()
        try:
            self._start_virtlogd(virtlogd, timeout)
            self._create_bridge()
            self._write_config()
            self._libvirtd = _ProcessDaemon(
                "libvirtd",
                [
                    libvirtd,
                    "--config",
                    str(self.config_path),
                    "--pid-file",
                    str(self.workdir / "libvirtd.pid"),
                ],
                self.workdir,
                self._libvirtd_answers,
            )
            self._libvirtd.start(timeout)
        except DaemonError as e:
            self.stop()
            if "acquire pid file" in str(e):
                raise DaemonError(
                    "another libvirtd (another LibvirtLab?) already runs on this "
                    f"host; run one lab per host at a time: {e}"
                ) from e
            raise
        except BaseException:
            self.stop()
            raise
        log.info(
            "libvirt lab started",
            extra={
                "uri": self.uri,
                "bridge": self.bridge,
                "seconds": round(time.monotonic() - t0, 2),
            },
        )

    def stop(self) -> None:
        """Destroy and undefine the lab's guests, stop libvirtd/virtlogd (if ours), drop the bridge.

        Logs and disk images stay in ``workdir``.
        """
        if self._paused:
            self.resume_libvirtd()
        if self._libvirtd is not None and self._libvirtd.running() and self._guests:
            if self._conn is None:
                self._conn = self._try_open()
            # Each destroy takes about 1.2 s (mostly libvirt removing the guest's cgroups):
            # do them in parallel, the connection is thread-safe.
            names = self.guests
            failed = []
            with ThreadPoolExecutor(max_workers=8) as pool:
                for name, error in zip(names, pool.map(self._destroy_quietly, names), strict=True):
                    if error:
                        failed.append(name)
                        log.warning("could not remove guest", extra={"guest": name, "error": error})
            self._kill_orphan_qemus(failed)
        elif self._guests:
            self._kill_orphan_qemus(self.guests)
        self._close_conn()
        if self._libvirtd is not None:
            self._libvirtd.stop(timeout=15)
            self._libvirtd = None
        if self._virtlogd is not None:
            self._virtlogd.stop()
            self._virtlogd = None
        self._delete_bridge()

    def restart_libvirtd(self, timeout: float = 30.0) -> None:
        """Stop and start libvirtd only; running guests (QEMU processes) survive and reconnect."""
        if self._libvirtd is None:
            raise DaemonError("libvirt lab is not started")
        if self._paused:
            self.resume_libvirtd()
        self._close_conn()
        t0 = time.monotonic()
        self._libvirtd.stop(timeout=15)
        self._libvirtd.start(timeout)
        log.info(
            "libvirtd restarted",
            extra={"pid": self._libvirtd.pid, "seconds": round(time.monotonic() - t0, 2)},
        )

    def pause_libvirtd(self) -> None:
        """Freeze libvirtd (SIGSTOP): its socket accepts but never answers, like a hung daemon."""
        if self._libvirtd is None or not self._libvirtd.running():
            raise DaemonError("libvirtd is not running")
        self._libvirtd.signal(signal.SIGSTOP)
        self._paused = True

    def resume_libvirtd(self) -> None:
        """Let a paused libvirtd run again (SIGCONT)."""
        if self._libvirtd is not None:
            self._libvirtd.signal(signal.SIGCONT)
        self._paused = False

    def open_connection(self, readonly: bool = False) -> Any:
        """A new ``virConnect`` to the lab's libvirtd (the caller closes it)."""
        return libvirt.openReadOnly(self.uri) if readonly else libvirt.open(self.uri)

    # ----------------------------------------------------------------- guests

    def guest_xml(
        self,
        name: str,
        uuid: str,
        *,
        memory_mib: int = 64,
        vcpus: int = 1,
        disks: Sequence[str] = ("vda",),
        macs: Sequence[str] | None = None,
        metadata_xml: str | None = None,
        extra_devices_xml: str = "",
        balloon_stats_period: int = 0,
    ) -> str:
        """The domain XML ``create_guest`` defines (disk images are not created here).

        ``macs=None`` gives one NIC with a MAC derived from ``uuid``; ``macs=()`` gives none.
        """
        if macs is None:
            macs = (guest_mac(uuid),)
        devices: list[str] = []
        for target in disks:
            bus = disk_bus(target)
            devices.append(
                "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                f"<source file={quoteattr(str(self._disk_path(name, target)))}/>"
                f"<target dev='{target}' bus='{bus}'/></disk>"
            )
        if any(disk_bus(t) == "scsi" for t in disks):
            devices.append("<controller type='scsi' index='0' model='virtio-scsi'/>")
        for mac in macs:
            devices.append(
                f"<interface type='bridge'><mac address='{mac}'/>"
                f"<source bridge='{self.bridge}'/><model type='virtio'/></interface>"
            )
        devices.append(
            f"<memballoon model='virtio'><stats period='{balloon_stats_period}'/></memballoon>"
            if balloon_stats_period
            else "<memballoon model='virtio'/>"
        )
        metadata = f"\n  <metadata>{metadata_xml}</metadata>" if metadata_xml else ""
        body = "\n    ".join(devices)
        extra = f"\n    {extra_devices_xml}" if extra_devices_xml else ""
        # without /dev/kvm, QEMU's TCG emulation: slower, the same domain and counters
        kind = "kvm" if KVM_DEVICE.exists() else "qemu"
        return f"""<domain type='{kind}'>
  <name>{escape(name)}</name>
  <uuid>{uuid}</uuid>{metadata}
  <memory unit='MiB'>{memory_mib}</memory>
  <currentMemory unit='MiB'>{memory_mib}</currentMemory>
  <vcpu placement='static'>{vcpus}</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    {body}{extra}
  </devices>
  <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>
</domain>
"""

    def create_guest(
        self,
        name: str,
        uuid: str,
        *,
        memory_mib: int = 64,
        vcpus: int = 1,
        disks: Sequence[str] = ("vda",),
        macs: Sequence[str] | None = None,
        metadata_xml: str | None = None,
        extra_devices_xml: str = "",
        balloon_stats_period: int = 0,
        start: bool = True,
    ) -> Any:
        """Define (and by default start) a tiny KVM guest with no OS; the ``virDomain``.

        Each disk in ``disks`` is a fresh 64 MiB qcow2 image in ``workdir/disks``, its bus chosen
        by its target name (``vdX`` virtio, ``hdX`` ide, ``sdX`` scsi with a virtio-scsi
        controller). Each MAC is a virtio NIC on the lab's bridge (``macs=None``: one NIC with a
        MAC derived from ``uuid``). ``metadata_xml`` goes verbatim inside ``<metadata>``;
        ``extra_devices_xml`` verbatim inside ``<devices>`` (e.g. an RBD network disk);
        ``balloon_stats_period`` asks the balloon driver for guest memory stats every that many
        seconds (0: never, as CloudStack's default). A domain
        of the same name left over from an earlier run is removed first.

        Without an OS the guest never drives its devices: block reads stop after the BIOS's
        boot attempt, writes stay 0, and NICs show at most a packet or two received.
        """
        conn = self.conn
        xml = self.guest_xml(
            name,
            uuid,
            memory_mib=memory_mib,
            vcpus=vcpus,
            disks=disks,
            macs=macs,
            metadata_xml=metadata_xml,
            extra_devices_xml=extra_devices_xml,
            balloon_stats_period=balloon_stats_period,
        )
        self._remove_stale(name)
        paths = [self._disk_path(name, t) for t in disks]
        for path in paths:
            path.unlink(missing_ok=True)
            _run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"])
        dom = conn.defineXML(xml)
        self._guests[name] = paths
        if start:
            dom.create()
        log.debug("guest created", extra={"guest": name, "started": start})
        return dom

    def create_guests(
        self,
        n: int,
        prefix: str = "bench",
        *,
        start: bool = True,
        first: int = 1,
        memory_mib: int = 64,
        progress: Progress | None = None,
    ) -> list[Any]:
        """Create ``n`` guests, each with one ``vda`` disk and one NIC; their ``virDomain`` list.

        Names are ``f"{prefix}-{k}"`` for k = first, first+1, ...; a prefix containing ``{k}``
        is a format instead (``prefix="i-2-{k}-VM"`` gives CloudStack-style names). UUIDs and
        MACs are derived from the names, so runs are repeatable. ``progress(done, n, name)`` is
        called after each guest; an INFO log line is written every 10 guests and at the end.
        """
        doms = []
        t0 = time.monotonic()
        for i in range(n):
            k = first + i
            name = prefix.format(k=k) if "{k}" in prefix else f"{prefix}-{k}"
            doms.append(
                self.create_guest(name, guest_uuid(name), memory_mib=memory_mib, start=start)
            )
            if progress is not None:
                progress(i + 1, n, name)
            if (i + 1) % 10 == 0 or i + 1 == n:
                log.info(
                    "guests created",
                    extra={"done": i + 1, "total": n, "seconds": round(time.monotonic() - t0, 2)},
                )
        return doms

    def destroy_guest(self, name: str, delete_disks: bool = True) -> None:
        """Destroy (if running) and undefine guest ``name``; optionally delete its disk images."""
        paths = self._guests.pop(name, [])
        with _quiet_libvirt():
            try:
                dom = self.conn.lookupByName(name)
            except libvirt.libvirtError:
                dom = None
            if dom is not None:
                if dom.isActive():
                    try:
                        dom.destroy()
                    except libvirt.libvirtError:
                        # After a libvirtd restart, destroying a reconnected guest kills it
                        # but may report "domain is not running" (libvirt 9.0): accept that.
                        if dom.isActive():
                            raise
                dom.undefineFlags(
                    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                )
        if delete_disks:
            for path in paths:
                path.unlink(missing_ok=True)

    # ----------------------------------------------------------------- internals

    def _destroy_quietly(self, name: str) -> str:
        """``destroy_guest`` keeping disks; the error text, or "" if it worked."""
        try:
            self.destroy_guest(name, delete_disks=False)
        except Exception as e:
            return str(e)
        return ""

    def _disk_path(self, name: str, target: str) -> Path:
        return self.disk_dir / f"{name}-{target}.qcow2"

    def _remove_stale(self, name: str) -> None:
        with _quiet_libvirt():
            try:
                self.conn.lookupByName(name)
            except libvirt.libvirtError:
                return
        log.warning("replacing existing domain", extra={"guest": name})
        self._guests.setdefault(name, [])
        self.destroy_guest(name, delete_disks=False)

    def _prepare_host(self) -> None:
        """Accounts, directories and /dev/kvm access the QEMU driver needs (idempotent)."""
        try:
            grp.getgrnam(QEMU_USER)
        except KeyError:
            _run(["groupadd", "-r", QEMU_USER])
        try:
            pwd.getpwnam(QEMU_USER)
        except KeyError:
            _run(["useradd", "-r", "-g", QEMU_USER, "-s", "/usr/sbin/nologin", QEMU_USER])
        for d in ("/var/log/libvirt", "/var/run/libvirt"):
            Path(d).mkdir(parents=True, exist_ok=True)
        if not KVM_DEVICE.exists():
            log.warning("/dev/kvm missing: guests run under TCG emulation (slower, same results)")
            return
        if not self._qemu_user_can_use_kvm():
            try:
                grp.getgrnam("kvm")
            except KeyError:
                _run(["groupadd", "-r", "kvm"])
            _run(["usermod", "-a", "-G", "kvm", QEMU_USER])
            os.chown(KVM_DEVICE, -1, grp.getgrnam("kvm").gr_gid)
            os.chmod(KVM_DEVICE, 0o660)
            log.warning(
                "gave group kvm (with libvirt-qemu in it) rw access to /dev/kvm, "
                "as Debian's udev rule does"
            )

    @staticmethod
    def _qemu_user_can_use_kvm() -> bool:
        st = KVM_DEVICE.stat()
        user = pwd.getpwnam(QEMU_USER)
        gids = {user.pw_gid} | {g.gr_gid for g in grp.getgrall() if QEMU_USER in g.gr_mem}
        if st.st_uid == user.pw_uid:
            return st.st_mode & 0o600 == 0o600
        if st.st_gid in gids:
            return st.st_mode & 0o060 == 0o060
        return st.st_mode & 0o006 == 0o006

    def _start_virtlogd(self, binary: str, timeout: float) -> None:
        if _unix_socket_answers(VIRTLOGD_SOCK):
            log.info("reusing the running virtlogd", extra={"socket": str(VIRTLOGD_SOCK)})
            return
        conf = self.workdir / "virtlogd.conf"
        conf.write_text(f'log_outputs = "3:file:{self.workdir / "virtlogd.log"}"\n')
        self._virtlogd = _ProcessDaemon(
            "virtlogd",
            [binary, "--config", str(conf), "--pid-file", str(self.workdir / "virtlogd.pid")],
            self.workdir,
            lambda: _unix_socket_answers(VIRTLOGD_SOCK),
        )
        self._virtlogd.start(timeout)

    def _write_config(self) -> None:
        self.config_path.write_text(
            "# written by lab/libvirt.py: a private libvirtd for tests\n"
            f'unix_sock_dir = "{self.sock_dir}"\n'
            'auth_unix_ro = "none"\n'
            'auth_unix_rw = "none"\n'
            f'log_outputs = "3:file:{self.libvirtd_log}"\n'
        )

    def _libvirtd_answers(self) -> bool:
        """Ready check: a connection to ``uri`` opens; it becomes the lab's ``conn``."""
        if not (self.sock_dir / "libvirt-sock").exists():
            return False
        self._conn = self._try_open()
        return self._conn is not None

    def _try_open(self) -> Any:
        with _quiet_libvirt():
            try:
                return libvirt.open(self.uri)
            except libvirt.libvirtError:
                return None

    def _close_conn(self) -> None:
        if self._conn is not None:
            with _quiet_libvirt():
                try:
                    self._conn.close()
                except libvirt.libvirtError:
                    pass
            self._conn = None

    def _create_bridge(self) -> None:
        _run(["ip", "link", "add", self.bridge, "type", "bridge"])
        self._bridge_created = True
        _run(["ip", "link", "set", self.bridge, "up"])

    def _delete_bridge(self) -> None:
        if self._bridge_created:
            try:
                _run(["ip", "link", "del", self.bridge])
            except DaemonError as e:
                log.warning(
                    "could not delete bridge", extra={"bridge": self.bridge, "error": str(e)}
                )
            self._bridge_created = False

    def _kill_orphan_qemus(self, names: Sequence[str]) -> None:
        """libvirt could not remove these guests: kill their QEMU by PID file (definitions stay)."""
        for name in names:
            pidfile = Path("/var/run/libvirt/qemu") / f"{name}.pid"
            try:
                pid = int(pidfile.read_text().strip())
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"qemu-system" not in cmdline or f"guest={name},".encode() not in cmdline:
                    continue  # a stale PID file: that PID is not this guest's QEMU any more
                os.kill(pid, signal.SIGKILL)
                log.warning("killed guest QEMU without libvirtd", extra={"guest": name, "pid": pid})
            except (OSError, ValueError):
                pass
            finally:
                self._guests.pop(name, None)
