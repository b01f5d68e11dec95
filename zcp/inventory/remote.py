"""Inventory from the region's inventory service (``zcp-obs exporter inventory``) over HTTP.

Hypervisor exporters use it instead of CloudStack: no CloudStack key on any hypervisor, and one
CloudStack listing per refresh however many hypervisors there are. Requests are conditional
(``If-None-Match``): an unchanged inventory costs a 304 and a header.
"""

from __future__ import annotations

import logging
from datetime import datetime

import requests
from pydantic import ValidationError

from zcp.config import InventoryServiceSource
from zcp.errors import InventoryError
from zcp.inventory.model import Inventory
from zcp.inventory.snapshot import FETCHED_AT_HEADER, PATH

log = logging.getLogger(__name__)


class ServiceSource:
    """Loads an :class:`Inventory` from the inventory service; remembers the last copy and its
    ETag so that an unchanged inventory is not transferred again."""

    def __init__(
        self, cfg: InventoryServiceSource, session: requests.Session | None = None
    ) -> None:
        self.cfg = cfg
        self.url = cfg.url + PATH
        self.params = {"host": cfg.host} if cfg.host else {}
        self.session = session or requests.Session()
        self.etag: str | None = None
        self.last: Inventory | None = None
        self.not_modified = 0

    def load(self) -> Inventory:
        """The current inventory (a 304 returns the last copy with the new fetch time)."""
        headers = {"Accept": "application/json"}
        if self.etag is not None and self.last is not None:
            headers["If-None-Match"] = self.etag
        try:
            resp = self.session.get(
                self.url, params=self.params, headers=headers, timeout=self.cfg.timeout_seconds
            )
        except requests.Timeout:
            raise InventoryError(
                f"the inventory service at {self.cfg.url} did not answer "
                f"within {self.cfg.timeout_seconds:g}s"
            ) from None
        except requests.RequestException as exc:
            raise InventoryError(
                f"cannot reach the inventory service at {self.cfg.url}: {type(exc).__name__}"
            ) from None
        if resp.status_code == 304 and self.last is not None:
            self.not_modified += 1
            fetched = _fetched_at(resp.headers.get(FETCHED_AT_HEADER))
            if fetched is not None and fetched != self.last.fetched_at:
                self.last = self.last.model_copy(update={"fetched_at": fetched})
            return self.last
        if resp.status_code != 200:
            reason = resp.text.strip().splitlines()[0][:200] if resp.text.strip() else ""
            raise InventoryError(
                f"the inventory service at {self.cfg.url} answered "
                f"{resp.status_code}" + (f": {reason}" if reason else "")
            )
        try:
            inventory = Inventory.model_validate_json(resp.content)
        except (ValidationError, ValueError) as exc:
            raise InventoryError(
                f"the inventory service at {self.cfg.url} sent an invalid "
                f"inventory: {str(exc).splitlines()[0][:200]}"
            ) from None
        self.etag = resp.headers.get("ETag")
        self.last = inventory
        return inventory


def _fetched_at(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
