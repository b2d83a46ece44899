"""The two consumers of OrderConfirmed after the saga's pivot, as Lambda calls them (SQS batches from the inbox):
payments capture the hold, inventory sells the reserved units. Both exactly once in effect under duplicate
delivery, each reading only its own service's table; a record that cannot be handled is a batch item failure
(retried from the queue, then the DLQ), never a silent drop."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from types import ModuleType
from typing import Any

import aws_xray_sdk.core  # noqa: F401 - imported at collection (its socket; see test_inventory_handlers.py)
import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from moto import mock_aws

import shared.aws
from inventory.domain import Line
from orders.events import OrderConfirmed, PricedLine
from shared.events import wrap

from .test_inventory_service import TABLE as INVENTORY_TABLE
from .test_inventory_service import create_inventory_table, serialized_dynamodb

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

PAYMENTS_TABLE = "payments-test"
MODULES = ("inventory.wiring", "inventory.commit_on_confirmed", "payments.wiring", "payments.capture_on_confirmed")


@dataclass
class Context:
    function_name: str = "consumer"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:consumer"
    aws_request_id: str = "6f1c1e0a-0000-4c55-9d59-3f1b8f0c7a11"


def _forget() -> None:
    """The modules read their table names at import (cold start): fresh for these tests, forgotten after."""
    for name in MODULES:
        sys.modules.pop(name, None)
        package, _, child = name.partition(".")
        if hasattr(sys.modules.get(package), child):
            delattr(sys.modules[package], child)


@dataclass
class Consumers:
    capturer: ModuleType
    committer: ModuleType
    payments: Any  # payments.service.PaymentsService
    inventory: Any  # inventory.service.InventoryService


@pytest.fixture
def consumers(monkeypatch: pytest.MonkeyPatch) -> Iterator[Consumers]:
    monkeypatch.setenv("INVENTORY_TABLE", INVENTORY_TABLE)
    monkeypatch.setenv("PAYMENTS_TABLE", PAYMENTS_TABLE)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Orderflow")
    with mock_aws(), serialized_dynamodb():
        client = boto3.client("dynamodb")
        create_inventory_table(client)
        client.create_table(
            TableName=PAYMENTS_TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        _forget()
        shared.aws.client.cache_clear()
        try:
            capturer = importlib.import_module("payments.capture_on_confirmed")
            committer = importlib.import_module("inventory.commit_on_confirmed")
            payments = importlib.import_module("payments.wiring").service()
            inventory = importlib.import_module("inventory.wiring").service()
            # What the saga did before the pivot: a reservation at the product's price, a hold for its total.
            inventory.set_product("SKU-1", "Widget", Decimal("12.50"), 10)
            inventory.reserve("o-1", [Line(sku="SKU-1", quantity=2)])
            payments.deposit("c-1", "d-1", Decimal("100.00"))
            payments.authorize("c-1", "o-1", Decimal("25.00"))
            yield Consumers(capturer, committer, payments, inventory)
        finally:
            _forget()
            shared.aws.client.cache_clear()


def confirmed(order_id: str = "o-1", customer_id: str = "c-1", *, dataversion: str | None = None) -> dict[str, Any]:
    """OrderConfirmed on the bus, as EventBridge delivers it to the inbox queue."""
    event = OrderConfirmed(order_id=order_id, customer_id=customer_id, total="25.00", contact_email=None,
                           lines=(PricedLine(sku="SKU-1", quantity=2, unit_price="12.50"),))
    envelope = wrap(event, source="orderflow.orders", subject=order_id, version=2).to_wire()
    if dataversion == "1":  # as the former definition wrote it: no lines
        envelope = {**envelope, "dataversion": "1", "data": {k: v for k, v in envelope["data"].items() if k != "lines"}}
    return {"version": "0", "id": "eb-1", "source": "orderflow.orders", "detail-type": "OrderConfirmed",
            "detail": envelope}


def batch(*bodies: Any) -> dict[str, Any]:
    return {"Records": [
        {"messageId": f"m-{n}", "receiptHandle": f"r-{n}", "body": body if isinstance(body, str) else json.dumps(body),
         "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {}, "md5OfBody": "",
         "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:inbox",
         "awsRegion": "us-east-1"}
        for n, body in enumerate(bodies)
    ]}


def failed(module: ModuleType, event: dict[str, Any]) -> list[str]:
    """The message ids the function reports as failed; every one when the whole batch failed (Powertools then
    raises, so Lambda fails the invocation and the queue gives every message back, the same outcome)."""
    try:
        response = module.handler(event, Context())
    except BatchProcessingError:
        return [record["messageId"] for record in event["Records"]]
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


def account_events(c: Consumers) -> list[str]:
    return [event.type for event in c.payments.history("c-1")]


def test_a_confirmed_order_is_captured_and_committed_once_however_often_it_arrives(consumers: Consumers) -> None:
    c = consumers
    event = confirmed()
    assert failed(c.capturer, batch(event, event)) == []  # a duplicate in the same batch
    assert failed(c.capturer, batch(event)) == []  # and redelivered later
    assert failed(c.committer, batch(event, event)) == []
    assert failed(c.committer, batch(event)) == []

    account = c.payments.account("c-1")
    assert (account.balance, account.held) == (Decimal("75.00"), Decimal("0.00"))
    assert account_events(c) == ["FundsDeposited", "PaymentAuthorized", "PaymentCaptured"]
    product = c.inventory.product("SKU-1")
    assert (product.available, product.reserved, product.sold) == (8, 0, 2)
    assert c.inventory.reservation("o-1").status.value == "COMMITTED"


def test_a_confirmation_of_the_former_shape_is_read_too(consumers: Consumers) -> None:
    """OrderConfirmed v1 (no lines) from executions of the former definition: the readers take only the ids."""
    c = consumers
    event = confirmed(dataversion="1")
    assert failed(c.capturer, batch(event)) == []
    assert failed(c.committer, batch(event)) == []
    assert account_events(c)[-1] == "PaymentCaptured" and c.inventory.product("SKU-1").sold == 2


def test_an_order_without_a_hold_or_a_reservation_fails_its_record_and_only_its_record(consumers: Consumers) -> None:
    """After the pivot a missing hold or reservation is an inconsistency for an operator: the record fails (the
    queue retries it, then parks it in the alarmed DLQ); the rest of the batch goes through."""
    c = consumers
    stranger = confirmed(order_id="o-404")
    assert failed(c.capturer, batch(stranger, confirmed())) == ["m-0"]
    assert account_events(c) == ["FundsDeposited", "PaymentAuthorized", "PaymentCaptured"]
    assert failed(c.committer, batch(confirmed(), stranger)) == ["m-1"]
    assert c.inventory.product("SKU-1").sold == 2


def test_a_voided_order_is_never_captured_and_a_released_one_never_committed(consumers: Consumers) -> None:
    c = consumers
    c.payments.void("c-1", "o-1")
    c.inventory.release("o-1")
    assert failed(c.capturer, batch(confirmed())) == ["m-0"]
    assert failed(c.committer, batch(confirmed())) == ["m-0"]
    assert account_events(c) == ["FundsDeposited", "PaymentAuthorized", "AuthorizationVoided"]
    product = c.inventory.product("SKU-1")
    assert (product.available, product.reserved, product.sold) == (10, 0, 0)


@pytest.mark.parametrize(("body", "committable"), [
    ("not json", False),
    ({"detail-type": "OrderConfirmed", "detail": "not an envelope"}, False),
    ({**confirmed(), "detail": {**confirmed()["detail"], "data": {"order_id": 7, "customer_id": "c-1"}}}, False),
    # inventory reads only the order id (a tolerant reader); payments need the customer too
    ({**confirmed(), "detail": {**confirmed()["detail"], "data": {"order_id": "o-1"}}}, True),
])
def test_a_malformed_record_fails_and_writes_nothing(consumers: Consumers, body: Any, committable: bool) -> None:
    c = consumers
    assert failed(c.capturer, batch(body)) == ["m-0"]
    assert account_events(c) == ["FundsDeposited", "PaymentAuthorized"]
    assert failed(c.committer, batch(body)) == ([] if committable else ["m-0"])
    assert c.inventory.reservation("o-1").status.value == ("COMMITTED" if committable else "RESERVED")


def test_other_events_are_ignored(consumers: Consumers) -> None:
    c = consumers
    other = {**confirmed(), "detail-type": "OrderCancelled",
             "detail": {**confirmed()["detail"], "type": "OrderCancelled"}}
    assert failed(c.capturer, batch(other)) == []
    assert failed(c.committer, batch(other)) == []
    assert account_events(c) == ["FundsDeposited", "PaymentAuthorized"]
    assert c.inventory.reservation("o-1").status.value == "RESERVED"
