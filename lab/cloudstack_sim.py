"""A CloudStack API test server: checks request signatures exactly as the management server does.

Signature check (``ApiServer.verifyRequest``): every parameter but ``signature`` (matched
case-insensitively), names sorted case-sensitively, ``name=URLEncoder.encode(value)`` with ``+``
turned into ``%20``, joined by ``&``, the whole string lower-cased, HMAC-SHA1 with the secret key,
base64. With ``signatureVersion=3`` an ``expires`` in the past is refused. Every refusal answers
HTTP 401 ``{"<command>response": {"uuidList": [], "errorcode": 401, "errortext": ...}}``.

List calls page with ``page``/``pagesize`` and report the total in ``count``; an empty list is
``{}``. ``deployVirtualMachine`` and ``destroyVirtualMachine`` run as async jobs polled with
``queryAsyncJobResult``. Response shapes follow CloudStack's API reference.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from zcp.inventory.model import Inventory

MIB = 1024 * 1024
AUTH_ERROR = "unable to verify user credentials and/or request signature"
_JAVA_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-*_")


def java_urlencode(value: str) -> str:
    """``java.net.URLEncoder.encode(value, "UTF-8")`` (space becomes ``+``)."""
    out = []
    for byte in value.encode("utf-8"):
        if byte in _JAVA_SAFE:
            out.append(chr(byte))
        elif byte == 0x20:
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def canonical_string(params: dict[str, str]) -> str:
    """The lower-cased, sorted, URL-encoded string CloudStack signs."""
    names = sorted(k for k in params if k.lower() != "signature")
    return "&".join(
        f"{name}={java_urlencode(params[name]).replace('+', '%20')}" for name in names
    ).lower()


def cloudstack_signature(params: dict[str, str], secret: str) -> str:
    """The signature CloudStack computes for ``params`` (``signature`` itself excluded)."""
    digest = hmac.new(secret.encode(), canonical_string(params).encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _parse_expires(value: str) -> datetime | None:
    for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%SZ%z"):
        try:
            return datetime.strptime(value, fmt)
        except ValueError:
            pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


class ApiError(Exception):
    """An API error answered as CloudStack's error shape, with the code as HTTP status."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


@dataclass
class Job:
    """An async job: pending until ``done_at``, then succeeded with ``result``."""

    id: str
    cmd: str
    account_id: str
    done_at: float
    finish: Callable[[], dict[str, Any]]
    instance_type: str = "VirtualMachine"
    instance_id: str = ""
    result: dict[str, Any] | None = None
    error: str = ""
    created: str = field(default_factory=lambda: _now())


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


class CloudStackState:
    """The simulated cloud: CloudStack-shaped objects, keyed by their list command."""

    LIST_KEYS = {
        "listDomains": "domain",
        "listAccounts": "account",
        "listProjects": "project",
        "listVirtualMachines": "virtualmachine",
        "listVolumes": "volume",
        "listPublicIpAddresses": "publicipaddress",
        "listStoragePools": "storagepool",
        "listNics": "nic",
        "listZones": "zone",
        "listUsageRecords": "usagerecord",  # seeded by tests (GetUsageRecordsCmd's shape)
        "listUsers": "user",  # seeded by tests (the API guide's signing example lists users)
    }
    PROJECT_SCOPED = {"listVirtualMachines", "listVolumes", "listPublicIpAddresses"}

    def __init__(self) -> None:
        self.objects: dict[str, list[dict[str, Any]]] = {k: [] for k in self.LIST_KEYS}
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()

    @classmethod
    def from_inventory(cls, inv: Inventory) -> CloudStackState:
        """Render an :class:`Inventory` as the objects a management server would list."""
        state = cls()
        ns = uuid.UUID("0c5d7f0e-1d2b-4c59-9a57-000000000001")
        domains: dict[str, dict[str, Any]] = {}

        def add_domain(path: str, domain_id: str | None = None) -> str:
            if path in domains:
                return str(domains[path]["id"])
            parent = path.rsplit("/", 1)[0] if "/" in path else None
            parent_id = add_domain(parent) if parent else None
            d: dict[str, Any] = {
                "id": domain_id or str(uuid.uuid5(ns, path)),
                "name": path.rsplit("/", 1)[-1],
                "level": path.count("/"),
                "path": path,
                "haschild": False,
                "state": "Active",
            }
            if parent_id:
                d["parentdomainid"] = parent_id
                d["parentdomainname"] = domains[parent]["name"]  # type: ignore[index]
                domains[parent]["haschild"] = True  # type: ignore[index]
            domains[path] = d
            return str(d["id"])

        add_domain("ROOT")
        tenants = {t.account_id: t for t in inv.tenants}
        for t in inv.tenants:
            add_domain(t.domain_path, t.domain_id)
        state.objects["listDomains"] = list(domains.values())
        for t in inv.tenants:
            state.objects["listAccounts"].append(
                {
                    "id": t.account_id,
                    "name": t.name,
                    "accounttype": 0,
                    "roletype": "User",
                    "domainid": t.domain_id,
                    "domain": t.domain_path.rsplit("/", 1)[-1],
                    "domainpath": t.domain_path,
                    "state": t.state,
                    "created": _now(),
                }
            )
            for p in t.projects:
                state.objects["listProjects"].append(
                    {
                        "id": p.id,
                        "name": p.name,
                        "displaytext": p.name,
                        "domainid": t.domain_id,
                        "domain": t.domain_path.rsplit("/", 1)[-1],
                        "owner": [{"account": t.name, "accountid": t.account_id}],
                        "projectaccountname": f"PrjAcct-{p.name}-1",
                        "state": "Active",
                    }
                )
        state.objects["listAccounts"].append(
            {
                "id": str(uuid.uuid5(ns, "admin")),
                "name": "admin",
                "accounttype": 1,
                "roletype": "Admin",
                "domainid": domains["ROOT"]["id"],
                "domain": "ROOT",
                "domainpath": "ROOT",
                "state": "enabled",
                "created": _now(),
            }
        )
        projects = {p.id: p.name for t in inv.tenants for p in t.projects}

        def owner(account_id: str, project_id: str) -> dict[str, Any]:
            t = tenants[account_id]
            base = {"domainid": t.domain_id, "domain": t.domain_path.rsplit("/", 1)[-1]}
            if project_id:
                return {**base, "projectid": project_id, "project": projects[project_id]}
            return {**base, "account": t.name}

        for sp in inv.storage_pools:
            state.objects["listStoragePools"].append(
                {
                    "id": sp.id,
                    "name": sp.name,
                    "type": sp.type,
                    "path": sp.path,
                    "ipaddress": "127.0.0.1",
                    "zonename": sp.zone,
                    "state": "Up",
                    "scope": "ZONE",
                    "tags": ",".join(sp.tags),
                    "disksizetotal": 10 * 2**40,
                }
            )
        nics_of: dict[str, list[dict[str, Any]]] = {}
        for n in inv.nics:
            nics_of.setdefault(n.vm_id, []).append(
                {
                    "id": n.id,
                    "networkid": n.network_id,
                    "networkname": n.network_name,
                    "macaddress": n.mac,
                    "ipaddress": n.ip,
                    "isdefault": n.is_default,
                    "traffictype": "Guest",
                    "type": "Isolated",
                    "virtualmachineid": n.vm_id,
                }
            )
        for v in inv.vms:
            state.objects["listVirtualMachines"].append(
                {
                    "id": v.id,
                    "name": v.name,
                    "displayname": v.name,
                    "instancename": v.instance_name,
                    **owner(v.account_id, v.project_id),
                    "zonename": v.zone,
                    "hostname": v.host,
                    "serviceofferingname": v.service_offering,
                    "cpunumber": v.vcpus,
                    "memory": v.memory_bytes // MIB,
                    "state": v.state,
                    "hypervisor": "KVM",
                    "created": _now(),
                    "nic": nics_of.get(v.id, []),
                }
            )
        pool_by_id = {p.id: p for p in inv.storage_pools}
        for vol in inv.volumes:
            doc: dict[str, Any] = {
                "id": vol.id,
                "name": vol.name,
                "type": vol.type,
                **owner(vol.account_id, vol.project_id),
                "size": vol.size_bytes,
                "storageid": vol.pool_id,
                "storage": vol.pool,
                "storagetype": "shared",
                "state": "Ready",
                "created": _now(),
            }
            pool = pool_by_id.get(vol.pool_id)
            if vol.rbd_image and pool is not None:
                doc["path"] = vol.rbd_image.split("/", 1)[1]
            if vol.vm_id:
                doc["virtualmachineid"] = vol.vm_id
                doc["deviceid"] = vol.device_id
            state.objects["listVolumes"].append(doc)
        for ip in inv.public_ips:
            doc = {
                "id": ip.id,
                "ipaddress": ip.address,
                **owner(ip.account_id, ip.project_id),
                "zonename": ip.zone,
                "issourcenat": ip.source_nat,
                "state": ip.state,
                "associatednetworkid": ip.network_id,
                "forvirtualnetwork": True,
                "allocated": _now(),
            }
            if ip.vm_id:
                doc["virtualmachineid"] = ip.vm_id
                doc["isstaticnat"] = True
            state.objects["listPublicIpAddresses"].append(doc)
        return state


class CloudStackSim:
    """The HTTP server; start it, point a ``cs`` client at ``url``, stop it."""

    def __init__(
        self,
        state: CloudStackState | None = None,
        keys: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        job_seconds: float = 0.2,
        default_page_size: int = 500,
    ) -> None:
        self.state = state or CloudStackState()
        self.keys = dict(keys or {"admin-api-key": "admin-secret-key"})
        self.job_seconds = job_seconds
        self.default_page_size = default_page_size
        self.delay_seconds = 0.0
        self.userdata_max_length = 32768  # vm.userdata.max.length's default
        self.fail_deploy: str | None = None  # the errortext of the next deploy jobs, if set
        self.requests: list[dict[str, str]] = []
        self._host, self._port = host, port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The API endpoint, ``http://127.0.0.1:PORT/client/api``."""
        return f"http://{self._host}:{self._port}/client/api"

    def start(self) -> CloudStackSim:
        """Listen (on the same port as before after a stop) and serve in a thread."""
        sim = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                sim._handle(self, urlsplit(self.path).query)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                query = urlsplit(self.path).query
                sim._handle(self, "&".join(q for q in (query, body) if q))

            def log_message(self, format: str, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer((self._host, self._port), Handler)
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: clients now get 'connection refused', as with a dead server."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> CloudStackSim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request handling -----------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler, query: str) -> None:
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        if urlsplit(handler.path).path != "/client/api":
            self._send(handler, 404, {"error": "not found"})
            return
        params: dict[str, str] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            params.setdefault(name, value)  # CloudStack uses each parameter's first value
        self.requests.append(params)
        command = params.get("command", "")
        known = command in CloudStackState.LIST_KEYS or hasattr(self, f"_cmd_{command}")
        response_name = f"{command.lower()}response" if known else "errorresponse"
        try:
            account_id = self._verify(params)
            if not known:
                raise ApiError(
                    432, "The given command does not exist or it is not available for the user"
                )
            if command in CloudStackState.LIST_KEYS:
                body = self._list(command, params, account_id)
            else:
                body = getattr(self, f"_cmd_{command}")(params, account_id)
        except ApiError as exc:
            self._send(
                handler,
                exc.code,
                {response_name: {"uuidList": [], "errorcode": exc.code, "errortext": exc.text}},
            )
            return
        self._send(handler, 200, {response_name: body})

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, doc: dict[str, Any]) -> None:
        data = json.dumps(doc).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=UTF-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _verify(self, params: dict[str, str]) -> str:
        """Return the caller's account id, or raise the 401 CloudStack answers."""
        lower = {k.lower(): v for k, v in params.items()}
        signature, api_key = lower.get("signature"), lower.get("apikey")
        if not signature or not api_key or api_key not in self.keys:
            raise ApiError(401, AUTH_ERROR)
        if lower.get("signatureversion") == "3":
            expires = _parse_expires(lower.get("expires", ""))
            if expires is None or expires < datetime.now(UTC):
                raise ApiError(401, AUTH_ERROR)
        expected = cloudstack_signature(params, self.keys[api_key])
        if not hmac.compare_digest(expected, signature):
            raise ApiError(401, AUTH_ERROR)
        admins = [a for a in self.state.objects["listAccounts"] if a["name"] == "admin"]
        return str(admins[0]["id"]) if admins else ""

    def _list(self, command: str, params: dict[str, str], caller: str) -> dict[str, Any]:
        with self.state.lock:
            items = list(self.state.objects[command])
        if command == "listUsageRecords":
            items = self._usage_records(items, params)
        if "id" in params:
            items = [i for i in items if i.get("id") == params["id"]]
        for n in range(8):  # tags[n].key / tags[n].value filters (listVirtualMachines, ...)
            key = params.get(f"tags[{n}].key")
            if key is None:
                break
            want = params.get(f"tags[{n}].value")
            items = [
                i
                for i in items
                if any(
                    t["key"] == key and (want is None or t["value"] == want)
                    for t in i.get("tags", [])
                )
            ]
        for key in ("virtualmachineid", "domainid", "zoneid", "state"):
            if key in params:
                items = [i for i in items if str(i.get(key, "")) == params[key]]
        if command in CloudStackState.PROJECT_SCOPED:
            project = params.get("projectid")
            if project == "-1":
                items = [i for i in items if i.get("projectid")]
            elif project:
                items = [i for i in items if i.get("projectid") == project]
            else:
                items = [i for i in items if not i.get("projectid")]
            if params.get("listall", "false").lower() != "true" and "id" not in params:
                items = [i for i in items if i.get("account") == "admin"]
        try:
            page = int(params["page"]) if "page" in params else None
            size = int(params.get("pagesize", self.default_page_size))
        except ValueError:
            raise ApiError(
                431,
                f"Unable to execute API command {command.lower()} "
                "due to invalid value for page/pagesize",
            ) from None
        if "pagesize" in params and page is None:
            raise ApiError(431, '"page" parameter is required when "pagesize" is specified')
        total = len(items)
        start = ((page or 1) - 1) * size
        items = items[start : start + size]
        if not items:
            return {}
        return {"count": total, self.state.LIST_KEYS[command]: items}

    @staticmethod
    def _usage_records(items: list[dict[str, Any]], params: dict[str, str]) -> list[dict[str, Any]]:
        """listUsageRecords: startdate and enddate (yyyy-MM-dd[ HH:mm:ss]) are required;
        records overlapping the range, optionally of one account and usage type."""
        for name in ("startdate", "enddate"):
            if not params.get(name):
                raise ApiError(
                    431,
                    "Unable to execute API command listusagerecords due to "
                    f"missing parameter {name}",
                )
        try:
            lo = datetime.fromisoformat(params["startdate"]).replace(tzinfo=UTC)
            hi = datetime.fromisoformat(params["enddate"]).replace(tzinfo=UTC)
        except ValueError:
            raise ApiError(
                431,
                "Unable to execute API command listusagerecords due to "
                "invalid value for startdate/enddate",
            ) from None
        if len(params["enddate"]) == 10:  # a date: the whole day
            hi += timedelta(days=1)
        out = []
        for item in items:
            start = datetime.fromisoformat(item["startdate"].replace("'", ""))
            if not lo <= start < hi:
                continue
            if params.get("accountid") and item.get("accountid") != params["accountid"]:
                continue
            if params.get("type") and str(item.get("usagetype")) != params["type"]:
                continue
            out.append(item)
        return out

    # -- async jobs -----------------------------------------------------------------------------
    def _require(self, params: dict[str, str], command: str, *names: str) -> None:
        for name in names:
            if not params.get(name):
                raise ApiError(
                    431,
                    f"Unable to execute API command {command.lower()} "
                    f"due to missing parameter {name}",
                )

    def _start_job(
        self, cmd: str, account_id: str, instance_id: str, finish: Callable[[], dict[str, Any]]
    ) -> str:
        job = Job(
            id=str(uuid.uuid4()),
            cmd=cmd,
            account_id=account_id,
            done_at=time.monotonic() + self.job_seconds,
            finish=finish,
            instance_id=instance_id,
        )
        with self.state.lock:
            self.state.jobs[job.id] = job
        return job.id

    def _cmd_updateAccount(self, params: dict[str, str], caller: str) -> dict[str, Any]:
        """``accountdetails[0].<key>=<value>`` pairs become the account's details (as
        UpdateAccountCmd.getDetails reads its map parameter)."""
        self._require(params, "updateAccount", "id")
        with self.state.lock:
            acc = next(
                (a for a in self.state.objects["listAccounts"] if a["id"] == params["id"]), None
            )
            if acc is None:
                raise ApiError(431, f"Unable to find account by id {params['id']}")
            details = dict(acc.get("accountdetails") or {})
            for name, value in params.items():
                if name.startswith("accountdetails[") and "]." in name:
                    details[name.split("].", 1)[1]] = value
            if details:
                acc["accountdetails"] = details
            return {"account": dict(acc)}

    def _cmd_createTags(self, params: dict[str, str], caller: str) -> dict[str, Any]:
        self._require(params, "createTags", "resourcetype", "resourceids", "tags[0].key")
        tags = []
        for n in range(64):
            key = params.get(f"tags[{n}].key")
            if key is None:
                break
            tags.append((key, params.get(f"tags[{n}].value", "")))
        ids = params["resourceids"].split(",")
        with self.state.lock:
            vms = [v for v in self.state.objects["listVirtualMachines"] if v["id"] in ids]
        if len(vms) != len(ids):
            raise ApiError(431, "Unable to find resource by id")

        def finish() -> dict[str, Any]:
            for vm in vms:
                kept = [t for t in vm.get("tags", []) if t["key"] not in {k for k, _ in tags}]
                vm["tags"] = kept + [
                    {
                        "key": k,
                        "value": v,
                        "resourcetype": params["resourcetype"],
                        "resourceid": vm["id"],
                    }
                    for k, v in tags
                ]
            return {"success": True}

        return {
            "jobid": self._start_job(
                "org.apache.cloudstack.api.command.user.tag.CreateTagsCmd", caller, ids[0], finish
            )
        }

    def _cmd_stopVirtualMachine(self, params: dict[str, str], caller: str) -> dict[str, Any]:
        self._require(params, "stopVirtualMachine", "id")
        vm = self._vm(params["id"])

        def finish() -> dict[str, Any]:
            vm["state"] = "Stopped"
            return {"virtualmachine": {k: v for k, v in vm.items() if k != "userdata"}}

        return {
            "jobid": self._start_job(
                "org.apache.cloudstack.api.command.admin.vm.StopVMCmdByAdmin",
                caller,
                vm["id"],
                finish,
            )
        }

    def _vm(self, vm_id: str) -> dict[str, Any]:
        with self.state.lock:
            vm = next(
                (v for v in self.state.objects["listVirtualMachines"] if v["id"] == vm_id), None
            )
        if vm is None:
            raise ApiError(431, f"Invalid parameter id value={vm_id}")
        return vm

    def _cmd_updateVirtualMachine(self, params: dict[str, str], caller: str) -> dict[str, Any]:
        """Synchronous, as in CloudStack; new user data needs a stopped VM."""
        self._require(params, "updateVirtualMachine", "id")
        vm = self._vm(params["id"])
        if "userdata" in params:
            if vm["state"] != "Stopped":
                raise ApiError(431, "User data can be updated only when the VM is stopped")
            if len(params["userdata"]) > self.userdata_max_length:
                raise ApiError(431, "User data is too long")
            vm["userdata"] = params["userdata"]
        return {"virtualmachine": {k: v for k, v in vm.items() if k != "userdata"}}

    def _cmd_startVirtualMachine(self, params: dict[str, str], caller: str) -> dict[str, Any]:
        self._require(params, "startVirtualMachine", "id")
        vm = self._vm(params["id"])

        def finish() -> dict[str, Any]:
            vm["state"] = "Running"
            return {"virtualmachine": {k: v for k, v in vm.items() if k != "userdata"}}

        return {
            "jobid": self._start_job(
                "org.apache.cloudstack.api.command.admin.vm.StartVMCmdByAdmin",
                caller,
                vm["id"],
                finish,
            )
        }

    def _cmd_deployVirtualMachine(self, params: dict[str, str], caller: str) -> dict[str, Any]:
        self._require(params, "deployVirtualMachine", "serviceofferingid", "templateid", "zoneid")
        userdata = params.get("userdata", "")
        if len(userdata) > self.userdata_max_length:
            raise ApiError(
                431,
                f"User data is too long for an http POST request: {len(userdata)} is more than "
                f"vm.userdata.max.length {self.userdata_max_length}",
            )
        if userdata:
            try:
                base64.b64decode(userdata, validate=True)
            except ValueError:
                raise ApiError(431, "User data is not base64 encoded") from None
        failure = self.fail_deploy
        vm_id = str(uuid.uuid4())
        name = params.get("name") or f"VM-{vm_id}"
        with self.state.lock:
            number = len(self.state.objects["listVirtualMachines"]) + 100
        vm: dict[str, Any] = {
            "id": vm_id,
            "name": name,
            "displayname": params.get("displayname", name),
            "instancename": f"i-2-{number}-VM",
            "account": params.get("account", "admin"),
            "domainid": params.get("domainid", ""),
            "zoneid": params["zoneid"],
            "serviceofferingid": params["serviceofferingid"],
            "templateid": params["templateid"],
            "state": "Starting",
            "hypervisor": "KVM",
            "created": _now(),
            "nic": [],
            "userdata": params.get("userdata", ""),
        }
        with self.state.lock:
            self.state.objects["listVirtualMachines"].append(vm)

        def finish() -> dict[str, Any]:
            if failure:
                with self.state.lock:
                    self.state.objects["listVirtualMachines"].remove(vm)
                raise RuntimeError(failure)
            vm["state"] = "Running"
            return {"virtualmachine": {k: v for k, v in vm.items() if k != "userdata"}}

        job_id = self._start_job(
            "org.apache.cloudstack.api.command.admin.vm.DeployVMCmdByAdmin", caller, vm_id, finish
        )
        return {"id": vm_id, "jobid": job_id}

    def _cmd_destroyVirtualMachine(self, params: dict[str, str], caller: str) -> dict[str, Any]:
        self._require(params, "destroyVirtualMachine", "id")
        with self.state.lock:
            vm = next(
                (v for v in self.state.objects["listVirtualMachines"] if v["id"] == params["id"]),
                None,
            )
        if vm is None:
            raise ApiError(
                431,
                "Unable to execute API command destroyvirtualmachine due to "
                f"invalid value. Invalid parameter id value={params['id']} due "
                "to incorrect long value format, or entity does not exist or "
                "due to incorrect parameter annotation for the field in api cmd "
                "class.",
            )
        expunge = params.get("expunge", "false").lower() == "true"

        def finish() -> dict[str, Any]:
            vm["state"] = "Expunging" if expunge else "Destroyed"
            if expunge:
                with self.state.lock:
                    self.state.objects["listVirtualMachines"].remove(vm)
            return {"virtualmachine": {k: v for k, v in vm.items() if k != "userdata"}}

        job_id = self._start_job(
            "org.apache.cloudstack.api.command.admin.vm.DestroyVMCmdByAdmin",
            caller,
            vm["id"],
            finish,
        )
        return {"jobid": job_id}

    def _cmd_queryAsyncJobResult(self, params: dict[str, str], caller: str) -> dict[str, Any]:
        self._require(params, "queryAsyncJobResult", "jobid")
        with self.state.lock:
            job = self.state.jobs.get(params["jobid"])
        if job is None:
            raise ApiError(
                431,
                f"Unable to execute API command queryasyncjobresult due to "
                f"invalid value. Invalid parameter jobid value={params['jobid']}",
            )
        doc: dict[str, Any] = {
            "accountid": job.account_id,
            "userid": job.account_id,
            "cmd": job.cmd,
            "jobinstancetype": job.instance_type,
            "jobinstanceid": job.instance_id,
            "created": job.created,
            "jobid": job.id,
            "jobprocstatus": 0,
        }
        if time.monotonic() < job.done_at:
            return {**doc, "jobstatus": 0, "jobresultcode": 0}
        if job.result is None and not job.error:
            try:
                job.result = job.finish()
            except Exception as exc:  # reported the way CloudStack reports a failed job
                job.error = str(exc)
        if job.error:
            return {
                **doc,
                "jobstatus": 2,
                "jobresultcode": 530,
                "jobresulttype": "object",
                "jobresult": {"errorcode": 530, "errortext": job.error},
                "completed": _now(),
            }
        return {
            **doc,
            "jobstatus": 1,
            "jobresultcode": 0,
            "jobresulttype": "object",
            "jobresult": job.result,
            "completed": _now(),
        }
