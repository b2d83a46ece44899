"""The order list's read model, pure: one summary per order, the fold of that order's events in version order.

A summary remembers its ``version``: the position, i.e. the last order version folded into it. An event is
applied only if it is the next version (``classify``); an older or equal one is a duplicate (acknowledged and
ignored), a newer one means an event in between has not arrived yet (a gap: retry later, never drop it). So any
delivery order, with any duplicates, ends in the same summary as delivering every event once, in order.

``OrderSummary`` itself is in summary.py: the list query reads summaries without loading the order events.
"""

from __future__ import annotations

from dataclasses import replace
from enum import StrEnum

from orders.events import CATALOG, OrderCancelled, OrderConfirmed, OrderNeedsAttention, OrderPlaced, OrderPriced
from shared.events import EventEnvelope, rfc3339

from .summary import OrderSummary

ORDERS_SOURCE = "orderflow.orders"


class Outcome(StrEnum):
    APPLY = "APPLY"  # the next version: fold it in
    DUPLICATE = "DUPLICATE"  # at or below the position: already folded in
    GAP = "GAP"  # beyond the next version: an earlier event is still on its way


class OutOfOrder(Exception):
    """The event is ahead of the view: fail its delivery so it comes back after the missing one."""

    def __init__(self, envelope: EventEnvelope, position: int, generation: int) -> None:
        super().__init__(
            f"{envelope.type} {envelope.id} is version {envelope.version} of order {envelope.subject}, but generation "
            f"{generation} is at version {position}: waiting for version {position + 1}"
        )


def position(view: OrderSummary | None) -> int:
    return 0 if view is None else view.version


def classify(view: OrderSummary | None, version: int) -> Outcome:
    at = position(view)
    if version <= at:
        return Outcome.DUPLICATE
    if version > at + 1:
        return Outcome.GAP
    return Outcome.APPLY


def evolve(view: OrderSummary | None, envelope: EventEnvelope) -> OrderSummary:
    """The summary with ``envelope`` (the next version) folded in. Old schema versions are upcast by the catalog."""
    if envelope.source != ORDERS_SOURCE:
        raise ValueError(f"the order list folds order events only, not {envelope.source} {envelope.type}")
    event = CATALOG.decode(envelope)  # UnknownEventType for a type this code does not know yet: never skipped
    at = rfc3339(envelope.time)
    if isinstance(event, OrderPlaced):
        if view is not None:
            raise ValueError(f"OrderPlaced at version {envelope.version} of order {envelope.subject}, after {view.version}")
        return OrderSummary(
            order_id=event.order_id,
            customer_id=event.customer_id,
            status="PENDING",
            total=None,
            reason=None,
            item_count=len(event.lines),
            placed_at=at,
            updated_at=at,
            version=envelope.version,
        )
    if view is None:
        raise ValueError(f"{envelope.type} cannot be the first event of order {envelope.subject}")
    moved = replace(view, updated_at=at, version=envelope.version)
    match event:
        case OrderPriced():
            return replace(moved, total=event.total, item_count=len(event.lines))
        case OrderConfirmed():
            return replace(moved, status="CONFIRMED", reason=None, total=event.total)
        case OrderCancelled():
            return replace(moved, status="CANCELLED", reason=event.reason)
        case OrderNeedsAttention():
            return replace(moved, status="NEEDS_ATTENTION", reason=event.reason)
    raise ValueError(f"the order list does not fold {envelope.type}")
