"""The projector: order events on the bus (rule -> SQS with a DLQ -> this function) -> the order list.

An event is folded in only if it is the next version of its order (projections/views.py). A duplicate is
acknowledged; an event that is ahead (its predecessor has not arrived) is reported as a batch item failure, so SQS
delivers it again after the visibility timeout, by when the missing one has arrived. Records of a batch are
handled oldest version first per order, so a batch that holds both sides of a gap closes it at once.
"""

from __future__ import annotations

import functools
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

from .service import Projector
from .store import ProjectionStore
from .views import OutOfOrder

logger = Logger(service="projections")
tracer = Tracer(service="projections", patch_modules=TRACED_LIBRARIES)
metrics = Metrics(service="projections")
processor = BatchProcessor(event_type=EventType.SQS)


class ProjectorSettings(EnvSettings):
    table: str = Field(alias="PROJECTIONS_TABLE", min_length=1)


settings = load_settings(ProjectorSettings)


@functools.cache
def projector() -> Projector:
    return Projector(ProjectionStore(settings.table, client("dynamodb")))


def record_handler(record: SQSRecord) -> None:
    envelope = envelope_from_eventbridge(record.body)
    # The correlation id of an order event is its order id (its subject): one line per event, with no copy of it.
    logger.set_correlation_id(envelope.correlationid)
    logger.append_keys(event_id=envelope.id, event_type=envelope.type, version=envelope.version)
    try:
        outcomes = projector().apply(envelope)
    except OutOfOrder as gap:
        logger.info("event ahead of the view: it comes back later", extra={"why": str(gap)})
        metrics.add_metric(name="ProjectionGaps", unit=MetricUnit.Count, value=1)
        raise
    logger.info("event projected", extra={"outcomes": {str(g): o.value for g, o in outcomes.items()}})
    metrics.add_metric(name="EventsProjected", unit=MetricUnit.Count, value=1)


def _order_and_version(record: dict[str, Any]) -> tuple[str, str]:
    try:
        detail = json.loads(record["body"])["detail"]
        return str(detail["subject"]), str(detail["sequence"])
    except (KeyError, TypeError, ValueError):
        return "", ""  # the record handler says what is wrong with it


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # The pointer as it is now, once per invocation: the rebuild counts on no write of this invocation using an
    # older one (projections/store.py).
    projector().refresh()
    records = sorted(event.get("Records") or [], key=_order_and_version)
    return process_partial_response(
        event={**event, "Records": records}, record_handler=record_handler, processor=processor, context=context
    )
