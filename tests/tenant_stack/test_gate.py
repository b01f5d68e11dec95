"""The federation gate on real Prometheus processes: an operator Prometheus holding three
tenants' series (the real tenant recording rules over identity and counters), the gate in front
of it, and three tenant Prometheus federating through it, each with its own token."""

from __future__ import annotations

import gzip
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import promql_parser
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from lab.prometheus import PrometheusServer
from tenant_stack.enforce import BadSelector, enforce, enforce_all
from tenant_stack.gate import Gate, token_digest, write_tokens
from tests.tenant_stack.cloud import SCRAPE, TOKENS, A, B
from zcp.config import GateConfig
from zcp.wait import wait_until


@pytest.fixture(scope="module")
def gate(operator: PrometheusServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    work = tmp_path_factory.mktemp("gate")
    write_tokens(work / "tokens.yaml", {t: token_digest(tok) for t, tok in TOKENS.items()})
    cfg = GateConfig(
        listen="127.0.0.1:0",
        metrics_listen="127.0.0.1:0",
        upstream=operator.url,
        tokens_file=work / "tokens.yaml",
    )
    g = Gate(cfg).start()
    yield g
    g.shutdown()


def fed(gate: Gate, query: str = "", token: str | None = TOKENS[A], **kw: Any) -> requests.Response:
    headers = kw.pop("headers", {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    method = kw.pop("method", "GET")
    return requests.request(
        method,
        f"http://127.0.0.1:{gate.port}/federate" + (f"?{query}" if query else ""),
        headers=headers,
        timeout=30,
        **kw,
    )


def tenants_in(body: str) -> list[str | None]:
    return [
        s.labels.get("tenant") for fam in text_string_to_metric_families(body) for s in fam.samples
    ]


def m(selector: str) -> str:
    return "match[]=" + quote(selector, safe="")


# -- the pure core -------------------------------------------------------------------------------
HOSTILE = [
    '{__name__=~".+"}',
    'x{tenant=~".*"}',
    'up{tenant!="x"}',
    'x{tenant=""}',
    f'{{tenant="{B}"}}',
    f'{{tenant=~"{A}|{B}"}}',
    f'{{__name__=~"tenant:.+",tenant!~"{A}"}}',
    'x{tenant="a",tenant="b"}',
    'x{job="\\"}",tenant="b"}',
    'x{job="a\\nb"}',
    f'x{{Tenant="{B}"}}',  # label-name games: other labels, kept, the tenant still enforced
    f'x{{tenant_="{B}",__tenant="{B}"}}',
    f'{{__name__="tenant:x",tenant=~"(?i){B}"}}',
]


@pytest.mark.parametrize("selector", HOSTILE)
def test_every_selector_ends_with_exactly_this_tenant(selector: str) -> None:
    out = promql_parser.parse(enforce(selector, A))
    tenant = [x for x in out.matchers.matchers if x.name == "tenant"]
    assert len(tenant) == 1 and tenant[0].value == A and str(tenant[0].op).endswith(".Equal")


@pytest.mark.parametrize(
    "selector",
    [
        "sum(up)",
        "up[5m]",
        "up offset 5m",
        "up @ 100",
        '{a="b" or tenant="c"}',
        "}",
        "up + up",
        'label_replace(up, "tenant", "x", "", "")',
        "x" * 5000,
    ],
)
def test_what_is_not_a_plain_selector_is_refused(selector: str) -> None:
    with pytest.raises(BadSelector):
        enforce(selector, A)


def test_no_selector_means_the_tenants_recording_rules_and_duplicates_go_once() -> None:
    assert enforce_all([], A) == [f'{{__name__=~"tenant:.+",tenant="{A}"}}']
    assert enforce_all(["up", "up", 'up{tenant="x"}'], A) == [f'up{{tenant="{A}"}}']
    with pytest.raises(BadSelector):
        enforce_all(["up"] * 65, A)


# -- the gate on a real Prometheus ---------------------------------------------------------------
def test_tokens(gate: Gate) -> None:
    for token in (None, "wrong", TOKENS[A] + "x", ""):
        r = fed(gate, m("up"), token=token)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    r = fed(gate, m("up"), token=None, headers={"Authorization": f"Basic {TOKENS[A]}"})
    assert r.status_code == 401
    # another tenant's token is that tenant's view, never A's
    assert set(tenants_in(fed(gate, token=TOKENS[B]).text)) == {B}


@pytest.mark.parametrize("selector", HOSTILE)
def test_hostile_selectors_stay_within_the_tenant(gate: Gate, selector: str) -> None:
    r = fed(gate, m(selector))
    assert r.status_code == 200, r.text
    assert set(tenants_in(r.text)) <= {A}


def test_the_default_is_the_tenants_own_rule_series(gate: Gate, operator: PrometheusServer) -> None:
    r = fed(gate)
    got = {
        (f.name, s.labels.get("vm_id"))
        for f in text_string_to_metric_families(r.text)
        for s in f.samples
    }
    want = {
        (x["metric"]["__name__"], x["metric"].get("vm_id"))
        for x in operator.query(f'{{__name__=~"tenant:.+",tenant="{A}"}}')
    }
    assert want and got == want
    # a selector for everything gets the tenant's series only: its rule outputs and its stray one
    everything = fed(gate, m('{__name__=~".+"}')).text
    names = {f.name for f in text_string_to_metric_families(everything)}
    assert names and all(n.startswith("tenant:") for n in names), names
    assert set(tenants_in(fed(gate, m('{__name__=~".+"}'), token=TOKENS[B]).text)) == {B}
    assert "stray_series" in fed(gate, m("stray_series"), token=TOKENS[B]).text


def test_every_way_of_sending_match_stays_within_the_tenant(gate: Gate) -> None:
    other = f'{{tenant="{B}"}}'
    cases = [
        m(other) + "&" + m('{__name__=~".+"}'),  # repeated
        m(other) + "&" + m(other),  # duplicate
        "match%5B%5D=" + quote(other, safe=""),  # encoded brackets: still match[]
        "match=" + quote(other, safe=""),  # no brackets: ignored (never forwarded)
        "match%255B%255D=" + quote(other, safe=""),  # double-encoded key: ignored
        "tenant=" + B + "&" + m("up"),  # other parameters are never forwarded
    ]
    for query in cases:
        r = fed(gate, query)
        assert r.status_code == 200, (query, r.text)
        assert set(tenants_in(r.text)) <= {A}, query
    # a POST body is enforced like the URL
    r = fed(
        gate,
        method="POST",
        data={"match[]": other},
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200 and set(tenants_in(r.text)) == {A}
    r = fed(gate, method="POST", data=b"{}", headers={"Content-Type": "application/json"})
    assert r.status_code == 415


@pytest.mark.parametrize(
    "query",
    [
        "match[]=" + quote(quote('{tenant="x"}', safe=""), safe=""),  # a double-encoded value
        "match[]=%ff%fe",  # not UTF-8
        "match[]=" + quote("sum(up)"),
        "&".join(["match[]=up"] * 300),  # too many fields
    ],
)
def test_bad_input_is_refused(gate: Gate, query: str) -> None:
    assert fed(gate, query).status_code == 400


def test_other_paths_and_methods(gate: Gate) -> None:
    base = f"http://127.0.0.1:{gate.port}"
    auth = {"Authorization": f"Bearer {TOKENS[A]}"}
    for path in ("/api/v1/query?query=up", "/metrics", "/", "/federate/../api/v1/query"):
        assert requests.get(base + path, headers=auth, timeout=10).status_code == 404
    assert requests.delete(base + "/federate", headers=auth, timeout=10).status_code == 405
    long = requests.get(base + "/federate?" + m("x" * 20000), headers=auth, timeout=10)
    assert long.status_code == 431


def test_the_answer_streams_compressed_bytes_through(gate: Gate) -> None:
    r = requests.get(
        f"http://127.0.0.1:{gate.port}/federate",
        headers={"Authorization": f"Bearer {TOKENS[A]}", "Accept-Encoding": "gzip"},
        stream=True,
        timeout=30,
    )
    raw = r.raw.read(decode_content=False)
    assert r.headers["Content-Encoding"] == "gzip"
    assert set(tenants_in(gzip.decompress(raw).decode())) == {A}


def test_the_gates_metrics(gate: Gate) -> None:
    fed(gate, token="nope")
    text = requests.get(f"http://127.0.0.1:{gate.metrics_port}/metrics", timeout=10).text
    assert 'zcp_gate_refused_total{reason="token"}' in text
    assert f'zcp_gate_requests_total{{code="200",tenant="{A}"}}' in text
    assert "zcp_gate_tenants 3.0" in text and "zcp_gate_http_connections" in text


def test_an_upstream_that_is_down_is_a_502_logged_once(tmp_path: Path, caplog) -> None:
    write_tokens(tmp_path / "t.yaml", {A: token_digest(TOKENS[A])})
    from lab.procs import free_port

    g = Gate(
        GateConfig(
            listen="127.0.0.1:0",
            metrics_listen="127.0.0.1:0",
            upstream=f"http://127.0.0.1:{free_port()}",
            tokens_file=tmp_path / "t.yaml",
        )
    ).start()
    try:
        with caplog.at_level("WARNING", logger="tenant_stack.gate"):
            assert [fed(g).status_code for _ in range(5)] == [502] * 5
        down = [r for r in caplog.records if r.getMessage() == "upstream Prometheus unreachable"]
        assert len(down) == 1, "a down upstream is logged on change, not per request"
        assert g.upstream_errors == 5
    finally:
        g.shutdown()


def small_gate(tmp_path: Path, upstream: str, **cfg: Any) -> Gate:
    write_tokens(tmp_path / "t.yaml", {A: token_digest(TOKENS[A])})
    return Gate(
        GateConfig(
            listen="127.0.0.1:0",
            metrics_listen="127.0.0.1:0",
            upstream=upstream,
            tokens_file=tmp_path / "t.yaml",
            **cfg,
        )
    ).start()


def test_an_upstream_restart_costs_no_request_and_a_hung_one_is_a_502(tmp_path: Path) -> None:
    """A pooled connection the upstream closed is given up for a new one, unseen by the
    client; an upstream that does not answer within upstream_timeout_seconds is a 502, and
    the gate goes on."""
    from zcp.httpserver import HttpServer, Reply, Request

    series = f'tenant:x{{tenant="{A}"}} 1\n'.encode()
    hold = threading.Event()

    def federate(req: Request) -> Reply:
        if "slow" in req.headers.get("accept", ""):
            hold.wait(30)
        return Reply(200, "text/plain", series)

    first = HttpServer("upstream", "127.0.0.1", 0, {"/federate": federate}).start()
    port = first.port
    g = small_gate(tmp_path, f"http://127.0.0.1:{port}", upstream_timeout_seconds=0.5)
    second = None
    try:
        assert fed(g).text == series.decode() and len(g._idle) == 1
        first.shutdown()  # every connection dropped, the pooled one too
        second = HttpServer("upstream", "127.0.0.1", port, {"/federate": federate}).start()
        for _ in range(3):
            assert fed(g).text == series.decode()
        assert g.upstream_errors == 0
        slow = fed(g, headers={"Accept": "text/plain; slow"})
        assert slow.status_code == 502 and g.upstream_errors == 1
        hold.set()
        assert fed(g).text == series.decode()
    finally:
        hold.set()
        g.shutdown()
        first.shutdown()
        if second is not None:
            second.shutdown()


class RawUpstream(socketserver.ThreadingTCPServer):
    """An upstream that answers each request with the bytes ``answers`` maps its Accept header
    to, then keeps the connection or closes it: framings Prometheus does not send."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, answers: dict[str, tuple[bytes, bool]]) -> None:
        self.answers = answers
        self.connections = 0
        upstream = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                upstream.connections += 1
                while True:
                    head = b""
                    while not head.endswith(b"\r\n\r\n"):
                        byte = self.rfile.read(1)
                        if not byte:
                            return
                        head += byte
                    accept = [
                        line.split(b":", 1)[1].strip().decode()
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"accept:")
                    ]
                    answer, keep = upstream.answers[accept[0]]
                    self.wfile.write(answer)
                    self.wfile.flush()
                    if not keep:
                        return

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def test_every_framing_of_the_upstreams_answer_is_relayed_whole_or_not_at_all(
    tmp_path: Path,
) -> None:
    """Chunked and Content-Length answers are relayed whole and their connection pooled; one
    that ends with its connection is relayed whole and not pooled; a chunked one cut short
    is never completed for the client; garbage is a 502; and the gate goes on after each."""
    body = b"".join(b'tenant:x{tenant="%s",i="%d"} %d\n' % (A.encode(), i, i) for i in range(9000))
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 5000]), body[i : i + 5000])
        for i in range(0, len(body), 5000)
    )
    ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
    up = RawUpstream(
        {
            "*/*": (ok + b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n", True),
            "length": (ok + b"Content-Length: %d\r\n\r\n" % len(body) + body, True),
            "eof": (ok + b"Connection: close\r\n\r\n" + body, False),
            "cut": (ok + b"Transfer-Encoding: chunked\r\n\r\n" + chunks[:140000], False),
            "garbage": (b"<html>not http</html>\r\n\r\n", False),
        }
    )
    g = small_gate(tmp_path, f"http://127.0.0.1:{up.server_address[1]}")
    try:
        for accept in ("*/*", "length", "*/*", "length"):
            got = fed(g, headers={"Accept": accept})
            assert got.status_code == 200 and got.content == body, accept
        assert up.connections == 1, "a framed answer's connection is pooled and reused"
        got = fed(g, headers={"Accept": "eof"})
        assert got.status_code == 200 and got.content == body
        assert not g._idle, "a connection that ended the answer is not pooled"
        # cut before the first 64 KiB went out: the connection closes without an answer;
        # after it, the chunked body never ends
        cut = (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)
        with pytest.raises(cut):
            fed(g, headers={"Accept": "cut"})
        assert not g._idle
        assert fed(g, headers={"Accept": "garbage"}).status_code == 502
        assert fed(g).content == body
    finally:
        g.shutdown()
        up.shutdown()
        up.server_close()


def test_three_tenant_prometheus_each_hold_their_own_series_only(
    gate: Gate, operator: PrometheusServer, tmp_path: Path
) -> None:
    proms: dict[str, PrometheusServer] = {}
    try:
        for tenant, token in TOKENS.items():
            cred = tmp_path / f"{tenant}.token"
            cred.write_text(token)
            cred.chmod(0o600)
            proms[tenant] = PrometheusServer(
                tmp_path / tenant,
                {
                    "global": {"scrape_interval": "1s"},
                    "scrape_configs": [
                        {
                            "job_name": "federate",
                            "honor_labels": True,
                            "metrics_path": "/federate",
                            "params": {"match[]": ['{__name__=~"tenant:.+"}']},
                            "authorization": {"credentials_file": str(cred)},
                            "static_configs": [{"targets": [f"127.0.0.1:{gate.port}"]}],
                        }
                    ],
                },
            )
        threads = [threading.Thread(target=p.start) for p in proms.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for tenant, prom in proms.items():
            # compared without job and instance: the tenant's scrape adds its own
            want = {
                tuple(sorted((k, v) for k, v in x["metric"].items() if k not in SCRAPE))
                for x in operator.query(f'{{__name__=~"tenant:.+",tenant="{tenant}"}}')
            }
            assert want

            def held(prom: PrometheusServer = prom) -> set[tuple[tuple[str, str], ...]]:
                return {
                    tuple(sorted((k, v) for k, v in x["metric"].items() if k not in SCRAPE))
                    for x in prom.query('{__name__=~"tenant:.+"}')
                }

            def own(want: set[tuple[tuple[str, str], ...]] = want) -> bool:
                return want == held()

            assert wait_until(own, 30, 0.5), (tenant, want - held(), held() - want)
            everything = prom.query('{__name__=~".+"}')
            foreign = [
                x["metric"]
                for x in everything
                if not x["metric"]["__name__"].startswith(("up", "scrape_"))
                and x["metric"].get("tenant") != tenant
            ]
            assert not foreign, foreign
    finally:
        for p in proms.values():
            p.stop()


def test_upstream_connections_are_reused_and_a_client_leaving_early_poisons_none(
    gate: Gate,
) -> None:
    whole = fed(gate).text
    assert gate._idle, "the upstream connection went back to the pool"
    for _ in range(3):  # clients that leave mid-answer
        r = requests.get(
            f"http://127.0.0.1:{gate.port}/federate",
            params={"match[]": '{__name__=~".+"}'},
            headers={"Authorization": f"Bearer {TOKENS[A]}"},
            stream=True,
            timeout=30,
        )
        r.raw.read(10)
        r.close()
    for _ in range(3):  # every later answer is whole and its own
        again = fed(gate).text
        assert again.count("\n") == whole.count("\n") and set(tenants_in(again)) == {A}


def test_a_broken_tokens_file_keeps_the_last_good_one(tmp_path: Path) -> None:
    from tenant_stack.gate import Tokens

    path = tmp_path / "t.yaml"
    assert len(Tokens(path)) == 0  # no file yet: no tenant
    write_tokens(path, {A: token_digest("one")})
    tokens = Tokens(path)
    assert tokens.tenant_of("Bearer one") == A
    path.write_text("tenants: [not, a, mapping]\n")
    assert tokens.tenant_of("Bearer one") == A and not tokens.last_ok
    write_tokens(path, {B: token_digest("two")})
    assert tokens.tenant_of("Bearer one") is None and tokens.tenant_of("Bearer two") == B
    assert tokens.last_ok and tokens.reloads_failed == 1
