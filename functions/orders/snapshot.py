"""How an order is snapshotted (see shared/snapshots.py): its state as JSON, and how to fold stored events.

Bump ``SCHEMA_VERSION`` whenever ``encode``'s shape or meaning changes: stored order snapshots are then ignored
(full replay) and rebuilt by the snapshotter. Money stays a decimal string, exactly as the events carry it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from shared.events import EventEnvelope
from shared.snapshots import Snapshotting

from . import domain
from .domain import Line, Order, OrderStatus
from .events import CATALOG

SCHEMA_VERSION = 1


def _initial(_order_id: str) -> Order | None:
    return None


def _apply(state: Order | None, envelope: EventEnvelope) -> Order | None:
    return domain.evolve(state, CATALOG.decode(envelope), envelope.version)


def _version(state: Order | None) -> int:
    return 0 if state is None else state.version


def _amount(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"an amount is a decimal string, not {type(value).__name__}")
    return Decimal(value)


def encode(state: Order | None) -> dict[str, Any]:
    if state is None:
        raise ValueError("an order that does not exist has no snapshot")
    return {
        "orderId": state.order_id,
        "customerId": state.customer_id,
        "status": state.status.value,
        "lines": [
            {"sku": line.sku, "quantity": line.quantity, "unitPrice": _amount(line.unit_price)} for line in state.lines
        ],
        "version": state.version,
        "reason": state.reason,
        "total": _amount(state.total),
        "contactEmail": state.contact_email,
    }


def decode(data: dict[str, Any]) -> Order:
    return Order(
        order_id=str(data["orderId"]),
        customer_id=str(data["customerId"]),
        status=OrderStatus(data["status"]),
        lines=tuple(
            Line(sku=str(line["sku"]), quantity=int(line["quantity"]), unit_price=_decimal(line["unitPrice"]))
            for line in data["lines"]
        ),
        version=int(data["version"]),
        reason=data["reason"],
        total=_decimal(data["total"]),
        contact_email=data["contactEmail"],
    )


ORDER_SNAPSHOTS: Snapshotting[Order | None] = Snapshotting(
    aggregate_type="order",
    schema_version=SCHEMA_VERSION,
    initial=_initial,
    apply=_apply,
    version_of=_version,
    encode=encode,
    decode=decode,
)
