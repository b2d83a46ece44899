"""Fault injection for the offline runtime: fail or crash a function at its k-th AWS call.

Two observers for ``Runtime.observe`` (see offline/observe.py):

* ``CallRecorder`` writes down every invocation and the AWS calls it made (function, request id, service,
  operation, whether the call succeeded, how the invocation ended). A baseline run of a scenario with it says
  which functions the scenario runs and how many AWS calls each makes, so a fault sweep is derived from what
  runs, never from a list that goes stale.
* ``FaultInjector`` disturbs the k-th AWS call a chosen function makes (counted across its invocations, from
  the moment the injector is registered), once, in one of two modes:

  - ``Mode.ERROR``: the call fails with a transient AWS error, as the handler sees it once the SDK's own retries
    are used up: the service's modeled exception (``ProvisionedThroughputExceededException``,
    ``ThrottlingException``, ...) or a plain ``ClientError``, raised before the request reaches AWS, so nothing
    took effect;
  - ``Mode.KILL``: the call succeeds and takes effect, then the invocation dies (``InvocationKilled``) before
    the handler returns, as a crash, an out-of-memory or a timeout would.

What follows is the runtime's business: Lambda's retries, stream and SQS redeliveries, Step Functions' Retry,
the API client's retry. ``transient_error`` makes the exceptions; it is usable on its own.
"""

from __future__ import annotations

import contextlib
import enum
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from offline import observe
from offline.observe import Invocation, InvocationKilled

# Transient errors each service really answers (throttling, capacity, a 5xx), tried in this order.
TRANSIENT_CODES: dict[str, tuple[str, ...]] = {
    "dynamodb": ("ProvisionedThroughputExceededException", "ThrottlingException", "InternalServerError",
                 "RequestLimitExceeded"),
    "events": ("ThrottlingException", "InternalException"),
    "stepfunctions": ("ThrottlingException", "ServiceUnavailable"),
    "ses": ("Throttling", "ServiceUnavailable"),
    "sesv2": ("TooManyRequestsException", "InternalServiceError"),
    "sqs": ("ThrottlingException", "InternalError"),
    "lambda": ("TooManyRequestsException", "ServiceException"),
}
DEFAULT_CODES = ("ThrottlingException", "InternalFailure")
_SERVER_SIDE = ("InternalServerError", "InternalException", "ServiceUnavailable", "InternalServiceError",
                "InternalError", "InternalFailure", "ServiceException")


class Mode(enum.Enum):
    ERROR = "error"  # the call fails with a transient AWS error: nothing took effect
    KILL = "kill"  # the call took effect, then the invocation died before the handler returned


def transient_code(service: str, variant: int = 0) -> str:
    codes = TRANSIENT_CODES.get(service, DEFAULT_CODES)
    return codes[variant % len(codes)]


def transient_error(service: str, operation: str, code: str | None = None, *, attempts: int = 3) -> ClientError:
    """The exception botocore raises when ``operation`` still fails with ``code`` after ``attempts`` tries.

    A modeled error is an instance of the class the handlers' clients raise (``client.exceptions.X``), made by
    the default session's exception factory, which every ``boto3.client`` shares.
    """
    code = code or transient_code(service)
    status = 500 if code in _SERVER_SIDE else (503 if code == "ServiceUnavailable" else 400)
    response = {
        "Error": {"Code": code, "Message": f"injected fault: {code} on {operation} (after {attempts} attempts)"},
        "ResponseMetadata": {"HTTPStatusCode": status, "RetryAttempts": max(0, attempts - 1),
                             "MaxAttemptsReached": True},
    }
    return _exception_class(service, code)(response, operation)


def _exception_class(service: str, code: str) -> type[ClientError]:
    try:
        import boto3

        session = boto3._get_default_session()._session
        factory = session._get_internal_component("exceptions_factory")
        exceptions = factory.create_client_exceptions(session.get_service_model(service))
        return exceptions.from_code(code)
    except Exception:  # an unknown service or a botocore without these internals: the generic error will do
        return ClientError


@contextlib.contextmanager
def outside_invocations() -> Iterator[None]:
    """AWS calls made in this block are nobody's (a test's, the runtime's), even on a handler's thread."""
    token = observe._current.set(None)
    try:
        yield
    finally:
        observe._current.reset(token)


@dataclass
class Call:
    service: str
    operation: str
    ok: bool | None = None  # None while in flight; False when AWS (or an injected fault) refused it


@dataclass
class Record:
    """One invocation as the recorder saw it."""

    function_name: str
    request_id: str
    calls: list[Call] = field(default_factory=list)
    error_type: str | None = None
    finished: bool = False


class CallRecorder:
    """Every invocation and its AWS calls, in the order they started."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.invocations: list[Record] = []
        self._open: dict[str, Record] = {}

    def invocation_started(self, invocation: Invocation) -> None:
        record = Record(invocation.function_name, invocation.request_id)
        with self._lock:
            self.invocations.append(record)
            self._open[id(invocation)] = record  # a request id repeats on an async retry

    def invocation_finished(self, invocation: Invocation, duration_s: float, error_type: str | None) -> None:
        with self._lock:
            record = self._open.pop(id(invocation), None)
        if record is not None:
            record.error_type, record.finished = error_type, True

    def before_aws_call(self, invocation: Invocation, service: str, operation: str, params: Any) -> None:
        record = self._open.get(id(invocation))
        if record is not None:
            record.calls.append(Call(service, operation))

    def after_aws_call(self, invocation: Invocation, service: str, operation: str, params: Any, response: Any) -> None:
        record = self._open.get(id(invocation))
        if record is not None and record.calls:
            record.calls[-1].ok = True

    # ------------------------------------------------------------------ what the scenario did
    def calls_by_function(self) -> dict[str, list[Call]]:
        """Function name -> its AWS calls in order, across its invocations (what ``FaultInjector`` counts)."""
        by_function: dict[str, list[Call]] = {}
        with self._lock:
            for record in self.invocations:
                for call in record.calls:
                    if call.ok is None:
                        call.ok = False  # never answered: it failed
                by_function.setdefault(record.function_name, []).extend(record.calls)
        return by_function

    def failed_invocations(self) -> list[Record]:
        with self._lock:
            return [record for record in self.invocations if record.error_type is not None]


@dataclass
class Fired:
    function_name: str
    request_id: str
    call: int
    service: str
    operation: str
    mode: Mode
    code: str | None


class FaultInjector:
    """Fail (``Mode.ERROR``) or crash after (``Mode.KILL``) the ``call``-th AWS call ``function`` makes, ``times`` times.

    ``function`` is a function name or a part of it (``"OrdersSagaFunction"`` matches
    ``Orderflow-OrdersSagaFunction``). Calls are counted per matching function from registration, across
    invocations; with ``times`` > 1 the following calls (``call``, ``call+1``, ...) are disturbed too, so an
    injector can also model an outage that outlasts one retry.
    """

    def __init__(
        self, function: str, call: int, mode: Mode, *, code: str | None = None, times: int = 1,
        after_fault: Callable[[Invocation], None] | None = None,
    ) -> None:
        if call < 1 or times < 1:
            raise ValueError("call and times count from 1")
        self.function, self.call, self.mode, self.code, self.times = function, call, mode, code, times
        # Runs when an invocation that met the fault is over (outside any invocation): what happens between a failure
        # and its redelivery (time passing, leases expiring) goes there.
        self.after_fault = after_fault
        self._faulted: set[int] = set()
        self.fired: list[Fired] = []
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._doomed: dict[int, int] = {}  # id(invocation) -> call number to kill after

    def _matches(self, invocation: Invocation) -> bool:
        return self.function == invocation.function_name or self.function in invocation.function_name

    def before_aws_call(self, invocation: Invocation, service: str, operation: str, params: Any) -> None:
        if not self._matches(invocation):
            return
        with self._lock:
            number = self._counts[invocation.function_name] = self._counts.get(invocation.function_name, 0) + 1
            self._doomed.pop(id(invocation), None)  # a doomed earlier call failed by itself: nothing took effect
            due = self.call <= number < self.call + self.times and len(self.fired) < self.times
            if not due:
                return
            if self.mode is Mode.KILL:
                self._doomed[id(invocation)] = number
                return
            code = self.code or transient_code(service, number)
            self.fired.append(Fired(invocation.function_name, invocation.request_id, number, service, operation,
                                    self.mode, code))
            self._faulted.add(id(invocation))
        raise transient_error(service, operation, code)

    def after_aws_call(self, invocation: Invocation, service: str, operation: str, params: Any, response: Any) -> None:
        with self._lock:
            number = self._doomed.pop(id(invocation), None)
            if number is None:
                return
            self.fired.append(Fired(invocation.function_name, invocation.request_id, number, service, operation,
                                    self.mode, None))
            self._faulted.add(id(invocation))
        raise InvocationKilled(f"injected crash after {service}.{operation} (call {number} of "
                               f"{invocation.function_name})")

    def invocation_finished(self, invocation: Invocation, duration_s: float, error_type: str | None) -> None:
        with self._lock:
            self._doomed.pop(id(invocation), None)  # its doomed call failed by itself: nothing took effect
            faulted = id(invocation) in self._faulted
            self._faulted.discard(id(invocation))
        if faulted and self.after_fault is not None:
            with outside_invocations():
                self.after_fault(invocation)

    def describe(self) -> str:
        return f"{self.mode.value} at call {self.call} of {self.function}"
