"""Types of the Rust core (capfence._capfence)."""

from decimal import Decimal
from typing import Any, Mapping, Optional, Tuple, Union

PayloadValue = Union[None, bool, int, float, Decimal, str, list, tuple, Mapping[str, Any]]

class Verdict:
    authorized: bool
    decision: str  # "allow", "require_approval" or "deny"
    reason: str
    approval_id: Optional[str]
    rule: Optional[str]

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
    def from_policy(path: str, state_dir: Optional[str] = None) -> "ActionRuntime": ...
    def execute(self, event: ActionEvent) -> Verdict: ...
    @property
    def _approval_engine(self) -> ApprovalEngine: ...
    def approve(self, ticket: str, by: str) -> None: ...
    def reject(self, ticket: str, by: str) -> None: ...
    def revoke(self, grant: str, by: str) -> None: ...
    def verify(self) -> Tuple[int, str]: ...
