"""TransactWriteItems in the offline runtime: all or nothing, stream records only for committed transactions (one per
item), a cancelled transaction invisible to stream consumers, and a cost that does not grow with the table.

moto (5.2.5) backs a transaction up by deep-copying every table it touches and, when it is cancelled, puts the copies
in place of the tables: the stream shard became a new object, the stream pollers took it for a new shard and read it
again from the start (every consumer re-processed every past record), and each transaction cost more as the table and
its stream history grew. offline/patches.py replaces that with a journal of the touched items.
"""

from __future__ import annotations

import copy
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.dynamodb.models import dynamodb_backends

from tests.offline.support import function, module, table, template

HANDLER = """
    RECORDS = []   # (eventName, pk, NewImage attribute names or None), one per record delivered
    CALLS = 0

    def handler(event, context):
        global CALLS
        CALLS += 1
        for record in event["Records"]:
            image = record["dynamodb"].get("NewImage")
            RECORDS.append((record["eventName"], record["dynamodb"]["Keys"]["pk"]["S"],
                            tuple(sorted(image)) if image is not None else None))
"""


@pytest.fixture
def rt(run: Any, code: Any) -> Any:
    code("h_tx", HANDLER)
    return run(template(
        Items=table(stream="NEW_AND_OLD_IMAGES"),
        Consumer=function("h_tx.handler"),
        Mapping={"Type": "AWS::Lambda::EventSourceMapping", "Properties": {
            "EventSourceArn": {"Fn::GetAtt": ["Items", "StreamArn"]}, "FunctionName": {"Ref": "Consumer"},
            "StartingPosition": "TRIM_HORIZON", "BatchSize": 100}},
    ))


def delivered() -> list[tuple[str, str, tuple[str, ...] | None]]:
    return list(module("h_tx").RECORDS)


def name(rt: Any) -> str:
    return str(rt.physical("Items").name)


def moto_table(rt: Any) -> Any:
    return dynamodb_backends[rt.account_id][rt.region].tables[name(rt)]


def put(rt: Any, *keys: str) -> None:
    for key in keys:
        boto3.client("dynamodb").put_item(TableName=name(rt), Item={"pk": {"S": key}, "n": {"N": "1"}})


def items(rt: Any) -> dict[str, dict[str, Any]]:
    return {item["pk"]["S"]: item for item in boto3.client("dynamodb").scan(TableName=name(rt))["Items"]}


def stream(rt: Any) -> list[dict[str, Any]]:
    """Every record of the table's stream, read through the DynamoDB Streams API from the trim horizon."""
    streams = boto3.client("dynamodbstreams")
    arn = rt.physical("Items").stream_arn
    [shard] = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    return list(streams.get_records(ShardIterator=iterator, Limit=1000)["Records"])


def put_op(rt: Any, key: str, **extra: Any) -> dict[str, Any]:
    return {"Put": {"TableName": name(rt), "Item": {"pk": {"S": key}, "n": {"N": "1"}},
                    "ConditionExpression": "attribute_not_exists(pk)", **extra}}


def failing_check(rt: Any, key: str) -> dict[str, Any]:
    """A ConditionCheck that fails on an item that exists."""
    return {"ConditionCheck": {"TableName": name(rt), "Key": {"pk": {"S": key}},
                               "ConditionExpression": "attribute_not_exists(pk)"}}


def cancelled(rt: Any, transact_items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    with pytest.raises(ClientError) as caught:
        boto3.client("dynamodb").transact_write_items(TransactItems=transact_items)
    assert caught.value.response["Error"]["Code"] == "TransactionCanceledException"
    return list(caught.value.response["CancellationReasons"])


def rejected(rt: Any, transact_items: list[dict[str, Any]]) -> str:
    with pytest.raises(ClientError) as caught:
        boto3.client("dynamodb").transact_write_items(TransactItems=transact_items)
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    return str(caught.value.response["Error"]["Message"])


def test_a_cancelled_transaction_writes_nothing_and_redelivers_nothing(rt: Any) -> None:
    put(rt, "a", "b", "e")
    rt.settle()
    assert delivered() == [("INSERT", key, ("n", "pk")) for key in "abe"]
    table_before, shard_before = moto_table(rt), moto_table(rt).stream_shard
    ddb = boto3.client("dynamodb")
    reasons = cancelled(rt, [
        put_op(rt, "c"),
        {"Update": {"TableName": name(rt), "Key": {"pk": {"S": "b"}}, "UpdateExpression": "SET n = :two",
                    "ExpressionAttributeValues": {":two": {"N": "2"}}}},
        {"Delete": {"TableName": name(rt), "Key": {"pk": {"S": "a"}}}},
        {"ConditionCheck": {**failing_check(rt, "e")["ConditionCheck"],
                            "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}},
    ])
    assert [reason["Code"] for reason in reasons] == ["None", "None", "None", "ConditionalCheckFailed"]
    assert reasons[3]["Item"] == {"pk": {"S": "e"}, "n": {"N": "1"}}
    rt.settle()
    assert items(rt) == {key: {"pk": {"S": key}, "n": {"N": "1"}} for key in "abe"}
    assert moto_table(rt) is table_before and moto_table(rt).stream_shard is shard_before
    assert len(stream(rt)) == 3  # nothing of the cancelled transaction reached the stream
    assert module("h_tx").CALLS == 1 and len(delivered()) == 3  # and nothing was delivered again
    put(rt, "d")
    ddb.delete_item(TableName=name(rt), Key={"pk": {"S": "a"}})
    rt.settle()
    assert delivered()[3:] == [("INSERT", "d", ("n", "pk")), ("REMOVE", "a", None)]
    sequence = [int(record["dynamodb"]["SequenceNumber"]) for record in stream(rt)]
    assert sequence == list(range(sequence[0], sequence[0] + 5))  # no gap where the cancelled transaction was


def test_a_committed_transaction_writes_one_record_per_item(rt: Any) -> None:
    put(rt, "a", "b", "c")
    rt.settle()
    boto3.client("dynamodb").transact_write_items(TransactItems=[
        put_op(rt, "new"),
        {"Update": {"TableName": name(rt), "Key": {"pk": {"S": "made"}},  # an Update that creates the item
                    "UpdateExpression": "SET n = :n, tag = :t",
                    "ExpressionAttributeValues": {":n": {"N": "5"}, ":t": {"S": "x"}}}},
        {"Update": {"TableName": name(rt), "Key": {"pk": {"S": "a"}}, "UpdateExpression": "ADD n :one",
                    "ConditionExpression": "n = :one", "ExpressionAttributeValues": {":one": {"N": "1"}}}},
        {"Delete": {"TableName": name(rt), "Key": {"pk": {"S": "b"}}, "ConditionExpression": "attribute_exists(pk)"}},
        {"ConditionCheck": {"TableName": name(rt), "Key": {"pk": {"S": "c"}},
                            "ConditionExpression": "attribute_exists(pk)"}},
    ])
    rt.settle()
    assert delivered()[3:] == [
        ("INSERT", "new", ("n", "pk")),
        ("INSERT", "made", ("n", "pk", "tag")),  # one INSERT with the whole item (moto alone writes two)
        ("MODIFY", "a", ("n", "pk")),
        ("REMOVE", "b", None),
    ]
    assert len(stream(rt)) == 7
    modify = stream(rt)[5]["dynamodb"]
    assert (modify["OldImage"]["n"], modify["NewImage"]["n"]) == ({"N": "1"}, {"N": "2"})
    assert set(items(rt)) == {"a", "c", "new", "made"}
    rt.settle()
    assert len(delivered()) == 7


def test_a_transaction_that_fails_half_way_is_undone(rt: Any) -> None:
    put(rt, "a", "b")
    rt.settle()
    # The first two items are applied before the third fails its update expression (a ValidationException).
    message = rejected(rt, [
        put_op(rt, "c"),
        {"Update": {"TableName": name(rt), "Key": {"pk": {"S": "a"}}, "UpdateExpression": "SET n = :two, m = :m",
                    "ExpressionAttributeValues": {":two": {"N": "2"}, ":m": {"S": "x"}}}},
        {"Update": {"TableName": name(rt), "Key": {"pk": {"S": "b"}}, "UpdateExpression": "SET n = n + :s",
                    "ExpressionAttributeValues": {":s": {"S": "not a number"}}}},
    ])
    assert "Incorrect operand type" in message
    rt.settle()
    assert items(rt) == {"a": {"pk": {"S": "a"}, "n": {"N": "1"}}, "b": {"pk": {"S": "b"}, "n": {"N": "1"}}}
    assert len(stream(rt)) == 2 and len(delivered()) == 2


def test_invalid_transactions_are_refused_whole(rt: Any) -> None:
    put(rt, "a")
    rt.settle()
    assert "less than or equal to 100" in rejected(rt, [put_op(rt, f"k{i}") for i in range(101)])
    assert "multiple operations on one item" in rejected(rt, [put_op(rt, "c"), put_op(rt, "d"), put_op(rt, "c")])
    assert "only contain one of" in rejected(rt, [put_op(rt, "e"), put_op(rt, "f") | failing_check(rt, "a")])
    rt.settle()
    assert set(items(rt)) == {"a"} and len(stream(rt)) == 1 and len(delivered()) == 1
    boto3.client("dynamodb").transact_write_items(TransactItems=[put_op(rt, f"k{i}") for i in range(100)])
    rt.settle()
    assert len(items(rt)) == 101 and len(delivered()) == 101


def test_the_work_of_a_transaction_does_not_grow_with_the_table(rt: Any, monkeypatch: Any) -> None:
    copied: list[str] = []
    real_deepcopy = copy.deepcopy

    def counting(value: Any, memo: Any = None, _nil: Any = []) -> Any:  # noqa: B006 - copy.deepcopy's signature
        copied.append(type(value).__name__)
        return real_deepcopy(value, memo)

    def work(prefix: str) -> list[str]:
        """What one committed and one cancelled transaction deep-copy."""
        put(rt, f"{prefix}-x")
        copied.clear()
        monkeypatch.setattr(copy, "deepcopy", counting)
        boto3.client("dynamodb").transact_write_items(TransactItems=[
            put_op(rt, f"{prefix}-new"),
            {"Update": {"TableName": name(rt), "Key": {"pk": {"S": f"{prefix}-x"}}, "UpdateExpression": "SET n = :n",
                        "ExpressionAttributeValues": {":n": {"N": "7"}}}},
        ])
        cancelled(rt, [put_op(rt, f"{prefix}-other"), failing_check(rt, f"{prefix}-x")])
        monkeypatch.setattr(copy, "deepcopy", real_deepcopy)
        return sorted(copied)

    small = work("small")
    for start in range(0, 300, 25):  # 300 more items and 300 more stream records
        boto3.client("dynamodb").batch_write_item(RequestItems={name(rt): [
            {"PutRequest": {"Item": {"pk": {"S": f"filler-{i}"}, "n": {"N": "1"}}}} for i in range(start, start + 25)]})
    large = work("large")
    assert large == small  # the same objects copied, however large the table and its stream
    assert not {"Table", "StreamShard", "StreamRecord"} & set(large)
    rt.settle()
    assert len(delivered()) == len(stream(rt)) == 3 + 300 + 3  # per work(): the put, the committed two


def test_a_replaced_shard_object_is_read_on_from_its_position(rt: Any) -> None:
    """The poller follows the shard by its id, not by the Python object that holds it."""
    put(rt, "a", "b")
    rt.settle()
    moto_table(rt).stream_shard = copy.copy(moto_table(rt).stream_shard)  # the same shard, another object
    put(rt, "c")
    rt.settle()
    assert [pk for _, pk, _ in delivered()] == ["a", "b", "c"]
