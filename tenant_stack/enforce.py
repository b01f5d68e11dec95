"""The federation gate's pure core: a tenant's ``match[]`` selectors, rewritten so that they can
only select that tenant's series (as prom-label-proxy enforces one tenant value).

Each selector is parsed by a real PromQL parser (``promql-parser``): it must be an instant-vector
selector (what Prometheus's ``/federate`` accepts), without ``offset``, ``@`` or ``or``-groups.
Every matcher on the tenant label is dropped, whatever its operator, and ``tenant="<id>"`` is
added; the selector is then written out again by us, with every value quoted, so nothing of the
client's text reaches Prometheus except through a parsed, re-quoted matcher. No ``match[]`` at all
means the tenant's ``tenant:*`` recording-rule series.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence

import promql_parser

from zcp.errors import ZcpError
from zcp.promql import quote

TENANT_LABEL = "tenant"
MAX_SELECTORS = 64
MAX_SELECTOR_BYTES = 4096
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
TENANT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class BadSelector(ZcpError):
    """A ``match[]`` the gate refuses (400)."""


def _op(matcher: promql_parser.Matcher) -> str:
    text = str(matcher.op)
    for name, sym in (("NotEqual", "!="), ("NotRe", "!~"), ("Equal", "="), ("Re", "=~")):
        if text.endswith(f".{name}"):
            return sym
    raise BadSelector(f"unknown matcher operator {text}")


def check_tenant(tenant: str) -> str:
    """A tenant id safe in a matcher, a path and a unit name (never empty: ``tenant=""`` would
    match every series without the label)."""
    if not TENANT_ID.match(tenant):
        raise ZcpError(f"not a tenant id: {tenant[:80]!r}")
    return tenant


@functools.lru_cache(maxsize=4096)
def enforce(selector: str, tenant: str) -> str:
    """``selector`` restricted to ``tenant``'s series, or :class:`BadSelector`. Pure, so
    cached: a federating Prometheus sends the same ``match[]`` every scrape, and parsing it
    was a tenth of the gate's CPU per relayed answer (refusals are not cached)."""
    check_tenant(tenant)
    if len(selector.encode()) > MAX_SELECTOR_BYTES:
        raise BadSelector(f"a match[] longer than {MAX_SELECTOR_BYTES} bytes")
    try:
        expr = promql_parser.parse(selector)
    except (ValueError, TypeError) as exc:
        raise BadSelector(f"match[] is not PromQL: {str(exc)[:200]}") from None
    if not isinstance(expr, promql_parser.VectorSelector):
        raise BadSelector(f"match[] must be a series selector, not a {type(expr).__name__}")
    if expr.offset is not None or expr.at is not None:
        raise BadSelector("match[] must not have an offset or @ modifier")
    if expr.matchers.or_matchers:
        raise BadSelector("match[] must not have or-groups")
    parts = []
    name = expr.name
    for matcher in expr.matchers.matchers:
        label = str(matcher.name)
        if not _LABEL.match(label):
            raise BadSelector(f"bad label name {label[:80]!r}")
        if label == TENANT_LABEL:
            continue  # the client's say on the tenant is dropped, whatever it was
        parts.append(f"{label}{_op(matcher)}{quote(str(matcher.value))}")
    parts.append(f"{TENANT_LABEL}={quote(tenant)}")
    if name is not None:
        if not _NAME.match(name):
            raise BadSelector(f"bad metric name {name[:80]!r}")
        return f"{name}{{{','.join(parts)}}}"
    return "{" + ",".join(parts) + "}"


def enforce_all(selectors: Sequence[str], tenant: str) -> list[str]:
    """Every ``match[]`` of a request enforced; none at all -> the tenant's ``tenant:*``."""
    if len(selectors) > MAX_SELECTORS:
        raise BadSelector(f"more than {MAX_SELECTORS} match[]")
    if not selectors:
        return [enforce('{__name__=~"tenant:.+"}', tenant)]
    return list(dict.fromkeys(enforce(s, tenant) for s in selectors))  # duplicates once


def selectors_of(pairs: Iterable[tuple[str, str]]) -> list[str]:
    """The ``match[]`` values of decoded query or form pairs (other keys are ignored: they are
    never forwarded)."""
    return [value for key, value in pairs if key == "match[]"]
