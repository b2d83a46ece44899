"""Time travel: the history query, and the order and account history routes, against moto tables."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws  # before the handler modules: their boto3 clients must be made after moto is imported

os.environ.setdefault("ORDERS_TABLE", "orders")
os.environ.setdefault("PAYMENTS_TABLE", "payments")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Orderflow")

from orders import api as orders_api  # noqa: E402
from orders.events import SOURCE as ORDERS_SOURCE  # noqa: E402
from orders.events import OrderConfirmed, OrderLine, OrderPlaced, OrderPriced, PricedLine  # noqa: E402
from payments import api as payments_api  # noqa: E402
from payments.domain import account_id  # noqa: E402
from payments.events import SOURCE as PAYMENTS_SOURCE  # noqa: E402
from payments.events import FundsDeposited, PaymentAuthorized  # noqa: E402
from shared.event_store import DynamoDBEventStore, to_dynamo  # noqa: E402
from shared.events import DomainEvent, EventEnvelope, wrap  # noqa: E402
from shared.history import BadHistoryQuery, HistoryQuery, parse_history_query, until  # noqa: E402
from tests.unit.test_payments_api import FakeContext, proxy_event  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

ADMIN = {"sub": "ops-1", "cognito:groups": "admins"}
ALICE = {"sub": "alice"}
ORDER_ID = "9b7f3c1e-2d4a-4e5f-8a6b-7c8d9e0f1a2b"
T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# ------------------------------------------------------------------------------------------ the query


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-26T09:00:00Z", T0),
        ("2026-11-26t09:00:00z", T0),
        ("2026-11-26 09:00:00Z", T0),
        ("2026-11-26T10:00:00+01:00", T0),
        ("2026-11-26T04:00:00-05:00", T0),
        ("2026-11-26T09:00:00.5Z", at(0.5)),
        ("2026-11-26T09:00:00.000001999Z", at(0.000001)),  # finer than microseconds: cut, never rounded up
    ],
)
def test_as_of_takes_rfc_3339_times(text: str, expected: datetime) -> None:
    assert parse_history_query({"asOf": text}) == HistoryQuery(as_of=expected)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"asOf": "yesterday"}, "asOf must be an RFC 3339 date-time such as 2026-11-26T09:00:00Z, not 'yesterday'"),
        ({"asOf": "2026-11-26"}, "asOf must be an RFC 3339 date-time"),
        ({"asOf": "2026-11-26T09:00:00"}, "asOf must be an RFC 3339 date-time"),  # no zone: which 09:00?
        ({"asOf": "2026-11-26T09:00Z"}, "asOf must be an RFC 3339 date-time"),
        ({"asOf": ""}, "asOf must be an RFC 3339 date-time"),
        ({"asOf": "2026-11-26T10:00:00 01:00"}, "write the offset as %2B01:00"),
        ({"asOf": "2026-02-30T09:00:00Z"}, "is not a real date and time"),
        ({"version": "0"}, "version must be a whole number from 1 to 9999999999, not '0'"),
        ({"version": "-1"}, "version must be a whole number"),
        ({"version": "1.5"}, "version must be a whole number"),
        ({"version": "two"}, "version must be a whole number"),
        ({"version": ""}, "version must be a whole number"),
        ({"version": "99999999999"}, "version must be a whole number"),
        ({"asOf": "2026-11-26T09:00:00Z", "version": "1"}, "give asOf or version, not both"),
        ({"version": "1", "limit": "5"}, "they mean nothing with asOf or version"),
        ({"limit": "0"}, "limit must be a whole number from 1 to 1000"),
        ({"after": "x"}, "after must be a whole number from 0"),
        ({"asof": "2026-11-26T09:00:00Z"}, "unknown query parameter 'asof'"),
    ],
)
def test_a_query_without_meaning_is_refused_with_what_to_send(params: dict[str, str], message: str) -> None:
    with pytest.raises(BadHistoryQuery, match=message.replace("(", r"\(").replace("+", r"\+")):
        parse_history_query(params)


def test_a_parameter_given_twice_is_refused() -> None:
    with pytest.raises(BadHistoryQuery, match="give version once"):
        parse_history_query({"version": "2"}, {"version": ["1", "2"]})
    assert parse_history_query(None, None) == HistoryQuery()
    assert parse_history_query({"after": "3", "limit": "2"}) == HistoryQuery(after=3, limit=2)


def test_as_of_keeps_the_first_run_of_events_at_or_before_it() -> None:
    def event(version: int, seconds: float) -> EventEnvelope:
        placed = OrderPlaced(order_id=ORDER_ID, customer_id="alice", lines=(), contact_email=None)
        return wrap(placed, source="s", subject=ORDER_ID, version=version, time=at(seconds))

    events = [event(1, 0), event(2, 10), event(3, 5), event(4, 20)]  # 3 is stamped before 2: clocks differ
    assert [e.version for e in until(events, at(10))] == [1, 2, 3]  # exactly at asOf counts
    assert [e.version for e in until(events, at(7))] == [1]  # never a set of events that was never a state
    assert until(events, at(-1)) == []
    assert [e.version for e in until(events, at(99))] == [1, 2, 3, 4]


# -------------------------------------------------------------------------------------- the routes


@pytest.fixture(autouse=True)
def tables() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb")
        for name in (orders_api.settings.orders_table, payments_api.settings.payments_table):
            client.create_table(
                TableName=name,
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
                BillingMode="PAY_PER_REQUEST",
            )
        yield client


def call(api: Any, path: str, query: dict[str, str] | None = None, claims: dict[str, str] | None = ALICE) -> tuple[int, Any]:
    event = proxy_event("GET", path, claims=claims)
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} if query else None
    response = api.handler(event, FakeContext())
    return response["statusCode"], json.loads(response["body"])


def append(table: str, aggregate_id: str, source: str, events: list[tuple[DomainEvent, float]]) -> None:
    store = DynamoDBEventStore(table, boto3.client("dynamodb"))
    version = len(store.load(aggregate_id))
    envelopes = [
        wrap(event, source=source, subject=aggregate_id, version=version + n, time=at(seconds))
        for n, (event, seconds) in enumerate(events, 1)
    ]
    store.append(aggregate_id, version, envelopes)


def confirmed_order(customer: str = "alice", order_id: str = ORDER_ID) -> None:
    """Placed at T0, priced at T0+10 s, confirmed at T0+20 s."""
    append(orders_api.settings.orders_table, order_id, ORDERS_SOURCE, [
        (OrderPlaced(order_id=order_id, customer_id=customer, lines=(OrderLine(sku="SKU-1", quantity=2),), contact_email=None), 0),
        (OrderPriced(order_id=order_id, lines=(PricedLine(sku="SKU-1", quantity=2, unit_price="12.50"),), total="25.00"), 10),
        (OrderConfirmed(order_id=order_id, customer_id=customer, total="25.00", contact_email=None), 20),
    ])


def history(query: dict[str, str] | None = None, claims: dict[str, str] | None = ALICE, order_id: str = ORDER_ID) -> tuple[int, Any]:
    return call(orders_api, f"/orders/{order_id}/history", query, claims)


def view(status: str, version: int, priced: bool) -> dict[str, Any]:
    return {
        "orderId": ORDER_ID, "customerId": "alice", "status": status,
        "items": [{"sku": "SKU-1", "quantity": 2, "unitPrice": "12.50" if priced else None}],
        "total": "25.00" if priced else None, "reason": None, "version": version,
    }


def test_the_history_lists_the_orders_events_as_cloudevents_oldest_first() -> None:
    confirmed_order()
    status, body = history()
    assert status == 200
    assert (body["orderId"], body["version"], body["nextAfter"]) == (ORDER_ID, 3, None)
    assert [(e["type"], e["sequence"], e["time"], e["dataversion"]) for e in body["events"]] == [
        ("OrderPlaced", "0000000001", "2026-11-26T09:00:00.000000Z", "2"),
        ("OrderPriced", "0000000002", "2026-11-26T09:00:10.000000Z", "1"),
        ("OrderConfirmed", "0000000003", "2026-11-26T09:00:20.000000Z", "2"),  # v2 since prices moved into it
    ]
    first = body["events"][0]
    assert first["specversion"] == "1.0" and first["source"] == "orderflow.orders" and first["subject"] == ORDER_ID
    assert first["data"] == {"order_id": ORDER_ID, "customer_id": "alice", "lines": [{"sku": "SKU-1", "quantity": 2}], "contact_email": None}


def test_the_history_pages() -> None:
    confirmed_order()
    status, body = history({"limit": "2"})
    assert status == 200 and [e["sequence"] for e in body["events"]] == ["0000000001", "0000000002"]
    assert body["nextAfter"] == 2
    status, body = history({"after": "2", "limit": "2"})
    assert [e["sequence"] for e in body["events"]] == ["0000000003"] and body["nextAfter"] is None
    assert history({"after": "3"})[1]["events"] == []
    assert history({"after": "9999999999", "limit": "1000"}) == (200, {"orderId": ORDER_ID, "version": 3, "events": [], "nextAfter": None})


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"version": "1"}, view("PENDING", 1, priced=False)),
        ({"version": "2"}, view("PENDING", 2, priced=True)),
        ({"version": "3"}, view("CONFIRMED", 3, priced=True)),
        ({"asOf": "2026-11-26T09:00:00Z"}, view("PENDING", 1, priced=False)),  # an event at exactly asOf counts
        ({"asOf": "2026-11-26T09:00:09.999999Z"}, view("PENDING", 1, priced=False)),
        ({"asOf": "2026-11-26T10:00:15+01:00"}, view("PENDING", 2, priced=True)),
        ({"asOf": "2030-01-01T00:00:00Z"}, view("CONFIRMED", 3, priced=True)),  # later than the last event: now
    ],
)
def test_as_of_and_version_answer_the_order_as_it_was(query: dict[str, str], expected: dict[str, Any]) -> None:
    confirmed_order()
    assert history(query) == (200, expected)


def test_before_the_order_existed_or_past_its_last_version_is_404() -> None:
    confirmed_order()
    assert history({"asOf": "2026-11-26T08:59:59.999999Z"}) == (
        404, {"message": f"order {ORDER_ID} did not exist yet at 2026-11-26T08:59:59.999999Z"}
    )
    assert history({"version": "4"}) == (404, {"message": f"order {ORDER_ID} has no version 4: it is at version 3"})


def test_bad_queries_are_400_before_anything_is_read() -> None:
    confirmed_order()
    assert history({"version": "1", "asOf": "2026-11-26T09:00:00Z"})[0] == 400
    status, body = history({"asOf": "last tuesday"})
    assert status == 400 and body["message"].startswith("asOf must be an RFC 3339 date-time")
    assert history({"version": "0"})[0] == 400
    assert history({"asOf": "nonsense"}, order_id="not-an-id")[0] == 400


def test_another_customers_order_looks_exactly_like_a_missing_one_and_admins_read_any() -> None:
    confirmed_order()
    missing = "00000000-0000-4000-8000-000000000000"
    for query in (None, {"version": "1"}, {"asOf": "2026-11-26T09:00:30Z"}):
        status, body = history(query, claims={"sub": "mallory"})
        assert (status, body) == (404, {"message": f"order {ORDER_ID} not found"})
        assert history(query, claims={"sub": "mallory"}, order_id=missing) == (404, {"message": f"order {missing} not found"})
        assert history(query, claims=ADMIN)[0] == 200
    assert history(claims=None) == (401, {"message": "Unauthorized"})
    assert history(order_id="not-an-id") == (404, {"message": "order not-an-id not found"})


def test_ownership_is_decided_on_the_current_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """Were ownership to change over time, the order's owner now decides, never its owner back then."""
    confirmed_order()
    real = orders_api.service().load
    monkeypatch.setattr(orders_api.service(), "load", lambda order_id: replace(real(order_id), customer_id="bob"))
    assert history({"version": "1"})[0] == 404
    assert history({"version": "1"}, claims={"sub": "bob"}) == (200, view("PENDING", 1, priced=False))  # as it was


# ------------------------------------------------------------------------------------ the accounts


def funded_account(customer: str = "alice") -> None:
    """100.00 deposited at T0, 25.00 held at T0+10 s."""
    append(payments_api.settings.payments_table, account_id(customer), PAYMENTS_SOURCE, [
        (FundsDeposited(deposit_id="d-1", amount="100.00"), 0),
        (PaymentAuthorized(order_id=ORDER_ID, amount="25.00"), 10),
    ])


def account_history(query: dict[str, str] | None = None, claims: dict[str, str] | None = ADMIN, customer: str = "alice") -> tuple[int, Any]:
    return call(payments_api, f"/admin/accounts/{customer}/history", query, claims)


def test_the_account_history_is_for_admins_and_lists_its_events() -> None:
    funded_account()
    status, body = account_history()
    assert status == 200 and (body["customerId"], body["version"], body["nextAfter"]) == ("alice", 2, None)
    assert [(e["type"], e["subject"], e["data"]) for e in body["events"]] == [
        ("FundsDeposited", "account#alice", {"deposit_id": "d-1", "amount": "100.00"}),
        ("PaymentAuthorized", "account#alice", {"order_id": ORDER_ID, "amount": "25.00"}),
    ]
    assert account_history(claims=ALICE) == (403, {"message": "only admins may do this"})
    assert account_history(claims=None) == (401, {"message": "Unauthorized"})
    assert account_history({"limit": "1"})[1]["nextAfter"] == 1
    assert account_history(customer="b@d")[0] == 400


def test_the_account_as_it_was() -> None:
    funded_account()
    assert account_history({"version": "1"}) == (200, {"customerId": "alice", "balance": "100.00", "held": "0.00", "version": 1})
    assert account_history({"asOf": "2026-11-26T09:00:10Z"}) == (
        200, {"customerId": "alice", "balance": "100.00", "held": "25.00", "version": 2}
    )
    # Every account exists, empty, before its first event: GET /admin/accounts/{id} answers the same.
    assert account_history({"asOf": "2026-01-01T00:00:00Z"}) == (
        200, {"customerId": "alice", "balance": "0.00", "held": "0.00", "version": 0}
    )
    assert account_history({"version": "3"}) == (404, {"message": "the account of alice has no version 3: it is at version 2"})
    assert account_history({"version": "1", "asOf": "2026-11-26T09:00:10Z"})[0] == 400
    status, body = account_history({"asOf": "2026-11-26T09:00:10"})
    assert status == 400 and "RFC 3339" in body["message"]
    assert account_history(customer="nobody") == (200, {"customerId": "nobody", "version": 0, "events": [], "nextAfter": None})


def test_old_events_come_out_of_the_history_upcast(tables: Any) -> None:
    """A raw OrderPlaced item in its first shape (no contact_email, dataversion 1), read through the API."""
    item = {
        "pk": ORDER_ID, "sk": "0000000001", "kind": "event", "specversion": "1.0", "id": "e-old",
        "source": "orderflow.orders", "type": "OrderPlaced", "time": "2026-11-20T08:00:00.000000Z",
        "subject": ORDER_ID, "datacontenttype": "application/json", "dataversion": "1",
        "sequence": "0000000001", "correlationid": ORDER_ID,
        "data": json.dumps({"order_id": ORDER_ID, "customer_id": "alice", "lines": [{"sku": "SKU-1", "quantity": 2}]}),
    }
    tables.put_item(TableName=orders_api.settings.orders_table, Item=to_dynamo(item))
    status, body = history()
    assert status == 200
    [event] = body["events"]
    assert event["dataversion"] == "2" and event["data"]["contact_email"] is None and event["id"] == "e-old"
    assert history({"version": "1"})[1]["status"] == "PENDING"
    assert call(orders_api, f"/orders/{ORDER_ID}")[1]["customerId"] == "alice"
    [raw] = tables.scan(TableName=orders_api.settings.orders_table)["Items"]
    assert raw == to_dynamo(item)  # read many times, never rewritten
