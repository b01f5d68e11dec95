"""``zcp-obs dashboards upload``: the built dashboards into a Grafana, through its HTTP API
(grafana-client): the folder by uid (created when missing), then each dashboard with
``POST /api/dashboards/db`` (``folderUid``, ``overwrite``, a message). Every refusal is one line
naming the dashboard; nothing is retried blindly.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from grafana_client import GrafanaApi
from grafana_client.client import (
    GrafanaBadInputError,
    GrafanaClientError,
    GrafanaException,
    GrafanaServerError,
    GrafanaTimeoutError,
    GrafanaUnauthorizedError,
)
from niquests.exceptions import ConnectionError as _ConnectionError  # grafana-client's HTTP

from dashboards.build import Built, DashboardError
from zcp.config import GrafanaConfig


@dataclass(frozen=True)
class Uploaded:
    """One dashboard as Grafana answered: its uid, URL and version."""

    uid: str
    url: str
    version: int


def api_for(cfg: GrafanaConfig) -> GrafanaApi:
    """A grafana-client for ``cfg`` (bearer token; ``X-Grafana-Org-Id`` when an org is set)."""
    api = GrafanaApi.from_url(
        cfg.url, credential=cfg.token.get_secret_value(), timeout=cfg.timeout_seconds
    )
    if cfg.org_id is not None:
        api.client.s.headers["X-Grafana-Org-Id"] = str(cfg.org_id)
    return api


def _reason(exc: Exception) -> str:
    response: Any = getattr(exc, "response", None)
    status = getattr(exc, "status_code", None)
    if isinstance(response, dict):
        detail = response.get("status") or response.get("message") or ""
        message = response.get("message", "")
        text = (
            f"{detail}: {message}"
            if detail and message and detail != message
            else str(detail or message)
        )
    else:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"HTTP {status} {text}".strip() if status else text


def _call(what: str, fn: Callable[[], Any], cfg: GrafanaConfig) -> Any:
    try:
        return fn()
    except GrafanaUnauthorizedError as exc:
        raise DashboardError(
            f"{what}: Grafana at {cfg.url} refused the token ({_reason(exc)})"
        ) from None
    except GrafanaTimeoutError:
        raise DashboardError(
            f"{what}: Grafana at {cfg.url} did not answer within {cfg.timeout_seconds:g}s"
        ) from None
    except (GrafanaBadInputError, GrafanaClientError, GrafanaServerError) as exc:
        status = getattr(exc, "status_code", None)
        hint = ""
        if status == 403:
            hint = " (the token's role cannot write dashboards in this org/folder)"
        elif status == 412:
            hint = (
                " (changed in Grafana since: upload with overwrite to replace it, or "
                "rename the other dashboard)"
            )
        raise DashboardError(f"{what}: Grafana refused: {_reason(exc)}{hint}") from None
    except GrafanaException as exc:  # grafana-client's wrapper of transport errors
        raise DashboardError(
            f"{what}: cannot reach Grafana at {cfg.url}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no answer'}"
        ) from None
    except (_ConnectionError, OSError) as exc:
        raise DashboardError(
            f"{what}: cannot reach Grafana at {cfg.url}: {type(exc).__name__}"
        ) from None


def ensure_folder(api: GrafanaApi, cfg: GrafanaConfig) -> None:
    """The folder ``cfg.folder_uid`` exists (created with ``cfg.folder_title`` if not)."""
    what = f"folder {cfg.folder_uid}"

    def exists() -> bool:
        try:
            api.folder.get_folder(cfg.folder_uid)
        except GrafanaClientError as exc:
            if getattr(exc, "status_code", None) == 404:
                return False
            raise
        return True

    if _call(what, exists, cfg):
        return
    try:
        _call(what, lambda: api.folder.create_folder(cfg.folder_title, uid=cfg.folder_uid), cfg)
    except DashboardError as exc:
        if "HTTP 409" not in str(exc):
            raise
        # 409: created meanwhile by another upload (fine), or the title is another folder's
        if not _call(what, exists, cfg):
            raise DashboardError(
                f"{what}: Grafana refused: a folder titled {cfg.folder_title!r} exists with "
                "another uid (set dashboards.grafana.folder_uid to it, or another "
                "folder_title)"
            ) from None


def upload(
    built: Sequence[Built],
    cfg: GrafanaConfig,
    message: str,
    overwrite: bool = True,
    progress: Callable[[Uploaded], None] = lambda _u: None,
) -> list[Uploaded]:
    """Every dashboard of ``built`` into ``cfg``'s folder; what Grafana answered."""
    api = api_for(cfg)
    ensure_folder(api, cfg)
    out = []
    for b in built:
        body = {
            "dashboard": {**b.doc, "id": None},
            "folderUid": cfg.folder_uid,
            "overwrite": overwrite,
            "message": message,
        }
        answer = _call(b.uid, functools.partial(api.dashboard.update_dashboard, body), cfg)
        done = Uploaded(
            str(answer.get("uid", b.uid)), str(answer.get("url", "")), int(answer.get("version", 0))
        )
        progress(done)
        out.append(done)
    return out
