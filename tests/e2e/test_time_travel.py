"""Issue 4 end to end: time travel over an order and an account, and an event stored in its old shape."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import boto3

from offline.runtime import Runtime

from .conftest import admin, customer
from .test_order_saga import deposit, order, put_product


def get(rt: Runtime, path: str, headers: dict[str, str], **query: str) -> tuple[int, Any]:
    response = rt.api.request("GET", path, headers=headers, query=query or None)
    return response.status, response.json()


def test_an_orders_history_and_its_past_states(rt: Runtime) -> None:
    put_product(rt, "SKU-1", "12.50", 10)
    deposit(rt, "alice", "100.00")
    placed = rt.api.request(
        "POST", "/orders",
        headers={**customer("alice"), "Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex},
        body=json.dumps({"items": [{"sku": "SKU-1", "quantity": 2}]}),
    )
    order_id = placed.json()["orderId"]
    rt.settle()
    now = order(rt, "alice", order_id)
    assert now["status"] == "CONFIRMED" and now["version"] == 2

    status, body = get(rt, f"/orders/{order_id}/history", customer("alice"))
    assert status == 200 and body["version"] == 2 and body["nextAfter"] is None
    events = body["events"]
    # The confirmation (the saga's pivot) records the prices: OrderConfirmed v2 carries the priced lines.
    assert [(e["type"], e["sequence"], e["dataversion"]) for e in events] == [
        ("OrderPlaced", "0000000001", "2"), ("OrderConfirmed", "0000000002", "2"),
    ]
    assert events[0]["data"]["contact_email"] == "alice@example.com" and events[0]["correlationid"] == order_id

    # The state at each version, and at the time of each event, is what GET /orders/{id} said then.
    assert get(rt, f"/orders/{order_id}/history", customer("alice"), version="2") == (200, now)
    status, first = get(rt, f"/orders/{order_id}/history", customer("alice"), version="1")
    assert status == 200 and (first["status"], first["total"], first["version"]) == ("PENDING", None, 1)
    status, confirmed = get(rt, f"/orders/{order_id}/history", customer("alice"), asOf=events[1]["time"])
    assert status == 200 and (confirmed["status"], confirmed["total"], confirmed["version"]) == ("CONFIRMED", "25.00", 2)

    before = (datetime.fromisoformat(events[0]["time"]) - timedelta(microseconds=1)).isoformat()
    status, body = get(rt, f"/orders/{order_id}/history", customer("alice"), asOf=before)
    assert status == 404 and "did not exist yet" in body["message"]
    assert get(rt, f"/orders/{order_id}/history", customer("alice"), version="3")[0] == 404
    status, body = get(rt, f"/orders/{order_id}/history", customer("alice"), asOf="tuesday")
    assert status == 400 and "RFC 3339" in body["message"]
    assert get(rt, f"/orders/{order_id}/history", customer("alice"), asOf=before, version="1")[0] == 400

    # Someone else's order answers exactly like a missing one; an admin reads any.
    assert get(rt, f"/orders/{order_id}/history", customer("mallory")) == (404, {"message": f"order {order_id} not found"})
    assert get(rt, f"/orders/{order_id}/history", customer("mallory"), version="1")[0] == 404
    assert get(rt, f"/orders/{order_id}/history", admin(), version="1") == (200, first)

    # The account's side of the same story (admins only).
    status, body = get(rt, "/admin/accounts/alice/history", admin())
    assert status == 200
    assert [e["type"] for e in body["events"]] == ["FundsDeposited", "PaymentAuthorized", "PaymentCaptured"]
    assert body["events"][1]["correlationid"] == order_id
    assert get(rt, "/admin/accounts/alice/history", admin(), version="2") == (
        200, {"customerId": "alice", "balance": "100.00", "held": "25.00", "version": 2}
    )
    assert get(rt, "/admin/accounts/alice/history", admin(), asOf=body["events"][2]["time"]) == (
        200, {"customerId": "alice", "balance": "75.00", "held": "0.00", "version": 3}
    )
    assert get(rt, "/admin/accounts/alice/history", customer("alice"))[0] == 403


def test_an_order_placed_event_stored_in_its_first_shape_is_upcast_everywhere_it_is_read(rt: Runtime) -> None:
    """A raw v1 OrderPlaced (no contact_email) written straight to the event store: the relay publishes it as it
    is, the saga starter and the order service read it upcast, and the item itself is never rewritten."""
    put_product(rt, "SKU-1", "12.50", 10)
    deposit(rt, "dora", "50.00")
    order_id = str(uuid.uuid4())
    table = rt.physical("OrdersTable").name
    item = {
        "pk": {"S": order_id}, "sk": {"S": "0000000001"}, "kind": {"S": "event"}, "specversion": {"S": "1.0"},
        "id": {"S": str(uuid.uuid4())}, "source": {"S": "orderflow.orders"}, "type": {"S": "OrderPlaced"},
        "time": {"S": "2026-11-20T08:00:00.000000Z"}, "subject": {"S": order_id},
        "datacontenttype": {"S": "application/json"}, "dataversion": {"S": "1"}, "sequence": {"S": "0000000001"},
        "correlationid": {"S": order_id},
        "data": {"S": json.dumps({"order_id": order_id, "customer_id": "dora", "lines": [{"sku": "SKU-1", "quantity": 1}]})},
    }
    ddb = boto3.client("dynamodb")
    ddb.put_item(TableName=table, Item=item)
    rt.settle()

    view = order(rt, "dora", order_id)
    assert (view["status"], view["total"], view["version"]) == ("CONFIRMED", "12.50", 2)  # the saga ran on it
    status, body = get(rt, f"/orders/{order_id}/history", customer("dora"))
    assert status == 200
    placed = body["events"][0]
    assert placed["dataversion"] == "2" and placed["data"]["contact_email"] is None
    assert placed["time"] == "2026-11-20T08:00:00.000000Z"
    assert get(rt, f"/orders/{order_id}/history", customer("dora"), asOf="2026-11-20T08:00:00Z")[1]["status"] == "PENDING"
    stored = ddb.get_item(TableName=table, Key={"pk": {"S": order_id}, "sk": {"S": "0000000001"}})["Item"]
    assert stored == item
