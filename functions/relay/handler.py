"""Lambda handler of the outbox relay (DynamoDB stream event source, ReportBatchItemFailures)."""

from __future__ import annotations

import functools
import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field

from shared.aws import TRACED_LIBRARIES, client
from shared.settings import EnvSettings, load_settings

from .logic import relay
from .publisher import EventBridgePublisher

logger = Logger(service="relay")
tracer = Tracer(service="relay", patch_modules=TRACED_LIBRARIES)
metrics = Metrics(service="relay")


class RelaySettings(EnvSettings):
    event_bus_name: str = Field(alias="EVENT_BUS_NAME", min_length=1)


settings = load_settings(RelaySettings)


@functools.cache
def publisher() -> EventBridgePublisher:
    return EventBridgePublisher(settings.event_bus_name, client("events"))


# Lambda puts the invocation's X-Ray trace context here (Root, Parent, Sampled) before each invocation.
TRACE_ID_VARIABLE = "_X_AMZN_TRACE_ID"


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    records = event.get("Records", [])
    result = relay(records, publisher(), trace_header=os.environ.get(TRACE_ID_VARIABLE))
    metrics.add_metric(name="EventsPublished", unit=MetricUnit.Count, value=result.published)
    for lag in result.publish_lags_ms:  # one value per event: the dashboard shows p99 and maximum
        metrics.add_metric(name="PublishLag", unit=MetricUnit.Milliseconds, value=round(lag, 1))
    if result.failed_sequence_numbers:
        metrics.add_metric(name="EventsNotPublished", unit=MetricUnit.Count, value=len(result.failed_sequence_numbers))
    _log_each(records, result.errors)
    return result.batch_item_failures()


def _log_each(records: list[dict[str, Any]], errors: dict[str, str]) -> None:
    """One compact line per record, its correlation id (the order id) as the line's correlation id.

    A batch carries the events of many orders, so a batch-level line could carry no one order's id; a list of
    ids in a field would not be found by ``filter correlation_id = "<orderId>"`` and would not say what became
    of each event. A published event's line is the only trace in the logs that it reached the bus, so it stays
    at INFO, with no more than the event id and type beside the correlation id; the stream sequence number
    (what Lambda retries from) is on the error line of an event that was not published.
    """
    for record in records:
        change = record.get("dynamodb") or {}
        image = change.get("NewImage")
        logger.set_correlation_id(_string(image, "correlationid"))
        fields = {"event_id": _string(image, "id"), "type": _string(image, "type")}
        error = errors.get(str(change.get("SequenceNumber")))
        if error:
            logger.error("event not published; Lambda will retry from the first failed record",
                         extra={**fields, "sequence_number": change.get("SequenceNumber"), "error": error})
        else:
            logger.info("event published", extra=fields)
    logger.set_correlation_id(None)


def _string(image: Any, name: str) -> str | None:
    """A string attribute of a stream record's image (DynamoDB JSON), None if it is not one."""
    value = image.get(name) if isinstance(image, dict) else None
    text = value.get("S") if isinstance(value, dict) else None
    return text if isinstance(text, str) else None
