"""The inventory as the inventory service serves it: a JSON document per view (the whole cloud,
or one hypervisor's VMs), with a strong ETag over its content.

The ETag covers the records, not ``fetched_at``: a CloudStack refresh that changed nothing keeps
the ETag, so a hypervisor's conditional GET is answered 304 and only the new ``fetched_at``
travels (in the :data:`FETCHED_AT_HEADER` header), which keeps its inventory age true.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from zcp.inventory.model import Inventory

PATH = "/v1/inventory"
FETCHED_AT_HEADER = "Zcp-Inventory-Fetched-At"
MEDIA_TYPE = "application/json"


@dataclass(frozen=True)
class Encoded:
    """One view, rendered once: the body, its ETag and the copy's fetch time."""

    body: bytes
    etag: str
    fetched_at: datetime | None


def host_view(inv: Inventory, host: str) -> Inventory:
    """Only the VMs CloudStack places on ``host``, with their volumes, NICs and public IPs, the
    accounts that own them and every storage pool (all an exporter on that host joins with)."""
    vms = tuple(vm for vm in inv.vms if vm.host == host)
    ids = {vm.id for vm in vms}
    volumes = tuple(v for vm_id in sorted(ids) for v in inv.volumes_by_vm.get(vm_id, ()))
    nics = tuple(n for vm_id in sorted(ids) for n in inv.nics_by_vm.get(vm_id, ()))
    ips = tuple(ip for ip in inv.public_ips if ip.vm_id in ids)
    owners = (
        {vm.account_id for vm in vms}
        | {v.account_id for v in volumes}
        | {ip.account_id for ip in ips}
    )
    return inv.model_copy(
        update={
            "tenants": tuple(t for t in inv.tenants if t.account_id in owners),
            "vms": vms,
            "volumes": volumes,
            "nics": nics,
            "public_ips": ips,
        }
    )


def encode(inv: Inventory) -> Encoded:
    """``inv`` as the service's JSON body; the ETag hashes everything but ``fetched_at``."""
    body = inv.model_dump_json().encode()
    content = inv.model_dump(mode="json", exclude={"fetched_at"})
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    return Encoded(body, f'"{digest[:32]}"', inv.fetched_at)
