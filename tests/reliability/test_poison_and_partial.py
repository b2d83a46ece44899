"""Poison and partial failure on the way to and from the bus, judged at the consumers (issue 5).

tests/e2e/test_outbox_relay.py shows the relay's side: a poison stream record goes to the on-failure queue, entries
EventBridge rejects are sent again. This file adds what it leaves out, and checks every consumer's effects:

* ``PutEvents`` rejecting every entry of its calls (``FailedEntryCount`` = all), within one relay invocation's
  retries and beyond them (the stream batch is retried by Lambda);
* ``PutEvents`` throttled as a call (``ThrottlingException``), once and past the relay's own attempts;
* a poison event on the bus (an order event that is not a CloudEvents envelope): each consumer's DLQ gets it after
  the redrive count, and the orders around it go through untouched.

After each, every order placed is whole (``Shop.verify_order``: terminal, stock, money and email exactly once,
every committed event on the bus, one saga, nothing left on a queue).
"""

from __future__ import annotations

import json
import threading
from typing import Any

import boto3
import pytest
from moto.events.models import EventsBackend

from offline import observe
from offline.faults import FaultInjector, Mode
from tests.figures import record

from .conftest import Placed, Shop

pytestmark = pytest.mark.reliability


class RejectingBus:
    """EventBridge answers the relay's next ``calls`` PutEvents calls with every entry failed (nothing delivered)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, calls: int, code: str = "InternalFailure") -> None:
        self.left, self.code = calls, code
        self.rejected_calls = 0
        self.rejected_entries = 0
        self._lock = threading.Lock()
        original = EventsBackend.put_events

        def put_events(backend: EventsBackend, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
            invocation = observe.current()
            with self._lock:
                reject = invocation is not None and "Relay" in invocation.function_name and self.left > 0
                if reject:
                    self.left -= 1
                    self.rejected_calls += 1
                    self.rejected_entries += len(events)
            if reject:
                return [{"ErrorCode": self.code, "ErrorMessage": "injected: every entry failed"} for _ in events]
            return original(backend, events)

        monkeypatch.setattr(EventsBackend, "put_events", put_events)


def place_all(shop: Shop, count: int) -> list[Placed]:
    """``count`` orders placed before the runtime runs anything, so the relay gets them in one stream batch."""
    return [shop.place(stage) for stage in shop.stage(count)]


def verify_all(shop: Shop, placed: list[Placed], **kwargs: Any) -> None:
    problems = [problem for order in placed for problem in shop.verify_order(order, **kwargs)]
    assert problems == [], "; ".join(problems)
    assert all(shop.order(order)["status"] == "CONFIRMED" for order in placed)


@pytest.mark.parametrize(
    ("orders", "rejected_calls"),
    [
        (3, 1),  # the relay's own retry within the invocation
        (3, 4),  # past the relay's attempts: the batch fails, Lambda retries it
        pytest.param(12, 7, marks=pytest.mark.slow),  # 10 + 2 entries per attempt, rejected across invocations
    ],
    ids=["within-one-invocation", "past-the-relays-attempts", "two-calls-per-attempt"],
)
def test_putevents_failing_every_entry_loses_nothing_and_duplicates_no_effect(
    shop: Shop, monkeypatch: pytest.MonkeyPatch, orders: int, rejected_calls: int
) -> None:
    placed = place_all(shop, orders)  # their OrderPlaced events reach the relay in one stream batch
    bus = RejectingBus(monkeypatch, rejected_calls)
    shop.rt.settle(timeout=60)
    assert bus.rejected_calls == rejected_calls and bus.rejected_entries >= orders
    record("scenarios", len(placed))
    record("faults_injected", bus.rejected_calls)
    verify_all(shop, placed)


@pytest.mark.parametrize("throttled_calls", [1, 4], ids=["once", "past-the-relays-attempts"])
def test_putevents_throttled_loses_nothing_and_duplicates_no_effect(shop: Shop, throttled_calls: int) -> None:
    placed = place_all(shop, 2)
    throttle = shop.rt.observe(
        FaultInjector("RelayHandler", 1, Mode.ERROR, code="ThrottlingException", times=throttled_calls))
    try:
        shop.rt.settle(timeout=60)
    finally:
        shop.rt.observers.remove(throttle)
    assert len(throttle.fired) == throttled_calls
    assert all(f.operation == "PutEvents" and f.code == "ThrottlingException" for f in throttle.fired)
    record("scenarios", len(placed))
    record("faults_injected", len(throttle.fired))
    verify_all(shop, placed)


def test_a_poison_event_lands_in_each_consumers_dlq_and_blocks_no_order(shop: Shop) -> None:
    """An order event that is no CloudEvents envelope, between good orders: every consumer of that event type
    fails it until SQS moves it to that consumer's DLQ; the good orders go through whole."""
    before = place_all(shop, 1)
    bus = shop.rt.physical("EventsBus").name
    poison = {"not": "a CloudEvents envelope", "marker": "poison-1"}
    boto3.client("events").put_events(Entries=[
        {"EventBusName": bus, "Source": "orderflow.orders", "DetailType": detail_type, "Detail": json.dumps(poison)}
        for detail_type in ("OrderPlaced", "OrderConfirmed")
    ])
    after = place_all(shop, 1)
    shop.rt.settle(timeout=60)
    record("scenarios", 2)
    record("faults_injected", 2)

    dlqs = sorted(item.logical_id for item in shop.rt.resources.values()
                  if item.type == "AWS::SQS::Queue" and "Dlq" in item.logical_id)
    inboxes = _inbox_rules(shop)  # DLQ logical id prefix -> the detail types its inbox's rule takes
    assert inboxes, "no consumer inbox with a DLQ in the template"
    verify_all(shop, before + after, ignore_queues=tuple(dlqs))
    for dlq, detail_types in inboxes.items():
        bodies = shop.drain_queue(dlq)
        wanted = sorted(t for t in ("OrderPlaced", "OrderConfirmed") if t in detail_types)
        got = sorted(body.get("detail-type") for body in bodies)
        assert got == wanted, f"{dlq} holds {got}, want the poison event(s) {wanted}"
        assert all(body["detail"] == poison for body in bodies)
    assert {name: depth for name, depth in shop.queue_depths().items() if depth} == {}


def _inbox_rules(shop: Shop) -> dict[str, set[str]]:
    """For every rule whose target is a queue with a DLQ: the DLQ's logical id and the detail types the rule takes."""
    resources = shop.rt.template.resources
    queue_dlq: dict[str, str] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::SQS::Queue":
            continue
        target = ((resource.get("Properties") or {}).get("RedrivePolicy") or {}).get("deadLetterTargetArn")
        if isinstance(target, dict) and "Fn::GetAtt" in target:
            queue_dlq[logical_id] = target["Fn::GetAtt"][0]
    rules: dict[str, set[str]] = {}
    for resource in resources.values():
        if resource.get("Type") != "AWS::Events::Rule":
            continue
        properties = resource.get("Properties") or {}
        pattern = properties.get("EventPattern") or {}
        if "orderflow.orders" not in (pattern.get("source") or []):
            continue
        for target in properties.get("Targets") or []:
            arn = target.get("Arn")
            queue = arn["Fn::GetAtt"][0] if isinstance(arn, dict) and "Fn::GetAtt" in arn else None
            if queue in queue_dlq:
                rules.setdefault(queue_dlq[queue], set()).update(pattern.get("detail-type") or [])
    return rules
