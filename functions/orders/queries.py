"""Queries the order service answers, and the views they return (money as decimal strings, never floats)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from shared.history import events_at

from . import domain
from .domain import Order, money
from .events import CATALOG
from .service import OrderService


def _money(amount: Decimal | None) -> str | None:
    return None if amount is None else money(amount)


def order_view(order: Order) -> dict[str, Any]:
    return {
        "orderId": order.order_id,
        "customerId": order.customer_id,
        "status": order.status.value,
        "items": [
            {"sku": line.sku, "quantity": line.quantity, "unitPrice": _money(line.unit_price)} for line in order.lines
        ],
        "total": _money(order.total),
        "reason": order.reason,
        "version": order.version,
    }


def order_at(service: OrderService, order_id: str, *, version: int | None = None, as_of: datetime | None = None) -> Order | None:
    """The order as it was right after ``version``, or at ``as_of`` (exactly one); None if it was not yet
    there (a time before it was placed, a version it has not reached)."""
    events = events_at(lambda up_to: service.events(order_id, up_to_version=up_to), version=version, as_of=as_of)
    return domain.replay((CATALOG.decode(e), e.version) for e in events or ())
