"""The inventory service against DynamoDB (moto, a hand-made table with the deployed key schema).

Every change must be one TransactWriteItems of the state change and its outbox item; failed and repeated
steps write nothing; stock never goes negative and available + reserved + sold is conserved, also when many
threads race for the same units.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends

from inventory.domain import (
    ConcurrencyError,
    InvalidRequest,
    InvalidTransition,
    Line,
    OutOfStock,
    Product,
    ReservationCancelled,
    ReservationNotFound,
    ReservationStatus,
    UnknownProduct,
)
from inventory.repository import InventoryTable
from inventory.service import InventoryService
from relay.logic import to_entry
from shared.event_store import from_dynamo
from shared.events import EventEnvelope
from shared.records import OUTBOX_KIND, envelope_from_attributes

TABLE = "inventory-test"
NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
WRITE_CALLS = ("transact_write_items", "put_item", "update_item", "delete_item", "batch_write_item")


# --- fixtures and helpers (the handler tests import these) ---


def create_inventory_table(client: Any, name: str = TABLE) -> None:
    """The same key schema, stream and TTL as the deployed table."""
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )
    client.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})


@contextmanager
def serialized_dynamodb(region: str = "us-east-1") -> Iterator[None]:
    """moto has no lock around a transaction: it applies the actions one by one and, on a failed condition,
    puts back a deep copy of the whole table, losing any write another thread made meanwhile (and a reader
    can see a half-applied transaction). DynamoDB serializes these. One re-entrant lock around the backend's
    write and item-read entry points gives the same guarantee, so the race tests test the service's
    conditions and not moto's thread safety. (Re-entrant: transact_write_items calls put_item/update_item.)"""
    backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][region]
    lock = threading.RLock()
    names = ("transact_write_items", "update_item", "put_item", "delete_item", "get_item")
    for name in names:
        original = getattr(backend, name)

        def locked(*args: Any, _original: Callable[..., Any] = original, **kwargs: Any) -> Any:
            with lock:
                return _original(*args, **kwargs)

        setattr(backend, name, locked)
    try:
        yield
    finally:
        for name in names:
            backend.__dict__.pop(name, None)


@pytest.fixture
def ddb() -> Iterator[Any]:
    with mock_aws(), serialized_dynamodb():
        client = boto3.client("dynamodb")
        create_inventory_table(client)
        yield client


class RecordingClient:
    """The DynamoDB client, with every write call recorded: to see what one step wrote, and in how many calls."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.writes: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name not in WRITE_CALLS:
            return attribute

        def record(**kwargs: Any) -> Any:
            self.writes.append((name, kwargs))
            return attribute(**kwargs)

        return record


@pytest.fixture
def recorder(ddb: Any) -> RecordingClient:
    return RecordingClient(ddb)


@pytest.fixture
def table(recorder: RecordingClient) -> InventoryTable:
    return InventoryTable(TABLE, recorder, now=lambda: NOW)


@pytest.fixture
def inventory(table: InventoryTable) -> InventoryService:
    return InventoryService(table, backoff=lambda attempt: None)


def stock(inventory: InventoryService, sku: str) -> tuple[int, int, int]:
    product = inventory.product(sku)
    assert product is not None
    return product.available, product.reserved, product.sold


def outbox_items(client: Any, name: str = TABLE) -> list[dict[str, Any]]:
    items = [from_dynamo(raw) for raw in client.scan(TableName=name)["Items"]]
    return [item for item in items if item["kind"] == OUTBOX_KIND]


def published(client: Any, name: str = TABLE) -> list[EventEnvelope]:
    """The events in the outbox, oldest first."""
    return sorted((envelope_from_attributes(item) for item in outbox_items(client, name)), key=lambda e: e.time)


def seed(inventory: InventoryService, **products: tuple[str, int]) -> None:
    """seed(inventory, A=("12.50", 10)): products with a price and an available count."""
    for sku, (price, count) in products.items():
        inventory.set_product(sku, f"product {sku}", Decimal(price), count)


def lines(**quantities: int) -> list[Line]:
    return [Line(sku=sku, quantity=quantity) for sku, quantity in quantities.items()]


# --- reserve ---


def test_reserve_prices_the_lines_and_totals_them(inventory: InventoryService, ddb: Any) -> None:
    seed(inventory, A=("12.50", 10), B=("3.99", 5))
    reservation = inventory.reserve("o-1", lines(A=2, B=3))
    assert reservation.status is ReservationStatus.RESERVED
    assert [(l.sku, l.quantity, l.unit_price) for l in reservation.lines] == [
        ("A", 2, Decimal("12.50")),
        ("B", 3, Decimal("3.99")),
    ]
    assert reservation.total == Decimal("36.97")
    assert stock(inventory, "A") == (8, 2, 0)
    assert stock(inventory, "B") == (2, 3, 0)
    assert inventory.reservation("o-1") == reservation


def test_reserve_writes_state_and_event_in_one_transaction(
    inventory: InventoryService, recorder: RecordingClient, ddb: Any
) -> None:
    seed(inventory, A=("12.50", 10), B=("3.99", 5))
    recorder.writes.clear()
    inventory.reserve("o-1", lines(A=2, B=3))

    [(call, request)] = recorder.writes
    assert call == "transact_write_items"
    actions = request["TransactItems"]
    targets = [
        (kind, from_dynamo(body.get("Key") or body["Item"])) for action in actions for kind, body in action.items()
    ]
    assert [(kind, key["pk"], key["sk"]) for kind, key in targets] == [
        ("Put", "RESERVATION#o-1", "RESERVATION"),
        ("Update", "PRODUCT#A", "PRODUCT"),
        ("Update", "PRODUCT#B", "PRODUCT"),
        ("Put", "RESERVATION#o-1", "OUTBOX#0000000001"),
    ]
    [item] = [item for item in outbox_items(ddb) if item["pk"] == "RESERVATION#o-1"]
    assert item["kind"] == OUTBOX_KIND
    assert item["expires_at"] == int((NOW + timedelta(days=7)).timestamp())
    envelope = envelope_from_attributes(item)
    assert (envelope.type, envelope.source, envelope.subject, envelope.correlationid, envelope.sequence) == (
        "InventoryReserved",
        "orderflow.inventory",
        "o-1",
        "o-1",
        "0000000001",
    )
    assert envelope.data == {
        "order_id": "o-1",
        "lines": [
            {"sku": "A", "quantity": 2, "unit_price": "12.50"},
            {"sku": "B", "quantity": 3, "unit_price": "3.99"},
        ],
        "total": "36.97",
    }


@pytest.mark.parametrize(
    ("wanted", "error", "named"),
    [
        (dict(A=2, B=6), OutOfStock, "B (6 wanted, 5 available)"),
        (dict(A=2, NOPE=1), UnknownProduct, "NOPE"),
        (dict(NOPE=1, B=9), UnknownProduct, "NOPE"),  # an unknown product is the reason, before any shortage
    ],
)
def test_a_line_that_cannot_be_reserved_reserves_nothing(
    inventory: InventoryService, recorder: RecordingClient, ddb: Any, wanted: dict[str, int], error: type, named: str
) -> None:
    seed(inventory, A=("12.50", 10), B=("3.99", 5))
    before = published(ddb)
    recorder.writes.clear()
    with pytest.raises(error, match=named.replace("(", r"\(").replace(")", r"\)")):
        inventory.reserve("o-1", lines(**wanted))
    assert stock(inventory, "A") == (10, 0, 0) and stock(inventory, "B") == (5, 0, 0)
    assert inventory.reservation("o-1") is None
    assert recorder.writes == [] and published(ddb) == before


class StaleReads:
    """Makes the service decide on products as they were (or never were), so the transaction's conditions,
    not the read, have to catch it."""

    def __init__(self, table: InventoryTable, fake: dict[str, Product], times: int = 1) -> None:
        self._read = table.reservation_and_products
        self._fake = fake
        self.left = times
        table.reservation_and_products = self  # type: ignore[method-assign]

    def __call__(self, order_id: str, skus: Any) -> Any:
        reservation, products = self._read(order_id, skus)
        if self.left > 0:
            self.left -= 1
            products = {**products, **self._fake}
        return reservation, products


def test_the_transaction_refuses_a_shortage_the_read_did_not_see(
    inventory: InventoryService, table: InventoryTable, ddb: Any
) -> None:
    seed(inventory, A=("12.50", 10), B=("3.99", 1))
    before = published(ddb)
    StaleReads(table, {"B": Product("B", "product B", Decimal("3.99"), available=5, reserved=0, sold=0, revision=1)})
    with pytest.raises(OutOfStock, match=r"B \(3 wanted, 1 available\)") as refused:
        inventory.reserve("o-1", lines(A=2, B=3))
    assert refused.value.skus == ("B",)
    assert stock(inventory, "A") == (10, 0, 0) and stock(inventory, "B") == (1, 0, 0)
    assert inventory.reservation("o-1") is None and published(ddb) == before


def test_the_transaction_refuses_a_product_that_does_not_exist(
    inventory: InventoryService, table: InventoryTable, ddb: Any
) -> None:
    seed(inventory, A=("12.50", 10))
    StaleReads(table, {"GONE": Product("GONE", "ghost", Decimal("1.00"), available=5, reserved=0, sold=0, revision=1)})
    with pytest.raises(UnknownProduct, match="GONE"):
        inventory.reserve("o-1", lines(A=2, GONE=1))
    assert stock(inventory, "A") == (10, 0, 0) and inventory.reservation("o-1") is None
    assert inventory.product("GONE") is None  # the failed update did not create it


def test_a_price_changed_after_the_read_is_read_again_and_reserved_at_the_new_price(
    inventory: InventoryService, table: InventoryTable, ddb: Any
) -> None:
    seed(inventory, A=("12.50", 10))
    stale = StaleReads(
        table, {"A": Product("A", "product A", Decimal("9.99"), available=10, reserved=0, sold=0, revision=1)}
    )
    reservation = inventory.reserve("o-1", lines(A=2))
    assert stale.left == 0
    assert reservation.total == Decimal("25.00")
    assert stock(inventory, "A") == (8, 2, 0)
    assert [e.data["total"] for e in published(ddb) if e.type == "InventoryReserved"] == ["25.00"]


def test_repeated_reserve_reserves_once_and_answers_the_same(
    inventory: InventoryService, recorder: RecordingClient, ddb: Any
) -> None:
    seed(inventory, A=("12.50", 10))
    first = inventory.reserve("o-1", lines(A=2))
    recorder.writes.clear()
    second = inventory.reserve("o-1", lines(A=2))
    assert second == first
    assert recorder.writes == []
    assert stock(inventory, "A") == (8, 2, 0)
    assert [e.type for e in published(ddb)] == ["ProductUpdated", "InventoryReserved"]


def test_a_repeated_reserve_still_answers_after_the_stock_ran_out(inventory: InventoryService) -> None:
    seed(inventory, A=("12.50", 2))
    first = inventory.reserve("o-1", lines(A=2))
    assert inventory.reserve("o-1", lines(A=2)) == first  # not OutOfStock: it is the same step again


def test_a_reserve_with_other_lines_for_a_reserved_order_is_refused(inventory: InventoryService) -> None:
    seed(inventory, A=("12.50", 10))
    inventory.reserve("o-1", lines(A=2))
    with pytest.raises(InvalidRequest, match="other lines"):
        inventory.reserve("o-1", lines(A=3))
    assert stock(inventory, "A") == (8, 2, 0)


def test_concurrent_duplicates_of_one_reserve_reserve_once(inventory: InventoryService, ddb: Any) -> None:
    seed(inventory, A=("12.50", 10))
    barrier = threading.Barrier(8, timeout=30)
    results: list[Any] = []

    def step() -> None:
        barrier.wait()
        results.append(inventory.reserve("o-1", lines(A=3)))

    run_threads([step] * 8)
    assert len(results) == 8 and len({r.total for r in results}) == 1
    assert stock(inventory, "A") == (7, 3, 0)
    assert [e.type for e in published(ddb)].count("InventoryReserved") == 1


@pytest.mark.parametrize(
    "bad",
    [[], [Line("A", 0)], [Line("A", 1), Line("A", 2)], [Line(f"S{i}", 1) for i in range(51)]],
    ids=["no lines", "zero quantity", "duplicate sku", "too many lines"],
)
def test_malformed_reserves_are_refused_before_any_read_or_write(
    inventory: InventoryService, recorder: RecordingClient, bad: list[Line]
) -> None:
    with pytest.raises(InvalidRequest):
        inventory.reserve("o-1", bad)
    assert recorder.writes == []


# --- transaction conflicts ---


def _conflict(client: Any, actions: int, code: str = "TransactionConflict") -> Exception:
    reasons = [{"Code": code, "Message": "not now"}] + [{"Code": "None"}] * (actions - 1)
    return client.exceptions.TransactionCanceledException(
        {"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"}, "CancellationReasons": reasons},
        "TransactWriteItems",
    )


@pytest.mark.parametrize("code", ["TransactionConflict", "ThrottlingError"])
def test_transient_cancellations_are_retried(
    inventory: InventoryService, recorder: RecordingClient, ddb: Any, code: str
) -> None:
    seed(inventory, A=("12.50", 10))
    real = recorder.__getattr__("transact_write_items")
    failures = iter([True, True, False])

    def flaky(**kwargs: Any) -> Any:
        if next(failures):
            raise _conflict(ddb, len(kwargs["TransactItems"]), code)
        return real(**kwargs)

    recorder.transact_write_items = flaky  # type: ignore[attr-defined]
    assert inventory.reserve("o-1", lines(A=2)).total == Decimal("25.00")
    assert stock(inventory, "A") == (8, 2, 0)


def test_endless_transaction_conflicts_end_in_a_retriable_concurrency_error(
    inventory: InventoryService, recorder: RecordingClient, ddb: Any
) -> None:
    seed(inventory, A=("12.50", 10))

    def always(**kwargs: Any) -> Any:
        raise _conflict(ddb, len(kwargs["TransactItems"]))

    recorder.transact_write_items = always  # type: ignore[attr-defined]
    with pytest.raises(ConcurrencyError) as error:
        inventory.reserve("o-1", lines(A=2))
    assert type(error.value).__name__ == "ConcurrencyError"  # the error name the saga retries
    with pytest.raises(ConcurrencyError):
        inventory.set_product("A", "renamed", Decimal("1.00"), 1)
    assert stock(inventory, "A") == (10, 0, 0)


def test_outbox_items_leave_through_the_stream_as_the_relay_reads_them(inventory: InventoryService, ddb: Any) -> None:
    seed(inventory, A=("12.50", 10))
    inventory.reserve("o-1", lines(A=2))
    inventory.commit("o-1")
    streams = boto3.client("dynamodbstreams")
    arn = ddb.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
    [shard] = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")
    records = streams.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
    # the event source mapping's filter: INSERTs of outbox items
    outbox = [
        r for r in records if r["eventName"] == "INSERT" and r["dynamodb"]["NewImage"]["kind"] == {"S": OUTBOX_KIND}
    ]
    entries = [to_entry(record) for record in outbox]
    assert [(e["Source"], e["DetailType"]) for e in entries] == [
        ("orderflow.inventory", "ProductUpdated"),
        ("orderflow.inventory", "InventoryReserved"),
        ("orderflow.inventory", "InventoryCommitted"),
    ]
    assert len(records) > len(outbox)  # the state changes are on the stream too, and filtered out


# --- release ---


def test_release_returns_the_stock_and_is_a_no_op_the_second_time(
    inventory: InventoryService, recorder: RecordingClient, ddb: Any
) -> None:
    seed(inventory, A=("12.50", 10), B=("3.99", 5))
    inventory.reserve("o-1", lines(A=2, B=3))
    recorder.writes.clear()
    assert inventory.release("o-1") is True
    assert stock(inventory, "A") == (10, 0, 0) and stock(inventory, "B") == (5, 0, 0)
    [(call, request)] = recorder.writes
    assert call == "transact_write_items" and len(request["TransactItems"]) == 4  # reservation, A, B, outbox

    recorder.writes.clear()
    assert inventory.release("o-1") is False
    assert recorder.writes == []
    assert stock(inventory, "A") == (10, 0, 0)
    released = [e for e in published(ddb) if e.type == "InventoryReleased"]
    assert len(released) == 1
    assert (released[0].subject, released[0].correlationid, released[0].sequence) == ("o-1", "o-1", "0000000002")
    assert released[0].data == {"order_id": "o-1", "lines": [{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 3}]}
    assert inventory.reservation("o-1").status is ReservationStatus.RELEASED  # type: ignore[union-attr]


def test_a_release_before_the_reserve_leaves_a_tombstone_the_late_reserve_cannot_pass(
    inventory: InventoryService, ddb: Any
) -> None:
    seed(inventory, A=("12.50", 10))
    assert inventory.release("o-1") is False  # nothing was reserved
    tombstone = inventory.reservation("o-1")
    assert tombstone is not None and tombstone.tombstone and tombstone.status is ReservationStatus.RELEASED
    with pytest.raises(ReservationCancelled, match="released before it was made"):
        inventory.reserve("o-1", lines(A=2))
    assert inventory.release("o-1") is False
    assert stock(inventory, "A") == (10, 0, 0)
    assert [e.type for e in published(ddb)] == ["ProductUpdated"]  # no stock moved: nothing to publish


def test_a_late_duplicate_reserve_after_the_release_is_cancelled(inventory: InventoryService) -> None:
    seed(inventory, A=("12.50", 10))
    inventory.reserve("o-1", lines(A=2))
    inventory.release("o-1")
    with pytest.raises(ReservationCancelled):
        inventory.reserve("o-1", lines(A=2))
    assert stock(inventory, "A") == (10, 0, 0)


# --- commit ---


def test_commit_moves_reserved_to_sold_once(inventory: InventoryService, recorder: RecordingClient, ddb: Any) -> None:
    seed(inventory, A=("12.50", 10))
    inventory.reserve("o-1", lines(A=2))
    assert inventory.commit("o-1") is True
    assert stock(inventory, "A") == (8, 0, 2)
    recorder.writes.clear()
    assert inventory.commit("o-1") is False
    assert recorder.writes == []
    assert stock(inventory, "A") == (8, 0, 2)
    [committed] = [e for e in published(ddb) if e.type == "InventoryCommitted"]
    assert committed.data == {
        "order_id": "o-1",
        "lines": [{"sku": "A", "quantity": 2, "unit_price": "12.50"}],
        "total": "25.00",
    }
    assert committed.sequence == "0000000002"


@pytest.mark.parametrize(
    ("before", "step", "error"),
    [
        ([], "commit", ReservationNotFound),
        (["reserve", "release"], "commit", InvalidTransition),
        (["release"], "commit", InvalidTransition),  # the tombstone
        (["reserve", "commit"], "release", InvalidTransition),  # after the pivot nothing is compensated
    ],
)
def test_steps_out_of_order_are_refused_and_write_nothing(
    inventory: InventoryService, recorder: RecordingClient, ddb: Any, before: list[str], step: str, error: type
) -> None:
    seed(inventory, A=("12.50", 10))
    for done in before:
        inventory.reserve("o-1", lines(A=2)) if done == "reserve" else getattr(inventory, done)("o-1")
    state, events = stock(inventory, "A"), published(ddb)
    recorder.writes.clear()
    with pytest.raises(error):
        getattr(inventory, step)("o-1")
    assert recorder.writes == [] and stock(inventory, "A") == state and published(ddb) == events


# --- the admin's product changes ---


def test_setting_a_product_publishes_only_when_something_changed(inventory: InventoryService, ddb: Any) -> None:
    product, changed = inventory.set_product("A", "Widget", Decimal("12.5"), 10, correlation_id="req-1")
    assert changed and product.price == Decimal("12.50") and product.revision == 1
    assert inventory.set_product("A", "Widget", Decimal("12.50"), 10) == (product, False)
    updated, changed = inventory.set_product("A", "Widget", Decimal("13.00"), 10)
    assert changed and updated.revision == 2
    events = published(ddb)
    assert [(e.type, e.subject, e.sequence) for e in events] == [
        ("ProductUpdated", "A", "0000000001"),
        ("ProductUpdated", "A", "0000000002"),
    ]
    assert events[0].correlationid == "req-1"
    assert events[1].data == {"sku": "A", "name": "Widget", "price": "13.00", "available": 10, "reserved": 0, "sold": 0}
    [first, second] = sorted(outbox_items(ddb), key=lambda item: item["sk"])
    assert (first["pk"], first["sk"], second["sk"]) == ("PRODUCT#A", "OUTBOX#0000000001", "OUTBOX#0000000002")


def test_setting_the_stock_sets_what_is_available_and_keeps_reserved_and_sold(inventory: InventoryService) -> None:
    seed(inventory, A=("12.50", 10))
    inventory.reserve("o-1", lines(A=3))
    inventory.reserve("o-2", lines(A=2))
    inventory.commit("o-2")
    assert stock(inventory, "A") == (5, 3, 2)
    inventory.set_product("A", "product A", Decimal("12.50"), 20)
    assert stock(inventory, "A") == (20, 3, 2)
    assert inventory.release("o-1") is True
    assert stock(inventory, "A") == (23, 0, 2)


def test_a_reservation_keeps_the_price_it_was_made_at(inventory: InventoryService) -> None:
    seed(inventory, A=("12.50", 10))
    inventory.reserve("o-1", lines(A=2))
    inventory.set_product("A", "product A", Decimal("99.00"), 8)
    assert inventory.reserve("o-1", lines(A=2)).total == Decimal("25.00")
    assert inventory.reserve("o-2", lines(A=1)).total == Decimal("99.00")


# --- races ---


def run_threads(targets: list[Callable[[], None]]) -> None:
    errors: list[BaseException] = []

    def guarded(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as error:  # noqa: BLE001 (reported below)
                errors.append(error)

        return run

    threads = [threading.Thread(target=guarded(t)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a racer is stuck"
    assert not errors, errors


class EveryoneReadsFirst:
    """The worst interleaving, every time: each racer reads the products, then waits until all racers have
    read before writing. Every racer decides on the same stock; only the write's conditions can stop them."""

    def __init__(self, table: InventoryTable, racers: int) -> None:
        self._read = table.reservation_and_products
        self._barrier = threading.Barrier(racers, timeout=30)
        self._waited = threading.local()
        table.reservation_and_products = self  # type: ignore[method-assign]

    def __call__(self, order_id: str, skus: Any) -> Any:
        result = self._read(order_id, skus)
        if not getattr(self._waited, "done", False):
            self._waited.done = True
            self._barrier.wait()
        return result


def test_many_reserves_racing_for_few_units_never_oversell(
    inventory: InventoryService, table: InventoryTable, ddb: Any
) -> None:
    seed(inventory, A=("12.50", 3))
    EveryoneReadsFirst(table, racers=24)
    outcomes: dict[str, str] = {}

    def order(n: int) -> Callable[[], None]:
        def run() -> None:
            try:
                inventory.reserve(f"o-{n}", lines(A=1))
                outcomes[f"o-{n}"] = "reserved"
            except OutOfStock:
                outcomes[f"o-{n}"] = "out of stock"

        return run

    run_threads([order(n) for n in range(24)])
    assert Counter(outcomes.values()) == {"reserved": 3, "out of stock": 21}
    assert stock(inventory, "A") == (0, 3, 0)
    reserved_events = [e for e in published(ddb) if e.type == "InventoryReserved"]
    assert sorted(e.subject for e in reserved_events) == sorted(o for o, r in outcomes.items() if r == "reserved")
    assert len(outbox_items(ddb)) == 1 + 3  # the product's ProductUpdated and one event per reservation


def test_a_mixed_race_of_multi_line_reserves_releases_and_commits_conserves_stock(
    inventory: InventoryService, ddb: Any
) -> None:
    seed(inventory, A=("2.00", 5), B=("3.00", 7), C=("5.00", 4))
    initial = {sku: sum(stock(inventory, sku)) for sku in "ABC"}
    rng = random.Random(7)
    wanted = {f"o-{n}": {sku: rng.randint(1, 3) for sku in rng.sample("ABC", rng.randint(1, 3))} for n in range(30)}
    reserved: dict[str, dict[str, int]] = {}
    barrier = threading.Barrier(len(wanted), timeout=30)

    def reserve(order_id: str) -> Callable[[], None]:
        def run() -> None:
            barrier.wait()
            try:
                inventory.reserve(order_id, lines(**wanted[order_id]))
                reserved[order_id] = wanted[order_id]
            except OutOfStock:
                pass
            # the saga's duplicate deliveries and compensations, racing with everyone else
            if int(order_id[2:]) % 3 == 0:
                inventory.reserve(order_id, lines(**wanted[order_id])) if order_id in reserved else None
                inventory.release(order_id)
                inventory.release(order_id)
            elif order_id in reserved:
                inventory.commit(order_id)
                inventory.commit(order_id)

        return run

    run_threads([reserve(order_id) for order_id in wanted])
    assert reserved, "the race reserved nothing: the test proves nothing"
    sold = Counter[str]()
    for order_id, quantities in reserved.items():
        if int(order_id[2:]) % 3 != 0:
            sold.update(quantities)
    for sku in "ABC":
        available, held, sold_count = stock(inventory, sku)
        assert min(available, held, sold_count) >= 0
        assert available + held + sold_count == initial[sku]
        assert held == 0 and sold_count == sold[sku]
    types = Counter(e.type for e in published(ddb))
    assert types["InventoryReserved"] == len(reserved)
    assert types["InventoryCommitted"] == sum(1 for o in reserved if int(o[2:]) % 3 != 0)
    assert types["InventoryReleased"] == sum(1 for o in reserved if int(o[2:]) % 3 == 0)
