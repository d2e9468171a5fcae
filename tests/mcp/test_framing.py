"""What the MCP server reads is what `capfence mcp-proxy` decided.

A differential test of framing: lines, hand-made and random (bare CR, CRLF,
U+2028 and U+0085 inside strings, nested objects and arrays, batches, calls
hidden in other messages), go through the proxy to `framing_server.py`, an
SDK server that logs every message the official SDK's stdio reader hands it.
For each line, the messages the SDK read must equal the messages the proxy
decided: none when the proxy refused the line, else exactly the one JSON
value the proxy parsed. Every `tools/call` the server read must be one the
ledger records as allowed. Needs CAPFENCE_BIN.
"""

import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import mcp_types as types
import pytest

HERE = Path(__file__).resolve().parent
CAPFENCE = os.environ.get("CAPFENCE_BIN", "")

# The attack from the report: one line the proxy would once have relayed as
# one harmless object; a server reading universal newlines splits it at the
# bare CRs and executes the call inside.
SMUGGLED = (
    b'{"x":\r{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"transfer_funds",'
    b'"arguments":{"amount":99999,"destination":"attacker-1"}}}\r}'
)
IN_A_PING = (
    b'{"jsonrpc":"2.0","id":8,"method":"ping","params":{"a":\r{"jsonrpc":"2.0","id":9,'
    b'"method":"tools/call","params":{"name":"transfer_funds","arguments":{"amount":99999,'
    b'"destination":"attacker-1"}}}\r}}'
)


def sdk_read(raw: bytes) -> list:
    """What the SDK's stdio server hands its session for these bytes: the
    same text layer (UTF-8, errors replaced, universal newlines) and the same
    validation, one item per line."""
    seen = []
    for line in io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8", errors="replace"):
        try:
            message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
        except Exception as exc:  # the SDK hands the session the exception
            seen.append({"invalid": type(exc).__name__})
            continue
        seen.append(json.loads(message.model_dump_json(by_alias=True, exclude_unset=True)))
    return seen


def is_tool_call(message: dict) -> bool:
    return message.get("method") == "tools/call"


def refused_by_proxy(answer: dict) -> bool:
    error = answer.get("error") or {}
    if error.get("code") in (-32700, -32600):
        return True
    result = answer.get("result") or {}
    content = result.get("content") or [{}]
    return bool(result.get("isError")) and str(content[0].get("text", "")).startswith("CapFence")


def through_proxy(tmp_path, cases: list[bytes]):
    """Sends each case (one line, its line end included) and after it a
    sentinel ping; returns, per case, the proxy's answers and what the server
    read, and the ledger's records."""
    state, log = tmp_path / "state", tmp_path / "server.log"
    proc = subprocess.Popen(
        [
            CAPFENCE, "--state", str(state), "mcp-proxy",
            "--policy", str(HERE / "policy.yaml"),
            "--actor", "treasury-agent", "--environment", "production",
            "--", sys.executable, str(HERE / "framing_server.py"), str(log),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    answers = []
    try:
        for k, case in enumerate(cases):
            sentinel = json.dumps({"jsonrpc": "2.0", "id": f"sentinel-{k}", "method": "ping"})
            proc.stdin.write(case + sentinel.encode() + b"\n")
            proc.stdin.flush()
            mine = []
            while True:
                line = proc.stdout.readline()
                assert line, f"the proxy ended during case {k}: {case!r}"
                answer = json.loads(line)
                if answer.get("id") == f"sentinel-{k}":
                    break
                mine.append(answer)
            answers.append(mine)
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    per_case, current = [], []
    # Split at "\n" only: the log holds strings with U+2028, which
    # str.splitlines would split at.
    for line in filter(None, log.read_text(encoding="utf-8").split("\n")):
        message = json.loads(line)
        if str(message.get("id", "")).startswith("sentinel-"):
            per_case.append(current)
            current = []
        else:
            current.append(message)
    assert len(per_case) == len(cases) and not current
    audit = subprocess.run(
        [CAPFENCE, "--state", str(state), "audit", "log", "--json"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    records = [json.loads(r) for r in audit.stdout.split("\n") if r.strip()]
    # The ledger's first record activates the proxy's policy (once it
    # records anything); the rest are the calls.
    if records:
        assert records[0]["decision"] == "activate", records[0]
        records = records[1:]
    assert all(r["decision"] != "activate" for r in records)
    verified = subprocess.run([CAPFENCE, "--state", str(state), "verify"], capture_output=True, timeout=60)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    return answers, per_case, records


def check(cases, answers, seen, records):
    """The property: per case, the SDK read exactly what the proxy decided."""
    for case, mine, read in zip(cases, answers, seen):
        line = case[:-1]  # the "\n"
        if any(refused_by_proxy(a) for a in mine):
            assert read == [], f"refused, yet the server read {read} from {case!r}"
            continue
        decided = json.loads(line.decode("utf-8"))
        expected = sdk_read(json.dumps(decided).encode() + b"\n")
        assert read == expected, f"{case!r}: the proxy decided {decided}, the server read {read}"
    # Every call the server read is one the ledger allowed, in order.
    calls = [m for read in seen for m in read if is_tool_call(m)]
    allowed = [r for r in records if r["decision"] == "allow" and r["capability"] == "payments.transfer"]
    assert len(calls) == len(allowed), (calls, allowed)


@pytest.fixture(autouse=True)
def need_binary():
    assert CAPFENCE and Path(CAPFENCE).exists(), "set CAPFENCE_BIN to the capfence binary"


def test_the_reported_smuggling_lines_are_refused_and_nothing_runs(tmp_path):
    cases = [SMUGGLED + b"\n", IN_A_PING + b"\n"]
    # Without the proxy, the SDK's reader finds the hidden call in each line.
    for case in cases:
        assert any(is_tool_call(m) for m in sdk_read(case)), case
    answers, seen, records = through_proxy(tmp_path, cases)
    assert seen == [[], []]
    for mine in answers:
        assert len(mine) == 1 and mine[0]["error"]["code"] == -32600, mine
        assert "U+000D" in mine[0]["error"]["message"]
    assert answers[1][0]["id"] == 8
    assert not [r for r in records if r["decision"] == "allow"]
    check(cases, answers, seen, records)


def test_hand_made_framings(tmp_path):
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "transfer_funds", "arguments": {"amount": 120, "destination": "vendor-corp-123"}}}
    text = json.dumps(call)
    cases = [
        text.encode() + b"\r\n",  # CRLF: one message, decided and read
        text.replace(", ", ",\r ").encode() + b"\n",  # bare CR as whitespace
        text.replace("vendor-corp-123", "vendor\u2028corp").encode() + b"\n",  # raw U+2028 in a string
        text.replace("vendor-corp-123", "vendor\u0085corp").encode() + b"\n",  # raw NEL in a string
        text.replace("vendor-corp-123", "vendor\\u2028corp").encode() + b"\n",  # escaped: fine
        b'[{"jsonrpc":"2.0","id":2,"method":"ping"},{"jsonrpc":"2.0","id":3,"method":"ping"}]\n',
        b'{"jsonrpc":"2.0","id":4,"method":"ping","params":{"a":[{"b":[1,{"c":"\\r"}]}]}}\n',
        b'{"jsonrpc":"2.0","method":"notifications/initialized"}\r\n',
        b'{"jsonrpc":"2.0","id":5,"method":"ping"}\r\r\n',
    ]
    answers, seen, records = through_proxy(tmp_path, cases)
    check(cases, answers, seen, records)
    assert [len(s) for s in seen] == [1, 0, 0, 0, 1, 1, 1, 1, 0]
    assert seen[0][0]["params"]["arguments"]["amount"] == 120
    # An escaped U+2028 is decided, not read as a line end: 120 to an
    # unknown account is allowed by this policy, and the server reads the
    # same string.
    assert any(refused_by_proxy(a) for a in answers[4]) is False


def random_case(rng: random.Random, k: int) -> bytes:
    """A random message, written with random whitespace (some of it bare CR)
    and random raw line-end characters inside strings."""
    def text(s: str) -> str:
        out = json.dumps(s, ensure_ascii=rng.random() < 0.5)
        return out

    gaps = ["", "", " ", "\t", "  "] + (["\r"] if rng.random() < 0.3 else [])

    def write(value) -> str:
        gap = lambda: rng.choice(gaps)  # noqa: E731
        if isinstance(value, dict):
            items = [gap() + text(k) + gap() + ":" + gap() + write(v) + gap() for k, v in value.items()]
            return "{" + ",".join(items) + "}"
        if isinstance(value, list):
            return "[" + ",".join(gap() + write(v) + gap() for v in value) + "]"
        if isinstance(value, str):
            return text(value)
        return json.dumps(value)

    amount = rng.choice([120, 120.5, 2500, 15000, 99999, 0.25])
    destination = rng.choice(["vendor-corp-123", "attacker-1", "v\u2028x", "v\u0085x", "v\u2029x", "vendor-9"])
    shapes = [
        {"jsonrpc": "2.0", "id": k, "method": "ping"},
        {"jsonrpc": "2.0", "id": k, "method": "tools/call",
         "params": {"name": "transfer_funds", "arguments": {"amount": amount, "destination": destination}}},
        {"jsonrpc": "2.0", "id": k, "method": "ping", "params": {"nested": [{"a": [destination, amount]}]}},
        [{"jsonrpc": "2.0", "id": k, "method": "ping"}, {"jsonrpc": "2.0", "method": "notifications/x"}],
        {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"note": destination}},
    ]
    line = write(rng.choice(shapes))
    return (line + rng.choice(["\n", "\r\n"])).encode()


def test_random_framings_agree_with_the_sdk_reader(tmp_path):
    rng = random.Random(20261206)
    cases = [random_case(rng, k) for k in range(150)]
    answers, seen, records = through_proxy(tmp_path, cases)
    check(cases, answers, seen, records)
    # The generator reached both sides: lines refused and calls that ran.
    assert any(any(refused_by_proxy(a) for a in mine) for mine in answers)
    assert any(is_tool_call(m) for read in seen for m in read)


def test_a_call_that_cannot_be_decided_is_recorded_with_who_sent_it(tmp_path):
    cases = [
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"no such tool!"}}\n',
        b'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"transfer_funds","arguments":[1]}}\n',
    ]
    answers, seen, records = through_proxy(tmp_path, cases)
    check(cases, answers, seen, records)
    assert len(records) == 2
    for record, tool in zip(records, ["no such tool!", "transfer_funds"]):
        assert record["decision"] == "deny"
        assert record["actor"] == "treasury-agent"
        assert record["environment"] == "production"
        assert tool in json.dumps(record["payload"]), record
    assert records[0]["capability"] in ("", None)
    assert records[1]["capability"] == "payments.transfer"
