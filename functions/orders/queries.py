"""Queries the order service answers, and the views they return (money as decimal strings, never floats)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from .domain import Order, money


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
