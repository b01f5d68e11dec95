"""A tenant's Grafana, once it runs: its organisation named after the account (Grafana has no
provisioning for organisations, so the admin API does it, with the generated admin password)."""

from __future__ import annotations

from typing import Any

from zcp.errors import ZcpError


def name_org(url: str, password: str, name: str, org_id: int = 1) -> bool:
    """Rename ``org_id`` to ``name`` if it is not so named; True when it changed. The name
    travels as JSON, so any account name is safe; errors are one line."""
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaException

    scheme, _, host = url.partition("://")
    api: Any = GrafanaApi(auth=("admin", password), host=host, protocol=scheme, timeout=10)
    try:
        current = api.client.GET(f"/orgs/{org_id}")  # admin_orgs.md: GET /api/orgs/:orgId
        if current.get("name") == name:
            return False
        api.organizations.update_organization(org_id, {"name": name})
    except GrafanaException as exc:
        raise ZcpError(
            f"Grafana at {url}: cannot name organisation {org_id}: {exc.status_code} {exc.message}"
        ) from None
    except OSError as exc:
        raise ZcpError(f"Grafana at {url} does not answer: {type(exc).__name__}") from None
    return True
