r"""The inventory's rules, pure: no I/O, no AWS.

A product has a price and three counts: ``available`` (can be reserved), ``reserved`` (held for orders in
flight) and ``sold``. Units only ever move between the counts, by whole order lines:

    reserve  available -> reserved      release  reserved -> available      commit  reserved -> sold

so ``available + reserved + sold`` of a product is conserved by everything but an admin setting the stock
(``Move`` checks that every move sums to zero). No count may go below zero: the repository turns every
negative part of a move into a condition of the write (``available >= :qty``), so this holds under any
concurrency, not only for the state these functions were shown.

A reservation belongs to one order and is the idempotency record of the saga's steps on it:

    (none) --reserve--> RESERVED --commit--> COMMITTED
       |                   \--release--> RELEASED
       \--release (before the reserve arrived)--> RELEASED, a tombstone with no lines

A repeated reserve answers the stored reservation, a repeated release/commit decides nothing, and a reserve
that finds the reservation RELEASED (a tombstone, or a late duplicate after the saga compensated) raises
``ReservationCancelled``: it must never hold stock for an order the saga already gave up on.

``decide_*`` functions return the change to write (new state, stock moves, the integration event) or None
when there is nothing to do; they raise the domain errors below, whose class names are the Step Functions
error names the saga catches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from shared.events import DomainEvent

from .events import InventoryCommitted, InventoryReleased, InventoryReserved, PricedStockLine, ProductUpdated, StockLine

CENT = Decimal("0.01")
MAX_LINES = 50  # a reserve is one TransactWriteItems: a line per product + the reservation + the outbox item


class InventoryError(Exception):
    """A business outcome the caller must handle (the saga catches these by class name)."""


class UnknownProduct(InventoryError):
    def __init__(self, skus: Sequence[str]) -> None:
        super().__init__(f"unknown product{'s' if len(skus) > 1 else ''}: {', '.join(skus)}")
        self.skus = tuple(skus)


class OutOfStock(InventoryError):
    def __init__(self, shortages: Mapping[str, tuple[int, int]]) -> None:
        details = ", ".join(
            f"{sku} ({wanted} wanted, {available} available)" for sku, (wanted, available) in shortages.items()
        )
        super().__init__(f"out of stock: {details}")
        self.skus = tuple(shortages)


class ReservationCancelled(InventoryError):
    """The order's reservation was released (or released before it was made): it cannot be reserved again."""


class ReservationNotFound(InventoryError):
    """Commit of an order that was never reserved."""


class InvalidTransition(InventoryError):
    """A step the reservation's state does not allow (commit after release, release after commit)."""


class ConcurrencyError(InventoryError):
    """Other writers kept winning (transaction conflicts): transient, retry the step.

    Named like the event store's error on purpose: the saga retries the Step Functions error "ConcurrencyError".
    """


class InvalidRequest(ValueError):
    """A malformed saga payload or request. Nothing was written."""


class ReservationStatus(StrEnum):
    RESERVED = "RESERVED"
    RELEASED = "RELEASED"
    COMMITTED = "COMMITTED"


def money(amount: Decimal) -> str:
    return str(amount.quantize(CENT))


@dataclass(frozen=True)
class Line:
    sku: str
    quantity: int


@dataclass(frozen=True)
class PricedLine:
    sku: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    price: Decimal
    available: int
    reserved: int
    sold: int
    revision: int  # +1 on every change of the item (admin set, reserve, release, commit)


@dataclass(frozen=True)
class Reservation:
    order_id: str
    status: ReservationStatus
    lines: tuple[PricedLine, ...]
    version: int  # 1 once reserved, 2 once released or committed; also the outbox events' sequence
    tombstone: bool = False  # released before any reserve arrived: it holds nothing and blocks a late reserve

    @property
    def total(self) -> Decimal:
        return sum((line.unit_price * line.quantity for line in self.lines), Decimal("0"))


@dataclass(frozen=True)
class Move:
    """How one unit moves between a product's counts. Every move conserves available + reserved + sold."""

    available: int
    reserved: int
    sold: int

    def __post_init__(self) -> None:
        if self.available + self.reserved + self.sold != 0:
            raise ValueError(f"{self} does not conserve stock")


RESERVE = Move(available=-1, reserved=+1, sold=0)
RELEASE = Move(available=+1, reserved=-1, sold=0)
COMMIT = Move(available=0, reserved=-1, sold=+1)


@dataclass(frozen=True)
class StockMove:
    sku: str
    quantity: int
    move: Move

    def deltas(self) -> dict[str, int]:
        """Count -> change, e.g. {"available": -2, "reserved": 2}; the negative ones are conditions too."""
        per_unit = {"available": self.move.available, "reserved": self.move.reserved, "sold": self.move.sold}
        return {count: delta * self.quantity for count, delta in per_unit.items() if delta}


@dataclass(frozen=True)
class ReservationChange:
    """One transaction: the reservation's new state, the stock moves, and the event saying so."""

    expected_status: ReservationStatus | None  # the write requires this status (None: no reservation yet)
    after: Reservation
    moves: tuple[StockMove, ...] = ()
    event: DomainEvent | None = None
    quoted_prices: Mapping[str, Decimal] = field(default_factory=dict)  # the write requires these prices unchanged


@dataclass(frozen=True)
class ProductChange:
    expected_revision: int | None  # the write requires this revision (None: the product does not exist yet)
    after: Product
    event: ProductUpdated


def _stock_lines(lines: Sequence[PricedLine]) -> tuple[StockLine, ...]:
    return tuple(StockLine(sku=line.sku, quantity=line.quantity) for line in lines)


def _priced_stock_lines(lines: Sequence[PricedLine]) -> tuple[PricedStockLine, ...]:
    return tuple(PricedStockLine(sku=l.sku, quantity=l.quantity, unit_price=money(l.unit_price)) for l in lines)


def check_lines(lines: Sequence[Line]) -> None:
    if not lines:
        raise InvalidRequest("at least one line is required")
    if len(lines) > MAX_LINES:
        raise InvalidRequest(f"at most {MAX_LINES} lines can be reserved at once")
    skus = [line.sku for line in lines]
    duplicates = sorted({sku for sku in skus if skus.count(sku) > 1})
    if duplicates:
        raise InvalidRequest(f"sku {', '.join(duplicates)} appears more than once: send one line per sku")
    if any(line.quantity < 1 for line in lines):
        raise InvalidRequest("every quantity must be at least 1")


def decide_reserve(order_id: str, lines: Sequence[Line], products: Mapping[str, Product]) -> ReservationChange:
    """Reserve every line at the product's current price, or raise for the lines that cannot be reserved."""
    check_lines(lines)
    unknown = [line.sku for line in lines if line.sku not in products]
    if unknown:
        raise UnknownProduct(unknown)
    shortages = {
        line.sku: (line.quantity, products[line.sku].available)
        for line in lines
        if products[line.sku].available < line.quantity
    }
    if shortages:
        raise OutOfStock(shortages)
    priced = tuple(PricedLine(sku=l.sku, quantity=l.quantity, unit_price=products[l.sku].price) for l in lines)
    reservation = Reservation(order_id=order_id, status=ReservationStatus.RESERVED, lines=priced, version=1)
    return ReservationChange(
        expected_status=None,
        after=reservation,
        moves=tuple(StockMove(l.sku, l.quantity, RESERVE) for l in priced),
        event=InventoryReserved(order_id=order_id, lines=_priced_stock_lines(priced), total=money(reservation.total)),
        quoted_prices={l.sku: l.unit_price for l in priced},
    )


def repeat_reserve(existing: Reservation, lines: Sequence[Line]) -> Reservation:
    """A reserve for an order that already has a reservation: answer what was reserved, reserve nothing."""
    if existing.status is ReservationStatus.RELEASED:
        how = "released before it was made" if existing.tombstone else "released"
        raise ReservationCancelled(
            f"the reservation of order {existing.order_id} was {how}: it cannot be reserved again"
        )
    if sorted((l.sku, l.quantity) for l in existing.lines) != sorted((l.sku, l.quantity) for l in lines):
        raise InvalidRequest(f"order {existing.order_id} was already reserved with other lines")
    return existing


def decide_release(order_id: str, existing: Reservation | None) -> ReservationChange | None:
    """Give the reserved units back. Before any reserve: leave a tombstone (no event: no stock moved)."""
    if existing is None:
        tombstone = Reservation(
            order_id=order_id, status=ReservationStatus.RELEASED, lines=(), version=1, tombstone=True
        )
        return ReservationChange(expected_status=None, after=tombstone)
    match existing.status:
        case ReservationStatus.RELEASED:
            return None
        case ReservationStatus.COMMITTED:
            raise InvalidTransition(f"the reservation of order {order_id} is committed: it cannot be released")
    released = Reservation(order_id, ReservationStatus.RELEASED, existing.lines, existing.version + 1)
    return ReservationChange(
        expected_status=ReservationStatus.RESERVED,
        after=released,
        moves=tuple(StockMove(l.sku, l.quantity, RELEASE) for l in existing.lines),
        event=InventoryReleased(order_id=order_id, lines=_stock_lines(existing.lines)),
    )


def decide_commit(order_id: str, existing: Reservation | None) -> ReservationChange | None:
    """Sell the reserved units."""
    if existing is None:
        raise ReservationNotFound(f"order {order_id} has no reservation to commit")
    match existing.status:
        case ReservationStatus.COMMITTED:
            return None
        case ReservationStatus.RELEASED:
            raise InvalidTransition(f"the reservation of order {order_id} was released: it cannot be committed")
    committed = Reservation(order_id, ReservationStatus.COMMITTED, existing.lines, existing.version + 1)
    return ReservationChange(
        expected_status=ReservationStatus.RESERVED,
        after=committed,
        moves=tuple(StockMove(l.sku, l.quantity, COMMIT) for l in existing.lines),
        event=InventoryCommitted(
            order_id=order_id, lines=_priced_stock_lines(existing.lines), total=money(existing.total)
        ),
    )


def decide_set_product(
    sku: str, name: str, price: Decimal, stock: int, current: Product | None
) -> ProductChange | None:
    """An admin sets a product. ``stock`` is the new AVAILABLE count: units held for orders in flight
    (``reserved``) and ``sold`` are never touched, so a reservation made before the PUT can still be
    released or committed. Setting the same values again changes nothing and publishes nothing."""
    if stock < 0:
        raise InvalidRequest("stock must be at least 0")
    if price <= 0 or price != price.quantize(CENT):
        raise InvalidRequest("price must be above 0 with at most 2 decimals")
    price = price.quantize(CENT)
    if current is None:
        after = Product(sku=sku, name=name, price=price, available=stock, reserved=0, sold=0, revision=1)
    elif (current.name, current.price, current.available) == (name, price, stock):
        return None
    else:
        after = Product(
            sku=sku,
            name=name,
            price=price,
            available=stock,
            reserved=current.reserved,
            sold=current.sold,
            revision=current.revision + 1,
        )
    event = ProductUpdated(
        sku=sku, name=name, price=money(price), available=after.available, reserved=after.reserved, sold=after.sold
    )
    return ProductChange(expected_revision=current.revision if current else None, after=after, event=event)
