"""Starts the order saga when OrderPlaced reaches the bus (rule -> SQS -> this function, partial batch failures).

The execution is named by the order id, always asynchronously (StartExecution; never StartSyncExecution, which
an SQS consumer has no use for and moto does not implement). What a duplicate OrderPlaced (EventBridge and SQS
deliver at least once) does depends on the workflow type:

- Standard: Step Functions refuses a second execution of the same name (``ExecutionAlreadyExists``), so a
  duplicate starts nothing: counted as ``DuplicateSagaStarts``.
- Express: StartExecution is not idempotent, a duplicate starts a second execution of the same order. Nothing
  here relies on the name for exactness: every step is idempotent on (order id, step) and the order aggregate
  decides confirm-or-cancel once, so the second execution changes nothing (tests/e2e/test_order_saga.py).
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field

from shared.aws import TRACED_LIBRARIES, client
from shared.bus import envelope_from_eventbridge
from shared.settings import EnvSettings, load_settings

from .events import CATALOG, OrderPlaced

logger = Logger(service="orders")
tracer = Tracer(service="orders", patch_modules=TRACED_LIBRARIES)
metrics = Metrics(service="orders")
processor = BatchProcessor(event_type=EventType.SQS)


class StarterSettings(EnvSettings):
    state_machine_arn: str = Field(alias="ORDER_SAGA_ARN", min_length=1)


settings = load_settings(StarterSettings)


def saga_input(placed: OrderPlaced) -> dict[str, Any]:
    return {
        "orderId": placed.order_id,
        "customerId": placed.customer_id,
        "lines": [{"sku": line.sku, "quantity": line.quantity} for line in placed.lines],
    }


def start_saga(placed: OrderPlaced) -> bool:
    """Start the saga for this order; False when a Standard execution of it was already started."""
    sfn = client("stepfunctions")
    try:
        sfn.start_execution(stateMachineArn=settings.state_machine_arn, name=placed.order_id, input=json.dumps(saga_input(placed)))
    except sfn.exceptions.ExecutionAlreadyExists:
        return False
    return True


def record_handler(record: SQSRecord) -> None:
    envelope = envelope_from_eventbridge(record.body)
    logger.set_correlation_id(envelope.correlationid)
    placed = CATALOG.decode(envelope)
    if not isinstance(placed, OrderPlaced):
        logger.warning("not an OrderPlaced event: ignored", extra={"type": envelope.type, "event_id": envelope.id})
        return
    started = start_saga(placed)
    logger.info("saga started" if started else "saga already started", extra={"event_id": envelope.id})
    metrics.add_metric(name="SagasStarted" if started else "DuplicateSagaStarts", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
