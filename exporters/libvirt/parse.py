"""Pure parsing core of the libvirt exporter: domain XML and ``getAllDomainStats`` records in,
plain records out. No libvirt calls here; tests feed it recorded real output.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from zcp.errors import ZcpError

CLOUDSTACK_NS = "http://cloudstack.apache.org/instance"


class DomainXmlError(ZcpError):
    """A domain XML document could not be understood."""


@dataclass(frozen=True)
class DiskSource:
    """Where a disk's data lives: a file/block path, or an RBD ``pool/image``."""

    device: str
    bus: str = ""
    kind: str = ""  # file | block | network | volume
    path: str = ""  # file or block device path
    protocol: str = ""  # rbd, nbd, iscsi, ... for network disks
    name: str = ""  # the network source name, e.g. RBD "pool/image"

    @property
    def source(self) -> str:
        """One string naming the source: the path, or ``pool/image`` for network disks."""
        return self.path or self.name


@dataclass(frozen=True)
class VNic:
    """A guest vNIC: its host-side device (vnet0), MAC and what it is plugged into."""

    device: str
    mac: str
    kind: str = ""
    bridge: str = ""


@dataclass(frozen=True)
class CloudStackMetadata:
    """Identity CloudStack writes into the domain's ``<metadata>`` (when it does)."""

    vm_name: str = ""
    zone: str = ""
    service_offering: str = ""
    vcpus: str = ""
    memory_mib: str = ""
    domain_id: str = ""
    domain_path: str = ""
    account_id: str = ""
    account: str = ""
    project_id: str = ""
    project: str = ""


@dataclass(frozen=True)
class DomainXml:
    """What the exporter needs from one domain's XML."""

    uuid: str
    name: str
    disks: dict[str, DiskSource] = field(default_factory=dict)
    nics: dict[str, VNic] = field(default_factory=dict)
    nics_by_mac: dict[str, VNic] = field(default_factory=dict)
    cloudstack: CloudStackMetadata | None = None
    memory_kib: int = 0  # <memory>: the maximum
    current_memory_kib: int = 0  # <currentMemory>: the balloon target libvirt reports
    vcpus_max: int = 0
    vcpus_current: int = 0
    balloon: bool = False  # a memballoon device other than model='none'
    balloon_stats_period: int = 0  # <memballoon><stats period>: 0 = the guest never reports

    def xml_stats(self) -> dict[str, int]:
        """The figures libvirt's ``balloon`` and ``vcpu`` groups take from the definition
        (``balloon.current``/``maximum``, ``vcpu.current``/``maximum``), by their names."""
        out: dict[str, int] = {}
        if self.memory_kib:
            out["balloon.maximum"] = self.memory_kib
            # without a balloon libvirt reports the whole memory as current
            out["balloon.current"] = (
                (self.current_memory_kib or self.memory_kib) if self.balloon else self.memory_kib
            )
        if self.vcpus_max:
            out["vcpu.maximum"] = self.vcpus_max
            out["vcpu.current"] = self.vcpus_current or self.vcpus_max
        return out


def _text(el: ET.Element | None) -> str:
    return (el.text or "").strip() if el is not None else ""


def _cloudstack_metadata(metadata: ET.Element | None) -> CloudStackMetadata | None:
    if metadata is None:
        return None
    inst = metadata.find(f"{{{CLOUDSTACK_NS}}}instance")
    if inst is None:
        return None

    def q(path: str) -> ET.Element | None:
        return inst.find("/".join(f"{{{CLOUDSTACK_NS}}}{p}" for p in path.split("/")))

    def attr(path: str, name: str) -> str:
        el = q(path)
        return el.get(name, "") if el is not None else ""

    return CloudStackMetadata(
        vm_name=_text(q("name")) or _text(q("displayname")),
        zone=_text(q("zone")),
        service_offering=_text(q("service_offering/name")),
        vcpus=_text(q("service_offering/cpu")),
        memory_mib=_text(q("service_offering/memory")),
        domain_id=attr("owner/domain", "uuid"),
        domain_path=_text(q("owner/domain")),
        account_id=attr("owner/account", "uuid"),
        account=_text(q("owner/account")),
        project_id=attr("owner/project", "uuid"),
        project=_text(q("owner/project")),
    )


_UNIT_KIB = {
    "b": 1 / 1024,
    "bytes": 1 / 1024,
    "k": 1,
    "kib": 1,
    "kb": 1000 / 1024,
    "m": 1024,
    "mib": 1024,
    "mb": 1e6 / 1024,
    "g": 1024**2,
    "gib": 1024**2,
    "gb": 1e9 / 1024,
    "t": 1024**3,
    "tib": 1024**3,
    "tb": 1e12 / 1024,
}


def _kib(el: ET.Element | None) -> int:
    """A libvirt memory element (``<memory unit='KiB'>65536</memory>``) in KiB; 0 if absent."""
    if el is None or not (el.text or "").strip():
        return 0
    unit = el.get("unit", "KiB").lower()
    if unit not in _UNIT_KIB:
        raise DomainXmlError(f"unknown memory unit {unit!r}")
    try:
        return int(int(el.text.strip()) * _UNIT_KIB[unit])  # type: ignore[union-attr]
    except ValueError:
        raise DomainXmlError(f"bad memory value {el.text!r}") from None


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        raise DomainXmlError(f"bad number {value!r} in domain XML") from None


def parse_domain_xml(xml: str) -> DomainXml:
    """Parse ``virDomainGetXMLDesc`` output: uuid, name, disks by target, vNICs, metadata."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise DomainXmlError(f"domain XML is not well-formed: {exc}") from None
    uuid, name = _text(root.find("uuid")), _text(root.find("name"))
    if root.tag != "domain" or not uuid:
        raise DomainXmlError("not a libvirt domain XML (no <domain>/<uuid>)")
    disks: dict[str, DiskSource] = {}
    for disk in root.iterfind("devices/disk"):
        target = disk.find("target")
        if target is None or not target.get("dev"):
            continue
        source = disk.find("source")
        src = source.attrib if source is not None else {}
        dev = target.get("dev", "")
        disks[dev] = DiskSource(
            device=dev,
            bus=target.get("bus", ""),
            kind=disk.get("type", ""),
            path=src.get("file") or src.get("dev") or "",
            protocol=src.get("protocol", ""),
            name=src.get("name")
            or (f"{src['pool']}/{src['volume']}" if "pool" in src and "volume" in src else ""),
        )
    nics: dict[str, VNic] = {}
    by_mac: dict[str, VNic] = {}
    for iface in root.iterfind("devices/interface"):
        mac_el, target, source = iface.find("mac"), iface.find("target"), iface.find("source")
        mac = (mac_el.get("address", "") if mac_el is not None else "").lower()
        nic = VNic(
            device=target.get("dev", "") if target is not None else "",
            mac=mac,
            kind=iface.get("type", ""),
            bridge=(source.get("bridge") or source.get("network") or "")
            if source is not None
            else "",
        )
        if nic.device:
            nics[nic.device] = nic
        if mac:
            by_mac[mac] = nic
    vcpu = root.find("vcpu")
    balloon = root.find("devices/memballoon")
    stats = balloon.find("stats") if balloon is not None else None
    return DomainXml(
        uuid=uuid,
        name=name,
        disks=disks,
        nics=nics,
        nics_by_mac=by_mac,
        cloudstack=_cloudstack_metadata(root.find("metadata")),
        memory_kib=_kib(root.find("memory")),
        current_memory_kib=_kib(root.find("currentMemory")),
        vcpus_max=_int(_text(vcpu)) if vcpu is not None else 0,
        vcpus_current=_int(vcpu.get("current")) if vcpu is not None else 0,
        balloon=balloon is not None and balloon.get("model", "none") != "none",
        balloon_stats_period=_int(stats.get("period")) if stats is not None else 0,
    )


# -- stats records ---------------------------------------------------------------------------------
@dataclass
class BlockStats:
    """One ``block.<n>.*`` entry."""

    device: str
    path: str
    values: dict[str, int]


@dataclass
class NetStats:
    """One ``net.<n>.*`` entry."""

    device: str
    values: dict[str, int]


@dataclass
class DomainStats:
    """One domain's ``getAllDomainStats`` record, grouped."""

    uuid: str
    name: str
    state: int | None = None
    state_reason: int | None = None
    cpu: dict[str, int] = field(default_factory=dict)
    balloon: dict[str, int] = field(default_factory=dict)
    vcpu_current: int | None = None
    vcpu_maximum: int | None = None
    vcpus: dict[int, dict[str, int]] = field(default_factory=dict)
    blocks: list[BlockStats] = field(default_factory=list)
    nets: list[NetStats] = field(default_factory=list)
    groups: set[str] = field(default_factory=set)


def _indexed(stats: dict[str, Any], prefix: str) -> dict[int, dict[str, Any]]:
    """``{"block.0.rd.bytes": 1}`` -> ``{0: {"rd.bytes": 1}}`` for ``prefix`` ``"block"``."""
    out: dict[int, dict[str, Any]] = {}
    start = len(prefix) + 1
    for key, value in stats.items():
        if not key.startswith(prefix + "."):
            continue
        index, _, rest = key[start:].partition(".")
        if index.isdigit() and rest:
            out.setdefault(int(index), {})[rest] = value
    return out


def group_stats(uuid: str, name: str, stats: dict[str, Any]) -> DomainStats:
    """Group the flat ``stats`` dict of one domain into a :class:`DomainStats`."""
    rec = DomainStats(uuid=uuid, name=name)
    if "state.state" in stats:
        rec.state, rec.state_reason = int(stats["state.state"]), int(stats.get("state.reason", 0))
        rec.groups.add("state")
    rec.cpu = {
        k[4:]: int(v) for k, v in stats.items() if k.startswith("cpu.") and isinstance(v, int)
    }
    if "time" in rec.cpu:
        rec.groups.add("cpu")
    rec.balloon = {
        k[8:]: int(v) for k, v in stats.items() if k.startswith("balloon.") and isinstance(v, int)
    }
    if "current" in rec.balloon:
        rec.groups.add("balloon")
    if "vcpu.current" in stats:
        rec.vcpu_current = int(stats["vcpu.current"])
        rec.vcpu_maximum = int(stats.get("vcpu.maximum", rec.vcpu_current))
        rec.vcpus = {
            i: {k: int(v) for k, v in d.items() if isinstance(v, int)}
            for i, d in _indexed(stats, "vcpu").items()
        }
        rec.groups.add("vcpu")
    if "block.count" in stats:
        seen: set[str] = set()
        for _, d in sorted(_indexed(stats, "block").items()):
            device = str(d.get("name", ""))
            if device in seen:
                continue  # a backing-chain layer (VIR_..._STATS_BACKING), not another disk
            seen.add(device)
            rec.blocks.append(
                BlockStats(
                    device=device,
                    path=str(d.get("path", "")),
                    values={k: int(v) for k, v in d.items() if isinstance(v, int)},
                )
            )
        rec.groups.add("block")
    if "net.count" in stats:
        for _, d in sorted(_indexed(stats, "net").items()):
            rec.nets.append(
                NetStats(
                    device=str(d.get("name", "")),
                    values={k: int(v) for k, v in d.items() if isinstance(v, int)},
                )
            )
        rec.groups.add("interface")
    return rec
