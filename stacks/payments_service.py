"""The payments service: event-sourced customer accounts (payments table), its API and saga functions."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from constructs import Construct

from stacks.api import Route
from stacks.event_inbox import EventInbox
from stacks.lambda_defaults import SAGA_STEP_TIMEOUT, PythonFunction
from stacks.tables import EVENT_STORE_ACTIONS, outbox_table

ORDERS_SOURCE = "orderflow.orders"


class PaymentsService(Construct):
    """``Table`` (event store of the accounts, its stream is the outbox), ``Api`` (deposits and balances),
    ``Saga`` (the order saga's payment steps: authorize, void), ``Capturer`` and its ``CaptureInbox``
    (OrderConfirmed on ``bus`` -> queue with DLQ -> ``Capturer``: the hold becomes a payment after the saga's
    pivot, by choreography).

    Deposits are exactly-once by their conditional append (the deposit id is derived from the customer and the
    Idempotency-Key), so no function here needs an idempotency table.
    """

    routes = (
        Route("POST", "/admin/accounts/{customerId}/deposits"),
        Route("GET", "/admin/accounts/{customerId}"),
        Route("GET", "/admin/accounts/{customerId}/history"),
        Route("GET", "/accounts/me"),
    )

    def __init__(self, scope: Construct, id: str, *, bus: events.IEventBus) -> None:
        super().__init__(scope, id)
        self.table = outbox_table(self, "Table")

        self.api = PythonFunction(
            self,
            "Api",
            handler="payments.api.handler",
            description="Payments API: deposits (admins) and account balances (API Gateway REST proxy)",
            memory_size=512,
            timeout=Duration.seconds(10),
            environment={"PAYMENTS_TABLE": self.table.table_name},
        )
        self.table.grant(self.api.function, *EVENT_STORE_ACTIONS)

        self.saga = PythonFunction(
            self,
            "Saga",
            handler="payments.saga.handler",
            description="Order saga steps of the payments service: authorize and void payments",
            memory_size=256,
            timeout=SAGA_STEP_TIMEOUT,
            environment={"PAYMENTS_TABLE": self.table.table_name},
        )
        self.table.grant(self.saga.function, *EVENT_STORE_ACTIONS)

        self.capturer = PythonFunction(
            self,
            "Capturer",
            handler="payments.capture_on_confirmed.handler",
            description="Payments: capture an order's payment when OrderConfirmed arrives (SQS batches)",
            # A batch of 10 is at most 10 x (an account load + one conditional append).
            memory_size=256,
            timeout=Duration.seconds(30),
            environment={"PAYMENTS_TABLE": self.table.table_name},
        )
        self.table.grant(self.capturer.function, *EVENT_STORE_ACTIONS)
        self.capture_inbox = EventInbox(
            self,
            "CaptureInbox",
            bus=bus,
            source=ORDERS_SOURCE,
            detail_types=("OrderConfirmed",),
            consumer=self.capturer,
            description="OrderConfirmed to the payments capturer's inbox",
        )
