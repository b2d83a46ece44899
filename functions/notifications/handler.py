"""Sends the customer an email when their order is confirmed or cancelled (rule -> SQS -> this function).

Exactly once per event id: a conditional put of the notification record claims the event before SES is
called, and the record is marked SENT with SES's message id after. A redelivered event whose record is SENT
(or SKIPPED) sends nothing. The record is also what the service "remembers it sent" (``GET`` it by event id).
A claim left SENDING by a crash is taken over after CLAIM_SECONDS: that one case can send twice, which is
the honest limit of any email provider without an idempotency key.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field

from shared.aws import client
from shared.bus import envelope_from_eventbridge
from shared.event_store import to_dynamo
from shared.events import rfc3339, utcnow
from shared.settings import EnvSettings, load_settings

from .messages import email_for

logger = Logger(service="notifications")
tracer = Tracer(service="notifications")
metrics = Metrics(service="notifications")
processor = BatchProcessor(event_type=EventType.SQS)

CLAIM_SECONDS = 120


class NotificationSettings(EnvSettings):
    table: str = Field(alias="NOTIFICATIONS_TABLE", min_length=1)
    sender: str = Field(alias="SENDER_EMAIL", min_length=3)


settings = load_settings(NotificationSettings)


def _claim(event_id: str, order_id: str, now: int) -> bool:
    """True if this invocation may send for the event; False if it was handled already (or is in flight)."""
    ddb = client("dynamodb")
    try:
        ddb.put_item(
            TableName=settings.table,
            Item=to_dynamo({"pk": f"notification#{event_id}", "status": "SENDING", "order_id": order_id, "claimed_until": now + CLAIM_SECONDS}),
            ConditionExpression="attribute_not_exists(pk) OR (#s = :sending AND claimed_until < :now)",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues=to_dynamo({":sending": "SENDING", ":now": now}),
        )
    except ddb.exceptions.ConditionalCheckFailedException:
        return False
    return True


def _record(event_id: str, **fields: Any) -> None:
    names = {f"#{k}": k for k in fields}
    client("dynamodb").update_item(
        TableName=settings.table,
        Key=to_dynamo({"pk": f"notification#{event_id}"}),
        UpdateExpression="SET " + ", ".join(f"#{k} = :{k}" for k in fields) + " REMOVE claimed_until",
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=to_dynamo({f":{k}": v for k, v in fields.items()}),
    )


def record_handler(record: SQSRecord) -> None:
    envelope = envelope_from_eventbridge(record.body)
    logger.set_correlation_id(envelope.correlationid)
    email = email_for(envelope)
    if email is None:
        logger.info("nothing to tell for this event", extra={"type": envelope.type, "event_id": envelope.id})
        return
    if not _claim(envelope.id, envelope.subject, int(time.time())):
        logger.info("already notified: duplicate delivery", extra={"event_id": envelope.id})
        metrics.add_metric(name="DuplicateNotifications", unit=MetricUnit.Count, value=1)
        return
    common = {"type": envelope.type, "subject": email.subject, "sent_at": rfc3339(utcnow())}
    if email.to is None:
        _record(envelope.id, status="SKIPPED", why="the customer has no email address on file", **common)
        logger.warning("no email address: not sent", extra={"event_id": envelope.id})
        return
    response = client("ses").send_email(
        Source=settings.sender,
        Destination={"ToAddresses": [email.to]},
        Message={"Subject": {"Data": email.subject, "Charset": "UTF-8"}, "Body": {"Text": {"Data": email.body, "Charset": "UTF-8"}}},
    )
    _record(envelope.id, status="SENT", to=email.to, message_id=response["MessageId"], **common)
    metrics.add_metric(name="EmailsSent", unit=MetricUnit.Count, value=1)
    logger.info("email sent", extra={"event_id": envelope.id, "message_id": response["MessageId"]})


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
