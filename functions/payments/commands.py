"""Commands the payments service accepts, validated strictly: the admin API's deposit and the saga's steps."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from shared.keys import IdempotencyKey

from .domain import money, to_amount

MAX_DEPOSIT = Decimal("1000000")
_DECIMAL_STRING = re.compile(r"^(0|[1-9][0-9]{0,11})(\.[0-9]{1,2})?$")

CustomerId = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
OrderId = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]


def _amount(value: str) -> str:
    """A decimal string > 0 with at most two decimals ("25", "25.5", "25.50"), normalized to "25.50"."""
    if not _DECIMAL_STRING.fullmatch(value):
        raise ValueError('must be a decimal string with at most two decimal places, e.g. "100.00"')
    return money(to_amount(value))


def _deposit(value: str) -> str:
    if Decimal(value) > MAX_DEPOSIT:
        raise ValueError(f"must be at most {money(MAX_DEPOSIT)}")
    return value


Amount = Annotated[str, StringConstraints(strict=True, max_length=16), AfterValidator(_amount)]
DepositAmount = Annotated[Amount, AfterValidator(_deposit)]


class DepositRequest(BaseModel):
    """The body of ``POST /admin/accounts/{customerId}/deposits``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    amount: DepositAmount


class DepositFunds(BaseModel):
    """Credit a customer's account once per (customer, Idempotency-Key). ``amount`` is normalized ("100.00")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customer_id: CustomerId
    idempotency_key: IdempotencyKey
    amount: DepositAmount


# --- saga steps (Step Functions lambda:invoke payloads; extra fields are ignored: the reader is tolerant) ---


class _SagaStep(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True, populate_by_name=True)

    order_id: OrderId = Field(alias="orderId")
    customer_id: CustomerId = Field(alias="customerId")


class AuthorizeStep(_SagaStep):
    action: Literal["authorize"]
    amount: Amount


class CaptureStep(_SagaStep):
    action: Literal["capture"]


class VoidStep(_SagaStep):
    action: Literal["void"]


SAGA_STEPS: dict[str, type[_SagaStep]] = {"authorize": AuthorizeStep, "capture": CaptureStep, "void": VoidStep}


# --- what payments need from the bus ---------------------------------------------------------------------


class CapturePayment(BaseModel):
    """Capture the order's payment: read from an OrderConfirmed event's ``data`` (a tolerant reader: only the
    fields payments need, whatever else the orders service puts in the event or adds later)."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    order_id: OrderId
    customer_id: CustomerId
