"""Queries the payments service answers, and the views they return (money as decimal strings, never floats)."""

from __future__ import annotations

from typing import Any

from .domain import Account, money


def account_view(account: Account) -> dict[str, Any]:
    """``{"customerId", "balance", "held"}``: an account without events answers "0.00" for both."""
    return {"customerId": account.customer_id, "balance": money(account.balance), "held": money(account.held)}
