"""The ``cloudstack`` driver: one VM per tenant, deployed in a service account through the
CloudStack API, configured by cloud-init user data.

- The user data is a ``#cloud-config`` document that installs Prometheus (Debian) and Grafana
  (its apt repository), writes the tenant's rendered files and the two templated units of
  deploy/systemd, and enables ``zcp-obs-tenant-prometheus@<uuid>`` (and Grafana's). The whole
  document is gzipped (cloud-init detects and decompresses it) and base64-encoded, sent by POST,
  and must fit ``vm.userdata.max.length`` (checked before sending, with the sizes in the error).
- The VM is tagged ``<tag_key>=<uuid>`` (``createTags``) and found again by the
  ``tags[0].key``/``tags[0].value`` filter of ``listVirtualMachines``; its config version is a
  second tag. Retirement stops it (its volume, the data, stays); a purge destroys it with
  ``expunge=true``.
- Every asynchronous call is polled (``queryAsyncJobResult``) until ``job_timeout_seconds``; a
  failed job (``jobstatus`` 2) is one line with CloudStack's ``errortext``.
- A copy of the rendered files (the secrets among them, 0600) is kept locally under the state
  directory, as the local driver keeps its own: it is what the next run compares with.
"""

from __future__ import annotations

import base64
import gzip
import time
from pathlib import Path
from typing import Any

import yaml

from tenant_stack.local import Change, LocalDriver
from tenant_stack.render import SECRETS, Stack, unit_instance
from zcp.config import CloudStackConfig, CloudStackDriverConfig, LocalDriverConfig
from zcp.errors import CloudStackError, ZcpError

VM_ROOT = Path("/var/lib/zcp-obs/tenants/tenants")
UNITS = Path(__file__).resolve().parent / "units"  # deploy/systemd links here
VERSION_TAG = "zcp-config-version"


def cloud_config(stack: Stack, units: dict[str, str], grafana_apt_source: str | None) -> str:
    """The VM's ``#cloud-config``: packages, users, the stack's files, its units."""
    tid = unit_instance(stack.tenant.id)
    owner = "zcp-obs-tenants:zcp-obs-tenants"
    files: list[dict[str, Any]] = []
    for rel, content in sorted({**stack.files, **stack.dashboards}.items()):
        files.append(
            {
                "path": str(VM_ROOT / tid / rel),
                "content": content,
                "owner": owner,
                "permissions": "0600" if rel in SECRETS else "0644",
                "defer": True,  # after the user exists
            }
        )
    for name, text in sorted(units.items()):
        files.append(
            {"path": f"/etc/systemd/system/{name}", "content": text, "permissions": "0644"}
        )
    doc: dict[str, Any] = {
        "package_update": True,
        "packages": ["prometheus"] + (["grafana"] if grafana_apt_source else []),
        "users": [
            "default",
            {
                "name": "zcp-obs-tenants",
                "system": True,
                "shell": "/usr/sbin/nologin",
                "no_create_home": True,
            },
        ],
        "write_files": files,
        "runcmd": [
            ["systemctl", "disable", "--now", "prometheus.service"],  # the package's own
            ["systemctl", "daemon-reload"],
            ["systemctl", "enable", "--now", f"zcp-obs-tenant-prometheus@{tid}.service"],
        ],
    }
    if grafana_apt_source:
        doc["apt"] = {
            "sources": {
                "grafana": {
                    "source": grafana_apt_source,
                    "keyid": "B53AE77BADB630A683046005963FA27710458545",
                }
            }
        }
        doc["runcmd"].append(
            ["systemctl", "enable", "--now", f"zcp-obs-tenant-grafana@{tid}.service"]
        )
    return "#cloud-config\n" + yaml.safe_dump(doc, sort_keys=False, width=1000)


def user_data(stack: Stack, units: dict[str, str], grafana: str | None, limit: int) -> str:
    """The ``userdata`` parameter: gzip, then base64; refused when over ``limit``."""
    text = cloud_config(stack, units, grafana)
    encoded = base64.b64encode(gzip.compress(text.encode(), mtime=0)).decode()
    if len(encoded) > limit:
        raise ZcpError(
            f"tenant {stack.tenant.id}: the user data is {len(encoded)} characters of base64 "
            f"({len(text)} bytes of cloud-config before gzip), over vm.userdata.max.length "
            f"{limit}: raise it (up to 1048576) in CloudStack and tenants.cloudstack."
            "userdata_max_length"
        )
    return encoded


class CloudStackDriver(LocalDriver):
    """Stacks as CloudStack VMs (the local copy of their files is the local driver's)."""

    name = "cloudstack"

    def __init__(
        self,
        state_dir: Path,
        api: CloudStackConfig,
        cfg: CloudStackDriverConfig,
        client: Any = None,
    ) -> None:
        super().__init__(state_dir, LocalDriverConfig())
        from zcp.inventory.cloudstack import make_client

        self.api = api
        self.cfg_cs = cfg
        self.client = client or make_client(api)
        self.poster = make_client(api, method="post")  # user data goes in a POST body
        self.units = {
            p.name: p.read_text()
            for p in (
                UNITS / "zcp-obs-tenant-prometheus@.service",
                UNITS / "zcp-obs-tenant-grafana@.service",
            )
        }

    # -- API ----------------------------------------------------------------------------------
    def _call(self, command: str, post: bool = False, **params: Any) -> dict[str, Any]:
        from cs import CloudStackException

        client = self.poster if post else self.client
        try:
            return dict(getattr(client, command)(**params))
        except CloudStackException as exc:
            error = getattr(exc, "error", None)
            text = error.get("errortext") if isinstance(error, dict) else None
            raise CloudStackError(f"CloudStack {command} failed: {text or exc}") from None
        except OSError as exc:
            raise CloudStackError(
                f"CloudStack {command}: cannot reach {self.api.url}: {exc}"
            ) from None

    def _wait(self, command: str, answer: dict[str, Any]) -> dict[str, Any]:
        job = answer.get("jobid")
        if not job:
            return answer
        deadline = time.monotonic() + self.cfg_cs.job_timeout_seconds
        while True:
            result = self._call("queryAsyncJobResult", jobid=job)
            status = result.get("jobstatus")
            if status == 1:
                return dict(result.get("jobresult") or {})
            if status in (2, 3):
                res = result.get("jobresult") or {}
                raise CloudStackError(
                    f"CloudStack {command} job {job} failed: {res.get('errortext') or status}"
                )
            if time.monotonic() >= deadline:
                raise CloudStackError(
                    f"CloudStack {command} job {job} not done within "
                    f"{self.cfg_cs.job_timeout_seconds:g} s"
                )
            time.sleep(self.cfg_cs.poll_interval_seconds)

    def find(self, tenant: str) -> dict[str, Any] | None:
        """The tenant's VM, by its tag."""
        tag: dict[str, Any] = {
            "tags[0].key": self.cfg_cs.tag_key,
            "tags[0].value": unit_instance(tenant),
        }
        answer = self._call("listVirtualMachines", listall=True, **tag)
        vms = [v for v in answer.get("virtualmachine", []) if v.get("state") != "Expunging"]
        if len(vms) > 1:
            raise ZcpError(f"tenant {tenant}: {len(vms)} VMs carry its tag; expected one")
        return vms[0] if vms else None

    def _tag(self, vm_id: str, tags: dict[str, str]) -> None:
        params: dict[str, Any] = {"resourcetype": "UserVm", "resourceids": vm_id}
        for n, (k, v) in enumerate(tags.items()):
            params[f"tags[{n}].key"], params[f"tags[{n}].value"] = k, v
        self._wait("createTags", self._call("createTags", **params))

    # -- the driver interface -----------------------------------------------------------------
    def apply(self, stack: Stack) -> Change:
        tenant = stack.tenant.id
        change = Change(files=self._write(stack))
        vm = self.find(tenant)
        data = user_data(
            stack, self.units, self.cfg_cs.grafana_apt_source, self.cfg_cs.userdata_max_length
        )
        if vm is None:
            params: dict[str, Any] = {
                "zoneid": self.cfg_cs.zone_id,
                "templateid": self.cfg_cs.template_id,
                "serviceofferingid": self.cfg_cs.service_offering_id,
                "name": f"zcp-tenant-{unit_instance(tenant)[:8]}",
                "displayname": f"zcp-obs stack {unit_instance(tenant)}",
                "userdata": data,
                "fetch_result": False,
            }
            if self.cfg_cs.network_ids:
                params["networkids"] = ",".join(self.cfg_cs.network_ids)
            if self.cfg_cs.account:
                params["account"], params["domainid"] = self.cfg_cs.account, self.cfg_cs.domain_id
            answer = self._call("deployVirtualMachine", post=True, **params)
            result = self._wait("deployVirtualMachine", answer)
            vm_id = result.get("virtualmachine", {}).get("id") or answer.get("id")
            self._tag(
                str(vm_id), {self.cfg_cs.tag_key: unit_instance(tenant), VERSION_TAG: stack.version}
            )
            change.started.append("vm")
            return change
        tags = {t["key"]: t["value"] for t in vm.get("tags", [])}
        if tags.get(VERSION_TAG) != stack.version or vm.get("state") != "Running":
            # the new user data applies at the next boot (write_files/runcmd run per boot: see
            # docs/design.md); a stopped VM is started
            if vm.get("state") == "Running":
                self._wait("stopVirtualMachine", self._call("stopVirtualMachine", id=vm["id"]))
            self._call("updateVirtualMachine", post=True, id=vm["id"], userdata=data)
            self._wait("startVirtualMachine", self._call("startVirtualMachine", id=vm["id"]))
            self._tag(vm["id"], {VERSION_TAG: stack.version})
            change.started.append("vm")
        return change

    def health(self, tenant: str, url: str) -> dict[str, bool | None]:
        vm = self.find(tenant)
        return {"prometheus": vm is not None and vm.get("state") == "Running", "grafana": None}

    def retire(self, tenant: str) -> None:
        vm = self.find(tenant)
        if vm is not None and vm.get("state") == "Running":
            self._wait("stopVirtualMachine", self._call("stopVirtualMachine", id=vm["id"]))

    def purge(self, tenant: str) -> None:
        vm = self.find(tenant)
        if vm is not None:
            self._wait(
                "destroyVirtualMachine",
                self._call("destroyVirtualMachine", id=vm["id"], expunge=True),
            )
        super().purge(tenant)
