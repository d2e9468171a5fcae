"""CapFence for Python, on the Rust core: decide agent tool calls (allow,
require_approval or deny) against a policy, with approvals and a
SHA-256-chained audit log."""

from ._capfence import ActionEvent, ActionRuntime, ApprovalEngine, Verdict

__all__ = ["ActionEvent", "ActionRuntime", "ApprovalEngine", "Verdict"]
