"""How a customer account is snapshotted (see shared/snapshots.py): its state as JSON, and how to fold events.

The account keeps every deposit id and every order's payment (they make deposits and saga steps idempotent),
so its snapshot grows with its history: ~50 bytes per deposit or order, stored compressed above 32 KB (an
account with 10,000 deposits is about 220 KB). Bump ``SCHEMA_VERSION`` whenever ``encode``'s shape or meaning
changes: stored account snapshots are then ignored (full replay) and rebuilt by the snapshotter.
"""

from __future__ import annotations

from decimal import Decimal
from types import MappingProxyType
from typing import Any

from shared.events import EventEnvelope
from shared.snapshots import Snapshotting

from . import domain
from .domain import Account, OrderPayment, PaymentStatus
from .events import CATALOG

SCHEMA_VERSION = 1
_PREFIX = domain.account_id("")


def customer_id_of(aggregate_id: str) -> str:
    if not aggregate_id.startswith(_PREFIX) or aggregate_id == _PREFIX:
        raise ValueError(f"{aggregate_id!r} is not an account's aggregate id")
    return aggregate_id[len(_PREFIX) :]


def _initial(aggregate_id: str) -> Account:
    return Account(customer_id=customer_id_of(aggregate_id))


def _apply(account: Account, envelope: EventEnvelope) -> Account:
    return domain.evolve(account, CATALOG.decode(envelope), envelope.version)


def _version(account: Account) -> int:
    return account.version


def _decimal(value: Any) -> Decimal:
    if not isinstance(value, str):
        raise TypeError(f"an amount is a decimal string, not {type(value).__name__}")
    return Decimal(value)


def encode(account: Account) -> dict[str, Any]:
    return {
        "customerId": account.customer_id,
        "version": account.version,
        "balance": str(account.balance),
        "held": str(account.held),
        "deposits": {deposit_id: str(amount) for deposit_id, amount in account.deposits.items()},
        "payments": {
            order_id: {"status": payment.status.value, "amount": str(payment.amount)}
            for order_id, payment in account.payments.items()
        },
    }


def decode(data: dict[str, Any]) -> Account:
    return Account(
        customer_id=str(data["customerId"]),
        version=int(data["version"]),
        balance=_decimal(data["balance"]),
        held=_decimal(data["held"]),
        deposits=MappingProxyType({str(k): _decimal(v) for k, v in data["deposits"].items()}),
        payments=MappingProxyType(
            {
                str(order_id): OrderPayment(
                    order_id=str(order_id), status=PaymentStatus(p["status"]), amount=_decimal(p["amount"])
                )
                for order_id, p in data["payments"].items()
            }
        ),
    )


ACCOUNT_SNAPSHOTS: Snapshotting[Account] = Snapshotting(
    aggregate_type="account",
    schema_version=SCHEMA_VERSION,
    initial=_initial,
    apply=_apply,
    version_of=_version,
    encode=encode,
    decode=decode,
)
