"""SQS event source mappings: the SQS event, partial batch failures, filters, redrive to the dead-letter queue."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import boto3
import pytest

from offline.runtime import INFINITE_RETRY_LIMIT
from tests.offline.support import Handler, function, messages, queue, template

HANDLER = """
    CALLS = []   # the bodies of every invocation
    RECORDS = []
    BAD = set()  # bodies reported as batch item failures
    RAISE = []

    def handler(event, context):
        CALLS.append([record["body"] for record in event["Records"]])
        RECORDS.extend(event["Records"])
        if RAISE:
            raise RuntimeError("broken")
        return {"batchItemFailures": [{"itemIdentifier": record["messageId"]}
                                      for record in event["Records"] if record["body"] in BAD]}
"""


def sqs_template(jobs: dict[str, Any] | None = None, **mapping: Any) -> dict[str, Any]:
    return template(
        Jobs=jobs or queue(RedrivePolicy={"deadLetterTargetArn": {"Fn::GetAtt": ["Dlq", "Arn"]}, "maxReceiveCount": 3}),
        Dlq=queue(),
        Worker=function("h_sqs.handler"),
        Mapping={"Type": "AWS::Lambda::EventSourceMapping", "Properties": {
            "EventSourceArn": {"Fn::GetAtt": ["Jobs", "Arn"]}, "FunctionName": {"Ref": "Worker"}, **mapping}},
    )


@pytest.fixture
def handler(code: Any) -> Any:
    code("h_sqs", HANDLER)
    return Handler("h_sqs")


def send(rt: Any, *bodies: str, **kwargs: Any) -> None:
    sqs = boto3.client("sqs")
    for body in bodies:
        sqs.send_message(QueueUrl=rt.physical("Jobs").url, MessageBody=body, **kwargs)


def test_partial_failures_are_retried_then_moved_to_the_dead_letter_queue(run: Any, handler: Any) -> None:
    rt = run(sqs_template(BatchSize=10, FunctionResponseTypes=["ReportBatchItemFailures"]))
    handler.BAD.add("bad")
    send(rt, "a", "bad", "c")
    assert handler.CALLS == []  # moto's own trigger (inside SendMessage) is off
    rt.settle()
    assert handler.CALLS == [["a", "bad", "c"], ["bad"], ["bad"]]
    counts = [record["attributes"]["ApproximateReceiveCount"] for record in handler.RECORDS
              if record["body"] == "bad"]
    assert counts == ["1", "2", "3"]
    sqs = boto3.client("sqs")
    assert messages(sqs, rt.physical("Jobs").url) == []
    assert [message["Body"] for message in messages(sqs, rt.physical("Dlq").url)] == ["bad"]


def test_a_function_error_retries_the_whole_batch(run: Any, handler: Any) -> None:
    rt = run(sqs_template(BatchSize=10))
    handler.RAISE.append(True)
    send(rt, "a", "b")
    rt.settle()
    assert handler.CALLS == [["a", "b"]] * 3
    assert sorted(message["Body"] for message in messages(boto3.client("sqs"), rt.physical("Dlq").url)) == ["a", "b"]


def test_without_a_redrive_policy_a_failing_message_waits_for_its_visibility_timeout(run: Any, handler: Any) -> None:
    rt = run(sqs_template(jobs=queue(VisibilityTimeout=600), BatchSize=1))
    handler.RAISE.append(True)
    send(rt, "forever")
    rt.settle()
    assert len(handler.CALLS) == INFINITE_RETRY_LIMIT
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=rt.physical("Jobs").url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "1"  # still there, as on AWS


def test_filtered_out_messages_are_deleted(run: Any, handler: Any) -> None:
    rt = run(sqs_template(FilterCriteria={"Filters": [{"Pattern": json.dumps({"body": {"type": ["order"]}})}]}))
    send(rt, json.dumps({"type": "order", "id": 1}), json.dumps({"type": "other"}), "not json")
    rt.settle()
    assert handler.CALLS == [[json.dumps({"type": "order", "id": 1})]]
    sqs = boto3.client("sqs")
    assert messages(sqs, rt.physical("Jobs").url) == [] and messages(sqs, rt.physical("Dlq").url) == []


def test_the_record_has_the_sqs_event_shape(run: Any, handler: Any) -> None:
    rt = run(sqs_template())
    send(rt, "hello", MessageAttributes={"kind": {"DataType": "String", "StringValue": "greeting"}})
    rt.settle()
    [record] = handler.RECORDS
    assert set(record) == {"messageId", "receiptHandle", "body", "attributes", "messageAttributes", "md5OfBody",
                           "md5OfMessageAttributes", "eventSource", "eventSourceARN", "awsRegion"}
    assert record["body"] == "hello" and record["md5OfBody"] == hashlib.md5(b"hello").hexdigest()
    assert (record["eventSource"], record["awsRegion"]) == ("aws:sqs", "us-east-1")
    assert record["eventSourceARN"] == rt.physical("Jobs").arn and record["receiptHandle"]
    assert set(record["attributes"]) == {"ApproximateReceiveCount", "SentTimestamp", "SenderId",
                                         "ApproximateFirstReceiveTimestamp"}
    assert record["messageAttributes"] == {"kind": {"stringValue": "greeting", "stringListValues": [],
                                                    "binaryListValues": [], "dataType": "String"}}


def test_fifo_records_carry_the_group(run: Any, handler: Any) -> None:
    rt = run(sqs_template(jobs=queue(FifoQueue=True, ContentBasedDeduplication=True), BatchSize=10))
    send(rt, "first", "second", MessageGroupId="g1")
    rt.settle()
    assert handler.CALLS == [["first", "second"]]
    assert rt.physical("Jobs").name.endswith(".fifo")
    assert {record["attributes"]["MessageGroupId"] for record in handler.RECORDS} == {"g1"}
