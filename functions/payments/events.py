"""The account's domain events (what happened to a customer's money), in the past tense.

Every amount is a decimal string with exactly two places ("25.00"): money never travels as a float.
An account's balance and holds are never stored; they are a fold of these events (see domain.py).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

from shared.events import DomainEvent, EventCatalog

SOURCE = "orderflow.payments"

Money = Annotated[str, StringConstraints(pattern=r"^[0-9]+\.[0-9]{2}$")]

INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"


class FundsDeposited(DomainEvent):
    """An admin credited the account. ``deposit_id`` is derived from (customer, Idempotency-Key)."""

    deposit_id: str
    amount: Money


class PaymentAuthorized(DomainEvent):
    """A hold of ``amount`` for one order: it counts against the available funds until captured or voided."""

    order_id: str
    amount: Money


class PaymentCaptured(DomainEvent):
    """The order's hold became a payment: the balance goes down by ``amount`` and the hold is gone."""

    order_id: str
    amount: Money


class AuthorizationVoided(DomainEvent):
    """The order's authorization is void: its hold (if it had one) is released.

    Recorded for an order that was never authorized too (the saga's compensation overtook a slow
    authorize): then it is a tombstone, and a late authorize for that order is refused.
    """

    order_id: str


class PaymentDeclined(DomainEvent):
    """An authorization was refused; the order can never be authorized afterwards (a retry declines again)."""

    order_id: str
    amount: Money
    reason: str


CATALOG = EventCatalog(FundsDeposited, PaymentAuthorized, PaymentCaptured, AuthorizationVoided, PaymentDeclined)
