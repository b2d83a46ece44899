"""The order service's use cases over an event store port (DynamoDB deployed, in memory in unit tests)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal

from shared import snapshots
from shared.event_store import ConcurrencyError, EventStore
from shared.events import DomainEvent, EventEnvelope, wrap

from . import domain
from .commands import PlaceOrder
from .domain import Order, OrderAlreadyExists, Priced
from .events import CATALOG, SOURCE
from .snapshot import ORDER_SNAPSHOTS

# Order ids are derived from (customer, Idempotency-Key): a retry whose idempotency record was lost or has
# expired still lands on the same order id, and the event store's conditional append turns it into a no-op.
ORDER_ID_NAMESPACE = uuid.UUID("6f1c1e0a-9b1e-4c55-9d59-3f1b8f0c7a10")
APPEND_ATTEMPTS = 5


def order_id_for(customer_id: str, idempotency_key: str) -> str:
    return str(uuid.uuid5(ORDER_ID_NAMESPACE, f"{customer_id}\n{idempotency_key}"))


class IdempotencyKeyReused(Exception):
    """The Idempotency-Key was already used by this customer for a different order."""


class OrderNotFound(LookupError):
    pass


class OrderService:
    """``on_appended`` is told the events each call appended (after the append committed, never for a call that
    decided nothing): the saga counts outcomes with it, so a repeated step is never counted twice."""

    def __init__(self, store: EventStore, on_appended: Callable[[Sequence[DomainEvent]], None] | None = None) -> None:
        self._store = store
        self._on_appended = on_appended

    def history(self, order_id: str) -> list[EventEnvelope]:
        return self._store.load(order_id)

    def load(self, order_id: str) -> Order | None:
        """The order now: its newest usable snapshot and the events after it (shared/snapshots.py)."""
        return snapshots.load(self._store, order_id, ORDER_SNAPSHOTS).state

    def place(self, command: PlaceOrder) -> Order:
        order_id = order_id_for(command.customer_id, command.idempotency_key)

        def decide(state: Order | None) -> list[DomainEvent]:
            try:
                return domain.decide_place(state, order_id, command)
            except OrderAlreadyExists:
                assert state is not None
                self._same_intent(state, command)
                return []

        return self._execute(order_id, decide)

    def price(self, order_id: str, priced: Priced) -> Order:
        return self._execute(order_id, lambda state: domain.decide_price(self._exists(order_id, state), priced))

    def confirm(self, order_id: str, priced: Priced | None = None, authorized: Decimal | None = None) -> Order:
        """The pivot: confirm at the reserved prices (``priced``) whose total payments authorized (``authorized``)."""
        return self._execute(
            order_id, lambda state: domain.decide_confirm(self._exists(order_id, state), priced, authorized)
        )

    def cancel(self, order_id: str, reason: str) -> Order:
        return self._execute(order_id, lambda state: domain.decide_cancel(self._exists(order_id, state), reason))

    def flag_for_attention(self, order_id: str, reason: str) -> Order:
        return self._execute(order_id, lambda state: domain.decide_needs_attention(self._exists(order_id, state), reason))

    def _execute(
        self, order_id: str, decide: Callable[[Order | None], list[DomainEvent]]
    ) -> Order:
        """Load, decide, append; on a concurrent write, load again and decide again."""
        for _attempt in range(APPEND_ATTEMPTS):
            state = self.load(order_id)
            events = decide(state)
            if not events:
                return self._exists(order_id, state)
            version = state.version if state else 0
            envelopes = [
                wrap(event, source=SOURCE, subject=order_id, version=version + n) for n, event in enumerate(events, 1)
            ]
            try:
                self._store.append(order_id, version, envelopes)
            except ConcurrencyError:
                continue
            for envelope, event in zip(envelopes, events, strict=True):
                state = domain.evolve(state, event, envelope.version)
            assert state is not None
            if self._on_appended is not None:
                self._on_appended(events)
            return state
        raise ConcurrencyError(order_id, -1)

    @staticmethod
    def _exists(order_id: str, state: Order | None) -> Order:
        if state is None:
            raise OrderNotFound(f"order {order_id} does not exist")
        return state

    @staticmethod
    def _same_intent(order: Order, command: PlaceOrder) -> None:
        requested = [(item.sku, item.quantity) for item in command.items]
        if [(line.sku, line.quantity) for line in order.lines] != requested or order.customer_id != command.customer_id:
            raise IdempotencyKeyReused()

    def events(self, order_id: str, after_version: int = 0, up_to_version: int | None = None) -> list[EventEnvelope]:
        """The order's events with after_version < version <= up_to_version, oldest first, upcast to the
        current schema (the stored items stay as they were written). Time travel reads these, not snapshots."""
        return [CATALOG.upcast(e) for e in self._store.load(order_id, after_version, up_to_version)]
