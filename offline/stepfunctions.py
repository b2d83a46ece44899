"""Step Functions under moto: instant Wait states and Retry intervals (``fast``), both workflow types with their
AWS semantics, execution logging to CloudWatch Logs, and the executions that are running.

moto executes ASL (``mock_aws(config={"stepfunctions": {"execute_state_machine": True}})``) in background
threads; Wait states and Retry intervals really sleep. It runs an EXPRESS state machine exactly like a STANDARD
one, which hides what Express does not give. ``emulate_workflow_types`` makes moto behave like AWS (Step Functions
API reference, StartExecution / ListExecutions / DescribeExecution / GetExecutionHistory):

- STANDARD: StartExecution is idempotent on the name (the same name and input while running answers the running
  execution; otherwise ``ExecutionAlreadyExists``), executions are listed, described and have a history.
- EXPRESS: StartExecution is *not* idempotent: every call starts a new execution, whatever its name, with an
  ARN ``arn:aws:states:<region>:<account>:express:<state machine>:<name>:<uuid>``. Express executions are not
  listed (``StateMachineTypeNotSupported``), described or given a history (``InvalidArn``): what they did is in
  the state machine's CloudWatch log group, and only there. StartSyncExecution stays unimplemented (moto).
- Both: with a ``LoggingConfiguration`` (offline/deploy.py passes the template's), every history event the
  log level selects is written to the log group as Step Functions writes it: a JSON object with ``id``,
  ``type``, ``details``, ``previous_event_id``, ``event_timestamp`` (epoch milliseconds), ``execution_arn`` and
  ``redrive_count``, one log stream per execution. (moto has a logging session of its own, but it hands the
  logs backend a record without ``timestamp``/``message`` and would fail the execution.)
"""

from __future__ import annotations

import copy
import datetime
import json
import logging
import threading
import types
import uuid
from collections.abc import Callable
from typing import Any

from offline.patches import Patcher

log = logging.getLogger("offline.stepfunctions")

EXPRESS = "EXPRESS"
_LOG_LOCK = threading.Lock()  # moto's log streams append without a lock; executions run on many threads


def make_fast(patcher: Patcher) -> None:
    """Wait states end at once and Retry intervals do not sleep (the retries themselves still happen)."""
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction

    def no_wait(self: Any, env: Any, wait_seconds: int) -> None:
        return None

    patcher.patch(WaitFunction, "_wait_interval", no_wait)
    # retrier_decl calls time.sleep(interval) through its module-level ``time``: give it one that does not sleep.
    patcher.patch(retrier_decl, "time", types.SimpleNamespace(sleep=lambda seconds: None))


def running_executions(account_id: str, region: str) -> list[Any]:
    from moto.stepfunctions.parser.api import ExecutionStatus
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    backend = stepfunctions_parser_backends[account_id][region]
    return list(backend._get_executions(ExecutionStatus.RUNNING))


def executions(account_id: str, region: str, state_machine_arn: str) -> list[Any]:
    """Every execution of the state machine, oldest first, of either type, from moto's backend.

    For tests and tools of the offline runtime only: AWS lists no Express executions (ListExecutions refuses).
    Each has ``execution_arn``, ``name``, ``status``, ``error``, ``start_date``, ``stop_date``.
    """
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    backend = stepfunctions_parser_backends[account_id][region]
    return sorted(backend.describe_state_machine(state_machine_arn).executions, key=lambda e: e.start_date)


# ====================================================================================== workflow types
def emulate_workflow_types(patcher: Patcher) -> None:
    """StartExecution, ListExecutions, DescribeExecution and GetExecutionHistory as AWS answers them per type."""
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    patcher.patch(StepFunctionsParserBackend, "start_execution", _start_execution)
    for name, refuse in (("list_executions", _refuse_express_machine), ("describe_execution", _refuse_express_arn),
                         ("get_execution_history", _refuse_express_arn)):
        original = getattr(StepFunctionsParserBackend, name)
        patcher.patch(StepFunctionsParserBackend, name, refuse(original))


def _is_express(state_machine: Any) -> bool:
    return str(getattr(state_machine, "type", "STANDARD")).upper() == EXPRESS


def _start_execution(
    self: Any, state_machine_arn: str, name: str | None = None, execution_input: str | None = None,
    trace_header: str | None = None,
) -> Any:
    """moto's StepFunctionsParserBackend.start_execution, with the name idempotency of Standard only, Express
    execution ARNs, and a CloudWatch Logs session when the state machine has a logging configuration."""
    from moto.stepfunctions.exceptions import InvalidExecutionInput
    from moto.stepfunctions.parser.backend.execution import Execution

    state_machine = self.describe_state_machine(state_machine_arn)
    express = _is_express(state_machine)
    name = name or str(uuid.uuid4())
    self._validate_name(name)
    if not express:
        existing = state_machine._handle_name_input_idempotency(name, execution_input)
        if existing is not None:
            return existing  # the same name and input while running: the same execution
    # A snapshot of the definition for this execution; the live executions (worker threads, locks) and the
    # backend (every other machine's executions) are shared, not copied (as moto itself does).
    clone = copy.deepcopy(state_machine, {id(state_machine.executions): [], id(state_machine.backend): state_machine.backend})
    input_data = "{}" if execution_input is None else execution_input
    try:
        json.loads(input_data)
    except ValueError as error:
        raise InvalidExecutionInput(str(error)) from None
    base = f"arn:{self.partition}:states:{self.region_name}:{self.account_id}"
    if express:
        execution_arn = f"{base}:express:{state_machine.name}:{name}:{uuid.uuid4()}"
    else:
        execution_arn = f"{base}:execution:{state_machine.name}:{name}"
    execution = Execution(
        name=name,
        sm_type=clone.sm_type,
        role_arn=clone.roleArn,
        exec_arn=execution_arn,
        account_id=self.account_id,
        region_name=self.region_name,
        state_machine=clone,
        start_date=datetime.datetime.now(tz=datetime.UTC),
        cloud_watch_logging_session=ExecutionLog.for_execution(state_machine, execution_arn),
        input_data=input_data,
        trace_header=trace_header,
        activity_store={},
    )
    state_machine.executions.append(execution)
    execution.start()
    return execution


def _refuse_express_machine(original: Callable[..., Any]) -> Callable[..., Any]:
    def list_executions(self: Any, state_machine_arn: str, *args: Any, **kwargs: Any) -> Any:
        if _is_express(self.describe_state_machine(state_machine_arn)):
            raise StateMachineTypeNotSupported("This operation is not supported by this type of state machine")
        return original(self, state_machine_arn, *args, **kwargs)

    return list_executions


def _refuse_express_arn(original: Callable[..., Any]) -> Callable[..., Any]:
    def refuse(self: Any, execution_arn: str, *args: Any, **kwargs: Any) -> Any:
        if ":express:" in execution_arn:
            from moto.stepfunctions.exceptions import InvalidArn

            raise InvalidArn(f"Invalid Arn: 'Express executions are not supported: {execution_arn}'")
        return original(self, execution_arn, *args, **kwargs)

    refuse.__name__ = original.__name__
    return refuse


def _state_machine_type_not_supported() -> type[Exception]:
    from moto.core.exceptions import AWSError

    class _StateMachineTypeNotSupported(AWSError):
        TYPE = "StateMachineTypeNotSupported"
        STATUS = 400

    return _StateMachineTypeNotSupported


StateMachineTypeNotSupported = _state_machine_type_not_supported()


# ====================================================================================== execution logs
class ExecutionLog:
    """Writes one execution's history events to its state machine's log group, as Step Functions does.

    Quacks like moto's CloudWatchLoggingSession (what its EventManager calls): ``execution_arn``,
    ``configuration.include_execution_data``, ``log_level_filter`` and ``publish_history_log``. A log that cannot
    be written is reported and dropped: logging never fails an execution.
    """

    def __init__(self, execution_arn: str, configuration: Any, stream_name: str) -> None:
        self.execution_arn = execution_arn
        self.configuration = configuration
        self._stream = stream_name
        self._stream_ready = False

    @classmethod
    def for_execution(cls, state_machine: Any, execution_arn: str) -> ExecutionLog | None:
        from moto.stepfunctions.parser.asl.eval.event.logging import CloudWatchLoggingConfiguration

        logging_configuration = getattr(state_machine, "loggingConfiguration", None) or {}
        try:
            configuration = CloudWatchLoggingConfiguration.from_logging_configuration(
                state_machine_arn=state_machine.arn, logging_configuration=logging_configuration)
        except (KeyError, TypeError, ValueError):
            log.warning("state machine %s: unreadable logging configuration %r", state_machine.arn, logging_configuration)
            return None
        if configuration is None:
            return None
        now = datetime.datetime.now(tz=datetime.UTC)
        stream = f"states/{state_machine.name}/{now:%Y-%m-%d-%H-%M}/{uuid.uuid4().hex}"
        return cls(execution_arn, configuration, stream)

    def log_level_filter(self, history_event_type: Any) -> bool:
        from moto.stepfunctions.parser.asl.eval.event.logging import is_logging_enabled_for

        return bool(is_logging_enabled_for(log_level=self.configuration.log_level,
                                           history_event_type=history_event_type))

    def publish_history_log(self, history_log: dict[str, Any]) -> None:
        try:
            millis = _epoch_millis(history_log["event_timestamp"])
            event_type = history_log["type"]
            record = {
                "id": str(history_log["id"]),
                "type": getattr(event_type, "value", str(event_type)),
                "details": history_log.get("details") or {},
                "previous_event_id": str(history_log["previous_event_id"]),
                "event_timestamp": str(millis),
                "execution_arn": self.execution_arn,
                "redrive_count": "0",
            }
            message = json.dumps(record, default=str, separators=(",", ":"))
            with _LOG_LOCK:
                backend = self._logs()
                if not self._stream_ready:
                    if self._stream not in backend.groups[self.configuration.log_group_name].streams:
                        backend.create_log_stream(self.configuration.log_group_name, self._stream)
                    self._stream_ready = True
                backend.put_log_events(self.configuration.log_group_name, self._stream,
                                       [{"timestamp": millis, "message": message}])
        except Exception:  # noqa: BLE001 - a log that cannot be written must not fail the execution
            log.warning("execution log of %s not written to %s", self.execution_arn,
                        self.configuration.log_group_name, exc_info=True)

    def _logs(self) -> Any:
        from moto.logs.models import logs_backends

        return logs_backends[self.configuration.log_account_id][self.configuration.log_region]


def _epoch_millis(value: Any) -> int:
    if isinstance(value, datetime.datetime):
        moment = value
    else:
        moment = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)
