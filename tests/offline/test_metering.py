"""offline/metering.py on tiny templates: exact units for known calls, and nothing changed by counting."""

from __future__ import annotations

import json
import sys
from typing import Any

import boto3
import pytest

from offline.metering import Meter
from tests.offline.support import Handler, function, queue, table, template

HANDLER = """
    import json
    import boto3

    RESULTS = []

    def handler(event, context):
        ddb = boto3.client("dynamodb")
        for op in event.get("ops", []):
            name, params = op
            try:
                RESULTS.append(getattr(ddb, name)(**params))
            except ddb.exceptions.ClientError as error:
                RESULTS.append(error.response["Error"]["Code"])
        if event.get("log"):
            print("x" * event["log"])
            print(json.dumps({"_aws": {"Timestamp": 0, "CloudWatchMetrics": [{"Namespace": "Test",
                  "Dimensions": [["service"]], "Metrics": [{"Name": "Things", "Unit": "Count"}]}]},
                  "service": "meter", "Things": [1.0]}))
        for record in event.get("Records", []):
            RESULTS.append(record["body"][:10])
        return {"ok": True}
"""


def meter_template() -> dict[str, Any]:
    return template(
        Items1A2B3C4D=table(
            stream=None,
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "owner", "AttributeType": "S"}],
            GlobalSecondaryIndexes=[{"IndexName": "byOwner", "KeySchema": [{"AttributeName": "owner",
                                                                             "KeyType": "HASH"}],
                                     "Projection": {"ProjectionType": "ALL"}}],
        ),
        Worker=function("h_meter.handler", MemorySize=512, Architectures=["arm64"],
                        TracingConfig={"Mode": "Active"}),
        Inbox=queue(),
        InboxMapping={"Type": "AWS::Lambda::EventSourceMapping", "Properties": {
            "EventSourceArn": {"Fn::GetAtt": ["Inbox", "Arn"]}, "FunctionName": {"Ref": "Worker"}, "BatchSize": 10}},
    )


@pytest.fixture
def rt(code: Any, run: Any) -> Any:
    code("h_meter", HANDLER)
    return run(meter_template())


def invoke(rt: Any, **event: Any) -> None:
    response = boto3.client("lambda").invoke(FunctionName=rt.physical("Worker").name, Payload=json.dumps(event))
    assert "FunctionError" not in response, response["Payload"].read()


def item(key: str, size: int, owner: str | None = "ann") -> dict[str, Any]:
    """An item of exactly ``size`` bytes as DynamoDB counts them (names + values)."""
    base = {"pk": {"S": key}}
    if owner:
        base["owner"] = {"S": owner}
    fixed = sum(len(name) + len(value["S"]) for name, value in base.items()) + len("data")
    return {**base, "data": {"S": "x" * (size - fixed)}}


def test_dynamodb_request_units_are_exact_for_known_items(rt: Any) -> None:
    name = rt.physical("Items").name
    key = {"pk": {"S": "b"}}
    ops = [
        ("put_item", {"TableName": name, "Item": item("a", 500)}),  # 1 WRU + 1 index put
        ("put_item", {"TableName": name, "Item": item("b", 1500)}),  # 2 WRU + 2 index put
        ("update_item", {"TableName": name, "Key": key, "UpdateExpression": "SET #d = :d",  # larger: 2 + index 2
                         "ExpressionAttributeNames": {"#d": "data"}, "ExpressionAttributeValues": {":d": {"S": "y"}}}),
        ("update_item", {"TableName": name, "Key": {"pk": {"S": "a"}}, "UpdateExpression": "SET #o = :o",
                         "ExpressionAttributeNames": {"#o": "owner"},  # 1 + index key moved: delete 1 + put 1
                         "ExpressionAttributeValues": {":o": {"S": "bob"}}}),
        ("put_item", {"TableName": name, "Item": item("a", 3000),  # condition fails: the larger of the two, 3
                      "ConditionExpression": "attribute_not_exists(pk)"}),
        ("transact_write_items", {"TransactItems": [  # 2 x 1 (put c) + 2 x 1 (check b) + index put 1
            {"Put": {"TableName": name, "Item": item("c", 200)}},
            {"ConditionCheck": {"TableName": name, "Key": key, "ConditionExpression": "attribute_exists(pk)"}}]}),
        ("transact_write_items", {"TransactItems": [  # cancelled: 2 x 1 on the item as it was, nothing written
            {"Put": {"TableName": name, "Item": item("d", 100), "ConditionExpression": "attribute_exists(pk)"}}]}),
        ("get_item", {"TableName": name, "Key": key, "ConsistentRead": True}),  # 1 RRU
        ("get_item", {"TableName": name, "Key": {"pk": {"S": "missing"}}}),  # 0.5 RRU: reads bill even when empty
        ("query", {"TableName": name, "KeyConditionExpression": "pk = :k",  # filtered out, still read: 0.5
                   "FilterExpression": "#d = :none", "ExpressionAttributeNames": {"#d": "data"},
                   "ExpressionAttributeValues": {":k": {"S": "a"}, ":none": {"S": "nothing"}}}),
        ("query", {"TableName": name, "IndexName": "byOwner", "KeyConditionExpression": "#o = :o",  # 0.5
                   "ExpressionAttributeNames": {"#o": "owner"}, "ExpressionAttributeValues": {":o": {"S": "ann"}}}),
        ("delete_item", {"TableName": name, "Key": {"pk": {"S": "c"}}}),  # 1 WRU + index delete 1
    ]
    with Meter(rt) as meter:
        invoke(rt, ops=ops)
    usage = meter.usage
    results = Handler("h_meter").RESULTS
    assert results[4] == "ConditionalCheckFailedException" and results[6] == "TransactionCanceledException"
    assert len(results[9]["Items"]) == 0 and sorted(i["pk"]["S"] for i in results[10]["Items"]) == ["b", "c"]
    writes = {resource: units for (key_, resource), units in usage.quantities.items()
              if key_ == "dynamodb.write_request_unit"}
    assert writes == {"Items": 1 + 2 + 2 + 1 + 3 + 4 + 2 + 1, "Items/byOwner": 1 + 2 + 2 + 2 + 1 + 1}
    reads = {resource: units for (key_, resource), units in usage.quantities.items()
             if key_ == "dynamodb.read_request_unit"}
    assert reads == {"Items": 1 + 0.5 + 0.5, "Items/byOwner": 0.5}
    assert usage.operations[("dynamodb", "PutItem (condition failed)", "Items")] == 1
    assert usage.operations[("dynamodb", "TransactWriteItems (cancelled)", "Items")] == 1
    assert usage.operations[("dynamodb", "IndexWrite", "Items/byOwner")] == 7  # the moved key: delete + put
    assert usage.facts.get("meter_errors", 0) == 0
    # What the calls did is what they do without a meter: the final state of the table.
    stored = {i["pk"]["S"]: i for i in boto3.client("dynamodb").scan(TableName=name)["Items"]}
    assert sorted(stored) == ["a", "b"] and stored["a"]["owner"]["S"] == "bob" and stored["b"]["data"]["S"] == "y"


def test_lambda_sqs_logs_and_metrics_of_an_invocation(rt: Any) -> None:
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=rt.physical("Inbox").name)["QueueUrl"]
    with Meter(rt) as meter:
        invoke(rt, log=2000)
        sqs.send_message(QueueUrl=url, MessageBody="s" * 100_000)  # two 64 KB chunks
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(n), "MessageBody": f"m{n}"} for n in range(3)])
        rt.settle()
    usage = meter.usage
    stats = usage.functions["Worker"]
    assert stats["memory_mb"] == 512 and stats["architecture"] == "arm64"
    assert stats["invocations"] == usage.total("lambda.request") >= 2
    assert stats["triggers"]["direct"] == 1 and stats["triggers"]["sqs"] >= 1
    assert usage.total("lambda.arm64.gb_second") == pytest.approx(stats["billed_ms"] / 1000 * 0.5)
    assert stats["log_bytes"] >= 2001  # what the invocation printed reached the meter (and went on, unchanged)
    assert usage.quantities[("logs.ingested_gb", "lambda-platform:Worker")] > 0  # START/END/REPORT/XRAY
    assert ("Test", "Things", (("service", "meter"),)) in usage.custom_metrics
    assert usage.operations[("sqs", "SendMessage", "Inbox")] == 1
    assert usage.operations[("sqs", "SendMessageBatch", "Inbox")] == 1
    received = usage.operations[("sqs", "ReceiveMessage", "Inbox")]
    deleted = usage.operations[("sqs", "DeleteMessageBatch (Lambda poller)", "Inbox")]
    assert received == deleted == stats["triggers"]["sqs"]  # one delete batch per received batch, as Lambda does
    big_receives = 1  # the 100 KB message is billed twice wherever it travels
    assert usage.quantities[("sqs.request", "Inbox")] == (2 + 1) + (received + big_receives) + deleted
    assert usage.operations.get(("sqs", "ReceiveMessage (empty)", "Inbox"), 0) == usage.facts["sqs_empty_receives"]
    assert sys.stdout is not None and not type(sys.stdout).__name__ == "_Tee"


def test_eventbridge_events_are_billed_per_64kb_chunk_of_each_entry(rt: Any) -> None:
    events = boto3.client("events")
    entry = {"Source": "test", "DetailType": "Thing"}
    with Meter(rt) as meter:
        result = events.put_events(Entries=[{**entry, "Detail": json.dumps({"a": "x" * 70_000})},
                                            {**entry, "Detail": json.dumps({"a": 1})},
                                            {**entry, "Detail": "not json"}])
    assert result["FailedEntryCount"] == 1
    usage = meter.usage
    assert usage.quantities[("eventbridge.custom_event", "default")] == 2 + 1
    assert usage.operations[("events", "PutEvents", "default")] == 1
    assert len(meter.published_entries) == 2


def test_the_meter_leaves_nothing_behind(rt: Any) -> None:
    from moto.awslambda.models import LambdaFunction
    from moto.dynamodb.responses import DynamoHandler
    from moto.sqs.models import SQSBackend

    before = (vars(DynamoHandler)["put_item"], vars(SQSBackend)["send_message"], vars(LambdaFunction)["_invoke_lambda"],
              sys.stdout, sys.stderr, rt.api if rt.apis else None)
    meter = Meter(rt).start()
    with pytest.raises(RuntimeError, match="another Meter"):
        Meter(rt).start()
    assert vars(DynamoHandler)["put_item"] is not before[0]
    meter.stop()
    after = (vars(DynamoHandler)["put_item"], vars(SQSBackend)["send_message"], vars(LambdaFunction)["_invoke_lambda"],
             sys.stdout, sys.stderr, rt.api if rt.apis else None)
    assert after == before
    with pytest.raises(RuntimeError, match="not running"):
        meter.stop()
    Meter(rt).start().stop()  # and another one may run now
