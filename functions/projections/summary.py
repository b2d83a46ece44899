"""One row of the order list, as the projector writes it and the list query reads it (pure, no imports of the
order service: the query answers from these alone, so it does not load the order events and their models)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

STATUSES = ("PENDING", "CONFIRMED", "CANCELLED", "NEEDS_ATTENTION")  # the order aggregate's OrderStatus values


@dataclass(frozen=True)
class OrderSummary:
    order_id: str
    customer_id: str
    status: str
    total: str | None  # a decimal string once the order is priced
    reason: str | None
    item_count: int  # lines of the order (the ``items`` of GET /orders/{orderId})
    placed_at: str  # RFC 3339 time of OrderPlaced: the list's order
    updated_at: str  # RFC 3339 time of the last event applied
    version: int  # the position: the last order version applied

    def to_api(self) -> dict[str, Any]:
        return {
            "orderId": self.order_id,
            "customerId": self.customer_id,
            "status": self.status,
            "total": self.total,
            "reason": self.reason,
            "itemCount": self.item_count,
            "placedAt": self.placed_at,
            "updatedAt": self.updated_at,
            "version": self.version,
        }
