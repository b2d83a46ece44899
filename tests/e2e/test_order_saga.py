"""Issue 3 end to end: an order placed through the API runs the real ASL saga across every service.

Every test asserts the final state of every service involved: the order, the stock, the account, the emails.
"""

from __future__ import annotations

import json
import threading
import uuid
from decimal import Decimal
from typing import Any

import boto3
import pytest

from offline.runtime import Runtime

from .conftest import admin, customer, scan


def put_product(rt: Runtime, sku: str, price: str, stock: int) -> None:
    response = rt.api.request(
        "PUT", f"/admin/products/{sku}", headers={**admin(), "Content-Type": "application/json"},
        body=json.dumps({"name": f"Product {sku}", "price": price, "stock": stock}),
    )
    assert response.status in (200, 201), response.body


def product(rt: Runtime, sku: str) -> dict[str, Any]:
    response = rt.api.request("GET", f"/admin/products/{sku}", headers=admin())
    assert response.status == 200, response.body
    return response.json()


def deposit(rt: Runtime, customer_id: str, amount: str) -> None:
    response = rt.api.request(
        "POST", f"/admin/accounts/{customer_id}/deposits",
        headers={**admin(), "Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex},
        body=json.dumps({"amount": amount}),
    )
    assert response.status in (200, 201), response.body


def account(rt: Runtime, customer_id: str) -> dict[str, Any]:
    response = rt.api.request("GET", "/accounts/me", headers=customer(customer_id))
    assert response.status == 200, response.body
    return response.json()


def place(rt: Runtime, customer_id: str, lines: list[tuple[str, int]]) -> str:
    response = rt.api.request(
        "POST", "/orders",
        headers={**customer(customer_id), "Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex},
        body=json.dumps({"items": [{"sku": s, "quantity": q} for s, q in lines]}),
    )
    assert response.status == 202, response.body
    return response.json()["orderId"]


def order(rt: Runtime, customer_id: str, order_id: str) -> dict[str, Any]:
    response = rt.api.request("GET", f"/orders/{order_id}", headers=customer(customer_id))
    assert response.status == 200, response.body
    return response.json()


def notifications(rt: Runtime) -> list[dict[str, Any]]:
    return scan(rt.physical("NotificationsTable").name)


def emails_sent() -> int:
    return int(boto3.client("ses").get_send_quota()["SentLast24Hours"])


def executions(rt: Runtime) -> list[dict[str, Any]]:
    sfn = boto3.client("stepfunctions")
    arn = rt.physical("OrderSagaStateMachine").arn
    return [sfn.describe_execution(executionArn=e["executionArn"]) for e in sfn.list_executions(stateMachineArn=arn)["executions"]]


@pytest.fixture
def shop(rt: Runtime) -> Runtime:
    put_product(rt, "SKU-1", "12.50", 10)
    put_product(rt, "SKU-2", "3.00", 5)
    return rt


def test_happy_path_confirms_and_moves_stock_and_money_exactly_once(shop: Runtime) -> None:
    deposit(shop, "alice", "100.00")
    order_id = place(shop, "alice", [("SKU-1", 2), ("SKU-2", 1)])
    shop.settle()

    view = order(shop, "alice", order_id)
    assert view["status"] == "CONFIRMED" and view["reason"] is None
    assert view["total"] == "28.00"
    assert view["items"] == [
        {"sku": "SKU-1", "quantity": 2, "unitPrice": "12.50"},
        {"sku": "SKU-2", "quantity": 1, "unitPrice": "3.00"},
    ]
    assert (product(shop, "SKU-1")["available"], product(shop, "SKU-1")["reserved"], product(shop, "SKU-1")["sold"]) == (8, 0, 2)
    assert (product(shop, "SKU-2")["available"], product(shop, "SKU-2")["sold"]) == (4, 1)
    assert account(shop, "alice") == {"customerId": "alice", "balance": "72.00", "held": "0.00"}
    [sent] = notifications(shop)
    assert sent["status"]["S"] == "SENT" and sent["to"]["S"] == "alice@example.com"
    assert emails_sent() == 1
    [execution] = executions(shop)
    assert execution["status"] == "SUCCEEDED" and execution["name"] == order_id


@pytest.mark.parametrize(
    ("lines", "reason"),
    [([("SKU-2", 6)], "OUT_OF_STOCK"), ([("SKU-1", 1), ("NOPE", 1)], "UNKNOWN_PRODUCT")],
)
def test_inventory_failures_cancel_and_move_nothing(shop: Runtime, lines: list[tuple[str, int]], reason: str) -> None:
    deposit(shop, "bob", "100.00")
    order_id = place(shop, "bob", lines)
    shop.settle()
    view = order(shop, "bob", order_id)
    assert (view["status"], view["reason"]) == ("CANCELLED", reason)
    assert (product(shop, "SKU-1")["available"], product(shop, "SKU-1")["reserved"]) == (10, 0)
    assert (product(shop, "SKU-2")["available"], product(shop, "SKU-2")["reserved"]) == (5, 0)
    assert account(shop, "bob") == {"customerId": "bob", "balance": "100.00", "held": "0.00"}
    [sent] = notifications(shop)
    assert sent["type"]["S"] == "OrderCancelled" and emails_sent() == 1
    assert executions(shop)[0]["status"] == "SUCCEEDED"


def test_payment_declined_releases_the_stock_and_holds_nothing(shop: Runtime) -> None:
    deposit(shop, "carol", "10.00")
    order_id = place(shop, "carol", [("SKU-1", 2)])
    shop.settle()
    view = order(shop, "carol", order_id)
    assert (view["status"], view["reason"], view["total"]) == ("CANCELLED", "PAYMENT_DECLINED", "25.00")
    assert (product(shop, "SKU-1")["available"], product(shop, "SKU-1")["reserved"], product(shop, "SKU-1")["sold"]) == (10, 0, 0)
    assert account(shop, "carol") == {"customerId": "carol", "balance": "10.00", "held": "0.00"}
    assert emails_sent() == 1


def test_a_compensation_that_keeps_failing_leaves_the_order_needing_attention(shop: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    import inventory.saga

    original = inventory.saga.handler

    def broken_release(event: dict[str, Any], context: Any) -> Any:
        if event.get("action") == "release":
            raise RuntimeError("inventory is down")
        return original(event, context)

    monkeypatch.setattr(inventory.saga, "handler", broken_release)
    deposit(shop, "dan", "1.00")
    order_id = place(shop, "dan", [("SKU-1", 1)])
    shop.settle()
    view = order(shop, "dan", order_id)
    assert view["status"] == "NEEDS_ATTENTION" and "compensation failed" in view["reason"]
    [execution] = executions(shop)
    assert execution["status"] == "FAILED" and execution.get("error") == "CompensationFailed"
    # the stock stays visibly reserved for an operator, the payment hold was voided, no email claims an outcome
    assert product(shop, "SKU-1")["reserved"] == 1
    assert account(shop, "dan")["held"] == "0.00"
    assert emails_sent() == 0


def test_the_same_order_placed_delivered_twice_runs_one_saga(shop: Runtime, spy: Any) -> None:
    deposit(shop, "erin", "100.00")
    order_id = place(shop, "erin", [("SKU-1", 1)])
    shop.settle()
    [placed] = [e for e in spy.drain() if e["detail-type"] == "OrderPlaced"]
    boto3.client("events").put_events(
        Entries=[{"EventBusName": shop.physical("EventsBus").name, "Source": placed["source"],
                  "DetailType": placed["detail-type"], "Detail": json.dumps(placed["detail"])}]
    )
    shop.settle()
    assert len(executions(shop)) == 1
    assert order(shop, "erin", order_id)["status"] == "CONFIRMED"
    assert product(shop, "SKU-1")["sold"] == 1 and account(shop, "erin")["balance"] == "87.50"
    assert emails_sent() == 1


def test_every_saga_task_invoked_twice_changes_nothing(shop: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    import inventory.saga
    import orders.saga
    import payments.saga

    for module in (inventory.saga, orders.saga, payments.saga):
        original = module.handler

        def twice(event: dict[str, Any], context: Any, _original=original) -> Any:  # noqa: ANN001
            _original(event, context)
            return _original(event, context)

        monkeypatch.setattr(module, "handler", twice)
    deposit(shop, "fay", "100.00")
    order_id = place(shop, "fay", [("SKU-1", 2)])
    shop.settle()
    view = order(shop, "fay", order_id)
    assert view["status"] == "CONFIRMED" and view["version"] == 3  # placed, priced, confirmed: once each
    assert (product(shop, "SKU-1")["available"], product(shop, "SKU-1")["sold"]) == (8, 2)
    assert account(shop, "fay") == {"customerId": "fay", "balance": "75.00", "held": "0.00"}
    assert emails_sent() == 1


def test_many_orders_racing_for_a_few_units_never_oversell(rt: Runtime) -> None:
    put_product(rt, "RARE", "5.00", 5)
    customers = [f"racer-{n}" for n in range(16)]
    for name in customers:
        deposit(rt, name, "20.00")
    placed: list[tuple[str, str]] = []
    lock = threading.Lock()

    def buy(name: str) -> None:
        order_id = place(rt, name, [("RARE", 1)])
        with lock:
            placed.append((name, order_id))

    threads = [threading.Thread(target=buy, args=(name,)) for name in customers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rt.settle(timeout=120)

    statuses = [order(rt, name, order_id) for name, order_id in placed]
    assert all(s["status"] in ("CONFIRMED", "CANCELLED") for s in statuses)
    confirmed = [s for s in statuses if s["status"] == "CONFIRMED"]
    assert len(confirmed) == 5
    assert all(s["reason"] == "OUT_OF_STOCK" for s in statuses if s["status"] == "CANCELLED")
    rare = product(rt, "RARE")
    assert (rare["available"], rare["reserved"], rare["sold"]) == (0, 0, 5)
    balances = [Decimal(account(rt, name)["balance"]) for name in customers]
    assert all(b >= 0 for b in balances) and sum(balances) == Decimal("20.00") * 16 - Decimal("25.00")


def test_a_redelivered_outcome_event_sends_one_email(shop: Runtime, spy: Any) -> None:
    deposit(shop, "gus", "100.00")
    place(shop, "gus", [("SKU-2", 1)])
    shop.settle()
    [confirmed] = [e for e in spy.drain() if e["detail-type"] == "OrderConfirmed"]
    for _ in range(2):
        boto3.client("events").put_events(
            Entries=[{"EventBusName": shop.physical("EventsBus").name, "Source": confirmed["source"],
                      "DetailType": confirmed["detail-type"], "Detail": json.dumps(confirmed["detail"])}]
        )
    shop.settle()
    [record] = notifications(shop)
    assert record["status"]["S"] == "SENT" and record["pk"]["S"] == f"notification#{confirmed['detail']['id']}"
    assert emails_sent() == 1
