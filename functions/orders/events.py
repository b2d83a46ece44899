"""The order's domain events (what happened to an order), in the past tense."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from shared.events import DomainEvent, EventCatalog

SOURCE = "orderflow.orders"

Money = str  # a decimal string with two places, e.g. "12.50": money never travels as a float


class OrderLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sku: str
    quantity: int = Field(ge=1)


class PricedLine(OrderLine):
    unit_price: Money = Field(pattern=r"^[0-9]+\.[0-9]{2}$")


class OrderPlaced(DomainEvent):
    """The customer placed the order (the client sends no prices: inventory tells them later).

    Schema versions (``dataversion``; stored events are never rewritten, older ones are upcast when read):
    1. ``order_id``, ``customer_id``, ``lines``; ``contact_email`` could be absent (readers assumed none).
    2. ``contact_email`` is always there, ``null`` when the identity provider gave no email. The upcaster
       below turns a v1 ``data`` into v2, so no code past the catalog ever has to ask whether the key exists.
    """

    schema_version: ClassVar[int] = 2

    order_id: str
    customer_id: str
    lines: tuple[OrderLine, ...]
    contact_email: str | None  # where the customer is told about the outcome (the token's email claim)


class OrderPriced(DomainEvent):
    """Inventory reserved the lines and told their prices; the order now has a total.

    Written by the saga's former RecordPrices step (and by executions started before it was folded into the
    confirmation); orders placed since have their prices in ``OrderConfirmed`` v2. Kept: histories hold it.
    """

    order_id: str
    lines: tuple[PricedLine, ...]
    total: Money = Field(pattern=r"^[0-9]+\.[0-9]{2}$")


class OrderConfirmed(DomainEvent):
    """The saga's pivot: the order is confirmed at these prices; payments capture and inventory commits on it.

    Schema versions (``dataversion``):
    1. ``order_id``, ``customer_id``, ``total``, ``contact_email``: the prices were recorded before, by an
       ``OrderPriced`` event (the saga had a step of its own for them).
    2. ``lines`` (with their unit prices) too: the confirmation records the prices inventory reserved the
       lines at, and no ``OrderPriced`` is written any more. ``lines`` is ``null`` only in a v1 event upcast
       (its order holds the prices from its ``OrderPriced``); every v2 event written has them.
    """

    schema_version: ClassVar[int] = 2

    order_id: str
    customer_id: str
    total: Money
    contact_email: str | None = None
    lines: tuple[PricedLine, ...] | None = None


class OrderCancelled(DomainEvent):
    order_id: str
    customer_id: str
    reason: str
    contact_email: str | None = None


class OrderNeedsAttention(DomainEvent):
    """A compensation failed after its retries: an operator must look. Never a silent half state."""

    order_id: str
    customer_id: str
    reason: str


CATALOG = EventCatalog(OrderPlaced, OrderPriced, OrderConfirmed, OrderCancelled, OrderNeedsAttention)


@CATALOG.upcaster(OrderPlaced, from_version=1)
def _order_placed_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 -> v2: ``contact_email`` becomes an explicit field; a v1 event without it had none."""
    return {**data, "contact_email": data.get("contact_email")}


@CATALOG.upcaster(OrderConfirmed, from_version=1)
def _order_confirmed_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 -> v2: ``lines`` becomes a field; a v1 confirmation carried none (an ``OrderPriced`` had them)."""
    return {**data, "lines": None}
