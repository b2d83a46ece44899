"""EventBridge rule targets: Lambda (async), SQS, Step Functions; input transformation; dead-letter queues."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from tests.offline.support import Handler, bodies, function, messages, queue, template

EVENT_KEYS = {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}

HANDLER = """
    EVENTS = []
    FAIL = []

    def handler(event, context):
        EVENTS.append(event)
        if FAIL:
            raise RuntimeError("consumer broken")
"""


def rule(pattern: dict[str, Any], *targets: dict[str, Any], **properties: Any) -> dict[str, Any]:
    return {"Type": "AWS::Events::Rule", "Properties": {
        "EventBusName": {"Ref": "Bus"}, "EventPattern": pattern, "Targets": list(targets), **properties}}


def target(logical_id: str, target_id: str, **properties: Any) -> dict[str, Any]:
    return {"Id": target_id, "Arn": {"Fn::GetAtt": [logical_id, "Arn"]}, **properties}


BUS = {"Type": "AWS::Events::EventBus", "Properties": {"Name": "shop-bus"}}
PASS_MACHINE = {"Type": "AWS::StepFunctions::StateMachine", "Properties": {
    "Definition": {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}},
    "RoleArn": {"Fn::GetAtt": ["Role1A2B3C4D", "Arn"]}}}


def put(source: str = "shop.orders", detail_type: str = "OrderPlaced", **detail: Any) -> None:
    response = boto3.client("events").put_events(Entries=[{
        "EventBusName": "shop-bus", "Source": source, "DetailType": detail_type, "Detail": json.dumps(detail)}])
    assert response["FailedEntryCount"] == 0


@pytest.fixture
def handler(code: Any) -> Any:
    code("h_events", HANDLER)
    return Handler("h_events")


def test_lambda_sqs_and_step_functions_targets_of_two_rules(run: Any, handler: Any) -> None:
    rt = run(template(
        Bus=BUS,
        Consumer=function("h_events.handler"),
        Inbox=queue(),
        Saga=PASS_MACHINE,
        BySource=rule({"source": ["shop.orders"]}, target("Consumer", "fn"), target("Inbox", "q")),
        ByType=rule({"detail-type": ["OrderPlaced"], "detail": {"total": [{"numeric": [">", 10]}]}},
                    target("Saga", "sfn", RoleArn={"Fn::GetAtt": ["Role1A2B3C4D", "Arn"]})),
        Ignored=rule({"source": ["elsewhere"]}, target("Consumer", "fn")),
    ))
    put(orderId="o1", total=25)
    assert handler.EVENTS == []  # Lambda targets are invoked asynchronously
    rt.settle()
    [event] = handler.EVENTS
    assert set(event) == EVENT_KEYS
    assert (event["source"], event["detail-type"], event["detail"]) == ("shop.orders", "OrderPlaced",
                                                                         {"orderId": "o1", "total": 25})
    assert (event["account"], event["region"], event["version"]) == ("123456789012", "us-east-1", "0")
    assert event["time"].endswith("Z") and "T" in event["time"]
    [queued] = bodies(boto3.client("sqs"), rt.physical("Inbox").url)
    assert queued == event  # the same event, same id
    sfn = boto3.client("stepfunctions")
    [execution] = sfn.list_executions(stateMachineArn=rt.physical("Saga").arn)["executions"]
    described = sfn.describe_execution(executionArn=execution["executionArn"])
    assert described["status"] == "SUCCEEDED" and json.loads(described["input"]) == event


def test_input_input_path_and_input_transformer(run: Any) -> None:
    rt = run(template(
        Bus=BUS,
        Inbox=queue(),
        Shape=rule({"source": ["shop.orders"]},
                   target("Inbox", "constant", Input=json.dumps({"fixed": True})),
                   target("Inbox", "path", InputPath="$.detail"),
                   target("Inbox", "json", InputTransformer={
                       "InputPathsMap": {"id": "$.detail.orderId", "type": "$.detail-type", "n": "$.detail.n"},
                       "InputTemplate": '{"order": <id>, "count": <n>, "text": "<type> for <id>", '
                                        '"rule": "<aws.events.rule-name>"}'}),
                   target("Inbox", "text", InputTransformer={
                       "InputPathsMap": {"type": "$.detail-type"}, "InputTemplate": "<type> happened"})),
    ))
    put(orderId="o9", n=3)
    received = sorted(message["Body"] for message in messages(boto3.client("sqs"), rt.physical("Inbox").url))
    assert received == sorted([
        '{"fixed": true}',
        json.dumps({"orderId": "o9", "n": 3}),
        json.dumps({"order": "o9", "count": 3, "text": "OrderPlaced for o9", "rule": rt.physical("Shape").name},
                   separators=(", ", ": ")),
        "OrderPlaced happened",
    ])


def test_function_errors_are_lambdas_business_not_the_targets(run: Any, handler: Any) -> None:
    rt = run(template(
        Bus=BUS,
        Consumer=function("h_events.handler"),
        TargetDlq=queue(),
        ToConsumer=rule({"source": ["shop.orders"]}, target(
            "Consumer", "fn", DeadLetterConfig={"Arn": {"Fn::GetAtt": ["TargetDlq", "Arn"]}})),
    ))
    handler.FAIL.append(True)
    put(orderId="o1")
    rt.settle()
    assert len(handler.EVENTS) == 3  # the first attempt and Lambda's 2 async retries
    assert messages(boto3.client("sqs"), rt.physical("TargetDlq").url) == []  # delivery itself succeeded


def test_an_unreachable_target_goes_to_its_dead_letter_queue(run: Any, handler: Any) -> None:
    rt = run(template(
        Bus=BUS,
        Consumer=function("h_events.handler"),
        TargetDlq=queue(),
        ToConsumer=rule({"source": ["shop.orders"]}, target(
            "Consumer", "fn", DeadLetterConfig={"Arn": {"Fn::GetAtt": ["TargetDlq", "Arn"]}},
            RetryPolicy={"MaximumRetryAttempts": 1})),
        Disabled=rule({"source": ["shop.orders"]}, target("TargetDlq", "q"), State="DISABLED"),
    ))
    boto3.client("lambda").delete_function(FunctionName=rt.physical("Consumer").name)
    put(orderId="o1")
    rt.settle()
    [dead] = messages(boto3.client("sqs"), rt.physical("TargetDlq").url)
    assert json.loads(dead["Body"])["detail"] == {"orderId": "o1"}
    attributes = {key: value["StringValue"] for key, value in dead["MessageAttributes"].items()}
    assert attributes["RULE_ARN"] == rt.physical("ToConsumer").arn
    assert attributes["TARGET_ARN"] == rt.physical("Consumer").arn
    assert attributes["EXHAUSTED_RETRY_CONDITION"] == "MaximumRetryAttemptsExhausted"
    assert attributes["RETRY_ATTEMPTS"] == "1"
    assert handler.EVENTS == []
