"""Sells an order's reserved units once the order is confirmed (rule -> SQS -> this function, partial batches).

Choreography after the saga's pivot: the saga reserved the stock and confirmed the order; OrderConfirmed on the
bus is the inventory's cue to move the reserved units to sold. Nothing after the pivot is compensated, only
retried: a record that fails (other writers kept winning, DynamoDB throttling) goes back to the queue and comes
again, five receives at most, then to the inbox's DLQ, which is alarmed.

Exactly once in effect under at-least-once delivery: the reservation is the idempotency record (a commit of a
COMMITTED reservation decides nothing, inventory.domain.decide_commit), so a redelivered or replayed
OrderConfirmed changes nothing. A reservation that is missing or released raises ReservationNotFound /
InvalidTransition: after a confirmation that is an inconsistency for an operator, so it is not swallowed.

Reads the inventory table only; from the event it takes the order id (inventory.commands.CommitOrder).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.aws import TRACED_LIBRARIES
from shared.bus import envelope_from_eventbridge

from .commands import CommitOrder
from .domain import InventoryError
from .wiring import service

logger = Logger(service="inventory")
tracer = Tracer(service="inventory", patch_modules=TRACED_LIBRARIES)
metrics = Metrics(service="inventory")
processor = BatchProcessor(event_type=EventType.SQS)

ORDERS_SOURCE = "orderflow.orders"


def record_handler(record: SQSRecord) -> None:
    envelope = envelope_from_eventbridge(record.body)
    logger.set_correlation_id(envelope.correlationid)
    if (envelope.source, envelope.type) != (ORDERS_SOURCE, "OrderConfirmed"):
        logger.warning("not an OrderConfirmed event: ignored", extra={"type": envelope.type, "event_id": envelope.id})
        return
    command = CommitOrder.model_validate(envelope.data)
    logger.set_correlation_id(command.order_id)
    try:
        committed = service().commit(command.order_id)
    except InventoryError as error:
        logger.error("reservation not committed", extra={"event_id": envelope.id, "error": type(error).__name__,
                                                          "reason": str(error)})
        metrics.add_metric(name="CommitsRefused", unit=MetricUnit.Count, value=1)
        raise
    if committed:
        logger.info("reservation committed", extra={"event_id": envelope.id})
        metrics.add_metric(name="ReservationsCommitted", unit=MetricUnit.Count, value=1)
    else:
        logger.info("reservation already committed: duplicate delivery", extra={"event_id": envelope.id})
        metrics.add_metric(name="DuplicateCommits", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
