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
from orders.events import SOURCE, OrderCancelled
from projections.service import Projector
from projections.store import ProjectionStore
from projections.views import OutOfOrder
from shared.event_store import DynamoDBEventStore
from shared.events import EventEnvelope, wrap
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

    slept: list[tuple[float, int, int]] = []

    def sleep(seconds: float) -> None:  # when the rebuild waits: (how long, summaries in generations 1 and 2)
        slept.append((seconds, len(summaries(store, 1)), len(summaries(store, 2))))

    report = rebuild(client=ddb, orders_table="orders", projections_table="projections", sleep=sleep)
    assert (report.previous, report.generation, report.orders, report.deleted) == (1, 2, 12, {1: 12})
    assert report.events == sum(len(events) for events in orders.values())
    # The projector's timeout (30 s: the oldest pointer a write can use) and a margin: after the start, before the
    # replay writes anything; and after the swap, before the delete.
    assert slept == [(40.0, 12, 0), (40.0, 12, 12)]
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
    assert crashed.building == 2
    Projector(store).apply_to(2, first)  # a half-built generation 2 (say, by older code)

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
def test_events_committed_and_projected_during_the_rebuild_converge(ddb: Any, seed: int) -> None:
    """While the rebuild runs, the order service appends events and the projector delivers them, at least once and
    in any order; deliveries refused as gaps come back later. Each delivery is an invocation that reads the pointer
    when it starts, except those already running when the rebuild moved the pointer: they go on with the old one
    (generation 1 only) until they end, within the rebuild's wait. When the last delivery is done, the list equals
    the fold of the event store."""
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
    running = Projector(store)  # invocations that read the pointer before the rebuild started
    running.refresh()
    later = [e for order_id, events in histories.items() for e in events[committed[order_id]:]]
    rng.shuffle(later)
    redeliver: list[EventEnvelope] = []
    old_pointer_deliveries = 0

    def deliver(envelope: EventEnvelope, projector: Projector | None = None) -> None:
        if projector is None:
            projector = live
            projector.refresh()  # a new invocation
        try:
            projector.apply(envelope)
        except OutOfOrder:
            redeliver.append(envelope)
        if rng.random() < 0.3:
            redeliver.append(envelope)  # a duplicate delivery, later

    def commit_next(projector: Projector | None = None) -> None:
        """The order service appends the next event of some order, and it is delivered."""
        order_id = rng.choice(sorted({e.subject for e in later}))
        nxt = histories[order_id][committed[order_id]]
        event_store.append(order_id, committed[order_id], [nxt])
        committed[order_id] += 1
        later.remove(nxt)
        deliver(nxt, projector)

    waits = 0

    def sleep(_seconds: float) -> None:
        nonlocal waits, old_pointer_deliveries
        waits += 1
        if waits == 1:  # the wait after the start: the invocations that were running finish with the old pointer
            for _ in range(rng.randint(1, 4)):
                if later:
                    commit_next(running)
                    old_pointer_deliveries += 1

    class Busy:
        """The tables, with the order service and the projector at work between the rebuild's writes."""

        def __init__(self, client: Any) -> None:
            self._client, self.exceptions = client, client.exceptions

        def __getattr__(self, name: str) -> Any:
            return getattr(self._client, name)

        def put_item(self, **kwargs: Any) -> Any:
            if later and rng.random() < 0.5:
                commit_next()
            if redeliver and rng.random() < 0.5:
                deliver(redeliver.pop(rng.randrange(len(redeliver))))
            return self._client.put_item(**kwargs)

    rebuild(client=Busy(ddb), orders_table="orders", projections_table="projections", sleep=sleep)
    assert waits == 2 and old_pointer_deliveries >= 1
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
        live.refresh()
        try:
            live.apply(envelope)
        except OutOfOrder:
            redeliver.append(envelope)
    pointer = store.pointer()
    assert pointer.active == 2 and pointer.building is None
    expected = {order_id: fold(event_store.load(order_id)) for order_id in histories}
    assert summaries(store, 2) == expected
    assert summaries(store, 1) == {}  # deleted, and nothing wrote it afterwards


def test_without_the_wait_an_invocation_running_across_the_start_would_leave_the_new_generation_behind(
    ddb: Any,
) -> None:
    """Why the rebuild waits before it replays: an invocation that read the pointer before the start and delivers an
    event committed after the replay read that order writes generation 1 only. With the wait, that invocation has
    ended before the replay begins (the previous test); with none (``grace_seconds=0``, for an idle system only),
    generation 2 misses the event. So the wait is what keeps the list whole across the swap."""
    order_id = str(uuid.uuid4())
    events = history(order_id, "cust-0", "PENDING")
    DynamoDBEventStore("orders", ddb).append(order_id, 0, events)
    store = ProjectionStore("projections", ddb)
    running = Projector(store)
    running.refresh()
    for envelope in events:
        running.apply(envelope)
    last = events[-1]
    later = wrap(OrderCancelled(order_id=order_id, customer_id="cust-0", reason="OUT_OF_STOCK"), source=SOURCE,
                 subject=order_id, version=last.version + 1, time=T0 + timedelta(hours=1))

    class LateDelivery:
        def __init__(self, client: Any) -> None:
            self._client, self.exceptions = client, client.exceptions
            self.done = False

        def __getattr__(self, name: str) -> Any:
            return getattr(self._client, name)

        def get_item(self, **kwargs: Any) -> Any:  # the rebuild checks its pointer after replaying the order
            if not self.done and kwargs["Key"]["pk"]["S"] == "pointer" and store.pointer().building == 2:
                self.done = True
                DynamoDBEventStore("orders", self._client).append(order_id, last.version, [later])
                running.apply(later)  # the old pointer: generation 1 only
            return self._client.get_item(**kwargs)

    client = LateDelivery(ddb)
    rebuild(client=client, orders_table="orders", projections_table="projections", grace_seconds=0)
    assert client.done
    assert store.pointer().active == 2
    assert store.view(2, order_id) == fold(events)  # without the late event: stale
    assert fold([*events, later]) != fold(events)
