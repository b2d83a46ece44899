"""Lambda handler of the outbox relay (DynamoDB stream event source, ReportBatchItemFailures)."""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field

from shared.aws import client
from shared.settings import EnvSettings, load_settings

from .logic import relay
from .publisher import EventBridgePublisher

logger = Logger(service="relay")
tracer = Tracer(service="relay")
metrics = Metrics(service="relay")


class RelaySettings(EnvSettings):
    event_bus_name: str = Field(alias="EVENT_BUS_NAME", min_length=1)


settings = load_settings(RelaySettings)


@functools.cache
def publisher() -> EventBridgePublisher:
    return EventBridgePublisher(settings.event_bus_name, client("events"))


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    records = event.get("Records", [])
    result = relay(records, publisher())
    metrics.add_metric(name="EventsPublished", unit=MetricUnit.Count, value=result.published)
    if result.failed_sequence_numbers:
        metrics.add_metric(name="EventsNotPublished", unit=MetricUnit.Count, value=len(result.failed_sequence_numbers))
        logger.error("events not published; Lambda will retry from the first", extra={"errors": result.errors})
    logger.info("relayed", extra={"records": len(records), "published": result.published})
    return result.batch_item_failures()
