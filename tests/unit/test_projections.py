"""The order list read model: the fold (pure), the query's parameters and cursor, and the projector against a moto
table laid out as stacks/projections.py makes it: convergence under shuffled, duplicated and racing deliveries.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from orders.events import (
    SOURCE,
    OrderCancelled,
    OrderConfirmed,
    OrderLine,
    OrderNeedsAttention,
    OrderPlaced,
    OrderPriced,
    PricedLine,
)
from projections.queries import BadQuery, decode_cursor, encode_cursor, parse_list_orders
from projections.service import Projector
from projections.store import PositionMoved, ProjectionStore
from projections.views import OrderSummary, Outcome, OutOfOrder, classify, evolve
from shared.events import DomainEvent, EventEnvelope, UnknownEventType, wrap

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def create_table(client: Any, name: str) -> None:
    """The projections table of stacks/projections.py (tests/infra checks the two agree)."""
    index = lambda name, key: {  # noqa: E731
        "IndexName": name,
        "KeySchema": [{"AttributeName": key, "KeyType": "HASH"}, {"AttributeName": "list_key", "KeyType": "RANGE"}],
        "Projection": {"ProjectionType": "ALL"},
    }
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"}
                              for n in ("pk", "customer_key", "customer_status_key", "list_key")],
        GlobalSecondaryIndexes=[index("byCustomer", "customer_key"), index("byCustomerStatus", "customer_status_key")],
        BillingMode="PAY_PER_REQUEST",
    )


@pytest.fixture(scope="module")
def ddb() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("dynamodb")


def fresh_store(ddb: Any) -> ProjectionStore:
    name = f"projections-{uuid.uuid4().hex[:8]}"
    create_table(ddb, name)
    return ProjectionStore(name, ddb)


def history(order_id: str, customer: str, ending: str, start: datetime = T0) -> list[EventEnvelope]:
    """An order's events as the order service appends them."""
    lines = (OrderLine(sku="SKU-1", quantity=2), OrderLine(sku="SKU-2", quantity=1))
    events: list[DomainEvent] = [OrderPlaced(order_id=order_id, customer_id=customer, lines=lines, contact_email=None)]
    if ending != "OUT_OF_STOCK":
        priced = tuple(PricedLine(sku=l.sku, quantity=l.quantity, unit_price="5.00") for l in lines)
        events.append(OrderPriced(order_id=order_id, lines=priced, total="15.00"))
    match ending:
        case "CONFIRMED":
            events.append(OrderConfirmed(order_id=order_id, customer_id=customer, total="15.00"))
        case "PAYMENT_DECLINED" | "OUT_OF_STOCK":
            events.append(OrderCancelled(order_id=order_id, customer_id=customer, reason=ending))
        case "NEEDS_ATTENTION":
            events.append(OrderNeedsAttention(order_id=order_id, customer_id=customer, reason="compensation failed"))
    return [
        wrap(event, source=SOURCE, subject=order_id, version=n, time=start + timedelta(seconds=n))
        for n, event in enumerate(events, start=1)
    ]


def fold(events: list[EventEnvelope]) -> OrderSummary | None:
    view = None
    for envelope in sorted(events, key=lambda e: e.version):
        view = evolve(view, envelope)
    return view


# ---------------------------------------------------------------------------------------------- the fold


def test_a_confirmed_order_folds_into_its_summary() -> None:
    order_id = str(uuid.uuid4())
    view = fold(history(order_id, "alice", "CONFIRMED"))
    assert view is not None and view.to_api() == {
        "orderId": order_id, "customerId": "alice", "status": "CONFIRMED", "total": "15.00", "reason": None,
        "itemCount": 2, "placedAt": "2026-11-26T09:00:01.000000Z", "updatedAt": "2026-11-26T09:00:03.000000Z",
        "version": 3,
    }


@pytest.mark.parametrize(("ending", "status", "reason", "total"), [
    ("PAYMENT_DECLINED", "CANCELLED", "PAYMENT_DECLINED", "15.00"),
    ("OUT_OF_STOCK", "CANCELLED", "OUT_OF_STOCK", None),
    ("NEEDS_ATTENTION", "NEEDS_ATTENTION", "compensation failed", "15.00"),
    ("PENDING", "PENDING", None, "15.00"),
])
def test_every_outcome_folds(ending: str, status: str, reason: str | None, total: str | None) -> None:
    view = fold(history(str(uuid.uuid4()), "alice", ending))
    assert view is not None and (view.status, view.reason, view.total) == (status, reason, total)


def test_next_version_applies_older_is_a_duplicate_newer_is_a_gap() -> None:
    view = fold(history(str(uuid.uuid4()), "alice", "PENDING"))  # at version 2
    assert [classify(view, v) for v in (1, 2, 3, 4)] == [Outcome.DUPLICATE, Outcome.DUPLICATE, Outcome.APPLY, Outcome.GAP]
    assert classify(None, 1) is Outcome.APPLY and classify(None, 2) is Outcome.GAP


def test_an_old_schema_order_placed_is_upcast_and_an_unknown_type_is_refused() -> None:
    placed = history(str(uuid.uuid4()), "alice", "PENDING")[0]
    data = {k: v for k, v in placed.data.items() if k != "contact_email"}
    old = placed.model_copy(update={"dataversion": "1", "data": data})
    assert evolve(None, old) == evolve(None, placed)
    with pytest.raises(UnknownEventType):
        evolve(evolve(None, placed), placed.model_copy(update={"type": "OrderShipped", "sequence": "0000000002"}))


# ---------------------------------------------------------------------------------------------- the query


def test_query_defaults_and_bounds() -> None:
    assert parse_list_orders(None) == parse_list_orders({}) and parse_list_orders({}).limit == 20
    assert parse_list_orders({"limit": ["100"], "status": ["CONFIRMED"]}).limit == 100
    for bad in ({"limit": ["0"]}, {"limit": ["101"]}, {"limit": ["ten"]}, {"limit": ["-1"]}, {"limit": ["1", "2"]},
                {"status": ["confirmed"]}, {"status": ["SHIPPED"]}, {"sort": ["asc"]}, {"cursor": ["!!"]}):
        with pytest.raises(BadQuery):
            parse_list_orders(bad)


def test_cursor_round_trips_and_refuses_tampering() -> None:
    key = f"2026-11-26T09:00:01.000000Z#{uuid.uuid4()}"
    cursor = encode_cursor("CONFIRMED", key)
    assert decode_cursor(cursor, "CONFIRMED") == key
    assert parse_list_orders({"cursor": [cursor], "status": ["CONFIRMED"]}).after == key
    with pytest.raises(BadQuery, match="status filter"):
        decode_cursor(cursor, None)
    for forged in (encode_cursor(None, "g1#alice"), encode_cursor(None, key + "x"), cursor[:-2], "e30", "x" * 600):
        with pytest.raises(BadQuery):
            decode_cursor(forged, None)


# ---------------------------------------------------------------------------------------------- the projector


def deliver(projector: Projector, events: list[EventEnvelope], rng: random.Random, copies: dict[str, int]) -> None:
    """SQS at least once: every event `copies` times, in random order; a gap goes back to the queue for later."""
    pending = [e for e in events for _ in range(copies[e.id])]
    rng.shuffle(pending)
    rounds = 0
    while pending:
        rounds += 1
        assert rounds < 10_000
        envelope = pending.pop(rng.randrange(len(pending)))
        try:
            projector.apply(envelope)
        except OutOfOrder:
            pending.append(envelope)  # the failed record is delivered again after its visibility timeout


ENDINGS = st.sampled_from(["CONFIRMED", "PAYMENT_DECLINED", "OUT_OF_STOCK", "NEEDS_ATTENTION", "PENDING"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(endings=st.lists(ENDINGS, min_size=1, max_size=4), seed=st.integers(0, 2**32 - 1),
       copy_counts=st.lists(st.integers(1, 3), min_size=20, max_size=20))
def test_shuffled_and_duplicated_deliveries_converge_to_in_order_once(
    ddb: Any, endings: list[str], seed: int, copy_counts: list[int]
) -> None:
    orders: dict[str, list[EventEnvelope]] = {}
    for n, ending in enumerate(endings):
        order_id = str(uuid.uuid4())
        orders[order_id] = history(order_id, f"cust-{n % 2}", ending, start=T0 + timedelta(minutes=n))
    events = [e for h in orders.values() for e in h]
    copies = {e.id: copy_counts[i % len(copy_counts)] for i, e in enumerate(events)}

    shuffled = fresh_store(ddb)
    deliver(Projector(shuffled), events, random.Random(seed), copies)
    in_order = fresh_store(ddb)
    once = Projector(in_order)
    for envelope in events:
        assert set(once.apply(envelope).values()) == {Outcome.APPLY}

    for order_id, events_of_order in orders.items():
        expected = fold(events_of_order)
        assert shuffled.view(1, order_id) == in_order.view(1, order_id) == expected
    assert sorted(map(repr, shuffled.views_of(1))) == sorted(map(repr, in_order.views_of(1)))


def test_a_duplicate_is_acknowledged_and_a_gap_is_refused(ddb: Any) -> None:
    store = fresh_store(ddb)
    projector = Projector(store)
    placed, priced, confirmed = history(str(uuid.uuid4()), "alice", "CONFIRMED")
    with pytest.raises(OutOfOrder, match="waiting for version 1"):
        projector.apply(priced)
    assert projector.apply(placed) == {1: Outcome.APPLY}
    assert projector.apply(placed) == {1: Outcome.DUPLICATE}
    with pytest.raises(OutOfOrder, match="waiting for version 2"):
        projector.apply(confirmed)
    assert projector.apply(priced) == {1: Outcome.APPLY}
    assert projector.apply(confirmed) == {1: Outcome.APPLY}
    assert store.view(1, placed.subject).status == "CONFIRMED"


def test_two_deliveries_racing_on_one_position_cannot_both_apply(ddb: Any) -> None:
    store = fresh_store(ddb)
    placed, priced, _ = history(str(uuid.uuid4()), "alice", "CONFIRMED")
    Projector(store).apply(placed)
    view = store.view(1, placed.subject)
    store.put_view(1, evolve(view, priced), expected_position=1)  # the other delivery won
    with pytest.raises(PositionMoved):
        store.put_view(1, evolve(view, priced), expected_position=1)
    with pytest.raises(PositionMoved):  # and a first event is written once
        store.put_view(1, evolve(None, placed), expected_position=0)
    assert store.view(1, placed.subject) == evolve(view, priced)


def test_a_lost_race_looks_again_and_finds_a_duplicate(ddb: Any) -> None:
    store = fresh_store(ddb)
    placed, priced, _ = history(str(uuid.uuid4()), "alice", "CONFIRMED")
    Projector(store).apply(placed)

    class Racing(ProjectionStore):
        raced = False

        def put_view(self, *args: Any, **kwargs: Any) -> None:
            if not self.raced:  # another container applies the same event between our read and our write
                self.raced = True
                Projector(store).apply(priced)
            super().put_view(*args, **kwargs)

    assert Projector(Racing(store.table, ddb)).apply(priced) == {1: Outcome.DUPLICATE}
    assert store.view(1, placed.subject).version == 2


def test_an_event_is_one_conditional_put_per_generation_and_nothing_else(ddb: Any) -> None:
    """One write unit per event and generation: a PutItem conditional on the position, no transaction, no check of
    the pointer (the rebuild's wait stands in for it: offline/rebuild.py)."""
    store = fresh_store(ddb)
    placed, priced, _ = history(str(uuid.uuid4()), "alice", "CONFIRMED")
    projector = Projector(store)
    projector.refresh()
    calls: list[tuple[str, dict[str, Any]]] = []
    record = lambda params, model, **_: calls.append((model.name, params))  # noqa: E731
    ddb.meta.events.register("provide-client-params.dynamodb.*", record)
    try:
        projector.apply(placed)
        projector.apply(priced)
        projector.apply(priced)  # a duplicate: read, nothing written
        assert [name for name, _ in calls] == ["GetItem", "PutItem", "GetItem", "PutItem", "GetItem"]
        assert [params.get("ConditionExpression") for _, params in calls] == [
            None, "attribute_not_exists(pk)", None, "version = :position", None]
        store.move_pointer(store.pointer(), active=1, building=2)  # a rebuild starts and replays the order's start
        Projector(store).apply_to(2, placed)
        projector.refresh()
        calls.clear()
        assert projector.apply(priced) == {1: Outcome.DUPLICATE, 2: Outcome.APPLY}
    finally:
        ddb.meta.events.unregister("provide-client-params.dynamodb.*", record)
    assert [name for name, _ in calls] == ["GetItem", "GetItem", "PutItem"]  # one write, in generation 2 only
    assert store.view(2, placed.subject) == store.view(1, placed.subject)


def test_a_projector_writes_with_the_pointer_its_invocation_started_with(ddb: Any) -> None:
    """While a rebuild starts, a projector invocation that read the pointer before writes the old generation only.
    That is safe because what it writes is committed already and the rebuild replays only after every such
    invocation has ended (offline/rebuild.py, step 2); the next invocation reads the pointer and writes both."""
    store = fresh_store(ddb)
    placed, priced, confirmed = history(str(uuid.uuid4()), "alice", "CONFIRMED")
    projector = Projector(store)
    projector.refresh()
    projector.apply(placed)
    building = store.move_pointer(store.pointer(), active=1, building=2)  # a rebuild starts
    assert projector.apply(priced) == {1: Outcome.APPLY}  # the same invocation: generation 1 only
    for envelope in (placed, priced):  # the rebuild's replay, after its wait: the event store has both
        Projector(store).apply_to(2, envelope)
    projector.refresh()  # the next invocation
    assert projector.pointer() == building
    assert projector.apply(confirmed) == {1: Outcome.APPLY, 2: Outcome.APPLY}
    assert store.view(1, placed.subject) == store.view(2, placed.subject) == fold([placed, priced, confirmed])


def test_the_projector_function_reads_the_pointer_once_per_invocation_before_any_record(
    ddb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROJECTIONS_TABLE", os.environ.get("PROJECTIONS_TABLE", "projections"))
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Orderflow"))
    from projections import projector as function
    from tests.unit.test_payments_api import FakeContext

    store = fresh_store(ddb)
    seen: list[str] = []

    class Watched(Projector):
        def refresh(self) -> Any:
            seen.append("pointer")
            return super().refresh()

        def apply(self, envelope: EventEnvelope) -> Any:
            seen.append(f"v{envelope.version}")
            return super().apply(envelope)

    watched = Watched(store)
    monkeypatch.setattr(function, "projector", lambda: watched)
    events = history(str(uuid.uuid4()), "alice", "CONFIRMED")
    batch = lambda *envelopes: {"Records": [  # noqa: E731
        {"messageId": str(n), "body": json.dumps({"detail": e.to_wire()}), "receiptHandle": "r",
         "attributes": {}, "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
         "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:inbox", "awsRegion": "us-east-1"}
        for n, e in enumerate(envelopes)
    ]}
    assert function.handler(batch(events[1], events[0]), FakeContext()) == {"batchItemFailures": []}
    assert function.handler(batch(events[2]), FakeContext()) == {"batchItemFailures": []}
    assert seen == ["pointer", "v1", "v2", "pointer", "v3"]
    assert store.view(1, events[0].subject) == fold(events)


def test_the_list_reads_newest_first_by_customer_and_status(ddb: Any) -> None:
    store = fresh_store(ddb)
    projector = Projector(store)
    endings = ["CONFIRMED", "PAYMENT_DECLINED", "CONFIRMED", "PENDING", "CONFIRMED"]
    ids = []
    for n, ending in enumerate(endings):
        order_id = str(uuid.uuid4())
        ids.append(order_id)
        for envelope in history(order_id, "alice", ending, start=T0 + timedelta(minutes=n)):
            projector.apply(envelope)
    for envelope in history(str(uuid.uuid4()), "bob", "CONFIRMED"):
        projector.apply(envelope)

    pages, after = [], None
    while True:
        views, after = store.list_views(1, "alice", None, 2, after)
        pages.append([v.order_id for v in views])
        if after is None:
            break
    assert [i for page in pages for i in page] == ids[::-1]
    confirmed, _ = store.list_views(1, "alice", "CONFIRMED", 10, None)
    assert [v.order_id for v in confirmed] == [ids[4], ids[2], ids[0]]


def test_a_gap_seen_through_a_stale_pointer_is_checked_against_the_current_one(ddb: Any) -> None:
    """After a rebuild swapped generations and deleted the old one, a projector still holding the old pointer sees
    every event as a gap there (nothing is left): it must read the pointer again, not refuse the event forever."""
    store = fresh_store(ddb)
    placed, priced, _ = history(str(uuid.uuid4()), "alice", "CONFIRMED")
    stale = Projector(store)
    stale.apply(placed)  # caches generation 1
    rebuilt = store.move_pointer(store.pointer(), active=1, building=2)
    Projector(store).apply_to(2, placed)
    store.move_pointer(rebuilt, active=2, building=None)
    store.delete_generation(1)
    assert stale.apply(priced) == {2: Outcome.APPLY}
    assert stale.pointer().active == 2
