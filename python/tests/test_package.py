"""The Python package on the Rust core: the case study's program as written,
exact money from Python numbers, errors as exceptions, threads."""

import decimal
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import capfence
from capfence import ActionEvent, ActionRuntime

HERE = Path(__file__).resolve().parent
POLICY = """
deny:
  - capability: payments.transfer
    amount_gt: 10000.0
require_approval:
  - capability: payments.transfer
    amount_gt: 500.0
allow:
  - capability: payments.transfer
    amount_lte: 500.0
"""


def test_the_case_study_program_runs_as_written(tmp_path):
    out = subprocess.run(
        [sys.executable, str(HERE / "seed_case_study.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "Verdict: Authorized=True | Decision=allow" in lines
    assert (
        "Verdict: Authorized=False | Decision=deny | Reason=denied by deny[0]: "
        "payments.transfer, amount > 10000.0"
    ) in lines
    assert "Verdict: Authorized=False | Decision=require_approval | ApprovalID=T-1" in lines
    assert "Retry Verdict: Authorized=True | Decision=allow" in lines
    assert sum("Successfully transferred" in l for l in lines) == 2


def runtime(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return ActionRuntime.from_policy(str(policy), state_dir=str(tmp_path / "state"))


def transfer(amount):
    return ActionEvent.create(
        actor="treasury-agent", action="transfer", resource="payments",
        environment="production", risk="low",
        payload={"amount": amount, "destination": "vendor-corp-123"},
    )


@pytest.mark.parametrize(
    "amount, decision",
    [
        (120.0, "allow"),
        (500.0, "allow"),
        (500.0000000001, "require_approval"),
        (decimal.Decimal("500.000000000000000000001"), "require_approval"),
        ("500.00", "allow"),
        (500, "allow"),
        (10_001, "deny"),
        (True, "deny"),  # bool is not a number: malformed
        (float("nan"), "deny"),
    ],
)
def test_money_is_exact(tmp_path, amount, decision):
    verdict = runtime(tmp_path).execute(transfer(amount))
    assert verdict.decision == decision, verdict


def test_the_payload_reads_back_and_errors_are_exceptions(tmp_path):
    event = transfer(120.0)
    assert event.payload == {"amount": 120.0, "destination": "vendor-corp-123"}
    with pytest.raises(ValueError):
        transfer(object())
    with pytest.raises(RuntimeError, match="no ticket"):
        runtime(tmp_path).approve("T-99", "cfo")
    with pytest.raises(RuntimeError):
        ActionRuntime.from_policy(str(tmp_path / "missing.yaml"))


def test_threads_share_the_runtime_and_the_chain_verifies(tmp_path):
    rt = runtime(tmp_path)
    verdicts = []

    def work():
        for _ in range(10):
            verdicts.append(rt.execute(transfer(120.0)))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(verdicts) == 40 and all(v.authorized for v in verdicts)
    assert rt.verify()[0] == 40 + 1  # and the policy's activation


def test_a_postgres_store_is_shared_by_runtimes(tmp_path):
    admin = os.environ.get("CAPFENCE_TEST_POSTGRES")
    if not admin:
        assert not os.environ.get("CI"), "CI must run this with CAPFENCE_TEST_POSTGRES"
        pytest.skip("needs CAPFENCE_TEST_POSTGRES (tests/postgres/server.sh)")
    db = f"capfence_py_{os.getpid()}"
    for sql in (f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", f"CREATE DATABASE {db}"):
        subprocess.run(["psql", "-q", admin, "-c", sql], check=True, capture_output=True)
    url = admin.rsplit("/", 1)[0] + "/" + db
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    host_a = ActionRuntime.from_policy(str(policy), store=url)
    host_b = ActionRuntime.from_policy(str(policy), store=url)
    held = host_a.execute(transfer(900))
    assert held.decision == "require_approval"
    host_b.approve(held.approval_id, "cfo")
    assert host_b.execute(transfer(900)).authorized
    assert not host_a.execute(transfer(900)).authorized  # used once, on either host
    assert host_a.verify()[0] == host_b.verify()[0] == 4 + 1  # and the activation
    with pytest.raises(ValueError):
        ActionRuntime.from_policy(str(policy), state_dir=str(tmp_path), store=url)
    down = ActionRuntime.from_policy(str(policy), store="postgres://postgres@127.0.0.1:1/x")
    verdict = down.execute(transfer(1))
    assert verdict.decision == "deny" and "storage" in verdict.reason


def test_each_kind_of_fault_has_its_own_exception_under_capfence_error(tmp_path):
    rt = runtime(tmp_path)
    with pytest.raises(capfence.NotFound, match="no ticket"):
        rt.approve("T-99", "cfo")
    with pytest.raises(capfence.InvalidArgument, match="resource.action.environment"):
        rt._approval_engine.grant_capability(
            actor="treasury-agent", capability="payments", granted_by="ops", duration_seconds=60
        )
    with pytest.raises(capfence.PolicyError):
        ActionRuntime.from_policy(str(tmp_path / "missing.yaml"))
    held = rt.execute(transfer(900.0))
    rt.approve(held.approval_id, "cfo")
    with pytest.raises(capfence.InvalidState, match="not pending"):
        rt.approve(held.approval_id, "cfo")
    key = capfence.OperatorKey.generate("cfo")
    path = tmp_path / "cfo.key"
    key.write_new(str(path))
    with pytest.raises(capfence.KeyFileError):
        key.write_new(str(path))
    # One base class for all, itself a RuntimeError; Blocked and NoContext too.
    for cls in (capfence.NotFound, capfence.InvalidArgument, capfence.PolicyError,
                capfence.InvalidState, capfence.KeyFileError, capfence.StorageError,
                capfence.OperatorRefused, capfence.VerifyFailed, capfence.Blocked,
                capfence.NoContext):
        assert issubclass(cls, capfence.CapFenceError), cls
    assert issubclass(capfence.CapFenceError, RuntimeError)
    # A ledger that cannot be written: a storage error, not a policy one.
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where the state directory should be")
    broken = ActionRuntime.from_policy(str(tmp_path / "policy.yaml"), state_dir=str(blocker / "state"))
    with pytest.raises(capfence.StorageError):
        broken.verify()


def test_a_runtime_on_an_edited_policy_file_denies_every_call(tmp_path):
    first = runtime(tmp_path)
    assert first.execute(transfer(120)).authorized
    # The agent widens `allow` in the file; a runtime restarts on it.
    (tmp_path / "policy.yaml").write_text(POLICY.replace("amount_lte: 500.0", "amount_lte: 50000.0"))
    edited = ActionRuntime.from_policy(str(tmp_path / "policy.yaml"), state_dir=str(tmp_path / "state"))
    for amount in (120, 2500):
        verdict = edited.execute(transfer(amount))
        assert verdict.decision == "deny" and not verdict.authorized
        assert "is not the ledger's active policy" in verdict.reason
    assert first.execute(transfer(120)).authorized


def test_a_policy_change_is_proposed_signed_and_activated(tmp_path):
    ops1, ops2 = capfence.OperatorKey.generate("ops1"), capfence.OperatorKey.generate("ops2")
    signed = (
        f"approvers:\n  ops1: {ops1.public_key}\n  ops2: {ops2.public_key}\n"
        "policy_changes:\n  approvals: 2\n" + POLICY
    )
    (tmp_path / "a.yaml").write_text(signed)
    looser = signed.replace("amount_gt: 500.0", "amount_gt: 5000.0")
    (tmp_path / "b.yaml").write_text(looser.replace("amount_lte: 500.0", "amount_lte: 5000.0"))
    state = str(tmp_path / "state")
    active = ActionRuntime.from_policy(str(tmp_path / "a.yaml"), state_dir=state)
    assert active.execute(transfer(120)).authorized
    assert active.active_policy() is not None
    proposed = ActionRuntime.from_policy(str(tmp_path / "b.yaml"), state_dir=state)
    assert proposed.execute(transfer(120)).decision == "deny"
    pid = active.propose_policy(str(tmp_path / "b.yaml"), "dev")
    assert pid == "P-1"
    with pytest.raises(capfence.OperatorRefused):
        active.sign_policy(pid, capfence.OperatorKey.generate("mallory"))
    active.sign_policy(pid, ops1)
    with pytest.raises(capfence.InvalidState, match="needs 2"):
        active.activate_policy(pid)
    active.sign_policy(pid, ops2)
    digest = active.activate_policy(pid)
    assert active.active_policy() == digest
    assert proposed.execute(transfer(900)).authorized
    assert not active.execute(transfer(120)).authorized
    active.verify()
