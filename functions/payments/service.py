"""The payments service's use cases over an event store port (DynamoDB deployed, in memory in unit tests).

Every command loads the account, decides, and appends at the version it loaded. When another writer got
there first (``ConcurrencyError``) it loads again and decides again, a few times with a short jittered
pause; two authorizations racing for the same funds therefore decide one after the other, never both on
the same balance. When the attempts run out the ``ConcurrencyError`` escapes: the saga retries it by name,
the API answers 409.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from decimal import Decimal

from shared import snapshots
from shared.event_store import ConcurrencyError, EventStore
from shared.events import DomainEvent, EventEnvelope, wrap

from . import domain
from .domain import Account, OrderPayment
from .events import CATALOG, SOURCE
from .snapshot import ACCOUNT_SNAPSHOTS

# Deposit ids are derived from (customer, Idempotency-Key): a retry whose idempotency record was lost or has
# expired lands on the same deposit id, which the account already holds, so it deposits nothing twice.
DEPOSIT_ID_NAMESPACE = uuid.UUID("0b6f3f5e-6a43-4f0f-9d3e-2f6d5c1a8e47")
APPEND_ATTEMPTS = 6


def deposit_id_for(customer_id: str, idempotency_key: str) -> str:
    return str(uuid.uuid5(DEPOSIT_ID_NAMESPACE, f"{customer_id}\n{idempotency_key}"))


def _jittered_pause(attempt: int) -> None:
    time.sleep(random.uniform(0, min(0.2, 0.01 * 2**attempt)))  # noqa: S311 - jitter, not cryptography


class PaymentsService:
    def __init__(
        self, store: EventStore, attempts: int = APPEND_ATTEMPTS, pause: Callable[[int], None] = _jittered_pause
    ) -> None:
        self._store = store
        self._attempts = attempts
        self._pause = pause

    def history(self, customer_id: str) -> list[EventEnvelope]:
        return self._store.load(domain.account_id(customer_id))

    def account(self, customer_id: str) -> Account:
        """The account as its events say; one that has none is empty (every balance starts at zero).

        Loaded from its newest usable snapshot and the events after it (shared/snapshots.py)."""
        return snapshots.load(self._store, domain.account_id(customer_id), ACCOUNT_SNAPSHOTS).state

    def deposit(self, customer_id: str, deposit_id: str, amount: Decimal) -> Account:
        return self._execute(customer_id, lambda account: domain.decide_deposit(account, deposit_id, amount))[0]

    def authorize(self, customer_id: str, order_id: str, amount: Decimal) -> OrderPayment:
        """Hold ``amount`` for the order; raises PaymentDeclined (recorded once) or AuthorizationCancelled."""
        account, _ = self._execute(customer_id, lambda account: domain.decide_authorize(account, order_id, amount))
        return domain.authorization(account, order_id)

    def capture(self, customer_id: str, order_id: str) -> bool:
        """Turn the order's hold into a payment; True when this call captured it, False when it was captured
        already. Raises PaymentNotAuthorized when the order holds no funds."""
        return self._execute(customer_id, lambda account: domain.decide_capture(account, order_id))[1]

    def void(self, customer_id: str, order_id: str) -> bool:
        """Void the order's authorization; True when it held funds that are now released."""
        account, _ = self._execute(customer_id, lambda account: domain.decide_void(account, order_id))
        return domain.hold_released(account, order_id)

    def _execute(self, customer_id: str, decide: Callable[[Account], list[DomainEvent]]) -> tuple[Account, bool]:
        """Load, decide, append; on a concurrent write, load again and decide again. (The account, whether this
        call appended anything.)"""
        aggregate_id = domain.account_id(customer_id)
        for attempt in range(self._attempts):
            if attempt:
                self._pause(attempt)
            account = self.account(customer_id)
            events = decide(account)
            if not events:
                return account, False
            envelopes = [
                wrap(
                    event,
                    source=SOURCE,
                    subject=aggregate_id,
                    version=account.version + n,
                    # Order-related events carry the order id: it ties them to the saga's other steps.
                    correlation_id=getattr(event, "order_id", None) or aggregate_id,
                )
                for n, event in enumerate(events, 1)
            ]
            try:
                self._store.append(aggregate_id, account.version, envelopes)
            except ConcurrencyError:
                continue
            for envelope, event in zip(envelopes, events, strict=True):
                account = domain.evolve(account, event, envelope.version)
            return account, True
        raise ConcurrencyError(aggregate_id, account.version)

    def events(self, customer_id: str, after_version: int = 0, up_to_version: int | None = None) -> list[EventEnvelope]:
        """The account's events with after_version < version <= up_to_version, oldest first, upcast to the
        current schema (the stored items stay as they were written). Time travel reads these, not snapshots."""
        return [
            CATALOG.upcast(e) for e in self._store.load(domain.account_id(customer_id), after_version, up_to_version)
        ]
