"""Queries the payments service answers, and the views they return (money as decimal strings, never floats)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.history import events_at

from . import domain
from .domain import Account, money
from .events import CATALOG
from .service import PaymentsService


def account_view(account: Account) -> dict[str, Any]:
    """``{"customerId", "balance", "held"}``: an account without events answers "0.00" for both."""
    return {"customerId": account.customer_id, "balance": money(account.balance), "held": money(account.held)}


def account_state_view(account: Account) -> dict[str, Any]:
    """The account view with the version it is at: what time travel answers."""
    return {**account_view(account), "version": account.version}


def account_at(
    service: PaymentsService, customer_id: str, *, version: int | None = None, as_of: datetime | None = None
) -> Account | None:
    """The account as it was right after ``version``, or at ``as_of`` (exactly one). Every account exists,
    empty, before its first event (as ``GET /admin/accounts/{id}`` answers), so only a version the account
    has not reached is None."""
    events = events_at(lambda up_to: service.events(customer_id, up_to_version=up_to), version=version, as_of=as_of)
    if events is None:
        return None
    return domain.replay(customer_id, ((CATALOG.decode(e), e.version) for e in events))
