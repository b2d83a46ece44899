"""The snapshotters: each event store's stream -> a Lambda that writes snapshots beside that store's events.

Off the hot path: commands only read snapshots (GetItem, part of EVENT_STORE_ACTIONS); these functions write
them. One function per service (orders, payments), so none reads another service's table; both run the same
code (functions/snapshots, shared/snapshots.py) and fail to one on-failure queue. Their event source mappings
take the outbox relay's settings (filter: INSERTs of event items, so a snapshot write never triggers them;
ReportBatchItemFailures, bisect, retry cap, record age, on-failure queue), with a longer batching window.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda_event_sources as sources
from constructs import Construct

from stacks.lambda_defaults import PythonFunction
from stacks.outbox_relay import (
    on_failure_queue,
    stream_discovery_policy,
    stream_mapping,
)

# Events between two snapshots of one aggregate, per aggregate type (the handler reads them from the environment).
# - An account lives for years and every deposit and order payment adds an event: at 100, loading one reads one
#   snapshot item and at most ~100 events (one Query page, ~40 KB), however long its history.
# - An order ends after 2-3 events today (placed, then confirmed or cancelled, maybe flagged), so it normally
#   never reaches 10 and loads as a GetItem that finds nothing plus the Query it always made; the interval caps
#   the cost if order histories grow (amendments, partial shipments).
ORDER_SNAPSHOT_INTERVAL = 10
ACCOUNT_SNAPSHOT_INTERVAL = 100

BATCH_SIZE = 100
# Snapshots are never urgent: a longer window gives bigger batches, in which one aggregate's many events cost
# one snapshot decision.
MAX_BATCHING_WINDOW = Duration.seconds(10)
# The snapshotter reads the snapshot, the tail and writes the snapshot: conditional, never an event.
SNAPSHOTTER_TABLE_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query")


class Snapshots(Construct):
    """``OnFailureQueue``; ``Orders`` and ``Payments``: a snapshotter function each, with its ``Stream`` mapping
    and its ``StreamDiscovery`` policy."""

    def __init__(
        self, scope: Construct, id: str, *, orders_table: dynamodb.ITable, payments_table: dynamodb.ITable
    ) -> None:
        super().__init__(scope, id)
        self.failure_queue = on_failure_queue(
            self,
            "the snapshotters' stream event source mappings; a DLQ behind it would only hide batches an operator "
            "must inspect (a snapshot is a cache: nothing is lost, loads fall back to full replay).",
        )
        self._on_failure = sources.SqsDlq(self.failure_queue)
        self.orders = self._snapshotter(
            "Orders",
            orders_table,
            handler="snapshots.orders.handler",
            description="Orders snapshotter: orders table stream INSERTs -> an order snapshot every N events",
            environment={
                "ORDERS_TABLE": orders_table.table_name,
                "ORDER_SNAPSHOT_INTERVAL": str(ORDER_SNAPSHOT_INTERVAL),
            },
        )
        self.payments = self._snapshotter(
            "Payments",
            payments_table,
            handler="snapshots.payments.handler",
            description="Payments snapshotter: payments table stream INSERTs -> an account snapshot every N events",
            environment={
                "PAYMENTS_TABLE": payments_table.table_name,
                "ACCOUNT_SNAPSHOT_INTERVAL": str(ACCOUNT_SNAPSHOT_INTERVAL),
            },
        )

    def _snapshotter(
        self, id: str, table: dynamodb.ITable, *, handler: str, description: str, environment: dict[str, str]
    ) -> PythonFunction:
        if table.table_stream_arn is None:
            raise ValueError(f"{table.node.path} has no stream to snapshot from")
        function = PythonFunction(
            self,
            id,
            handler=handler,
            description=description,
            # One batch: up to 100 aggregates, each a GetItem, and when due a Query of the tail and a PutItem.
            memory_size=512,
            timeout=Duration.seconds(60),
            environment=environment,
        )
        mapping = stream_mapping(
            function,
            "Stream",
            function.function,
            table,
            kinds=("event",),
            on_failure=self._on_failure,
            batch_size=BATCH_SIZE,
            max_batching_window=MAX_BATCHING_WINDOW,
        )
        table.grant(function.function, *SNAPSHOTTER_TABLE_ACTIONS)
        mapping.node.add_dependency(stream_discovery_policy(function, function.role))
        return function

