"""Types of the Rust core (capfence._capfence)."""

from decimal import Decimal
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

PayloadValue = Union[None, bool, int, float, Decimal, str, list, tuple, Mapping[str, Any]]

# Errors: one class per kind of fault, all under CapFenceError (a RuntimeError).

class CapFenceError(RuntimeError):
    """Every error CapFence raises (`capfence.Blocked` and `capfence.NoContext` too)."""

class PolicyError(CapFenceError):
    """The policy does not load, or an approver's key in it is unusable (`ActionRuntime.from_policy`)."""

class StorageError(CapFenceError):
    """The ledger could not be read or written; nothing was done."""

class OperatorRefused(CapFenceError):
    """An operator action was refused: a signature is needed, the key may not sign for the rule, or the approver signed already. Nothing was recorded."""

class NotFound(CapFenceError):
    """No ticket or grant with that id."""

class InvalidState(CapFenceError):
    """The ticket is not pending or has expired, or the grant was revoked already."""

class InvalidArgument(CapFenceError):
    """An argument CapFence cannot use (a malformed id, capability or cap)."""

class VerifyFailed(CapFenceError):
    """The audit chain, an approval or a window row does not verify (`ActionRuntime.verify`)."""

class KeyFileError(CapFenceError):
    """An operator key file cannot be read or written, or others can read it (`OperatorKey.load`, `write_new`)."""

class Verdict:
    authorized: bool
    decision: str  # "allow", "require_approval" or "deny"
    reason: str
    approval_id: Optional[str]
    rule: Optional[str]
    # The decision's chain record (None: nothing was recorded); an
    # authorized call's outcome cites it (`ActionRuntime.record_outcome`).
    seq: Optional[int]
    # Why, in fields (docs/cli.md, "Verdict detail"): cause, rule, conditions,
    # limits, windows, malformed, ticket, grant. Decimals are strings.
    detail: Dict[str, Any]

class ActionEvent:
    @staticmethod
    def create(
        *,
        actor: str,
        action: str,
        resource: str,
        environment: str = "production",
        risk: str = "low",
        payload: Optional[Mapping[str, PayloadValue]] = None,
    ) -> "ActionEvent": ...
    @property
    def payload(self) -> dict: ...
    @property
    def capability(self) -> str: ...

class ApprovalEngine:
    def grant_capability(
        self, *, actor: str, capability: str, granted_by: str, duration_seconds: int
    ) -> str: ...

class ActionRuntime:
    @staticmethod
    def from_policy(
        path: str, state_dir: Optional[str] = None, store: Optional[str] = None
    ) -> "ActionRuntime": ...
    def execute(self, event: ActionEvent) -> Verdict: ...
    @property
    def _approval_engine(self) -> ApprovalEngine: ...
    def approve(self, ticket: str, by: str) -> None: ...
    def reject(self, ticket: str, by: str) -> None: ...
    def revoke(self, grant: str, by: str) -> None: ...
    # What became of the authorized call whose verdict had `seq`:
    # "executed" (reference=, amount= when not the decided one: int,
    # Decimal or numeric str) or "failed" (error=). Returns the outcome
    # record's seq. NotFound, InvalidState (not authorized, already has its
    # outcome), InvalidArgument, StorageError.
    def record_outcome(
        self,
        seq: int,
        outcome: str,
        *,
        reference: Optional[str] = None,
        amount: Optional[Union[int, Decimal, str]] = None,
        error: Optional[str] = None,
    ) -> int: ...
    def approve_with_key(self, ticket: str, key: OperatorKey) -> TicketOutcome: ...
    def reject_with_key(self, ticket: str, key: OperatorKey) -> TicketOutcome: ...
    def revoke_with_key(self, grant: str, key: OperatorKey) -> None: ...
    def grant(
        self,
        *,
        actor: str,
        capability: str,
        environment: str,
        duration_seconds: int,
        granted_by: Optional[str] = None,
        key: Optional[OperatorKey] = None,
        caps: Optional[Mapping[str, Union[int, float, Decimal, str]]] = None,
        uses: Optional[int] = None,
    ) -> str: ...
    def verify(self) -> Tuple[int, str]: ...
    def active_policy(self) -> Optional[str]:
        """The digest of the ledger's active policy (None before the first decision)."""
    def propose_policy(self, path: str, by: str) -> str:
        """Propose a policy file in place of the active one; returns its id (P-1)."""
    def sign_policy(self, proposal: str, key: OperatorKey) -> None:
        """Sign a proposal (raises OperatorRefused for a key the active policy does not list)."""
    def activate_policy(self, proposal: str) -> str:
        """Activate a proposal once enough approvers signed it and its delay passed."""

class OperatorKey:
    @staticmethod
    def generate(name: str) -> "OperatorKey": ...
    @staticmethod
    def load(path: str) -> "OperatorKey": ...
    def write_new(self, path: str) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def public_key(self) -> str: ...

class TicketOutcome:
    ticket: str
    status: str  # "pending" until the quorum has signed, then "approved" or "rejected"
    approvals: List[str]
    needed: int
