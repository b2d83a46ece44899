"""The inventory's saga steps, invoked by the order saga (lambda:invoke, Payload = the input below).

    {"action": "reserve", "orderId", "lines": [{"sku", "quantity"}]}
        -> {"orderId", "lines": [{"sku", "quantity", "unitPrice"}], "total"}
        raises OutOfStock / UnknownProduct / ReservationCancelled (all lines or none are reserved)
    {"action": "release", "orderId"} -> {"orderId", "released": true | false}
    {"action": "commit", "orderId"}  -> {"orderId", "committed": true | false}
        no longer a step of the saga's definition (inventory commits when OrderConfirmed reaches it:
        commit_on_confirmed.py); answered for executions that started before that deploy, which keep the
        definition they started with.

An exception's class name is the Step Functions error name. Every step is idempotent on the order id; a
malformed payload raises InvalidRequest (a ValueError) before anything is written.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.aws import TRACED_LIBRARIES

from .commands import Commit, Release, Reserve, parse_saga_step
from .domain import InventoryError
from .queries import reservation_view
from .service import InventoryService
from .wiring import service

logger = Logger(service="inventory")
tracer = Tracer(service="inventory", patch_modules=TRACED_LIBRARIES)
metrics = Metrics(service="inventory")


def run_step(inventory: InventoryService, payload: Any) -> dict[str, Any]:
    step = parse_saga_step(payload)
    match step:
        case Reserve():
            return reservation_view(inventory.reserve(step.order_id, step.domain_lines()))
        case Release():
            return {"orderId": step.order_id, "released": inventory.release(step.order_id)}
        case Commit():
            return {"orderId": step.order_id, "committed": inventory.commit(step.order_id)}


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    fields = event if isinstance(event, dict) else {}
    logger.set_correlation_id(fields["orderId"] if isinstance(fields.get("orderId"), str) else None)
    if isinstance(fields.get("action"), str):
        logger.append_keys(action=fields["action"])
    try:
        result = run_step(service(), event)
    except InventoryError as error:
        logger.info("saga step refused", extra={"error": type(error).__name__, "reason": str(error)})
        metrics.add_metric(name=f"Inventory{type(error).__name__}", unit=MetricUnit.Count, value=1)
        raise
    metrics.add_metric(name="InventorySagaSteps", unit=MetricUnit.Count, value=1)
    logger.info("saga step done", extra={"result": result})
    return result
