"""Raw samples from any Prometheus-compatible query API (Prometheus, VictoriaMetrics), through
prometheus-api-client.

One instant query with a range selector returns every raw sample of the matching series in a
window (no step, no resampling, no extrapolation). The window is asked 1 ms wider than needed
and trimmed here, because the stores differ at its left edge (Prometheus 2.x includes a sample
exactly on it, VictoriaMetrics does not): the result is the same on both. Times go out as exact
millisecond strings (the client library would round a datetime to whole seconds).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

from metering.compute import Series
from metering.errors import SourceError

log = logging.getLogger(__name__)


def ms_param(ms: int) -> str:
    """Milliseconds as the API's decimal seconds, exactly."""
    return f"{ms // 1000}.{ms % 1000:03d}"


@dataclass
class Fetched:
    """Series of one query with the query's text and evaluation time (lineage)."""

    query: str
    at_ms: int
    series: list[Series]
    samples: int


class QuerySource:
    """A query API at ``url``; every failure is a :class:`SourceError` of one line."""

    def __init__(self, url: str, timeout: float = 120.0, retries: int = 2) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        retry = Retry(
            total=retries,
            backoff_factor=0.5,
            status_forcelist=(502, 503, 504),
            allowed_methods=("GET", "POST"),
        )
        self.api = PrometheusConnect(
            self.url, retry=retry, timeout=int(timeout) or 1, method="POST"
        )
        self.queries = 0
        self.samples = 0

    def _call(self, query: str, call: Callable[[], Any]) -> list[dict[str, Any]]:
        """Run one API call of ``query``; every failure one line."""
        self.queries += 1
        try:
            result = call()
        except PrometheusApiClientException as exc:
            raise SourceError(
                f"the query API at {self.url} refused {query!r}: {_reason(exc)}"
            ) from None
        except requests.Timeout:
            raise SourceError(
                f"the query API at {self.url} did not answer within {self.timeout:g}s"
            ) from None
        except requests.RequestException as exc:
            raise SourceError(
                f"cannot reach the query API at {self.url}: {type(exc).__name__}"
            ) from None
        except ValueError:
            raise SourceError(
                f"the query API at {self.url} sent something that is not JSON"
            ) from None
        if not isinstance(result, list):
            raise SourceError(
                f"the query API at {self.url} answered {query!r} with "
                f"{type(result).__name__}, not a list"
            )
        return result

    def _query(self, query: str, at_ms: int) -> list[dict[str, Any]]:
        return self._call(
            query, lambda: self.api.custom_query(query, params={"time": ms_param(at_ms)})
        )

    def range(self, query: str, first_ms: int, last_ms: int, step_ms: int) -> list[dict[str, Any]]:
        """A range query evaluated at ``first_ms``, ``first_ms + step_ms``, ... ``last_ms``
        (exact millisecond times, which the library's datetime arguments would round)."""
        epoch = datetime.fromtimestamp(0, UTC)
        return self._call(
            query,
            lambda: self.api.custom_query_range(
                query,
                epoch,
                epoch,
                f"{step_ms // 1000}",
                params={"start": ms_param(first_ms), "end": ms_param(last_ms)},
            ),
        )

    def raw(self, selector: str, start_ms: int, end_ms: int) -> Fetched:
        """Every raw sample with ``start_ms <= t < end_ms`` of the series ``selector``."""
        at = end_ms - 1
        window = at - start_ms + 1  # one more: both stores then hold t = start_ms
        query = f"{selector}[{window}ms]"
        out = []
        total = 0
        for item in self._query(query, at):
            labels = tuple(
                sorted((k, v) for k, v in item.get("metric", {}).items() if k != "__name__")
            )
            samples = []
            for ts, value in item.get("values", ()):
                t = round(float(ts) * 1000)
                if start_ms <= t < end_ms:
                    try:
                        v = Decimal(value)
                    except (InvalidOperation, TypeError):
                        raise SourceError(
                            f"{query}: sample value {value!r} is not a number"
                        ) from None
                    if v.is_finite():
                        samples.append((t, v))
            if samples:
                out.append(Series(labels, tuple(samples)))
                total += len(samples)
        self.samples += total
        return Fetched(query, at, out, total)

    def owners(self, family: str, key: str, start_ms: int, end_ms: int) -> dict[str, str]:
        """``key`` -> ``account_id`` from an info family's series seen in the window."""
        at = end_ms - 1
        query = (
            f'max by ({key}, account_id) (last_over_time({family}{{account_id!=""}}'
            f"[{at - start_ms + 1}ms]))"
        )
        out: dict[str, str] = {}
        for item in sorted(
            self._query(query, at), key=lambda i: json.dumps(i["metric"], sort_keys=True)
        ):
            metric = item.get("metric", {})
            if metric.get(key):
                out.setdefault(metric[key], metric.get("account_id", ""))
        return out


def _reason(exc: Exception) -> str:
    """The API's own error text out of the client library's exception (it formats the
    response body with %r)."""
    text = str(exc)
    found = re.search(r'"error":\s*"((?:[^"\\]|\\.)*)"', text)
    return (found.group(1) if found else text)[:300]
