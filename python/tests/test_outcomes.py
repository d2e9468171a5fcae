"""Outcomes from Python: a gated function's return is recorded as executed
(with `rail_reference` / `amount_sent` of the value it returns), its
exception as failed; a failed call releases what it held in a velocity
window; `ActionRuntime.record_outcome` refuses what the ledger refuses."""

import asyncio
import decimal

import pytest

import capfence
from capfence import ActionRuntime, Context, gate

VELOCITY = """
require_approval:
  - id: daily-sum
    capability: payments.transfer
    amount_sum_gt: 1000
    window: 24h
    per: [actor]
  - capability: payments.transfer
    amount_gt: 500
allow:
  - capability: payments.transfer
    amount_lte: 500
"""


class BankDown(Exception):
    pass


class Receipt:
    def __init__(self, reference, sent):
        self.rail_reference = reference
        self.amount_sent = sent


FAIL = {"next": False}


@gate("payments.transfer")
def pay(amount, destination="vendor-corp-123"):
    if FAIL["next"]:
        raise BankDown("the bank is down")
    return Receipt(f"BANK-{amount}", decimal.Decimal(amount) - 1)


@gate("payments.transfer")
async def pay_async(amount, destination="vendor-corp-123"):
    await asyncio.sleep(0)
    return Receipt(f"ASYNC-{amount}", None)


@pytest.fixture
def rt(tmp_path):
    policy = tmp_path / "velocity.yaml"
    policy.write_text(VELOCITY)
    FAIL["next"] = False
    return ActionRuntime.from_policy(str(policy), state_dir=str(tmp_path / "state"))


def test_a_failed_call_releases_its_room(rt):
    with Context(rt, actor="treasury-agent"):
        FAIL["next"] = True
        for _ in range(2):
            with pytest.raises(BankDown):
                pay(450)
        FAIL["next"] = False
        # Both failures released their 450: two more fit, a third does not.
        assert pay(450).rail_reference == "BANK-450"
        assert pay(450).rail_reference == "BANK-450"
        with pytest.raises(capfence.Blocked) as held:
            pay(450)
        assert held.value.decision == "require_approval"
    rt.verify()


def test_the_outcome_is_recorded_once_and_only_for_an_authorized_call(rt):
    verdict = rt.execute(
        capfence.ActionEvent.create(
            actor="treasury-agent", action="transfer", resource="payments",
            payload={"amount": 100, "destination": "vendor-corp-123"},
        )
    )
    assert verdict.authorized and verdict.seq is not None
    outcome_seq = rt.record_outcome(verdict.seq, "executed", reference="BANK-9", amount="99.99")
    assert outcome_seq == verdict.seq + 1
    with pytest.raises(capfence.InvalidState, match="already has its outcome"):
        rt.record_outcome(verdict.seq, "failed", error="late")
    with pytest.raises(capfence.InvalidState, match="not an authorized call"):
        rt.record_outcome(outcome_seq, "executed")
    with pytest.raises(capfence.NotFound):
        rt.record_outcome(10_000, "executed")
    with pytest.raises(ValueError, match="float"):
        rt.record_outcome(verdict.seq, "executed", amount=99.99)
    with pytest.raises(ValueError):
        rt.record_outcome(verdict.seq, "failed")
    with pytest.raises(ValueError):
        rt.record_outcome(verdict.seq, "maybe")


def test_the_gate_records_the_receipt(rt):
    with Context(rt, actor="treasury-agent"):
        receipt = pay(300)
    # The gate recorded the outcome: the call has one already.
    records, _ = rt.verify()
    assert records >= 3
    with pytest.raises(capfence.InvalidState, match=r"reference BANK-300, amount sent 299"):
        rt.record_outcome(records - 1, "executed")
    assert receipt.amount_sent == 299

    async def main():
        with Context(rt, actor="treasury-agent"):
            return await pay_async(20)

    assert asyncio.run(main()).rail_reference == "ASYNC-20"
    last, _ = rt.verify()
    with pytest.raises(capfence.InvalidState, match="reference ASYNC-20"):
        rt.record_outcome(last - 1, "executed")
