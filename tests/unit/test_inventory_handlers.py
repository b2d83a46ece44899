"""The inventory's Lambda handlers as Lambda calls them: the saga task handler with the ASL's payloads, and
the admin API with API Gateway proxy events (claims as the Cognito authorizer puts them)."""

from __future__ import annotations

import importlib
import json
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType, SimpleNamespace
from typing import Any

import aws_xray_sdk.core  # noqa: F401 (see below)
import boto3
import pytest
from moto import mock_aws

import shared.aws
from inventory.domain import InvalidRequest, OutOfStock, ReservationCancelled, UnknownProduct

from .test_inventory_service import TABLE, create_inventory_table, outbox_items, published, serialized_dynamodb

# The X-Ray SDK makes its UDP emitter's socket when first imported (Powertools' Tracer imports it). Sockets are
# only disabled while tests run, so it is imported here, at collection; it never sends: outside Lambda the
# tracer is disabled.

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

ADMIN = {"sub": "ops", "cognito:groups": "admins"}
CUSTOMER = {"sub": "alice"}
HANDLER_MODULES = ("inventory.api", "inventory.saga", "inventory.wiring")


@dataclass
class Context:
    function_name: str = "inventory"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:inventory"
    aws_request_id: str = "6f1c1e0a-0000-4c55-9d59-3f1b8f0c7a10"


def _forget_handler_modules() -> None:
    """The handler modules read INVENTORY_TABLE at import (cold start): import them fresh for these tests and
    forget them after, so a later test in this process (the offline runtime) gets its own configuration."""
    for name in HANDLER_MODULES:
        sys.modules.pop(name, None)
        package = sys.modules.get("inventory")
        if package is not None and hasattr(package, name.rsplit(".", 1)[1]):
            delattr(package, name.rsplit(".", 1)[1])


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    with mock_aws(), serialized_dynamodb():
        client = boto3.client("dynamodb")
        create_inventory_table(client)
        yield client


@pytest.fixture
def handlers(dynamodb: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    monkeypatch.setenv("INVENTORY_TABLE", TABLE)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Orderflow")
    _forget_handler_modules()
    shared.aws.client.cache_clear()
    try:
        yield SimpleNamespace(
            api=importlib.import_module("inventory.api"), saga=importlib.import_module("inventory.saga")
        )
    finally:
        _forget_handler_modules()
        shared.aws.client.cache_clear()


# --- the admin API ---


def api_event(
    method: str,
    path: str,
    body: Any = None,
    claims: dict[str, str] | None = ADMIN,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An API Gateway REST proxy event for /admin/products/{sku}, as the Cognito authorizer passes it on."""
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if body is not None and not isinstance(body, str):
        body = json.dumps(body)
    resource = "/admin/products/{sku}"
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "multiValueHeaders": {name: [value] for name, value in all_headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"sku": path.rsplit("/", 1)[-1]},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/prod{path}",
            "stage": "prod",
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": "127.0.0.1"},
            "authorizer": {"claims": claims} if claims is not None else None,
        },
        "body": body,
        "isBase64Encoded": False,
    }


def call(api: ModuleType, method: str, path: str, body: Any = None, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    response = api.handler(api_event(method, path, body, **kwargs), Context())
    headers = response.get("multiValueHeaders") or {k: [v] for k, v in response["headers"].items()}
    assert headers["Content-Type"] == ["application/json"]
    return response["statusCode"], json.loads(response["body"])


WIDGET = {"name": "Widget", "price": "12.50", "stock": 10}


def test_put_sets_a_product_and_get_reads_it_back(handlers: SimpleNamespace) -> None:
    status, body = call(handlers.api, "PUT", "/admin/products/SKU-1", {"name": "Widget", "price": "12.5", "stock": 10})
    assert status == 200
    view = {"sku": "SKU-1", "name": "Widget", "price": "12.50", "available": 10, "reserved": 0, "sold": 0}
    assert body == view
    assert call(handlers.api, "GET", "/admin/products/SKU-1") == (200, view)


def test_put_publishes_product_updated_only_when_something_changed(handlers: SimpleNamespace, dynamodb: Any) -> None:
    assert call(handlers.api, "PUT", "/admin/products/SKU-1", WIDGET)[0] == 200
    assert call(handlers.api, "PUT", "/admin/products/SKU-1", WIDGET)[0] == 200  # same body: same state, no event
    status, body = call(handlers.api, "PUT", "/admin/products/SKU-1", {**WIDGET, "stock": 7})
    assert status == 200 and body["available"] == 7
    events = published(dynamodb)
    assert [(e.type, e.source, e.subject, e.sequence) for e in events] == [
        ("ProductUpdated", "orderflow.inventory", "SKU-1", "0000000001"),
        ("ProductUpdated", "orderflow.inventory", "SKU-1", "0000000002"),
    ]
    assert events[1].data == {
        "sku": "SKU-1",
        "name": "Widget",
        "price": "12.50",
        "available": 7,
        "reserved": 0,
        "sold": 0,
    }


def test_put_keeps_what_orders_in_flight_hold(handlers: SimpleNamespace) -> None:
    call(handlers.api, "PUT", "/admin/products/SKU-1", WIDGET)
    handlers.saga.handler(
        {"action": "reserve", "orderId": "o-1", "lines": [{"sku": "SKU-1", "quantity": 3}]}, Context()
    )
    status, body = call(handlers.api, "PUT", "/admin/products/SKU-1", {**WIDGET, "stock": 20})
    assert status == 200 and (body["available"], body["reserved"], body["sold"]) == (20, 3, 0)


def test_get_of_a_missing_product_is_404(handlers: SimpleNamespace) -> None:
    assert call(handlers.api, "GET", "/admin/products/NOPE") == (404, {"message": "product NOPE not found"})
    assert call(handlers.api, "GET", "/admin/products/not%20a%20sku")[0] == 404


@pytest.mark.parametrize(
    "body",
    [
        {**WIDGET, "price": "0"},
        {**WIDGET, "price": "0.00"},
        {**WIDGET, "price": "-1.00"},
        {**WIDGET, "price": "1.234"},
        {**WIDGET, "price": 12.5},
        {**WIDGET, "price": "1e3"},
        {**WIDGET, "price": " 12.50"},
        {**WIDGET, "price": "012.50"},
        {**WIDGET, "price": "NaN"},
        {**WIDGET, "price": ""},
        {**WIDGET, "stock": -1},
        {**WIDGET, "stock": "10"},
        {**WIDGET, "stock": 1.5},
        {**WIDGET, "stock": True},
        {**WIDGET, "stock": None},
        {**WIDGET, "name": ""},
        {**WIDGET, "name": "   "},
        {**WIDGET, "name": "x" * 201},
        {**WIDGET, "name": 5},
        {**WIDGET, "name": "tab\there"},
        {"name": "Widget", "price": "12.50"},
        {**WIDGET, "reserved": 0},
    ],
    ids=lambda body: json.dumps(body)[:60],
)
def test_put_validates_strictly_and_writes_nothing(
    handlers: SimpleNamespace, dynamodb: Any, body: dict[str, Any]
) -> None:
    status, answer = call(handlers.api, "PUT", "/admin/products/SKU-1", body)
    assert status == 422, answer
    assert answer["message"] == "the request body is invalid" and answer["errors"][0]["field"]
    assert call(handlers.api, "GET", "/admin/products/SKU-1")[0] == 404
    assert outbox_items(dynamodb) == []


def test_put_accepts_the_edges(handlers: SimpleNamespace) -> None:
    status, body = call(
        handlers.api, "PUT", "/admin/products/a.b_c-1", {"name": "é" * 200, "price": "0.01", "stock": 0}
    )
    assert status == 200 and body["price"] == "0.01" and body["available"] == 0


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        ("{not json", None, 400),
        ("", None, 400),
        ("[1, 2]", None, 400),
        (json.dumps(WIDGET), {"Content-Type": "text/plain"}, 415),
    ],
)
def test_put_refuses_bodies_that_are_not_a_json_object(
    handlers: SimpleNamespace, body: str, headers: dict[str, str] | None, status: int
) -> None:
    code, answer = call(handlers.api, "PUT", "/admin/products/SKU-1", body, headers=headers)
    assert code == status and isinstance(answer["message"], str)


def test_put_refuses_a_malformed_sku(handlers: SimpleNamespace) -> None:
    code, answer = call(handlers.api, "PUT", "/admin/products/bad%20sku", WIDGET)
    assert code == 400 and "sku" in answer["message"]


@pytest.mark.parametrize("method", ["PUT", "GET"])
@pytest.mark.parametrize(
    ("claims", "status"),
    [(None, 401), ({}, 401), (CUSTOMER, 403), ({"sub": "bob", "cognito:groups": "ops,sales"}, 403)],
)
def test_only_admins_may_manage_products(
    handlers: SimpleNamespace,
    dynamodb: Any,
    method: str,
    claims: dict[str, str] | None,
    status: int,
) -> None:
    code, answer = call(
        handlers.api, method, "/admin/products/SKU-1", WIDGET if method == "PUT" else None, claims=claims
    )
    assert code == status and list(answer) == ["message"]
    assert outbox_items(dynamodb) == []


def test_an_unknown_route_is_404(handlers: SimpleNamespace) -> None:
    event = api_event("GET", "/admin/things/1")
    response = handlers.api.handler(event, Context())
    assert response["statusCode"] == 404 and json.loads(response["body"]) == {"message": "no such route"}


# --- the saga task handler ---


def reserve(handlers: SimpleNamespace, order_id: str = "o-1", **quantities: int) -> dict[str, Any]:
    lines = [{"sku": sku, "quantity": quantity} for sku, quantity in quantities.items()]
    return handlers.saga.handler({"action": "reserve", "orderId": order_id, "lines": lines}, Context())


@pytest.fixture
def products(handlers: SimpleNamespace) -> None:
    call(handlers.api, "PUT", "/admin/products/A", {"name": "A", "price": "12.50", "stock": 5})
    call(handlers.api, "PUT", "/admin/products/B", {"name": "B", "price": "0.99", "stock": 2})


def product(handlers: SimpleNamespace, sku: str) -> dict[str, Any]:
    return call(handlers.api, "GET", f"/admin/products/{sku}")[1]


@pytest.mark.usefixtures("products")
def test_reserve_answers_the_priced_lines_and_the_total(handlers: SimpleNamespace) -> None:
    assert reserve(handlers, A=2, B=1) == {
        "orderId": "o-1",
        "lines": [{"sku": "A", "quantity": 2, "unitPrice": "12.50"}, {"sku": "B", "quantity": 1, "unitPrice": "0.99"}],
        "total": "25.99",
    }
    assert reserve(handlers, A=2, B=1)["total"] == "25.99"  # the task run twice
    assert (product(handlers, "A")["available"], product(handlers, "A")["reserved"]) == (3, 2)


@pytest.mark.usefixtures("products")
@pytest.mark.parametrize(
    ("quantities", "error"),
    [({"A": 1, "B": 3}, OutOfStock), ({"A": 1, "Z": 1}, UnknownProduct)],
)
def test_reserve_raises_the_business_error_by_name_and_reserves_nothing(
    handlers: SimpleNamespace, quantities: dict[str, int], error: type
) -> None:
    with pytest.raises(error) as raised:
        reserve(handlers, **quantities)
    assert type(raised.value).__name__ == error.__name__  # what Step Functions sees as the error name
    assert product(handlers, "A")["available"] == 5 and product(handlers, "B")["available"] == 2


@pytest.mark.usefixtures("products")
def test_release_and_commit_answer_whether_they_did_it(handlers: SimpleNamespace) -> None:
    saga = handlers.saga
    reserve(handlers, "o-1", A=1)
    reserve(handlers, "o-2", A=2)
    assert saga.handler({"action": "release", "orderId": "o-1"}, Context()) == {"orderId": "o-1", "released": True}
    assert saga.handler({"action": "release", "orderId": "o-1"}, Context()) == {"orderId": "o-1", "released": False}
    assert saga.handler({"action": "commit", "orderId": "o-2"}, Context()) == {"orderId": "o-2", "committed": True}
    assert saga.handler({"action": "commit", "orderId": "o-2"}, Context()) == {"orderId": "o-2", "committed": False}
    assert {k: product(handlers, "A")[k] for k in ("available", "reserved", "sold")} == {
        "available": 3,
        "reserved": 0,
        "sold": 2,
    }


@pytest.mark.usefixtures("products")
def test_a_release_that_overtakes_its_reserve_cancels_it(handlers: SimpleNamespace) -> None:
    assert handlers.saga.handler({"action": "release", "orderId": "o-9"}, Context()) == {
        "orderId": "o-9",
        "released": False,
    }
    with pytest.raises(ReservationCancelled):
        reserve(handlers, "o-9", A=1)
    assert product(handlers, "A")["available"] == 5


@pytest.mark.usefixtures("products")
@pytest.mark.parametrize(
    "payload",
    [
        {"action": "reserve", "orderId": "o-1", "lines": []},
        {"action": "reserve", "orderId": "o-1", "lines": [{"sku": "A", "quantity": 0}]},
        {"action": "reserve", "orderId": "o-1", "lines": [{"sku": "A", "quantity": "1"}]},
        {"action": "reserve", "orderId": "o-1", "lines": [{"sku": "A", "quantity": 1}, {"sku": "A", "quantity": 1}]},
        {"action": "reserve", "orderId": "o-1", "lines": [{"sku": "A", "quantity": 1, "price": "0.01"}]},
        {"action": "reserve", "orderId": "", "lines": [{"sku": "A", "quantity": 1}]},
        {"action": "reserve", "lines": [{"sku": "A", "quantity": 1}]},
        {"action": "release"},
        {"action": "commit", "orderId": 7},
        {"action": "restock", "orderId": "o-1"},
        {"orderId": "o-1"},
    ],
    ids=lambda payload: json.dumps(payload)[:70],
)
def test_invalid_payloads_raise_invalid_request_and_write_nothing(
    handlers: SimpleNamespace,
    dynamodb: Any,
    payload: dict[str, Any],
) -> None:
    before = outbox_items(dynamodb)
    with pytest.raises(InvalidRequest) as raised:
        handlers.saga.handler(payload, Context())
    assert isinstance(raised.value, ValueError) and str(raised.value)
    assert outbox_items(dynamodb) == before and product(handlers, "A")["available"] == 5


@pytest.mark.usefixtures("products")
def test_the_saga_handler_logs_with_the_order_id_as_correlation_id(
    handlers: SimpleNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    reserve(handlers, "o-42", A=1)
    [record] = [r for r in caplog.records if r.getMessage() == "saga step done"]
    entry = json.loads(handlers.saga.logger.registered_handler.format(record))
    assert (entry["correlation_id"], entry["service"], entry["action"]) == ("o-42", "inventory", "reserve")
