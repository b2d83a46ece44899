"""Run Lambda handlers in this process, behind moto's own Lambda API.

Every invocation path in moto (Invoke, Step Functions tasks, SNS, our pollers, the gateway) ends in
``LambdaFunction._invoke_lambda``, which moto implements with Docker. We replace that one method with an
in-process call of the handler string. Asynchronous invocations (``InvocationType=Event``, EventBridge targets)
are queued and run by ``pump()``, with Lambda's async retries and destinations.

Nothing process-wide is swapped per invocation (no environment, no stdout): the runtime puts every function's
environment into ``os.environ`` once, at start. Each function runs one invocation at a time, like one Lambda
execution environment (its module state, such as Powertools' registered context, is not shared between
overlapping invocations); different functions run concurrently, as they do on AWS, so races between them
(and the conditional writes that guard them) are real here. A handler that synchronously invokes its own
function re-enters its lock on the same thread.
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from moto.awslambda.exceptions import UnknownFunctionException
from moto.awslambda.models import LambdaBackend, LambdaFunction, lambda_backends

from offline import destinations
from offline.observe import Invocation, InvocationKilled, Observers
from offline.observe import _current as _current_invocation
from offline.patches import Patcher

log = logging.getLogger("offline.lambda")

# Lambda's own async retry defaults (EventInvokeConfig).
DEFAULT_ASYNC_RETRIES = 2
DEFAULT_ASYNC_MAX_EVENT_AGE = 21600
# How long an invocation waits for the handler lock before it runs anyway (with a warning): a safety valve
# against a handler that blocks on another thread's invocation, never reached in normal use.
LOCK_PATIENCE_SECONDS = 120.0


class LambdaContext:
    """The context object of the Python Lambda runtime (awslambdaric), same attribute names and types."""

    def __init__(self, *, function: LambdaFunction, request_id: str, deadline_ms: int) -> None:
        self.aws_request_id = request_id
        self.function_name: str = function.function_name
        self.function_version: str = str(function.version)
        self.invoked_function_arn: str = function.function_arn
        # The real runtime reads AWS_LAMBDA_FUNCTION_MEMORY_SIZE, so this is a string there too.
        self.memory_limit_in_mb: str = str(function.memory_size)
        self.log_group_name: str = function.logs_group_name
        self.log_stream_name: str = f"offline/[{function.version}]{request_id.replace('-', '')}"
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))

    def log(self, message: str) -> None:
        print(message, end="" if message.endswith("\n") else "\n")

    def __repr__(self) -> str:
        return f"LambdaContext(function_name={self.function_name!r}, aws_request_id={self.aws_request_id!r})"


@dataclass(frozen=True)
class InvokeResult:
    """What a synchronous Invoke returned: the payload bytes and the FunctionError header, if any."""

    payload: bytes
    function_error: str | None

    def json(self) -> Any:
        return json.loads(self.payload) if self.payload else None


@dataclass
class _AsyncInvocation:
    function_arn: str
    payload: str
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    enqueued_at: float = field(default_factory=time.time)
    invokes: int = 0
    not_before: float = 0.0


def error_payload(
    error_type: str, message: str, request_id: str, stack: list[str] | None = None
) -> dict[str, Any]:
    return {"errorMessage": message, "errorType": error_type, "requestId": request_id, "stackTrace": stack or []}


def _handler_stack(exc: BaseException) -> list[str]:
    frames = traceback.extract_tb(exc.__traceback__)[1:]  # drop our own frame (the call of the handler)
    return traceback.format_list(frames)


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def observe_current_set(invocation: Invocation) -> Any:
    return _current_invocation.set(invocation)


def observe_current_reset(token: Any) -> None:
    _current_invocation.reset(token)


class InProcessLambdas:
    """The in-process Lambda service of one runtime."""

    def __init__(
        self,
        *,
        account_id: str,
        region: str,
        enforce_timeouts: bool = True,
        retry_delay: Callable[[int], float] = lambda attempt: 0.0,
        observers: Observers | None = None,
    ) -> None:
        self.account_id = account_id
        self.region = region
        self.enforce_timeouts = enforce_timeouts
        self.retry_delay = retry_delay
        self.observers = observers if observers is not None else Observers()
        # Function ARN -> DeadLetterConfig target ARN (moto does not keep the function's DeadLetterConfig).
        self.dead_letter_targets: dict[str, str] = {}
        self._handler_locks: dict[str, threading.RLock] = {}  # function ARN -> its "execution environment"
        self._handler_locks_guard = threading.Lock()
        self._request_ids = threading.local()  # lets async retries keep their request id, as Lambda does
        self._async: deque[_AsyncInvocation] = deque()
        self._async_lock = threading.Lock()
        self._in_flight = 0

    @property
    def backend(self) -> LambdaBackend:
        return lambda_backends[self.account_id][self.region]

    # ------------------------------------------------------------------ moto patches
    def install(self, patcher: Patcher) -> None:
        runtime = self
        original_function_invoke = vars(LambdaFunction)["invoke"]
        original_backend_invoke = vars(LambdaBackend)["invoke"]
        original_create_esm = vars(LambdaBackend)["create_event_source_mapping"]

        def _invoke_lambda(function: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
            return runtime.run_handler(function, event)

        def function_invoke(function: LambdaFunction, body: Any, request_headers: Any, response_headers: Any) -> Any:
            result = original_function_invoke(function, body, request_headers, response_headers)
            # The Python runtime reports exceptions raised by the handler as "Unhandled" (moto says "Handled").
            if response_headers.get("x-amz-function-error") == "Handled":
                response_headers["x-amz-function-error"] = "Unhandled"
            return result

        def backend_invoke(
            backend: LambdaBackend, function_name: str, qualifier: str | None, body: Any, headers: Any,
            response_headers: Any,
        ) -> Any:
            invocation_type = _header(headers, "x-amz-invocation-type") or "RequestResponse"
            if invocation_type in ("Event", "DryRun"):
                function = backend.get_function(function_name, qualifier)  # 404 for an unknown function, like AWS
                if invocation_type == "Event":
                    payload = body.decode() if isinstance(body, bytes) else (body or "{}")
                    runtime.invoke_async(function.function_arn, payload)
                response_headers["Content-Length"] = "0"
                return b""
            return original_backend_invoke(backend, function_name, qualifier, body, headers, response_headers)

        def no_stream_trigger(backend: LambdaBackend, function_arn: str, items: Any, source: str) -> None:
            # moto calls this inside every write to a table with a stream mapping and drops the records when the
            # handler fails; the runtime's stream pollers deliver them instead. Returning None keeps moto from
            # clearing the shard (moto empties StreamShard.items when this returns something truthy).
            return None

        def create_event_source_mapping(backend: LambdaBackend, spec: dict[str, Any]) -> Any:
            mapping = original_create_esm(backend, spec)
            if mapping.event_source_arn.split(":")[2] == "sqs":
                # moto would invoke the function inside SendMessage (no retries, no partial failures): detach
                # it from the queue, the runtime's SQS poller reads the queue instead.
                from moto.sqs.models import sqs_backends

                for queue in sqs_backends[backend.account_id][backend.region_name].queues.values():
                    if queue.lambda_event_source_mappings.get(mapping.function_arn) is mapping:
                        del queue.lambda_event_source_mappings[mapping.function_arn]
            return mapping

        patcher.patch(LambdaFunction, "_invoke_lambda", _invoke_lambda)
        patcher.patch(LambdaFunction, "invoke", function_invoke)
        patcher.patch(LambdaBackend, "invoke", backend_invoke)
        patcher.patch(LambdaBackend, "send_dynamodb_items", no_stream_trigger)
        patcher.patch(LambdaBackend, "create_event_source_mapping", create_event_source_mapping)

    # ------------------------------------------------------------------ running a handler
    def run_handler(self, function: LambdaFunction, event: Any) -> tuple[str, bool, str]:
        """Run the handler in-process; (payload JSON, errored, logs) as moto's ``_invoke_lambda`` returns."""
        if isinstance(event, str) and event == "{}":  # moto passes the string "{}" for an empty body
            event = {}
        request_id = getattr(self._request_ids, "next", None) or str(uuid.uuid4())
        self._request_ids.next = None
        with self._handler_locks_guard:
            handler_lock = self._handler_locks.setdefault(function.function_arn, threading.RLock())
        acquired = handler_lock.acquire(timeout=LOCK_PATIENCE_SECONDS)
        if not acquired:
            log.warning("%s: another invocation holds the handler lock for too long; running concurrently",
                        function.function_name)
        try:
            return self._run_locked(function, event, request_id)
        finally:
            if acquired:
                handler_lock.release()

    def _run_locked(self, function: LambdaFunction, event: Any, request_id: str) -> tuple[str, bool, str]:
        handler_string = str(function.handler or "")
        module_name, _, attribute = handler_string.replace("/", ".").rpartition(".")
        if not module_name or not attribute:
            return self._error("Runtime.MalformedHandlerName", f"Bad handler '{handler_string}': not enough values "
                               "to unpack (expected 2, got 1)", request_id, function)
        invocation = Invocation(function_name=function.function_name, function_arn=function.function_arn,
                                handler=handler_string, memory_mb=int(function.memory_size or 128),
                                request_id=request_id)
        init = observe_current_set(invocation)  # the init runs in the function's own environment too
        try:
            module = importlib.import_module(module_name)
        except SyntaxError as error:
            return self._error("Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {error}",
                               request_id, function)
        except ImportError as error:
            return self._error("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {error}",
                               request_id, function)
        except Exception as error:  # an exception while the module initialises: an init error
            return self._error(type(error).__name__, str(error), request_id, function, _handler_stack(error))
        finally:
            observe_current_reset(init)
        handler = getattr(module, attribute, None)
        if not callable(handler):
            return self._error("Runtime.HandlerNotFound", f"Handler '{attribute}' missing on module '{module_name}'",
                               request_id, function)

        timeout_seconds = float(function.timeout or 3)
        started = time.time()
        context = LambdaContext(function=function, request_id=request_id,
                                deadline_ms=int(started * 1000 + timeout_seconds * 1000))
        log.debug("START %s RequestId: %s", function.function_name, request_id)
        token = self.observers.start_invocation(invocation)
        outcome: tuple[str, bool, str] | None = None
        try:
            result = handler(event, context)
        except Exception as error:
            outcome = self._error(type(error).__name__, str(error), request_id, function, _handler_stack(error))
        except InvocationKilled as error:  # a crash injected after an AWS call took effect
            outcome = self._error("Runtime.ExitError", f"RequestId: {request_id} Error: Runtime exited ({error})",
                                  request_id, function)
        except SystemExit as error:
            outcome = self._error("Runtime.ExitError", f"RequestId: {request_id} Error: Runtime exited ({error.code})",
                                  request_id, function)
        finally:
            elapsed = time.time() - started
            log.debug("END %s RequestId: %s Duration: %.2f ms", function.function_name, request_id, elapsed * 1000)
            error_type = None
            if outcome is not None:
                error_type = json.loads(outcome[0]).get("errorType")
            elif self.enforce_timeouts and elapsed > timeout_seconds:
                error_type = "Sandbox.Timedout"
            self.observers.finish_invocation(token, invocation, elapsed, error_type)
        if outcome is not None:
            return outcome
        if self.enforce_timeouts and elapsed > timeout_seconds:
            # Lambda would have stopped the function at its Timeout; report what the caller would have seen.
            return self._error("Sandbox.Timedout",
                               f"RequestId: {request_id} Error: Task timed out after {timeout_seconds:.2f} seconds",
                               request_id, function)
        try:
            return json.dumps(result), False, ""
        except (TypeError, ValueError) as error:
            return self._error("Runtime.MarshalError", f"Unable to marshal response: {error}", request_id, function)

    @staticmethod
    def _error(
        error_type: str, message: str, request_id: str, function: LambdaFunction, stack: list[str] | None = None
    ) -> tuple[str, bool, str]:
        log.info("%s failed: %s: %s", function.function_name, error_type, message)
        return json.dumps(error_payload(error_type, message, request_id, stack)), True, ""

    # ------------------------------------------------------------------ invoking through moto
    def invoke(self, function: str, payload: Any, *, request_id: str | None = None) -> InvokeResult:
        """Synchronous Invoke (RequestResponse) through moto's Lambda backend: the same path as the API."""
        body = payload if isinstance(payload, str) else json.dumps(payload)
        response_headers: dict[str, Any] = {}
        self._request_ids.next = request_id
        try:
            result = self.backend.invoke(function, None, body, {"x-amz-invocation-type": "RequestResponse"},
                                         response_headers)
        finally:
            self._request_ids.next = None
        raw = result if isinstance(result, bytes) else str(result or "").encode()
        return InvokeResult(payload=raw, function_error=response_headers.get("x-amz-function-error"))

    def exists(self, function: str) -> bool:
        try:
            self.backend.get_function(function, None)
        except UnknownFunctionException:
            return False
        return True

    def invoke_async(self, function_arn: str, payload: str) -> str:
        """Queue an asynchronous invocation (what Lambda does for InvocationType=Event); returns its request id."""
        invocation = _AsyncInvocation(function_arn=function_arn, payload=payload)
        with self._async_lock:
            self._async.append(invocation)
        return invocation.request_id

    def pending(self) -> int:
        with self._async_lock:
            return len(self._async) + self._in_flight

    def pump(self) -> bool:
        """Run the queued async invocations that are due; True if any ran."""
        now = time.time()
        with self._async_lock:
            due = [item for item in self._async if item.not_before <= now]
            for item in due:
                self._async.remove(item)
            self._in_flight += len(due)
        for index, item in enumerate(due):
            try:
                self._run_async(item)
            except BaseException:
                rest = due[index + 1:]
                with self._async_lock:  # put back what did not run, so nothing is lost
                    self._async.extendleft(reversed(rest))
                    self._in_flight -= len(rest)
                raise
            finally:
                with self._async_lock:
                    self._in_flight -= 1
        return bool(due)

    def _run_async(self, item: _AsyncInvocation) -> None:
        try:
            function = self.backend.get_function(item.function_arn, None)
        except UnknownFunctionException:
            log.warning("async invocation %s dropped: function %s no longer exists", item.request_id,
                        item.function_arn)
            return
        config = function.event_invoke_config[0].config if function.event_invoke_config else {}
        max_retries = int(config.get("MaximumRetryAttempts", DEFAULT_ASYNC_RETRIES))
        max_age = int(config.get("MaximumEventAgeInSeconds", DEFAULT_ASYNC_MAX_EVENT_AGE))
        result = self.invoke(item.function_arn, item.payload, request_id=item.request_id)
        item.invokes += 1
        on_success = (config.get("DestinationConfig") or {}).get("OnSuccess", {}).get("Destination")
        on_failure = (config.get("DestinationConfig") or {}).get("OnFailure", {}).get("Destination")
        if result.function_error is None:
            if on_success:
                self._send_record(on_success, item, function, result, "Success")
            return
        age = time.time() - item.enqueued_at
        if item.invokes <= max_retries and age <= max_age:
            item.not_before = time.time() + self.retry_delay(item.invokes)
            with self._async_lock:
                self._async.append(item)
            return
        condition = "RetriesExhausted" if item.invokes > max_retries else "EventAgeExceeded"
        log.warning("async invocation of %s failed %d time(s) (%s)", function.function_name, item.invokes, condition)
        if on_failure:
            self._send_record(on_failure, item, function, result, condition)
        dead_letter = self.dead_letter_targets.get(function.function_arn)
        if dead_letter:
            error = result.json() or {}
            self._send(dead_letter, item.payload, {
                "RequestID": item.request_id,
                "ErrorCode": 200,
                "ErrorMessage": str(error.get("errorMessage", ""))[:1024],
            })
        if not on_failure and not dead_letter:
            log.warning("event dropped: %s has no on-failure destination or dead-letter queue", function.function_name)

    def _send_record(
        self, destination: str, item: _AsyncInvocation, function: LambdaFunction, result: InvokeResult, condition: str
    ) -> None:
        response_context: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
        if result.function_error:
            response_context["functionError"] = result.function_error
        record = {
            "version": "1.0",
            "timestamp": destinations.utc_timestamp(),
            "requestContext": {
                "requestId": item.request_id,
                "functionArn": f"{function.function_arn}:$LATEST",
                "condition": condition,
                "approximateInvokeCount": item.invokes,
            },
            "requestPayload": _json_or_text(item.payload),
            "responseContext": response_context,
            "responsePayload": _json_or_text(result.payload.decode()),
        }
        detail_type = (
            "Lambda Function Invocation Result - Success"
            if condition == "Success"
            else "Lambda Function Invocation Result - Failure"
        )
        self._send(destination, json.dumps(record), None, detail_type=detail_type)

    def _send(self, arn: str, body: str, attributes: dict[str, Any] | None, **kwargs: Any) -> None:
        try:
            destinations.send(arn, body, invoke_async=self.invoke_async, attributes=attributes, **kwargs)
        except Exception:
            log.exception("could not deliver to %s", arn)


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
