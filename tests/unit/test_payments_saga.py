"""The payments saga handler, invoked with the state machine's payloads, against a moto table made by hand."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import boto3
import pytest
from moto import mock_aws  # before the handler module: its boto3 clients must be made after moto is imported

os.environ.setdefault("PAYMENTS_TABLE", "payments")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Orderflow")

from payments import saga  # noqa: E402
from payments.domain import (  # noqa: E402
    AuthorizationCancelled,
    PaymentAlreadyCaptured,
    PaymentDeclined,
    PaymentNotAuthorized,
)

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


@dataclass
class FakeContext:
    function_name: str = "payments-saga"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:payments-saga"
    aws_request_id: str = "req-1"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


@pytest.fixture(autouse=True)
def table() -> Iterator[None]:
    with mock_aws():
        boto3.client("dynamodb").create_table(
            TableName=saga.settings.payments_table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        saga.service().deposit("c-1", "d-1", Decimal("100.00"))
        yield


def step(action: str, order_id: str = "o-1", **fields: Any) -> dict[str, Any]:
    return saga.handler({"action": action, "orderId": order_id, "customerId": "c-1", **fields}, FakeContext())


def held() -> tuple[str, str]:
    account = saga.service().account("c-1")
    return str(account.balance), str(account.held)


def test_authorize_then_capture() -> None:
    assert step("authorize", amount="25.00") == {"orderId": "o-1", "authorized": True, "amount": "25.00"}
    assert step("authorize", amount="25.00") == {"orderId": "o-1", "authorized": True, "amount": "25.00"}
    assert held() == ("100.00", "25.00")
    assert step("capture") == {"orderId": "o-1", "captured": True}
    assert step("capture") == {"orderId": "o-1", "captured": True}
    assert held() == ("75.00", "0.00")
    with pytest.raises(PaymentAlreadyCaptured):
        step("void")


def test_logs_carry_the_order_id_as_correlation_id() -> None:
    stream = io.StringIO()
    previous = saga.logger.registered_handler.setStream(stream)  # type: ignore[attr-defined]
    try:
        step("authorize", order_id="o-42", amount="1.00")
    finally:
        saga.logger.registered_handler.setStream(previous)  # type: ignore[attr-defined]
    logs = [json.loads(line) for line in stream.getvalue().splitlines()]
    done = [entry for entry in logs if entry.get("message") == "saga step done"]
    assert done and done[0]["correlation_id"] == "o-42" and done[0]["service"] == "payments"


def test_authorize_then_void() -> None:
    step("authorize", amount="25.00")
    assert step("void") == {"orderId": "o-1", "voided": True}
    assert step("void") == {"orderId": "o-1", "voided": True}
    assert held() == ("100.00", "0.00")
    with pytest.raises(PaymentNotAuthorized):
        step("capture")


def test_a_declined_payment_raises_by_name_every_time() -> None:
    for _ in range(2):
        with pytest.raises(PaymentDeclined) as raised:
            step("authorize", amount="100.01")
        assert type(raised.value).__name__ == "PaymentDeclined"  # the Step Functions error name
    assert [e.type for e in saga.service().history("c-1")] == ["FundsDeposited", "PaymentDeclined"]
    assert step("void") == {"orderId": "o-1", "voided": False}


def test_a_void_before_the_authorize_refuses_it() -> None:
    assert step("void") == {"orderId": "o-1", "voided": False}
    with pytest.raises(AuthorizationCancelled):
        step("authorize", amount="1.00")
    assert held() == ("100.00", "0.00")


@pytest.mark.parametrize(
    "payload",
    [
        {"action": "authorize", "orderId": "o-1", "customerId": "c-1"},
        {"action": "authorize", "orderId": "o-1", "customerId": "c-1", "amount": 25.0},
        {"action": "authorize", "orderId": "o-1", "customerId": "c-1", "amount": "25.001"},
        {"action": "authorize", "orderId": "o-1", "customerId": "c-1", "amount": "0.00"},
        {"action": "authorize", "orderId": "o-1", "customerId": "c-1", "amount": "-1"},
        {"action": "capture", "orderId": "", "customerId": "c-1"},
        {"action": "capture", "orderId": "o-1"},
        {"action": "void", "orderId": "o-1", "customerId": "has space"},
        {"action": "refund", "orderId": "o-1", "customerId": "c-1"},
        {"orderId": "o-1", "customerId": "c-1"},
    ],
)
def test_invalid_payloads_raise_invalid_request_and_write_nothing(payload: dict[str, Any]) -> None:
    with pytest.raises(saga.InvalidRequest) as raised:
        saga.handler(payload, FakeContext())
    assert isinstance(raised.value, ValueError) and str(raised.value)
    assert len(saga.service().history("c-1")) == 1


def test_a_payload_that_is_not_an_object_is_invalid() -> None:
    with pytest.raises(saga.InvalidRequest):
        saga.handler(["authorize"], FakeContext())  # type: ignore[arg-type]
