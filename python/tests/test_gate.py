"""capfence.gate, signed approvals, capped grants and velocity limits from
Python: each test tries to get a call through that the policy refuses."""

import asyncio
import decimal
from pathlib import Path

import pytest

import capfence
from capfence import ActionRuntime, Blocked, Context, OperatorKey, gate

POLICY = """
deny:
  - capability: payments.transfer
    amount_gt: 10000
  - capability: payments.transfer
    destination_not_in: [vendor-corp-123, payroll-001]
require_approval:
  - capability: payments.transfer
    amount_gt: 500
allow:
  - capability: payments.transfer
    amount_lte: 500
  - capability: payments.batch
"""

SENT = []


@gate("payments.transfer")
def transfer(amount, destination="vendor-corp-123"):
    SENT.append((amount, destination))
    return f"sent {amount} to {destination}"


@gate("payments.transfer")
async def transfer_async(amount, destination="vendor-corp-123"):
    await asyncio.sleep(0)
    SENT.append((amount, destination))
    return f"sent {amount} to {destination}"


class Treasury:
    @gate("payments.transfer")
    def pay(self, amount, destination):
        SENT.append((amount, destination))
        return amount


@gate("payments.transfer")
def transfer_fields(**fields):
    SENT.append(fields)


@gate("payments.batch")
def batch(*amounts, **extra):
    return (amounts, extra)


@pytest.fixture
def rt(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    SENT.clear()
    return ActionRuntime.from_policy(str(policy), state_dir=str(tmp_path / "state"))


def agent(rt):
    return Context(rt, actor="treasury-agent", environment="production", risk="low")


def test_an_allowed_call_runs_and_a_refused_one_never_does(rt):
    with agent(rt):
        assert transfer(120) == "sent 120 to vendor-corp-123"
        with pytest.raises(Blocked) as denied:
            transfer(120, destination="attacker-iban")
        assert denied.value.decision == "deny"
        assert "destination" in denied.value.reason
        assert denied.value.ticket is None
        with pytest.raises(Blocked) as held:
            transfer(decimal.Decimal("500.01"))
        assert held.value.decision == "require_approval"
        assert held.value.ticket.startswith("T-")
    assert SENT == [(120, "vendor-corp-123")]
    # Every decision is on the chain: one allow, one deny, one held.
    assert rt.verify()[0] == 3 + 1 + 1  # the policy's activation, and the allowed call's outcome


def test_an_approved_ticket_lets_the_same_call_through_once(rt):
    with agent(rt):
        with pytest.raises(Blocked) as held:
            transfer(900)
        rt.approve(held.value.ticket, "cfo")
        assert transfer(900) == "sent 900 to vendor-corp-123"
        with pytest.raises(Blocked):
            transfer(900)
        # The ticket was for 900 to this destination, not for another amount.
        with pytest.raises(Blocked):
            transfer(901)
    assert SENT == [(900, "vendor-corp-123")]


def test_async_functions_are_gated_too(rt):
    async def main():
        with agent(rt):
            ok = await transfer_async(10)
            with pytest.raises(Blocked):
                await transfer_async(20_000)
            # Tasks started inside the block see the context.
            results = await asyncio.gather(*(transfer_async(i) for i in range(1, 6)))
            return ok, results

    ok, results = asyncio.run(main())
    assert ok == "sent 10 to vendor-corp-123" and len(results) == 5
    assert (20_000, "vendor-corp-123") not in SENT and len(SENT) == 6


def test_no_context_means_no_call(rt):
    with pytest.raises(capfence.NoContext):
        transfer(1)
    assert SENT == []
    # An explicit context works without a block, and is not a payload field.
    assert transfer(1, capfence_context=agent(rt)) == "sent 1 to vendor-corp-123"


def test_methods_skip_self_and_varargs_become_payload(rt):
    with agent(rt):
        assert Treasury().pay(10, "payroll-001") == 10
        with pytest.raises(Blocked):
            Treasury().pay(10, "attacker-iban")
        assert batch(1, 2, note="x") == ((1, 2), {"note": "x"})
        # **kwargs are payload fields of their own.
        transfer_fields(amount=10, destination="payroll-001")
        with pytest.raises(Blocked):
            transfer_fields(amount=20_000, destination="payroll-001")
        with pytest.raises(Blocked):
            transfer_fields(amount=10, destination="attacker-iban")


def test_arguments_are_the_payload_exactly(rt):
    with agent(rt):
        # A float beyond the threshold by one part in 10^13 is still over it.
        with pytest.raises(Blocked) as held:
            transfer(500.0000000001)
        assert held.value.decision == "require_approval"
        # bool is not an amount: malformed, denied.
        with pytest.raises(Blocked) as bad:
            transfer(True)
        assert bad.value.decision == "deny"
        # An argument of a type the payload cannot carry: the call does not run.
        with pytest.raises(ValueError):
            transfer(object())
    assert SENT == []


def test_a_bad_capability_or_reserved_parameter_is_refused_at_decoration():
    with pytest.raises(ValueError, match="resource.action"):
        gate("transfer")
    with pytest.raises(TypeError, match="capfence_context"):

        @gate("payments.transfer")
        def f(amount, capfence_context=None):
            return amount


SIGNED = """
approvers:
  cfo: {cfo}
  ops: {ops}
require_approval:
  - id: two-person
    capability: payments.transfer
    amount_gt: 5000
    approvals: 2
  - id: one-person
    capability: payments.transfer
    amount_gt: 500
allow:
  - capability: payments.transfer
    amount_lte: 500
"""


def signed_runtime(tmp_path):
    cfo, ops = OperatorKey.generate("cfo"), OperatorKey.generate("ops")
    policy = tmp_path / "signed.yaml"
    policy.write_text(SIGNED.format(cfo=cfo.public_key, ops=ops.public_key))
    rt = ActionRuntime.from_policy(str(policy), state_dir=str(tmp_path / "state"))
    return rt, cfo, ops


def test_signed_approvals_need_a_quorum_of_keys(tmp_path):
    rt, cfo, ops = signed_runtime(tmp_path)
    with agent(rt):
        with pytest.raises(Blocked) as held:
            transfer(6000)
        ticket = held.value.ticket
        # A name is not enough where the policy lists approvers.
        with pytest.raises(RuntimeError):
            rt.approve(ticket, "cfo")
        first = rt.approve_with_key(ticket, cfo)
        assert (first.status, first.approvals, first.needed) == ("pending", ["cfo"], 2)
        # The same approver twice counts once.
        with pytest.raises(RuntimeError):
            rt.approve_with_key(ticket, cfo)
        with pytest.raises(Blocked):
            transfer(6000)
        # A key with an approver's name but not the listed public key.
        with pytest.raises(RuntimeError):
            rt.approve_with_key(ticket, OperatorKey.generate("ops"))
        assert rt.approve_with_key(ticket, ops).status == "approved"
        assert transfer(6000) == "sent 6000 to vendor-corp-123"
    assert rt.verify()[0] > 0


def test_key_files_round_trip_and_stay_private(tmp_path):
    key = OperatorKey.generate("cfo")
    path = tmp_path / "cfo.key"
    key.write_new(str(path))
    assert OperatorKey.load(str(path)).public_key == key.public_key
    with pytest.raises(RuntimeError):
        key.write_new(str(path))  # never overwrites
    path.chmod(0o644)
    with pytest.raises(RuntimeError):
        OperatorKey.load(str(path))
    with pytest.raises(ValueError):
        OperatorKey.generate("bad name")


def test_a_signed_capped_grant_covers_only_what_it_caps(tmp_path):
    rt, cfo, _ = signed_runtime(tmp_path)
    grant = rt.grant(
        actor="treasury-agent", capability="payments.transfer",
        environment="production", duration_seconds=60, key=cfo,
        caps={"amount": "1000"}, uses=2,
    )
    assert grant.startswith("G-")
    with agent(rt):
        assert transfer(1000) and transfer(999.99)
        with pytest.raises(Blocked):  # uses spent
            transfer(600)
    grant2 = rt.grant(
        actor="treasury-agent", capability="payments.transfer",
        environment="production", duration_seconds=60, key=cfo,
        caps={"amount": decimal.Decimal("1000")},
    )
    with agent(rt):
        with pytest.raises(Blocked):  # over the cap
            transfer(1000.01)
        rt.revoke_with_key(grant2, cfo)
        with pytest.raises(Blocked):  # revoked
            transfer(700)
    with pytest.raises(ValueError):
        rt.grant(actor="a", capability="payments.transfer", environment="production",
                 duration_seconds=60, caps={"amount": True}, key=cfo)
    with pytest.raises(ValueError):
        rt.grant(actor="a", capability="payments.transfer", environment="production",
                 duration_seconds=60)
    with pytest.raises(RuntimeError):  # unsigned where approvers are listed
        rt.grant(actor="a", capability="payments.transfer", environment="production",
                 duration_seconds=60, granted_by="cfo")


VELOCITY = """
deny:
  - capability: payments.transfer
    amount_sum_gt: 1000
    window: 1h
allow:
  - capability: payments.transfer
    amount_lte: 500
"""


def test_split_transfers_hit_the_velocity_cap(tmp_path):
    policy = tmp_path / "velocity.yaml"
    policy.write_text(VELOCITY)
    rt = ActionRuntime.from_policy(str(policy), state_dir=str(tmp_path / "state"))
    with agent(rt):
        for _ in range(2):
            transfer(500)
        with pytest.raises(Blocked) as denied:
            transfer(0.01)
        assert denied.value.decision == "deny"
    # A second runtime on the same state shares the window.
    again = ActionRuntime.from_policy(str(policy), state_dir=str(tmp_path / "state"))
    with Context(again, actor="treasury-agent"):
        with pytest.raises(Blocked):
            transfer(1)
        # Another actor has a window of its own.
    with Context(again, actor="reconciler"):
        assert transfer(1)


def test_the_gate_example_in_docs_runs(tmp_path, monkeypatch, capsys):
    root = Path(__file__).resolve().parents[2]
    text = (root / "docs/python.md").read_text()
    section = text[text.index("## Gating tool functions"):]
    code = section[section.index("```python\n") + 10:]
    code = code[: code.index("```")]
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies/fintech_policy.yaml").write_text(
        (root / "policies/fintech_policy.yaml").read_text()
    )
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/python.md", "exec"), {})
    decision, _, rest = capsys.readouterr().out.strip().partition(" ")
    assert decision == "require_approval" and rest.endswith("T-1")


# What is decided is what runs: the body gets the values the runtime decided
# on, read from the objects' own storage, never through a method an argument
# can override, and never a second reading of the same input.


@gate("payments.transfer")
def transfer_positional(amount, /, destination, **meta):
    SENT.append((amount, destination, meta))


class LyingStr(str):
    def __str__(self):
        return "vendor-corp-123"

    def __repr__(self):
        return "'vendor-corp-123'"


class RoundingFloat(float):
    def __repr__(self):
        return f"{float(self):.2f}"

    def __str__(self):
        return f"{float(self):.2f}"


class LyingList(list):
    def __iter__(self):
        return iter([1, 2])


def test_a_keyword_that_shadows_a_positional_only_parameter_is_refused(rt):
    with agent(rt):
        with pytest.raises(TypeError, match="'amount'"):
            transfer_positional(15000.0, "vendor-corp-123", amount=100.0)
        # Other keywords are payload fields of their own.
        transfer_positional(100.0, "vendor-corp-123", memo="rent")
    assert SENT == [(100.0, "vendor-corp-123", {"memo": "rent"})]
    # The refused call was not decided: one record, the allowed one.
    assert rt.verify()[0] == 1 + 1 + 1  # the activation, and the allowed call's outcome


def test_values_are_read_from_their_data_not_their_methods(rt):
    import enum

    class Dest(str, enum.Enum):
        OK = "vendor-corp-123"
        ATT = "attacker-iban"

    with agent(rt):
        with pytest.raises(Blocked) as denied:
            transfer(10, LyingStr("attacker-iban"))
        assert denied.value.decision == "deny" and "destination" in denied.value.reason
        with pytest.raises(Blocked) as enum_denied:
            transfer(10, Dest.ATT)
        assert enum_denied.value.decision == "deny"
        # 500.004 is above 500 even when its repr says 500.00.
        with pytest.raises(Blocked) as held:
            transfer(RoundingFloat(500.004))
        assert held.value.decision == "require_approval"
        # Allowed: the body gets the plain value that was decided.
        transfer(RoundingFloat(12.5), Dest.OK)
    assert SENT == [(12.5, "vendor-corp-123")]
    amount, destination = SENT[0]
    assert type(amount) is float and type(destination) is str


def test_the_body_gets_a_copy_of_what_was_decided(rt):
    got = []

    @gate("payments.batch")
    def pay_many(items, options):
        got.append((items, options))

    items, options = LyingList([7, 8]), {"urgent": False}
    with agent(rt):
        pay_many(items, options)
    decided_items, decided_options = got[0]
    # The list's own storage, not what its __iter__ says; new containers.
    assert decided_items == [7, 8] and type(decided_items) is list
    assert decided_items is not items and decided_options is not options
    options["urgent"] = True
    assert decided_options == {"urgent": False}


def test_the_rust_intake_reads_values_from_their_data_too(rt):
    event = capfence.ActionEvent.create(
        actor="treasury-agent",
        action="transfer",
        resource="payments",
        payload={"amount": RoundingFloat(500.004), "destination": LyingStr("attacker-iban")},
    )
    verdict = rt.execute(event)
    assert verdict.decision == "deny" and "destination" in verdict.reason


def test_one_context_entered_by_two_tasks_and_two_threads(rt):
    import threading

    ctx = agent(rt)

    async def one(amount):
        with ctx:
            await asyncio.sleep(0)
            result = await transfer_async(amount)
            await asyncio.sleep(0)
        return result

    async def main():
        return await asyncio.gather(one(1), one(2), one(3))

    assert asyncio.run(main()) == [f"sent {a} to vendor-corp-123" for a in (1, 2, 3)]

    errors = []
    barrier = threading.Barrier(2)

    def worker(amount):
        try:
            with ctx:
                barrier.wait(timeout=10)
                transfer(amount)
                barrier.wait(timeout=10)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(a,)) for a in (4, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(a for a, _ in SENT) == [1, 2, 3, 4, 5]
    # Nested blocks still unwind in order.
    other = Context(rt, actor="other-agent")
    with ctx:
        with other:
            assert Context.current() is other
        assert Context.current() is ctx
    assert Context.current() is None
