"""Sends the customer an email when their order is confirmed or cancelled (rule -> SQS -> this function).

Exactly once per event id, by Powertools idempotency: ``send`` is an idempotent function keyed on the
CloudEvents ``id`` (the system's idempotency table, IDEMPOTENCY_TABLE). The first delivery records the event
in progress, calls SES and stores what it sent; a later delivery gets that stored result back and sends
nothing; a delivery that overlaps one still in progress fails its record (IdempotencyAlreadyInProgressError),
so SQS delivers it again later, by when the first has finished. If SES fails, the in-progress record is
deleted and the redelivery sends. The honest limit: an invocation that dies after SES accepted the email but
before the result was stored leaves an in-progress record that expires with the invocation's timeout, and
the redelivery after that sends again (no email provider takes an idempotency key).

After sending, the notifications table gets one record per event id: what was sent to whom (status SENT, or
SKIPPED when there is no address). It is what the service "remembers it sent" and what ``orderflow trace``
shows; a redelivery writes the same record again, so a record lost to a failed write comes back.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field

from shared.aws import TRACED_LIBRARIES, client
from shared.bus import envelope_from_eventbridge
from shared.event_store import to_dynamo
from shared.events import rfc3339, utcnow
from shared.settings import EnvSettings, load_settings

from .messages import Email, email_for

logger = Logger(service="notifications")
tracer = Tracer(service="notifications", patch_modules=TRACED_LIBRARIES)
metrics = Metrics(service="notifications")
# A batch whose every record failed is answered as partial failures too, not raised: a duplicate that found its
# first delivery still sending is an ordinary retry, and a Lambda error (alarmed) should mean a crash.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

# How long an event id is remembered: longer than the bus archive keeps events (30 days, stacks/event_bus.py), so
# a replay from the archive sends nothing twice either. tests/unit/test_notifications.py keeps the two in step.
REMEMBER_SECONDS = 31 * 24 * 3600


class NotificationSettings(EnvSettings):
    table: str = Field(alias="NOTIFICATIONS_TABLE", min_length=1)
    idempotency_table: str = Field(alias="IDEMPOTENCY_TABLE", min_length=1)
    sender: str = Field(alias="SENDER_EMAIL", min_length=3)


settings = load_settings(NotificationSettings)


def _already_sent(response: dict[str, Any], idempotent_data: DataRecord) -> dict[str, Any]:
    """Powertools calls this instead of ``send`` when the event id has a stored result: a duplicate delivery."""
    logger.info("already notified: duplicate delivery", extra={"outcome": response.get("status")})
    metrics.add_metric(name="DuplicateNotifications", unit=MetricUnit.Count, value=1)
    return response


idempotency = IdempotencyConfig(
    event_key_jmespath="event_id",
    # The same event id with another order or type is not a duplicate but a bug upstream: refuse it.
    payload_validation_jmespath="[order_id, type]",
    raise_on_no_idempotency_key=True,
    expires_after_seconds=REMEMBER_SECONDS,
    response_hook=_already_sent,
)
persistence = DynamoDBPersistenceLayer(table_name=settings.idempotency_table, boto3_client=client("dynamodb"))


@idempotent_function(data_keyword_argument="notification", config=idempotency, persistence_store=persistence)
def send(notification: dict[str, Any]) -> dict[str, Any]:
    """Email the notification once per ``event_id``; returns what was done (stored as the idempotent result)."""
    sent_at = rfc3339(utcnow())
    if notification["to"] is None:
        logger.warning("no email address: not sent")
        return {"status": "SKIPPED", "why": "the customer has no email address on file", "sent_at": sent_at}
    response = client("ses").send_email(
        Source=settings.sender,
        Destination={"ToAddresses": [notification["to"]]},
        Message={
            "Subject": {"Data": notification["subject"], "Charset": "UTF-8"},
            "Body": {"Text": {"Data": notification["body"], "Charset": "UTF-8"}},
        },
    )
    metrics.add_metric(name="EmailsSent", unit=MetricUnit.Count, value=1)
    logger.info("email sent", extra={"message_id": response["MessageId"]})
    return {"status": "SENT", "to": notification["to"], "message_id": response["MessageId"], "sent_at": sent_at}


def _remember(event_id: str, notification: dict[str, Any], outcome: dict[str, Any]) -> None:
    record = {
        "pk": f"notification#{event_id}",
        "order_id": notification["order_id"],
        "type": notification["type"],
        "subject": notification["subject"],
        **outcome,
    }
    client("dynamodb").put_item(TableName=settings.table, Item=to_dynamo(record))


def record_handler(record: SQSRecord) -> None:
    logger.set_correlation_id(None)  # until this record says which order it is about
    envelope = envelope_from_eventbridge(record.body)
    logger.set_correlation_id(envelope.correlationid)  # the order id
    logger.append_keys(event_id=envelope.id, event_type=envelope.type)
    email: Email | None = email_for(envelope)
    if email is None:
        logger.info("nothing to tell for this event")
        return
    notification = {
        "event_id": envelope.id,
        "order_id": envelope.subject,
        "type": envelope.type,
        "to": email.to,
        "subject": email.subject,
        "body": email.body,
    }
    try:
        outcome = send(notification=notification)
    except IdempotencyAlreadyInProgressError:
        logger.info("another delivery of this event is sending it: this one is retried later")
        raise
    _remember(envelope.id, notification, outcome)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    idempotency.register_lambda_context(context)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
