"""One seam to watch (and, for fault injection, disturb) what the functions do inside a runtime.

An *observer* is any object with some of these methods; the runtime calls the ones it has:

* ``invocation_started(invocation)`` / ``invocation_finished(invocation, duration_s, error_type)``: around every
  handler call (``error_type`` is None on success, else the Lambda error type the caller sees).
* ``before_aws_call(invocation, service, operation, params)``: before a boto3 call made by a handler (raise a
  ``botocore.exceptions.ClientError`` to make the call fail as AWS would).
* ``after_aws_call(invocation, service, operation, params, response)``: after it succeeded (raise
  ``InvocationKilled`` to kill the invocation after the call took effect but before the handler returned).

``invocation`` is the ``Invocation`` running on this thread. Calls made outside any handler (the runtime's own
pollers, the gateway, tests) are not reported: they are AWS's work, not the system's. Observers are registered
on the runtime (``Runtime.observe(observer)``) and never change behaviour unless they raise on purpose.
"""

from __future__ import annotations

import contextvars
import threading
from dataclasses import dataclass, field
from typing import Any

_current: contextvars.ContextVar[Invocation | None] = contextvars.ContextVar("offline_invocation", default=None)


class InvocationKilled(BaseException):  # noqa: N818 - it is a kill, not an error the handler may catch
    """Raised by an observer to end an invocation abruptly, as a crash or a timeout would on Lambda.

    A BaseException, so handler code (``except Exception``, Powertools' batch processor) cannot swallow it.
    The caller sees ``Runtime.ExitError``.
    """


@dataclass
class Invocation:
    function_name: str
    function_arn: str
    handler: str
    memory_mb: int
    request_id: str
    aws_calls: int = 0  # boto3 calls made so far by this invocation
    extra: dict[str, Any] = field(default_factory=dict)


def current() -> Invocation | None:
    """The invocation running on this thread, if any."""
    return _current.get()


class Observers:
    """The observers of one runtime, and the hooks that feed them."""

    def __init__(self) -> None:
        self._observers: list[Any] = []
        self._lock = threading.Lock()

    def add(self, observer: Any) -> None:
        with self._lock:
            self._observers.append(observer)

    def remove(self, observer: Any) -> None:
        with self._lock:
            if observer in self._observers:
                self._observers.remove(observer)

    def _each(self, method: str) -> list[Any]:
        with self._lock:
            return [getattr(o, method) for o in self._observers if hasattr(o, method)]

    # ------------------------------------------------------------------ invocations
    def start_invocation(self, invocation: Invocation) -> contextvars.Token:
        token = _current.set(invocation)
        for hook in self._each("invocation_started"):
            hook(invocation)
        return token

    def finish_invocation(
        self, token: contextvars.Token, invocation: Invocation, duration_s: float, error_type: str | None
    ) -> None:
        try:
            for hook in self._each("invocation_finished"):
                hook(invocation, duration_s, error_type)
        finally:
            _current.reset(token)

    # ------------------------------------------------------------------ boto3 calls (botocore events)
    def before_call(self, model: Any, params: Any, context: Any = None, **_: Any) -> None:
        invocation = _current.get()
        if invocation is None:
            return
        invocation.aws_calls += 1
        if isinstance(context, dict):
            context["offline_params"] = params  # after-call is not given the parameters
        service = model.service_model.service_name
        for hook in self._each("before_aws_call"):
            hook(invocation, service, model.name, params)

    def after_call(self, model: Any, http_response: Any, parsed: Any, context: Any = None, **_: Any) -> None:
        invocation = _current.get()
        if invocation is None:
            return
        status = getattr(http_response, "status_code", 200)
        if status and int(status) >= 300:
            return  # the call failed: the handler sees the error, nothing took effect
        service = model.service_model.service_name
        params = context.get("offline_params", {}) if isinstance(context, dict) else {}
        for hook in self._each("after_aws_call"):
            hook(invocation, service, model.name, params, parsed)

    def install(self, patcher: Any) -> None:
        """Hook every boto3 client made while the runtime runs (like moto, via botocore's built-in handlers)."""
        import botocore.handlers

        handlers = list(botocore.handlers.BUILTIN_HANDLERS)
        handlers.append(("before-call.*.*", self.before_call))
        handlers.append(("after-call.*.*", self.after_call))
        patcher.patch(botocore.handlers, "BUILTIN_HANDLERS", handlers)
