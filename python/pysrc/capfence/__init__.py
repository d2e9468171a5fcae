"""CapFence for Python, on the Rust core: decide agent tool calls (allow,
require_approval or deny) against a policy, with approvals and a
SHA-256-chained audit log."""

from ._capfence import (
    ActionEvent,
    ActionRuntime,
    ApprovalEngine,
    CapFenceError,
    InvalidArgument,
    InvalidState,
    KeyFileError,
    NotFound,
    OperatorKey,
    OperatorRefused,
    PolicyError,
    StorageError,
    TicketOutcome,
    Verdict,
    VerifyFailed,
)
from ._gate import Blocked, Context, NoContext, gate

__all__ = [
    "ActionEvent",
    "ActionRuntime",
    "ApprovalEngine",
    "Blocked",
    "CapFenceError",
    "Context",
    "InvalidArgument",
    "InvalidState",
    "KeyFileError",
    "NotFound",
    "OperatorRefused",
    "PolicyError",
    "StorageError",
    "VerifyFailed",
    "NoContext",
    "OperatorKey",
    "TicketOutcome",
    "Verdict",
    "gate",
]
