"""The CloudStack API test server behaves like the management server's API."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from cs import CloudStack, CloudStackApiException, CloudStackException

from lab.cloudstack_sim import (
    AUTH_ERROR,
    CloudStackSim,
    CloudStackState,
    canonical_string,
    java_urlencode,
)
from tests.support import ADMIN_KEY, ADMIN_SECRET

# The API developer's guide, "How to sign an API call with Python" (apache/cloudstack-
# documentation, source/developersguide/developer_guide.rst): a user's keys and the exact GET
# request they sign, signature included.
GUIDE_API_KEY = (
    "plgWJfZK4gyS3mOMTVmjUVg-X-jlWlnfaUJ9GAbBbf9EdM-kAYMmAiLqzzq1ElZLYq_u38zCm0bewzGUdP66mg"
)
GUIDE_SECRET_KEY = (
    "VDaACYb0LV9eNjTetIOElcVQkvJck_J_QljX_FcHRj87ZKiy0z0ty0ZsYBkoXkY9b7eq1EhwJaw7FF3akA3KBQ"
)
GUIDE_QUERY = (
    f"apikey={GUIDE_API_KEY}&command=listUsers&response=json"
    "&signature=TTpdDq%2F7j%2FJ58XCRHomKoQXEQds%3D"
)
# the user the guide's answer lists (its keys left out)
GUIDE_USER = {
    "id": "7ed6d5da-93b2-4545-a502-23d20b48ef2a",
    "username": "admin",
    "firstname": "admin",
    "lastname": "cloud",
    "state": "enabled",
    "account": "admin",
    "accounttype": 1,
    "domainid": "8a111e58-e155-4482-93ce-84efff3c7c77",
    "domain": "ROOT",
    "accountid": "7548ac03-af1d-4c1c-9064-2f3e2c0eda0d",
}


class Recorder(requests.Session):
    """A session for the ``cs`` client that keeps every exchange: the request exactly as ``cs``
    built and signed it, and the simulator's raw answer."""

    def __init__(self) -> None:
        super().__init__()
        self.exchanges: list[tuple[requests.PreparedRequest, requests.Response]] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        response = super().send(request, **kwargs)
        self.exchanges.append((request, response))
        return response


def client(sim: CloudStackSim, secret: str = ADMIN_SECRET, **kw: Any) -> CloudStack:
    return CloudStack(endpoint=sim.url, key=ADMIN_KEY, secret=secret, **kw)


def cs_request(
    sim: CloudStackSim, command: str, secret: str = ADMIN_SECRET, **params: Any
) -> tuple[dict[str, str], requests.Response]:
    """Send ``command`` through the ``cs`` client, which signs it: the parameters exactly as
    ``cs`` signed and sent them (``signature`` included), and the simulator's raw answer."""
    recorder = Recorder()
    with contextlib.suppress(CloudStackException):  # an error answer is the caller's to check
        getattr(client(sim, secret, session=recorder), command)(**params)
    ((request, response),) = recorder.exchanges
    return dict(parse_qsl(urlsplit(request.url or "").query, keep_blank_values=True)), response


def replay(sim: CloudStackSim, params: dict[str, str]) -> requests.Response:
    return requests.get(sim.url, params=params, timeout=5)


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


def test_the_guides_signed_example_request_is_accepted_exactly_and_tampered_is_not() -> None:
    """The published request, byte for byte, against a simulator holding the guide's keys; the
    same request changed after signing is refused. And ``cs`` signs it the same way."""
    state = CloudStackState()
    state.objects["listUsers"] = [GUIDE_USER]
    with CloudStackSim(state, keys={GUIDE_API_KEY: GUIDE_SECRET_KEY}) as sim:
        exact = requests.get(f"{sim.url}?{GUIDE_QUERY}", timeout=5)
        assert exact.status_code == 200, exact.text
        assert exact.json() == {"listusersresponse": {"count": 1, "user": [GUIDE_USER]}}
        for tampered in (
            GUIDE_QUERY.replace("command=listUsers", "command=listZones"),
            GUIDE_QUERY + "&listall=true",
            GUIDE_QUERY.replace("response=json", "response=xml"),
        ):
            resp = requests.get(f"{sim.url}?{tampered}", timeout=5)
            assert resp.status_code == 401, tampered
            assert next(iter(resp.json().values()))["errortext"] == AUTH_ERROR
        # no expiry (expiration < 0): the guide's three parameters, and its signature
        recorder = Recorder()
        cs = CloudStack(
            endpoint=sim.url,
            key=GUIDE_API_KEY,
            secret=GUIDE_SECRET_KEY,
            expiration=-1,
            session=recorder,
        )
        assert cs.listUsers() == {"count": 1, "user": [GUIDE_USER]}
        sent = dict(parse_qsl(urlsplit(recorder.exchanges[0][0].url or "").query))
        assert sent["signature"] == "TTpdDq/7j/J58XCRHomKoQXEQds="


def test_a_request_tampered_after_cs_signed_it_is_rejected_with_cloudstacks_error_shape(
    cloudstack: CloudStackSim,
) -> None:
    params, answer = cs_request(cloudstack, "listVirtualMachines", listall=True)
    assert answer.status_code == 200 and params["listall"] == "true"
    assert replay(cloudstack, params).status_code == 200  # the very same request again
    params["listall"] = "false"  # changed after signing
    resp = replay(cloudstack, params)
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
    params, answer = cs_request(cloudstack, "listZones")
    assert answer.status_code == 200
    params["apiKey"] = "someone-else"
    assert replay(cloudstack, params).status_code == 401
    params["apiKey"] = ADMIN_KEY
    del params["signature"]
    assert replay(cloudstack, params).status_code == 401


def test_expiry_signed_by_cs_is_enforced(cloudstack: CloudStackSim) -> None:
    """``cs`` signs every request with ``signatureVersion=3`` and an ``expires`` (10 minutes
    ahead by default): accepted until then, refused after, the signature itself being good."""
    params, answer = cs_request(cloudstack, "listZones")
    assert params["signatureVersion"] == "3"
    expires = datetime.strptime(params["expires"], "%Y-%m-%dT%H:%M:%S%z")
    assert expires > datetime.now(UTC)
    assert answer.status_code == 200
    past = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S%z")
    params, answer = cs_request(cloudstack, "listZones", signatureVersion="3", expires=past)
    assert params["expires"] == past and params["signatureVersion"] == "3"
    assert answer.status_code == 401
    assert answer.json()["listzonesresponse"]["errortext"] == AUTH_ERROR
    with pytest.raises(CloudStackApiException) as exc:
        client(cloudstack).listZones(signatureVersion="3", expires=past)
    assert exc.value.error["errorcode"] == 401


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
    _, answer = cs_request(cloudstack, "listVirtualMachines", listall=True, id="nope")
    assert answer.json() == {"listvirtualmachinesresponse": {}}
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
    _, resp = cs_request(cloudstack, "frobnicate")
    assert resp.status_code == 432
    assert resp.json()["errorresponse"]["errorcode"] == 432
