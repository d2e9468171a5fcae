"""`capfence.gate`: the Python twin of `#[capfence::gate]`.

A gated function's arguments become the event's payload; the active
`Context` says which runtime decides and who is calling (actor, environment,
risk). The function body runs only when the runtime allows the call;
otherwise `Blocked` is raised, carrying the decision, the reason and the
ticket to approve.
"""

from __future__ import annotations

import asyncio
import contextvars
import decimal
import functools
import inspect
import logging
from typing import Any, Callable, Optional, TypeVar

from ._capfence import ActionEvent, ActionRuntime, CapFenceError, Verdict

F = TypeVar("F", bound=Callable[..., Any])

# The contexts entered in this task or thread, innermost last. Each task
# works on its own copy of the variable (asyncio copies it when a task
# starts; a thread starts empty), so entering or leaving never touches
# another task's stack, and leaving never raises.
_ACTIVE: contextvars.ContextVar[tuple["Context", ...]] = contextvars.ContextVar(
    "capfence_context", default=()
)


class Blocked(CapFenceError):
    """A gated call the runtime did not allow: `decision` is "deny" or
    "require_approval", `ticket` the ticket to approve (require_approval),
    `detail` why in fields (the limit and the value, a window's total and
    when it frees up, the ticket's expiry and quorum; see `Verdict.detail`)."""

    def __init__(self, capability: str, verdict: Verdict) -> None:
        self.capability = capability
        self.verdict = verdict
        self.decision: str = verdict.decision
        self.reason: str = verdict.reason
        self.ticket: Optional[str] = verdict.approval_id
        self.rule: Optional[str] = verdict.rule
        self.detail: dict = verdict.detail
        message = f"{capability}: {verdict.decision}: {verdict.reason}"
        if self.ticket is not None:
            message += f" (ticket {self.ticket})"
        super().__init__(message)


class NoContext(CapFenceError):
    """A gated function was called with no `capfence.Context` active; it did
    not run."""


class Context:
    """Who is calling and which runtime decides. Make it active for a block
    (`with Context(...):`, also across `await`s and in tasks started inside)
    or pass it to a gated function as `capfence_context=`."""

    def __init__(
        self,
        runtime: ActionRuntime,
        *,
        actor: str,
        environment: str = "production",
        risk: str = "low",
    ) -> None:
        self.runtime = runtime
        self.actor = actor
        self.environment = environment
        self.risk = risk

    def __enter__(self) -> "Context":
        _ACTIVE.set(_ACTIVE.get() + (self,))
        return self

    def __exit__(self, *exc: object) -> None:
        # Leaves the innermost entry of this context in this task's stack.
        # One Context object may be entered by many tasks at once: each
        # leaves its own entry, and nothing is raised after a body ran.
        stack = _ACTIVE.get()
        for i in range(len(stack) - 1, -1, -1):
            if stack[i] is self:
                _ACTIVE.set(stack[:i] + stack[i + 1 :])
                return

    @staticmethod
    def current() -> Optional["Context"]:
        """The active context, if any."""
        stack = _ACTIVE.get()
        return stack[-1] if stack else None

    def __repr__(self) -> str:
        return (
            f"Context(actor={self.actor!r}, environment={self.environment!r}, "
            f"risk={self.risk!r})"
        )


def _plain(value: Any, where: str) -> Any:
    """`value` as plain data, read from the object's own storage, never
    through `__str__`, `__repr__`, `__iter__` or another method a subclass
    can override: exact `None`, `bool`, `int`, `float`, `str`,
    `decimal.Decimal`, and new lists, tuples and dicts of them. An instance of
    a subclass (an `Enum` member with a `str` or `int` mixin, a `str`, `int`,
    `float`, `list` or `dict` subclass) becomes the plain value it holds.
    Containers are copied, so a change after the decision reaches neither the
    record nor the body. Anything else is refused (`ValueError`)."""
    if value is None or type(value) in (bool, int, float, str, decimal.Decimal):
        return value
    if isinstance(value, bool):  # bool cannot be subclassed; for the reader
        return bool.__bool__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, decimal.Decimal):
        return decimal.Decimal(value)
    if isinstance(value, dict):
        plain = {}
        for key, item in dict.items(value):
            if not isinstance(key, str):
                raise ValueError(f"{where}: payload keys must be str, not {type(key).__name__}")
            key = str.__str__(key)
            plain[key] = _plain(item, f"{where}[{key!r}]")
        return plain
    if isinstance(value, list):
        return [_plain(item, f"{where}[{i}]") for i, item in enumerate(list.__iter__(value))]
    if isinstance(value, tuple):
        return tuple(_plain(item, f"{where}[{i}]") for i, item in enumerate(tuple.__iter__(value)))
    raise ValueError(
        f"{where}: a payload value must be None, bool, int, float, decimal.Decimal, str, "
        f"list, tuple or dict, not {type(value).__name__}"
    )


def _split(capability: str) -> tuple[str, str]:
    resource, dot, action = capability.partition(".")
    if not dot or not resource or not action:
        raise ValueError(
            f"capfence.gate: `{capability}` is not `resource.action` "
            "(payments.transfer, say)"
        )
    return resource, action


_LOG = logging.getLogger("capfence.outcome")


def _receipt(value: Any) -> tuple[Optional[str], Any]:
    """The rail reference and amount sent a tool's return value gives: its
    `rail_reference` and `amount_sent` attributes (or methods), the Python
    counterpart of Rust's `capfence::RailReceipt`. Anything else: none."""

    def read(name: str) -> Any:
        found = getattr(value, name, None)
        return found() if callable(found) else found

    try:
        reference = read("rail_reference")
        amount = read("amount_sent")
    except Exception:  # a property that raises: no receipt, the tool's result stands
        return None, None
    if not isinstance(reference, str) or not reference.strip():
        reference = None
    if isinstance(amount, bool) or not isinstance(amount, (int, decimal.Decimal, str)):
        amount = None
    return reference, amount


def _fitted(text: str) -> str:
    """An error as an outcome keeps it: control characters as spaces, at
    most 2,000 characters."""
    cleaned = "".join(" " if ord(c) < 32 or 127 <= ord(c) < 160 else c for c in text)[:2000]
    return cleaned if cleaned.strip() else "the tool raised an exception"


def _record(runtime: ActionRuntime, verdict: Verdict, result: Any, raised: Optional[BaseException]) -> None:
    """Records the call's outcome; a fault is logged, never raised: the
    tool's result (or exception) is the caller's."""
    if verdict.seq is None:
        return
    try:
        if raised is not None:
            runtime.record_outcome(
                verdict.seq, "failed", error=_fitted(f"{type(raised).__name__}: {raised}")
            )
        else:
            reference, amount = _receipt(result)
            try:
                runtime.record_outcome(verdict.seq, "executed", reference=reference, amount=amount)
            except (ValueError, CapFenceError):
                # A reference or amount the ledger cannot keep: the call
                # still ran; record it without them.
                runtime.record_outcome(verdict.seq, "executed")
    except Exception as e:  # noqa: BLE001 - reported, never raised
        _LOG.warning("the outcome of record %s was not recorded: %s", verdict.seq, e)


def gate(capability: str) -> Callable[[F], F]:
    """Gates a tool function on `capability` (`"payments.transfer"`).

    Each call is decided before the body runs: its bound arguments (defaults
    filled in; `self`/`cls` of a method left out; `**kwargs` merged; `*args`
    as a list) are the payload. Allowed: the body runs. Otherwise
    `Blocked`. Works on `def` and `async def` functions; an async call waits
    for the durable commit in a worker thread, not on the event loop.

    What the body returns or raises is the call's outcome: a return is
    recorded as executed (with `rail_reference` / `amount_sent` of the
    returned value, when it has them), an exception as failed; then the value
    is returned, or the exception raised, unchanged.
    """
    resource, action = _split(capability)

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)
        params = list(signature.parameters.values())
        skip_first = bool(params) and params[0].name in ("self", "cls")
        if "capfence_context" in signature.parameters:
            raise TypeError(
                f"capfence.gate: {fn.__qualname__} has a parameter named "
                "capfence_context, which the gate reserves"
            )

        def decided_call(
            args: tuple, kwargs: dict
        ) -> tuple[Context, ActionEvent, tuple, dict]:
            """Binds the arguments once; returns the event to decide and the
            arguments the body gets, both built from the same plain values."""
            context = kwargs.pop("capfence_context", None) or Context.current()
            if context is None:
                raise NoContext(
                    f"{capability}: {fn.__qualname__} was called with no "
                    "capfence.Context active; it did not run"
                )
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            payload: dict[str, Any] = {}
            names = [
                name
                for i, name in enumerate(bound.arguments)
                if not (i == 0 and skip_first)
                and signature.parameters[name].kind is not inspect.Parameter.VAR_KEYWORD
            ]
            for i, (name, value) in enumerate(list(bound.arguments.items())):
                if i == 0 and skip_first:
                    continue
                where = f"{fn.__qualname__}({name})"
                kind = signature.parameters[name].kind
                if kind is inspect.Parameter.VAR_KEYWORD:
                    extra = _plain(value, where)
                    for key in extra:
                        # A keyword that shadows a named parameter (one that
                        # is positional-only, say) would be decided in its
                        # place while the body reads the parameter.
                        if key in names or key in payload:
                            raise TypeError(
                                f"{capability}: {fn.__qualname__} got the keyword "
                                f"argument {key!r}, which is also the parameter "
                                f"{key!r}: one payload name, two values; the call "
                                "did not run"
                            )
                    payload.update(extra)
                    bound.arguments[name] = extra
                elif kind is inspect.Parameter.VAR_POSITIONAL:
                    plain = _plain(tuple(value), where)
                    payload[name] = list(plain)
                    bound.arguments[name] = plain
                else:
                    plain = _plain(value, where)
                    payload[name] = plain
                    bound.arguments[name] = plain
            event = ActionEvent.create(
                actor=context.actor,
                action=action,
                resource=resource,
                environment=context.environment,
                risk=context.risk,
                payload=payload,
            )
            return context, event, bound.args, bound.kwargs

        def settle(verdict: Verdict) -> Verdict:
            if not verdict.authorized:
                raise Blocked(capability, verdict)
            return verdict

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def gated_async(*args: Any, **kwargs: Any) -> Any:
                context, event, args, kwargs = decided_call(args, kwargs)
                verdict = settle(await asyncio.to_thread(context.runtime.execute, event))
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as e:
                    await asyncio.to_thread(_record, context.runtime, verdict, None, e)
                    raise
                await asyncio.to_thread(_record, context.runtime, verdict, result, None)
                return result

            gated: Callable[..., Any] = gated_async
        else:

            @functools.wraps(fn)
            def gated_sync(*args: Any, **kwargs: Any) -> Any:
                context, event, args, kwargs = decided_call(args, kwargs)
                verdict = settle(context.runtime.execute(event))
                try:
                    result = fn(*args, **kwargs)
                except BaseException as e:
                    _record(context.runtime, verdict, None, e)
                    raise
                _record(context.runtime, verdict, result, None)
                return result

            gated = gated_sync
        gated.__capfence_capability__ = capability  # type: ignore[attr-defined]
        return gated  # type: ignore[return-value]

    return decorate
