"""What the inventory accepts, validated strictly: the saga's task payloads and the admin's product body."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError, field_validator

from shared.http import validation_errors

from .domain import MAX_LINES, InvalidRequest, Line

SKU_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"  # the orders API accepts the same skus
Sku = Annotated[str, StringConstraints(strict=True, pattern=SKU_PATTERN)]
OrderId = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9._:-]{1,128}$")]
# A positive amount with at most 2 decimals, as a string: "12.50", "12.5", "12". No signs, exponents or spaces.
Price = Annotated[str, StringConstraints(strict=True, pattern=r"^(0|[1-9][0-9]{0,8})(\.[0-9]{1,2})?$")]
MAX_STOCK = 1_000_000_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)


class LineRequest(_Strict):
    sku: Sku
    quantity: int = Field(ge=1, le=1000)


class Reserve(_Strict):
    action: Literal["reserve"]
    order_id: OrderId = Field(alias="orderId")
    lines: list[LineRequest] = Field(min_length=1, max_length=MAX_LINES)

    @field_validator("lines")
    @classmethod
    def _skus_are_unique(cls, lines: list[LineRequest]) -> list[LineRequest]:
        skus = [line.sku for line in lines]
        duplicates = sorted({sku for sku in skus if skus.count(sku) > 1})
        if duplicates:
            raise ValueError(f"sku {', '.join(duplicates)} appears more than once: send one line per sku")
        return lines

    def domain_lines(self) -> list[Line]:
        return [Line(sku=line.sku, quantity=line.quantity) for line in self.lines]


class Release(_Strict):
    action: Literal["release"]
    order_id: OrderId = Field(alias="orderId")


class Commit(_Strict):
    """The former definition's CommitReservation step (executions that started before it moved to
    commit_on_confirmed.py keep the definition they started with, so it is still answered)."""

    action: Literal["commit"]
    order_id: OrderId = Field(alias="orderId")


SagaStep = Annotated[Reserve | Release | Commit, Field(discriminator="action")]
_saga_step = TypeAdapter(SagaStep)
ACTIONS = ("reserve", "release", "commit")


def parse_saga_step(payload: Any) -> Reserve | Release | Commit:
    """The saga task's payload as a command, or InvalidRequest saying what is wrong with it."""
    if not isinstance(payload, dict):
        raise InvalidRequest("the payload must be a JSON object")
    action = payload.get("action")
    if action not in ACTIONS:
        raise InvalidRequest(f"unknown action {action!r}: expected one of {', '.join(ACTIONS)}")
    try:
        return _saga_step.validate_python(payload)
    except ValidationError as error:
        problems = "; ".join(
            f"{e['field'].removeprefix(action + '.')}: {e['problem']}" for e in validation_errors(error)
        )
        raise InvalidRequest(f"invalid {action} request: {problems}") from None


class SetProductRequest(_Strict):
    """The body of ``PUT /admin/products/{sku}``. ``stock`` is the new available count (see domain)."""

    name: str = Field(min_length=1, max_length=200)
    price: Price
    stock: int = Field(ge=0, le=MAX_STOCK)

    @field_validator("name")
    @classmethod
    def _name_is_not_blank(cls, name: str) -> str:
        if not name.strip():
            raise ValueError("name must not be blank")
        if any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise ValueError("name must not contain control characters")
        return name

    @field_validator("price")
    @classmethod
    def _price_is_positive(cls, price: str) -> str:
        if Decimal(price) <= 0:
            raise ValueError("price must be above 0")
        return price

    @property
    def price_amount(self) -> Decimal:
        return Decimal(self.price)


class CommitOrder(BaseModel):
    """Sell an order's reserved units: read from an OrderConfirmed event's ``data`` (a tolerant reader: only the
    field inventory needs, whatever else the orders service puts in the event or adds later)."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    order_id: OrderId
