"""POST /orders without an idempotency record: the order id derived from (caller, Idempotency-Key) and the
event store's conditional append of OrderPlaced make placing exactly-once. Against a moto orders table only."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import patch

import boto3
import pytest
from moto import mock_aws  # before the handler module: its boto3 clients must be made after moto is imported

os.environ.setdefault("ORDERS_TABLE", "orders")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Orderflow")

import shared.aws  # noqa: E402
from orders import api  # noqa: E402
from orders.service import order_id_for  # noqa: E402
# One event store class behind both APIs: the payments tests' race helper patches it for these too.
from tests.unit.test_payments_api import FakeContext, proxy_event, twin_runs_before_the_first_append  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

ITEMS = [{"sku": "SKU-1", "quantity": 2}, {"sku": "SKU-2", "quantity": 1}]
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"}


@pytest.fixture(autouse=True)
def tables() -> Iterator[Any]:
    # The handler's service and clients are cached per process: start each test with ones of this mock (another
    # test file in this worker may have cached them, or cleared the client cache under a cached service).
    api.service.cache_clear()
    shared.aws.client.cache_clear()
    with mock_aws():
        client = boto3.client("dynamodb")
        client.create_table(
            TableName=api.settings.orders_table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client
    api.service.cache_clear()
    shared.aws.client.cache_clear()


def place(customer: str = "alice", items: list[dict[str, Any]] = ITEMS, key: str = "k-1") -> tuple[int, dict[str, Any]]:
    event = proxy_event("POST", "/orders", claims={"sub": customer}, body={"items": items}, headers={"Idempotency-Key": key})
    response = api.handler(event, FakeContext())
    return response["statusCode"], json.loads(response["body"])


def order_events(client: Any, order_id: str) -> list[str]:
    items = client.query(
        TableName=api.settings.orders_table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": order_id}},
    )["Items"]
    return [i["type"]["S"] for i in items if i.get("kind", {}).get("S") == "event"]


def record_dynamodb_calls() -> list[str]:
    """The DynamoDB operations the handler's client makes from now on, in order."""
    calls: list[str] = []
    api.client("dynamodb").meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))
    return calls


def test_a_new_order_is_one_conditional_write_and_nothing_else(tables: Any) -> None:
    calls = record_dynamodb_calls()
    status, body = place()
    order_id = order_id_for("alice", "k-1")
    assert (status, body) == (202, {"orderId": order_id, "status": "PENDING"})
    assert [c for c in calls if c in WRITES] == ["PutItem"]  # the conditional append of OrderPlaced
    assert order_events(tables, order_id) == ["OrderPlaced"]
    assert tables.list_tables()["TableNames"] == [api.settings.orders_table]  # no idempotency table needed


def test_a_replay_answers_the_same_and_writes_nothing(tables: Any) -> None:
    first = place()
    calls = record_dynamodb_calls()
    assert place() == first
    assert place(items=[dict(item) for item in ITEMS]) == first  # the same items sent again, the same answer
    assert calls and not any(c in WRITES for c in calls), calls
    assert order_events(tables, first[1]["orderId"]) == ["OrderPlaced"]


def test_the_same_key_with_other_items_is_422_and_writes_nothing(tables: Any) -> None:
    first = place()
    calls = record_dynamodb_calls()
    for items in ([{"sku": "SKU-1", "quantity": 3}], ITEMS[:1], list(reversed(ITEMS))):
        status, body = place(items=items)
        assert status == 422
        assert body == {"message": api.REUSED}
    assert not any(c in WRITES for c in calls), calls
    assert order_events(tables, first[1]["orderId"]) == ["OrderPlaced"]


def test_the_key_is_the_callers_own(tables: Any) -> None:
    alice, bob = place("alice"), place("bob")
    assert alice[0] == bob[0] == 202 and alice[1]["orderId"] != bob[1]["orderId"]


def test_two_identical_requests_racing_place_one_order_and_both_answer_202(tables: Any, monkeypatch: Any) -> None:
    """The twin appends OrderPlaced between this request's load and its append: this request's conditional
    append loses (ConcurrencyError), it loads the order the twin placed and answers as the twin did."""
    answers = twin_runs_before_the_first_append(monkeypatch, place)
    calls = record_dynamodb_calls()
    first = place()
    expected = (202, {"orderId": order_id_for("alice", "k-1"), "status": "PENDING"})
    assert answers == [expected] and first == expected
    assert calls.count("PutItem") == 2  # the twin's, and this request's that lost
    assert order_events(tables, order_id_for("alice", "k-1")) == ["OrderPlaced"]


def test_a_racing_twin_with_other_items_is_422(tables: Any, monkeypatch: Any) -> None:
    answers = twin_runs_before_the_first_append(monkeypatch, place)
    status, body = place(items=[{"sku": "SKU-9", "quantity": 1}])
    assert answers[0][0] == 202 and (status, body) == (422, {"message": api.REUSED})
    assert order_events(tables, order_id_for("alice", "k-1")) == ["OrderPlaced"]


def test_a_replay_long_after_is_still_a_no_op(tables: Any) -> None:
    """Nothing expires (there is no record with a TTL): a year later, after the order moved on, a replay
    answers with the order's id and current status, and the same key with other items is still refused."""
    status, body = place()
    order_id = body["orderId"]
    api.service().cancel(order_id, "OUT_OF_STOCK")
    later = datetime.now(UTC) + timedelta(days=400)
    with patch("time.time", return_value=later.timestamp()):
        calls = record_dynamodb_calls()
        assert place() == (202, {"orderId": order_id, "status": "CANCELLED"})
        assert place(items=[{"sku": "SKU-1", "quantity": 1}]) == (422, {"message": api.REUSED})
    assert not any(c in WRITES for c in calls), calls
    assert order_events(tables, order_id) == ["OrderPlaced", "OrderCancelled"]


def test_orders_placed_is_counted_once_per_order_not_per_request(capsys: Any) -> None:
    place()
    place()  # a replay
    place(key="k-2")
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert sum(sum(m.get("OrdersPlaced", [])) for m in emitted) == 2


def test_an_unusable_email_claim_is_named_as_such_not_as_a_bad_key(tables: Any) -> None:
    event = proxy_event("POST", "/orders", claims={"sub": "alice", "email": "a" * 250 + "@example.com"},
                        body={"items": ITEMS}, headers={"Idempotency-Key": "k-1"})
    response = api.handler(event, FakeContext())
    body = json.loads(response["body"])
    assert response["statusCode"] == 400
    assert "email claim" in body["message"] and "Idempotency-Key" not in body["message"]
    assert tables.scan(TableName=api.settings.orders_table)["Items"] == []
