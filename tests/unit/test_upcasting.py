"""Schema evolution: events carry a schema version, older ones are upcast when read and never rewritten."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, ClassVar

import boto3
import pytest
from moto import mock_aws

from inventory.events import CATALOG as INVENTORY
from orders.domain import OrderStatus
from orders.events import CATALOG as ORDERS
from orders.events import OrderPlaced
from orders.service import OrderService
from payments.events import CATALOG as PAYMENTS
from shared.event_store import DynamoDBEventStore, from_dynamo, to_dynamo
from shared.events import DomainEvent, EventCatalog, EventEnvelope, SchemaVersionError, UnknownEventType, wrap

ORDER_ID = "4c0a1f8e-7d52-4b8e-9a3a-2f1f0b8c9d11"


# ------------------------------------------------------------------------------------- the catalog's chain


class Renamed(DomainEvent):
    """v1 {"name"}; v2 {"title"}; v3 {"title", "tags"}."""

    schema_version: ClassVar[int] = 3
    title: str
    tags: tuple[str, ...]


def chained_catalog(calls: list[str] | None = None) -> EventCatalog:
    catalog = EventCatalog(Renamed)
    calls = [] if calls is None else calls

    @catalog.upcaster(Renamed, from_version=2)
    def _v2_v3(data: dict[str, Any]) -> dict[str, Any]:
        calls.append("v2->v3")
        return {**data, "tags": []}

    @catalog.upcaster(Renamed, from_version=1)
    def _v1_v2(data: dict[str, Any]) -> dict[str, Any]:
        calls.append("v1->v2")
        data["title"] = data.pop("name")  # upcasters get a copy: mutating it must not touch the envelope
        return data

    return catalog


def envelope(type_: str, dataversion: int, data: dict[str, Any], subject: str = "a-1") -> EventEnvelope:
    return EventEnvelope(
        id="e-1", source="test", type=type_, time="2026-11-26T09:00:00Z", subject=subject,
        dataversion=str(dataversion), sequence="0000000001", correlationid=subject, data=data,
    )


def test_decode_runs_the_chain_in_order_from_the_stored_version() -> None:
    calls: list[str] = []
    catalog = chained_catalog(calls)
    old = envelope("Renamed", 1, {"name": "x"})
    assert catalog.decode(old) == Renamed(title="x", tags=())
    assert calls == ["v1->v2", "v2->v3"]
    calls.clear()
    assert catalog.decode(envelope("Renamed", 2, {"title": "y"})) == Renamed(title="y", tags=())
    assert calls == ["v2->v3"]
    calls.clear()
    current = envelope("Renamed", 3, {"title": "z", "tags": ["a"]})
    assert catalog.upcast(current) is current and calls == []


def test_upcast_answers_a_new_envelope_and_leaves_the_old_one_as_it_was() -> None:
    old = envelope("Renamed", 1, {"name": "x"})
    new = chained_catalog().upcast(old)
    assert (new.dataversion, new.data) == ("3", {"title": "x", "tags": []})
    assert (new.id, new.sequence, new.time, new.type) == (old.id, old.sequence, old.time, old.type)
    assert (old.dataversion, old.data) == ("1", {"name": "x"})


def test_a_version_newer_than_the_code_knows_is_a_clear_error() -> None:
    with pytest.raises(SchemaVersionError, match=r"data version 4, newer than the 3 this code knows"):
        chained_catalog().decode(envelope("Renamed", 4, {"title": "x", "tags": []}))
    with pytest.raises(SchemaVersionError, match="versions start at 1"):
        chained_catalog().decode(envelope("Renamed", 0, {"name": "x"}))


def test_a_missing_link_in_the_chain_is_named() -> None:
    catalog = EventCatalog(Renamed)
    catalog.upcaster(Renamed, from_version=1)(lambda data: {"title": data["name"]})
    assert catalog.missing_upcasters() == ["Renamed v2 -> v3"]
    with pytest.raises(SchemaVersionError, match="no upcaster from version 2 to 3"):
        catalog.decode(envelope("Renamed", 1, {"name": "x"}))


def test_upcasters_must_fit_the_chain() -> None:
    catalog = chained_catalog()
    with pytest.raises(ValueError, match="two upcasters from version 1"):
        catalog.upcaster(Renamed, from_version=1)(lambda data: data)
    with pytest.raises(ValueError, match="cannot be part of its chain"):
        catalog.upcaster(Renamed, from_version=3)(lambda data: data)
    with pytest.raises(ValueError, match="cannot be part of its chain"):
        catalog.upcaster(Renamed, from_version=0)(lambda data: data)
    with pytest.raises(ValueError, match="not registered"):
        EventCatalog().upcaster(Renamed, from_version=1)(lambda data: data)
    with pytest.raises(UnknownEventType):
        catalog.upcast(envelope("Nope", 1, {}))


@pytest.mark.parametrize("catalog", [ORDERS, PAYMENTS, INVENTORY], ids=["orders", "payments", "inventory"])
def test_every_catalog_can_bring_every_version_it_ever_wrote_to_the_current_one(catalog: EventCatalog) -> None:
    assert catalog.missing_upcasters() == []


# ---------------------------------------------------------------------- the real change: OrderPlaced v1 -> v2

V1_DATA = {"order_id": ORDER_ID, "customer_id": "alice", "lines": [{"sku": "SKU-1", "quantity": 2}]}


def test_order_placed_is_at_version_2_and_new_events_say_so() -> None:
    assert OrderPlaced.schema_version == ORDERS.schema_version("OrderPlaced") == 2
    event = OrderPlaced(order_id=ORDER_ID, customer_id="alice", lines=(), contact_email=None)
    assert wrap(event, source="s", subject=ORDER_ID, version=1).dataversion == "2"
    with pytest.raises(ValueError, match="contact_email"):  # v2 always carries the field (null when unknown)
        OrderPlaced.model_validate(V1_DATA)


def test_order_placed_v1_is_upcast_with_no_contact_email_and_keeps_one_it_had() -> None:
    assert ORDERS.decode(envelope("OrderPlaced", 1, V1_DATA, ORDER_ID)).contact_email is None
    assert ORDERS.upcast(envelope("OrderPlaced", 1, V1_DATA, ORDER_ID)).data == {**V1_DATA, "contact_email": None}
    # Version 1 allowed the field already (with a default), so a v1 event may carry it: the upcaster keeps it.
    with_email = {**V1_DATA, "contact_email": "alice@example.com"}
    assert ORDERS.decode(envelope("OrderPlaced", 1, with_email, ORDER_ID)).contact_email == "alice@example.com"


@pytest.fixture
def orders_table() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="orders",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def put_v1_order_placed(client: Any, order_id: str = ORDER_ID, dataversion: str = "1", data: dict[str, Any] | None = None) -> dict[str, Any]:
    """A raw item as the first version of the order service wrote it: OrderPlaced data without contact_email."""
    item = {
        "pk": order_id, "sk": "0000000001", "kind": "event", "specversion": "1.0",
        "id": "0d8e7c9a-1111-4222-8333-944455556666", "source": "orderflow.orders", "type": "OrderPlaced",
        "time": "2026-11-20T08:00:00.000000Z", "subject": order_id, "datacontenttype": "application/json",
        "dataversion": dataversion, "sequence": "0000000001", "correlationid": order_id,
        "data": json.dumps(data or {**V1_DATA, "order_id": order_id}, separators=(",", ":"), sort_keys=True),
    }
    client.put_item(TableName="orders", Item=to_dynamo(item))
    return item


def stored(client: Any, order_id: str = ORDER_ID) -> list[dict[str, Any]]:
    items = client.query(
        TableName="orders", KeyConditionExpression="pk = :pk", ExpressionAttributeValues=to_dynamo({":pk": order_id})
    )["Items"]
    return [from_dynamo(i) for i in items]


def test_a_stored_v1_order_loads_through_the_service_and_is_never_rewritten(orders_table: Any) -> None:
    original = put_v1_order_placed(orders_table)
    service = OrderService(DynamoDBEventStore("orders", orders_table))

    order = service.load(ORDER_ID)
    assert order is not None and (order.customer_id, order.status, order.contact_email, order.version) == (
        "alice", OrderStatus.PENDING, None, 1
    )
    [event] = service.events(ORDER_ID)
    assert event.dataversion == "2" and event.data == {**V1_DATA, "contact_email": None}

    # New events append after the old one; the old item stays exactly as it was written.
    service.price(ORDER_ID, [("SKU-1", 2, Decimal("12.50"))])
    confirmed = service.confirm(ORDER_ID)
    assert (confirmed.status, confirmed.version, confirmed.contact_email) == (OrderStatus.CONFIRMED, 3, None)
    first, *_ = stored(orders_table)
    assert first == original
    assert [e.dataversion for e in service.events(ORDER_ID)] == ["2", "1", "2"]  # OrderConfirmed is at v2


def test_a_stored_event_from_newer_code_fails_loudly_instead_of_being_misread(orders_table: Any) -> None:
    put_v1_order_placed(orders_table, dataversion="3", data={**V1_DATA, "contact_email": None, "channel": "web"})
    with pytest.raises(SchemaVersionError, match="OrderPlaced event .* has data version 3, newer than the 2"):
        OrderService(DynamoDBEventStore("orders", orders_table)).load(ORDER_ID)
