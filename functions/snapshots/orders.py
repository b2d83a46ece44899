"""Lambda handler of the orders snapshotter: the orders table's stream -> order snapshots in the orders table."""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field

from orders.snapshot import ORDER_SNAPSHOTS
from shared.aws import client
from shared.event_store import DynamoDBEventStore
from shared.settings import EnvSettings, load_settings

from .handler import handle, logger, metrics, tracer
from .logic import Source


class OrderSnapshotterSettings(EnvSettings):
    orders_table: str = Field(alias="ORDERS_TABLE", min_length=1)
    order_snapshot_interval: int = Field(alias="ORDER_SNAPSHOT_INTERVAL", ge=1)


settings = load_settings(OrderSnapshotterSettings)


@functools.cache
def sources() -> dict[str, Source]:
    store = DynamoDBEventStore(settings.orders_table, client("dynamodb"))
    return {settings.orders_table: Source(store, ORDER_SNAPSHOTS, settings.order_snapshot_interval)}


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, sources())
