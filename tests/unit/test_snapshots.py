"""Snapshots of orders and accounts: snapshot + tail equals full replay (property-based), stale or damaged
snapshots are ignored and rebuilt, and an account with 10,000 events loads reading at most the snapshot interval
of items."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from orders import domain as orders_domain
from orders.commands import ItemRequest, PlaceOrder
from orders.events import CATALOG as ORDER_EVENTS
from orders.events import SOURCE as ORDERS_SOURCE
from orders.service import OrderService
from orders.snapshot import ORDER_SNAPSHOTS
from payments import domain as payments_domain
from payments import events as payment_events
from payments.events import CATALOG as ACCOUNT_EVENTS
from payments.events import SOURCE as PAYMENTS_SOURCE
from payments.service import PaymentsService
from payments.snapshot import ACCOUNT_SNAPSHOTS
from shared import snapshots
from shared.event_store import DynamoDBEventStore, EventStore, InMemoryEventStore, Snapshot, to_dynamo
from shared.events import DomainEvent, EventEnvelope, wrap
from shared.records import EVENT_KIND, envelope_to_attributes
from shared.snapshots import Outcome, take_snapshot

from .test_snapshots_store import create_event_table

TABLE = "events"
AMOUNTS = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("500.00"), places=2)


# --- random histories, made by the aggregates' own decisions (so every history is one the code can produce) ---


def _record(
    state: Any, new: list[DomainEvent], evolve: Callable[[Any, DomainEvent, int], Any], into: list[tuple[DomainEvent, int]]
) -> Any:
    for event in new:
        version = len(into) + 1
        state = evolve(state, event, version)
        into.append((event, version))
    return state


@st.composite
def order_histories(draw: st.DrawFn) -> tuple[str, list[tuple[DomainEvent, int]]]:
    order_id = str(uuid.uuid4())
    lines = draw(
        st.lists(st.tuples(st.sampled_from("ABCDE"), st.integers(1, 5)), min_size=1, max_size=3, unique_by=lambda t: t[0])
    )
    command = PlaceOrder(
        customer_id="c-1",
        idempotency_key="k",
        items=[ItemRequest(sku=sku, quantity=qty) for sku, qty in lines],
        contact_email=draw(st.none() | st.just("c-1@example.com")),
    )
    history: list[tuple[DomainEvent, int]] = []
    state = _record(None, orders_domain.decide_place(None, order_id, command), orders_domain.evolve, history)
    for step in draw(st.lists(st.sampled_from(["price", "confirm", "cancel", "flag"]), max_size=6)):
        try:
            if step == "price":
                priced = [(sku, qty, draw(AMOUNTS)) for sku, qty in lines]
                new = orders_domain.decide_price(state, priced)
            elif step == "confirm":
                new = orders_domain.decide_confirm(state)
            elif step == "cancel":
                new = orders_domain.decide_cancel(state, draw(st.sampled_from(["OUT_OF_STOCK", "PAYMENT_DECLINED"])))
            else:
                new = orders_domain.decide_needs_attention(state, "compensation failed")
        except orders_domain.OrderError:
            continue
        state = _record(state, new, orders_domain.evolve, history)
    return order_id, history


@st.composite
def account_histories(draw: st.DrawFn) -> tuple[str, list[tuple[DomainEvent, int]]]:
    customer_id = f"cust-{uuid.uuid4().hex[:8]}"
    account = payments_domain.Account(customer_id=customer_id)
    history: list[tuple[DomainEvent, int]] = []
    deposits, orders = st.sampled_from([f"d{i}" for i in range(6)]), st.sampled_from([f"o{i}" for i in range(5)])
    steps = st.one_of(
        st.tuples(st.just("deposit"), deposits, AMOUNTS),
        st.tuples(st.just("authorize"), orders, AMOUNTS),
        st.tuples(st.just("capture"), orders),
        st.tuples(st.just("void"), orders),
    )
    for step in draw(st.lists(steps, min_size=1, max_size=40)):
        try:
            match step:
                case ("deposit", deposit_id, amount):
                    new = payments_domain.decide_deposit(account, deposit_id, amount)
                case ("authorize", order_id, amount):
                    new = payments_domain.decide_authorize(account, order_id, amount)
                case ("capture", order_id):
                    new = payments_domain.decide_capture(account, order_id)
                case ("void", order_id):
                    new = payments_domain.decide_void(account, order_id)
        except payments_domain.PaymentError:
            continue
        account = _record(account, new, payments_domain.evolve, history)
    return customer_id, history


def order_envelopes(order_id: str, history: list[tuple[DomainEvent, int]]) -> list[EventEnvelope]:
    return [wrap(e, source=ORDERS_SOURCE, subject=order_id, version=v) for e, v in history]


def account_envelopes(customer_id: str, history: list[tuple[DomainEvent, int]]) -> list[EventEnvelope]:
    aggregate_id = payments_domain.account_id(customer_id)
    return [wrap(e, source=PAYMENTS_SOURCE, subject=aggregate_id, version=v) for e, v in history]


def full_order(envelopes: list[EventEnvelope]) -> orders_domain.Order | None:
    return orders_domain.replay((ORDER_EVENTS.decode(e), e.version) for e in envelopes)


def full_account(customer_id: str, envelopes: list[EventEnvelope]) -> payments_domain.Account:
    return payments_domain.replay(customer_id, ((ACCOUNT_EVENTS.decode(e), e.version) for e in envelopes))


def append_all(store: EventStore, aggregate_id: str, envelopes: list[EventEnvelope]) -> None:
    for start in range(0, len(envelopes), 99):
        store.append(aggregate_id, start, envelopes[start : start + 99])


# --- stores ------------------------------------------------------------------------------------------------


@pytest.fixture
def moto_store() -> Iterator[DynamoDBEventStore]:
    with mock_aws():
        client = boto3.client("dynamodb")
        create_event_table(client)
        yield DynamoDBEventStore(TABLE, client)


@pytest.fixture(params=["memory", "dynamodb"])
def store(request: pytest.FixtureRequest) -> Iterator[EventStore]:
    if request.param == "memory":
        yield InMemoryEventStore()
    else:
        yield request.getfixturevalue("moto_store")


PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# --- snapshot + tail == full replay -------------------------------------------------------------------------


@PROPERTY
@given(history=order_histories(), data=st.data())
def test_order_snapshot_plus_tail_equals_full_replay(store: EventStore, history: Any, data: st.DataObject) -> None:
    order_id, events = history
    envelopes = order_envelopes(order_id, events)
    append_all(store, order_id, envelopes)
    expected = full_order(envelopes)

    at = data.draw(st.integers(1, len(envelopes)), label="snapshot version")
    assert store.save_snapshot(ORDER_SNAPSHOTS.snapshot_of(order_id, full_order(envelopes[:at])))

    loaded = snapshots.load(store, order_id, ORDER_SNAPSHOTS)
    assert loaded.state == expected
    assert (loaded.snapshot_version, loaded.events_read, loaded.ignored) == (at, len(envelopes) - at, None)
    assert OrderService(store).load(order_id) == expected  # the service's load path is the same


@PROPERTY
@given(history=account_histories(), data=st.data())
def test_account_snapshot_plus_tail_equals_full_replay(store: EventStore, history: Any, data: st.DataObject) -> None:
    customer_id, events = history
    aggregate_id = payments_domain.account_id(customer_id)
    envelopes = account_envelopes(customer_id, events)
    expected = full_account(customer_id, envelopes)
    if not envelopes:
        assert PaymentsService(store).account(customer_id) == expected
        return
    append_all(store, aggregate_id, envelopes)

    at = data.draw(st.integers(1, len(envelopes)), label="snapshot version")
    assert store.save_snapshot(ACCOUNT_SNAPSHOTS.snapshot_of(aggregate_id, full_account(customer_id, envelopes[:at])))

    loaded = snapshots.load(store, aggregate_id, ACCOUNT_SNAPSHOTS)
    assert loaded.state == expected
    assert (loaded.snapshot_version, loaded.events_read) == (at, len(envelopes) - at)
    assert PaymentsService(store).account(customer_id) == expected


@PROPERTY
@given(history=account_histories(), interval=st.integers(1, 8))
def test_snapshots_taken_as_the_stream_goes_never_change_what_loads(
    store: EventStore, history: Any, interval: int
) -> None:
    """The snapshotter's path: after every append, take_snapshot at the version seen; each load equals replay."""
    customer_id, events = history
    aggregate_id = payments_domain.account_id(customer_id)
    envelopes = account_envelopes(customer_id, events)
    for envelope in envelopes:
        store.append(aggregate_id, envelope.version - 1, [envelope])
        taken = take_snapshot(store, aggregate_id, ACCOUNT_SNAPSHOTS, interval=interval, seen_version=envelope.version)
        assert taken.outcome in (Outcome.WRITTEN, Outcome.NOT_DUE)
        loaded = snapshots.load(store, aggregate_id, ACCOUNT_SNAPSHOTS)
        assert loaded.state == full_account(customer_id, envelopes[: envelope.version])
        assert loaded.events_read < interval
        # A duplicate stream record writes nothing.
        again = take_snapshot(store, aggregate_id, ACCOUNT_SNAPSHOTS, interval=interval, seen_version=envelope.version)
        assert again.outcome is Outcome.NOT_DUE


# --- snapshots that must not be trusted ----------------------------------------------------------------------


def deposits(customer_id: str, count: int, amount: str = "10.00") -> list[EventEnvelope]:
    aggregate_id = payments_domain.account_id(customer_id)
    return [
        wrap(payment_events.FundsDeposited(deposit_id=str(uuid.uuid4()), amount=amount), source=PAYMENTS_SOURCE,
             subject=aggregate_id, version=n)
        for n in range(1, count + 1)
    ]


def lying_snapshot(aggregate_id: str, at: int, **changes: Any) -> Snapshot:
    """A snapshot whose state says the balance is 1,000,000.00: used only if the loader trusts it."""
    state = {"customerId": aggregate_id.removeprefix("account#"), "version": at, "balance": "1000000.00",
             "held": "0.00", "deposits": {}, "payments": {}}
    fields = {"aggregate_id": aggregate_id, "aggregate_type": "account", "schema_version": ACCOUNT_SNAPSHOTS.schema_version,
              "version": at, "state": state, **changes}
    return Snapshot(**fields)


# The code under test encodes accounts at schema 2, so a stored snapshot can be older (1) or newer (3).
CODE = replace(ACCOUNT_SNAPSHOTS, schema_version=2)


@pytest.mark.parametrize(
    ("changes", "why", "rebuilt"),
    [
        ({"schema_version": 1}, "schema version 1 is not 2", Outcome.WRITTEN),  # written by older code
        ({"schema_version": 3}, "schema version 3 is not 2", Outcome.SUPERSEDED),  # newer code's: never overwritten
        ({"aggregate_type": "order"}, "aggregate type", Outcome.WRITTEN),
        ({"state": {"version": 3}}, "cannot be decoded", Outcome.WRITTEN),
        ({"state": {"customerId": "x", "version": 3, "balance": 5, "held": "0.00", "deposits": {}, "payments": {}}},
         "cannot be decoded", Outcome.WRITTEN),
        ({"version": 7}, "the item says 7", Outcome.WRITTEN),
    ],
)
def test_a_snapshot_that_does_not_fit_the_code_is_ignored_and_rebuilt(
    store: EventStore, changes: dict[str, Any], why: str, rebuilt: Outcome
) -> None:
    customer_id = "alice"
    aggregate_id = payments_domain.account_id(customer_id)
    append_all(store, aggregate_id, deposits(customer_id, 5))
    # At version 8 (say, of a longer history): a stale snapshot is ignored whatever version it claims.
    store.save_snapshot(lying_snapshot(aggregate_id, 8, **{"schema_version": 2, **changes}))

    loaded = snapshots.load(store, aggregate_id, CODE)
    assert loaded.state.balance == Decimal("50.00") and loaded.state.version == 5
    assert loaded.snapshot_version == 0 and loaded.events_read == 5 and why in (loaded.ignored or "")

    taken = take_snapshot(store, aggregate_id, CODE, interval=5, seen_version=5)
    assert taken.outcome is rebuilt
    if rebuilt is Outcome.WRITTEN:
        stored = store.load_snapshot(aggregate_id)
        assert stored is not None and (stored.schema_version, stored.version) == (2, 5)
        assert snapshots.load(store, aggregate_id, CODE) == snapshots.Loaded(loaded.state, 5, 0)


def test_a_snapshot_that_fits_the_code_is_trusted(store: EventStore) -> None:
    """The other side of the rule: the schema version is the contract, so bump it whenever the encoding changes."""
    customer_id = "bob"
    aggregate_id = payments_domain.account_id(customer_id)
    append_all(store, aggregate_id, deposits(customer_id, 5))
    store.save_snapshot(lying_snapshot(aggregate_id, 3))
    assert PaymentsService(store).account(customer_id).balance == Decimal("1000020.00")


def test_take_snapshot_reads_only_the_snapshot_when_not_due(moto_store: DynamoDBEventStore) -> None:
    customer_id = "dave"
    aggregate_id = payments_domain.account_id(customer_id)
    append_all(moto_store, aggregate_id, deposits(customer_id, 12))
    assert take_snapshot(moto_store, aggregate_id, ACCOUNT_SNAPSHOTS, interval=10, seen_version=12).outcome is Outcome.WRITTEN
    counting = CountingClient(moto_store._client)
    store = DynamoDBEventStore(TABLE, counting)
    assert take_snapshot(store, aggregate_id, ACCOUNT_SNAPSHOTS, interval=10, seen_version=12).outcome is Outcome.NOT_DUE
    assert counting.calls == {"get_item": 1}


def test_an_account_too_large_to_snapshot_keeps_loading_by_replay(store: EventStore, monkeypatch: pytest.MonkeyPatch) -> None:
    import shared.event_store

    monkeypatch.setattr(shared.event_store, "SNAPSHOT_MAX_STATE_BYTES", 100)
    monkeypatch.setattr(shared.event_store, "SNAPSHOT_COMPRESS_ABOVE_BYTES", 10)
    customer_id = "erin"
    aggregate_id = payments_domain.account_id(customer_id)
    append_all(store, aggregate_id, deposits(customer_id, 20))
    assert take_snapshot(store, aggregate_id, ACCOUNT_SNAPSHOTS, interval=10, seen_version=20).outcome is Outcome.TOO_LARGE
    assert store.load_snapshot(aggregate_id) is None
    assert PaymentsService(store).account(customer_id).balance == Decimal("200.00")


# --- 10,000 events: loading reads at most the snapshot interval of items ---------------------------------


class CountingClient:
    """A DynamoDB client that counts the calls made and the items DynamoDB returned through it."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: dict[str, int] = {}
        self.items = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def _count(self, name: str, response: dict[str, Any], items: int) -> dict[str, Any]:
        self.calls[name] = self.calls.get(name, 0) + 1
        self.items += items
        return response

    def get_item(self, **kwargs: Any) -> dict[str, Any]:
        response = self._client.get_item(**kwargs)
        return self._count("get_item", response, 1 if "Item" in response else 0)

    def query(self, **kwargs: Any) -> dict[str, Any]:
        response = self._client.query(**kwargs)
        return self._count("query", response, len(response.get("Items", [])))


def seed(client: Any, aggregate_id: str, envelopes: list[EventEnvelope]) -> None:
    """Store events exactly as ``append`` lays them out, without its transaction: moto deep-copies the whole
    table for every item of a TransactWriteItems, which makes 10,000 appends take many minutes."""
    for start in range(0, len(envelopes), 25):
        items = [
            {"pk": aggregate_id, "sk": e.sequence, "kind": EVENT_KIND, **envelope_to_attributes(e)}
            for e in envelopes[start : start + 25]
        ]
        client.batch_write_item(RequestItems={TABLE: [{"PutRequest": {"Item": to_dynamo(i)}} for i in items]})


def test_an_account_with_10000_events_loads_reading_at_most_the_interval(moto_store: DynamoDBEventStore) -> None:
    interval = 100
    customer_id = "whale"
    aggregate_id = payments_domain.account_id(customer_id)
    envelopes = deposits(customer_id, 10_000, amount="1.25")
    seed(moto_store._client, aggregate_id, envelopes)
    # The snapshot the snapshotter wrote at 9,900 (built directly: replaying 9,900 events here is slow in moto).
    at_9900 = payments_domain.Account(
        customer_id=customer_id,
        version=9_900,
        balance=Decimal("12375.00"),
        deposits=MappingProxyType({e.data["deposit_id"]: Decimal("1.25") for e in envelopes[:9_900]}),
    )
    assert moto_store.save_snapshot(ACCOUNT_SNAPSHOTS.snapshot_of(aggregate_id, at_9900))
    # The stream then shows the snapshotter version 10,000: it loads 9,900 + 100 events and snapshots 10,000.
    taken = take_snapshot(moto_store, aggregate_id, ACCOUNT_SNAPSHOTS, interval=interval, seen_version=10_000)
    assert (taken.outcome, taken.version) == (Outcome.WRITTEN, 10_000)

    counting = CountingClient(moto_store._client)
    service = PaymentsService(DynamoDBEventStore(TABLE, counting))
    account = service.account(customer_id)
    assert (account.version, account.balance, len(account.deposits)) == (10_000, Decimal("12500.00"), 10_000)
    assert account.deposits == {e.data["deposit_id"]: Decimal("1.25") for e in envelopes}
    assert counting.items == 1 and counting.calls == {"get_item": 1, "query": 1}

    # The worst case: interval - 1 events after the snapshot (the snapshotter is not due yet).
    tail = [
        wrap(payment_events.FundsDeposited(deposit_id=str(uuid.uuid4()), amount="1.00"), source=PAYMENTS_SOURCE,
             subject=aggregate_id, version=10_000 + n)
        for n in range(1, interval)
    ]
    seed(moto_store._client, aggregate_id, tail)
    counting.items, counting.calls = 0, {}
    account = service.account(customer_id)
    assert (account.version, account.balance) == (10_099, Decimal("12599.00"))
    assert counting.items == interval  # the snapshot and 99 events, of 10,099
    # (benchmarks/bench_event_store.py times the same account without its snapshot: every item, every time.)
