"""A cancelled TransactWriteItems on the event store publishes nothing, and publishes nothing again.

The regression this guards: the offline runtime let moto restore a deep copy of the orders table when a
transaction was cancelled; the relay's stream poller took the copied shard for a new one and published every past
event again (and every consumer processed it again). On AWS a cancelled transaction writes nothing to the stream
and leaves every iterator where it was.
"""

from __future__ import annotations

import json
from collections import Counter

import boto3
import pytest

from offline.runtime import Runtime
from shared.event_store import ConcurrencyError, DynamoDBEventStore
from shared.events import DomainEvent, wrap

from .conftest import BusSpy, customer


class Scribbled(DomainEvent):
    note: str


def place(rt: Runtime, who: str) -> str:
    response = rt.api.request("POST", "/orders", headers={**customer(who), "Content-Type": "application/json",
                                                          "Idempotency-Key": f"k-{who}"},
                              body=json.dumps({"items": [{"sku": "SKU-NONE", "quantity": 1}]}))
    assert response.status == 202, response.body
    return str(response.json()["orderId"])


def test_a_cancelled_append_publishes_nothing_and_nothing_again(rt: Runtime, spy: BusSpy) -> None:
    first = place(rt, "ann")
    rt.settle()
    published = spy.drain()
    assert {e["detail"]["subject"] for e in published if e["detail-type"] == "OrderPlaced"} == {first}

    # A writer that loaded the order at version 0 appends two events: its transaction is cancelled.
    store = DynamoDBEventStore(rt.physical("OrdersTable").name, boto3.client("dynamodb"))
    stale = [wrap(Scribbled(note=str(n)), source="orderflow.tests", subject=first, version=n) for n in (1, 2)]
    with pytest.raises(ConcurrencyError):
        store.append(first, 0, stale)
    rt.settle()
    assert spy.drain() == published  # nothing new on the bus, nothing published a second time

    second = place(rt, "bob")
    rt.settle()
    after = spy.drain()[len(published):]
    assert {e["detail"]["subject"] for e in after if e["detail-type"] == "OrderPlaced"} == {second}
    assert first not in {e["detail"]["subject"] for e in after}
    counts = Counter(e["detail"]["id"] for e in spy.drain())
    assert max(counts.values()) == 1  # every event on the bus once
