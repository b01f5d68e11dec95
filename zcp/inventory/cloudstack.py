"""Inventory from the CloudStack API, spoken through the ``cs`` client as a root admin.

Every list call uses ``listall=true`` and ``fetch_list`` paging; project resources are listed with
``projectid=-1`` because CloudStack leaves them out of plain ``listall`` answers. NICs come from the
``nic`` list of ``listVirtualMachines`` (one call instead of one ``listNics`` per VM).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import requests
from cs import CloudStack, CloudStackApiException, CloudStackException

from zcp.config import CloudStackConfig
from zcp.errors import CloudStackAuthError, CloudStackError
from zcp.inventory.model import (
    VM,
    Inventory,
    Nic,
    Project,
    PublicIp,
    StorageClass,
    StoragePool,
    Tenant,
    Volume,
)

log = logging.getLogger(__name__)
MIB = 1024 * 1024
CLASSES: tuple[StorageClass, ...] = ("fast", "flow", "bulk")

Lister = Callable[..., list[dict[str, Any]]]


def make_client(cfg: CloudStackConfig, method: str = "get") -> CloudStack:
    """A ``cs`` client for ``cfg`` (secrets stay inside the client); ``method="post"`` for
    commands whose parameters are large (user data)."""
    return CloudStack(
        method=method,
        endpoint=cfg.url,
        key=cfg.api_key.get_secret_value(),
        secret=cfg.secret_key.get_secret_value(),
        timeout=cfg.timeout_seconds,
        verify=cfg.verify_tls,
        expiration=cfg.signature_expiration_seconds,
        retry=1,
    )


def _api_error(command: str, url: str, exc: Exception) -> CloudStackError:
    """Turn a ``cs``/``requests`` failure into one actionable line."""
    if isinstance(exc, CloudStackApiException):
        error = exc.error if isinstance(exc.error, dict) else {}
        code = error.get("errorcode") or getattr(exc.response, "status_code", "?")
        text = error.get("errortext") or str(exc)
        if code == 401:
            return CloudStackAuthError(
                f"CloudStack at {url} rejected the API key or signature (401: {text}); "
                "check cloudstack.api_key and cloudstack.secret_key"
            )
        return CloudStackError(f"CloudStack {command} failed ({code}: {text})")
    if isinstance(exc, CloudStackException):
        # cs gives a summary, then a detail ("... Malformed JSON document"): both, on one line
        said = "; ".join(str(a) for a in exc.args if isinstance(a, str)) or str(exc)
        return CloudStackError(f"CloudStack {command} failed: {said}")
    if isinstance(exc, requests.Timeout):
        return CloudStackError(f"CloudStack at {url} did not answer {command} in time")
    return CloudStackError(f"cannot reach CloudStack at {url}: {type(exc).__name__}")


class CloudStackSource:
    """Loads an :class:`Inventory` through the CloudStack API."""

    def __init__(
        self,
        cfg: CloudStackConfig,
        storage_classes: dict[str, StorageClass] | None = None,
        client: CloudStack | None = None,
    ) -> None:
        self.cfg = cfg
        self.storage_classes = dict(storage_classes or {})
        self.client = client or make_client(cfg)

    def list_all(self, command: str, **params: Any) -> list[dict[str, Any]]:
        """Every page of a list command (``fetch_list``); errors are one actionable line."""
        return self._list(command, **params)

    def _list(self, command: str, **params: Any) -> list[dict[str, Any]]:
        try:
            result = getattr(self.client, command)(
                fetch_list=True, pagesize=self.cfg.page_size, **params
            )
        except (CloudStackException, requests.RequestException) as exc:
            raise _api_error(command, self.cfg.url, exc) from None
        if not isinstance(result, list):
            kind = type(result).__name__
            raise CloudStackError(f"CloudStack {command} returned a {kind}, not a list")
        return result

    def _list_with_projects(self, command: str) -> list[dict[str, Any]]:
        """Account-owned plus project-owned objects (``projectid=-1``), without duplicates."""
        seen: dict[str, dict[str, Any]] = {}
        for item in self._list(command, listall=True) + self._list(
            command, listall=True, projectid=-1
        ):
            seen.setdefault(item["id"], item)
        return list(seen.values())

    def load(self) -> Inventory:
        """Fetch everything and build a consistent inventory; an answer of the wrong shape is
        one :class:`CloudStackError` line, not a stray ``KeyError``."""
        try:
            return self._load()
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise CloudStackError(
                f"CloudStack at {self.cfg.url} answered records of an unexpected shape "
                f"({type(exc).__name__}: {exc})"
            ) from None

    def _load(self) -> Inventory:
        domains = self._list("listDomains", listall=True)
        accounts = self._list("listAccounts", listall=True)
        projects = self._list("listProjects", listall=True)
        pools = self._list("listStoragePools")
        vms = self._list_with_projects("listVirtualMachines")
        volumes = self._list_with_projects("listVolumes")
        ips = self._list_with_projects("listPublicIpAddresses")
        return build_inventory(
            domains, accounts, projects, pools, vms, volumes, ips, self.storage_classes
        )


def _owner_key(domain_id: str, account: str) -> tuple[str, str]:
    return (domain_id, account.lower())


def _project_owner(project: dict[str, Any]) -> str:
    """The owner account name: ``owner`` (a list of maps, 4.15+) or ``account`` (older)."""
    owners = project.get("owner")
    if isinstance(owners, list):
        for owner in owners:
            if isinstance(owner, dict) and owner.get("account"):
                return str(owner["account"])
    return str(project.get("account", ""))


def storage_class_of(
    name: str, tags: Iterable[str], mapping: dict[str, StorageClass]
) -> StorageClass | None:
    """A pool's class: configured by pool name, else by tag (mapped, or named after the class)."""
    if name in mapping:
        return mapping[name]
    for tag in tags:
        if tag in mapping:
            return mapping[tag]
        if tag in CLASSES:
            return tag
    return None


def build_inventory(
    domains: list[dict[str, Any]],
    accounts: list[dict[str, Any]],
    projects: list[dict[str, Any]],
    pools: list[dict[str, Any]],
    vms: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
    ips: list[dict[str, Any]],
    storage_classes: dict[str, StorageClass],
) -> Inventory:
    """Pure core: CloudStack list responses in, :class:`Inventory` out.

    Objects whose owner cannot be resolved are left out with a warning, never given a guessed
    owner: billing and tenant isolation depend on it.
    """
    domain_path = {d["id"]: d.get("path", d.get("name", "")) for d in domains}
    account_id: dict[tuple[str, str], str] = {}
    project_owner: dict[str, str] = {}
    by_account_projects: dict[str, list[Project]] = {}
    for a in accounts:
        account_id[_owner_key(a["domainid"], a["name"])] = a["id"]
    for p in projects:
        owner = account_id.get(_owner_key(p.get("domainid", ""), _project_owner(p)))
        if owner is None:
            log.warning(
                "project without a known owner account; left out", extra={"project_id": p["id"]}
            )
            continue
        project_owner[p["id"]] = owner
        by_account_projects.setdefault(owner, []).append(Project(id=p["id"], name=p["name"]))

    tenants = tuple(
        Tenant(
            account_id=a["id"],
            name=a["name"],
            domain_id=a["domainid"],
            domain_path=a.get("domainpath") or domain_path.get(a["domainid"], a.get("domain", "")),
            state=str(a.get("state", "enabled")).lower(),
            projects=tuple(sorted(by_account_projects.get(a["id"], []), key=lambda p: p.name)),
        )
        for a in accounts
    )

    def owner_of(obj: dict[str, Any], kind: str) -> str | None:
        if obj.get("projectid"):
            owner = project_owner.get(obj["projectid"])
        else:
            owner = account_id.get(_owner_key(obj.get("domainid", ""), obj.get("account", "")))
        if owner is None:
            log.warning(
                f"{kind} without a known owner account; left out",
                extra={f"{kind}_id": obj.get("id")},
            )
        return owner

    storage_pools: list[StoragePool] = []
    for p in pools:
        tags = tuple(t.strip() for t in str(p.get("tags") or "").split(",") if t.strip())
        storage_pools.append(
            StoragePool(
                id=p["id"],
                name=p["name"],
                type=str(p.get("type", "")),
                path=str(p.get("path", "")),
                zone=p.get("zonename", ""),
                tags=tags,
                storage_class=storage_class_of(p["name"], tags, storage_classes),
            )
        )
    pool_by_id = {p.id: p for p in storage_pools}

    inv_vms: list[VM] = []
    nics: list[Nic] = []
    for v in vms:
        owner = owner_of(v, "vm")
        if owner is None:
            continue
        inv_vms.append(
            VM(
                id=v["id"],
                instance_name=v.get("instancename", ""),
                name=v.get("name", ""),
                account_id=owner,
                project_id=v.get("projectid", ""),
                zone=v.get("zonename", ""),
                host=v.get("hostname", ""),
                service_offering=v.get("serviceofferingname", ""),
                vcpus=int(v.get("cpunumber") or 0),
                memory_bytes=int(v.get("memory") or 0) * MIB,
                state=v.get("state", ""),
            )
        )
        for n in v.get("nic", []):
            nics.append(
                Nic(
                    id=n["id"],
                    mac=str(n.get("macaddress", "")).lower(),
                    vm_id=v["id"],
                    network_id=n.get("networkid", ""),
                    network_name=n.get("networkname", ""),
                    ip=n.get("ipaddress", ""),
                    is_default=bool(n.get("isdefault", False)),
                )
            )
    vm_ids = {v.id for v in inv_vms}

    inv_volumes: list[Volume] = []
    for vol in volumes:
        owner = owner_of(vol, "volume")
        if owner is None:
            continue
        pool = pool_by_id.get(vol.get("storageid", ""))
        rbd = ""
        if pool is not None and pool.type.upper() == "RBD" and vol.get("path"):
            rbd = f"{pool.path}/{vol['path']}"
        vm_id = vol.get("virtualmachineid", "")
        inv_volumes.append(
            Volume(
                id=vol["id"],
                name=vol.get("name", ""),
                account_id=owner,
                vm_id=vm_id if vm_id in vm_ids else "",
                project_id=vol.get("projectid", ""),
                type=vol.get("type", ""),
                device_id=int(vol["deviceid"]) if vol.get("deviceid") is not None else None,
                pool_id=vol.get("storageid", ""),
                pool=vol.get("storage", ""),
                storage_class=pool.storage_class if pool else None,
                size_bytes=int(vol.get("size") or 0),
                rbd_image=rbd,
            )
        )

    public_ips: list[PublicIp] = []
    for ip in ips:
        owner = owner_of(ip, "public_ip")
        if owner is None:
            continue
        vm_id = ip.get("virtualmachineid", "")
        public_ips.append(
            PublicIp(
                id=ip["id"],
                address=ip["ipaddress"],
                account_id=owner,
                project_id=ip.get("projectid", ""),
                zone=ip.get("zonename", ""),
                vm_id=vm_id if vm_id in vm_ids else "",
                network_id=ip.get("associatednetworkid", ""),
                source_nat=bool(ip.get("issourcenat", False)),
                state=ip.get("state", ""),
            )
        )

    return Inventory(
        source="cloudstack",
        fetched_at=datetime.now(UTC),
        tenants=tenants,
        storage_pools=tuple(storage_pools),
        vms=tuple(inv_vms),
        volumes=tuple(inv_volumes),
        nics=tuple(nics),
        public_ips=tuple(public_ips),
    )
