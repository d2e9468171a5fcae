"""`capfence mcp-proxy` driven by the official MCP Python SDK's own stdio
client, in front of a server written with the same SDK.

The case study's three scenarios go through the proxy as MCP tool calls; the
held transfer is approved with the `capfence` CLI and retried; the bank's file
must hold exactly the authorized transfers and `capfence verify` must pass.
Needs CAPFENCE_BIN (the `capfence` binary); `.ci/run` and
`runtime/tests/it/pytest.rs` set it.
"""

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

HERE = Path(__file__).resolve().parent
CAPFENCE = os.environ.get("CAPFENCE_BIN", "")


def capfence(state, *args):
    return subprocess.run(
        [CAPFENCE, "--state", str(state), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def proxied(state, ledger, *extra):
    return StdioServerParameters(
        command=CAPFENCE,
        args=[
            "--state", str(state),
            "mcp-proxy",
            "--policy", str(HERE / "policy.yaml"),
            "--actor", "treasury-agent",
            "--environment", "production",
            *extra,
            "--",
            sys.executable, str(HERE / "bank_server.py"), str(ledger),
        ],
    )


def text_of(result):
    return " ".join(c.text for c in result.content if getattr(c, "text", None))


@pytest.fixture(autouse=True)
def need_binary():
    assert CAPFENCE and Path(CAPFENCE).exists(), "set CAPFENCE_BIN to the capfence binary"


def test_the_case_study_through_the_proxy(tmp_path):
    state, ledger = tmp_path / "state", tmp_path / "bank.txt"

    async def first_session():
        async with stdio_client(proxied(state, ledger)) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                names = sorted(t.name for t in (await session.list_tools()).tools)
                assert names == [
                    "confirm_vendor", "crash", "pay", "read_balance", "routed_transfer", "transfer_funds",
                    "wipe_ledger",
                ]

                # Scenario 1: a safe automated transfer goes through.
                safe = await session.call_tool(
                    "transfer_funds", {"amount": 120.0, "destination": "vendor-corp-123"}
                )
                assert not safe.is_error, text_of(safe)
                assert "transferred $120.00 to vendor-corp-123" in text_of(safe)

                # Scenario 2: the over-limit exfiltration is refused, with why.
                bad = await session.call_tool(
                    "transfer_funds",
                    {"amount": 15000.0, "destination": "malicious-attacker-789"},
                )
                assert bad.is_error
                assert text_of(bad).startswith("CapFence deny: ")
                assert "deny[0]" in text_of(bad)

                # Scenario 3: above 500 waits for a human; the ticket is named.
                held = await session.call_tool(
                    "transfer_funds",
                    {"amount": 2500.0, "destination": "strategic-partner-456"},
                )
                assert held.is_error
                assert text_of(held).startswith("CapFence require_approval: ")
                tickets = set(re.findall(r"\bT-[0-9]+\b", text_of(held)))
                assert len(tickets) == 1, text_of(held)
                ticket = tickets.pop()
                assert f"capfence approvals approve {ticket}" in text_of(held)

                # A tool no rule allows is refused; one that falls back to
                # mcp.<tool> and is allowed goes through.
                wipe = await session.call_tool("wipe_ledger", {})
                assert wipe.is_error and "default deny" in text_of(wipe)
                balance = await session.call_tool("read_balance", {})
                assert not balance.is_error and "1,000,000.00" in text_of(balance)
                return ticket

    ticket = asyncio.run(first_session())
    assert ledger.read_text() == "120.0 vendor-corp-123\n"

    # The operator approves with the CLI; the same call then goes through once.
    approved = capfence(state, "approvals", "approve", ticket, "--by", "cfo")
    assert approved.returncode == 0, approved.stderr + approved.stdout

    async def retry():
        async with stdio_client(proxied(state, ledger)) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                args = {"amount": 2500.0, "destination": "strategic-partner-456"}
                again = await session.call_tool("transfer_funds", args)
                assert not again.is_error, text_of(again)
                once_more = await session.call_tool("transfer_funds", args)
                assert once_more.is_error and "require_approval" in text_of(once_more)

    asyncio.run(retry())
    assert ledger.read_text() == (
        "120.0 vendor-corp-123\n2500.0 strategic-partner-456\n"
    )
    verified = capfence(state, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_the_answer_is_the_calls_outcome(tmp_path):
    """An authorized call's answer is recorded as its outcome before the
    agent sees it: a result is executed (with the rail reference and amount
    sent from its structured content), an error result is failed."""
    state, ledger = tmp_path / "state", tmp_path / "bank.txt"

    async def session():
        async with stdio_client(proxied(state, ledger)) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                paid = await session.call_tool("pay", {"amount": 100.0, "destination": "vendor-corp-123"})
                assert not paid.is_error, text_of(paid)
                closed = await session.call_tool("pay", {"amount": 200.0, "destination": "closed-acct"})
                assert closed.is_error and "account closed" in text_of(closed)
                refused = await session.call_tool("pay", {"amount": 20000.0, "destination": "x"})
                assert refused.is_error and text_of(refused).startswith("CapFence deny")

    asyncio.run(session())
    log = capfence(state, "audit", "log", "--json")
    records = [json.loads(line) for line in log.stdout.splitlines()]
    outcomes = [r for r in records if r["kind"] == "outcome"]
    assert [o["payload"]["outcome"] for o in outcomes] == ["executed", "failed"], outcomes
    assert outcomes[0]["payload"]["reference"] == "RAIL-100"
    assert outcomes[0]["payload"]["amount"] == "99.5"
    assert "account closed" in outcomes[1]["payload"]["error"]
    # Each follows its own allowed call; the refused one has none.
    by_seq = {r["seq"]: r for r in records}
    for o in outcomes:
        call = by_seq[int(o["approval_id"].removeprefix("D-"))]
        assert call["decision"] == "allow" and call["seq"] < o["seq"]
    verified = capfence(state, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_hide_denied_drops_the_tools_no_input_can_pass(tmp_path):
    async def listed(*extra):
        params = proxied(tmp_path / "state", tmp_path / "bank.txt", *extra)
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return sorted(t.name for t in (await session.list_tools()).tools)

    # wipe_ledger (ledger.wipe) has no allow or require_approval rule.
    assert asyncio.run(listed("--hide-denied")) == [
        "confirm_vendor", "crash", "pay", "read_balance", "routed_transfer", "transfer_funds",
    ]
    assert asyncio.run(listed()) == [
        "confirm_vendor", "crash", "pay", "read_balance", "routed_transfer", "transfer_funds",
        "wipe_ledger",
    ]


def test_requests_and_notifications_from_the_server_reach_the_client(tmp_path):
    """Elicitation (a request the server sends to the client) and a log
    message (a notification) pass through the proxy both ways."""
    from mcp import types

    asked, logged = [], []

    async def elicit(context, params):
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"ok": True})

    async def log(params):
        logged.append(params.data)

    async def session():
        params = proxied(tmp_path / "state", tmp_path / "bank.txt")
        async with stdio_client(params) as (read, write):
            async with ClientSession(
                read, write, elicitation_callback=elicit, logging_callback=log
            ) as s:
                await s.initialize()
                return await s.call_tool("confirm_vendor", {"vendor": "vendor-corp-123"})

    result = asyncio.run(session())
    assert not result.is_error, text_of(result)
    assert text_of(result) == "vendor-corp-123 confirmed"
    assert asked == ["Is vendor-corp-123 a known vendor?"]
    assert logged == ["checking vendor-corp-123"]


def raw_proxy(state, ledger, *extra):
    params = proxied(state, ledger, *extra)
    return subprocess.Popen(
        [params.command, *params.args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def exchange(proc, line):
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())


INIT = json.dumps({
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "raw", "version": "0"}},
})


def test_a_line_that_is_not_json_gets_a_parse_error_and_nothing_else_changes(tmp_path):
    proc = raw_proxy(tmp_path / "state", tmp_path / "bank.txt")
    try:
        assert exchange(proc, INIT)["id"] == 1
        error = exchange(proc, "{not json")
        assert error["error"]["code"] == -32700 and error["id"] is None
        # Exact money from the JSON text: 500.000000000000000001 is above
        # 500 (a float would round it to 500.0 and allow it).
        held = exchange(
            proc,
            '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"transfer_funds",'
            '"arguments":{"amount":500.000000000000000001,"destination":"vendor-corp-123"}}}',
        )
        assert held["id"] == 2 and held["result"]["isError"] is True
        assert "require_approval" in held["result"]["content"][0]["text"]
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    assert not (tmp_path / "bank.txt").exists()


def test_a_client_that_goes_away_stops_the_server(tmp_path):
    proc = raw_proxy(tmp_path / "state", tmp_path / "bank.txt")
    assert exchange(proc, INIT)["id"] == 1
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0


def test_a_server_that_exits_answers_what_is_pending_and_ends_the_proxy(tmp_path):
    proc = raw_proxy(tmp_path / "state", tmp_path / "bank.txt")
    assert exchange(proc, INIT)["id"] == 1
    proc.stdin.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n")
    answer = exchange(proc, json.dumps({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "crash", "arguments": {}},
    }))
    assert answer["id"] == 7 and answer["error"]["code"] == -32603
    # The proxy ends with the server's status, the client still connected.
    assert proc.wait(timeout=30) == 3


def test_a_call_under_an_id_still_in_flight_is_refused(tmp_path):
    """Two calls under one id: the server's one answer would be taken for
    either, and a call's outcome read from the other's answer (a failed
    small call freeing the velocity room of a large one that moved). The
    second is refused while the first waits (here: on an elicitation the
    client never answers) and never reaches the server."""
    state, ledger = tmp_path / "state", tmp_path / "bank.txt"
    proc = raw_proxy(state, ledger)
    try:
        init = json.loads(INIT)
        init["params"]["capabilities"] = {"elicitation": {}}
        assert exchange(proc, json.dumps(init))["id"] == 1
        proc.stdin.write('{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
        waits = {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                 "params": {"name": "confirm_vendor", "arguments": {"vendor": "v"}}}
        pays = {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                "params": {"name": "transfer_funds", "arguments": {"amount": 10, "destination": "x"}}}
        proc.stdin.write(json.dumps(waits) + "\n" + json.dumps(pays) + "\n")
        proc.stdin.flush()
        seen = []
        while not any("error" in m for m in seen):
            seen.append(json.loads(proc.stdout.readline()))
        refused = next(m for m in seen if "error" in m)
        assert refused["id"] == 5 and refused["error"]["code"] == -32600
        assert "already waiting for its answer" in refused["error"]["message"]
        assert not ledger.exists()
        calls = [json.loads(l) for l in capfence(state, "audit", "log", "--json").stdout.splitlines()]
        assert [c["capability"] for c in calls if c["kind"] == "decision"] == ["mcp.confirm_vendor"]
    finally:
        proc.kill()
        proc.wait()


OVER_LIMIT = '"params":{"name":"transfer_funds","arguments":{"amount":15000,"destination":"attacker-1"}}'


def test_smuggling_shapes_never_reach_the_server_undecided(tmp_path):
    """A key given twice (the proxy and the server could read different
    methods or amounts), a batch carrying a call, and a call sent as a
    notification: none reaches the server without a decision."""
    state, ledger = tmp_path / "state", tmp_path / "bank.txt"
    proc = raw_proxy(state, ledger)
    try:
        assert exchange(proc, INIT)["id"] == 1
        proc.stdin.write('{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
        twice = exchange(
            proc, '{"jsonrpc":"2.0","id":3,"method":"ping","method":"tools/call",' + OVER_LIMIT + "}"
        )
        assert twice["id"] == 3 and twice["error"]["code"] == -32600
        assert "duplicate key `method`" in twice["error"]["message"]
        inner = exchange(
            proc,
            '{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"transfer_funds",'
            '"arguments":{"amount":100,"destination":"vendor-corp-123","amount":15000}}}',
        )
        assert inner["id"] == 4 and "duplicate key `amount`" in inner["error"]["message"]
        batch = exchange(proc, '[{"jsonrpc":"2.0","id":5,"method":"tools/call",' + OVER_LIMIT + "}]")
        assert batch["error"]["code"] == -32600
        # A call without an id: decided, refused, recorded, not answered.
        proc.stdin.write('{"jsonrpc":"2.0","method":"tools/call",' + OVER_LIMIT + "}\n")
        pong = exchange(proc, '{"jsonrpc":"2.0","id":6,"method":"ping"}')
        assert pong["id"] == 6 and "result" in pong
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    assert not ledger.exists()
    log = capfence(state, "audit", "log", "--json")
    records = [json.loads(line) for line in log.stdout.splitlines() if line.strip()]
    denied = [r for r in records if r["decision"] == "deny" and r["rule"] == "deny[0]"]
    assert len(denied) == 1, log.stdout
    assert capfence(state, "verify").returncode == 0
