"""Notifications (choreography): OrderConfirmed and OrderCancelled on the bus -> inbox queue -> email via SES."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_ses as ses
from constructs import Construct

from stacks.event_inbox import EventInbox
from stacks.lambda_defaults import PythonFunction
from stacks.tables import IDEMPOTENCY_ACTIONS, data_table

ORDERS_SOURCE = "orderflow.orders"
NOTIFIED_EVENTS = ("OrderConfirmed", "OrderCancelled")
# What functions/notifications/handler.py calls: a put records what was sent (exactly once per event id is
# Powertools idempotency's job, on the system's idempotency table). Nothing reads, deletes or scans.
TABLE_ACTIONS = ("dynamodb:PutItem",)


class Notifications(Construct):
    """``Table`` (one record per event id: what was sent to whom), ``Sender`` (the SES email identity mail is
    sent from), ``Handler`` (the function), ``Inbox`` (rule -> queue with DLQ -> ``Handler``).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        bus: events.IEventBus,
        sender_email: str,
        idempotency_table: dynamodb.ITable,
    ) -> None:
        super().__init__(scope, id)
        # What was sent, keyed by event id; nothing reads its changes, so no stream.
        self.table = data_table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
        )
        # SES sends only from a verified identity: deploying this starts the verification (a mail to the
        # address); until someone clicks the link, sends fail and the messages wait in the queue, then the DLQ.
        self.sender = ses.EmailIdentity(self, "Sender", identity=ses.Identity.email(sender_email))

        self.handler = PythonFunction(
            self,
            "Handler",
            handler="notifications.handler.handler",
            description="Notifications: email the customer when an order is confirmed or cancelled (SQS batches)",
            # A batch of 10 is 10 claims, 10 SES calls and 10 updates.
            memory_size=256,
            timeout=Duration.seconds(30),
            environment={
                "NOTIFICATIONS_TABLE": self.table.table_name,
                "IDEMPOTENCY_TABLE": idempotency_table.table_name,
                "SENDER_EMAIL": self.sender.email_identity_name,
            },
        )
        self.table.grant(self.handler.function, *TABLE_ACTIONS)
        idempotency_table.grant(self.handler.function, *IDEMPOTENCY_ACTIONS)
        # On this identity only: the function cannot send as anyone else.
        self.sender.grant(self.handler.function, "ses:SendEmail")

        self.inbox = EventInbox(
            self,
            "Inbox",
            bus=bus,
            source=ORDERS_SOURCE,
            detail_types=NOTIFIED_EVENTS,
            consumer=self.handler,
            description="Order outcomes to the notifications inbox",
        )
