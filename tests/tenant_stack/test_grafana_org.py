"""A tenant's Grafana organisation is named after the account through Grafana's admin API
(the contract of admin_orgs.md, served by lab/grafana_sim.py), whatever the name holds."""

from __future__ import annotations

import pytest

from lab.grafana_sim import GrafanaSim, GrafanaState, Org
from tenant_stack.grafana import name_org
from zcp.errors import ZcpError


@pytest.mark.parametrize("name", ["acme", 'a "quoted" }{ name', "x\ny", "é" * 200])
def test_the_org_is_named_after_the_account_once(name: str) -> None:
    state = GrafanaState(admins={"admin": "pw"}, orgs={1: Org()})
    with GrafanaSim(state) as sim:
        assert name_org(sim.url, "pw", name) is True
        assert state.orgs[1].name == name
        assert name_org(sim.url, "pw", name) is False  # already so: nothing written
        assert [m for m, _p, _o in state.requests].count("PUT") == 1


def test_a_wrong_password_is_one_line() -> None:
    state = GrafanaState(admins={"admin": "pw"}, orgs={1: Org()})
    with GrafanaSim(state) as sim, pytest.raises(ZcpError, match="cannot name organisation 1: 401"):
        name_org(sim.url, "nope", "acme")
