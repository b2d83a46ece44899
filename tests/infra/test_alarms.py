"""The alarms, checked from the synthesized template (both workflows): what must be watched is derived from the
template's own resources, not from the alarm construct's list, so a queue or function it failed to find fails here.

- every dead-letter or on-failure queue (anything named as one) and every queue no function reads: any message;
- every function: Errors (the saga's task functions: their error rate) and Throttles;
- every stream event source mapping's function: IteratorAge;
- every REST API: 5XXError; the state machine: failed, timed out, aborted; CompensationsFailed (orders);
- every alarm: the one topic, missing data not breaching, a runbook line.

And the walk itself, on a small stack built for the purpose: resources created after the alarms are covered too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from aws_cdk import App, Duration, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs
from aws_cdk.assertions import Template

from stacks.alarms import Alarms
from stacks.lambda_defaults import COMMON_ENVIRONMENT
from stacks.orderflow_stack import OrderflowStack
from tests.infra.support import Resources, get_att, key, lid, of_type, ref

NAMESPACE = COMMON_ENVIRONMENT["POWERTOOLS_METRICS_NAMESPACE"]
Watch = tuple[str, str, str]  # (namespace, metric name, dimensions as a key)


def _dimensions(dimensions: list[dict[str, Any]] | None) -> str:
    return key(sorted(((d["Name"], key(d["Value"])) for d in dimensions or []), key=lambda pair: pair[0]))


def watches(alarm: dict[str, Any]) -> Iterator[Watch]:
    """The metrics an alarm reads: its own, or those of its metric math."""
    props = alarm["Properties"]
    if "MetricName" in props:
        yield props["Namespace"], props["MetricName"], _dimensions(props.get("Dimensions"))
    for query in props.get("Metrics", []):
        metric = query.get("MetricStat", {}).get("Metric")
        if metric:
            yield metric["Namespace"], metric["MetricName"], _dimensions(metric.get("Dimensions"))


def alarms_on(resources: Resources, namespace: str, metric: str, **dimensions: Any) -> list[dict[str, Any]]:
    wanted = (namespace, metric, _dimensions([{"Name": k, "Value": v} for k, v in dimensions.items()]))
    return [a for a in of_type(resources, "AWS::CloudWatch::Alarm").values() if wanted in set(watches(a))]


def dead_end_queues(resources: Resources) -> set[str]:
    """Logical ids of queues named as a DLQ / on-failure destination anywhere, or read by no event source mapping."""
    named: list[Any] = []
    read: list[Any] = []
    for resource in resources.values():
        props = resource.get("Properties", {})
        kind = resource["Type"]
        if kind in ("AWS::Lambda::EventSourceMapping", "AWS::Lambda::EventInvokeConfig"):
            named.append(props.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination"))
            read.append(props.get("EventSourceArn"))
        elif kind in ("AWS::SQS::Queue", "AWS::SNS::Subscription"):
            named.append(props.get("RedrivePolicy", {}).get("deadLetterTargetArn"))
        elif kind == "AWS::Events::Rule":
            named += [target.get("DeadLetterConfig", {}).get("Arn") for target in props.get("Targets", [])]
        elif kind == "AWS::Lambda::Function":
            named.append(props.get("DeadLetterConfig", {}).get("TargetArn"))
    named_keys, read_keys = {key(arn) for arn in named if arn}, {key(arn) for arn in read if arn}
    return {
        queue for queue in of_type(resources, "AWS::SQS::Queue")
        if key({"Fn::GetAtt": [queue, "Arn"]}) in named_keys or key({"Fn::GetAtt": [queue, "Arn"]}) not in read_keys
    }


def saga_tasks(stack: OrderflowStack) -> set[str]:
    return {lid(f.function) for f in (stack.inventory.saga, stack.payments.saga, stack.orders.saga)}


@pytest.fixture(scope="module", params=["standard", "express"])
def build(
    request: pytest.FixtureRequest, stack: OrderflowStack, resources: Resources,
    express_app_and_stack: tuple[App, OrderflowStack], express_resources: Resources,
) -> tuple[OrderflowStack, Resources]:
    if request.param == "standard":
        return stack, resources
    return express_app_and_stack[1], express_resources


def test_every_alarm_notifies_the_one_topic_with_a_runbook(build: tuple[OrderflowStack, Resources]) -> None:
    stack, resources = build
    alarms = of_type(resources, "AWS::CloudWatch::Alarm")
    assert len(of_type(resources, "AWS::SNS::Topic")) == 1
    for logical_id, alarm in alarms.items():
        props = alarm["Properties"]
        assert props["AlarmActions"] == [ref(stack.alarms.topic)], logical_id
        assert props["TreatMissingData"] == "notBreaching", logical_id
        assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold", logical_id
        description = props["AlarmDescription"]
        assert isinstance(description, str) and "Runbook" in description and len(description) <= 1024, logical_id
    # one alarm per (watched metric): nothing watched twice
    watched = [w for alarm in alarms.values() for w in watches(alarm) if w[1] != "Invocations"]
    assert len(watched) == len(set(watched))


def test_every_dead_letter_and_on_failure_queue_alarms_on_one_message(build: tuple[OrderflowStack, Resources]) -> None:
    stack, resources = build
    dead_ends = dead_end_queues(resources)
    # the ones the stack has today, so a broken derivation cannot pass by finding nothing
    assert {lid(stack.relay.failure_queue), lid(stack.snapshots.failure_queue), lid(stack.saga.inbox.dlq),
            lid(stack.notifications.inbox.dlq), lid(stack.projections.inbox.dlq)} <= dead_ends
    for queue in dead_ends:
        [alarm] = alarms_on(resources, "AWS/SQS", "ApproximateNumberOfMessagesVisible",
                            QueueName={"Fn::GetAtt": [queue, "QueueName"]})
        props = alarm["Properties"]
        assert (props["Statistic"], props["Threshold"], props["EvaluationPeriods"], props["Period"]) == ("Maximum", 1, 1, 300)
    # an inbox that its consumer reads is not a dead end: its messages are work, not failures
    assert lid(stack.saga.inbox.queue) not in dead_ends
    assert alarms_on(resources, "AWS/SQS", "ApproximateNumberOfMessagesVisible",
                     QueueName=get_att(stack.saga.inbox.queue, "QueueName")) == []


def test_every_function_alarms_on_errors_and_throttles(build: tuple[OrderflowStack, Resources]) -> None:
    stack, resources = build
    functions = of_type(resources, "AWS::Lambda::Function")
    assert len(functions) >= 13
    tasks = saga_tasks(stack)
    for function in functions:
        name = {"Ref": function}
        [errors] = alarms_on(resources, "AWS/Lambda", "Errors", FunctionName=name)
        [throttles] = alarms_on(resources, "AWS/Lambda", "Throttles", FunctionName=name)
        assert (throttles["Properties"]["Threshold"], throttles["Properties"]["Statistic"]) == (1, "Sum")
        props = errors["Properties"]
        if function in tasks:
            # typed business errors (OutOfStock, PaymentDeclined) are Lambda errors too: a sustained error rate
            [expression] = [m["Expression"] for m in props["Metrics"] if "Expression" in m]
            assert expression == "IF(invocations >= 10, 100 * errors / invocations, 0)"
            assert (props["Threshold"], props["EvaluationPeriods"]) == (50, 3)
        else:
            assert (props["Statistic"], props["Threshold"], props["EvaluationPeriods"], props["Period"]) == ("Sum", 1, 1, 300)


def test_every_stream_consumer_alarms_on_its_iterator_age(build: tuple[OrderflowStack, Resources]) -> None:
    stack, resources = build
    consumers = {
        key(m["Properties"]["FunctionName"])
        for m in of_type(resources, "AWS::Lambda::EventSourceMapping").values()
        if "StartingPosition" in m["Properties"]
    }
    assert consumers >= {key(ref(f.function)) for f in (stack.relay.handler, stack.snapshots.orders, stack.snapshots.payments)}
    for consumer in consumers:
        [alarm] = alarms_on(resources, "AWS/Lambda", "IteratorAge", FunctionName=json.loads(consumer))
        props = alarm["Properties"]
        assert (props["Statistic"], props["Period"], props["Threshold"], props["EvaluationPeriods"]) == (
            "Maximum", 60, 60_000, 5
        )


def test_the_api_the_saga_and_failed_compensations_are_alarmed(build: tuple[OrderflowStack, Resources]) -> None:
    stack, resources = build
    for api in of_type(resources, "AWS::ApiGateway::RestApi"):
        [alarm] = alarms_on(resources, "AWS/ApiGateway", "5XXError", ApiName=resources[api]["Properties"]["Name"])
        assert (alarm["Properties"]["Statistic"], alarm["Properties"]["Threshold"]) == ("Sum", 1)
    for metric in ("ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"):
        assert len(alarms_on(resources, "AWS/States", metric, StateMachineArn=ref(stack.saga.state_machine))) == 1
    [compensations] = alarms_on(resources, NAMESPACE, "CompensationsFailed", service="orders")
    assert (compensations["Properties"]["Statistic"], compensations["Properties"]["Threshold"]) == ("Sum", 1)


# --------------------------------------------------------------------------- the walk, on a stack made for it

def test_what_is_added_after_the_alarms_is_alarmed_too() -> None:
    stack = Stack(App(), "Later")
    alarms = Alarms(stack, "Alarms")  # first, as if the stack grew around it
    code = lambda_.Code.from_inline("def handler(event, context):\n    return None\n")
    consumer = lambda_.Function(stack, "Consumer", runtime=lambda_.Runtime.PYTHON_3_13, handler="index.handler", code=code)
    table = dynamodb.Table(
        stack, "Table", partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
        stream=dynamodb.StreamViewType.NEW_IMAGE,
    )
    on_failure = sqs.Queue(stack, "StreamFailures")
    consumer.add_event_source(sources.DynamoEventSource(
        table, starting_position=lambda_.StartingPosition.TRIM_HORIZON, on_failure=sources.SqsDlq(on_failure),
    ))
    dlq = sqs.Queue(stack, "Dlq")
    inbox = sqs.Queue(stack, "Inbox", dead_letter_queue=sqs.DeadLetterQueue(queue=dlq, max_receive_count=3))
    consumer.add_event_source(sources.SqsEventSource(inbox))
    target_dlq = sqs.Queue(stack, "TargetDlq")
    events.Rule(stack, "Rule", schedule=events.Schedule.rate(Duration.hours(1)),
                targets=[targets.SqsQueue(inbox, dead_letter_queue=target_dlq)])
    forgotten = sqs.Queue(stack, "Forgotten")  # nobody reads it: whatever lands there stays
    alarms.add_queue_not_empty("NamedDlq", dlq, "A job failed five times")

    resources = Template.from_stack(stack).to_json()["Resources"]
    queue = lambda q: get_att(q, "QueueName")  # noqa: E731
    for q in (on_failure, dlq, target_dlq, forgotten):
        assert len(alarms_on(resources, "AWS/SQS", "ApproximateNumberOfMessagesVisible", QueueName=queue(q))) == 1
    assert alarms_on(resources, "AWS/SQS", "ApproximateNumberOfMessagesVisible", QueueName=queue(inbox)) == []
    [named] = alarms_on(resources, "AWS/SQS", "ApproximateNumberOfMessagesVisible", QueueName=queue(dlq))
    assert named["Properties"]["AlarmDescription"].startswith("A job failed five times. Runbook: read the messages")
    [stream] = alarms_on(resources, "AWS/SQS", "ApproximateNumberOfMessagesVisible", QueueName=queue(on_failure))
    assert "on-failure destination of Consumer's event source mapping" in stream["Properties"]["AlarmDescription"]
    for metric in ("Errors", "Throttles", "IteratorAge"):
        assert len(alarms_on(resources, "AWS/Lambda", metric, FunctionName=ref(consumer))) == 1
    assert len(of_type(resources, "AWS::CloudWatch::Alarm")) == 4 + 3
