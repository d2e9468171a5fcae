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
import functools
import inspect
from typing import Any, Callable, Optional, TypeVar

from ._capfence import ActionEvent, ActionRuntime, Verdict

F = TypeVar("F", bound=Callable[..., Any])

_ACTIVE: contextvars.ContextVar[Optional["Context"]] = contextvars.ContextVar(
    "capfence_context", default=None
)


class Blocked(Exception):
    """A gated call the runtime did not allow: `decision` is "deny" or
    "require_approval", `ticket` the ticket to approve (require_approval)."""

    def __init__(self, capability: str, verdict: Verdict) -> None:
        self.capability = capability
        self.verdict = verdict
        self.decision: str = verdict.decision
        self.reason: str = verdict.reason
        self.ticket: Optional[str] = verdict.approval_id
        self.rule: Optional[str] = verdict.rule
        message = f"{capability}: {verdict.decision}: {verdict.reason}"
        if self.ticket is not None:
            message += f" (ticket {self.ticket})"
        super().__init__(message)


class NoContext(RuntimeError):
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
        self._tokens: list[contextvars.Token[Optional[Context]]] = []

    def __enter__(self) -> "Context":
        self._tokens.append(_ACTIVE.set(self))
        return self

    def __exit__(self, *exc: object) -> None:
        _ACTIVE.reset(self._tokens.pop())

    @staticmethod
    def current() -> Optional["Context"]:
        """The active context, if any."""
        return _ACTIVE.get()

    def __repr__(self) -> str:
        return (
            f"Context(actor={self.actor!r}, environment={self.environment!r}, "
            f"risk={self.risk!r})"
        )


def _split(capability: str) -> tuple[str, str]:
    resource, dot, action = capability.partition(".")
    if not dot or not resource or not action:
        raise ValueError(
            f"capfence.gate: `{capability}` is not `resource.action` "
            "(payments.transfer, say)"
        )
    return resource, action


def gate(capability: str) -> Callable[[F], F]:
    """Gates a tool function on `capability` (`"payments.transfer"`).

    Each call is decided before the body runs: its bound arguments (defaults
    filled in; `self`/`cls` of a method left out; `**kwargs` merged; `*args`
    as a list) are the payload. Allowed: the body runs. Otherwise
    `Blocked`. Works on `def` and `async def` functions; an async call waits
    for the durable commit in a worker thread, not on the event loop.
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

        def event_for(args: tuple, kwargs: dict) -> tuple[Context, ActionEvent]:
            context = kwargs.pop("capfence_context", None) or _ACTIVE.get()
            if context is None:
                raise NoContext(
                    f"{capability}: {fn.__qualname__} was called with no "
                    "capfence.Context active; it did not run"
                )
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            payload: dict[str, Any] = {}
            for i, (name, value) in enumerate(bound.arguments.items()):
                if i == 0 and skip_first:
                    continue
                kind = signature.parameters[name].kind
                if kind is inspect.Parameter.VAR_KEYWORD:
                    payload.update(value)
                elif kind is inspect.Parameter.VAR_POSITIONAL:
                    payload[name] = list(value)
                else:
                    payload[name] = value
            event = ActionEvent.create(
                actor=context.actor,
                action=action,
                resource=resource,
                environment=context.environment,
                risk=context.risk,
                payload=payload,
            )
            return context, event

        def settle(verdict: Verdict) -> None:
            if not verdict.authorized:
                raise Blocked(capability, verdict)

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def gated_async(*args: Any, **kwargs: Any) -> Any:
                context, event = event_for(args, kwargs)
                settle(await asyncio.to_thread(context.runtime.execute, event))
                return await fn(*args, **kwargs)

            gated: Callable[..., Any] = gated_async
        else:

            @functools.wraps(fn)
            def gated_sync(*args: Any, **kwargs: Any) -> Any:
                context, event = event_for(args, kwargs)
                settle(context.runtime.execute(event))
                return fn(*args, **kwargs)

            gated = gated_sync
        gated.__capfence_capability__ = capability  # type: ignore[attr-defined]
        return gated  # type: ignore[return-value]

    return decorate
