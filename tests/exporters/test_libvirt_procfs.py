"""The /proc reader of the libvirt exporter, on /proc and cgroupfs trees laid out like the
kernel's (the values against libvirt's own are checked in test_libvirt_integration)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from exporters.libvirt.parse import DomainXmlError, parse_domain_xml
from exporters.libvirt.procfs import (
    ProcReader,
    machine_cgroup,
    parse_cgroup_v2_cpu,
    parse_sched_wait,
    parse_schedstat_delay,
    parse_stat,
)
from exporters.libvirt.source import is_local_uri

UUID = "6f1f3a52-8c4e-4d27-9b1a-2f0c5e7d9a01"
NS_PER_TICK = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
SCOPE = "/machine.slice/machine-qemu\\x2d3\\x2di\\x2d2\\x2d9\\x2dVM.scope"


def stat_line(pid: int, comm: str, utime: int, stime: int, start: int = 4242, rss: int = 0) -> str:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    # utime stime cutime cstime priority nice threads itreal starttime vsize rss ...
    rest = [
        "S",
        "1",
        str(pid),
        str(pid),
        "0",
        "-1",
        "138412352",
        "100",
        "0",
        "3",
        "0",
        str(utime),
        str(stime),
        "0",
        "0",
        "20",
        "0",
        "4",
        "0",
        str(start),
        "1000000",
        str(rss),
    ] + ["0"] * 28
    return f"{pid} ({comm}) " + " ".join(rest) + "\n"


SCHED = """CPU 0/KVM (1236, #threads: 4)
-------------------------------------------------------------------
se.exec_start                                :       4997902.791798
se.vruntime                                  :          4310.184284
se.sum_exec_runtime                          :           812.004779
se.statistics.wait_sum                       :            12.500000
se.nr_migrations                             :                    3
"""


def make_qemu(
    proc: Path,
    pid: int = 1234,
    uuid: str = UUID,
    cgroup: str = "0::/\n",
    sched: str | None = SCHED,
    start: int = 4242,
) -> None:
    base = proc / str(pid)
    (base / "task").mkdir(parents=True)
    (base / "cmdline").write_bytes(
        b"\0".join(
            [
                b"/usr/bin/qemu-system-x86_64",
                b"-name",
                b"guest=i-2-9-VM,debug-threads=on",
                b"-uuid",
                uuid.encode(),
                b"-smp",
                b"2",
            ]
        )
        + b"\0"
    )
    (base / "stat").write_text(stat_line(pid, "qemu-system-x86", 300, 100, start, rss=5000))
    (base / "cgroup").write_text(cgroup)
    for tid, comm, utime in (
        (pid, "qemu-system-x86", 10),
        (pid + 2, "CPU 0/KVM", 70),
        (pid + 3, "CPU 1/KVM", 20),
        (pid + 4, "IO mon_iothread", 1),
    ):
        task = base / "task" / str(tid)
        task.mkdir()
        (task / "comm").write_text(comm + "\n")
        (task / "stat").write_text(stat_line(tid, comm, utime, 5, start))
        (task / "schedstat").write_text(f"{utime * 1000} {tid * 10} 42\n")
        if sched is not None:
            (task / "sched").write_text(sched)


def test_parse_stat_survives_odd_command_names() -> None:
    assert parse_stat(stat_line(7, "CPU 0/KVM", 11, 22, 99, 33)) == (11, 22, 33, "99")
    assert parse_stat(stat_line(7, "a) (b", 1, 2, 3, 4)) == (1, 2, 4, "3")


def test_sched_and_schedstat_values() -> None:
    assert parse_sched_wait(SCHED) == 12_500_000
    assert parse_sched_wait(SCHED.replace("se.statistics.wait_sum", "se.wait_sum")) == 12_500_000
    assert parse_sched_wait("se.exec_start : 1.0\n") == 0  # kernel without schedstats
    assert parse_schedstat_delay("812004779 66169 17\n") == 66169


def test_finds_the_qemu_process_and_reads_what_libvirt_reads(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    make_qemu(proc)
    other = proc / "999"
    other.mkdir()
    (other / "cmdline").write_bytes(b"/usr/sbin/libvirtd\0--timeout\0120\0")
    (proc / "self").mkdir()  # non-numeric entries are not processes
    reader = ProcReader(proc, tmp_path / "cgroup")
    found = reader.locate({UUID: 3})
    assert set(found) == {UUID}
    qemu = found[UUID]
    assert qemu.pid == 1234 and qemu.vcpu_tids == {0: 1236, 1: 1237}
    stats = reader.read(qemu)
    assert stats == {
        "balloon.rss": 5000 * PAGE_KIB,
        "cpu.time": 400 * NS_PER_TICK,
        "cpu.user": 300 * NS_PER_TICK,
        "cpu.system": 100 * NS_PER_TICK,
        "vcpu.0.state": 1,
        "vcpu.0.time": 75 * NS_PER_TICK,
        "vcpu.0.wait": 12_500_000,
        "vcpu.0.delay": 12360,
        "vcpu.1.state": 1,
        "vcpu.1.time": 25 * NS_PER_TICK,
        "vcpu.1.wait": 12_500_000,
        "vcpu.1.delay": 12370,
    }
    assert reader.read(qemu, vcpus=False, cpu=False) == {"balloon.rss": 5000 * PAGE_KIB}


def test_discovery_is_cached_per_domain_start(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    make_qemu(proc)
    reader = ProcReader(proc, tmp_path / "cgroup")
    reader.locate({UUID: 3})
    reader.locate({UUID: 3})
    assert reader.scans == 1
    missing = "00000000-0000-0000-0000-000000000001"
    assert missing not in reader.locate({UUID: 3, missing: 4})
    assert reader.scans == 2
    reader.locate({UUID: 3, missing: 4})
    assert reader.scans == 2  # not found is remembered until the domain starts again
    reader.locate({UUID: 5, missing: 4})  # UUID restarted: a new id
    assert reader.scans == 3


def test_a_reused_pid_or_a_vanished_process_gives_nothing(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    make_qemu(proc)
    reader = ProcReader(proc, tmp_path / "cgroup")
    qemu = reader.locate({UUID: 3})[UUID]
    (proc / "1234" / "stat").write_text(stat_line(1234, "bash", 1, 1, start=999999))
    assert reader.read(qemu) is None
    (proc / "1234" / "stat").unlink()
    assert reader.read(qemu) is None
    assert reader.read_errors == 1
    reader.forget(UUID)
    assert reader.locate({UUID: 3}) == {}


def test_kernel_without_sched_debug_reports_zero_wait(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    make_qemu(proc, sched=None)
    reader = ProcReader(proc, tmp_path / "cgroup")
    stats = reader.read(reader.locate({UUID: 3})[UUID])
    assert stats is not None and stats["vcpu.0.wait"] == 0 and stats["vcpu.0.delay"] == 12360


@pytest.mark.parametrize(
    ("path", "group"),
    [
        (SCOPE + "/libvirt/emulator", SCOPE),
        (SCOPE + "/emulator", SCOPE),
        (SCOPE, SCOPE),
        ("/machine/qemu-3-i-2-9-VM.libvirt-qemu/emulator", "/machine/qemu-3-i-2-9-VM.libvirt-qemu"),
        ("/", None),
        ("/system.slice/libvirtd.service", None),
    ],
)
def test_machine_cgroup(path: str, group: str | None) -> None:
    assert machine_cgroup(path) == group


def test_cpu_from_the_cgroup_v2_scope_like_libvirt(tmp_path: Path) -> None:
    proc, cg = tmp_path / "proc", tmp_path / "cgroup"
    make_qemu(proc, cgroup=f"0::{SCOPE}/libvirt/emulator\n")
    scope = cg / SCOPE.lstrip("/")
    scope.mkdir(parents=True)
    (scope / "cpu.stat").write_text(
        "usage_usec 5000123\nuser_usec 4000000\nsystem_usec 1000123\nnr_periods 0\n"
    )
    reader = ProcReader(proc, cg)
    stats = reader.read(reader.locate({UUID: 3})[UUID])
    assert stats is not None
    assert (stats["cpu.time"], stats["cpu.user"], stats["cpu.system"]) == (
        5_000_123_000,
        4_000_000_000,
        1_000_123_000,
    )
    assert parse_cgroup_v2_cpu((scope / "cpu.stat").read_text())[0] == 5_000_123_000


def test_cpu_from_the_cgroup_v1_cpuacct_like_libvirt(tmp_path: Path) -> None:
    proc, cg = tmp_path / "proc", tmp_path / "cgroup"
    make_qemu(proc, cgroup=f"3:cpu,cpuacct:{SCOPE}/emulator\n2:memory:{SCOPE}\n0::/\n")
    scope = cg / "cpu,cpuacct" / SCOPE.lstrip("/")
    scope.mkdir(parents=True)
    (scope / "cpuacct.usage").write_text("7000000001\n")
    (scope / "cpuacct.stat").write_text("user 500\nsystem 200\n")
    reader = ProcReader(proc, cg)
    stats = reader.read(reader.locate({UUID: 3})[UUID])
    assert stats is not None
    assert (stats["cpu.time"], stats["cpu.user"], stats["cpu.system"]) == (
        7_000_000_001,
        500 * NS_PER_TICK,
        200 * NS_PER_TICK,
    )


def test_only_local_qemu_uris_use_proc() -> None:
    assert is_local_uri("qemu:///system") and is_local_uri("qemu+unix:///system")
    assert is_local_uri("qemu:///session")
    assert not is_local_uri("qemu+ssh://kvm1.example/system")
    assert not is_local_uri("qemu+tls://kvm1/system") and not is_local_uri("test:///default")


def test_domain_xml_memory_vcpus_and_balloon() -> None:
    xml = f"""<domain type='kvm'><name>v</name><uuid>{UUID}</uuid>
      <memory unit='GiB'>2</memory><currentMemory unit='MiB'>1536</currentMemory>
      <vcpu placement='static' current='2'>4</vcpu>
      <devices><memballoon model='virtio'><stats period='10'/></memballoon></devices></domain>
    """
    d = parse_domain_xml(xml)
    assert (d.memory_kib, d.current_memory_kib, d.vcpus_max, d.vcpus_current) == (
        2 * 1024**2,
        1536 * 1024,
        4,
        2,
    )
    assert d.balloon and d.balloon_stats_period == 10
    assert d.xml_stats() == {
        "balloon.maximum": 2 * 1024**2,
        "balloon.current": 1536 * 1024,
        "vcpu.maximum": 4,
        "vcpu.current": 2,
    }
    no_balloon = parse_domain_xml(xml.replace("model='virtio'", "model='none'"))
    # libvirt reports the whole memory as current when there is no balloon
    assert no_balloon.xml_stats()["balloon.current"] == 2 * 1024**2
    with pytest.raises(DomainXmlError, match="unknown memory unit 'parsec'"):
        parse_domain_xml(xml.replace("unit='GiB'", "unit='parsec'"))
    with pytest.raises(DomainXmlError, match="bad number"):
        parse_domain_xml(xml.replace("current='2'", "current='two'"))
