"""Issue 2 end to end: the order API, the event store, the outbox relay and the bus, as deployed."""

from __future__ import annotations

import json
import threading
import uuid

import pytest

from offline.runtime import Runtime

from .conftest import BusSpy, admin, customer, scan

ITEMS = {"items": [{"sku": "SKU-1", "quantity": 2}, {"sku": "SKU-2", "quantity": 1}]}


def post_order(rt: Runtime, who: dict[str, str], body=ITEMS, key: str | None = None, **headers: str):  # noqa: ANN001, ANN201
    all_headers = {"Content-Type": "application/json", "Idempotency-Key": key or uuid.uuid4().hex, **who, **headers}
    return rt.api.request("POST", "/orders", headers=all_headers, body=body if isinstance(body, (str, bytes)) else json.dumps(body))


def orders_items(rt: Runtime) -> list[dict]:
    return scan(rt.physical("OrdersTable").name)


WRITES = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"}


class ApiCalls:
    """The AWS calls the orders API function makes while registered: (operation, tables it names)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, set[str]]] = []

    def before_aws_call(self, invocation, service: str, operation: str, params: dict) -> None:  # noqa: ANN001
        if invocation.handler == "orders.api.handler":
            request = json.loads(params.get("body") or "{}")  # botocore's request: DynamoDB's JSON body
            tables = {request["TableName"]} if "TableName" in request else set()
            tables |= {action["TableName"] for item in request.get("TransactItems", []) for action in item.values()}
            self.calls.append((operation, tables))

    def writes(self) -> list[str]:
        return [operation for operation, _ in self.calls if operation in WRITES]

    def tables(self) -> set[str]:
        return set().union(*(tables for _, tables in self.calls))


def test_health_needs_no_auth(rt: Runtime) -> None:
    response = rt.api.request("GET", "/health")
    assert response.status == 200 and response.json() == {"status": "ok"}


def test_place_an_order_read_it_back_and_see_it_on_the_bus_once(rt: Runtime, spy: BusSpy) -> None:
    alice = customer("alice")
    placed = post_order(rt, alice)
    assert placed.status == 202, placed.body
    order_id = placed.json()["orderId"]
    assert placed.json() == {"orderId": order_id, "status": "PENDING"}

    read = rt.api.request("GET", f"/orders/{order_id}", headers=alice)
    assert read.status == 200
    assert read.json() == {
        "orderId": order_id,
        "customerId": "alice",
        "status": "PENDING",
        "items": [{"sku": "SKU-1", "quantity": 2, "unitPrice": None}, {"sku": "SKU-2", "quantity": 1, "unitPrice": None}],
        "total": None,
        "reason": None,
        "version": 1,
    }

    [item] = orders_items(rt)
    assert item["pk"]["S"] == order_id and item["sk"]["S"] == "0000000001" and item["kind"]["S"] == "event"

    rt.settle()
    [delivered] = spy.drain(only="OrderPlaced")
    assert delivered["source"] == "orderflow.orders" and delivered["detail-type"] == "OrderPlaced"
    envelope = delivered["detail"]
    assert envelope["id"] == item["id"]["S"]  # the id made at append time, not EventBridge's
    assert envelope["specversion"] == "1.0" and envelope["subject"] == order_id and envelope["type"] == "OrderPlaced"
    assert envelope["datacontenttype"] == "application/json" and envelope["dataversion"] == "2"  # OrderPlaced v2
    assert envelope["data"]["lines"] == [{"sku": "SKU-1", "quantity": 2}, {"sku": "SKU-2", "quantity": 1}]

    rt.settle()
    assert spy.drain(only="OrderPlaced") == [delivered]  # settling again publishes nothing new


def test_the_same_idempotency_key_returns_the_same_answer_and_writes_nothing(rt: Runtime, spy: BusSpy) -> None:
    bob = customer("bob")
    calls = rt.observe(ApiCalls())
    first = post_order(rt, bob, key="key-1")
    assert calls.writes() == ["PutItem"]  # the conditional append of OrderPlaced, nothing else
    again = post_order(rt, bob, key="key-1")
    assert first.status == again.status == 202
    assert again.json() == first.json()
    assert calls.writes() == ["PutItem"] and len(orders_items(rt)) == 1

    other_body = post_order(rt, bob, key="key-1", body={"items": [{"sku": "SKU-9", "quantity": 1}]})
    assert other_body.status == 422
    assert other_body.json() == {
        "message": "this Idempotency-Key was already used with a different request body: use a new key for a new order"
    }
    assert calls.writes() == ["PutItem"] and len(orders_items(rt)) == 1
    assert calls.tables() == {rt.physical("OrdersTable").name}  # no idempotency record anywhere

    # the key is the caller's own: another customer using it places their own order
    carol = post_order(rt, customer("carol"), key="key-1")
    assert carol.status == 202 and carol.json()["orderId"] != first.json()["orderId"]

    rt.settle()
    assert sorted(e["detail"]["subject"] for e in spy.drain(only="OrderPlaced")) == sorted([first.json()["orderId"], carol.json()["orderId"]])


def test_concurrent_retries_of_one_request_place_one_order(rt: Runtime) -> None:
    dave = customer("dave")
    answers = []

    def attempt() -> None:
        answers.append(post_order(rt, dave, key="same-key"))

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status for a in answers] == [202] * 4  # every retry answers as the first did (no 409: no record)
    assert len({a.json()["orderId"] for a in answers}) == 1
    assert len(orders_items(rt)) == 1


def test_a_replay_after_the_order_moved_on_answers_its_current_status_and_places_nothing(rt: Runtime, spy: BusSpy) -> None:
    """No idempotency record means nothing to expire: however late the replay, the order id derived from
    (caller, Idempotency-Key) finds the order. Here the saga has cancelled it (SKU-1 is not stocked)."""
    frank = customer("frank")
    first = post_order(rt, frank, key="late")
    assert first.status == 202
    order_id = first.json()["orderId"]
    rt.settle()
    assert rt.api.request("GET", f"/orders/{order_id}", headers=frank).json()["status"] == "CANCELLED"
    events_before = len(orders_items(rt))

    calls = rt.observe(ApiCalls())
    late = post_order(rt, frank, key="late")
    assert late.status == 202 and late.json() == {"orderId": order_id, "status": "CANCELLED"}
    assert calls.writes() == [] and len(orders_items(rt)) == events_before
    rt.settle()
    assert [e["detail"]["subject"] for e in spy.drain(only="OrderPlaced")] == [order_id]  # placed once, ever


def test_another_customers_order_is_indistinguishable_from_a_missing_one(rt: Runtime) -> None:
    order_id = post_order(rt, customer("erin")).json()["orderId"]
    foreign = rt.api.request("GET", f"/orders/{order_id}", headers=customer("mallory"))
    missing_id = str(uuid.uuid4())
    missing = rt.api.request("GET", f"/orders/{missing_id}", headers=customer("mallory"))
    assert foreign.status == missing.status == 404
    assert foreign.json() == {"message": f"order {order_id} not found"}
    assert missing.json() == {"message": f"order {missing_id} not found"}
    assert rt.api.request("GET", "/orders/not-a-uuid", headers=customer("mallory")).status == 404
    assert rt.api.request("GET", f"/orders/{order_id}", headers=admin()).status == 200


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer dev:", "Bearer prod:alice", "Basic dev:alice", "Bearer dev:al ice", "Bearer dev:a:root", "dev:alice"],
)
def test_requests_without_a_valid_identity_are_401_and_write_nothing(rt: Runtime, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    assert post_order(rt, headers).status == 401
    assert rt.api.request("GET", f"/orders/{uuid.uuid4()}", headers=headers).status == 401
    assert orders_items(rt) == []


BAD_REQUESTS = {
    "malformed json": ('{"items": [}', {}, 400),
    "not an object": ("[1, 2]", {}, 400),
    "empty body": ("", {}, 400),
    "wrong type": ({"items": [{"sku": "SKU-1", "quantity": "two"}]}, {}, 422),
    "quantity as string": ({"items": [{"sku": "SKU-1", "quantity": "2"}]}, {}, 422),
    "extra field": ({"items": [{"sku": "SKU-1", "quantity": 1}], "total": "0.01"}, {}, 422),
    "price from client": ({"items": [{"sku": "SKU-1", "quantity": 1, "price": "0.01"}]}, {}, 422),
    "zero quantity": ({"items": [{"sku": "SKU-1", "quantity": 0}]}, {}, 422),
    "too many": ({"items": [{"sku": "SKU-1", "quantity": 1001}]}, {}, 422),
    "no items": ({"items": []}, {}, 422),
    "51 items": ({"items": [{"sku": f"S-{i}", "quantity": 1} for i in range(51)]}, {}, 422),
    "bad sku": ({"items": [{"sku": "<script>", "quantity": 1}]}, {}, 422),
    "body over 64 KB": ('{"items": [], "pad": "' + "x" * 70_000 + '"}', {}, 413),
    "wrong content type": (ITEMS, {"Content-Type": "text/plain"}, 415),
    "idempotency key too long": (ITEMS, {"Idempotency-Key": "k" * 129}, 400),
    "idempotency key with spaces": (ITEMS, {"Idempotency-Key": "a b"}, 400),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_input_is_a_clear_4xx_and_writes_nothing(rt: Runtime, case: str) -> None:
    body, headers, status = BAD_REQUESTS[case]
    response = post_order(rt, customer(), body=body, **headers)
    assert response.status == status, response.body
    assert response.headers.get("Content-Type", response.headers.get("content-type", "")).startswith("application/json")
    assert isinstance(response.json()["message"], str) and response.json()["message"]
    assert orders_items(rt) == []


def test_a_missing_idempotency_key_is_400(rt: Runtime) -> None:
    response = rt.api.request(
        "POST", "/orders", headers={**customer(), "Content-Type": "application/json"}, body=json.dumps(ITEMS)
    )
    assert response.status == 400 and "Idempotency-Key" in response.json()["message"]
    assert orders_items(rt) == []


def test_validation_errors_say_which_field(rt: Runtime) -> None:
    response = post_order(rt, customer(), body={"items": [{"sku": "SKU-1", "quantity": 0}]})
    assert response.status == 422
    assert response.json()["errors"][0]["field"] == "items.0.quantity"


def test_unknown_routes_and_methods_are_refused_by_the_gateway(rt: Runtime) -> None:
    assert rt.api.request("GET", "/nope", headers=customer()).status == 403
    assert rt.api.request("DELETE", f"/orders/{uuid.uuid4()}", headers=customer()).status == 403


def test_header_names_are_case_insensitive(rt: Runtime) -> None:
    response = rt.api.request(
        "POST", "/orders",
        headers={"authorization": "Bearer dev:hank", "content-type": "application/json", "idempotency-key": "lower"},
        body=json.dumps(ITEMS),
    )
    assert response.status == 202, response.body
