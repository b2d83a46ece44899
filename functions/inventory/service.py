"""The inventory's use cases: read the latest state, let the domain decide, write the change and its event
in one transaction; when the state moved in between (or DynamoDB reports a transaction conflict), read and
decide again, a bounded number of times."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from decimal import Decimal

from shared.events import DomainEvent, EventEnvelope, wrap

from . import domain
from .domain import ConcurrencyError, Line, OutOfStock, Product, Reservation, UnknownProduct
from .events import SOURCE
from .repository import InventoryTable, StaleState, WriteConflict

ATTEMPTS = 6


def jittered_backoff(attempt: int) -> None:
    """Full jitter, 10 ms doubling, at most 200 ms: contention on one product is short-lived."""
    time.sleep(random.uniform(0, min(0.2, 0.01 * 2**attempt)))  # noqa: S311 (not cryptographic)


class InventoryService:
    def __init__(
        self, table: InventoryTable, attempts: int = ATTEMPTS, backoff: Callable[[int], None] = jittered_backoff
    ) -> None:
        self._table = table
        self._attempts = attempts
        self._backoff = backoff

    # --- queries ---

    def product(self, sku: str) -> Product | None:
        return self._table.product(sku)

    def reservation(self, order_id: str) -> Reservation | None:
        return self._table.reservation(order_id)

    # --- the saga's steps, each idempotent on the order id ---

    def reserve(self, order_id: str, lines: Sequence[Line]) -> Reservation:
        """Reserve every line or none, at the products' prices; a repeated reserve answers the first one."""
        domain.check_lines(lines)
        for attempt in range(self._attempts):
            existing, products = self._table.reservation_and_products(order_id, [line.sku for line in lines])
            if existing is not None:
                return domain.repeat_reserve(existing, lines)
            try:
                change = domain.decide_reserve(order_id, lines, products)
                self._table.write_reservation(
                    change, self._envelope(change.event, order_id, change.after.version, order_id)
                )
                return change.after
            except (OutOfStock, UnknownProduct):
                # A duplicate of this very step may have reserved in between: then its reservation is the answer.
                existing = self._table.reservation(order_id)
                if existing is not None:
                    return domain.repeat_reserve(existing, lines)
                raise
            except (StaleState, WriteConflict):
                self._backoff(attempt)
        raise ConcurrencyError(f"could not reserve order {order_id}: other writers kept winning")

    def release(self, order_id: str) -> bool:
        """Give the order's reserved units back; True if this call released them. Before a reserve, this
        leaves a tombstone (False) so the late reserve raises ReservationCancelled instead of holding stock."""
        return self._move_on(order_id, domain.decide_release)

    def commit(self, order_id: str) -> bool:
        """Sell the order's reserved units; True if this call committed them."""
        return self._move_on(order_id, domain.decide_commit)

    def _move_on(
        self, order_id: str, decide: Callable[[str, Reservation | None], domain.ReservationChange | None]
    ) -> bool:
        for attempt in range(self._attempts):
            change = decide(order_id, self._table.reservation(order_id))
            if change is None:
                return False
            envelope = self._envelope(change.event, order_id, change.after.version, order_id) if change.event else None
            try:
                self._table.write_reservation(change, envelope)
            except (StaleState, WriteConflict):
                self._backoff(attempt)
                continue
            return envelope is not None
        raise ConcurrencyError(f"could not update the reservation of order {order_id}: other writers kept winning")

    # --- the admin's product changes ---

    def set_product(
        self, sku: str, name: str, price: Decimal, stock: int, correlation_id: str | None = None
    ) -> tuple[Product, bool]:
        """Set the product's name, price and available count; (the product, whether anything changed)."""
        for attempt in range(self._attempts):
            current = self._table.product(sku)
            change = domain.decide_set_product(sku, name, price, stock, current)
            if change is None:
                assert current is not None
                return current, False
            try:
                self._table.write_product(
                    change, self._envelope(change.event, sku, change.after.revision, correlation_id or sku)
                )
            except (StaleState, WriteConflict):
                self._backoff(attempt)
                continue
            return change.after, True
        raise ConcurrencyError(f"could not set product {sku}: other writers kept winning")

    @staticmethod
    def _envelope(event: DomainEvent | None, subject: str, sequence: int, correlation_id: str) -> EventEnvelope:
        assert event is not None
        return wrap(event, source=SOURCE, subject=subject, version=sequence, correlation_id=correlation_id)
