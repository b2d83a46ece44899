"""The order aggregate and the order service over the in-memory event store."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from orders.commands import PlaceOrder, PlaceOrderRequest
from orders.domain import OrderStatus
from orders.queries import order_view
from orders.service import IdempotencyKeyReused, OrderService, order_id_for
from shared.event_store import InMemoryEventStore


def place(customer: str = "c-1", key: str = "k-1", items: list[dict] | None = None) -> PlaceOrder:
    body = PlaceOrderRequest.model_validate({"items": items or [{"sku": "SKU-1", "quantity": 2}]})
    return PlaceOrder(customer_id=customer, idempotency_key=key, items=body.items)


def test_placing_an_order_appends_order_placed_and_the_order_is_pending() -> None:
    store = InMemoryEventStore()
    order = OrderService(store).place(place())
    assert order.status is OrderStatus.PENDING and order.version == 1
    [event] = store.load(order.order_id)
    assert event.type == "OrderPlaced" and event.subject == order.order_id and event.correlationid == order.order_id
    assert event.data == {
        "order_id": order.order_id, "customer_id": "c-1", "lines": [{"sku": "SKU-1", "quantity": 2}], "contact_email": None
    }
    assert order_view(order) == {
        "orderId": order.order_id,
        "customerId": "c-1",
        "status": "PENDING",
        "items": [{"sku": "SKU-1", "quantity": 2, "unitPrice": None}],
        "total": None,
        "reason": None,
        "version": 1,
    }


def test_the_same_key_places_the_order_once() -> None:
    store = InMemoryEventStore()
    service = OrderService(store)
    first = service.place(place())
    again = service.place(place())
    assert again.order_id == first.order_id == order_id_for("c-1", "k-1")
    assert len(store.load(first.order_id)) == 1


def test_the_same_key_with_other_items_is_refused() -> None:
    service = OrderService(InMemoryEventStore())
    service.place(place())
    with pytest.raises(IdempotencyKeyReused):
        service.place(place(items=[{"sku": "SKU-1", "quantity": 3}]))


def test_keys_are_per_customer() -> None:
    service = OrderService(InMemoryEventStore())
    assert service.place(place(customer="a")).order_id != service.place(place(customer="b")).order_id


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"items": []},
        {"items": [{"sku": "S", "quantity": 0}]},
        {"items": [{"sku": "S", "quantity": 1001}]},
        {"items": [{"sku": "S", "quantity": "2"}]},
        {"items": [{"sku": "S", "quantity": 2.0}]},
        {"items": [{"sku": "S", "quantity": True}]},
        {"items": [{"sku": "", "quantity": 1}]},
        {"items": [{"sku": "x" * 65, "quantity": 1}]},
        {"items": [{"sku": "bad sku", "quantity": 1}]},
        {"items": [{"sku": 12, "quantity": 1}]},
        {"items": [{"sku": "S", "quantity": 1, "price": "1.00"}]},
        {"items": [{"sku": "S", "quantity": 1}], "customerId": "someone-else"},
        {"items": [{"sku": f"S{i}", "quantity": 1} for i in range(51)]},
        {"items": [{"sku": "S", "quantity": 1}, {"sku": "S", "quantity": 2}]},
        {"items": "SKU-1"},
    ],
)
def test_bad_bodies_are_rejected(body: dict) -> None:
    with pytest.raises(ValidationError):
        PlaceOrderRequest.model_validate(body)


def test_limits_are_inclusive() -> None:
    PlaceOrderRequest.model_validate({"items": [{"sku": "A" * 64, "quantity": 1000}]})
    PlaceOrderRequest.model_validate({"items": [{"sku": f"S.{i}_-", "quantity": 1} for i in range(50)]})


@pytest.mark.parametrize("key", ["", "x" * 129, "has space", "tab\t", "é"])
def test_bad_idempotency_keys_are_rejected(key: str) -> None:
    with pytest.raises(ValidationError):
        place(key=key)


def priced(service: OrderService, order_id: str, price: str = "12.50") -> None:
    from decimal import Decimal

    service.price(order_id, [("SKU-1", 2, Decimal(price))])


def test_the_saga_steps_record_prices_and_the_outcome_once() -> None:
    store = InMemoryEventStore()
    service = OrderService(store)
    order = service.place(place())
    priced(service, order.order_id)
    priced(service, order.order_id)  # a repeated step decides nothing
    confirmed = service.confirm(order.order_id)
    service.confirm(order.order_id)
    assert confirmed.status is OrderStatus.CONFIRMED
    view = order_view(confirmed)
    assert view["total"] == "25.00" and view["items"][0]["unitPrice"] == "12.50" and view["version"] == 3
    assert [e.type for e in store.load(order.order_id)] == ["OrderPlaced", "OrderPriced", "OrderConfirmed"]


def test_a_cancelled_order_keeps_its_reason_and_cannot_be_confirmed() -> None:
    from orders.domain import InvalidTransition

    service = OrderService(InMemoryEventStore())
    order = service.place(place())
    cancelled = service.cancel(order.order_id, "OUT_OF_STOCK")
    assert service.cancel(order.order_id, "OUT_OF_STOCK").version == cancelled.version
    assert cancelled.status is OrderStatus.CANCELLED and cancelled.reason == "OUT_OF_STOCK"
    with pytest.raises(InvalidTransition):
        service.confirm(order.order_id)


def test_pricing_must_match_the_lines() -> None:
    from decimal import Decimal

    from orders.domain import InvalidTransition

    service = OrderService(InMemoryEventStore())
    order = service.place(place())
    with pytest.raises(InvalidTransition):
        service.price(order.order_id, [("SKU-1", 3, Decimal("1.00"))])


def test_a_failed_compensation_is_visible() -> None:
    service = OrderService(InMemoryEventStore())
    order = service.place(place())
    flagged = service.flag_for_attention(order.order_id, "compensation failed: X")
    assert flagged.status is OrderStatus.NEEDS_ATTENTION and order_view(flagged)["reason"] == "compensation failed: X"


# --- the saga's pivot: the confirmation records the prices (no step of its own) -------------------------------
from decimal import Decimal  # noqa: E402

from orders.domain import AlreadyConfirmed, InvalidTransition  # noqa: E402
from orders.events import CATALOG, OrderConfirmed  # noqa: E402
from shared.events import wrap  # noqa: E402

TWO_AT_12_50 = [("SKU-1", 2, Decimal("12.50"))]


def test_the_pivot_confirms_at_the_reserved_prices_in_one_event() -> None:
    store = InMemoryEventStore()
    service = OrderService(store)
    order = service.place(place())
    confirmed = service.confirm(order.order_id, TWO_AT_12_50, Decimal("25.00"))
    again = service.confirm(order.order_id, TWO_AT_12_50, Decimal("25.00"))  # a repeated step decides nothing
    assert again == confirmed
    view = order_view(confirmed)
    assert (view["status"], view["total"], view["version"]) == ("CONFIRMED", "25.00", 2)
    assert view["items"] == [{"sku": "SKU-1", "quantity": 2, "unitPrice": "12.50"}]
    placed, event = store.load(order.order_id)
    assert (event.type, event.dataversion) == ("OrderConfirmed", "2")
    assert event.data == {"order_id": order.order_id, "customer_id": "c-1", "total": "25.00", "contact_email": None,
                          "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price": "12.50"}]}


@pytest.mark.parametrize(
    ("priced", "authorized", "problem"),
    [
        ([("SKU-1", 3, Decimal("12.50"))], Decimal("37.50"), "do not match"),  # other lines than the order's
        ([("SKU-9", 2, Decimal("12.50"))], Decimal("25.00"), "do not match"),
        (TWO_AT_12_50, Decimal("24.99"), "but 24.99 was authorized"),  # the hold is not the total
    ],
)
def test_the_pivot_refuses_prices_that_are_not_the_orders_or_not_what_was_authorized(
    priced: list[tuple[str, int, Decimal]], authorized: Decimal, problem: str
) -> None:
    store = InMemoryEventStore()
    service = OrderService(store)
    order = service.place(place())
    with pytest.raises(InvalidTransition, match=problem):
        service.confirm(order.order_id, priced, authorized)
    assert [e.type for e in store.load(order.order_id)] == ["OrderPlaced"]


def test_confirm_and_cancel_exclude_each_other_whichever_comes_first() -> None:
    service = OrderService(InMemoryEventStore())
    confirmed = service.place(place(key="k-confirmed"))
    service.confirm(confirmed.order_id, TWO_AT_12_50, Decimal("25.00"))
    with pytest.raises(AlreadyConfirmed):  # the saga then compensates nothing
        service.cancel(confirmed.order_id, "TECHNICAL_FAILURE")
    assert service.load(confirmed.order_id).status is OrderStatus.CONFIRMED  # type: ignore[union-attr]

    cancelled = service.place(place(key="k-cancelled"))
    service.cancel(cancelled.order_id, "PAYMENT_DECLINED")
    with pytest.raises(InvalidTransition) as refused:
        service.confirm(cancelled.order_id, TWO_AT_12_50, Decimal("25.00"))
    assert not isinstance(refused.value, AlreadyConfirmed)
    assert service.load(cancelled.order_id).status is OrderStatus.CANCELLED  # type: ignore[union-attr]


def test_an_unpriced_order_is_not_confirmed_without_prices() -> None:
    service = OrderService(InMemoryEventStore())
    order = service.place(place())
    with pytest.raises(InvalidTransition, match="has no prices"):
        service.confirm(order.order_id)


def test_executions_of_the_former_definition_price_then_confirm_without_prices() -> None:
    """Standard executions keep the definition they started with: one started before the deploy still sends
    RecordPrices, then ConfirmOrder without prices. The v2 confirmation then carries the recorded prices."""
    store = InMemoryEventStore()
    service = OrderService(store)
    order = service.place(place())
    service.price(order.order_id, TWO_AT_12_50)
    confirmed = service.confirm(order.order_id)
    assert (confirmed.status, confirmed.total, confirmed.version) == (OrderStatus.CONFIRMED, Decimal("25.00"), 3)
    assert store.load(order.order_id)[-1].data["lines"] == [{"sku": "SKU-1", "quantity": 2, "unit_price": "12.50"}]
    # and a confirmation at other prices than those recorded is refused
    other = service.place(place(key="k-2"))
    service.price(other.order_id, TWO_AT_12_50)
    with pytest.raises(InvalidTransition, match="was priced at 25.00, not 20.00"):
        service.confirm(other.order_id, [("SKU-1", 2, Decimal("10.00"))])


def test_a_stored_v1_confirmation_is_upcast_and_keeps_the_prices_of_its_order_priced() -> None:
    store = InMemoryEventStore()
    service = OrderService(store)
    order = service.place(place())
    service.price(order.order_id, TWO_AT_12_50)
    v1 = wrap(OrderConfirmed(order_id=order.order_id, customer_id="c-1", total="25.00"), source="orderflow.orders",
              subject=order.order_id, version=3)
    v1 = v1.model_copy(update={"dataversion": "1", "data": {k: v for k, v in v1.data.items() if k != "lines"}})
    store.append(order.order_id, 2, [v1])
    assert CATALOG.upcast(v1).data["lines"] is None and CATALOG.upcast(v1).dataversion == "2"
    loaded = service.load(order.order_id)
    assert loaded is not None and (loaded.status, loaded.total, loaded.version) == (OrderStatus.CONFIRMED, Decimal("25.00"), 3)
    assert order_view(loaded)["items"] == [{"sku": "SKU-1", "quantity": 2, "unitPrice": "12.50"}]


def test_the_outcome_hook_hears_each_appended_event_once_and_never_a_repeat() -> None:
    heard: list[str] = []
    service = OrderService(InMemoryEventStore(), on_appended=lambda events: heard.extend(e.event_type() for e in events))
    order = service.place(place())
    for _ in range(2):
        service.confirm(order.order_id, TWO_AT_12_50, Decimal("25.00"))
    with pytest.raises(AlreadyConfirmed):
        service.cancel(order.order_id, "TECHNICAL_FAILURE")
    for _ in range(2):
        service.flag_for_attention(order.order_id, "compensation failed: X")
    assert heard == ["OrderPlaced", "OrderConfirmed", "OrderNeedsAttention"]
