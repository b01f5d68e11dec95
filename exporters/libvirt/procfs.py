"""CPU, vCPU and RSS figures of local QEMU guests read from /proc and cgroupfs, the way libvirt
reads them, without the QEMU monitor round-trips libvirt 9.0 adds to those stat groups.

libvirt's ``cpu`` group also asks QEMU for halt-polling stats (``query-stats``), and its ``vcpu``
group refreshes the vCPUs' halted state (``query-cpus-fast``) and asks for KVM's per-vCPU stats
(``query-stats``): two to three monitor round-trips per domain that the exporter does not export,
on every scrape. The figures it does export come from the kernel, and libvirt reads them itself
from these files (``qemuDomainHelperGetVcpus``, ``virProcessGetStatInfo``,
``virProcessGetSchedInfo``, ``qemuGetSchedstatDelay``, ``qemuDomainGetStatsCpuCgroup``):

* ``vcpu.N.time``: utime+stime of the vCPU thread (``/proc/PID/task/TID/stat``), in ns;
* ``vcpu.N.wait``: ``se.statistics.wait_sum`` of ``/proc/PID/task/TID/sched`` (ms -> ns);
* ``vcpu.N.delay``: the run-queue wait, 2nd field of ``/proc/PID/task/TID/schedstat`` (ns);
* ``cpu.time/user/system``: the domain's cgroup (v2 ``cpu.stat``; v1 ``cpuacct.usage`` and
  ``cpuacct.stat``) when libvirt placed the domain in one, else utime/stime of the QEMU
  process (``/proc/PID/stat``), as libvirt does without cgroups;
* ``balloon.rss``: the rss field of ``/proc/PID/stat``, in KiB.

The QEMU process of a domain is found once per domain start by its ``-uuid`` argument, and its
vCPU threads by QEMU's thread names (``CPU 0/KVM``; libvirt always starts QEMU with
``debug-threads=on``). Only for a libvirtd on this host; anything not found falls back to
libvirt's own stat groups (see ``LibvirtSource``).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

_VCPU_THREAD = re.compile(r"^CPU (\d+)/KVM$")
# machine-qemu\x2d3\x2dname.scope (systemd) or qemu-3-name.libvirt-qemu (no systemd)
_MACHINE_DIR = re.compile(r"^(machine-qemu.*\.scope|.*\.libvirt-qemu)$")


@dataclass
class QemuProcess:
    """Where one running domain's figures live: its QEMU pid, vCPU threads and cgroups."""

    pid: int
    start_time: str  # field 22 of /proc/PID/stat: tells a reused pid apart
    vcpu_tids: dict[int, int] = field(default_factory=dict)
    cgroup_v2: Path | None = None
    cpuacct_v1: Path | None = None


def _stat_fields(text: str) -> list[str]:
    """Fields of a /proc stat line after ``comm`` (which may contain spaces and parens)."""
    return text.rsplit(")", 1)[1].split()


def parse_stat(text: str) -> tuple[int, int, int, str]:
    """utime, stime (clock ticks), rss (pages) and start time of a /proc stat line."""
    f = _stat_fields(text)
    # fields after comm start at field 3 (state): utime 14, stime 15, starttime 22, rss 24
    return int(f[11]), int(f[12]), int(f[21]), f[19]


def parse_sched_wait(text: str) -> int:
    """``se.statistics.wait_sum`` (or the older ``se.wait_sum``) of a sched file, in ns."""
    for line in text.splitlines():
        if line.startswith(("se.statistics.wait_sum", "se.wait_sum")):
            return int(float(line.split(":", 1)[1]) * 1_000_000)
    return 0


def parse_schedstat_delay(text: str) -> int:
    """Run-queue wait (2nd field) of a schedstat file, in ns."""
    return int(text.split()[1])


def parse_cgroup_v2_cpu(text: str) -> tuple[int, int, int]:
    """usage, user and system time (ns) from a cgroup v2 ``cpu.stat``."""
    values = dict(line.split(" ", 1) for line in text.splitlines() if " " in line)
    return (
        int(values["usage_usec"]) * 1000,
        int(values["user_usec"]) * 1000,
        int(values["system_usec"]) * 1000,
    )


def machine_cgroup(path: str) -> str | None:
    """The domain's own cgroup in a /proc/PID/cgroup path, or None if libvirt placed it in none.

    ``/machine.slice/machine-qemu\\x2d3\\x2dvm.scope/libvirt/emulator`` ->
    ``/machine.slice/machine-qemu\\x2d3\\x2dvm.scope``.
    """
    parts = path.strip("/").split("/")
    for i, part in enumerate(parts):
        if _MACHINE_DIR.match(part):
            return "/" + "/".join(parts[: i + 1])
    return None


class ProcReader:
    """Finds local QEMU processes by domain uuid and reads libvirt's figures from /proc."""

    def __init__(
        self,
        proc: Path = Path("/proc"),
        cgroup_root: Path = Path("/sys/fs/cgroup"),
    ) -> None:
        self.proc = proc
        self.cgroup_root = cgroup_root
        self.ns_per_tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
        self.page_kib = os.sysconf("SC_PAGE_SIZE") // 1024
        self._found: dict[tuple[str, int], QemuProcess | None] = {}
        self.scans = 0
        self.read_errors = 0

    # -- discovery ---------------------------------------------------------------------------
    def locate(self, domains: dict[str, int]) -> dict[str, QemuProcess]:
        """The QEMU process of each running domain ``{uuid: domain id}`` found on this host.

        Known domains cost nothing; one scan of /proc finds all new ones. A domain not found
        stays unfound until its id changes (it is started again).
        """
        for key in [k for k in self._found if domains.get(k[0]) != k[1]]:
            del self._found[key]  # stopped, or started again with a new id
        missing = {uuid for uuid, dom_id in domains.items() if (uuid, dom_id) not in self._found}
        if missing:
            pids = self._scan(missing)
            for uuid in missing:
                pid = pids.get(uuid)
                self._found[(uuid, domains[uuid])] = self._describe(pid) if pid else None
        return {uuid: p for (uuid, _), p in self._found.items() if p is not None}

    def forget(self, uuid: str) -> None:
        """Drop what is known of ``uuid`` (its process went away): found again next time."""
        for key in [k for k in self._found if k[0] == uuid]:
            del self._found[key]

    def _scan(self, uuids: set[str]) -> dict[str, int]:
        self.scans += 1
        found: dict[str, int] = {}
        try:
            entries = [e for e in os.listdir(self.proc) if e.isdigit()]
        except OSError:
            return found
        for entry in entries:
            try:
                argv = (self.proc / entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"-uuid" not in argv:
                continue
            i = argv.index(b"-uuid")
            if i + 1 < len(argv):
                uuid = argv[i + 1].decode(errors="replace").lower()
                if uuid in uuids:
                    found[uuid] = int(entry)
        return found

    def _describe(self, pid: int) -> QemuProcess | None:
        base = self.proc / str(pid)
        try:
            start = parse_stat((base / "stat").read_text())[3]
            proc = QemuProcess(pid=pid, start_time=start)
            for tid in os.listdir(base / "task"):
                try:
                    comm = (base / "task" / tid / "comm").read_text().strip()
                except OSError:
                    continue
                m = _VCPU_THREAD.match(comm)
                if m:
                    proc.vcpu_tids[int(m.group(1))] = int(tid)
            cgroups = (base / "cgroup").read_text()
        except (OSError, ValueError, IndexError):
            return None
        for line in cgroups.splitlines():
            hid, controllers, path = [*line.split(":", 2), "", ""][:3]
            group = machine_cgroup(path)
            if group is None:
                continue
            if hid == "0" and not controllers:
                candidate = self.cgroup_root / group.lstrip("/")
                if not (candidate / "cpu.stat").exists():
                    candidate = self.cgroup_root / "unified" / group.lstrip("/")
                if (candidate / "cpu.stat").exists():
                    proc.cgroup_v2 = candidate
            elif "cpuacct" in controllers.split(","):
                mount = self.cgroup_root / (
                    "cpu,cpuacct" if "cpu" in controllers.split(",") else "cpuacct"
                )
                if not mount.exists():
                    mount = self.cgroup_root / "cpuacct"
                candidate = mount / group.lstrip("/")
                if (candidate / "cpuacct.usage").exists():
                    proc.cpuacct_v1 = candidate
        return proc

    # -- reading -----------------------------------------------------------------------------
    def read(
        self, proc: QemuProcess, vcpus: bool = True, cpu: bool = True, rss: bool = True
    ) -> dict[str, int] | None:
        """libvirt-named stats (``cpu.time``, ``vcpu.0.delay``, ``balloon.rss``...) of ``proc``;
        None when the process is gone or is no longer the one found."""
        base = self.proc / str(proc.pid)
        out: dict[str, int] = {}
        try:
            utime, stime, rss_pages, start = parse_stat((base / "stat").read_text())
            if start != proc.start_time:
                return None
            if rss:
                out["balloon.rss"] = rss_pages * self.page_kib
            if cpu:
                out.update(self._cpu(proc, utime, stime))
            if vcpus:
                for index, tid in sorted(proc.vcpu_tids.items()):
                    task = base / "task" / str(tid)
                    u, s, _, _ = parse_stat((task / "stat").read_text())
                    out[f"vcpu.{index}.state"] = 1  # VIR_VCPU_RUNNING, as libvirt reports
                    out[f"vcpu.{index}.time"] = (u + s) * self.ns_per_tick
                    out[f"vcpu.{index}.wait"] = self._optional(task / "sched", parse_sched_wait)
                    out[f"vcpu.{index}.delay"] = self._optional(
                        task / "schedstat", parse_schedstat_delay
                    )
        except (OSError, ValueError, IndexError, KeyError) as exc:
            self.read_errors += 1
            log.debug(
                "cannot read QEMU process figures", extra={"pid": proc.pid, "error": str(exc)}
            )
            return None
        return out

    def _cpu(self, proc: QemuProcess, utime: int, stime: int) -> dict[str, int]:
        if proc.cgroup_v2 is not None:
            usage, user, system = parse_cgroup_v2_cpu((proc.cgroup_v2 / "cpu.stat").read_text())
            return {"cpu.time": usage, "cpu.user": user, "cpu.system": system}
        if proc.cpuacct_v1 is not None:
            usage = int((proc.cpuacct_v1 / "cpuacct.usage").read_text())
            ticks = dict(
                line.split() for line in (proc.cpuacct_v1 / "cpuacct.stat").read_text().splitlines()
            )
            return {
                "cpu.time": usage,
                "cpu.user": int(ticks["user"]) * self.ns_per_tick,
                "cpu.system": int(ticks["system"]) * self.ns_per_tick,
            }
        return {
            "cpu.time": (utime + stime) * self.ns_per_tick,
            "cpu.user": utime * self.ns_per_tick,
            "cpu.system": stime * self.ns_per_tick,
        }

    @staticmethod
    def _optional(path: Path, parse: Callable[[str], int]) -> int:
        """A file the kernel may not have (CONFIG_SCHED_DEBUG/SCHEDSTATS): 0 then, as libvirt."""
        try:
            text = path.read_text()
        except FileNotFoundError:
            return 0
        return parse(text)
