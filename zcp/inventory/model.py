"""The inventory's records: a read-only view of the cloud, keyed by CloudStack UUIDs.

The same model is filled from the CloudStack API or from a YAML file; tenants are CloudStack
accounts, and every resource names the account that owns it (for project resources, the project's
owner account).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

StorageClass = Literal["fast", "flow", "bulk"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Project(_Record):
    """A CloudStack project; its resources are billed to the owner account."""

    id: str
    name: str


class Tenant(_Record):
    """A CloudStack account: the unit of tenancy and billing."""

    account_id: str
    name: str
    domain_id: str
    domain_path: str
    state: str = "enabled"
    projects: tuple[Project, ...] = ()


class VM(_Record):
    """A guest; ``id`` is both the CloudStack VM uuid and the libvirt domain uuid."""

    id: str
    instance_name: str
    name: str
    account_id: str
    project_id: str = ""
    zone: str = ""
    host: str = ""
    service_offering: str = ""
    vcpus: int = Field(0, ge=0)
    memory_bytes: int = Field(0, ge=0)
    state: str = "Running"


class StoragePool(_Record):
    """A primary storage pool; for RBD pools ``path`` is the Ceph pool name."""

    id: str
    name: str
    type: str = "RBD"
    path: str = ""
    zone: str = ""
    tags: tuple[str, ...] = ()
    storage_class: StorageClass | None = None


class Volume(_Record):
    """A block volume; ``rbd_image`` is ``pool/image`` when it lives on Ceph RBD."""

    id: str
    name: str
    account_id: str
    vm_id: str = ""
    project_id: str = ""
    type: str = "DATADISK"
    device_id: int | None = None
    pool_id: str = ""
    pool: str = ""
    storage_class: StorageClass | None = None
    size_bytes: int = Field(0, ge=0)
    rbd_image: str = ""


class Nic(_Record):
    """A guest vNIC, identified across systems by its MAC address."""

    id: str
    mac: str
    vm_id: str
    network_id: str = ""
    network_name: str = ""
    ip: str = ""
    is_default: bool = False


class PublicIp(_Record):
    """A public IP address allocated to an account."""

    id: str
    address: str
    account_id: str
    project_id: str = ""
    zone: str = ""
    vm_id: str = ""
    network_id: str = ""
    source_nat: bool = False
    state: str = "Allocated"


class Inventory(_Record):
    """A consistent snapshot of the cloud at ``fetched_at``, from ``source``."""

    source: str = "file"
    fetched_at: datetime | None = None
    tenants: tuple[Tenant, ...] = ()
    storage_pools: tuple[StoragePool, ...] = ()
    vms: tuple[VM, ...] = ()
    volumes: tuple[Volume, ...] = ()
    nics: tuple[Nic, ...] = ()
    public_ips: tuple[PublicIp, ...] = ()

    @model_validator(mode="after")
    def _check_references(self) -> Inventory:
        """Reject dangling references and duplicate ids: a wrong join is worse than an error."""
        for kind in ("tenants", "storage_pools", "vms", "volumes", "nics", "public_ips"):
            key = "account_id" if kind == "tenants" else "id"
            seen: set[str] = set()
            for item in getattr(self, kind):
                ident = getattr(item, key)
                if ident in seen:
                    raise ValueError(f"{kind}: duplicate {key} {ident!r}")
                seen.add(ident)
        accounts = {t.account_id for t in self.tenants}
        vms = {v.id for v in self.vms}
        for kind in ("vms", "volumes", "public_ips"):
            for item in getattr(self, kind):
                if item.account_id not in accounts:
                    raise ValueError(f"{kind}: {item.id} names unknown account {item.account_id!r}")
        for kind in ("volumes", "nics", "public_ips"):
            for item in getattr(self, kind):
                if item.vm_id and item.vm_id not in vms:
                    raise ValueError(f"{kind}: {item.id} names unknown VM {item.vm_id!r}")
        return self

    def model_copy(
        self, *, update: Mapping[str, Any] | None = None, deep: bool = False
    ) -> Inventory:
        """A copy with ``update`` applied, validated again and with fresh indexes (pydantic's
        own copy would carry the cached indexes over and skip the reference checks)."""
        data = {name: getattr(self, name) for name in type(self).model_fields}
        return type(self).model_validate({**data, **(update or {})})

    @cached_property
    def tenant_by_id(self) -> dict[str, Tenant]:
        """Tenants by account uuid."""
        return {t.account_id: t for t in self.tenants}

    @cached_property
    def vm_by_id(self) -> dict[str, VM]:
        """VMs by uuid (= libvirt domain uuid)."""
        return {v.id: v for v in self.vms}

    @cached_property
    def volume_by_id(self) -> dict[str, Volume]:
        """Volumes by uuid."""
        return {v.id: v for v in self.volumes}

    @cached_property
    def volume_by_rbd_image(self) -> dict[str, Volume]:
        """Volumes by their RBD ``pool/image`` path."""
        return {v.rbd_image: v for v in self.volumes if v.rbd_image}

    @cached_property
    def volumes_by_vm(self) -> dict[str, tuple[Volume, ...]]:
        """Attached volumes by VM uuid (built once per snapshot, read on every scrape)."""
        out: dict[str, list[Volume]] = {}
        for v in self.volumes:
            if v.vm_id:
                out.setdefault(v.vm_id, []).append(v)
        return {k: tuple(vs) for k, vs in out.items()}

    @cached_property
    def nics_by_vm(self) -> dict[str, tuple[Nic, ...]]:
        """vNICs by VM uuid."""
        out: dict[str, list[Nic]] = {}
        for n in self.nics:
            out.setdefault(n.vm_id, []).append(n)
        return {k: tuple(ns) for k, ns in out.items()}

    @cached_property
    def nic_by_mac(self) -> dict[str, Nic]:
        """vNICs by lower-case MAC address."""
        return {n.mac.lower(): n for n in self.nics}

    def project_name(self, account_id: str, project_id: str) -> str:
        """The name of ``project_id`` under ``account_id``, or ``""``."""
        tenant = self.tenant_by_id.get(account_id)
        if tenant is None or not project_id:
            return ""
        return next((p.name for p in tenant.projects if p.id == project_id), "")

    def counts(self) -> dict[str, int]:
        """Number of records of each kind."""
        return {
            "tenants": len(self.tenants),
            "storage_pools": len(self.storage_pools),
            "vms": len(self.vms),
            "volumes": len(self.volumes),
            "nics": len(self.nics),
            "public_ips": len(self.public_ips),
        }
