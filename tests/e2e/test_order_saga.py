"""The order saga end to end, in both profiles: an order placed through the API runs the real ASL, as a Standard
and as an Express workflow, across every service.

Happy path: ReserveInventory -> AuthorizePayment -> ConfirmOrder (the pivot), three state transitions; payments
capture and inventory commits by choreography on OrderConfirmed. On failure: cancel (the order decides
confirm-or-cancel once), void, release.

Every test asserts the final state of every service involved: the order, the stock, the account, the emails.
Express is at-least-once and has no execution-name dedupe, so the tests that start a saga twice (or invoke a
step twice) must come out exactly once through the steps' idempotency alone.
"""

from __future__ import annotations

import json
import threading
import uuid
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from offline import stepfunctions
from offline.runtime import Runtime

from .conftest import admin, customer, running, scan


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


def stock(rt: Runtime, sku: str) -> tuple[int, int, int]:
    view = product(rt, sku)
    return view["available"], view["reserved"], view["sold"]


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


def account_events(rt: Runtime, customer_id: str) -> list[str]:
    response = rt.api.request("GET", f"/admin/accounts/{customer_id}/history", headers=admin())
    assert response.status == 200, response.body
    return [event["type"] for event in response.json()["events"]]


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


def order_events(rt: Runtime, customer_id: str, order_id: str) -> list[str]:
    response = rt.api.request("GET", f"/orders/{order_id}/history", headers=customer(customer_id))
    assert response.status == 200, response.body
    return [event["type"] for event in response.json()["events"]]


def notifications(rt: Runtime) -> list[dict[str, Any]]:
    return scan(rt.physical("NotificationsTable").name)


def emails_sent() -> int:
    return int(boto3.client("ses").get_send_quota()["SentLast24Hours"])


def executions(rt: Runtime) -> list[Any]:
    """Every execution of the saga, oldest first, either type (from the runtime: AWS lists no Express ones)."""
    return stepfunctions.executions(rt.account_id, rt.region, rt.physical("OrderSagaStateMachine").arn)


def is_express(rt: Runtime) -> bool:
    machine = boto3.client("stepfunctions").describe_state_machine(stateMachineArn=rt.physical("OrderSagaStateMachine").arn)
    return machine["type"] == "EXPRESS"


def states_entered(rt: Runtime, execution_arn: str) -> list[str]:
    """The states an execution entered, in order: from its history (Standard) or its log group (Express)."""
    if ":express:" not in execution_arn:
        history = boto3.client("stepfunctions").get_execution_history(executionArn=execution_arn, maxResults=1000)
        return [e["stateEnteredEventDetails"]["name"] for e in history["events"] if e["type"].endswith("StateEntered")]
    group = rt.physical("OrderSagaLogs").name
    events = boto3.client("logs").filter_log_events(logGroupName=group)["events"]
    records = [json.loads(e["message"]) for e in events]
    mine = sorted((r for r in records if r["execution_arn"] == execution_arn), key=lambda r: int(r["id"]))
    return [r["details"]["name"] for r in mine if r["type"].endswith("StateEntered")]


def saga_input(order_id: str, customer_id: str, lines: list[tuple[str, int]]) -> str:
    """What the starter gives StartExecution (orders.starter.saga_input)."""
    return json.dumps({"orderId": order_id, "customerId": customer_id,
                       "lines": [{"sku": sku, "quantity": quantity} for sku, quantity in lines]})


@pytest.fixture
def rt(profile_rt: Runtime) -> Runtime:
    """This module's runtime: the synthesized template of each profile (tests/e2e/conftest.py)."""
    return profile_rt


@pytest.fixture
def shop(rt: Runtime) -> Runtime:
    put_product(rt, "SKU-1", "12.50", 10)
    put_product(rt, "SKU-2", "3.00", 5)
    return rt


def test_the_profile_runs_its_workflow_type(rt: Runtime, profile: str) -> None:
    assert is_express(rt) is (profile == "express")
    sfn = boto3.client("stepfunctions")
    if profile == "express":  # AWS keeps no list or history of Express executions: only the log group
        with pytest.raises(ClientError, match="StateMachineTypeNotSupported"):
            sfn.list_executions(stateMachineArn=rt.physical("OrderSagaStateMachine").arn)
    else:
        assert sfn.list_executions(stateMachineArn=rt.physical("OrderSagaStateMachine").arn)["executions"] == []


def test_happy_path_is_three_transitions_and_moves_stock_and_money_exactly_once(shop: Runtime) -> None:
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
    # Two events: the prices are recorded by the confirmation (no RecordPrices step, no OrderPriced).
    assert order_events(shop, "alice", order_id) == ["OrderPlaced", "OrderConfirmed"] and view["version"] == 2
    # After the pivot, by choreography: the inventory committed, the payments captured.
    assert stock(shop, "SKU-1") == (8, 0, 2) and stock(shop, "SKU-2") == (4, 0, 1)
    assert account(shop, "alice") == {"customerId": "alice", "balance": "72.00", "held": "0.00"}
    assert account_events(shop, "alice") == ["FundsDeposited", "PaymentAuthorized", "PaymentCaptured"]
    [sent] = notifications(shop)
    assert sent["status"]["S"] == "SENT" and sent["to"]["S"] == "alice@example.com"
    assert emails_sent() == 1
    [execution] = executions(shop)
    assert execution.status == "SUCCEEDED" and execution.name == order_id
    # Exactly three state transitions (Standard bills each state entered): the saga ends at the pivot.
    assert states_entered(shop, execution.execution_arn) == ["ReserveInventory", "AuthorizePayment", "ConfirmOrder"]


def test_standard_history_has_exactly_three_state_entered_events(template: dict[str, Any]) -> None:
    """Standard only (GetExecutionHistory exists for Standard executions only; Express: the test above)."""
    for rt in running(template):
        happy_path_history_has_three_states(rt)


def happy_path_history_has_three_states(rt: Runtime) -> None:
    put_product(rt, "SKU-1", "12.50", 10)
    deposit(rt, "hana", "50.00")
    order_id = place(rt, "hana", [("SKU-1", 1)])
    rt.settle()
    sfn = boto3.client("stepfunctions")
    [listed] = sfn.list_executions(stateMachineArn=rt.physical("OrderSagaStateMachine").arn)["executions"]
    history = sfn.get_execution_history(executionArn=listed["executionArn"], maxResults=1000)["events"]
    entered = [event for event in history if event["type"].endswith("StateEntered")]
    assert len(entered) == 3
    assert [event["stateEnteredEventDetails"]["name"] for event in entered] == [
        "ReserveInventory", "AuthorizePayment", "ConfirmOrder"]
    assert history[-1]["type"] == "ExecutionSucceeded" and listed["name"] == order_id
    # The history is Step Functions' own: the execution log of a Standard workflow keeps the errors only.
    group = rt.physical("OrderSagaLogs").name
    assert boto3.client("logs").filter_log_events(logGroupName=group)["events"] == []


@pytest.mark.parametrize(
    ("lines", "reason"),
    [([("SKU-2", 6)], "OUT_OF_STOCK"), ([("SKU-1", 1), ("NOPE", 1)], "UNKNOWN_PRODUCT")],
)
def test_inventory_failures_cancel_and_move_nothing(shop: Runtime, lines: list[tuple[str, int]], reason: str) -> None:
    deposit(shop, "bob", "100.00")
    order_id = place(shop, "bob", lines)
    shop.settle()
    view = order(shop, "bob", order_id)
    assert (view["status"], view["reason"], view["total"]) == ("CANCELLED", reason, None)
    assert stock(shop, "SKU-1") == (10, 0, 0) and stock(shop, "SKU-2") == (5, 0, 0)
    # Nothing was authorized, so the payments service was not involved at all.
    assert account(shop, "bob") == {"customerId": "bob", "balance": "100.00", "held": "0.00"}
    assert account_events(shop, "bob") == ["FundsDeposited"]
    [sent] = notifications(shop)
    assert sent["type"]["S"] == "OrderCancelled" and emails_sent() == 1
    [execution] = executions(shop)
    assert execution.status == "SUCCEEDED"
    assert states_entered(shop, execution.execution_arn) == ["ReserveInventory", "CancelUnpaidOrder", "ReleaseInventory"]


def test_payment_declined_cancels_first_then_releases_the_stock_and_holds_nothing(shop: Runtime) -> None:
    deposit(shop, "carol", "10.00")
    order_id = place(shop, "carol", [("SKU-1", 2)])
    shop.settle()
    view = order(shop, "carol", order_id)
    # The prices are recorded at the pivot, which a declined order never reaches.
    assert (view["status"], view["reason"], view["total"]) == ("CANCELLED", "PAYMENT_DECLINED", None)
    assert stock(shop, "SKU-1") == (10, 0, 0)
    assert account(shop, "carol") == {"customerId": "carol", "balance": "10.00", "held": "0.00"}
    assert account_events(shop, "carol") == ["FundsDeposited", "PaymentDeclined"]
    assert emails_sent() == 1
    [execution] = executions(shop)
    assert states_entered(shop, execution.execution_arn) == [
        "ReserveInventory", "AuthorizePayment", "CancelOrder", "VoidAuthorization", "ReleaseInventory"]


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
    assert order_events(shop, "dan", order_id) == ["OrderPlaced", "OrderCancelled", "OrderNeedsAttention"]
    [execution] = executions(shop)
    assert execution.status == "FAILED" and execution.error == "CompensationFailed"
    # The stock stays visibly reserved for an operator, the payment hold was voided; the customer was told the
    # order is cancelled (it is: it can never be confirmed now), once.
    assert stock(shop, "SKU-1") == (9, 1, 0)
    assert account(shop, "dan")["held"] == "0.00"
    [sent] = notifications(shop)
    assert sent["type"]["S"] == "OrderCancelled" and emails_sent() == 1


def test_a_pivot_whose_answer_is_lost_stays_confirmed_and_compensates_nothing(
    shop: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ConfirmOrder commits but its answer never arrives (every attempt): after the retries the saga goes to
    CancelOrder, which finds the order confirmed (AlreadyConfirmed) and ends there: no void, no release."""
    import orders.saga

    original = orders.saga.handler

    def confirm_then_lose_the_answer(event: dict[str, Any], context: Any) -> Any:
        result = original(event, context)
        if event.get("action") == "confirm":
            raise RuntimeError("the answer was lost on the way back")
        return result

    monkeypatch.setattr(orders.saga, "handler", confirm_then_lose_the_answer)
    deposit(shop, "ivy", "100.00")
    order_id = place(shop, "ivy", [("SKU-1", 2)])
    shop.settle()
    view = order(shop, "ivy", order_id)
    assert (view["status"], view["total"], view["version"]) == ("CONFIRMED", "25.00", 2)
    assert stock(shop, "SKU-1") == (8, 0, 2)
    assert account(shop, "ivy") == {"customerId": "ivy", "balance": "75.00", "held": "0.00"}
    assert account_events(shop, "ivy") == ["FundsDeposited", "PaymentAuthorized", "PaymentCaptured"]
    [sent] = notifications(shop)
    assert sent["type"]["S"] == "OrderConfirmed" and emails_sent() == 1
    [execution] = executions(shop)
    assert execution.status == "SUCCEEDED"
    assert states_entered(shop, execution.execution_arn) == [
        "ReserveInventory", "AuthorizePayment", "ConfirmOrder", "CancelOrder", "ConfirmedAfterAll"]


def test_the_same_order_placed_delivered_twice_is_one_order(shop: Runtime, spy: Any, profile: str) -> None:
    deposit(shop, "erin", "100.00")
    order_id = place(shop, "erin", [("SKU-1", 1)])
    shop.settle()
    [placed] = [e for e in spy.drain() if e["detail-type"] == "OrderPlaced"]
    boto3.client("events").put_events(
        Entries=[{"EventBusName": shop.physical("EventsBus").name, "Source": placed["source"],
                  "DetailType": placed["detail-type"], "Detail": json.dumps(placed["detail"])}]
    )
    shop.settle()
    # Standard absorbs the duplicate start by the execution name; Express runs a second execution.
    assert [e.status for e in executions(shop)] == ["SUCCEEDED"] * (1 if profile == "standard" else 2)
    assert order(shop, "erin", order_id)["status"] == "CONFIRMED"
    assert order_events(shop, "erin", order_id) == ["OrderPlaced", "OrderConfirmed"]
    assert stock(shop, "SKU-1") == (9, 0, 1)
    assert account(shop, "erin") == {"customerId": "erin", "balance": "87.50", "held": "0.00"}
    assert account_events(shop, "erin") == ["FundsDeposited", "PaymentAuthorized", "PaymentCaptured"]
    assert emails_sent() == 1


@pytest.mark.parametrize(("funds", "outcome"), [("100.00", "CONFIRMED"), ("5.00", "CANCELLED")])
def test_the_same_saga_started_three_times_at_once_is_exactly_once(
    shop: Runtime, profile: str, funds: str, outcome: str
) -> None:
    """The starter's StartExecution, plus two more for the same order at the same moment (an SQS redelivery
    while the first start was still in flight). Express runs all three concurrently; Standard only one."""
    deposit(shop, "jo", funds)
    order_id = place(shop, "jo", [("SKU-1", 2)])
    sfn, arn = boto3.client("stepfunctions"), shop.physical("OrderSagaStateMachine").arn
    request = {"stateMachineArn": arn, "name": order_id, "input": saga_input(order_id, "jo", [("SKU-1", 2)])}
    for _ in range(2):
        try:
            sfn.start_execution(**request)
        except ClientError as error:  # Standard: the first start may have finished already
            assert profile == "standard" and error.response["Error"]["Code"] == "ExecutionAlreadyExists"
    shop.settle()

    runs = executions(shop)
    assert len(runs) == (1 if profile == "standard" else 3) and {e.status for e in runs} == {"SUCCEEDED"}
    view = order(shop, "jo", order_id)
    assert view["status"] == outcome
    if outcome == "CONFIRMED":
        assert order_events(shop, "jo", order_id) == ["OrderPlaced", "OrderConfirmed"]
        assert stock(shop, "SKU-1") == (8, 0, 2)
        assert account(shop, "jo") == {"customerId": "jo", "balance": "75.00", "held": "0.00"}
        assert account_events(shop, "jo") == ["FundsDeposited", "PaymentAuthorized", "PaymentCaptured"]
    else:
        assert order_events(shop, "jo", order_id) == ["OrderPlaced", "OrderCancelled"]
        assert view["reason"] == "PAYMENT_DECLINED"
        assert stock(shop, "SKU-1") == (10, 0, 0)
        assert account(shop, "jo") == {"customerId": "jo", "balance": "5.00", "held": "0.00"}
        assert account_events(shop, "jo") == ["FundsDeposited", "PaymentDeclined"]
    [sent] = notifications(shop)
    assert sent["type"]["S"] == f"Order{outcome.title()}" and emails_sent() == 1


def test_a_late_duplicate_of_a_cancelled_order_reserves_and_holds_nothing(shop: Runtime, profile: str) -> None:
    """The order was cancelled (declined) and released; then money arrives and the saga of the same order starts
    again (a delayed redelivery). The tombstones refuse it: no stock held, no funds held, still cancelled."""
    deposit(shop, "kim", "1.00")
    order_id = place(shop, "kim", [("SKU-1", 1)])
    shop.settle()
    assert order(shop, "kim", order_id)["status"] == "CANCELLED"
    deposit(shop, "kim", "99.00")
    sfn, arn = boto3.client("stepfunctions"), shop.physical("OrderSagaStateMachine").arn
    request = {"stateMachineArn": arn, "name": order_id, "input": saga_input(order_id, "kim", [("SKU-1", 1)])}
    if profile == "standard":
        with pytest.raises(ClientError, match="ExecutionAlreadyExists"):
            sfn.start_execution(**request)
    else:
        sfn.start_execution(**request)
    shop.settle()
    runs = executions(shop)
    assert len(runs) == (1 if profile == "standard" else 2) and {e.status for e in runs} == {"SUCCEEDED"}
    if profile == "express":  # the second run met the reservation's tombstone at once
        assert states_entered(shop, runs[1].execution_arn) == [
            "ReserveInventory", "CancelUnpaidOrder", "ReleaseInventory"]
    assert order_events(shop, "kim", order_id) == ["OrderPlaced", "OrderCancelled"]
    assert stock(shop, "SKU-1") == (10, 0, 0)
    assert account(shop, "kim") == {"customerId": "kim", "balance": "100.00", "held": "0.00"}
    assert account_events(shop, "kim") == ["FundsDeposited", "PaymentDeclined", "FundsDeposited"]
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
    assert view["status"] == "CONFIRMED" and view["version"] == 2  # placed, confirmed: once each
    assert stock(shop, "SKU-1") == (8, 0, 2)
    assert account(shop, "fay") == {"customerId": "fay", "balance": "75.00", "held": "0.00"}
    assert account_events(shop, "fay") == ["FundsDeposited", "PaymentAuthorized", "PaymentCaptured"]
    assert emails_sent() == 1


def test_a_redelivered_order_confirmed_captures_and_commits_once(shop: Runtime, spy: Any) -> None:
    """Choreography after the pivot is at-least-once too: OrderConfirmed arriving again (EventBridge retry, an
    archive replay) reaches the capturer, the committer and notifications again, and changes nothing."""
    deposit(shop, "gus", "100.00")
    order_id = place(shop, "gus", [("SKU-2", 1)])
    shop.settle()
    [confirmed] = [e for e in spy.drain() if e["detail-type"] == "OrderConfirmed"]
    assert confirmed["detail"]["data"]["lines"] == [{"sku": "SKU-2", "quantity": 1, "unit_price": "3.00"}]
    for _ in range(2):
        boto3.client("events").put_events(
            Entries=[{"EventBusName": shop.physical("EventsBus").name, "Source": confirmed["source"],
                      "DetailType": confirmed["detail-type"], "Detail": json.dumps(confirmed["detail"])}]
        )
    shop.settle()
    assert stock(shop, "SKU-2") == (4, 0, 1)
    assert account(shop, "gus") == {"customerId": "gus", "balance": "97.00", "held": "0.00"}
    assert account_events(shop, "gus") == ["FundsDeposited", "PaymentAuthorized", "PaymentCaptured"]
    assert order_events(shop, "gus", order_id) == ["OrderPlaced", "OrderConfirmed"]
    [record] = notifications(shop)
    assert record["status"]["S"] == "SENT" and record["pk"]["S"] == f"notification#{confirmed['detail']['id']}"
    assert emails_sent() == 1
    for inbox in ("PaymentsCaptureInboxDlq", "InventoryCommitInboxDlq"):
        url = shop.physical(inbox).url
        attributes = boto3.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "0", inbox


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
    assert stock(rt, "RARE") == (0, 0, 5)
    balances = [Decimal(account(rt, name)["balance"]) for name in customers]
    assert all(b >= 0 for b in balances) and sum(balances) == Decimal("20.00") * 16 - Decimal("25.00")
    assert all(account(rt, name)["held"] == "0.00" for name in customers)
    assert emails_sent() == 16
