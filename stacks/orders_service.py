"""The order service: its event store (orders table), its API and saga functions; and, for historical reasons, the
system's idempotency table."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from stacks.api import Route
from stacks.lambda_defaults import SAGA_STEP_TIMEOUT, PythonFunction
from stacks.tables import EVENT_STORE_ACTIONS, data_table, outbox_table


class OrdersService(Construct):
    """``Table`` (event store, its stream is the outbox), ``IdempotencyTable`` (the system's one Powertools
    idempotency table, see below), ``Api`` (the API function), ``Saga`` (the order saga's orders steps: confirm
    (the pivot, recording the prices), cancel, flag).

    No function of the order service uses ``IdempotencyTable``: placing an order is exactly-once by its
    conditional append (the order id is derived from the caller and the Idempotency-Key). The table lives here
    because the order API used it first; today only notifications does (``Notifications(idempotency_table=)``).
    It stays here because moving it would change its logical id, and CloudFormation would make a new table and
    orphan the old one (it is retained), dropping the records that keep notifications exactly-once meanwhile.
    """

    routes = (
        Route(
            "GET",
            "/health",
            public_reason=(
                "Readiness probe that deploy scripts and uptime checks call before anyone holds a token; the "
                "handler returns a constant {'status': 'ok'}, reads no data and has no side effects."
            ),
        ),
        Route("POST", "/orders"),
        Route("GET", "/orders/{orderId}"),
        Route("GET", "/orders/{orderId}/history"),
    )

    def __init__(self, scope: Construct, id: str) -> None:
        super().__init__(scope, id)
        self.table = outbox_table(self, "Table")
        # Powertools' defaults: key "id", TTL "expiration". Nothing reads its changes, so no stream. Records are
        # keyed by function name, so any function may share it (granted by whoever uses it, not here).
        self.idempotency_table = data_table(
            self,
            "IdempotencyTable",
            partition_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING),
            time_to_live_attribute="expiration",
        )

        self.api = PythonFunction(
            self,
            "Api",
            handler="orders.api.handler",
            description="Order API: place and read orders (API Gateway REST proxy)",
            # API Gateway gives up after 29 s; a request is one transaction and a query.
            memory_size=512,
            timeout=Duration.seconds(10),
            environment={"ORDERS_TABLE": self.table.table_name},
        )
        self.table.grant(self.api.function, *EVENT_STORE_ACTIONS)

        self.saga = PythonFunction(
            self,
            "Saga",
            handler="orders.saga.handler",
            description="Order saga steps of the order service: confirm at the reserved prices, cancel, flag",
            memory_size=256,
            timeout=SAGA_STEP_TIMEOUT,
            environment={"ORDERS_TABLE": self.table.table_name},
        )
        self.table.grant(self.saga.function, *EVENT_STORE_ACTIONS)
