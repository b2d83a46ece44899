"""The notifications handler against moto (DynamoDB, SES): one email per event id, whatever SQS delivers.

Exactly once is Powertools idempotency's job (keyed on the CloudEvents id); these tests hold it to the cases
that matter: a duplicate in a later batch or in the same batch, a duplicate that arrives while the first
delivery is still sending, an SES failure, a reused id with other content, and no id at all.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws  # before the handler module: its boto3 clients must be made after moto is imported

os.environ.setdefault("NOTIFICATIONS_TABLE", "notifications")
os.environ.setdefault("IDEMPOTENCY_TABLE", "idempotency")
os.environ.setdefault("SENDER_EMAIL", "orders@example.com")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Orderflow")

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType  # noqa: E402
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord  # noqa: E402
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError  # noqa: E402

from notifications import handler as notifications  # noqa: E402
from shared.events import EventEnvelope, format_version  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

SENDER = os.environ["SENDER_EMAIL"]


@dataclass
class FakeContext:
    function_name: str = "notifications"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:notifications"
    aws_request_id: str = "req-1"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


@pytest.fixture(autouse=True)
def aws() -> Iterator[None]:
    with mock_aws():
        ddb = boto3.client("dynamodb")
        for name, key in ((os.environ["NOTIFICATIONS_TABLE"], "pk"), (os.environ["IDEMPOTENCY_TABLE"], "id")):
            ddb.create_table(
                TableName=name,
                KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        boto3.client("ses").verify_email_identity(EmailAddress=SENDER)
        yield


def outcome_event(
    kind: str = "OrderConfirmed", *, order_id: str | None = None, email: str | None = "ann@example.com",
    event_id: str | None = None,
) -> EventEnvelope:
    order_id = order_id or str(uuid.uuid4())
    data: dict[str, Any] = {"order_id": order_id, "customer_id": "ann", "contact_email": email}
    data |= {"total": "12.50"} if kind == "OrderConfirmed" else {"reason": "PAYMENT_DECLINED"}
    return EventEnvelope(
        id=str(uuid.uuid4()) if event_id is None else event_id, source="orderflow.orders", type=kind,
        time=datetime.now(UTC), subject=order_id, dataversion="1", sequence=format_version(3),
        correlationid=order_id, data=data,
    )


def sqs_record(envelope: EventEnvelope) -> dict[str, Any]:
    body = {"version": "0", "id": str(uuid.uuid4()), "detail-type": envelope.type, "source": envelope.source,
            "account": "123456789012", "time": "2026-11-26T09:00:00Z", "region": "us-east-1", "resources": [],
            "detail": envelope.to_wire()}
    return {"messageId": str(uuid.uuid4()), "receiptHandle": "rh", "body": json.dumps(body), "attributes": {},
            "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:inbox", "awsRegion": "us-east-1"}


def deliver(*envelopes: EventEnvelope) -> list[str]:
    """One SQS batch of these events; the message ids of the records that failed (SQS delivers them again)."""
    records = [sqs_record(e) for e in envelopes]
    response = notifications.handler({"Records": records}, FakeContext())
    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    return [envelopes[i].id for i, r in enumerate(records) if r["messageId"] in failed]


def emails_sent() -> int:
    return int(boto3.client("ses").get_send_quota()["SentLast24Hours"])


def scan(table: str) -> list[dict[str, Any]]:
    from shared.event_store import from_dynamo

    return [from_dynamo(item) for item in boto3.client("dynamodb").scan(TableName=os.environ[table])["Items"]]


def emf(output: str, name: str) -> list[float]:
    """Every value of metric ``name`` in the EMF lines of ``output``."""
    values: list[float] = []
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' in line and f'"{name}"' in line:
            value = json.loads(line)[name]
            values += value if isinstance(value, list) else [value]
    return values


def test_an_outcome_is_emailed_once_and_remembered() -> None:
    event = outcome_event()
    assert deliver(event) == []
    assert emails_sent() == 1
    [record] = scan("NOTIFICATIONS_TABLE")
    assert record["pk"] == f"notification#{event.id}" and record["status"] == "SENT"
    assert (record["to"], record["order_id"], record["type"]) == ("ann@example.com", event.subject, "OrderConfirmed")
    assert record["subject"] == f"Your order {event.subject} is confirmed" and record["message_id"]
    [claim] = scan("IDEMPOTENCY_TABLE")  # Powertools' record: done, and remembered longer than the archive replays
    assert claim["status"] == "COMPLETED"
    assert claim["expiration"] >= time.time() + 30 * 24 * 3600
    assert json.loads(claim["data"])["message_id"] == record["message_id"]


def test_a_duplicate_in_a_later_batch_or_the_same_batch_sends_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    event, other = outcome_event(), outcome_event("OrderCancelled")
    assert deliver(event) == []
    assert deliver(event, other, event) == []
    assert emails_sent() == 2  # one for each event id
    assert sorted(r["pk"] for r in scan("NOTIFICATIONS_TABLE")) == sorted(f"notification#{e.id}" for e in (event, other))
    assert sum(emf(capsys.readouterr().out, "DuplicateNotifications")) == 2


def test_a_duplicate_arriving_while_the_first_is_sending_is_retried_later_and_sends_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two deliveries at once (two Lambda environments): the second finds the first in progress."""
    event = outcome_event()
    ses = notifications.client("ses")
    real_send = ses.send_email
    seen: dict[str, Any] = {}

    def send_while_a_duplicate_arrives(**kwargs: Any) -> Any:
        # the duplicate, as the other environment runs it, with its own batch processor
        with monkeypatch.context() as other_environment:
            other_environment.setattr(notifications, "processor", BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False))
            seen["concurrent"] = deliver(event)
            with pytest.raises(IdempotencyAlreadyInProgressError):
                notifications.record_handler(SQSRecord(sqs_record(event)))
        seen["emails meanwhile"] = emails_sent()
        return real_send(**kwargs)

    monkeypatch.setattr(ses, "send_email", send_while_a_duplicate_arrives)
    assert deliver(event) == []
    assert seen == {"concurrent": [event.id], "emails meanwhile": 0}  # failed, so SQS delivers it again later
    monkeypatch.setattr(ses, "send_email", real_send)
    assert deliver(event) == []  # the redelivery, once the first has finished
    assert emails_sent() == 1
    assert [r["status"] for r in scan("NOTIFICATIONS_TABLE")] == ["SENT"]


def test_when_ses_fails_nothing_is_remembered_and_the_redelivery_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    event = outcome_event()
    ses = notifications.client("ses")
    real_send = ses.send_email

    def down(**kwargs: Any) -> Any:
        raise ses.exceptions.MessageRejected({"Error": {"Code": "MessageRejected", "Message": "down"}}, "SendEmail")

    monkeypatch.setattr(ses, "send_email", down)
    assert deliver(event) == [event.id]
    assert scan("NOTIFICATIONS_TABLE") == [] and scan("IDEMPOTENCY_TABLE") == []
    monkeypatch.setattr(ses, "send_email", real_send)
    assert deliver(event) == []
    assert emails_sent() == 1 and [r["status"] for r in scan("NOTIFICATIONS_TABLE")] == ["SENT"]


def test_a_customer_without_an_address_is_skipped_once() -> None:
    event = outcome_event("OrderCancelled", email=None)
    assert deliver(event) == [] and deliver(event) == []
    assert emails_sent() == 0
    [record] = scan("NOTIFICATIONS_TABLE")
    assert record["status"] == "SKIPPED" and "to" not in record and record["type"] == "OrderCancelled"


def test_the_same_id_with_other_content_is_refused_not_sent() -> None:
    event = outcome_event()
    assert deliver(event) == []
    impostor = outcome_event("OrderCancelled", event_id=event.id)
    assert deliver(impostor) == [impostor.id]  # fails until an operator looks (then the inbox DLQ, alarmed)
    assert emails_sent() == 1
    assert [r["type"] for r in scan("NOTIFICATIONS_TABLE")] == ["OrderConfirmed"]


def test_an_event_without_an_id_is_refused_not_sent() -> None:
    event = outcome_event(event_id="")
    assert deliver(event) == [""]
    assert emails_sent() == 0 and scan("NOTIFICATIONS_TABLE") == []


def test_events_without_an_email_to_send_are_ignored() -> None:
    placed = outcome_event().model_copy(update={"type": "OrderPlaced"})
    assert deliver(placed) == []
    assert emails_sent() == 0 and scan("NOTIFICATIONS_TABLE") == [] and scan("IDEMPOTENCY_TABLE") == []


def test_event_ids_are_remembered_longer_than_the_bus_archive_can_replay() -> None:
    from stacks.event_bus import ARCHIVE_RETENTION

    assert notifications.REMEMBER_SECONDS > ARCHIVE_RETENTION.to_seconds()
