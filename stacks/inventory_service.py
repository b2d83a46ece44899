"""The inventory service: products, reservations and their outbox items in one table; its API and saga functions.

State-based, not event-sourced: each change is one TransactWriteItems of the state change and its outbox item
(functions/inventory/repository.py). The table's stream, filtered to outbox items, feeds the outbox relay.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from constructs import Construct

from stacks.api import Route
from stacks.event_inbox import EventInbox
from stacks.lambda_defaults import SAGA_STEP_TIMEOUT, PythonFunction
from stacks.tables import outbox_table

ORDERS_SOURCE = "orderflow.orders"

# What functions/inventory/repository.py calls, per function (TransactWriteItems is authorized per action inside
# it: Put -> PutItem, Update -> UpdateItem). No DeleteItem (TTL removes outbox items), no Query or Scan.
# The admin API reads a product and sets it (a conditional Put or Update, plus the outbox Put).
API_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
)
# The saga steps read the order's reservation and its products in one BatchGetItem, and move stock: the
# reservation's Put/Update, the products' conditional Updates and the outbox Put, all in one transaction.
SAGA_ACTIONS = (
    "dynamodb:BatchGetItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
)
# The committer reads the order's reservation and moves its units: the reservation's Update, the products'
# Updates and the outbox Put, in one transaction.
COMMIT_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
)


class InventoryService(Construct):
    """``Table`` (products, reservations, outbox items; its stream is the outbox), ``Api`` (the admin API
    function), ``Saga`` (the order saga's inventory steps: reserve, release), ``Committer`` and its
    ``CommitInbox`` (OrderConfirmed on ``bus`` -> queue with DLQ -> ``Committer``: the reserved units are sold
    after the saga's pivot, by choreography).
    """

    routes = (
        Route("PUT", "/admin/products/{sku}"),
        Route("GET", "/admin/products/{sku}"),
    )

    def __init__(self, scope: Construct, id: str, *, bus: events.IEventBus) -> None:
        super().__init__(scope, id)
        # Outbox items carry expires_at (now + 7 days), products and reservations do not.
        self.table = outbox_table(self, "Table")
        environment = {"INVENTORY_TABLE": self.table.table_name}

        self.api = PythonFunction(
            self,
            "Api",
            handler="inventory.api.handler",
            description="Inventory admin API: set and read products (API Gateway REST proxy)",
            memory_size=512,
            timeout=Duration.seconds(10),
            environment=environment,
        )
        self.table.grant(self.api.function, *API_ACTIONS)

        self.saga = PythonFunction(
            self,
            "Saga",
            handler="inventory.saga.handler",
            description="Order saga steps of the inventory service: reserve and release stock",
            memory_size=256,
            timeout=SAGA_STEP_TIMEOUT,
            environment=environment,
        )
        self.table.grant(self.saga.function, *SAGA_ACTIONS)

        self.committer = PythonFunction(
            self,
            "Committer",
            handler="inventory.commit_on_confirmed.handler",
            description="Inventory: sell an order's reserved units when OrderConfirmed arrives (SQS batches)",
            # A batch of 10 is at most 10 x (one read + one transaction).
            memory_size=256,
            timeout=Duration.seconds(30),
            environment=environment,
        )
        self.table.grant(self.committer.function, *COMMIT_ACTIONS)
        self.commit_inbox = EventInbox(
            self,
            "CommitInbox",
            bus=bus,
            source=ORDERS_SOURCE,
            detail_types=("OrderConfirmed",),
            consumer=self.committer,
            description="OrderConfirmed to the inventory committer's inbox",
        )
