"""The CloudStack API test server behaves like the management server's API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests
from cs import CloudStack, CloudStackApiException

from lab.cloudstack_sim import (
    AUTH_ERROR,
    CloudStackSim,
    CloudStackState,
    canonical_string,
    cloudstack_signature,
    java_urlencode,
)
from tests.conftest import ADMIN_KEY, ADMIN_SECRET


def client(sim: CloudStackSim, secret: str = ADMIN_SECRET, **kw: object) -> CloudStack:
    return CloudStack(endpoint=sim.url, key=ADMIN_KEY, secret=secret, **kw)


def signed_params(**params: str) -> dict[str, str]:
    params = {"apiKey": ADMIN_KEY, "response": "json", **params}
    params["signature"] = cloudstack_signature(params, ADMIN_SECRET)
    return params


def test_canonical_string_matches_the_documented_example() -> None:
    # The API developer's guide, "Signing API Requests": sorted, encoded, lower-cased.
    params = {
        "command": "deployVirtualMachine",
        "serviceOfferingId": "1",
        "diskOfferingId": "1",
        "templateId": "2",
        "zoneId": "4",
        "apiKey": "miVr6X7u6bN_sdahOBpjNejPgEsT35eXq-jB8CG20YI3yaxXcgpyuaIRmFI_EJTVwZ0nUkkJbPmY3y2"
        "bciKwFQ",
    }
    assert canonical_string(params) == (
        "apikey=mivr6x7u6bn_sdahobpjnejpgest35exq-jb8cg20yi3yaxxcgpyuairmfi_ejtvwz0nukkjbpmy3y2"
        "bcikwfq&command=deployvirtualmachine&diskofferingid=1&serviceofferingid=1&templateid=2"
        "&zoneid=4"
    )


def test_java_urlencode_matches_java() -> None:
    # java.net.URLEncoder keeps only [A-Za-z0-9.-*_], turns space into '+', escapes '~'.
    assert java_urlencode("a b~*._-/é") == "a+b%7E*._-%2F%C3%A9"
    assert canonical_string({"name": "my vm", "signature": "x"}) == "name=my%20vm"


def test_correct_signature_is_accepted(cloudstack: CloudStackSim) -> None:
    accounts = client(cloudstack).listAccounts(listall=True, fetch_list=True)
    assert {a["name"] for a in accounts} == {"acme", "globex", "initech", "admin"}


def test_tampered_request_is_rejected_with_cloudstacks_error_shape(
    cloudstack: CloudStackSim,
) -> None:
    params = signed_params(command="listVirtualMachines", listall="true")
    assert requests.get(cloudstack.url, params=params, timeout=5).status_code == 200
    params["listall"] = "false"  # changed after signing
    resp = requests.get(cloudstack.url, params=params, timeout=5)
    assert resp.status_code == 401
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.json() == {
        "listvirtualmachinesresponse": {"uuidList": [], "errorcode": 401, "errortext": AUTH_ERROR}
    }


def test_wrong_secret_unknown_key_and_missing_signature_are_rejected(
    cloudstack: CloudStackSim,
) -> None:
    with pytest.raises(CloudStackApiException) as exc:
        client(cloudstack, secret="not-the-secret").listZones()
    assert exc.value.error["errorcode"] == 401
    params = signed_params(command="listZones")
    params["apiKey"] = "someone-else"
    assert requests.get(cloudstack.url, params=params, timeout=5).status_code == 401
    del params["signature"]
    assert requests.get(cloudstack.url, params=params, timeout=5).status_code == 401


def test_expired_request_is_rejected(cloudstack: CloudStackSim) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S%z")
    future = (datetime.now(UTC) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S%z")
    ok = signed_params(command="listZones", signatureVersion="3", expires=future)
    assert requests.get(cloudstack.url, params=ok, timeout=5).status_code == 200
    old = signed_params(command="listZones", signatureVersion="3", expires=past)
    resp = requests.get(cloudstack.url, params=old, timeout=5)
    assert resp.status_code == 401
    assert resp.json()["listzonesresponse"]["errortext"] == AUTH_ERROR


def test_post_requests_are_verified_too(cloudstack: CloudStackSim) -> None:
    vms = client(cloudstack, method="post").listVirtualMachines(listall=True, fetch_list=True)
    assert len(vms) == 4  # account-owned VMs; project VMs need projectid=-1


def test_paging_across_several_pages() -> None:
    state = CloudStackState()
    state.objects["listVirtualMachines"] = [
        {"id": f"vm-{i:04d}", "name": f"vm{i}", "account": "a", "domainid": "d"}
        for i in range(1234)
    ]
    with CloudStackSim(state, keys={ADMIN_KEY: ADMIN_SECRET}) as sim:
        vms = client(sim).listVirtualMachines(listall=True, fetch_list=True)
        pages = [r.get("page") for r in sim.requests]
        one = client(sim).listVirtualMachines(listall=True, page=2, pagesize=100)
    assert [v["id"] for v in vms] == [f"vm-{i:04d}" for i in range(1234)]
    assert pages == ["1", "2", "3"]
    assert one["count"] == 1234
    assert [v["id"] for v in one["virtualmachine"]] == [f"vm-{i:04d}" for i in range(100, 200)]


def test_empty_list_is_an_empty_object(cloudstack: CloudStackSim) -> None:
    params = signed_params(command="listVirtualMachines", listall="true", id="nope")
    assert requests.get(cloudstack.url, params=params, timeout=5).json() == {
        "listvirtualmachinesresponse": {}
    }
    assert client(cloudstack).listVirtualMachines(listall=True, id="nope", fetch_list=True) == []


def test_listall_and_projects_scope(cloudstack: CloudStackSim) -> None:
    cs = client(cloudstack)
    assert cs.listVirtualMachines(fetch_list=True) == []  # only the caller's own
    own = cs.listVirtualMachines(listall=True, fetch_list=True)
    projects = cs.listVirtualMachines(listall=True, projectid=-1, fetch_list=True)
    assert all(not v.get("projectid") for v in own)
    assert projects and all(v["projectid"] and "account" not in v for v in projects)


def test_async_deploy_and_destroy(cloudstack: CloudStackSim) -> None:
    cs = client(cloudstack, poll_interval=0.05)
    started = cs.deployVirtualMachine(
        serviceofferingid="so", templateid="t", zoneid="z", name="tenant-stack-1"
    )
    assert set(started) == {"id", "jobid"}
    pending = cs.queryAsyncJobResult(jobid=started["jobid"])
    assert pending["jobstatus"] == 0
    result = cs.deployVirtualMachine(
        serviceofferingid="so", templateid="t", zoneid="z", name="tenant-stack-2", fetch_result=True
    )
    assert result["virtualmachine"]["state"] == "Running"
    assert result["virtualmachine"]["name"] == "tenant-stack-2"
    done = cs.destroyVirtualMachine(
        id=result["virtualmachine"]["id"], expunge=True, fetch_result=True
    )
    assert done["virtualmachine"]["state"] == "Expunging"
    assert (
        cs.listVirtualMachines(listall=True, id=result["virtualmachine"]["id"], fetch_list=True)
        == []
    )


def test_missing_parameter_and_unknown_command(cloudstack: CloudStackSim) -> None:
    with pytest.raises(CloudStackApiException) as exc:
        client(cloudstack).deployVirtualMachine(zoneid="z", templateid="t")
    assert exc.value.error == {
        "uuidList": [],
        "errorcode": 431,
        "errortext": "Unable to execute API command deployvirtualmachine due to missing "
        "parameter serviceofferingid",
    }
    resp = requests.get(cloudstack.url, params=signed_params(command="frobnicate"), timeout=5)
    assert resp.status_code == 432
    assert resp.json()["errorresponse"]["errorcode"] == 432
