"""Structured verdicts: every refusal carries its numbers in `detail`, the same
object through `capfence decide`, Python's `Verdict` and `Blocked`, and the
MCP refusal's `structuredContent`, all valid against the JSON schema that
docs/cli.md publishes (read from the doc itself, so the doc cannot drift).

Needs CAPFENCE_BIN (the `capfence` binary) and the `capfence` package in this
Python; `.ci/run` and `runtime/tests/it/pytest.rs` set both up.
"""

import asyncio
import datetime
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CAPFENCE = os.environ.get("CAPFENCE_BIN", "")
VELOCITY = ROOT / "policies" / "treasury_velocity.yaml"


def schema():
    doc = (ROOT / "docs" / "cli.md").read_text()
    found = re.search(r"```json verdict-schema\n(.*?)\n```", doc, re.S)
    assert found, "docs/cli.md lost its verdict schema block"
    return json.loads(found.group(1))


SCHEMA = schema()


def valid_verdict(line):
    jsonschema.validate(line, SCHEMA)
    return line


def valid_detail(detail):
    jsonschema.validate(detail, {"$ref": "#/$defs/detail", "$defs": SCHEMA["$defs"]})
    return detail


def when(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc
    )


def event(amount, destination="vendor-corp-123", resource="payments", action="transfer"):
    return {
        "actor": "agent-1",
        "resource": resource,
        "action": action,
        "environment": "production",
        "risk": "low",
        "payload": {"amount": amount, "destination": destination},
    }


def decide(state, lines):
    out = subprocess.run(
        [CAPFENCE, "--state", str(state), "decide", "--policy", str(VELOCITY)],
        input="".join(json.dumps(line) + "\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return [valid_verdict(json.loads(line)) for line in out.stdout.splitlines()]


@pytest.fixture(autouse=True)
def need_binary():
    assert CAPFENCE and Path(CAPFENCE).exists(), "set CAPFENCE_BIN to the capfence binary"


def test_the_schema_refuses_what_it_must():
    # The schema is a real check, not `{}`: a verdict missing its detail, a
    # float amount, or an unknown cause fails it.
    good = {
        "authorized": False, "decision": "deny", "reason": "r", "rule": None,
        "approval_id": None, "seq": 3,
        "detail": {"cause": "default_deny", "rule": None, "conditions": [], "limits": [],
                   "windows": [], "malformed": None, "ticket": None, "grant": None},
    }
    valid_verdict(good)
    for broken in (
        {k: v for k, v in good.items() if k != "detail"},
        {**good, "seq": 0},
        {**good, "detail": {**good["detail"], "cause": "vibes"}},
        {**good, "detail": {**good["detail"], "limits": [
            {"field": "amount", "op": ">", "limit": 10000.0, "value": "1"}]}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, SCHEMA)


def test_decide_lines_carry_limits_windows_tickets_and_faults(tmp_path):
    state = tmp_path / "state"
    before = datetime.datetime.now(datetime.timezone.utc)
    first, second, held, over, bad, unknown = decide(state, [
        event("400"), event("400"), event("400"), event("20000"), event("lots"),
        event("1", resource="ledger", action="wipe"),
    ])
    assert first["authorized"] and first["detail"]["cause"] == "rule"
    assert {"field": "amount", "op": "<=", "limit": "500", "value": "400"} in first["detail"]["limits"]

    # The third 400 in 24h breaks the 1000 cap: the window says how much is
    # used, the cap, and when the oldest counted call (the first) leaves.
    d = held["detail"]
    assert held["decision"] == "require_approval" and d["rule"] == "daily-sum"
    [window] = d["windows"]
    assert (window["total"], window["op"], window["limit"]) == ("1200", ">", "1000")
    assert (window["sum"], window["per"], window["seconds"]) == ("amount", ["actor", "destination"], 86400)
    oldest, frees = when(window["oldest_at"]), when(window["frees_at"])
    assert before - datetime.timedelta(seconds=1) <= oldest <= datetime.datetime.now(datetime.timezone.utc)
    assert frees - oldest == datetime.timedelta(hours=24)
    ticket = d["ticket"]
    assert ticket["id"] == held["approval_id"] and ticket["state"] == "pending"
    assert ticket["quorum"] == 1 and ticket["decided_by"] == []
    assert when(ticket["expires_at"]) > oldest

    assert over["detail"]["limits"] == [{"field": "amount", "op": ">", "limit": "10000", "value": "20000"}]
    assert over["detail"]["conditions"] == ["amount > 10000.0"]
    assert bad["detail"]["cause"] == "malformed"
    assert bad["detail"]["malformed"] == {"field": "amount", "fault": "wrong_type", "expected": "number"}
    assert unknown["detail"]["cause"] == "default_deny" and unknown["detail"]["rule"] is None

    # Approved, the same call goes through once; the ticket says who signed.
    approve = subprocess.run(
        [CAPFENCE, "--state", str(state), "approvals", "approve", held["approval_id"], "--by", "alice"],
        capture_output=True, text=True, timeout=60,
    )
    assert approve.returncode == 0, approve.stderr
    [through] = decide(state, [event("400")])
    assert through["authorized"] and through["detail"]["ticket"]["state"] == "approved"
    assert through["detail"]["ticket"]["decided_by"] == ["alice"]


def test_python_verdict_and_blocked_carry_the_same_detail(tmp_path):
    import capfence
    from capfence import ActionEvent, ActionRuntime, Blocked, Context, gate

    runtime = ActionRuntime.from_policy(str(VELOCITY), state_dir=str(tmp_path / "state"))
    verdict = runtime.execute(ActionEvent.create(
        actor="agent-1", action="transfer", resource="payments", environment="production",
        risk="low", payload={"amount": "20000", "destination": "vendor-corp-123"},
    ))
    detail = valid_detail(verdict.detail)
    assert detail["limits"] == [{"field": "amount", "op": ">", "limit": "10000", "value": "20000"}]

    @gate("payments.transfer")
    def transfer(amount, destination):
        return "sent"

    with Context(runtime, actor="agent-1"):
        with pytest.raises(Blocked) as blocked:
            transfer(amount="700", destination="vendor-corp-456")
    held = valid_detail(blocked.value.detail)
    assert held["ticket"]["id"] == blocked.value.ticket
    assert held["limits"] == [{"field": "amount", "op": ">", "limit": "500", "value": "700"}]
    assert isinstance(capfence.Verdict, type)


def test_an_mcp_refusal_carries_the_verdict_as_structured_content(tmp_path):
    params = StdioServerParameters(
        command=CAPFENCE,
        args=[
            "--state", str(tmp_path / "state"), "mcp-proxy",
            "--policy", str(HERE / "policy.yaml"),
            "--actor", "treasury-agent", "--environment", "production", "--",
            sys.executable, str(HERE / "bank_server.py"), str(tmp_path / "bank.txt"),
        ],
    )

    async def session():
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                bad = await s.call_tool("transfer_funds", {"amount": 20000.0, "destination": "x-1"})
                held = await s.call_tool("transfer_funds", {"amount": 700, "destination": "vendor-corp-123"})
                return bad, held

    bad, held = asyncio.run(session())
    assert bad.is_error and held.is_error
    refused = valid_verdict(bad.structured_content)
    assert refused["decision"] == "deny"
    assert refused["detail"]["limits"] == [
        {"field": "amount", "op": ">", "limit": "10000", "value": "20000"}
    ]
    waiting = valid_verdict(held.structured_content)
    assert waiting["detail"]["ticket"]["id"] == waiting["approval_id"]
    assert waiting["approval_id"] in " ".join(c.text for c in held.content)
