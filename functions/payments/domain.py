"""The customer account aggregate, pure: no I/O, no AWS. State is a fold of the account's events.

    balance   = deposits - captured payments
    held      = the amounts of the orders authorized and not yet captured or voided
    available = balance - held            (an authorization above it is declined)

so ``balance >= held >= 0`` holds after every event. ``decide_*`` functions take the current account and
return the new events (or raise a domain error); ``evolve`` applies one event; loading is ``replay``.

Every saga decision is idempotent per (order id, action) from the account's own state, so Step Functions
running a task twice (even concurrently) changes nothing the second time:
- authorize: an order already authorized (or captured) decides nothing and answers the same; an order
  already declined decides nothing and is declined again; an order already voided is refused
  (``AuthorizationCancelled``), also when the void came first and left a tombstone;
- capture: an order already captured decides nothing;
- void: an order already voided or declined decides nothing; an unknown order gets a tombstone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from types import MappingProxyType

from shared.events import DomainEvent

from . import events
from .events import INSUFFICIENT_FUNDS

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
MAX_AMOUNT = Decimal("999999999999.99")  # far above any order or deposit; keeps Decimal arithmetic exact


def money(amount: Decimal) -> str:
    """The wire form of an amount: a decimal string with two places."""
    return str(amount.quantize(CENT))


def to_amount(value: str | Decimal) -> Decimal:
    """A positive amount with at most two decimal places, or ValueError. Never accepts floats."""
    if isinstance(value, bool) or not isinstance(value, str | Decimal):
        raise InvalidAmount(f"an amount must be a decimal string, not {type(value).__name__}")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise InvalidAmount(f"{value!r} is not a decimal amount") from None
    if not amount.is_finite() or amount <= 0:
        raise InvalidAmount(f"an amount must be greater than 0, not {value!r}")
    if amount > MAX_AMOUNT:
        raise InvalidAmount(f"an amount must be at most {MAX_AMOUNT}, not {value!r}")
    if amount != amount.quantize(CENT):
        raise InvalidAmount(f"an amount has at most two decimal places, not {value!r}")
    return amount.quantize(CENT)


class PaymentStatus(StrEnum):
    AUTHORIZED = "AUTHORIZED"  # a hold counts against the available funds
    CAPTURED = "CAPTURED"
    VOIDED = "VOIDED"  # the hold was released
    DECLINED = "DECLINED"
    CANCELLED = "CANCELLED"  # voided before it was ever authorized: a tombstone


@dataclass(frozen=True)
class OrderPayment:
    order_id: str
    status: PaymentStatus
    amount: Decimal  # the held, captured or declined amount; 0.00 for a tombstone


@dataclass(frozen=True)
class Account:
    customer_id: str
    version: int = 0
    balance: Decimal = ZERO
    held: Decimal = ZERO
    deposits: Mapping[str, Decimal] = field(default_factory=lambda: MappingProxyType({}))
    payments: Mapping[str, OrderPayment] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def available(self) -> Decimal:
        return self.balance - self.held


def account_id(customer_id: str) -> str:
    """The event store's aggregate id of a customer's account."""
    return f"account#{customer_id}"


class PaymentError(Exception):
    """A payment command the account's current state does not allow. Subclass names are Step Functions
    error names: the saga catches them by name."""


class InvalidAmount(ValueError):
    pass


class PaymentDeclined(PaymentError):
    pass


class AuthorizationCancelled(PaymentError):
    """The order's authorization was voided (maybe before it arrived): it can never hold funds again."""


class AuthorizationConflict(PaymentError):
    """The order was already authorized (or declined) for another amount."""


class PaymentNotAuthorized(PaymentError):
    """A capture for an order that holds no funds."""


class PaymentAlreadyCaptured(PaymentError):
    """A void for an order whose payment was captured: past the pivot, only a refund could undo it."""


class DepositConflict(PaymentError):
    """The deposit id (customer + Idempotency-Key) was already used for another amount."""


# --- decisions ---------------------------------------------------------------------------------------


def decide_deposit(account: Account, deposit_id: str, amount: Decimal) -> list[DomainEvent]:
    amount = to_amount(amount)
    if not deposit_id:
        raise ValueError("a deposit needs a deposit id")
    previous = account.deposits.get(deposit_id)
    if previous is not None:
        if previous != amount:
            raise DepositConflict(
                f"deposit {deposit_id} was already made for {money(previous)}, not {money(amount)}"
            )
        return []
    return [events.FundsDeposited(deposit_id=deposit_id, amount=money(amount))]


def decide_authorize(account: Account, order_id: str, amount: Decimal) -> list[DomainEvent]:
    """Hold ``amount`` for the order, or record that it was declined. See ``authorization`` for the answer."""
    amount = to_amount(amount)
    _check_order_id(order_id)
    previous = account.payments.get(order_id)
    if previous is None:
        if amount <= account.available:
            return [events.PaymentAuthorized(order_id=order_id, amount=money(amount))]
        return [events.PaymentDeclined(order_id=order_id, amount=money(amount), reason=INSUFFICIENT_FUNDS)]
    if previous.status in (PaymentStatus.AUTHORIZED, PaymentStatus.CAPTURED, PaymentStatus.DECLINED):
        if previous.amount != amount:
            raise AuthorizationConflict(
                f"order {order_id} was already {previous.status.lower()} for {money(previous.amount)}, "
                f"not {money(amount)}"
            )
    return []  # a repeated step: the answer comes from the state


def authorization(account: Account, order_id: str) -> OrderPayment:
    """The outcome of authorizing the order, once decided: its payment, or the business error it ended in."""
    payment = account.payments.get(order_id)
    if payment is None:
        raise PaymentNotAuthorized(f"order {order_id} was never authorized")
    match payment.status:
        case PaymentStatus.DECLINED:
            raise PaymentDeclined(
                f"payment of {money(payment.amount)} for order {order_id} declined: insufficient funds"
            )
        case PaymentStatus.VOIDED | PaymentStatus.CANCELLED:
            raise AuthorizationCancelled(f"the authorization of order {order_id} was voided: it cannot hold funds")
    return payment


def decide_capture(account: Account, order_id: str) -> list[DomainEvent]:
    _check_order_id(order_id)
    payment = account.payments.get(order_id)
    if payment is not None and payment.status is PaymentStatus.CAPTURED:
        return []
    if payment is None or payment.status is not PaymentStatus.AUTHORIZED:
        state = "never authorized" if payment is None else payment.status.lower()
        raise PaymentNotAuthorized(f"order {order_id} holds no funds to capture: it is {state}")
    return [events.PaymentCaptured(order_id=order_id, amount=money(payment.amount))]


def decide_void(account: Account, order_id: str) -> list[DomainEvent]:
    _check_order_id(order_id)
    payment = account.payments.get(order_id)
    if payment is None:
        return [events.AuthorizationVoided(order_id=order_id)]  # a tombstone: a late authorize is refused
    match payment.status:
        case PaymentStatus.AUTHORIZED:
            return [events.AuthorizationVoided(order_id=order_id)]
        case PaymentStatus.CAPTURED:
            raise PaymentAlreadyCaptured(
                f"the payment of order {order_id} was captured ({money(payment.amount)}): it cannot be voided"
            )
    return []  # voided, cancelled or declined: nothing is held


def hold_released(account: Account, order_id: str) -> bool:
    """After a void: True when the order had held funds that are now released, False when it never held any."""
    payment = account.payments.get(order_id)
    return payment is not None and payment.status is PaymentStatus.VOIDED


def _check_order_id(order_id: str) -> None:
    if not order_id:
        raise ValueError("an order id is required")


# --- evolution ---------------------------------------------------------------------------------------


def evolve(account: Account, event: DomainEvent, version: int) -> Account:
    """Apply one event. A history the decisions could not have produced raises ValueError (corrupt stream)."""
    if version != account.version + 1:
        raise ValueError(f"event version {version} does not follow account version {account.version}")
    match event:
        case events.FundsDeposited():
            if event.deposit_id in account.deposits:
                raise ValueError(f"deposit {event.deposit_id} appears twice")
            amount = Decimal(event.amount)
            return replace(
                account,
                version=version,
                balance=account.balance + amount,
                deposits=_with(account.deposits, event.deposit_id, amount),
            )
        case events.PaymentAuthorized():
            _expect(account, event.order_id, None)
            amount = Decimal(event.amount)
            return _set(account, version, event.order_id, PaymentStatus.AUTHORIZED, amount, held=account.held + amount)
        case events.PaymentDeclined():
            _expect(account, event.order_id, None)
            return _set(account, version, event.order_id, PaymentStatus.DECLINED, Decimal(event.amount))
        case events.PaymentCaptured():
            held = _expect(account, event.order_id, PaymentStatus.AUTHORIZED)
            amount = Decimal(event.amount)
            if amount != held.amount:
                raise ValueError(f"order {event.order_id} captured {event.amount}, held {money(held.amount)}")
            return _set(
                account,
                version,
                event.order_id,
                PaymentStatus.CAPTURED,
                amount,
                held=account.held - amount,
                balance=account.balance - amount,
            )
        case events.AuthorizationVoided():
            previous = account.payments.get(event.order_id)
            if previous is None:
                return _set(account, version, event.order_id, PaymentStatus.CANCELLED, ZERO)
            _expect(account, event.order_id, PaymentStatus.AUTHORIZED)
            return _set(
                account, version, event.order_id, PaymentStatus.VOIDED, previous.amount, held=account.held - previous.amount
            )
    raise ValueError(f"the account aggregate does not know {event.event_type()}")


def replay(customer_id: str, history: Iterable[tuple[DomainEvent, int]]) -> Account:
    account = Account(customer_id=customer_id)
    for event, version in history:
        account = evolve(account, event, version)
    return account


def _with(mapping: Mapping[str, object], key: str, value: object) -> Mapping:
    return MappingProxyType({**mapping, key: value})


def _expect(account: Account, order_id: str, status: PaymentStatus | None) -> OrderPayment:
    payment = account.payments.get(order_id)
    if (payment.status if payment else None) is not status:
        found = payment.status if payment else "unknown"
        raise ValueError(f"order {order_id} is {found}, expected {status or 'unknown'}")
    return payment  # type: ignore[return-value]


def _set(
    account: Account,
    version: int,
    order_id: str,
    status: PaymentStatus,
    amount: Decimal,
    *,
    held: Decimal | None = None,
    balance: Decimal | None = None,
) -> Account:
    return replace(
        account,
        version=version,
        held=account.held if held is None else held,
        balance=account.balance if balance is None else balance,
        payments=_with(account.payments, order_id, OrderPayment(order_id=order_id, status=status, amount=amount)),
    )
