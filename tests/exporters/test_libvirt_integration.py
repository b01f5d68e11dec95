"""The libvirt exporter against a real libvirtd with real KVM guests."""

from __future__ import annotations

import re
import subprocess
import threading
import time
import uuid as uuidlib
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from exporters.http import ExporterServer
from exporters.libvirt.source import GROUP_FLAGS, LibvirtCollector, LibvirtSource
from lab.libvirt import LibvirtLab
from tests.samples import Samples, from_families, parse, series, value, wait_until
from tests.support import need_binary
from zcp.inventory.cache import InventoryCache
from zcp.inventory.model import Inventory

pytestmark = pytest.mark.integration


class Exporter:
    """The exporter running in-process (HTTP server + collector) against the lab."""

    def __init__(self, lab: LibvirtLab, inventory: Inventory) -> None:
        self.cache = InventoryCache(lambda: inventory, refresh_interval=3600)
        self.cache.refresh()
        self.source = LibvirtSource(lab.uri)
        self.server = ExporterServer(
            "libvirt",
            LibvirtCollector(self.source, self.cache, "test-host", 8.0),
            "127.0.0.1",
            0,
            8.0,
        ).start()
        self.url = f"http://127.0.0.1:{self.server.port}/metrics"

    def scrape_text(self, timeout_header: float | None = None) -> str:
        headers = {}
        if timeout_header is not None:
            headers["X-Prometheus-Scrape-Timeout-Seconds"] = str(timeout_header)
        resp = requests.get(self.url, headers=headers, timeout=30)
        resp.raise_for_status()
        return resp.text

    def scrape(self, timeout_header: float | None = None) -> Samples:
        return parse(self.scrape_text(timeout_header))

    def close(self) -> None:
        self.server.shutdown()
        self.source.close()


def domstats(lab: LibvirtLab, name: str) -> dict[str, str]:
    out = subprocess.run(
        ["virsh", "-c", lab.uri, "domstats", "--raw", name],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.strip().split("=", 1) for line in out.splitlines() if "=" in line)


@pytest.fixture(scope="module")
def guests(libvirt_lab: LibvirtLab, default_inventory: Inventory) -> Iterator[dict[str, str]]:
    """web-1 as CloudStack would run it (IDE root disk hda + virtio vdb), and a stranger."""
    web1 = next(v for v in default_inventory.vms if v.name == "web-1")
    mac = next(n.mac for n in default_inventory.nics if n.vm_id == web1.id)
    libvirt_lab.create_guest(web1.instance_name, web1.id, disks=("hda", "vdb"), macs=(mac,))
    stranger = str(uuidlib.uuid4())
    # two vCPUs, and told to report guest memory stats (so its balloon needs the monitor)
    libvirt_lab.create_guest("i-9-99-VM", stranger, disks=("vda",), vcpus=2, balloon_stats_period=5)
    # the BIOS reads the IDE boot disk within a few seconds: wait for that real I/O
    assert wait_until(
        lambda: int(domstats(libvirt_lab, web1.instance_name).get("block.0.rd.bytes", 0)) > 0,
        timeout=30,
    ), "the guest's BIOS never read its disk"
    yield {
        "known": web1.id,
        "known_name": web1.instance_name,
        "unknown": stranger,
        "unknown_name": "i-9-99-VM",
    }
    for name in (web1.instance_name, "i-9-99-VM"):
        libvirt_lab.destroy_guest(name)


@pytest.fixture
def exporter(
    libvirt_lab: LibvirtLab, default_inventory: Inventory, guests: dict[str, str]
) -> Iterator[Exporter]:
    exp = Exporter(libvirt_lab, default_inventory)
    yield exp
    exp.close()


def test_counters_match_virsh_domstats(
    exporter: Exporter, libvirt_lab: LibvirtLab, guests: dict[str, str]
) -> None:
    name, vm = guests["known_name"], guests["known"]
    before = domstats(libvirt_lab, name)
    samples = exporter.scrape()
    after = domstats(libvirt_lab, name)
    assert value(samples, "libvirt_up") == 1
    ids = {"vm_id": vm, "instance_name": name}
    assert value(samples, "libvirt_domain_state", **ids) == int(after["state.state"]) == 1

    def between(metric: str, key: str, scale: float = 1.0, **labels: str) -> None:
        got = value(samples, metric, **ids, **labels)
        assert float(before[key]) * scale <= got <= float(after[key]) * scale, (metric, got)

    # a local libvirtd: CPU, vCPU and RSS figures came from /proc, the rest from libvirt
    assert value(samples, "libvirt_exporter_procfs_domains") == 2
    between("libvirt_domain_cpu_time_seconds_total", "cpu.time", 1e-9)
    between("libvirt_domain_cpu_user_seconds_total", "cpu.user", 1e-9)
    between("libvirt_domain_cpu_system_seconds_total", "cpu.system", 1e-9)
    between("libvirt_domain_vcpu_time_seconds_total", "vcpu.0.time", 1e-9, vcpu="0")
    between("libvirt_domain_vcpu_wait_seconds_total", "vcpu.0.wait", 1e-9, vcpu="0")
    between("libvirt_domain_vcpu_delay_seconds_total", "vcpu.0.delay", 1e-9, vcpu="0")
    assert value(samples, "libvirt_domain_vcpu_delay_seconds_total", **ids, vcpu="0") > 0
    assert value(samples, "libvirt_domain_vcpus", **ids) == int(after["vcpu.current"])
    rss = value(samples, "libvirt_domain_memory_rss_bytes", **ids)
    assert abs(rss - int(after["balloon.rss"]) * 1024) <= 0.05 * rss  # a gauge: it moves
    between("libvirt_domain_memory_maximum_bytes", "balloon.maximum", 1024)
    between("libvirt_domain_memory_balloon_bytes", "balloon.current", 1024)
    assert value(samples, "libvirt_domain_memory_maximum_bytes", **ids) == 64 * 2**20
    disks = {before[f"block.{i}.name"]: i for i in range(int(before["block.count"]))}
    assert set(disks) == {"hda", "vdb"}  # the IDE root disk is not dropped for its name
    for dev, i in disks.items():
        between("libvirt_domain_block_capacity_bytes", f"block.{i}.capacity", device=dev)
        between("libvirt_domain_block_read_requests_total", f"block.{i}.rd.reqs", device=dev)
        between("libvirt_domain_block_read_bytes_total", f"block.{i}.rd.bytes", device=dev)
    assert value(samples, "libvirt_domain_block_capacity_bytes", **ids, device="hda") == 64 * 2**20
    # the BIOS reads the IDE boot disk: real, non-zero I/O
    assert value(samples, "libvirt_domain_block_read_bytes_total", **ids, device="hda") > 0
    nic = before["net.0.name"]
    between("libvirt_domain_interface_transmit_packets_total", "net.0.tx.pkts", device=nic)
    between("libvirt_domain_interface_receive_bytes_total", "net.0.rx.bytes", device=nic)


def test_identity_from_the_inventory(
    exporter: Exporter, guests: dict[str, str], default_inventory: Inventory
) -> None:
    samples = exporter.scrape()
    vm = guests["known"]
    (info,) = series(samples, "zcp_vm_info", vm_id=vm)
    assert info["account"] == "acme" and info["project"] == "web"
    assert info["domain_path"] == "ROOT/customers" and info["vm_name"] == "web-1"
    root = next(v for v in default_inventory.volumes if v.vm_id == vm and v.device_id == 0)
    data = next(v for v in default_inventory.volumes if v.vm_id == vm and v.device_id == 1)
    hda = series(samples, "libvirt_domain_block_capacity_bytes", vm_id=vm, device="hda")
    vdb = series(samples, "libvirt_domain_block_capacity_bytes", vm_id=vm, device="vdb")
    assert hda[0]["volume_id"] == root.id and vdb[0]["volume_id"] == data.id
    assert hda[0]["source"].endswith(".qcow2")
    assert {s["volume_id"] for s in series(samples, "zcp_volume_info", vm_id=vm)} == {
        root.id,
        data.id,
    }
    nic = next(n for n in default_inventory.nics if n.vm_id == vm)
    (net,) = series(samples, "libvirt_domain_interface_receive_bytes_total", vm_id=vm)
    assert net["mac"] == nic.mac and net["nic_id"] == nic.id
    assert series(samples, "zcp_nic_info", vm_id=vm)[0]["nic_id"] == nic.id


def test_unknown_vm_keeps_all_its_counters(exporter: Exporter, guests: dict[str, str]) -> None:
    samples = exporter.scrape()
    vm = guests["unknown"]
    (info,) = series(samples, "zcp_vm_info", vm_id=vm)
    assert info["account_id"] == "" and info["account"] == "" and info["host"] == "test-host"
    for name in (
        "libvirt_domain_cpu_time_seconds_total",
        "libvirt_domain_memory_rss_bytes",
        "libvirt_domain_block_write_requests_total",
        "libvirt_domain_interface_transmit_bytes_total",
    ):
        assert series(samples, name, vm_id=vm), name
    assert series(samples, "libvirt_domain_block_read_bytes_total", vm_id=vm)[0]["volume_id"] == ""


def test_exposition_passes_promtool(exporter: Exporter) -> None:
    promtool = need_binary("promtool", "prometheus")
    text = exporter.scrape_text()
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_domain_xml_is_cached_and_refreshed_on_events(
    exporter: Exporter, libvirt_lab: LibvirtLab, guests: dict[str, str]
) -> None:
    exporter.scrape()
    reads = value(exporter.scrape(), "libvirt_exporter_domain_xml_reads_total")
    for _ in range(3):
        exporter.scrape()
    assert value(exporter.scrape(), "libvirt_exporter_domain_xml_reads_total") == reads
    dom = libvirt_lab.conn.lookupByName("i-9-99-VM")
    dom.suspend()
    try:

        def paused() -> bool:
            s = exporter.scrape()
            return value(s, "libvirt_domain_state", vm_id=guests["unknown"]) == 3

        assert wait_until(paused, timeout=10)
        assert value(exporter.scrape(), "libvirt_exporter_domain_xml_reads_total") > reads
    finally:
        dom.resume()


def series_of(samples: Samples, vm_id: str) -> set[tuple[str, frozenset[tuple[str, str]]]]:
    """Every series (name and labels, not the value) that carries ``vm_id``."""
    return {key for key in samples if ("vm_id", vm_id) in key[1]}


def test_guest_destroyed_mid_collection_loses_only_its_own_series(
    exporter: Exporter, libvirt_lab: LibvirtLab, guests: dict[str, str]
) -> None:
    """A guest destroyed after the collection listed it and before its XML and stats were read
    (the source's ``after_listing`` seam): that very scrape still answers, the guest has no
    series left, and every other guest has every series it had before, label for label."""
    names = [f"i-8-{k}-VM" for k in range(1, 4)]
    ids = {name: str(uuidlib.uuid4()) for name in names}
    for name in names:
        libvirt_lab.create_guest(name, ids[name])
    victim, others = names[0], names[1:]
    survivors = [guests["known"], guests["unknown"], *(ids[n] for n in others)]
    listed: list[set[str]] = []

    def destroy_victim(doms: list[Any]) -> None:
        if not listed:  # in the first collection only
            listed.append({d.UUIDString() for d in doms})
            libvirt_lab.destroy_guest(victim)

    try:
        before = exporter.scrape()
        expected = {vm: series_of(before, vm) for vm in survivors}
        assert all(expected.values()) and series_of(before, ids[victim])
        exporter.source.after_listing = destroy_victim
        try:
            during = exporter.scrape()
        finally:
            exporter.source.after_listing = None
        assert listed and ids[victim] in listed[0], "the guest was not destroyed mid-collection"
        assert value(during, "libvirt_up") == 1
        assert series_of(during, ids[victim]) == set()
        for vm in survivors:
            got = series_of(during, vm)
            assert got == expected[vm], (vm, sorted(expected[vm] - got), sorted(got - expected[vm]))
    finally:
        for name in names:
            libvirt_lab.destroy_guest(name)


def test_hung_libvirtd_costs_one_scrape_within_its_deadline(
    exporter: Exporter, libvirt_lab: LibvirtLab, guests: dict[str, str]
) -> None:
    assert value(exporter.scrape(), "libvirt_up") == 1
    libvirt_lab.pause_libvirtd()
    try:
        t0 = time.monotonic()
        samples = exporter.scrape(timeout_header=2.0)
        elapsed = time.monotonic() - t0
        assert value(samples, "libvirt_up") == 0
        assert elapsed < 4.0, f"scrape took {elapsed:.1f}s despite a 2s scrape timeout"
        assert value(samples, "libvirt_exporter_scrape_timeouts_total") >= 1
        assert not series(samples, "libvirt_domain_cpu_time_seconds_total")
    finally:
        libvirt_lab.resume_libvirtd()
    recovered = wait_until(lambda: value(exporter.scrape(timeout_header=5.0), "libvirt_up") == 1)
    assert recovered, "exporter did not recover after libvirtd continued"
    assert series(exporter.scrape(), "libvirt_domain_cpu_time_seconds_total", vm_id=guests["known"])


def test_concurrent_scrapes_share_one_collection(exporter: Exporter) -> None:
    """The first scrape's collection is held inside libvirt work (the ``after_listing`` seam);
    a second scrape started meanwhile joins it instead of starting its own; released, both
    answer from that one collection."""
    source = exporter.source
    before = value(exporter.scrape(), "libvirt_exporter_collections_total")
    shared = source.shared_scrapes
    held, release = threading.Event(), threading.Event()
    collections: list[int] = []

    def hold(doms: list[Any]) -> None:
        collections.append(len(doms))
        held.set()
        release.wait(30)

    results: dict[str, Samples] = {}

    def scrape(name: str) -> None:
        results[name] = exporter.scrape(6.0)

    first = threading.Thread(target=scrape, args=("first",))
    second = threading.Thread(target=scrape, args=("second",))
    source.after_listing = hold
    try:
        first.start()
        assert held.wait(10), "the first scrape started no collection"
        second.start()
        # the second scrape either joins (counted before it waits) or starts its own
        # collection (which calls the seam again): wait for whichever happens
        assert wait_until(
            lambda: source.shared_scrapes > shared or len(collections) > 1, timeout=5
        ), "the second scrape neither joined nor started a collection"
        assert len(collections) == 1, "the second scrape started its own collection"
        assert source.shared_scrapes == shared + 1
    finally:
        source.after_listing = None
        release.set()
        first.join(30)
        second.join(30)
    assert set(results) == {"first", "second"}
    for r in results.values():
        assert value(r, "libvirt_up") == 1
        assert value(r, "libvirt_exporter_collections_total") == before + 1


def test_reconnects_after_libvirtd_restart(
    exporter: Exporter, libvirt_lab: LibvirtLab, guests: dict[str, str]
) -> None:
    connects = value(exporter.scrape(), "libvirt_exporter_connects_total")
    libvirt_lab.restart_libvirtd()

    def back() -> Samples | None:
        s = exporter.scrape()
        return s if value(s, "libvirt_up") == 1 else None

    samples = wait_until(back, timeout=30)
    assert samples, "no successful scrape after the restart"
    assert value(samples, "libvirt_exporter_connects_total") > connects
    assert series(samples, "libvirt_domain_cpu_time_seconds_total", vm_id=guests["known"])


def test_metric_names_follow_conventions(exporter: Exporter) -> None:
    text = exporter.scrape_text()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            if kind == "counter":
                assert name.startswith(("libvirt_", "zcp_", "process_", "python_")), name
            if name.startswith("libvirt_domain") and kind == "gauge":
                assert not re.search(r"_total$", name), name


def test_chunked_fan_out_exports_the_same_series_as_one_call(
    libvirt_lab: LibvirtLab, guests: dict[str, str], default_inventory: Inventory
) -> None:
    cache = InventoryCache(lambda: default_inventory, refresh_interval=3600)
    cache.refresh()

    def label_sets(chunks: int, connections: int) -> set[tuple[str, frozenset[tuple[str, str]]]]:
        source = LibvirtSource(libvirt_lab.uri, chunks=chunks, connections=connections)
        try:
            fams = list(LibvirtCollector(source, cache, "h", 8.0).collect())
        finally:
            source.close()
        return {
            key
            for key in from_families(fams)
            if key[0].startswith(
                ("libvirt_domain", "zcp_vm_info", "zcp_volume_info", "zcp_nic_info")
            )
        }

    single = label_sets(1, 1)
    assert len(single) > 50
    assert label_sets(3, 2) == single


def test_proc_figures_equal_libvirts_own_groups(
    libvirt_lab: LibvirtLab, guests: dict[str, str], default_inventory: Inventory
) -> None:
    """The same families, label sets and values with /proc as with libvirt's cpu/vcpu groups."""
    cache = InventoryCache(lambda: default_inventory, refresh_interval=3600)
    cache.refresh()

    def scrape(procfs: bool) -> Samples:
        source = LibvirtSource(libvirt_lab.uri, procfs=procfs)
        try:
            fams = list(LibvirtCollector(source, cache, "h", 8.0).collect())
        finally:
            source.close()
        return {k: v for k, v in from_families(fams).items() if k[0].startswith("libvirt_domain")}

    before, ours, after = scrape(False), scrape(True), scrape(False)
    assert set(ours) == set(before) == set(after)
    checked = 0
    for key, got in ours.items():
        name = key[0]
        if dict(key[1])["vm_id"] not in (guests["known"], guests["unknown"]):
            continue
        if name.endswith("_total") and ("_cpu_" in name or "_vcpu_" in name):
            assert before[key] <= got <= after[key], (key, before[key], got, after[key])
            checked += 1
        elif name in (
            "libvirt_domain_vcpus",
            "libvirt_domain_vcpus_maximum",
            "libvirt_domain_memory_maximum_bytes",
            "libvirt_domain_memory_balloon_bytes",
            "libvirt_domain_vcpu_state",
        ):
            assert got == before[key], key
    # cpu time/user/system of both guests, time/wait/delay of their three vCPUs
    assert checked == 2 * 3 + 3 * 3
    vcpus = [
        dict(k[1])["vcpu"]
        for k in ours
        if k[0] == "libvirt_domain_vcpu_time_seconds_total"
        and dict(k[1])["vm_id"] == guests["unknown"]
    ]
    assert sorted(vcpus) == ["0", "1"]


def test_guest_memory_stats_are_asked_only_of_guests_told_to_report(
    libvirt_lab: LibvirtLab, guests: dict[str, str]
) -> None:
    """A balloon without a stats period never has guest figures: no monitor call for it."""
    source = LibvirtSource(libvirt_lab.uri)
    try:
        conn = source._connection()
        doms = [
            d
            for d in conn.listAllDomains(0)
            if d.UUIDString() in (guests["known"], guests["unknown"])
        ]
        xml = {
            d.UUIDString(): x
            for d in doms
            if (x := source._domain_xml(d, d.UUIDString())) is not None
        }
        plan, procs = source._plan(doms, xml)
    finally:
        source.close()
    assert set(procs) == {guests["known"], guests["unknown"]}
    flags = {d.UUIDString(): f for f, ds in plan.items() for d in ds}
    balloon, vcpu = GROUP_FLAGS["balloon"], GROUP_FLAGS["vcpu"]
    assert flags[guests["unknown"]] & balloon and not flags[guests["known"]] & balloon
    assert not (flags[guests["unknown"]] | flags[guests["known"]]) & (vcpu | GROUP_FLAGS["cpu"])
    assert flags[guests["known"]] & GROUP_FLAGS["block"]
