"""The order aggregate, pure: no I/O, no AWS. State is a fold of the order's events.

``decide_*`` functions take the current state and return the new events (or raise a domain error);
``evolve`` applies one event to a state; loading an order is ``replay``. Every decision the saga drives is
idempotent: asking again for what already happened decides nothing.

The order is the saga's arbiter: confirming (the pivot) and cancelling exclude each other in one aggregate with
conditional appends, so whatever runs concurrently (an Express execution started twice, a task retried while
its first invocation still runs), an order is either confirmed or cancelled, never both. The saga cancels
before it compensates anything, and compensates nothing when the cancel finds the order confirmed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum

from shared.events import DomainEvent

from .commands import PlaceOrder
from .events import (
    OrderCancelled,
    OrderConfirmed,
    OrderLine,
    OrderNeedsAttention,
    OrderPlaced,
    OrderPriced,
    PricedLine,
)

CENT = Decimal("0.01")


class OrderStatus(StrEnum):
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    CANCELLED = "CANCELLED"
    NEEDS_ATTENTION = "NEEDS_ATTENTION"


TERMINAL = frozenset({OrderStatus.CONFIRMED, OrderStatus.CANCELLED})


class CancelReason(StrEnum):
    OUT_OF_STOCK = "OUT_OF_STOCK"
    UNKNOWN_PRODUCT = "UNKNOWN_PRODUCT"
    PAYMENT_DECLINED = "PAYMENT_DECLINED"
    TECHNICAL_FAILURE = "TECHNICAL_FAILURE"


@dataclass(frozen=True)
class Line:
    sku: str
    quantity: int
    unit_price: Decimal | None = None


@dataclass(frozen=True)
class Order:
    order_id: str
    customer_id: str
    status: OrderStatus
    lines: tuple[Line, ...]
    version: int
    reason: str | None = None
    total: Decimal | None = None  # known once inventory has priced the lines
    contact_email: str | None = None


class OrderError(Exception):
    """A command the order's current state does not allow."""


class OrderAlreadyExists(OrderError):
    pass


class InvalidTransition(OrderError):
    pass


class AlreadyConfirmed(InvalidTransition):
    """A cancel for an order that passed the pivot: nothing may be compensated (the saga catches this name)."""


def money(amount: Decimal) -> str:
    return str(amount.quantize(CENT))


def decide_place(state: Order | None, order_id: str, command: PlaceOrder) -> list[DomainEvent]:
    if state is not None:
        raise OrderAlreadyExists(f"order {order_id} already exists")
    lines = tuple(OrderLine(sku=item.sku, quantity=item.quantity) for item in command.items)
    return [OrderPlaced(order_id=order_id, customer_id=command.customer_id, lines=lines, contact_email=command.contact_email)]


Priced = list[tuple[str, int, Decimal]]  # (sku, quantity, unit price) per line, as inventory reserved them


def _price_lines(state: Order, priced: Priced) -> tuple[tuple[PricedLine, ...], Decimal]:
    """The order's own lines at the given prices, and their total (computed here, never trusted)."""
    if sorted((sku, qty) for sku, qty, _ in priced) != sorted((line.sku, line.quantity) for line in state.lines):
        raise InvalidTransition(f"the priced lines do not match order {state.order_id}'s lines")
    by_sku = {sku: price for sku, _, price in priced}
    lines = tuple(PricedLine(sku=l.sku, quantity=l.quantity, unit_price=money(by_sku[l.sku])) for l in state.lines)
    return lines, sum((by_sku[l.sku] * l.quantity for l in state.lines), Decimal("0"))


def _recorded_lines(state: Order) -> tuple[PricedLine, ...]:
    return tuple(
        PricedLine(sku=l.sku, quantity=l.quantity, unit_price=money(l.unit_price))
        for l in state.lines
        if l.unit_price is not None
    )


def decide_price(state: Order, priced: Priced) -> list[DomainEvent]:
    """Record the prices inventory reserved the lines at (the former RecordPrices step: executions that started
    before it was folded into the confirmation still call it; new ones price at ``decide_confirm``)."""
    if state.total is not None:
        return []  # already priced: a repeated step
    if state.status is not OrderStatus.PENDING:
        raise InvalidTransition(f"order {state.order_id} is {state.status}: it cannot be priced")
    lines, total = _price_lines(state, priced)
    return [OrderPriced(order_id=state.order_id, lines=lines, total=money(total))]


def decide_confirm(state: Order, priced: Priced | None = None, authorized: Decimal | None = None) -> list[DomainEvent]:
    """The pivot: confirm the order at the prices inventory reserved its lines at (``priced``), whose total must
    be the amount payments authorized (``authorized``, when given). Without ``priced`` the order must have been
    priced already (an ``OrderPriced`` from an execution of the former definition)."""
    if state.status is OrderStatus.CONFIRMED:
        return []
    if state.status is not OrderStatus.PENDING:
        raise InvalidTransition(f"order {state.order_id} is {state.status}: it cannot be confirmed")
    if priced is not None:
        lines, total = _price_lines(state, priced)
        if state.total is not None and state.total != total:
            raise InvalidTransition(
                f"order {state.order_id} was priced at {money(state.total)}, not {money(total)}: it cannot be confirmed"
            )
    elif state.total is not None:
        lines, total = _recorded_lines(state), state.total
    else:
        raise InvalidTransition(f"order {state.order_id} has no prices: it cannot be confirmed")
    if authorized is not None and authorized != total:
        raise InvalidTransition(
            f"order {state.order_id} totals {money(total)} but {money(authorized)} was authorized: it cannot be confirmed"
        )
    return [
        OrderConfirmed(
            order_id=state.order_id,
            customer_id=state.customer_id,
            total=money(total),
            contact_email=state.contact_email,
            lines=lines,
        )
    ]


def decide_cancel(state: Order, reason: str) -> list[DomainEvent]:
    """Cancel a pending order. A confirmed one raises AlreadyConfirmed: the pivot won, compensate nothing."""
    if state.status is OrderStatus.CANCELLED:
        return []
    if state.status is OrderStatus.CONFIRMED:
        raise AlreadyConfirmed(f"order {state.order_id} is confirmed: it cannot be cancelled")
    if state.status is not OrderStatus.PENDING:
        raise InvalidTransition(f"order {state.order_id} is {state.status}: it cannot be cancelled")
    return [
        OrderCancelled(order_id=state.order_id, customer_id=state.customer_id, reason=reason, contact_email=state.contact_email)
    ]


def decide_needs_attention(state: Order, reason: str) -> list[DomainEvent]:
    if state.status is OrderStatus.NEEDS_ATTENTION:
        return []
    return [OrderNeedsAttention(order_id=state.order_id, customer_id=state.customer_id, reason=reason)]


def evolve(state: Order | None, event: DomainEvent, version: int) -> Order:
    if isinstance(event, OrderPlaced):
        if state is not None:
            raise ValueError(f"OrderPlaced for {event.order_id} at version {version}, after version {state.version}")
        return Order(
            order_id=event.order_id,
            customer_id=event.customer_id,
            status=OrderStatus.PENDING,
            lines=tuple(Line(sku=line.sku, quantity=line.quantity) for line in event.lines),
            version=version,
            contact_email=event.contact_email,
        )
    if state is None:
        raise ValueError(f"{event.event_type()} cannot be the first event of an order")
    match event:
        case OrderPriced():
            lines = tuple(Line(sku=l.sku, quantity=l.quantity, unit_price=Decimal(l.unit_price)) for l in event.lines)
            return replace(state, lines=lines, total=Decimal(event.total), version=version)
        case OrderConfirmed():
            confirmed = replace(state, status=OrderStatus.CONFIRMED, reason=None, version=version)
            if event.lines is None:  # v1: the prices came with an earlier OrderPriced
                return confirmed
            lines = tuple(Line(sku=l.sku, quantity=l.quantity, unit_price=Decimal(l.unit_price)) for l in event.lines)
            return replace(confirmed, lines=lines, total=Decimal(event.total))
        case OrderCancelled():
            return replace(state, status=OrderStatus.CANCELLED, reason=event.reason, version=version)
        case OrderNeedsAttention():
            return replace(state, status=OrderStatus.NEEDS_ATTENTION, reason=event.reason, version=version)
    raise ValueError(f"the order aggregate does not know {event.event_type()}")


def replay(events: Iterable[tuple[DomainEvent, int]]) -> Order | None:
    state: Order | None = None
    for event, version in events:
        state = evolve(state, event, version)
    return state
