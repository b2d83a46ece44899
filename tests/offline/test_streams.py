"""DynamoDB stream event source mappings with Lambda's semantics."""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

import boto3
import pytest

import offline.pollers
from offline.runtime import INFINITE_RETRY_LIMIT
from tests.offline.support import Handler, bodies, function, module, queue, table, template

HANDLER = """
    CALLS = []       # the pk of every record, per invocation
    POISON = set()   # pks that make the function raise
    REPORT = {}      # pk -> how many more times to report it as a batch item failure

    def handler(event, context):
        keys = [record["dynamodb"]["Keys"]["pk"]["S"] for record in event["Records"]]
        CALLS.append(keys)
        if POISON.intersection(keys):
            raise RuntimeError("poison record")
        failures = []
        for record in event["Records"]:
            pk = record["dynamodb"]["Keys"]["pk"]["S"]
            if REPORT.get(pk, 0) > 0:
                REPORT[pk] -= 1
                failures.append({"itemIdentifier": record["dynamodb"]["SequenceNumber"]})
        return {"batchItemFailures": failures}
"""


def stream_template(**mapping: Any) -> dict[str, Any]:
    return template(
        Items1A2B3C4D=table(),
        Relay=function("h_stream.handler"),
        Failures=queue(),
        Mapping={"Type": "AWS::Lambda::EventSourceMapping", "Properties": {
            "EventSourceArn": {"Fn::GetAtt": ["Items1A2B3C4D", "StreamArn"]},
            "FunctionName": {"Ref": "Relay"},
            "StartingPosition": "TRIM_HORIZON",
            "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": ["Failures", "Arn"]}}},
            **mapping,
        }},
    )


def put(rt: Any, *keys: str, kind: str = "event") -> None:
    ddb = boto3.client("dynamodb")
    for key in keys:
        ddb.put_item(TableName=rt.physical("Items").name, Item={"pk": {"S": key}, "kind": {"S": kind}})


@pytest.fixture
def handler(code: Any) -> Any:
    code("h_stream", HANDLER)
    return Handler("h_stream")


def test_filter_and_partial_failure_retry_from_the_failed_record(run: Any, handler: Any) -> None:
    rt = run(stream_template(
        BatchSize=10, MaximumRetryAttempts=5, FunctionResponseTypes=["ReportBatchItemFailures"],
        FilterCriteria={"Filters": [{"Pattern": json.dumps(
            {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"kind": {"S": ["event"]}}}})}]},
    ))
    handler.REPORT["c"] = 1
    put(rt, "a")
    put(rt, "b", kind="snapshot")  # filtered out
    put(rt, "c", "d")
    boto3.client("dynamodb").update_item(  # a MODIFY: filtered out
        TableName=rt.physical("Items").name, Key={"pk": {"S": "a"}}, UpdateExpression="SET x = :x",
        ExpressionAttributeValues={":x": {"S": "1"}})
    assert handler.CALLS == []  # moto's own trigger (inside the write) is off
    rt.settle()
    assert handler.CALLS == [["a", "c", "d"], ["c", "d"]]
    put(rt, "e")
    rt.settle()
    assert handler.CALLS[-1] == ["e"]
    assert bodies(boto3.client("sqs"), rt.physical("Failures").url) == []
    [mapping] = boto3.client("lambda").list_event_source_mappings()["EventSourceMappings"]
    assert mapping["EventSourceArn"] == rt.physical("Items").stream_arn
    assert (mapping["BatchSize"], mapping["FunctionResponseTypes"]) == (10, ["ReportBatchItemFailures"])


def test_bisect_isolates_the_failing_record(run: Any, handler: Any) -> None:
    rt = run(stream_template(BatchSize=4, BisectBatchOnFunctionError=True, MaximumRetryAttempts=2))
    handler.POISON.add("p2")
    put(rt, "p0", "p1", "p2", "p3")
    rt.settle()
    assert handler.CALLS == [
        ["p0", "p1", "p2", "p3"],  # fails: split in halves
        ["p0", "p1"],
        ["p2", "p3"],  # fails: split again
        ["p2"], ["p2"], ["p2"],  # the first attempt and 2 retries
        ["p3"],
    ]
    [record] = bodies(boto3.client("sqs"), rt.physical("Failures").url)
    info = record["DDBStreamBatchInfo"]
    assert info["batchSize"] == 1 and info["startSequenceNumber"] == info["endSequenceNumber"]
    assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"


def test_retry_cap_sends_the_batch_to_the_on_failure_queue_and_moves_on(run: Any, handler: Any) -> None:
    rt = run(stream_template(BatchSize=1, MaximumRetryAttempts=2))
    handler.POISON.add("x")
    put(rt, "w", "x", "y")
    rt.settle()
    assert handler.CALLS == [["w"], ["x"], ["x"], ["x"], ["y"]]
    [record] = bodies(boto3.client("sqs"), rt.physical("Failures").url)
    stream_arn = rt.physical("Items").stream_arn
    streams = boto3.client("dynamodbstreams")
    shard = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"][0]
    iterator = streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard["ShardId"],
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = streams.get_records(ShardIterator=iterator)["Records"]
    poison_sequence = records[1]["dynamodb"]["SequenceNumber"]
    assert set(record) == {"requestContext", "responseContext", "version", "timestamp", "DDBStreamBatchInfo"}
    assert record["version"] == "1.0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["timestamp"])
    context = record["requestContext"]
    assert context["functionArn"] == rt.physical("Relay").arn and context["condition"] == "RetryAttemptsExhausted"
    assert context["approximateInvokeCount"] == 3 and context["requestId"]
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    info = record["DDBStreamBatchInfo"]
    assert info["shardId"] == shard["ShardId"] and info["streamArn"] == stream_arn
    assert info["startSequenceNumber"] == info["endSequenceNumber"] == poison_sequence
    assert info["batchSize"] == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", info["approximateArrivalOfFirstRecord"])
    assert info["approximateArrivalOfLastRecord"] == info["approximateArrivalOfFirstRecord"]


def test_a_record_reported_failed_every_time_does_not_block_the_shard(run: Any, handler: Any) -> None:
    rt = run(stream_template(BatchSize=10, MaximumRetryAttempts=1, BisectBatchOnFunctionError=True,
                             FunctionResponseTypes=["ReportBatchItemFailures"]))
    handler.REPORT["b"] = 99
    put(rt, "a", "b", "c")
    rt.settle()
    assert handler.CALLS == [["a", "b", "c"], ["b", "c"]]  # retried from b; only the rest of that batch
    [record] = bodies(boto3.client("sqs"), rt.physical("Failures").url)
    assert record["DDBStreamBatchInfo"]["batchSize"] == 2
    assert "functionError" not in record["responseContext"]  # the function returned normally
    put(rt, "d")
    rt.settle()
    assert handler.CALLS[-1] == ["d"]


def test_maximum_record_age_bounds_infinite_retries(run: Any, handler: Any, monkeypatch: Any) -> None:
    rt = run(stream_template(BatchSize=1, MaximumRetryAttempts=-1, MaximumRecordAgeInSeconds=60))
    handler.POISON.add("old")
    put(rt, "old")
    rt.settle()  # retried quickly, then the shard is blocked (retrying only every minute), as on AWS
    assert handler.CALLS == [["old"]] * INFINITE_RETRY_LIMIT
    real_now = offline.pollers._now
    monkeypatch.setattr(offline.pollers, "_now", lambda: real_now() + 120)  # two minutes later
    rt.settle()
    assert len(handler.CALLS) == INFINITE_RETRY_LIMIT  # too old to be sent again
    [record] = bodies(boto3.client("sqs"), rt.physical("Failures").url)
    assert record["requestContext"]["condition"] == "RecordAgeExceeded"
    assert record["requestContext"]["approximateInvokeCount"] == INFINITE_RETRY_LIMIT
    monkeypatch.setattr(offline.pollers, "_now", real_now)
    put(rt, "new")
    rt.settle()
    assert handler.CALLS[-1] == ["new"]


def test_the_dynamodb_record_has_the_lambda_event_shape(run: Any, code: Any) -> None:
    code("h_shape", """
        EVENTS = []

        def handler(event, context):
            EVENTS.append(event)
    """)
    rt = run(template(
        Items=table(stream="NEW_AND_OLD_IMAGES"),
        Fn=function("h_shape.handler"),
        Mapping={"Type": "AWS::Lambda::EventSourceMapping", "Properties": {
            "EventSourceArn": {"Fn::GetAtt": ["Items", "StreamArn"]}, "FunctionName": {"Ref": "Fn"},
            "StartingPosition": "LATEST"}},
    ))
    boto3.client("dynamodb").put_item(TableName=rt.physical("Items").name, Item={"pk": {"S": "k"}, "n": {"N": "1"}})
    rt.settle()
    [event] = module("h_shape").EVENTS
    [record] = event["Records"]
    assert set(record) == {"eventID", "eventName", "eventVersion", "eventSource", "awsRegion", "dynamodb",
                           "eventSourceARN"}
    assert (record["eventName"], record["eventSource"], record["awsRegion"]) == ("INSERT", "aws:dynamodb", "us-east-1")
    assert record["eventSourceARN"] == rt.physical("Items").stream_arn
    dynamodb = record["dynamodb"]
    assert dynamodb["Keys"] == {"pk": {"S": "k"}} and dynamodb["NewImage"] == {"pk": {"S": "k"}, "n": {"N": "1"}}
    assert dynamodb["StreamViewType"] == "NEW_AND_OLD_IMAGES" and dynamodb["SequenceNumber"].isdigit()
    created = datetime.datetime.fromtimestamp(dynamodb["ApproximateCreationDateTime"], datetime.timezone.utc)
    assert abs((datetime.datetime.now(datetime.timezone.utc) - created).total_seconds()) < 60
