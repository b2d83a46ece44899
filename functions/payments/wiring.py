"""The payments functions' table and service, made once per process (cold start). The API makes its own service
(payments/api.py): its event store logs and counts each deposit once the append has committed."""

from __future__ import annotations

import functools

from pydantic import Field

from shared.aws import client
from shared.event_store import DynamoDBEventStore
from shared.settings import EnvSettings, load_settings

from .service import PaymentsService


class PaymentsTableSettings(EnvSettings):
    payments_table: str = Field(alias="PAYMENTS_TABLE", min_length=1)


settings = load_settings(PaymentsTableSettings)  # a missing table name fails the cold start, not a step


@functools.cache
def service() -> PaymentsService:
    return PaymentsService(DynamoDBEventStore(settings.payments_table, client("dynamodb")))
