"""Commands the order service accepts (requests to this one receiver), validated strictly."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from shared.keys import IdempotencyKey

Sku = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]


class ItemRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    sku: Sku
    quantity: int = Field(ge=1, le=1000)


class PlaceOrderRequest(BaseModel):
    """The body of ``POST /orders``. The client sends no prices: prices belong to the inventory service."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    items: list[ItemRequest] = Field(min_length=1, max_length=50)

    @field_validator("items")
    @classmethod
    def _skus_are_unique(cls, items: list[ItemRequest]) -> list[ItemRequest]:
        seen: set[str] = set()
        for item in items:
            if item.sku in seen:
                raise ValueError(f"sku {item.sku} appears more than once: send one line per sku")
            seen.add(item.sku)
        return items




class PlaceOrder(BaseModel):
    """Place an order for a customer. ``idempotency_key`` is the client's key for this one intent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customer_id: str = Field(min_length=1)
    idempotency_key: IdempotencyKey
    items: list[ItemRequest]
    contact_email: str | None = Field(default=None, max_length=254)
