"""CapFence for Python, on the Rust core: decide agent tool calls (allow,
require_approval or deny) against a policy, with approvals and a
SHA-256-chained audit log."""

from ._capfence import (
    ActionEvent,
    ActionRuntime,
    ApprovalEngine,
    OperatorKey,
    TicketOutcome,
    Verdict,
)
from ._gate import Blocked, Context, NoContext, gate

__all__ = [
    "ActionEvent",
    "ActionRuntime",
    "ApprovalEngine",
    "Blocked",
    "Context",
    "NoContext",
    "OperatorKey",
    "TicketOutcome",
    "Verdict",
    "gate",
]
