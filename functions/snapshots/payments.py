"""Lambda handler of the payments snapshotter: the payments table's stream -> account snapshots beside them."""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field

from payments.snapshot import ACCOUNT_SNAPSHOTS
from shared.aws import client
from shared.event_store import DynamoDBEventStore
from shared.settings import EnvSettings, load_settings

from .handler import handle, logger, metrics, tracer
from .logic import Source


class AccountSnapshotterSettings(EnvSettings):
    payments_table: str = Field(alias="PAYMENTS_TABLE", min_length=1)
    account_snapshot_interval: int = Field(alias="ACCOUNT_SNAPSHOT_INTERVAL", ge=1)


settings = load_settings(AccountSnapshotterSettings)


@functools.cache
def sources() -> dict[str, Source]:
    store = DynamoDBEventStore(settings.payments_table, client("dynamodb"))
    return {settings.payments_table: Source(store, ACCOUNT_SNAPSHOTS, settings.account_snapshot_interval)}


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, sources())
