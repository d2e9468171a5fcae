"""`capfence serve --mcp bank=URL`: the official MCP Python SDK's
streamable-HTTP client calls tools through `/mcp/bank`, in front of a
server written with the same SDK and served over streamable HTTP.

The case study's three scenarios go through the gateway; the actor of every
call is the agent whose token came with it; refusals are tool results the
server never sees; the held transfer is approved with the CLI and retried;
answers are recorded as outcomes; server requests (elicitation) travel the
event streams; `/metrics` counts the decisions. Needs CAPFENCE_BIN.
"""

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import httpx2
import pytest
from mcp import types
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

HERE = Path(__file__).resolve().parent
CAPFENCE = os.environ.get("CAPFENCE_BIN", "")


def capfence(state, *args):
    return subprocess.run(
        [CAPFENCE, "--state", str(state), *args], capture_output=True, text=True, timeout=60
    )


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, proc):
    for _ in range(200):
        assert proc.poll() is None, "the MCP server exited"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def new_agent(state, name):
    made = capfence(state, "agents", "new", "--name", name)
    assert made.returncode == 0, made.stderr
    token, line = made.stdout.splitlines()
    return token, line


@pytest.fixture
def gateway(tmp_path):
    """The bank over streamable HTTP, `capfence serve` in front of it, and
    two agents' tokens."""
    assert CAPFENCE and Path(CAPFENCE).exists(), "set CAPFENCE_BIN to the capfence binary"
    state, ledger = tmp_path / "state", tmp_path / "bank.txt"
    port = free_port()
    bank = subprocess.Popen(
        [sys.executable, str(HERE / "bank_server.py"), str(ledger), "--http", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    procs = [bank]
    try:
        wait_for_port(port, bank)
        treasury, line1 = new_agent(state, "treasury-agent")
        other, line2 = new_agent(state, "other-agent")
        agents = tmp_path / "agents.txt"
        agents.write_text(line1 + "\n" + line2 + "\n")
        agents.chmod(0o600)
        serve = subprocess.Popen(
            [CAPFENCE, "--state", str(state), "serve", "--policy", str(HERE / "policy.yaml"),
             "--listen", "127.0.0.1:0", "--agents", str(agents),
             "--mcp", f"bank=http://127.0.0.1:{port}/mcp"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        procs.append(serve)
        first = serve.stdout.readline().strip()
        assert first.startswith("listening on http://"), first + serve.stderr.read()
        yield {
            "url": first.removeprefix("listening on "),
            "state": state,
            "ledger": ledger,
            "treasury": treasury,
            "other": other,
        }
    finally:
        for p in procs:
            p.kill()
            p.wait()


def client(gw, token, modern=False, **callbacks):
    """A session context: the SDK's streamable-HTTP client with a bearer
    token; `modern`: the 2026-07-28 protocol (`server/discover`, no session,
    routing headers), else the initialize handshake."""
    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx2.Timeout(30, read=60),
    )

    class Session:
        async def __aenter__(self):
            self.http = await http.__aenter__()
            self.transport = streamable_http_client(gw["url"] + "/mcp/bank", http_client=self.http)
            read, write = await self.transport.__aenter__()
            self.session = ClientSession(read, write, **callbacks)
            s = await self.session.__aenter__()
            if modern:
                await s.discover()
            else:
                await s.initialize()
            return s

        async def __aexit__(self, *exc):
            await self.session.__aexit__(*exc)
            await self.transport.__aexit__(*exc)
            await self.http.__aexit__(*exc)

    return Session()


def text_of(result):
    return " ".join(c.text for c in result.content if getattr(c, "text", None))


def records(state):
    log = capfence(state, "audit", "log", "--json")
    assert log.returncode == 0, log.stderr
    return [json.loads(line) for line in log.stdout.splitlines()]


def test_the_case_study_through_the_http_gateway(gateway):
    gw = gateway

    async def first_session():
        async with client(gw, gw["treasury"]) as s:
            names = sorted(t.name for t in (await s.list_tools()).tools)
            assert "transfer_funds" in names and "wipe_ledger" in names
            safe = await s.call_tool("transfer_funds", {"amount": 120.0, "destination": "vendor-corp-123"})
            assert not safe.is_error, text_of(safe)
            assert "transferred $120.00 to vendor-corp-123" in text_of(safe)
            bad = await s.call_tool("transfer_funds", {"amount": 15000.0, "destination": "malicious-attacker-789"})
            assert bad.is_error and text_of(bad).startswith("CapFence deny: ")
            assert bad.structured_content["decision"] == "deny"
            held = await s.call_tool("transfer_funds", {"amount": 2500.0, "destination": "strategic-partner-456"})
            assert held.is_error and text_of(held).startswith("CapFence require_approval: ")
            tickets = set(re.findall(r"\bT-[0-9]+\b", text_of(held)))
            assert len(tickets) == 1, text_of(held)
            wipe = await s.call_tool("wipe_ledger", {})
            assert wipe.is_error and "default deny" in text_of(wipe)
            return tickets.pop()

    ticket = asyncio.run(first_session())
    # The refused calls never reached the bank.
    assert gw["ledger"].read_text() == "120.0 vendor-corp-123\n"

    approved = capfence(gw["state"], "approvals", "approve", ticket, "--by", "cfo")
    assert approved.returncode == 0, approved.stderr + approved.stdout

    async def retry():
        async with client(gw, gw["treasury"]) as s:
            args = {"amount": 2500.0, "destination": "strategic-partner-456"}
            again = await s.call_tool("transfer_funds", args)
            assert not again.is_error, text_of(again)
            once_more = await s.call_tool("transfer_funds", args)
            assert once_more.is_error and "require_approval" in text_of(once_more)

    asyncio.run(retry())
    assert gw["ledger"].read_text() == "120.0 vendor-corp-123\n2500.0 strategic-partner-456\n"

    # Every call is the authenticated agent's.
    calls = [r for r in records(gw["state"]) if r["kind"] == "decision"]
    assert len(calls) == 6, calls
    assert {r["actor"] for r in calls} == {"treasury-agent"}
    assert [r["decision"] for r in calls] == [
        "allow", "deny", "require_approval", "deny", "allow", "require_approval",
    ]
    # Each allowed transfer's answer is its outcome.
    outcomes = [r for r in records(gw["state"]) if r["kind"] == "outcome"]
    assert [o["payload"]["outcome"] for o in outcomes] == ["executed", "executed"]
    verified = capfence(gw["state"], "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # /metrics counts them.
    with urllib.request.urlopen(gw["url"] + "/metrics", timeout=30) as answer:
        metrics = answer.read().decode()
    allowed = re.search(
        r'capfence_decisions_total\{capability="payments.transfer",decision="allow"\} (\d+)', metrics
    )
    assert allowed and int(allowed.group(1)) == 2, metrics
    held = re.search(
        r'capfence_decisions_total\{capability="payments.transfer",decision="require_approval"\} (\d+)',
        metrics,
    )
    assert held and int(held.group(1)) == 2, metrics


def test_outcomes_and_server_requests_travel_the_event_streams(gateway):
    gw = gateway
    asked, logged = [], []

    async def elicit(context, params):
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"ok": True})

    async def log(params):
        logged.append(params.data)

    async def session():
        async with client(gw, gw["treasury"], elicitation_callback=elicit, logging_callback=log) as s:
            confirmed = await s.call_tool("confirm_vendor", {"vendor": "vendor-corp-123"})
            paid = await s.call_tool("pay", {"amount": 100.0, "destination": "vendor-corp-123"})
            closed = await s.call_tool("pay", {"amount": 200.0, "destination": "closed-acct"})
            return confirmed, paid, closed

    confirmed, paid, closed = asyncio.run(session())
    assert not confirmed.is_error and text_of(confirmed) == "vendor-corp-123 confirmed"
    assert asked == ["Is vendor-corp-123 a known vendor?"]
    assert logged == ["checking vendor-corp-123"]
    assert not paid.is_error, text_of(paid)
    assert closed.is_error and "account closed" in text_of(closed)
    outcomes = [r for r in records(gw["state"]) if r["kind"] == "outcome"]
    by_tool = [(o["payload"]["outcome"], o["payload"].get("reference")) for o in outcomes]
    assert by_tool == [("executed", None), ("executed", "RAIL-100"), ("failed", None)], outcomes
    assert outcomes[1]["payload"]["amount"] == "99.5"


def test_the_modern_protocol_and_its_mirrored_headers(gateway):
    """2026-07-28: each request carries its routing headers, and an argument
    the tool's schema marks (routed_transfer's destination) travels in an
    Mcp-Param-* header the SDK's server holds to the body. The gateway
    rebuilds them from what it decided; the server accepts them."""
    gw = gateway

    async def session():
        async with client(gw, gw["treasury"], modern=True) as s:
            names = {t.name for t in (await s.list_tools()).tools}
            assert "routed_transfer" in names
            routed = await s.call_tool("routed_transfer", {"amount": 130.0, "destination": "vendor-corp-123"})
            big = await s.call_tool("routed_transfer", {"amount": 13000.0, "destination": "vendor-corp-123"})
            return routed, big

    routed, big = asyncio.run(session())
    assert not routed.is_error, text_of(routed)
    assert text_of(routed) == "routed $130.00 to vendor-corp-123"
    assert big.is_error and text_of(big).startswith("CapFence deny: ")
    assert gw["ledger"].read_text() == "130.0 vendor-corp-123\n"
    calls = [r for r in records(gw["state"]) if r["kind"] == "decision"]
    assert [(r["actor"], r["decision"]) for r in calls] == [
        ("treasury-agent", "allow"), ("treasury-agent", "deny"),
    ]


def raw(gw, token, body, session=None, extra=None):
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if session:
        headers["Mcp-Session-Id"] = session
    headers.update(extra or {})
    request = urllib.request.Request(
        gw["url"] + "/mcp/bank", data=body.encode(), method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode()


INIT = json.dumps({
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "raw", "version": "0"}},
})


def test_no_token_no_call_and_sessions_stay_with_their_agent(gateway):
    gw = gateway
    call = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                       "params": {"name": "transfer_funds",
                                  "arguments": {"amount": 10.0, "destination": "x"}}})
    status, headers, _ = raw(gw, None, call)
    assert status == 401 and headers.get("www-authenticate") == "Bearer"
    status, _, _ = raw(gw, "cfa_not-a-token", call)
    assert status == 401
    refused = [r for r in records(gw["state"]) if r["kind"] == "decision"]
    assert len(refused) == 2 and all(r["decision"] == "deny" for r in refused)
    assert all("without a valid agent token" in r["reason"] for r in refused)

    # treasury-agent opens a session; other-agent cannot use its id.
    status, headers, _ = raw(gw, gw["treasury"], INIT)
    assert status == 200
    session = headers["mcp-session-id"]
    status, _, body = raw(gw, gw["other"], call, session=session)
    assert status == 404 and "session not found" in body
    assert not gw["ledger"].exists()

    # A body with a key given twice is refused before any decision.
    twice = ('{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"transfer_funds",'
             '"arguments":{"amount":10.0,"amount":90000.0,"destination":"x"}}}')
    status, _, body = raw(gw, gw["treasury"], twice, session=session)
    assert status == 400 and "invalid request" in body
    assert not gw["ledger"].exists()
