"""One contract, every event store implementation: in memory and DynamoDB (moto)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from offline.patches import Patcher, serialize_dynamodb
from shared.event_store import ConcurrencyError, DynamoDBEventStore, EventStore, InMemoryEventStore
from shared.events import DomainEvent, EventEnvelope, wrap


class ThingHappened(DomainEvent):
    n: int
    note: str = ""


def events_for(aggregate_id: str, after: int, count: int, note: str = "") -> list[EventEnvelope]:
    return [
        wrap(ThingHappened(n=after + i, note=note), source="tests", subject=aggregate_id, version=after + i)
        for i in range(1, count + 1)
    ]


@pytest.fixture(params=["memory", "dynamodb"])
def store(request: pytest.FixtureRequest) -> Iterator[EventStore]:
    if request.param == "memory":
        yield InMemoryEventStore()
        return
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
        )
        try:
            yield DynamoDBEventStore("events", client)
        finally:
            patcher.undo()


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


def test_appending_past_the_current_version_is_refused(store: EventStore) -> None:
    store.append("a-1", 0, events_for("a-1", 0, 1))
    with pytest.raises(ConcurrencyError):
        store.append("a-1", 5, events_for("a-1", 5, 1))
    assert [e.version for e in store.load("a-1")] == [1]


def test_two_writers_at_the_same_version_cannot_both_win(store: EventStore) -> None:
    store.append("a-1", 0, events_for("a-1", 0, 1))
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def writer(note: str) -> None:
        batch = events_for("a-1", 1, 2, note=note)
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
    assert [e.version for e in loaded] == [1, 2, 3]
    assert len({e.data["note"] for e in loaded[1:]}) == 1  # both new events come from the one winner


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
