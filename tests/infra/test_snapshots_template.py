"""The snapshotters in the template (one per event store): their stream mappings (event INSERTs only, the relay's failure handling), their
least-privilege grants on their own event store, their environment, and that snapshots are never published."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Template

from stacks.lambda_defaults import PythonFunction
from stacks.orderflow_stack import OrderflowStack
from stacks.snapshots import ACCOUNT_SNAPSHOT_INTERVAL, ORDER_SNAPSHOT_INTERVAL
from tests.infra.support import LOG_WRITE, XRAY, Resources, allow, get_att, grants, lid, ref

EVENT_INSERTS = {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"kind": {"S": ["event"]}}}}


def snapshotters(stack: OrderflowStack) -> list[tuple[str, PythonFunction, Any, dict[str, Any]]]:
    """(source, function, its table, its own environment)."""
    return [
        ("Orders", stack.snapshots.orders, stack.orders.table, {
            "ORDERS_TABLE": ref(stack.orders.table),
            "ORDER_SNAPSHOT_INTERVAL": str(ORDER_SNAPSHOT_INTERVAL),
        }),
        ("Payments", stack.snapshots.payments, stack.payments.table, {
            "PAYMENTS_TABLE": ref(stack.payments.table),
            "ACCOUNT_SNAPSHOT_INTERVAL": str(ACCOUNT_SNAPSHOT_INTERVAL),
        }),
    ]


def test_each_snapshotter_reads_its_own_event_stores_stream(stack: OrderflowStack, resources: Resources) -> None:
    for _source, function, table, _env in snapshotters(stack):
        mapping = resources[lid(function.node.find_child("Stream"))]
        props = dict(mapping["Properties"])
        filters = props.pop("FilterCriteria")["Filters"]
        # Event items only: a snapshot write (kind "snapshot", INSERT or MODIFY) never triggers it again.
        assert [json.loads(f["Pattern"]) for f in filters] == [EVENT_INSERTS]
        assert props == {
            "FunctionName": ref(function.function),
            "EventSourceArn": get_att(table, "StreamArn"),
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": 100,
            "MaximumBatchingWindowInSeconds": 10,
            "BisectBatchOnFunctionError": True,
            "MaximumRetryAttempts": 10,
            "MaximumRecordAgeInSeconds": 86400,
            "ParallelizationFactor": 1,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "DestinationConfig": {"OnFailure": {"Destination": get_att(stack.snapshots.failure_queue, "Arn")}},
        }
        assert lid(function.node.find_child("StreamDiscovery")) in mapping["DependsOn"]


def test_relay_never_publishes_snapshots(stack: OrderflowStack, resources: Resources) -> None:
    for source in ("Orders", "Payments"):
        props = resources[lid(stack.relay.node.find_child(f"{source}Stream"))]["Properties"]
        [pattern] = [json.loads(f["Pattern"]) for f in props["FilterCriteria"]["Filters"]]
        assert pattern["eventName"] == ["INSERT"] and pattern["dynamodb"]["NewImage"]["kind"]["S"] == ["event"]


def test_snapshotter_handlers_and_environment(stack: OrderflowStack, resources: Resources) -> None:
    for source, function, _table, environment in snapshotters(stack):
        props = resources[lid(function.function)]["Properties"]
        assert props["Handler"] == f"snapshots.{source.lower()}.handler"
        assert props["Environment"]["Variables"] == {
            **environment, "POWERTOOLS_METRICS_NAMESPACE": "Orderflow", "LOG_LEVEL": "INFO",
        }


def test_a_snapshotter_may_only_read_its_stream_and_read_and_put_items_of_its_store(
    stack: OrderflowStack, resources: Resources
) -> None:
    for _source, function, table, _env in snapshotters(stack):
        assert grants(resources, lid(function.role)) == (
            allow(LOG_WRITE, get_att(function.log_group, "Arn"))
            | allow(XRAY, "*")
            | allow(("dynamodb:ListStreams",), "*")
            | allow(
                ("sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SendMessage"),
                get_att(stack.snapshots.failure_queue, "Arn"),
            )
            | allow(
                ("dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"),
                get_att(table, "StreamArn"),
            )
            # No UpdateItem, DeleteItem or transactions: it never touches an event (its puts are conditional).
            | allow(("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"), get_att(table, "Arn"))
        )


def test_loaders_can_read_the_snapshot(stack: OrderflowStack, resources: Resources) -> None:
    """Loading = GetItem of the snapshot + Query of the tail: every function that loads an aggregate has both."""
    for function, table in (
        (stack.orders.api, stack.orders.table),
        (stack.orders.saga, stack.orders.table),
        (stack.payments.api, stack.payments.table),
        (stack.payments.saga, stack.payments.table),
    ):
        granted = grants(resources, lid(function.role))
        assert allow(("dynamodb:GetItem", "dynamodb:Query"), get_att(table, "Arn")) <= granted, function.node.path


def test_snapshotter_failures_are_alarmed(stack: OrderflowStack, template: Template) -> None:
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    queue_name = get_att(stack.snapshots.failure_queue, "QueueName")
    assert any(
        {"Name": "QueueName", "Value": queue_name} in alarm["Properties"].get("Dimensions", []) for alarm in alarms.values()
    )
