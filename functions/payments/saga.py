"""The payments service's saga steps, invoked by the order saga state machine (lambda:invoke, Payload = input).

Input:  {"action": "authorize", "orderId", "customerId", "amount": "25.00"}
          -> {"orderId", "authorized": true, "amount": "25.00"}
          raises PaymentDeclined (recorded once on the account) or AuthorizationCancelled (voided first)
        {"action": "capture", "orderId", "customerId"} -> {"orderId", "captured": true}
          raises PaymentNotAuthorized when the order holds no funds. The saga's definition no longer has this
          step (payments capture when OrderConfirmed reaches them: capture_on_confirmed.py); it is answered
          for executions that started before that deploy, which keep the definition they started with.
        {"action": "void", "orderId", "customerId"}    -> {"orderId", "voided": true|false}
          ``voided`` is true when the order held funds that are now released, false when it never held any
          (declined, or unknown: then a tombstone refuses a late authorize). Raises PaymentAlreadyCaptured.
Every step is idempotent on (orderId, action) from the account's own events (see domain.py). The exception's
class name is the Step Functions error name. Bad payloads raise InvalidRequest (a ValueError) and write nothing.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from shared.aws import TRACED_LIBRARIES
from shared.http import validation_errors

from .commands import SAGA_STEPS, AuthorizeStep, CaptureStep, VoidStep
from .domain import PaymentDeclined, money
from .wiring import service, settings

logger = Logger(service="payments")
tracer = Tracer(service="payments", patch_modules=TRACED_LIBRARIES)
metrics = Metrics(service="payments")

__all__ = ["handler", "run_step", "service", "settings"]


class InvalidRequest(ValueError):
    pass


def parse_step(event: Any) -> AuthorizeStep | CaptureStep | VoidStep:
    if not isinstance(event, dict):
        raise InvalidRequest("the payload must be a JSON object")
    action = event.get("action")
    model = SAGA_STEPS.get(action) if isinstance(action, str) else None
    if model is None:
        raise InvalidRequest(f"unknown action {action!r}: expected one of {', '.join(SAGA_STEPS)}")
    try:
        return model.model_validate(event)  # type: ignore[return-value]
    except ValidationError as error:
        problems = "; ".join(f"{e['field']}: {e['problem']}" for e in validation_errors(error))
        raise InvalidRequest(f"invalid {action} payload: {problems}") from None


def run_step(event: Any) -> dict[str, Any]:
    step = parse_step(event)
    match step:
        case AuthorizeStep():
            payment = service().authorize(step.customer_id, step.order_id, Decimal(step.amount))
            return {"orderId": step.order_id, "authorized": True, "amount": money(payment.amount)}
        case CaptureStep():
            service().capture(step.customer_id, step.order_id)
            return {"orderId": step.order_id, "captured": True}
        case VoidStep():
            return {"orderId": step.order_id, "voided": service().void(step.customer_id, step.order_id)}
    raise AssertionError(f"unhandled step {step!r}")  # pragma: no cover


@logger.inject_lambda_context(correlation_id_path="orderId", clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        result = run_step(event)
    except PaymentDeclined:
        metrics.add_metric(name="PaymentsDeclined", unit=MetricUnit.Count, value=1)
        logger.info("payment declined", extra={"action": event.get("action")})
        raise
    logger.info("saga step done", extra={"action": event.get("action"), "result": result})
    return result
