"""make cost's meter on the whole system: a few orders, counts checked against what the services themselves say."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from benchmarks import cost
from offline.metering import Meter, Usage
from offline.runtime import Runtime

from .conftest import running, scan


def metered_orders(rt: Runtime, count: int) -> tuple[Usage, list[str]]:
    orders = cost.plan(cost.Workload(orders=count, seed=11))
    with cost._quiet():
        cost._set_up(rt, orders)
        rt.settle()
        with Meter(rt) as meter:
            order_ids = [cost._place(rt, order) for order in orders]
            rt.settle()
    assert meter.usage is not None
    return meter.usage, order_ids


def state_entered(execution_arn: str) -> int:
    sfn = boto3.client("stepfunctions")
    events = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    return sum(1 for event in events if event["type"].endswith("StateEntered"))


@pytest.fixture
def express_rt(express_template: dict[str, Any]) -> Iterator[Runtime]:
    yield from running(express_template)


def test_the_happy_path_of_three_orders_metered_in_the_standard_profile(rt: Runtime) -> None:
    usage, order_ids = metered_orders(rt, 3)
    assert usage.facts.get("meter_errors", 0) == 0
    # One API request per order placed, and a trace starts at each (the stage is traced).
    assert usage.total("apigateway.rest_request") == 3
    assert usage.operations[("apigateway", "POST /orders", "ApiRestApi")] == 3
    # One email per order that ended, as the notifications table and SES say.
    sent = [n for n in scan(rt.physical("NotificationsTable").name) if n["status"]["S"] == "SENT"]
    assert usage.total("ses.email") == len(sent) == 3
    # Standard transitions: every state each execution entered, as its history says (no retries on this path).
    machine = rt.physical("OrderSagaStateMachine").arn
    executions = boto3.client("stepfunctions").list_executions(stateMachineArn=machine)["executions"]
    assert {e["name"] for e in executions} == set(order_ids)
    assert usage.total("stepfunctions.standard_transition") == sum(state_entered(e["executionArn"]) for e in executions)
    assert usage.total("stepfunctions.express_request") == 0
    # Lambda: one request per invocation, each with a trigger read from its event and the configured memory.
    assert usage.total("lambda.request") == sum(stats["invocations"] for stats in usage.functions.values())
    assert usage.functions["OrdersApiFunction"]["invocations"] == 3
    assert usage.functions["OrdersApiFunction"]["triggers"] == {"api": 3}
    assert all(stats["architecture"] == "arm64" for stats in usage.functions.values())
    assert usage.total("lambda.x86_64.gb_second") == 0 and usage.total("lambda.arm64.gb_second") > 0
    # What was published is what the relay put on the bus; each inbox got its orders' events.
    assert usage.total("eventbridge.custom_event") == usage.ops("events", "PutEvents entry") > 0
    assert usage.operations[("sqs", "SendMessage", "OrderSagaInboxQueue")] == 3  # OrderPlaced
    assert usage.operations[("sqs", "SendMessage", "NotificationsInboxQueue")] == 3  # OrderConfirmed
    # DynamoDB: every table written, transactions at two units per item at least.
    writes = {resource: units for (key, resource), units in usage.quantities.items()
              if key == "dynamodb.write_request_unit"}
    for (service, operation, resource), count in usage.operations.items():
        if service == "dynamodb" and operation == "TransactWriteItems":
            assert writes[resource] >= 2 * count
    assert usage.total("dynamodb.read_request_unit") > 0
    assert usage.total("logs.ingested_gb") > 0 and usage.custom_metrics
    # The execution logs counted once, as many bytes as the state machine's log group received.
    logs = boto3.client("logs")
    group = rt.physical("OrderSagaLogs").name
    written = sum(len(event["message"].encode())
                  for stream in logs.describe_log_streams(logGroupName=group)["logStreams"]
                  for event in logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"])["events"])
    # Standard logs errors only (its history is in Step Functions): a happy path writes nothing there.
    assert written == 0
    counted = usage.quantities.get(("logs.ingested_gb", "stepfunctions:OrderSagaStateMachine"), 0) * 1024**3
    assert counted == pytest.approx(written)


def test_the_express_profile_bills_requests_and_duration(express_rt: Runtime) -> None:
    usage, order_ids = metered_orders(express_rt, 2)
    assert usage.facts.get("meter_errors", 0) == 0
    assert usage.total("stepfunctions.express_request") == len(order_ids) == usage.facts["executions"]
    assert usage.total("stepfunctions.standard_transition") == 0
    assert usage.total("stepfunctions.express_gb_second") >= len(order_ids) * 64 / 1024 * 0.1  # >= 100 ms each
    assert usage.total("ses.email") == 2
    # Express logs every step (its log is its only history): counted once, as many bytes as the group received.
    logs = boto3.client("logs")
    group = express_rt.physical("OrderSagaLogs").name
    written = sum(len(event["message"].encode())
                  for stream in logs.describe_log_streams(logGroupName=group)["logStreams"]
                  for event in logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"])["events"])
    assert written > 0
    counted = usage.quantities[("logs.ingested_gb", "stepfunctions:OrderSagaStateMachine")] * 1024**3
    assert counted == pytest.approx(written)
