"""``orderflow trace <orderId>``: one order's path across every service, as one timeline.

Debugging across asynchronous boundaries is hard because each service keeps its own part of the story. This
reads every part for one order and puts it on one clock:

    service        where it is read                                   how
    orders         orders table, ``pk = <orderId>``, kind event        Query (the order's event stream)
    saga           the order saga's execution named by the order id   Standard: DescribeExecution +
                                                                      GetExecutionHistory; Express: its log
                                                                      group (FilterLogEvents), see below
    inventory      inventory table, ``pk = RESERVATION#<orderId>``     Query (reservation + its outbox items)
    payments       payments table, ``pk = account#<customerId>``       Query, filtered on correlationid = order
    notifications  notifications table, records with order_id = order  Scan with a filter (see below)

The notifications table is keyed by event id and has no index on the order id, so its records are found with
a filtered Scan: it reads the whole table, which is fine for an operator's tool run by hand (and is what a
GSI on ``order_id`` would fix if that table grows large). The payments query reads the customer's whole
account stream and keeps the order's events (a FilterExpression: filtered items still count as read).

The saga's workflow type comes from DescribeStateMachine. A Standard execution is named by the order id and has
a history. Express keeps none (ListExecutions, DescribeExecution and GetExecutionHistory refuse Express
executions): what an Express execution did is only in the state machine's CloudWatch log group (level ALL, with
execution data: stacks/order_saga.py), so the trace reads the log events that mention the order id and rebuilds
each execution from them. Express does not deduplicate starts, so an order can show several executions; their
log events arrive a few seconds after the fact and last as long as the group's retention.

Where it reads from:
- ``--endpoint-url http://127.0.0.1:4566`` (``make local``): the physical names come from the synthesized
  template through the offline runtime's own naming (``offline.deploy.Deployer.name``), so they are the names
  ``make local`` created;
- otherwise a real account with the usual AWS credentials: the physical names come from CloudFormation
  (``ListStackResources`` of ``--stack``; ``DescribeStackResources`` stops at 100 resources).

The keys and item layouts are not repeated here: they come from the services' own modules
(``shared.records``, ``inventory.repository``, ``payments.domain``). Stored items are shown as stored (an old
schema version is shown with its version, not upcast), and an item that cannot be read is shown as such
instead of stopping the trace: this is a tool for when things went wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

REPO_ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS_ROOT = REPO_ROOT / "functions"  # the services' code: the key designs and item layouts live there

# The resources a trace reads, by their logical id without CDK's hash suffix (stacks/).
ORDERS_TABLE = "OrdersTable"
INVENTORY_TABLE = "InventoryTable"
PAYMENTS_TABLE = "PaymentsTable"
NOTIFICATIONS_TABLE = "NotificationsTable"
ORDER_SAGA = "OrderSagaStateMachine"
_TABLES = (ORDERS_TABLE, INVENTORY_TABLE, PAYMENTS_TABLE, NOTIFICATIONS_TABLE)
_TABLE_TYPES = ("AWS::DynamoDB::Table", "AWS::DynamoDB::GlobalTable")
_STATE_MACHINE_TYPE = "AWS::StepFunctions::StateMachine"

# Step Functions history: the events that start and end one attempt of a task (service integrations and
# the older direct Lambda resource alike).
_ATTEMPT_STARTS = {"TaskScheduled", "LambdaFunctionScheduled", "ActivityScheduled"}
_ATTEMPT_SUCCEEDED = {"TaskSucceeded", "LambdaFunctionSucceeded", "ActivitySucceeded"}
_ATTEMPT_FAILED = {
    "TaskFailed", "TaskTimedOut", "TaskStartFailed", "TaskSubmitFailed", "LambdaFunctionFailed",
    "LambdaFunctionTimedOut", "LambdaFunctionStartFailed", "LambdaFunctionScheduleFailed", "ActivityFailed",
    "ActivityTimedOut", "ActivityScheduleFailed",
}
_DATA_KEYS_SHOWN_ELSEWHERE = ("order_id", "customer_id", "contact_email")


class TraceError(Exception):
    """Something the operator must fix or know (no such order, no such table, no endpoint): one clear line."""


class OrderNotFound(TraceError):
    pass


# ====================================================================================== where to read
@dataclass(frozen=True)
class Resources:
    """The physical names a trace reads."""

    orders_table: str
    inventory_table: str
    payments_table: str
    notifications_table: str
    state_machine_arn: str

    @classmethod
    def from_physical(cls, physical: dict[str, str], where: str) -> Resources:
        missing = [name for name in (*_TABLES, ORDER_SAGA) if name not in physical]
        if missing:
            raise TraceError(f"{where} has no {', '.join(missing)}: is it orderflow's stack?")
        return cls(orders_table=physical[ORDERS_TABLE], inventory_table=physical[INVENTORY_TABLE],
                   payments_table=physical[PAYMENTS_TABLE], notifications_table=physical[NOTIFICATIONS_TABLE],
                   state_machine_arn=physical[ORDER_SAGA])


def local_resources(template: dict[str, Any], *, stack_name: str, region: str) -> Resources:
    """The names ``make local`` (the offline runtime) gives the template's resources."""
    from offline.deploy import Deployer, readable_name
    from offline.template import Template

    parsed = Template(template, stack_name=stack_name, region=region)
    deployer = Deployer(parsed, lambdas=None)  # type: ignore[arg-type] - only its naming is used
    physical: dict[str, str] = {}
    for logical_id, resource in parsed.resources.items():
        wanted = readable_name(logical_id)
        properties = resource.get("Properties") or {}
        if resource.get("Type") in _TABLE_TYPES and wanted in _TABLES:
            name = properties.get("TableName")
            physical[wanted] = name if isinstance(name, str) else deployer.name(logical_id, 255)
        elif resource.get("Type") == _STATE_MACHINE_TYPE and wanted == ORDER_SAGA:
            name = properties.get("StateMachineName")
            name = name if isinstance(name, str) else deployer.name(logical_id, 80)
            physical[wanted] = f"arn:aws:states:{region}:{parsed.account_id}:stateMachine:{name}"
    return Resources.from_physical(physical, "the template")


def cloudformation_resources(stack_name: str, cloudformation: Any) -> Resources:
    """The physical names of a deployed stack (a table's physical id is its name, a state machine's its ARN)."""
    from offline.deploy import readable_name

    physical: dict[str, str] = {}
    try:
        for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack_name):
            for resource in page["StackResourceSummaries"]:
                wanted = readable_name(resource["LogicalResourceId"])
                kind = resource["ResourceType"]
                if (kind in _TABLE_TYPES and wanted in _TABLES) or (kind == _STATE_MACHINE_TYPE and wanted == ORDER_SAGA):
                    physical[wanted] = resource["PhysicalResourceId"]
    except ClientError as error:
        raise TraceError(f"cannot read the resources of stack {stack_name}: {_message(error)}") from None
    return Resources.from_physical(physical, f"stack {stack_name}")


# ====================================================================================== the timeline
@dataclass(frozen=True)
class Entry:
    """One line of the timeline: when, which service, what happened."""

    time: datetime | None
    service: str  # orders | saga | inventory | payments | notifications
    kind: str  # event | step | execution | state | notification
    what: str
    detail: str = ""
    outcome: str = "ok"  # ok | retried (ok after failed attempts) | caught (failed, a Catch went on) | failed | running
    duration_ms: int | None = None
    attempts: int | None = None
    errors: tuple[dict[str, str], ...] = ()  # failed attempts: {"error", "cause"}
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "time": _iso(self.time), "service": self.service, "kind": self.kind, "what": self.what,
            "detail": self.detail, "outcome": self.outcome, "durationMs": self.duration_ms,
            "attempts": self.attempts, "errors": list(self.errors), "data": self.data,
        }


@dataclass
class Timeline:
    order_id: str
    customer_id: str | None = None
    execution_status: str | None = None
    entries: list[Entry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def ordered(self) -> list[Entry]:
        """Oldest first; entries without a time last, in the order they were read."""
        indexed = list(enumerate(self.entries))
        indexed.sort(key=lambda pair: (pair[1].time is None, pair[1].time or datetime.min.replace(tzinfo=UTC),
                                       pair[0]))
        return [entry for _, entry in indexed]

    def to_json(self) -> dict[str, Any]:
        return {
            "orderId": self.order_id,
            "customerId": self.customer_id,
            "execution": self.execution_status,
            "entries": [entry.to_json() for entry in self.ordered()],
            "notes": list(self.notes),
        }


class Clients:
    """boto3 clients of one session, all pointed at one endpoint (``make local``) or at AWS."""

    def __init__(self, session: Any | None = None, endpoint_url: str | None = None) -> None:
        self._session = session or boto3.session.Session()
        self._endpoint_url = endpoint_url
        self._clients: dict[str, Any] = {}

    def __call__(self, service: str) -> Any:
        if service not in self._clients:
            options = {"endpoint_url": self._endpoint_url} if self._endpoint_url else {}
            self._clients[service] = self._session.client(service, **options)
        return self._clients[service]


def build_timeline(order_id: str, resources: Resources, clients: Callable[[str], Any]) -> Timeline:
    """Read every service's part of the order's story. Raises OrderNotFound when no service knows the order."""
    _import_services()
    timeline = Timeline(order_id=order_id)
    ddb = clients("dynamodb")
    order_events = list(_event_entries(_query(ddb, resources.orders_table, order_id), "orders"))
    timeline.entries += order_events
    placed = next((e.data.get("data") for e in order_events if e.what == "OrderPlaced"), None)
    timeline.customer_id = (placed or {}).get("customer_id")
    execution_input = _saga_entries(timeline, resources.state_machine_arn, clients, not_before=_placed_at(order_events))
    if not order_events and timeline.execution_status is None:
        raise OrderNotFound(f"order {order_id} not found: no events in table {resources.orders_table} and no "
                            f"execution of {resources.state_machine_arn.rsplit(':', 1)[-1]} by that name")
    if timeline.customer_id is None:
        timeline.customer_id = (execution_input or {}).get("customerId")
        timeline.notes.append("the order has no OrderPlaced event; the customer id comes from the saga's input")
    _inventory_entries(timeline, ddb, resources.inventory_table)
    _payment_entries(timeline, ddb, resources.payments_table)
    _notification_entries(timeline, ddb, resources.notifications_table)
    return timeline


# --- the services' key designs and layouts, from their own modules

def _import_services() -> None:
    root = str(FUNCTIONS_ROOT)
    if root not in sys.path:  # the offline runtime puts it there itself; the command line does it here
        sys.path.append(root)


def _query(ddb: Any, table: str, pk: str, **filters: Any) -> Iterator[dict[str, Any]]:
    from shared.event_store import from_dynamo, to_dynamo

    request: dict[str, Any] = {
        "TableName": table, "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": to_dynamo({":pk": pk}),
    }
    if filters:
        request["FilterExpression"] = " AND ".join(f"#{name} = :{name}" for name in filters)
        request["ExpressionAttributeNames"] = {f"#{name}": name for name in filters}
        request["ExpressionAttributeValues"].update(to_dynamo({f":{name}": value for name, value in filters.items()}))
    yield from (from_dynamo(item) for item in _pages(ddb, "query", request, table))


def _pages(ddb: Any, operation: str, request: dict[str, Any], table: str) -> Iterator[dict[str, Any]]:
    while True:
        try:
            page = getattr(ddb, operation)(**request)
        except ddb.exceptions.ResourceNotFoundException:
            raise TraceError(f"table {table} does not exist here: wrong --endpoint-url, --template or --stack?") from None
        yield from page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _event_entries(items: Iterable[dict[str, Any]], service: str) -> Iterator[Entry]:
    """Entries for the event and outbox items among ``items`` (other kinds, e.g. snapshots, are skipped)."""
    from shared.records import PUBLISHABLE_KINDS, envelope_from_attributes

    for item in items:
        if item.get("kind") not in PUBLISHABLE_KINDS:
            continue
        try:
            envelope = envelope_from_attributes(item)
        except (KeyError, TypeError, ValueError) as error:
            yield Entry(time=_parse_time(item.get("time")), service=service, kind="event",
                        what=str(item.get("type", "unreadable item")), outcome="failed",
                        detail=f"unreadable event item {item.get('pk')}/{item.get('sk')}: {error}",
                        data={key: str(value) for key, value in item.items()})
            continue
        yield Entry(
            time=envelope.time, service=service, kind="event", what=envelope.type,
            detail=_summary(envelope.data), data=envelope.to_wire(),  # the CloudEvents envelope, as stored
        )


def _inventory_entries(timeline: Timeline, ddb: Any, table: str) -> None:
    from inventory.repository import RESERVATION_KIND, reservation_key

    items = list(_query(ddb, table, reservation_key(timeline.order_id)["pk"]))
    events = list(_event_entries(items, "inventory"))
    timeline.entries += events
    reservation = next((item for item in items if item.get("kind") == RESERVATION_KIND), None)
    if reservation is None:
        return
    state = f"reservation {reservation.get('status')} (version {reservation.get('version')})"
    if reservation.get("tombstone"):
        state += ", a tombstone: released before anything was reserved"
    timeline.notes.append(f"inventory: {state}")
    if not events:  # the outbox items are gone (their TTL is 7 days): the reservation still tells the story
        timeline.entries.append(Entry(time=_parse_time(reservation.get("updated_at")), service="inventory",
                                      kind="state", what=f"reservation {reservation.get('status')}",
                                      detail="its outbox items have expired (TTL)", data=_plain(reservation)))


def _payment_entries(timeline: Timeline, ddb: Any, table: str) -> None:
    from payments.domain import account_id

    if timeline.customer_id is None:
        timeline.notes.append("payments: not read, the customer is unknown")
        return
    stream = account_id(timeline.customer_id)
    timeline.entries += _event_entries(_query(ddb, table, stream, correlationid=timeline.order_id), "payments")


def _notification_entries(timeline: Timeline, ddb: Any, table: str) -> None:
    from shared.event_store import from_dynamo, to_dynamo

    request = {"TableName": table, "FilterExpression": "order_id = :order",
               "ExpressionAttributeValues": to_dynamo({":order": timeline.order_id})}
    for item in (from_dynamo(raw) for raw in _pages(ddb, "scan", request, table)):
        status = str(item.get("status", "?"))
        to = f" to {item['to']}" if item.get("to") else ""
        detail = str(item.get("subject") or item.get("why") or "")
        if item.get("type"):
            detail = f"{detail} ({item['type']})" if detail else str(item["type"])
        timeline.entries.append(Entry(
            time=_parse_time(item.get("sent_at")), service="notifications", kind="notification",
            what=f"email {status}{to}", detail=detail, outcome="ok" if status in ("SENT", "SKIPPED") else "running",
            data=_plain(item)))


# --- the saga

def _placed_at(order_events: list[Entry]) -> datetime | None:
    return next((event.time for event in order_events if event.what == "OrderPlaced"), None)


def _saga_entries(
    timeline: Timeline, state_machine_arn: str, clients: Callable[[str], Any], *, not_before: datetime | None = None
) -> dict[str, Any] | None:
    """The saga's executions of the order: start, one entry per state, end. Returns the (first) execution's input."""
    sfn = clients("stepfunctions")
    try:
        machine = sfn.describe_state_machine(stateMachineArn=state_machine_arn)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code", "") != "StateMachineDoesNotExist":
            raise TraceError(f"cannot read the saga's state machine: {_message(error)}") from None
        machine = None  # the standard path says there is no such execution
    if machine is not None and machine.get("type") == "EXPRESS":
        return _express_saga_entries(timeline, machine, clients("logs"), not_before=not_before)
    return _standard_saga_entries(timeline, state_machine_arn, sfn)


def _standard_saga_entries(timeline: Timeline, state_machine_arn: str, sfn: Any) -> dict[str, Any] | None:
    """The execution named by the order id, from DescribeExecution and GetExecutionHistory."""
    head, _, name = state_machine_arn.partition(":stateMachine:")
    execution_arn = f"{head}:execution:{name}:{timeline.order_id}"
    try:
        execution = sfn.describe_execution(executionArn=execution_arn)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in ("ExecutionDoesNotExist", "StateMachineDoesNotExist", "InvalidArn"):
            timeline.notes.append(f"saga: no execution named {timeline.order_id} ({code})")
            return None
        raise TraceError(f"cannot read the saga execution: {_message(error)}") from None
    status = execution["status"]
    timeline.execution_status = status
    started, stopped = _utc(execution.get("startDate")), _utc(execution.get("stopDate"))
    timeline.entries.append(Entry(time=started, service="saga", kind="execution", what="execution started",
                                  detail=name, data={"executionArn": execution_arn}))
    try:
        history = list(_history(sfn, execution_arn))
    except ClientError as error:
        timeline.notes.append(f"saga: no execution history ({_message(error)})")
        history = []
    terminal = _state_entries(timeline, history)
    _execution_end(timeline, status, started, stopped, terminal, execution.get("error"), execution.get("cause"))
    try:
        return json.loads(execution.get("input") or "{}")
    except ValueError:
        return None


def _execution_end(timeline: Timeline, status: str, started: datetime | None, stopped: datetime | None,
                   terminal: str | None, error: str | None, cause: str | None) -> None:
    if status == "RUNNING":
        timeline.entries.append(Entry(time=None, service="saga", kind="execution", what="execution RUNNING",
                                      outcome="running", detail="still running"))
        return
    detail = f"ended in {terminal}" if terminal else ""
    errors: tuple[dict[str, str], ...] = ()
    if error or cause:
        errors = ({"error": error or "", "cause": cause or ""},)
        detail = f"{detail}: {error or ''} {_cause_message(cause)}".strip(": ")
    timeline.entries.append(Entry(time=stopped, service="saga", kind="execution", what=f"execution {status}",
                                  detail=detail, outcome="ok" if status == "SUCCEEDED" else "failed",
                                  duration_ms=_ms(started, stopped), errors=errors))


# Step Functions log event type -> the execution's status (what DescribeExecution would have said).
_EXECUTION_ENDS = {"ExecutionSucceeded": "SUCCEEDED", "ExecutionFailed": "FAILED", "ExecutionTimedOut": "TIMED_OUT",
                   "ExecutionAborted": "ABORTED"}


def _express_saga_entries(timeline: Timeline, machine: dict[str, Any], logs: Any, *,
                          not_before: datetime | None) -> dict[str, Any] | None:
    """Every Express execution of the order, rebuilt from the log events Step Functions wrote for it."""
    name = str(machine.get("name", ""))
    group = _log_group_of(machine)
    if group is None:
        timeline.notes.append("saga: an Express workflow without a CloudWatch log group keeps no record of its "
                              "executions: nothing to show")
        return None
    runs: dict[str, list[dict[str, Any]]] = {}
    for record in _execution_log_records(logs, group, timeline.order_id, not_before):
        parts = str(record.get("execution_arn", "")).split(":")
        # arn:aws:states:<region>:<account>:express:<state machine>:<execution name>:<id>
        if len(parts) == 9 and parts[5] == "express" and parts[6] == name and parts[7] == timeline.order_id:
            runs.setdefault(record["execution_arn"], []).append(record)
    if not runs:
        timeline.notes.append(f"saga: no Express execution of {timeline.order_id} in log group {group} (log events "
                              "arrive seconds after the fact and last as long as the group's retention)")
        return None
    statuses: list[str] = []
    first_input: dict[str, Any] | None = None
    ordered = sorted(runs.items(), key=lambda run: min(int(r.get("event_timestamp", 0)) for r in run[1]))
    for number, (execution_arn, records) in enumerate(ordered, 1):
        records.sort(key=lambda record: int(record.get("id", 0)))
        history = [_history_event(record) for record in records]
        start = next((event for event in history if event["type"] == "ExecutionStarted"), None)
        end = next((event for event in reversed(history) if event["type"] in _EXECUTION_ENDS), None)
        status = _EXECUTION_ENDS[end["type"]] if end else "RUNNING"
        statuses.append(status)
        started = start["timestamp"] if start else None
        label = f"{name} (Express {execution_arn.rsplit(':', 1)[-1][:8]})" if len(ordered) > 1 else f"{name} (Express)"
        timeline.entries.append(Entry(time=started, service="saga", kind="execution", what="execution started",
                                      detail=label, data={"executionArn": execution_arn, "execution": number}))
        timeline.execution_status = status  # _state_entries marks open states running only in a running execution
        terminal = _state_entries(timeline, history)
        details = _details(end) if end else {}
        _execution_end(timeline, status, started, end["timestamp"] if end else None, terminal,
                       details.get("error"), details.get("cause"))
        if first_input is None and start is not None:
            try:
                first_input = json.loads(_details(start).get("input") or "{}")
            except (TypeError, ValueError):
                first_input = None
    timeline.execution_status = statuses[0] if len(statuses) == 1 else ", ".join(statuses)
    if len(ordered) > 1:
        timeline.notes.append(f"saga: {len(ordered)} Express executions of this order (Express does not deduplicate "
                              "starts by name: each start runs the saga again)")
    return first_input


def _log_group_of(machine: dict[str, Any]) -> str | None:
    """The log group name of the state machine's logging destination (``arn:aws:logs:...:log-group:<name>:*``)."""
    for destination in (machine.get("loggingConfiguration") or {}).get("destinations") or []:
        arn = str(((destination or {}).get("cloudWatchLogsLogGroup") or {}).get("logGroupArn") or "")
        if ":log-group:" in arn:
            return arn.split(":log-group:", 1)[1].split(":", 1)[0]
    return None


def _execution_log_records(logs: Any, group: str, order_id: str, not_before: datetime | None) -> Iterator[dict[str, Any]]:
    """The JSON log events of the group that mention the order id (a quoted-term filter: CloudWatch Logs reads
    only those), each parsed; lines that are not Step Functions' JSON are skipped."""
    request: dict[str, Any] = {"logGroupName": group, "filterPattern": f'"{order_id}"'}
    if not_before is not None:
        request["startTime"] = int(not_before.timestamp() * 1000) - 60_000
    while True:
        try:
            page = logs.filter_log_events(**request)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code", "") == "ResourceNotFoundException":
                raise TraceError(f"log group {group} does not exist here: wrong --endpoint-url or --stack?") from None
            raise TraceError(f"cannot read the saga's log group {group}: {_message(error)}") from None
        for event in page.get("events", []):
            try:
                record = json.loads(event.get("message") or "")
            except ValueError:
                continue
            if isinstance(record, dict) and "type" in record and "execution_arn" in record:
                yield record
        if not page.get("nextToken"):
            return
        request["nextToken"] = page["nextToken"]


def _history_event(record: dict[str, Any]) -> dict[str, Any]:
    """A Step Functions log event as the GetExecutionHistory event it stands for (the same details)."""
    kind = str(record["type"])
    if kind.endswith("StateEntered"):
        key = "stateEnteredEventDetails"
    elif kind.endswith("StateExited"):
        key = "stateExitedEventDetails"
    else:
        key = kind[:1].lower() + kind[1:] + "EventDetails"
    try:
        at: datetime | None = datetime.fromtimestamp(int(record.get("event_timestamp", "")) / 1000, tz=UTC)
    except (TypeError, ValueError):
        at = None
    return {"type": kind, "timestamp": at, key: record.get("details") or {}}


def _details(event: dict[str, Any]) -> dict[str, Any]:
    return next((value for key, value in event.items() if key.endswith("EventDetails")), {}) or {}


def _history(sfn: Any, execution_arn: str) -> Iterator[dict[str, Any]]:
    request = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**request)
        yield from page.get("events", [])
        if not page.get("nextToken"):
            return
        request["nextToken"] = page["nextToken"]


@dataclass
class _OpenState:
    name: str
    type: str
    entered: datetime | None
    attempts: int = 0
    last_failed: bool = False
    errors: list[dict[str, str]] = field(default_factory=list)
    function: str | None = None


def _state_entries(timeline: Timeline, history: list[dict[str, Any]]) -> str | None:
    """One entry per state (a task with its attempts, errors and duration); returns the state the execution ended
    in (a Succeed or Fail state, or the last state that exited)."""
    open_states: dict[str, _OpenState] = {}
    current: _OpenState | None = None
    pending: list[tuple[_OpenState, datetime | None]] = []  # exited, waiting to learn where they went
    terminal: str | None = None
    last_exited: str | None = None  # a workflow may end at a task with "End": true, not only at Succeed/Fail
    for event in history:
        kind, at = event["type"], _utc(event.get("timestamp"))
        if kind.endswith("StateEntered"):
            name = event["stateEnteredEventDetails"]["name"]
            state_type = kind[: -len("StateEntered")]
            for exited, exited_at in pending:
                _add_state(timeline, exited, exited_at, next_state=name)
            pending = []
            if state_type in ("Succeed", "Fail"):
                terminal = name
                continue
            current = open_states[name] = _OpenState(name=name, type=state_type, entered=at)
        elif kind.endswith("StateExited"):
            last_exited = event["stateExitedEventDetails"]["name"]
            state = open_states.pop(last_exited, None)
            if state is not None:
                pending.append((state, at))
        elif current is not None and kind in _ATTEMPT_STARTS:
            current.attempts += 1
            current.last_failed = False
            current.function = _function_of(event) or current.function
        elif current is not None and kind in _ATTEMPT_SUCCEEDED:
            current.last_failed = False
        elif current is not None and kind in _ATTEMPT_FAILED:
            details = next((value for key, value in event.items() if key.endswith("EventDetails")), {}) or {}
            current.errors.append({"error": str(details.get("error", kind)), "cause": str(details.get("cause", ""))})
            current.last_failed = True
    for exited, exited_at in pending:
        _add_state(timeline, exited, exited_at, next_state=None)
    for state in open_states.values():  # still running (or the execution failed inside it)
        _add_state(timeline, state, None, next_state=None, running=timeline.execution_status == "RUNNING")
    return terminal or last_exited


def _add_state(timeline: Timeline, state: _OpenState, exited: datetime | None, *, next_state: str | None,
               running: bool = False) -> None:
    if running:
        outcome, detail = "running", "running"
    elif state.last_failed:
        error = state.errors[-1]
        outcome = "caught" if next_state else "failed"
        detail = f"{error['error']}: {_cause_message(error['cause'])}".rstrip(": ")
        if next_state:
            detail += f" -> {next_state}"
    elif state.errors:
        last = state.errors[-1]
        outcome = "retried"
        detail = f"ok after {len(state.errors)} failed attempt(s), the last {last['error']}: "
        detail = (detail + _cause_message(last["cause"])).rstrip(": ")
    else:
        outcome, detail = "ok", ""
    timeline.entries.append(Entry(
        time=state.entered, service="saga", kind="step", what=state.name, detail=detail, outcome=outcome,
        duration_ms=_ms(state.entered, exited), attempts=state.attempts or None, errors=tuple(state.errors),
        data={"type": state.type, **({"function": state.function} if state.function else {}),
              **({"next": next_state} if next_state else {})}))


def _function_of(event: dict[str, Any]) -> str | None:
    details = event.get("taskScheduledEventDetails") or event.get("lambdaFunctionScheduledEventDetails") or {}
    if details.get("resource", "").startswith("arn:aws:lambda:"):
        return details["resource"].rsplit(":", 1)[-1]
    try:
        parameters = json.loads(details.get("parameters") or "{}")
    except ValueError:
        return None
    function = parameters.get("FunctionName") if isinstance(parameters, dict) else None
    return function.rsplit(":", 1)[-1] if isinstance(function, str) else None


# --- small helpers

def _summary(data: dict[str, Any]) -> str:
    """A short line from an event's data, whatever its shape (schemas evolve; the trace must not break)."""
    parts = []
    for key, value in data.items():
        if key in _DATA_KEYS_SHOWN_ELSEWHERE or value is None:
            continue
        if key == "lines" and isinstance(value, list):
            parts.append(", ".join(_line(line) for line in value))
        elif isinstance(value, (str, int, float, bool)):
            parts.append(f"{key} {value}")
        else:
            parts.append(f"{key} {json.dumps(value, separators=(',', ':'))}")
    return "; ".join(parts)


def _line(line: Any) -> str:
    if not isinstance(line, dict):
        return str(line)
    text = f"{line.get('sku')} x{line.get('quantity')}"
    price = line.get("unit_price") or line.get("unitPrice")
    return f"{text} @ {price}" if price else text


def _cause_message(cause: Any) -> str:
    """Lambda puts its error document in ``cause``: show its message, not the stack trace."""
    if not cause:
        return ""
    try:
        document = json.loads(cause)
    except (TypeError, ValueError):
        return str(cause)
    return str(document.get("errorMessage", cause)) if isinstance(document, dict) else str(cause)


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(item, default=str))


def _utc(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return _parse_time(value)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return _utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if moment else None


def _ms(start: datetime | None, end: datetime | None) -> int | None:
    return round((end - start).total_seconds() * 1000) if start and end else None


def _message(error: ClientError) -> str:
    details = error.response.get("Error", {})
    return f"{details.get('Code', 'error')}: {details.get('Message', error)}"


# ====================================================================================== rendering
_RESET = "\033[0m"
_STYLES = {
    "orders": "\033[34m", "saga": "\033[35m", "inventory": "\033[36m", "payments": "\033[33m",
    "notifications": "\033[32m", "dim": "\033[2m", "bold": "\033[1m", "failed": "\033[31m", "caught": "\033[31m",
    "retried": "\033[33m", "running": "\033[33m",
}
_MARKS = {"ok": " ", "retried": "~", "caught": "!", "failed": "x", "running": ">"}


def render_table(timeline: Timeline, *, color: bool = False) -> str:
    """The timeline as a table for people: time (UTC), time since the first entry, service, what, duration."""

    def paint(text: str, style: str | None) -> str:
        return f"{_STYLES[style]}{text}{_RESET}" if color and style in _STYLES else text

    entries = timeline.ordered()
    first = next((entry.time for entry in entries if entry.time), None)
    header = f"order {timeline.order_id}"
    if timeline.customer_id:
        header += f"  customer {timeline.customer_id}"
    if timeline.execution_status:
        header += f"  saga {timeline.execution_status}"
    if first:
        header += f"  {first:%Y-%m-%d} (UTC)"
    rows: list[tuple[list[str], Entry | None]] = [(["TIME", "+ELAPSED", "SERVICE", "  WHAT", "TOOK", "DETAIL"], None)]
    for entry in entries:
        took = f"{entry.duration_ms} ms" if entry.duration_ms is not None else ""
        if entry.attempts and entry.attempts > 1:
            took += f" ({entry.attempts} tries)"
        rows.append(([
            f"{entry.time:%H:%M:%S.%f}"[:-3] if entry.time else "-",
            f"+{(entry.time - first).total_seconds():.3f}s" if entry.time and first else "",
            entry.service,
            f"{_MARKS.get(entry.outcome, '?')} {entry.what}",
            took,
            entry.detail,
        ], entry))
    widths = [max(len(cells[i]) for cells, _ in rows) for i in range(5)]
    lines = [paint(header, "bold")]
    for cells, entry in rows:
        padded = [cells[i].rjust(widths[i]) if i == 4 else cells[i].ljust(widths[i]) for i in range(5)]
        if entry is None:
            lines.append(paint("  ".join([*padded, cells[5]]), "bold"))
            continue
        problem = entry.outcome if entry.outcome != "ok" else None
        lines.append("  ".join([paint(padded[0], "dim"), paint(padded[1], "dim"), paint(padded[2], entry.service),
                                paint(padded[3], problem), padded[4], paint(cells[5], problem)]).rstrip())
    lines += [paint(f"note: {note}", "dim") for note in timeline.notes]
    return "\n".join(lines) + "\n"


# ====================================================================================== command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("order_id", metavar="orderId", help="the order id (POST /orders answered it)")
    parser.add_argument("--endpoint-url", default=None,
                        help="read the embedded AWS of `make local` (e.g. http://127.0.0.1:4566); names come from "
                             "--template. Without it: a real account, names from CloudFormation (--stack)")
    parser.add_argument("--template", type=Path, default=REPO_ROOT / "cdk.out" / "Orderflow.template.json",
                        help="synthesized template `make local` serves (default: cdk.out/Orderflow.template.json)")
    parser.add_argument("--stack", default=None,
                        help="stack name (default: the template's file name up to .template.json, else Orderflow)")
    parser.add_argument("--region", default=None, help="default: AWS_REGION / AWS_DEFAULT_REGION, else us-east-1")
    parser.add_argument("--json", action="store_true", help="print the timeline as JSON, for machines")
    parser.add_argument("--no-color", action="store_true", help="no ANSI colours (also: NO_COLOR, or not a TTY)")


def run(args: argparse.Namespace, out: Any = None, err: Any = None) -> int:
    """Run ``trace`` with parsed arguments; 0 on success, 1 with one clear line on stderr otherwise."""
    out, err = out or sys.stdout, err or sys.stderr
    region = args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    try:
        if args.endpoint_url:
            # The embedded AWS takes any credentials: do not require the operator to have some.
            session = boto3.session.Session(
                aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "local"),
                aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "local"), region_name=region)
            template = _read_template(args.template)
            stack = args.stack or _stack_name(args.template)
            resources = local_resources(template, stack_name=stack, region=region)
        else:
            session = boto3.session.Session(region_name=region)
            stack = args.stack or _stack_name(args.template)
            resources = cloudformation_resources(stack, session.client("cloudformation"))
        timeline = build_timeline(args.order_id, resources, Clients(session, args.endpoint_url))
    except TraceError as error:
        print(f"orderflow trace: {error}", file=err)
        return 1
    except EndpointConnectionError:
        print(f"orderflow trace: cannot reach {args.endpoint_url or 'AWS'}: is `make local` running "
              "(and on that port)?", file=err)
        return 1
    except NoCredentialsError:
        print("orderflow trace: no AWS credentials: configure them, or trace `make local` with --endpoint-url",
              file=err)
        return 1
    except (ClientError, BotoCoreError) as error:
        text = _message(error) if isinstance(error, ClientError) else str(error)
        print(f"orderflow trace: AWS refused a read: {text}", file=err)
        return 1
    if args.json:
        print(json.dumps(timeline.to_json(), indent=2), file=out)
    else:
        color = not args.no_color and not os.environ.get("NO_COLOR") and hasattr(out, "isatty") and out.isatty()
        out.write(render_table(timeline, color=color))
    return 0


def _read_template(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise TraceError(f"no template at {path}: run `make synth` (or give --template)") from None
    except ValueError as error:
        raise TraceError(f"{path} is not a JSON template: {error}") from None


def _stack_name(template: Path) -> str:
    """The stack name ``python -m offline serve`` gives a template file (serve.py)."""
    suffix = ".template.json"
    return template.name[: -len(suffix)] if template.name.endswith(suffix) else "Orderflow"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="orderflow trace", description="one order's timeline across services")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
