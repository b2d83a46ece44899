"""The inventory's integration events (what other services may learn), in the past tense.

They leave the service as outbox items written in the same transaction as the change they describe. Money is a
decimal string with two places; field names follow the orders service's events (snake_case).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from shared.events import DomainEvent, EventCatalog

SOURCE = "orderflow.inventory"

MONEY_PATTERN = r"^[0-9]+\.[0-9]{2}$"


class StockLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sku: str
    quantity: int = Field(ge=1)


class PricedStockLine(StockLine):
    unit_price: str = Field(pattern=MONEY_PATTERN)


class ProductUpdated(DomainEvent):
    """An admin set a product (created it, or changed its name, price or available count). The full new state."""

    sku: str
    name: str
    price: str = Field(pattern=MONEY_PATTERN)
    available: int = Field(ge=0)
    reserved: int = Field(ge=0)
    sold: int = Field(ge=0)


class InventoryReserved(DomainEvent):
    """Every line of an order was reserved (available -> reserved) at these prices."""

    order_id: str
    lines: tuple[PricedStockLine, ...]
    total: str = Field(pattern=MONEY_PATTERN)


class InventoryReleased(DomainEvent):
    """An order's reservation was given back (reserved -> available): the saga compensated."""

    order_id: str
    lines: tuple[StockLine, ...]


class InventoryCommitted(DomainEvent):
    """An order's reserved units were sold (reserved -> sold): the order passed its pivot."""

    order_id: str
    lines: tuple[PricedStockLine, ...]
    total: str = Field(pattern=MONEY_PATTERN)


CATALOG = EventCatalog(ProductUpdated, InventoryReserved, InventoryReleased, InventoryCommitted)
