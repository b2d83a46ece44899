"""The order service's saga steps, invoked by the order saga state machine (lambda:invoke, Payload = input).

Each step is idempotent on (order id, step): the aggregate decides nothing when the step already happened,
so Step Functions running a task twice (or an Express workflow running twice) changes nothing.

Input: {"action": "confirm", "orderId", "lines": [{"sku", "quantity", "unitPrice"}], "total": "25.00"}
           the pivot: the lines at the prices inventory reserved them at, whose total payments authorized
       {"action": "cancel", "orderId", "error": "OutOfStock" | "UnknownProduct" | "PaymentDeclined" | ...}
           raises AlreadyConfirmed when the order passed the pivot (the saga then compensates nothing)
       {"action": "flag", "orderId", "error": "..."}   (a compensation failed)
       {"action": "price", "orderId", "lines"} and {"action": "confirm", "orderId"} (no prices) are the former
           definition's RecordPrices and ConfirmOrder: executions started before a deploy keep the definition
           they started with, so their steps are still answered.
Output: {"orderId", "status", "total"}

Outcomes are counted once per order (dimension service=orders): ``OrdersConfirmed``, ``OrdersCancelled`` (and
``OrdersCancelled`` with the dimension ``reason``), ``CompensationsFailed`` (an order flagged NEEDS_ATTENTION).
They are counted from the events a step appended, so a repeated step or a duplicate execution counts nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer, single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field

from shared.aws import TRACED_LIBRARIES, client
from shared.event_store import DynamoDBEventStore
from shared.events import DomainEvent
from shared.settings import EnvSettings, load_settings

from .domain import CancelReason, Order, Priced, money
from .events import OrderCancelled, OrderConfirmed, OrderNeedsAttention
from .service import OrderService

logger = Logger(service="orders")
tracer = Tracer(service="orders", patch_modules=TRACED_LIBRARIES)
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


def count_outcomes(events: Sequence[DomainEvent]) -> None:
    """The business metrics of what a step appended (the service calls this only after a committed append)."""
    for event in events:
        match event:
            case OrderConfirmed():
                metrics.add_metric(name="OrdersConfirmed", unit=MetricUnit.Count, value=1)
            case OrderCancelled():
                metrics.add_metric(name="OrdersCancelled", unit=MetricUnit.Count, value=1)
                with single_metric(
                    name="OrdersCancelled", unit=MetricUnit.Count, value=1, default_dimensions={"service": "orders"}
                ) as metric:
                    metric.add_dimension(name="reason", value=event.reason)
            case OrderNeedsAttention():
                metrics.add_metric(name="CompensationsFailed", unit=MetricUnit.Count, value=1)


@functools.cache
def service() -> OrderService:
    return OrderService(DynamoDBEventStore(settings.orders_table, client("dynamodb")), on_appended=count_outcomes)


def _decimal(value: Any, what: str) -> Decimal:
    if not isinstance(value, str):
        raise InvalidRequest(f"{what} must be a decimal string, not {type(value).__name__}")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise InvalidRequest(f"{what} {value!r} is not a decimal amount") from None
    if not amount.is_finite() or amount <= 0:
        raise InvalidRequest(f"{what} must be above 0, not {value!r}")
    return amount


def _priced_lines(lines: Any) -> Priced:
    if not isinstance(lines, list) or not lines:
        raise InvalidRequest("lines must be a non-empty list")
    try:
        return [(str(l["sku"]), int(l["quantity"]), _decimal(l["unitPrice"], "unitPrice")) for l in lines]
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidRequest(f"bad priced line: {error}") from None


def run_step(event: dict[str, Any]) -> Order:
    action, order_id = event.get("action"), event.get("orderId")
    if not isinstance(order_id, str) or not order_id:
        raise InvalidRequest("orderId is required")
    match action:
        case "confirm":
            if "lines" not in event:  # the former definition priced the order in a step of its own
                return service().confirm(order_id)
            return service().confirm(
                order_id, _priced_lines(event.get("lines")), _decimal(event.get("total"), "total")
            )
        case "price":
            return service().price(order_id, _priced_lines(event.get("lines")))
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
