"""The views the inventory answers with (money as decimal strings, never floats)."""

from __future__ import annotations

from typing import Any

from .domain import Product, Reservation, money


def product_view(product: Product) -> dict[str, Any]:
    return {
        "sku": product.sku,
        "name": product.name,
        "price": money(product.price),
        "available": product.available,
        "reserved": product.reserved,
        "sold": product.sold,
    }


def reservation_view(reservation: Reservation) -> dict[str, Any]:
    """What the saga's ReserveInventory task answers: the lines at the prices they were reserved at."""
    return {
        "orderId": reservation.order_id,
        "lines": [
            {"sku": line.sku, "quantity": line.quantity, "unitPrice": money(line.unit_price)}
            for line in reservation.lines
        ],
        "total": money(reservation.total),
    }
