"""The order service's saga steps, invoked by the order saga state machine (lambda:invoke, Payload = input).

Each step is idempotent on (order id, step): the aggregate decides nothing when the step already happened,
so Step Functions running a task twice (or an Express workflow running twice) changes nothing.

Input: {"action": "price", "orderId", "lines": [{"sku", "quantity", "unitPrice"}]}
       {"action": "confirm", "orderId"}
       {"action": "cancel", "orderId", "error": "OutOfStock" | "UnknownProduct" | "PaymentDeclined" | ...}
       {"action": "flag", "orderId", "error": "...", "cause": "..."}   (a compensation failed)
Output: {"orderId", "status", "total"}
"""

from __future__ import annotations

import functools
from decimal import Decimal, InvalidOperation
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field

from shared.aws import client
from shared.event_store import DynamoDBEventStore
from shared.settings import EnvSettings, load_settings

from .domain import CancelReason, Order, money
from .service import OrderService

logger = Logger(service="orders")
tracer = Tracer(service="orders")
metrics = Metrics(service="orders")


class SagaSettings(EnvSettings):
    orders_table: str = Field(alias="ORDERS_TABLE", min_length=1)


settings = load_settings(SagaSettings)

# Step Functions error names (the participants' exception class names) -> the reason an order shows.
REASONS = {
    "OutOfStock": CancelReason.OUT_OF_STOCK,
    "UnknownProduct": CancelReason.UNKNOWN_PRODUCT,
    "PaymentDeclined": CancelReason.PAYMENT_DECLINED,
    "ReservationCancelled": CancelReason.OUT_OF_STOCK,
    "AuthorizationCancelled": CancelReason.PAYMENT_DECLINED,
}
# Any other error reached the compensations only after its retries ran out: the order is cancelled, the
# customer is not charged, and the reason says it was the system, not the customer.


class InvalidRequest(ValueError):
    pass


@functools.cache
def service() -> OrderService:
    return OrderService(DynamoDBEventStore(settings.orders_table, client("dynamodb")))


def _priced_lines(lines: Any) -> list[tuple[str, int, Decimal]]:
    if not isinstance(lines, list) or not lines:
        raise InvalidRequest("lines must be a non-empty list")
    try:
        return [(str(l["sku"]), int(l["quantity"]), Decimal(str(l["unitPrice"]))) for l in lines]
    except (KeyError, TypeError, ValueError, InvalidOperation) as error:
        raise InvalidRequest(f"bad priced line: {error}") from None


def run_step(event: dict[str, Any]) -> Order:
    action, order_id = event.get("action"), event.get("orderId")
    if not isinstance(order_id, str) or not order_id:
        raise InvalidRequest("orderId is required")
    match action:
        case "price":
            return service().price(order_id, _priced_lines(event.get("lines")))
        case "confirm":
            return service().confirm(order_id)
        case "cancel":
            error = str(event.get("error") or "")
            if not error:
                raise InvalidRequest("error is required to cancel")
            reason = REASONS.get(error, CancelReason.TECHNICAL_FAILURE)
            return service().cancel(order_id, reason.value)
        case "flag":
            return service().flag_for_attention(order_id, f"compensation failed: {event.get('error', 'unknown error')}")
    raise InvalidRequest(f"unknown action {action!r}")


@logger.inject_lambda_context(correlation_id_path="orderId", clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    order = run_step(event)
    logger.info("saga step done", extra={"action": event.get("action"), "status": order.status.value})
    return {"orderId": order.order_id, "status": order.status.value, "total": money(order.total) if order.total else None}
