"""The rebuild (offline/rebuild.py) against moto tables: it equals the live view, swaps, deletes the old
generation, and converges when events are committed and projected while it replays."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from offline.rebuild import RebuildError, rebuild
from projections.service import Projector
from projections.store import ProjectionStore
from projections.views import OutOfOrder
from shared.event_store import DynamoDBEventStore
from shared.events import EventEnvelope
from tests.unit.test_projections import T0, create_table, fold, history

ENDINGS = ["CONFIRMED", "PAYMENT_DECLINED", "OUT_OF_STOCK", "NEEDS_ATTENTION", "PENDING"]


@pytest.fixture
def ddb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb")
        client.create_table(
            TableName="orders",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        create_table(client, "projections")
        yield client


def place_orders(ddb: Any, count: int) -> dict[str, list[EventEnvelope]]:
    store = DynamoDBEventStore("orders", ddb)
    orders = {}
    for n in range(count):
        order_id = str(uuid.uuid4())
        events = history(order_id, f"cust-{n % 3}", ENDINGS[n % len(ENDINGS)], start=T0 + timedelta(minutes=n))
        store.append(order_id, 0, events)
        orders[order_id] = events
    return orders


def summaries(store: ProjectionStore, generation: int) -> dict[str, Any]:
    return {view.order_id: view for view in store.views_of(generation)}


def test_the_rebuild_equals_the_live_view_and_swaps_to_it(ddb: Any) -> None:
    orders = place_orders(ddb, 12)
    store = ProjectionStore("projections", ddb)
    live = Projector(store)
    for events in orders.values():
        for envelope in events:
            live.apply(envelope)
    before = summaries(store, 1)
    assert len(before) == 12

    slept: list[float] = []
    report = rebuild(client=ddb, orders_table="orders", projections_table="projections", sleep=slept.append)
    assert (report.previous, report.generation, report.orders, report.deleted) == (1, 2, 12, {1: 12})
    assert report.events == sum(len(events) for events in orders.values())
    assert slept == [10.0]  # the list's pointer cache (5 s) and a margin, between the swap and the delete
    assert store.pointer().active == 2 and store.pointer().building is None
    assert summaries(store, 2) == before
    assert summaries(store, 1) == {}

    again = rebuild(client=ddb, orders_table="orders", projections_table="projections", grace_seconds=0)
    assert (again.previous, again.generation) == (2, 3) and summaries(store, 3) == before


def test_a_crashed_rebuild_is_abandoned_not_reused(ddb: Any) -> None:
    orders = place_orders(ddb, 3)
    store = ProjectionStore("projections", ddb)
    for events in orders.values():
        for envelope in events:
            Projector(store).apply(envelope)
    crashed = store.move_pointer(store.pointer(), active=1, building=2)
    first = next(iter(orders.values()))[0]
    Projector(store).apply_to(crashed, 2, first)  # a half-built generation 2 (say, by older code)

    report = rebuild(client=ddb, orders_table="orders", projections_table="projections", grace_seconds=0)
    assert report.generation == 3 and report.deleted == {1: 3, 2: 1}
    assert summaries(store, 3) == {order_id: fold(events) for order_id, events in orders.items()}


def test_a_pointer_moved_by_someone_else_stops_the_rebuild(ddb: Any) -> None:
    place_orders(ddb, 2)

    class Racing:
        def __init__(self, client: Any) -> None:
            self._client, self.exceptions = client, client.exceptions

        def __getattr__(self, name: str) -> Any:
            return getattr(self._client, name)

        def query(self, **kwargs: Any) -> Any:  # another rebuild starts while this one replays
            store = ProjectionStore("projections", self._client)
            pointer = store.pointer()
            store.move_pointer(pointer, active=pointer.active, building=(pointer.building or 1) + 1)
            return self._client.query(**kwargs)

    with pytest.raises(RebuildError, match="pointer moved"):
        rebuild(client=Racing(ddb), orders_table="orders", projections_table="projections", grace_seconds=0)


@pytest.mark.parametrize("seed", range(12))
def test_events_committed_and_projected_during_the_replay_converge(ddb: Any, seed: int) -> None:
    """While the rebuild replays, the order service appends events and the projector (holding the pointer it read
    before the rebuild started) delivers them, at least once and in any order; deliveries refused as gaps come
    back later. When the last delivery is done, the list equals the fold of the event store."""
    rng = random.Random(seed)
    histories = place_orders(ddb, 8)
    event_store = DynamoDBEventStore("orders", ddb)
    store = ProjectionStore("projections", ddb)
    live = Projector(store)
    # Each order's history so far is committed up to a random point; the rest comes during the rebuild.
    committed = {order_id: rng.randint(1, len(events)) for order_id, events in histories.items()}
    ddb.delete_table(TableName="orders")
    ddb.create_table(
        TableName="orders",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for order_id, events in histories.items():
        event_store.append(order_id, 0, events[: committed[order_id]])
        for envelope in events[: committed[order_id]]:
            live.apply(envelope)
    later = [e for order_id, events in histories.items() for e in events[committed[order_id]:]]
    rng.shuffle(later)
    redeliver: list[EventEnvelope] = []

    def deliver(envelope: EventEnvelope) -> None:
        try:
            live.apply(envelope)
        except OutOfOrder:
            redeliver.append(envelope)
        if rng.random() < 0.3:
            redeliver.append(envelope)  # a duplicate delivery, later

    class Busy:
        """The tables, with the order service and the projector at work between the rebuild's calls."""

        def __init__(self, client: Any) -> None:
            self._client, self.exceptions = client, client.exceptions

        def __getattr__(self, name: str) -> Any:
            return getattr(self._client, name)

        def transact_write_items(self, **kwargs: Any) -> Any:
            if later and rng.random() < 0.5:  # the order service appends the next event of some order
                order_id = rng.choice(sorted({e.subject for e in later}))
                nxt = histories[order_id][committed[order_id]]
                event_store.append(order_id, committed[order_id], [nxt])
                committed[order_id] += 1
                later.remove(nxt)
                deliver(nxt)
            if redeliver and rng.random() < 0.5:
                deliver(redeliver.pop(rng.randrange(len(redeliver))))
            return self._client.transact_write_items(**kwargs)

    rebuild(client=Busy(ddb), orders_table="orders", projections_table="projections", grace_seconds=0)
    for envelope in sorted(later, key=lambda e: e.version):  # what was never committed during the rebuild
        order_id = envelope.subject
        event_store.append(order_id, committed[order_id], [envelope])
        committed[order_id] += 1
        deliver(envelope)
    rounds = 0
    while redeliver:
        rounds += 1
        assert rounds < 1000, f"deliveries that never apply: {[(e.subject, e.version) for e in redeliver]}"
        envelope = redeliver.pop(rng.randrange(len(redeliver)))
        try:
            live.apply(envelope)
        except OutOfOrder:
            redeliver.append(envelope)
    pointer = store.pointer()
    assert pointer.active == 2 and pointer.building is None
    expected = {order_id: fold(event_store.load(order_id)) for order_id in histories}
    assert summaries(store, 2) == expected
