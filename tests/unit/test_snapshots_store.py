"""The snapshot half of the event store, one contract for both implementations (in memory, DynamoDB on moto)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from shared.event_store import (
    SNAPSHOT_COMPRESS_ABOVE_BYTES,
    SNAPSHOT_SK,
    DynamoDBEventStore,
    EventStore,
    InMemoryEventStore,
    Snapshot,
    SnapshotTooLarge,
    from_dynamo,
)

from .test_event_store_contract import events_for

TABLE = "events"


def create_event_table(client: Any, name: str = TABLE) -> None:
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


@pytest.fixture(params=["memory", "dynamodb"])
def store(request: pytest.FixtureRequest) -> Iterator[EventStore]:
    if request.param == "memory":
        yield InMemoryEventStore()
        return
    with mock_aws():
        client = boto3.client("dynamodb")
        create_event_table(client)
        yield DynamoDBEventStore(TABLE, client)


def snap(version: int, schema: int = 1, state: dict[str, Any] | None = None, aggregate_id: str = "a-1") -> Snapshot:
    return Snapshot(aggregate_id, "thing", schema, version, state if state is not None else {"n": version})


def test_no_snapshot_until_one_is_saved(store: EventStore) -> None:
    assert store.load_snapshot("a-1") is None


def test_a_saved_snapshot_loads_back_unchanged(store: EventStore) -> None:
    state = {"n": 3, "name": "é €", "nested": {"list": [1, "2", None, True]}, "amount": "10.50"}
    assert store.save_snapshot(snap(3, state=state)) is True
    assert store.load_snapshot("a-1") == snap(3, state=state)


def test_only_a_newer_version_replaces_a_snapshot(store: EventStore) -> None:
    assert store.save_snapshot(snap(10))
    assert store.save_snapshot(snap(10)) is False  # a duplicate writes nothing
    assert store.save_snapshot(snap(5)) is False  # an older one never replaces a newer one
    assert store.load_snapshot("a-1") == snap(10)
    assert store.save_snapshot(snap(20))
    assert store.load_snapshot("a-1") == snap(20)


def test_a_newer_schema_replaces_an_older_one_whatever_the_versions(store: EventStore) -> None:
    assert store.save_snapshot(snap(20, schema=1))
    assert store.save_snapshot(snap(15, schema=2))  # the old-schema snapshot is useless to the new code
    assert store.load_snapshot("a-1") == snap(15, schema=2)
    assert store.save_snapshot(snap(30, schema=1)) is False  # old code never overwrites the new schema
    assert store.load_snapshot("a-1") == snap(15, schema=2)


def test_snapshots_are_not_events_and_events_are_untouched(store: EventStore) -> None:
    store.append("a-1", 0, events_for("a-1", 0, 3))
    store.save_snapshot(snap(3))
    assert [e.version for e in store.load("a-1")] == [1, 2, 3]
    assert store.load("a-1", after_version=3) == []
    store.append("a-1", 3, events_for("a-1", 3, 1))  # appending still works with a snapshot stored
    assert [e.version for e in store.load("a-1", after_version=2)] == [3, 4]


def test_a_large_state_round_trips_compressed(store: EventStore) -> None:
    state = {"deposits": {str(uuid.uuid4()): "25.00" for _ in range(10_000)}}
    assert store.save_snapshot(snap(10_000, state=state))
    assert store.load_snapshot("a-1") == snap(10_000, state=state)


def test_a_state_too_large_even_compressed_is_refused(store: EventStore) -> None:
    state = {"blob": "".join(uuid.uuid4().hex for _ in range(40_000))}  # random hex: ~640 KB compressed
    with pytest.raises(SnapshotTooLarge):
        store.save_snapshot(snap(1, state=state))
    assert store.load_snapshot("a-1") is None


def test_snapshot_argument_checks() -> None:
    with pytest.raises(ValueError):
        snap(0)
    with pytest.raises(ValueError):
        snap(1, schema=0)


# --- the DynamoDB layout ---------------------------------------------------------------------------


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb")
        create_event_table(client)
        yield client


def test_the_item_layout_beside_the_events(dynamodb: Any) -> None:
    store = DynamoDBEventStore(TABLE, dynamodb)
    store.append("a-1", 0, events_for("a-1", 0, 2))
    store.save_snapshot(snap(2, state={"n": 2}))
    items = [from_dynamo(i) for i in dynamodb.query(
        TableName=TABLE, KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": "a-1"}}
    )["Items"]]
    # The snapshot's sort key sorts after every zero-padded version: the events' BETWEEN range never reaches it.
    assert [i["sk"] for i in items] == ["0000000001", "0000000002", SNAPSHOT_SK]
    assert items[-1] == {
        "pk": "a-1", "sk": "snapshot", "kind": "snapshot", "aggregate_type": "thing",
        "schema_version": 1, "version": 2, "state": '{"n":2}',
    }


def test_a_large_state_is_stored_as_compressed_bytes(dynamodb: Any) -> None:
    store = DynamoDBEventStore(TABLE, dynamodb)
    state = {"deposits": {str(uuid.uuid4()): "25.00" for _ in range(2_000)}}
    store.save_snapshot(snap(1, state=state))
    item = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": "a-1"}, "sk": {"S": "snapshot"}})["Item"]
    assert "B" in item["state"] and len(item["state"]["B"]) < SNAPSHOT_COMPRESS_ABOVE_BYTES * 3


@pytest.mark.parametrize("damage", [{"state": {"S": "not json"}}, {"state": {"S": "[1, 2]"}}, {"state": {"B": b"not zlib"}}])
def test_a_damaged_state_reads_as_empty_and_can_be_replaced_by_name(dynamodb: Any, damage: dict[str, Any]) -> None:
    store = DynamoDBEventStore(TABLE, dynamodb)
    store.save_snapshot(snap(5))
    item = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": "a-1"}, "sk": {"S": "snapshot"}})["Item"]
    dynamodb.put_item(TableName=TABLE, Item={**item, **damage})
    assert store.load_snapshot("a-1") == snap(5, state={})
    assert store.save_snapshot(snap(4)) is False  # an older version: only by naming what it replaces
    assert store.save_snapshot(snap(4), replacing=(1, 5))
    assert store.load_snapshot("a-1") == snap(4)


@pytest.mark.parametrize("damage", [{"version": {"S": "ten"}}, {"schema_version": {"S": "1"}}])
def test_a_snapshot_item_with_unreadable_numbers_is_none_and_replaced(dynamodb: Any, damage: dict[str, Any]) -> None:
    store = DynamoDBEventStore(TABLE, dynamodb)
    store.save_snapshot(snap(5))
    item = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": "a-1"}, "sk": {"S": "snapshot"}})["Item"]
    dynamodb.put_item(TableName=TABLE, Item={**item, **damage})
    assert store.load_snapshot("a-1") is None
    assert store.save_snapshot(snap(2))
    assert store.load_snapshot("a-1") == snap(2)


def test_replacing_names_one_stored_snapshot_only(store: EventStore) -> None:
    store.save_snapshot(snap(9))
    assert store.save_snapshot(snap(4), replacing=(1, 8)) is False  # not what is stored: the usual rule
    assert store.save_snapshot(snap(4), replacing=(1, 9))
    assert store.load_snapshot("a-1") == snap(4)
