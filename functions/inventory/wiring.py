"""The inventory functions' configuration and collaborators, made once per process (cold start)."""

from __future__ import annotations

import functools

from pydantic import Field

from shared.aws import client
from shared.settings import EnvSettings, load_settings

from .repository import InventoryTable
from .service import InventoryService


class InventorySettings(EnvSettings):
    inventory_table: str = Field(alias="INVENTORY_TABLE", min_length=1)


settings = load_settings(InventorySettings)  # a missing table name fails the cold start, not a saga step


@functools.cache
def service() -> InventoryService:
    return InventoryService(InventoryTable(settings.inventory_table, client("dynamodb")))
