"""Inventory from a YAML file (the embedded demo cloud, or a small site's hand-kept file)."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from zcp.errors import InventoryError
from zcp.inventory.model import Inventory

DEFAULT_NAME = "<embedded default inventory>"


def default_inventory_text() -> str:
    """The YAML text of the embedded demo cloud."""
    return resources.files("zcp.inventory").joinpath("default.yaml").read_text()


def parse_inventory(data: Any, source: str) -> Inventory:
    """Validate parsed YAML into an :class:`Inventory`; errors name the bad record and key."""
    if not isinstance(data, dict):
        raise InventoryError(f"invalid inventory {source}: the top level must be a mapping")
    data = {k: v for k, v in data.items() if k not in ("source", "fetched_at")}
    try:
        return Inventory.model_validate({**data, "source": "file", "fetched_at": datetime.now(UTC)})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"{key}: {msg.removeprefix('Value error, ')}")
        raise InventoryError(f"invalid inventory {source}: " + "; ".join(problems)) from None


def load_inventory_file(path: Path | None) -> Inventory:
    """Load the inventory from ``path``, or the embedded default when ``path`` is None."""
    if path is None:
        text, source = default_inventory_text(), DEFAULT_NAME
    else:
        source = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise InventoryError(f"cannot read inventory {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InventoryError(f"invalid inventory {source}: not valid YAML ({exc})") from None
    return parse_inventory(data, source)
