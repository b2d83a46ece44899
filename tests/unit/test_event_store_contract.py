"""One contract, every event store implementation: in memory and DynamoDB (moto); then what the DynamoDB store
sends (one conditional PutItem per single-event append) and what its table's stream carries."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from moto import mock_aws

from offline.patches import Patcher, serialize_dynamodb
from shared.event_store import ConcurrencyError, DynamoDBEventStore, EventStore, InMemoryEventStore, StreamGap
from shared.events import DomainEvent, EventEnvelope, wrap


class ThingHappened(DomainEvent):
    n: int
    note: str = ""


def events_for(aggregate_id: str, after: int, count: int, note: str = "") -> list[EventEnvelope]:
    return [
        wrap(ThingHappened(n=after + i, note=note), source="tests", subject=aggregate_id, version=after + i)
        for i in range(1, count + 1)
    ]


@contextmanager
def events_table() -> Iterator[Any]:
    """A moto client with an event store table laid out as stacks/tables.py makes it (stream included)."""
    # moto has no lock: the runtime's one makes each transaction atomic, as DynamoDB is (offline/patches.py).
    patcher = Patcher()
    serialize_dynamodb(patcher)
    with mock_aws():
        client = boto3.client("dynamodb")
        client.create_table(
            TableName="events",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
        )
        try:
            yield client
        finally:
            patcher.undo()


@pytest.fixture(params=["memory", "dynamodb"])
def store(request: pytest.FixtureRequest) -> Iterator[EventStore]:
    if request.param == "memory":
        yield InMemoryEventStore()
        return
    with events_table() as client:
        yield DynamoDBEventStore("events", client)


def test_a_new_aggregate_has_no_events(store: EventStore) -> None:
    assert store.load("nobody") == []


def test_appended_events_load_back_in_order_and_unchanged(store: EventStore) -> None:
    first = events_for("a-1", 0, 3, note="é ✓ \"quoted\"")
    store.append("a-1", 0, first)
    second = events_for("a-1", 3, 2)
    store.append("a-1", 3, second)
    loaded = store.load("a-1")
    assert loaded == first + second
    assert [e.version for e in loaded] == [1, 2, 3, 4, 5]


def test_load_slices_by_version(store: EventStore) -> None:
    store.append("a-1", 0, events_for("a-1", 0, 5))
    assert [e.version for e in store.load("a-1", after_version=2)] == [3, 4, 5]
    assert [e.version for e in store.load("a-1", up_to_version=2)] == [1, 2]
    assert [e.version for e in store.load("a-1", after_version=1, up_to_version=3)] == [2, 3]
    assert store.load("a-1", after_version=5) == []


def test_aggregates_are_independent(store: EventStore) -> None:
    store.append("a-1", 0, events_for("a-1", 0, 2))
    store.append("a-2", 0, events_for("a-2", 0, 1))
    assert [e.subject for e in store.load("a-2")] == ["a-2"]
    assert len(store.load("a-1")) == 2


def test_appending_at_a_stale_version_is_refused_and_writes_nothing(store: EventStore) -> None:
    store.append("a-1", 0, events_for("a-1", 0, 2))
    with pytest.raises(ConcurrencyError):
        store.append("a-1", 0, events_for("a-1", 0, 3))
    assert [e.version for e in store.load("a-1")] == [1, 2]


def test_a_gap_left_by_a_caller_that_never_read_its_version_refuses_to_load(store: EventStore) -> None:
    """``expected_version`` is a version the caller loaded, and loaded versions exist forever (events are never
    deleted), so the store spends nothing at write time to check that it exists: only a bug can break it. What such a
    bug leaves behind is refused loudly on every read instead of being folded as if nothing were missing."""
    store.append("a-1", 0, events_for("a-1", 0, 1))
    store.append("a-1", 5, events_for("a-1", 5, 1))  # version 5 was never loaded: nobody else can pass it
    with pytest.raises(StreamGap, match="has no version 2: the next stored event is 6"):
        store.load("a-1")
    assert [e.version for e in store.load("a-1", up_to_version=1)] == [1]  # the history before the hole still reads
    with pytest.raises(StreamGap):
        store.load("a-1", after_version=3)
    with pytest.raises(ConcurrencyError):  # and the version taken by the bad append is still taken
        store.append("a-1", 5, events_for("a-1", 5, 1))


@pytest.mark.parametrize("count", [1, 2], ids=["one-event", "two-events"])
def test_two_writers_at_the_same_version_cannot_both_win(store: EventStore, count: int) -> None:
    store.append("a-1", 0, events_for("a-1", 0, 1))
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def writer(note: str) -> None:
        batch = events_for("a-1", 1, count, note=note)
        barrier.wait()
        try:
            store.append("a-1", 1, batch)
            outcomes.append("won")
        except ConcurrencyError:
            outcomes.append("lost")

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("left", "right")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["lost", "won"]
    loaded = store.load("a-1")
    assert [e.version for e in loaded] == list(range(1, count + 2))
    assert len({e.data["note"] for e in loaded[1:]}) == 1  # every new event comes from the one winner


def test_a_single_event_and_a_batch_racing_for_the_same_version_cannot_both_win(store: EventStore) -> None:
    store.append("a-1", 0, events_for("a-1", 0, 1))
    outcomes: dict[str, str] = {}
    barrier = threading.Barrier(2)

    def writer(note: str, count: int) -> None:
        batch = events_for("a-1", 1, count, note=note)
        barrier.wait()
        try:
            store.append("a-1", 1, batch)
            outcomes[note] = "won"
        except ConcurrencyError:
            outcomes[note] = "lost"

    threads = [threading.Thread(target=writer, args=args) for args in (("single", 1), ("batch", 3))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes.values()) == ["lost", "won"]
    winner = next(note for note, outcome in outcomes.items() if outcome == "won")
    loaded = store.load("a-1")
    assert [e.version for e in loaded] == list(range(1, {"single": 3, "batch": 5}[winner]))
    assert {e.data["note"] for e in loaded[1:]} == {winner}


def test_append_is_all_or_nothing(store: EventStore) -> None:
    store.append("a-1", 0, events_for("a-1", 0, 1))
    with pytest.raises(ConcurrencyError):
        store.append("a-1", 0, events_for("a-1", 0, 4))  # version 1 is taken: none of 1..4 may land
    assert [e.version for e in store.load("a-1")] == [1]


@pytest.mark.parametrize("bad", ["gap", "wrong-subject", "empty"])
def test_malformed_appends_are_rejected_before_writing(store: EventStore, bad: str) -> None:
    batch = {
        "gap": events_for("a-1", 1, 1),  # version 2 at expected version 0
        "wrong-subject": events_for("a-2", 0, 1),
        "empty": [],
    }[bad]
    with pytest.raises(ValueError):
        store.append("a-1", 0, batch)
    assert store.load("a-1") == []


# ---------------------------------------------------------------------------------------------- DynamoDB's calls


def calls_of(client: Any) -> list[tuple[str, dict[str, Any]]]:
    """Every API call the client makes from now on: (operation, parameters)."""
    seen: list[tuple[str, dict[str, Any]]] = []
    client.meta.events.register(
        "provide-client-params.dynamodb.*",
        lambda params, model, **_: seen.append((model.name, params)),
    )
    return seen


def stream_inserts(client: Any) -> list[dict[str, Any]]:
    """The NEW_IMAGEs of the INSERT records on the table's stream, in order (what the relay reads)."""
    streams = boto3.client("dynamodbstreams")
    arn = client.describe_table(TableName="events")["Table"]["LatestStreamArn"]
    images = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        records = streams.get_records(ShardIterator=iterator)["Records"]
        images += [r["dynamodb"]["NewImage"] for r in records if r["eventName"] == "INSERT"]
    return images


def test_one_event_is_one_conditional_put_and_a_batch_one_transaction_of_puts_only() -> None:
    with events_table() as client:
        store = DynamoDBEventStore("events", client)
        calls = calls_of(client)
        store.append("a-1", 0, events_for("a-1", 0, 1))
        store.append("a-1", 1, events_for("a-1", 1, 1))
        store.append("a-1", 2, events_for("a-1", 2, 3))
        assert [operation for operation, _ in calls] == ["PutItem", "PutItem", "TransactWriteItems"]
        for _, params in calls[:2]:
            assert params["ConditionExpression"] == "attribute_not_exists(pk)"
        actions = calls[2][1]["TransactItems"]
        assert [list(action) for action in actions] == [["Put"]] * 3  # no ConditionCheck: nothing else is read
        assert {action["Put"]["ConditionExpression"] for action in actions} == {"attribute_not_exists(pk)"}
        calls.clear()
        with pytest.raises(ConcurrencyError):  # the loser of a race: one put whose condition fails
            store.append("a-1", 4, events_for("a-1", 4, 1))
        assert [operation for operation, _ in calls] == ["PutItem"]


def test_the_stream_carries_one_identical_insert_per_event_whichever_call_wrote_it() -> None:
    """The relay reads the stream: an event appended alone (PutItem) and the same event appended in a batch
    (TransactWriteItems) must reach it as the same item, once."""
    alone, batched = events_for("a-1", 0, 1), events_for("b-1", 0, 3)
    batched[0] = alone[0].model_copy(update={"subject": "b-1"})
    with events_table() as client:
        store = DynamoDBEventStore("events", client)
        store.append("a-1", 0, alone)
        store.append("a-1", 1, events_for("a-1", 1, 1))
        store.append("b-1", 0, batched)
        images = stream_inserts(client)
    assert [(image["pk"]["S"], image["sk"]["S"]) for image in images] == [
        ("a-1", "0000000001"), ("a-1", "0000000002"), ("b-1", "0000000001"), ("b-1", "0000000002"),
        ("b-1", "0000000003"),
    ]
    first_alone, first_batched = images[0], images[2]
    assert set(first_alone) == set(first_batched)
    assert {k: v for k, v in first_alone.items() if k not in ("pk", "subject")} == {
        k: v for k, v in first_batched.items() if k not in ("pk", "subject")
    }


def test_a_put_that_meets_another_writers_transaction_is_a_lost_race() -> None:
    """DynamoDB refuses a PutItem on an item a transaction is writing (TransactionConflictException): someone else
    is winning that version, so the caller reloads and decides again, as after a failed condition."""
    with events_table() as client:
        store = DynamoDBEventStore("events", client)
        store.append("a-1", 0, events_for("a-1", 0, 1))

        def conflict(**_: Any) -> None:
            raise client.exceptions.TransactionConflictException(
                {"Error": {"Code": "TransactionConflictException", "Message": "in a transaction"}}, "PutItem"
            )

        client.put_item = conflict
        with pytest.raises(ConcurrencyError):
            store.append("a-1", 1, events_for("a-1", 1, 1))
