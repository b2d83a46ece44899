"""Captures an order's payment once the order is confirmed (rule -> SQS -> this function, partial batch failures).

Choreography after the saga's pivot: the saga authorizes (a hold) and confirms the order; OrderConfirmed on the
bus is the payments service's cue to turn the hold into a payment. Nothing after the pivot is compensated, only
retried: a record that fails (a lost concurrency race, DynamoDB throttling) goes back to the queue and comes
again, five receives at most, then to the inbox's DLQ, which is alarmed.

Exactly once in effect under at-least-once delivery: a capture of an order that is already captured decides
nothing (the account's own events say so, payments.domain.decide_capture), so a redelivered or replayed
OrderConfirmed changes nothing. An order that holds no funds (never authorized, or voided) raises
PaymentNotAuthorized: after a confirmation that is an inconsistency for an operator, so it is not swallowed.

Reads the payments table only; from the event it takes the order and customer ids (payments.commands).
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

from .commands import CapturePayment
from .domain import PaymentError
from .wiring import service

logger = Logger(service="payments")
tracer = Tracer(service="payments", patch_modules=TRACED_LIBRARIES)
metrics = Metrics(service="payments")
processor = BatchProcessor(event_type=EventType.SQS)

ORDERS_SOURCE = "orderflow.orders"


def record_handler(record: SQSRecord) -> None:
    envelope = envelope_from_eventbridge(record.body)
    logger.set_correlation_id(envelope.correlationid)
    if (envelope.source, envelope.type) != (ORDERS_SOURCE, "OrderConfirmed"):
        logger.warning("not an OrderConfirmed event: ignored", extra={"type": envelope.type, "event_id": envelope.id})
        return
    command = CapturePayment.model_validate(envelope.data)
    logger.set_correlation_id(command.order_id)
    try:
        captured = service().capture(command.customer_id, command.order_id)
    except PaymentError as error:
        logger.error("payment not captured", extra={"event_id": envelope.id, "error": type(error).__name__,
                                                     "reason": str(error)})
        metrics.add_metric(name="CapturesRefused", unit=MetricUnit.Count, value=1)
        raise
    if captured:
        logger.info("payment captured", extra={"event_id": envelope.id})
        metrics.add_metric(name="PaymentsCaptured", unit=MetricUnit.Count, value=1)
    else:
        logger.info("payment already captured: duplicate delivery", extra={"event_id": envelope.id})
        metrics.add_metric(name="DuplicateCaptures", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
