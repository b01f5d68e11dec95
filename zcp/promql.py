"""PromQL text the parts write: a string literal from any value."""

from __future__ import annotations

import json


def quote(value: str) -> str:
    """A PromQL double-quoted string (JSON's escapes are a subset of PromQL's)."""
    return json.dumps(value, ensure_ascii=False)
