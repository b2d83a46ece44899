"""The order service: its event store (orders table), its idempotency table and its API function."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from stacks.api import Route
from stacks.lambda_defaults import PythonFunction

# The event store is append-only, and IAM says so: the function can put new items (always conditional,
# inside TransactWriteItems) and read, but never update or delete an event.
EVENT_STORE_ACTIONS = (
    "dynamodb:ConditionCheckItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
)
# What Powertools' DynamoDBPersistenceLayer calls.
IDEMPOTENCY_ACTIONS = (
    "dynamodb:DeleteItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
)


def data_table(scope: Construct, id: str, **props: object) -> dynamodb.Table:
    """On-demand, point-in-time recovery, retained on stack deletion (tables hold data). Generated name."""
    return dynamodb.Table(
        scope,
        id,
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        removal_policy=RemovalPolicy.RETAIN,
        **props,  # type: ignore[arg-type]
    )


class OrdersService(Construct):
    """``Table`` (event store, its stream is the outbox), ``IdempotencyTable``, ``Api`` (the API function)."""

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
    )

    def __init__(self, scope: Construct, id: str) -> None:
        super().__init__(scope, id)
        self.table = data_table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            stream=dynamodb.StreamViewType.NEW_IMAGE,
            time_to_live_attribute="expires_at",
        )
        # Powertools' defaults: key "id", TTL "expiration". Nothing reads its changes, so no stream.
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
            environment={
                "ORDERS_TABLE": self.table.table_name,
                "IDEMPOTENCY_TABLE": self.idempotency_table.table_name,
            },
        )
        self.table.grant(self.api.function, *EVENT_STORE_ACTIONS)
        self.idempotency_table.grant(self.api.function, *IDEMPOTENCY_ACTIONS)
