"""The snapshotter Lambdas on stream batches (moto tables with streams): it snapshots the aggregates that are
due, reads only its own tables, writes nothing for duplicates, skips what is not an event item, reports the
first record of an aggregate it could not snapshot, and logs at INFO only what it wrote."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from types import ModuleType
from typing import Any

import aws_xray_sdk.core  # noqa: F401 (imported before sockets are off: see test_inventory_handlers.py)
import boto3
import pytest
from moto import mock_aws

import shared.aws
from orders.commands import ItemRequest, PlaceOrder
from orders.service import OrderService
from orders.snapshot import ORDER_SNAPSHOTS
from payments.domain import account_id
from payments.service import PaymentsService
from payments.snapshot import ACCOUNT_SNAPSHOTS
from shared.event_store import DynamoDBEventStore, InMemoryEventStore
from shared.snapshots import Outcome
from snapshots.logic import Source, snapshot_batch, table_of

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

ORDERS, PAYMENTS = "orders-table", "payments-table"
ORDER_INTERVAL, ACCOUNT_INTERVAL = 2, 3


@dataclass
class Context:
    function_name: str = "snapshotter"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:snapshotter"
    aws_request_id: str = "6f1c1e0a-0000-4c55-9d59-3f1b8f0c7a11"


def create_table(client: Any, name: str) -> None:
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )


class Streams:
    """Reads each table's stream from where the last read stopped, as Lambda hands records to the function."""

    def __init__(self, client: Any) -> None:
        self._dynamodb = client
        self._streams = boto3.client("dynamodbstreams")
        self._iterators: dict[str, str] = {}

    def read(self, table: str) -> list[dict[str, Any]]:
        arn = self._dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
        if arn not in self._iterators:
            shard = self._streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
            self._iterators[arn] = self._streams.get_shard_iterator(
                StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
        page = self._streams.get_records(ShardIterator=self._iterators[arn])
        self._iterators[arn] = page["NextShardIterator"]
        return [{**record, "eventSourceARN": arn} for record in page["Records"]]  # Lambda adds the source ARN


@pytest.fixture
def aws() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb")
        create_table(client, ORDERS)
        create_table(client, PAYMENTS)
        yield client


HANDLER_MODULES = ("snapshots.orders", "snapshots.payments")


@pytest.fixture
def handlers(aws: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, ModuleType]]:
    for key, value in {
        "ORDERS_TABLE": ORDERS,
        "PAYMENTS_TABLE": PAYMENTS,
        "ORDER_SNAPSHOT_INTERVAL": str(ORDER_INTERVAL),
        "ACCOUNT_SNAPSHOT_INTERVAL": str(ACCOUNT_INTERVAL),
        "POWERTOOLS_METRICS_NAMESPACE": "Orderflow",
    }.items():
        monkeypatch.setenv(key, value)
    for name in HANDLER_MODULES:
        sys.modules.pop(name, None)
    shared.aws.client.cache_clear()
    try:
        yield {ORDERS: importlib.import_module("snapshots.orders"), PAYMENTS: importlib.import_module("snapshots.payments")}
    finally:
        for name in HANDLER_MODULES:
            sys.modules.pop(name, None)
        shared.aws.client.cache_clear()


def invoke(handlers: dict[str, ModuleType], table: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Lambda invokes a table's snapshotter with that table's records only (one mapping per table)."""
    return handlers[table].handler({"Records": records}, Context())


def place_and_confirm(orders: OrderService, key: str) -> str:
    order = orders.place(PlaceOrder(customer_id="alice", idempotency_key=key, items=[ItemRequest(sku="A", quantity=2)]))
    orders.price(order.order_id, [("A", 2, Decimal("5.00"))])
    orders.confirm(order.order_id)
    return order.order_id


def test_the_snapshotters_snapshot_due_aggregates(handlers: dict[str, ModuleType], aws: Any) -> None:
    orders_store, payments_store = DynamoDBEventStore(ORDERS, aws), DynamoDBEventStore(PAYMENTS, aws)
    orders, payments = OrderService(orders_store), PaymentsService(payments_store)
    streams = Streams(aws)

    order_id = place_and_confirm(orders, "k1")  # 3 events: due at 2
    for n in range(4):
        payments.deposit("bob", f"d{n}", Decimal("10.00"))  # 4 events: due at 3
    payments.deposit("carol", "d0", Decimal("1.00"))  # 1 event: not due
    order_batch, payment_batch = streams.read(ORDERS), streams.read(PAYMENTS)

    assert invoke(handlers, ORDERS, order_batch) == {"batchItemFailures": []}
    assert invoke(handlers, PAYMENTS, payment_batch) == {"batchItemFailures": []}
    order_snapshot = orders_store.load_snapshot(order_id)
    assert order_snapshot is not None and (order_snapshot.aggregate_type, order_snapshot.version) == ("order", 3)
    account_snapshot = payments_store.load_snapshot(account_id("bob"))
    assert account_snapshot is not None and (account_snapshot.aggregate_type, account_snapshot.version) == ("account", 4)
    assert account_snapshot.state["balance"] == "40.00"
    assert payments_store.load_snapshot(account_id("carol")) is None
    # Loading now starts from the snapshots.
    assert orders.load(order_id) == ORDER_SNAPSHOTS.decode(dict(order_snapshot.state))
    assert payments.account("bob") == ACCOUNT_SNAPSHOTS.decode(dict(account_snapshot.state))

    # The snapshot writes are on the stream too: the mapping's filter drops them, and so does the handler;
    # the same batches delivered again write nothing new.
    again_orders, again_payments = streams.read(ORDERS), streams.read(PAYMENTS)
    assert {r["dynamodb"]["NewImage"]["kind"]["S"] for r in again_orders + again_payments} == {"snapshot"}
    writes: list[Any] = []
    original = aws.put_item
    aws.put_item = lambda **kwargs: writes.append(kwargs) or original(**kwargs)  # type: ignore[method-assign]
    try:
        assert invoke(handlers, ORDERS, again_orders + order_batch) == {"batchItemFailures": []}
        assert invoke(handlers, PAYMENTS, again_payments + payment_batch) == {"batchItemFailures": []}
    finally:
        aws.put_item = original  # type: ignore[method-assign]
    assert writes == []

    # Two more deposits for bob: 6 - 4 < 3, not due; a third: due, and the snapshot moves to 7.
    payments.deposit("bob", "d4", Decimal("10.00"))
    payments.deposit("bob", "d5", Decimal("10.00"))
    invoke(handlers, PAYMENTS, streams.read(PAYMENTS))
    assert payments_store.load_snapshot(account_id("bob")).version == 4  # type: ignore[union-attr]
    payments.deposit("bob", "d6", Decimal("10.00"))
    invoke(handlers, PAYMENTS, streams.read(PAYMENTS))
    assert payments_store.load_snapshot(account_id("bob")).version == 7  # type: ignore[union-attr]


@contextlib.contextmanager
def json_log_lines(module: ModuleType, level: str) -> Iterator[list[dict[str, Any]]]:
    """The JSON lines the module's Powertools logger writes meanwhile, at ``level`` (LOG_LEVEL on Lambda)."""
    logger = module.logger
    stream, lines = io.StringIO(), []
    previous_stream, previous_level = logger.registered_handler.setStream(stream), logger.log_level
    logger.setLevel(level)
    try:
        yield lines
    finally:
        logger.setLevel(previous_level)
        logger.registered_handler.setStream(previous_stream)
        lines += [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


def test_at_info_only_a_snapshot_written_is_logged_and_the_metrics_stay(
    handlers: dict[str, ModuleType], aws: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Almost every record finds its aggregate not due: that costs no log line at INFO (CloudWatch Logs bills
    ingestion); a snapshot written is one line with the order id as its correlation id, and its metric."""
    orders = OrderService(DynamoDBEventStore(ORDERS, aws))
    streams = Streams(aws)
    order_id = place_and_confirm(orders, "k1")  # 3 events, due at 2
    first_event = streams.read(ORDERS)[:1]
    capsys.readouterr()

    with json_log_lines(handlers[ORDERS], "INFO") as nothing_due:
        assert invoke(handlers, ORDERS, first_event) == {"batchItemFailures": []}
    assert nothing_due == []
    with json_log_lines(handlers[ORDERS], "DEBUG") as when_debugging:
        assert invoke(handlers, ORDERS, first_event) == {"batchItemFailures": []}
    assert [(line["message"], line.get("correlation_id"), line.get("outcome")) for line in when_debugging] == [
        ("snapshot", order_id, "NOT_DUE"), ("batch done", None, None),
    ]

    whole_history = Streams(aws).read(ORDERS)
    with json_log_lines(handlers[ORDERS], "INFO") as written:
        assert invoke(handlers, ORDERS, whole_history) == {"batchItemFailures": []}
    assert [(line["level"], line["message"], line["correlation_id"], line["aggregate_id"], line["outcome"],
             line["snapshot_version"]) for line in written] == [("INFO", "snapshot", order_id, order_id, "WRITTEN", 3)]
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert [document.get("SnapshotsWritten") for document in emitted] == [[1.0]]


def test_a_snapshotter_skips_another_tables_records(handlers: dict[str, ModuleType], aws: Any) -> None:
    payments = PaymentsService(DynamoDBEventStore(PAYMENTS, aws))
    for n in range(3):
        payments.deposit("dan", f"d{n}", Decimal("1.00"))
    assert invoke(handlers, ORDERS, Streams(aws).read(PAYMENTS)) == {"batchItemFailures": []}
    assert DynamoDBEventStore(PAYMENTS, aws).load_snapshot(account_id("dan")) is None


def record(table: str, pk: str, version: int, seq: str, *, kind: str = "event", name: str = "INSERT") -> dict[str, Any]:
    sk = f"{version:010d}"
    return {
        "eventName": name,
        "eventSourceARN": f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}/stream/2026-01-01T00:00:00.000",
        "dynamodb": {
            "Keys": {"pk": {"S": pk}, "sk": {"S": sk}},
            "NewImage": {"pk": {"S": pk}, "sk": {"S": sk}, "kind": {"S": kind}, "correlationid": {"S": "o-1"}},
            "SequenceNumber": seq,
        },
    }


class Failing(InMemoryEventStore):
    failing = False

    def load_snapshot(self, aggregate_id: str) -> Any:
        if self.failing and aggregate_id == "account#broken":
            raise RuntimeError("throttled")
        return super().load_snapshot(aggregate_id)


def test_a_failed_aggregate_reports_its_first_record_and_the_rest_are_snapshotted() -> None:
    store = Failing()
    payments = PaymentsService(store)
    for customer in ("ann", "broken", "zoe"):
        for n in range(3):
            payments.deposit(customer, f"d{n}", Decimal("1.00"))
    store.failing = True
    sources = {PAYMENTS: Source(store, ACCOUNT_SNAPSHOTS, 3)}
    records = [
        record(PAYMENTS, "account#ann", 3, "100"),
        record(PAYMENTS, "account#broken", 2, "101"),
        record(PAYMENTS, "account#zoe", 3, "102"),
        record(PAYMENTS, "account#broken", 3, "103"),
    ]
    result = snapshot_batch(records, sources)
    assert result.batch_item_failures() == {"batchItemFailures": [{"itemIdentifier": "101"}]}
    outcomes = {r.touched.aggregate_id: (r.taken.outcome if r.taken else type(r.error).__name__) for r in result.results}
    assert outcomes == {"account#ann": Outcome.WRITTEN, "account#broken": "RuntimeError", "account#zoe": Outcome.WRITTEN}
    assert [r.touched.version for r in result.results] == [3, 3, 3]  # the newest version seen per aggregate


def test_records_that_are_not_event_inserts_of_a_known_table_are_skipped() -> None:
    store = InMemoryEventStore()
    sources = {PAYMENTS: Source(store, ACCOUNT_SNAPSHOTS, 1)}
    records = [
        record(PAYMENTS, "account#ann", 1, "1", kind="snapshot"),
        record(PAYMENTS, "account#ann", 1, "2", name="REMOVE"),
        record("another-table", "account#ann", 1, "3"),
        {"eventName": "INSERT", "dynamodb": {}},
        {**record(PAYMENTS, "account#ann", 1, "4"), "dynamodb": {**record(PAYMENTS, "x", 1, "4")["dynamodb"],
                                                              "Keys": {"pk": {"S": "x"}, "sk": {"S": "snapshot"}}}},
    ]
    result = snapshot_batch(records, sources)
    assert (result.results, result.skipped) == ([], 5)


def test_table_of_a_stream_arn() -> None:
    assert table_of("arn:aws:dynamodb:eu-west-1:1:table/Orderflow-OrdersTable-1A/stream/2026-01-01T00:00:00.000") == (
        "Orderflow-OrdersTable-1A"
    )
    with pytest.raises(ValueError):
        table_of("arn:aws:sqs:eu-west-1:1:queue")
