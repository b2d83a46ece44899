"""The orders saga handler with the state machine's payloads, against a moto table made by hand: the pivot, the
arbiter's answers, and the business metrics the dashboard reads (counted once per order, never per repeat)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws  # before the handler module: its boto3 clients must be made after moto is imported

os.environ.setdefault("ORDERS_TABLE", "orders")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Orderflow")

from orders import saga  # noqa: E402
from orders.commands import PlaceOrder, PlaceOrderRequest  # noqa: E402
from orders.domain import AlreadyConfirmed, InvalidTransition  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

LINES = [{"sku": "SKU-1", "quantity": 2, "unitPrice": "12.50"}]


@dataclass
class FakeContext:
    function_name: str = "orders-saga"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:orders-saga"
    aws_request_id: str = "req-1"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


@pytest.fixture(autouse=True)
def order_id() -> Iterator[str]:
    with mock_aws():
        boto3.client("dynamodb").create_table(
            TableName=saga.settings.orders_table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        saga.service.cache_clear()  # a client of this mock
        body = PlaceOrderRequest.model_validate({"items": [{"sku": "SKU-1", "quantity": 2}]})
        yield saga.service().place(PlaceOrder(customer_id="c-1", idempotency_key="k-1", items=body.items)).order_id
        saga.service.cache_clear()


def step(action: str, order_id: str, **fields: Any) -> dict[str, Any]:
    return saga.handler({"action": action, "orderId": order_id, **fields}, FakeContext())


def metrics(output: str) -> list[tuple[str, dict[str, str]]]:
    """(metric name, dimensions) of every EMF metric in ``output``."""
    found = []
    for line in output.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        document = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == "Orderflow"
            dimensions = {name: document[name] for names in directive["Dimensions"] for name in names}
            found += [(metric["Name"], dimensions) for metric in directive["Metrics"]]
    return found


def test_the_pivot_confirms_once_and_counts_one_confirmed_order(order_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert step("confirm", order_id, lines=LINES, total="25.00") == {
        "orderId": order_id, "status": "CONFIRMED", "total": "25.00"}
    assert step("confirm", order_id, lines=LINES, total="25.00")["status"] == "CONFIRMED"  # a repeated task
    assert metrics(capsys.readouterr().out).count(("OrdersConfirmed", {"service": "orders"})) == 1
    with pytest.raises(AlreadyConfirmed):  # CancelOrder after a pivot that committed: compensate nothing
        step("cancel", order_id, error="States.Timeout")
    assert [event.type for event in saga.service().history(order_id)] == ["OrderPlaced", "OrderConfirmed"]


def test_a_cancel_counts_the_order_and_its_reason_once(order_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    for _ in range(2):
        assert step("cancel", order_id, error="PaymentDeclined")["status"] == "CANCELLED"
    emitted = metrics(capsys.readouterr().out)
    assert emitted.count(("OrdersCancelled", {"service": "orders"})) == 1
    assert emitted.count(("OrdersCancelled", {"service": "orders", "reason": "PAYMENT_DECLINED"})) == 1
    with pytest.raises(InvalidTransition):  # a duplicate execution's late pivot
        step("confirm", order_id, lines=LINES, total="25.00")


@pytest.mark.parametrize(("error", "reason"), [
    ("OutOfStock", "OUT_OF_STOCK"), ("UnknownProduct", "UNKNOWN_PRODUCT"), ("ReservationCancelled", "OUT_OF_STOCK"),
    ("AuthorizationCancelled", "PAYMENT_DECLINED"), ("States.Timeout", "TECHNICAL_FAILURE"),
    ("InvalidTransition", "TECHNICAL_FAILURE"),
])
def test_the_cancel_reason_comes_from_the_error_the_saga_caught(order_id: str, error: str, reason: str) -> None:
    step("cancel", order_id, error=error)
    assert saga.service().load(order_id).reason == reason  # type: ignore[union-attr]


def test_a_failed_compensation_flags_the_order_and_counts_once(order_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    step("cancel", order_id, error="PaymentDeclined")
    capsys.readouterr()
    for _ in range(2):
        assert step("flag", order_id, error="States.TaskFailed")["status"] == "NEEDS_ATTENTION"
    assert metrics(capsys.readouterr().out).count(("CompensationsFailed", {"service": "orders"})) == 1
    assert saga.service().load(order_id).reason == "compensation failed: States.TaskFailed"  # type: ignore[union-attr]


@pytest.mark.parametrize("payload", [
    {"action": "confirm", "lines": LINES, "total": "25.00"},  # no orderId
    {"action": "confirm", "orderId": "o", "lines": [], "total": "25.00"},
    {"action": "confirm", "orderId": "o", "lines": [{"sku": "SKU-1", "quantity": 2}], "total": "25.00"},
    {"action": "confirm", "orderId": "o", "lines": [{"sku": "SKU-1", "quantity": 2, "unitPrice": 12.5}], "total": "25.00"},
    {"action": "confirm", "orderId": "o", "lines": LINES, "total": "NaN"},
    {"action": "confirm", "orderId": "o", "lines": LINES, "total": "-25.00"},
    {"action": "confirm", "orderId": "o", "lines": LINES},
    {"action": "cancel", "orderId": "o"},
    {"action": "capture", "orderId": "o"},
])
def test_a_malformed_step_is_refused_before_anything_is_written(order_id: str, payload: dict[str, Any]) -> None:
    if "orderId" in payload:
        payload = {**payload, "orderId": order_id}
    with pytest.raises(saga.InvalidRequest):
        saga.handler(payload, FakeContext())
    assert [event.type for event in saga.service().history(order_id)] == ["OrderPlaced"]
