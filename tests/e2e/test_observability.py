"""What operators will see, from a real run of the order flow through the offline runtime.

- Every custom metric the dashboard and the alarms read (taken from the synthesized template) is emitted by
  some function under that namespace, name and dimensions: the EMF lines in the functions' output are what
  CloudWatch turns into metrics, so a dashboard line nobody emits would show up here as missing.
- The log lines of the functions on an order's path carry the order id as ``correlation_id``.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from typing import Any

import pytest
from aws_lambda_powertools.logging.formatter import BasePowertoolsFormatter

from offline.runtime import Runtime
from tests.infra.test_dashboard import dashboard_body, metrics_of

from .conftest import ROOT, customer
from .test_order_saga import deposit, order, place, put_product
from .test_outbox_relay import FlakyPutEvents

Emitted = set[tuple[str, str, frozenset[tuple[str, str]]]]


def json_lines(output: str) -> list[dict[str, Any]]:
    lines = []
    for line in output.splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines


def emf(documents: list[dict[str, Any]]) -> Emitted:
    """(namespace, metric, dimensions) of every metric in the Embedded Metric Format documents."""
    found: Emitted = set()
    for document in documents:
        for directive in document.get("_aws", {}).get("CloudWatchMetrics", []):
            for dimension_set in directive["Dimensions"]:
                dimensions = frozenset((name, str(document[name])) for name in dimension_set)
                for metric in directive["Metrics"]:
                    found.add((directive["Namespace"], metric["Name"], dimensions))
    return found


def read_by_operators(template: dict[str, Any]) -> set[tuple[str, str, frozenset[tuple[str, str]]]]:
    """Every metric outside the AWS/ namespaces that the dashboard or an alarm reads."""
    resources = template["Resources"]
    wanted = set()
    for widget in dashboard_body(resources)["widgets"]:
        for namespace, name, dimensions, _ in metrics_of(widget["properties"]):
            if not namespace.startswith("AWS/"):
                wanted.add((namespace, name, frozenset(dimensions.items())))
    for alarm in (r for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"):
        props = alarm["Properties"]
        metrics = [props] if "MetricName" in props else [m["MetricStat"]["Metric"] for m in props.get("Metrics", []) if "MetricStat" in m]
        for metric in metrics:
            if not metric["Namespace"].startswith("AWS/"):
                dimensions = frozenset((d["Name"], d["Value"]) for d in metric.get("Dimensions", []))
                wanted.add((metric["Namespace"], metric["MetricName"], dimensions))
    return wanted


class EveryOrder:
    """Stands for the set of every order id: FlakyPutEvents then rejects each OrderPlaced entry once."""

    def __contains__(self, order_id: object) -> bool:
        return True


def place_with_key(rt: Runtime, customer_id: str, lines: list[tuple[str, int]], key: str) -> str:
    response = rt.api.request(
        "POST", "/orders",
        headers={**customer(customer_id), "Content-Type": "application/json", "Idempotency-Key": key},
        body=json.dumps({"items": [{"sku": s, "quantity": q} for s, q in lines]}),
    )
    assert response.status == 202, response.body
    return response.json()["orderId"]


@contextmanager
def powertools_output_to(stream: io.StringIO) -> Iterator[None]:
    """Everything the functions print (EMF) and log (Powertools Logger) goes to ``stream`` meanwhile.

    Powertools binds a service's log handler to the sys.stdout of the first Logger of that service in the
    process (an earlier test's capture, say): those handlers are pointed at ``stream`` too, and back after.
    """
    swapped = []
    for logger in list(logging.root.manager.loggerDict.values()):
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, logging.StreamHandler) and isinstance(handler.formatter, BasePowertoolsFormatter):
                swapped.append((handler, handler.setStream(stream)))
    try:
        with redirect_stdout(stream):
            yield
    finally:
        for handler, previous in swapped:
            handler.setStream(previous)


@pytest.fixture(scope="module")
def run(template: dict[str, Any]) -> Iterator[tuple[dict[str, str], list[dict[str, Any]]]]:
    """Orders that end every way there is, each OrderPlaced rejected by PutEvents until the relay gives it back to
    Lambda once; the order id per customer, and every JSON line the functions printed."""
    output = io.StringIO()
    rt = Runtime(template, code_root=ROOT / "functions")
    with pytest.MonkeyPatch.context() as monkeypatch, powertools_output_to(output):
        rt.start()
        try:
            outcomes = _orders_ending_every_way(rt, monkeypatch)
        finally:
            rt.stop()
    yield outcomes, json_lines(output.getvalue())


def _orders_ending_every_way(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    import inventory.saga
    from orders.service import order_id_for

    dan_key = "obs-dan"
    dans_order = order_id_for("dan", dan_key)  # known before it exists: its release fails from the start
    original = inventory.saga.handler

    def release_fails_for_dan(event: dict[str, Any], context: Any) -> Any:
        if event.get("action") == "release" and event.get("orderId") == dans_order:
            raise RuntimeError("inventory is down")
        return original(event, context)

    monkeypatch.setattr(inventory.saga, "handler", release_fails_for_dan)
    # the relay's three attempts in one invocation fail, the next invocation publishes: EventsNotPublished
    FlakyPutEvents(monkeypatch, failing=EveryOrder(), times=3)  # type: ignore[arg-type]
    put_product(rt, "SKU-1", "12.50", 10)
    put_product(rt, "RARE", "5.00", 1)
    for name, amount in (("ann", "100.00"), ("bob", "1.00"), ("dan", "1.00")):
        deposit(rt, name, amount)
    outcomes = {
        "ann": place(rt, "ann", [("SKU-1", 2)]),  # confirmed
        "bob": place(rt, "bob", [("SKU-1", 1)]),  # declined
        "carl": place(rt, "carl", [("RARE", 2)]),  # out of stock
        "dan": place_with_key(rt, "dan", [("SKU-1", 1)], dan_key),  # declined, its release fails: NEEDS_ATTENTION
    }
    assert outcomes["dan"] == dans_order
    rt.settle()
    statuses = {name: order(rt, name, order_id) for name, order_id in outcomes.items()}
    assert {name: (s["status"], s["reason"] if s["status"] == "CANCELLED" else None) for name, s in statuses.items()} == {
        "ann": ("CONFIRMED", None), "bob": ("CANCELLED", "PAYMENT_DECLINED"), "carl": ("CANCELLED", "OUT_OF_STOCK"),
        "dan": ("NEEDS_ATTENTION", None),
    }
    return outcomes


def test_every_metric_on_the_dashboard_and_the_alarms_is_emitted(
    template: dict[str, Any], run: tuple[dict[str, str], list[dict[str, Any]]]
) -> None:
    _, output = run
    emitted = emf(output)
    wanted = read_by_operators(template)
    assert wanted, "the template has no custom metric at all"
    assert wanted - emitted == set(), f"read by the dashboard or an alarm, emitted by nothing: {sorted(wanted - emitted)}"


def test_cancellations_are_counted_by_reason_as_the_dashboard_searches_them(
    run: tuple[dict[str, str], list[dict[str, Any]]],
) -> None:
    _, output = run
    by_reason = {
        dict(dimensions)["reason"]
        for namespace, name, dimensions in emf(output)
        if name == "OrdersCancelled" and {k for k, _ in dimensions} == {"reason", "service"}
        and dict(dimensions)["service"] == "orders" and namespace == "Orderflow"
    }
    assert by_reason >= {"PAYMENT_DECLINED", "OUT_OF_STOCK"}


def test_the_log_lines_about_an_order_carry_its_id_as_correlation_id(
    run: tuple[dict[str, str], list[dict[str, Any]]],
) -> None:
    outcomes, output = run
    logs = [line for line in output if "level" in line and "service" in line]
    on_every_path = {"orders", "relay", "inventory", "notifications", "projections"}
    paid = on_every_path | {"payments"}  # carl's order never got as far as a payment: out of stock first
    expected = {"ann": paid, "bob": paid, "carl": on_every_path, "dan": paid}
    for name, order_id in outcomes.items():
        services = {line["service"] for line in logs if line.get("correlation_id") == order_id}
        assert expected[name] <= services, f"{name}: no line with correlation_id={order_id} from {sorted(expected[name] - services)}"
    # the relay and the notifications log per event, with that event's correlation id (the relay also publishes
    # stock and deposit events, correlated by request or account): never a line about nothing in particular
    relay = [line for line in logs if line["service"] == "relay"]
    assert relay and all(line.get("correlation_id") for line in relay)
    notifications = [line for line in logs if line["service"] == "notifications"]
    assert notifications and all(line.get("correlation_id") in outcomes.values() for line in notifications)
