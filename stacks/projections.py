"""Projections (CQRS read models): the order list, its projector and its query function.

Order events on the bus -> rule -> inbox queue (with a DLQ) -> projector -> the projections table, which this
service owns (functions/projections/store.py has its layout). ``GET /orders`` is served by the query function from
the table's indexes. The rebuild (offline/rebuild.py) is an operator command, not a function.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.alarms import Alarms
from stacks.api import Api, Route
from stacks.event_inbox import EventInbox
from stacks.lambda_defaults import PythonFunction
from stacks.tables import data_table

ORDERS_SOURCE = "orderflow.orders"
# Every order event (orders.events.CATALOG; tests/infra checks the two agree): a summary folds all of them, and
# one missing type would stall the list at a gap.
ORDER_EVENTS = ("OrderPlaced", "OrderPriced", "OrderConfirmed", "OrderCancelled", "OrderNeedsAttention")
BY_CUSTOMER = "byCustomer"
BY_CUSTOMER_STATUS = "byCustomerStatus"
# The projector reads the pointer (once per invocation) and a summary, and writes the summary in one PutItem
# conditional on its position.
PROJECTOR_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem")
# A rebuild waits this long after it moves the pointer (projections.store.PROJECTOR_TIMEOUT_SECONDS, checked equal by
# tests/infra): Lambda ends an invocation, and the pointer it read when it started, at its timeout.
PROJECTOR_TIMEOUT = Duration.seconds(30)
# Granted as statements on exact ARNs, not with table.grant(), which adds "<table>/index/*" to every grant: the
# projector gets no index at all, the list reads the pointer (GetItem on the table) and queries the two indexes.


def _string(name: str) -> dynamodb.Attribute:
    return dynamodb.Attribute(name=name, type=dynamodb.AttributeType.STRING)


class Projections(Construct):
    """``Table`` (summaries per generation + the pointer; indexes ``byCustomer`` and ``byCustomerStatus``),
    ``Projector`` (its function), ``Inbox`` (order events -> queue with DLQ -> ``Projector``), ``Query`` (the
    function of ``GET /orders``, routed on ``api``), and an alarm on the inbox's DLQ.
    """

    routes = (Route("GET", "/orders"),)

    def __init__(self, scope: Construct, id: str, *, bus: events.IEventBus, api: Api, alarms: Alarms) -> None:
        super().__init__(scope, id)
        # A read model: nothing reads its changes (no stream), and it can always be rebuilt from the event store.
        self.table = data_table(self, "Table", partition_key=_string("pk"))
        for index, key in ((BY_CUSTOMER, "customer_key"), (BY_CUSTOMER_STATUS, "customer_status_key")):
            self.table.add_global_secondary_index(
                index_name=index,
                partition_key=_string(key),
                sort_key=_string("list_key"),
                projection_type=dynamodb.ProjectionType.ALL,  # a page is answered from the index alone
            )
        environment = {"PROJECTIONS_TABLE": self.table.table_name}

        self.projector = PythonFunction(
            self,
            "Projector",
            handler="projections.projector.handler",
            description="Projector: order events (SQS batches) -> the order list read model",
            # A batch of 10 is one pointer read and at most 10 x (a read + a conditional put) per generation.
            memory_size=256,
            timeout=PROJECTOR_TIMEOUT,
            environment=environment,
        )
        self.projector.function.add_to_role_policy(
            iam.PolicyStatement(actions=list(PROJECTOR_ACTIONS), resources=[self.table.table_arn])
        )
        self.inbox = EventInbox(
            self,
            "Inbox",
            bus=bus,
            source=ORDERS_SOURCE,
            detail_types=ORDER_EVENTS,
            consumer=self.projector,
            description="Order events to the order list projector's inbox",
        )

        self.query = PythonFunction(
            self,
            "Query",
            handler="projections.api.handler",
            description="Order list: GET /orders, the caller's orders newest first (API Gateway REST proxy)",
            memory_size=512,
            timeout=Duration.seconds(10),
            environment=environment,
        )
        self.query.function.add_to_role_policy(
            iam.PolicyStatement(actions=["dynamodb:GetItem"], resources=[self.table.table_arn])
        )
        self.query.function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["dynamodb:Query"],
                resources=[f"{self.table.table_arn}/index/{index}" for index in (BY_CUSTOMER, BY_CUSTOMER_STATUS)],
            )
        )
        api.add_routes(self.routes, self.query.function)
        alarms.add_queue_not_empty(
            "ProjectionsInboxDlq", self.inbox.dlq, "An order event did not reach the order list (it stalls that order)"
        )
