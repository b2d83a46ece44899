"""Issue 4, tracing one order across services: the `orderflow trace` timeline, and the order id as the
correlation id of every log line on the order's path.

The timeline is built in-process by offline.trace against the runtime's moto through boto3 (no sockets), with
the names the trace derives from the template itself, exactly as `orderflow trace --endpoint-url` does. The
timeline tests run in both profiles: a Standard execution is read from its history, an Express one (which has
none) from the state machine's log group.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from offline import trace
from offline.runtime import Runtime

from .test_order_saga import deposit, order, place, put_product, saga_input


@pytest.fixture
def shop(profile_rt: Runtime) -> Runtime:
    """The shop in each profile (tests/e2e/conftest.py: ``profile``)."""
    put_product(profile_rt, "SKU-1", "12.50", 10)
    return profile_rt


@pytest.fixture
def resources(rt: Runtime, template: dict[str, Any]) -> trace.Resources:
    return trace.local_resources(template, stack_name=rt.stack_name, region=rt.region)


@pytest.fixture
def shop_resources(shop: Runtime, profile_template: dict[str, Any]) -> trace.Resources:
    return trace.local_resources(profile_template, stack_name=shop.stack_name, region=shop.region)


def timeline_json(order_id: str, resources: trace.Resources) -> dict[str, Any]:
    timeline = trace.build_timeline(order_id, resources, trace.Clients())
    return json.loads(json.dumps(timeline.to_json()))  # what --json prints


def index(entries: list[dict[str, Any]], service: str, what: str) -> int:
    found = [i for i, entry in enumerate(entries) if entry["service"] == service and entry["what"].startswith(what)]
    assert len(found) == 1, f"{service} {what}: {len(found)} entries in {[(e['service'], e['what']) for e in entries]}"
    return found[0]


def assert_in_time_order(entries: list[dict[str, Any]]) -> None:
    times = [entry["time"] for entry in entries]
    assert None not in times
    assert times == sorted(times)


def test_the_trace_reads_the_names_the_runtime_created(rt: Runtime, resources: trace.Resources) -> None:
    assert resources == trace.Resources(
        orders_table=rt.physical("OrdersTable").name, inventory_table=rt.physical("InventoryTable").name,
        payments_table=rt.physical("PaymentsTable").name,
        notifications_table=rt.physical("NotificationsTable").name,
        state_machine_arn=rt.physical("OrderSagaStateMachine").arn)


def test_a_confirmed_order_with_a_retried_step_on_one_timeline(
    shop: Runtime, shop_resources: trace.Resources, profile: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import payments.saga

    original = payments.saga.handler

    class ConcurrencyError(Exception):  # the error name the saga retries (a lost optimistic-concurrency race)
        pass

    failures = iter([ConcurrencyError("another writer got there first")])

    def authorize_fails_once(event: dict[str, Any], context: Any) -> Any:
        if event.get("action") == "authorize":
            error = next(failures, None)
            if error is not None:
                raise error
        return original(event, context)

    monkeypatch.setattr(payments.saga, "handler", authorize_fails_once)
    deposit(shop, "alice", "100.00")
    order_id = place(shop, "alice", [("SKU-1", 2)])
    shop.settle()
    assert order(shop, "alice", order_id)["status"] == "CONFIRMED"

    report = timeline_json(order_id, shop_resources)
    assert (report["orderId"], report["customerId"], report["execution"]) == (order_id, "alice", "SUCCEEDED")
    entries = report["entries"]
    assert_in_time_order(entries)
    # The saga's part, in the order it happened: three steps, the pivot's OrderConfirmed last
    saga_path = [
        ("orders", "OrderPlaced"), ("saga", "execution started"), ("saga", "ReserveInventory"),
        ("inventory", "InventoryReserved"), ("saga", "AuthorizePayment"), ("payments", "PaymentAuthorized"),
        ("saga", "ConfirmOrder"), ("orders", "OrderConfirmed"),
    ]
    # ... then, each on its own clock: the execution ends, payments capture, inventory commits, the email goes.
    after_the_pivot = [("saga", "execution SUCCEEDED"), ("payments", "PaymentCaptured"),
                       ("inventory", "InventoryCommitted"), ("notifications", "email SENT to alice@example.com")]
    positions = [index(entries, service, what) for service, what in saga_path]
    assert positions == sorted(positions)
    assert all(index(entries, service, what) > positions[-1] for service, what in after_the_pivot)
    # nothing of other orders or of the deposit (its event has no order)
    assert len(entries) == len(saga_path) + len(after_the_pivot)
    steps = {entry["what"]: entry for entry in entries if entry["kind"] == "step"}
    assert all(step["durationMs"] is not None and step["durationMs"] >= 0 for step in steps.values())
    assert {name: step["outcome"] for name, step in steps.items()} == {
        "ReserveInventory": "ok", "AuthorizePayment": "retried", "ConfirmOrder": "ok"}
    authorize = steps["AuthorizePayment"]
    assert authorize["attempts"] == 2 and authorize["errors"][0]["error"] == "ConcurrencyError"
    assert "another writer got there first" in authorize["errors"][0]["cause"]
    assert authorize["data"]["function"] == shop.physical("PaymentsSagaFunction").name
    placed = entries[index(entries, "orders", "OrderPlaced")]
    assert placed["data"]["correlationid"] == order_id and placed["data"]["data"]["customer_id"] == "alice"
    start = entries[index(entries, "saga", "execution started")]
    assert start["data"]["executionArn"].split(":")[5] == ("express" if profile == "express" else "execution")
    end = entries[index(entries, "saga", "execution SUCCEEDED")]
    assert end["durationMs"] > 0 and end["detail"] == "ended in ConfirmOrder"

    table = trace.render_table(trace.build_timeline(order_id, shop_resources, trace.Clients()), color=False)
    assert "\033[" not in table
    for service, what in saga_path + after_the_pivot:
        assert any(service in line and what in line for line in table.splitlines()), (service, what)
    assert "ConcurrencyError" in table and "(2 tries)" in table
    coloured = trace.render_table(trace.build_timeline(order_id, shop_resources, trace.Clients()), color=True)
    assert "\033[" in coloured


def test_a_cancelled_order_shows_the_caught_error_and_the_compensations(
    shop: Runtime, shop_resources: trace.Resources
) -> None:
    deposit(shop, "bob", "10.00")
    order_id = place(shop, "bob", [("SKU-1", 2)])
    shop.settle()
    assert order(shop, "bob", order_id)["status"] == "CANCELLED"

    report = timeline_json(order_id, shop_resources)
    entries = report["entries"]
    assert_in_time_order(entries)
    path = [
        ("orders", "OrderPlaced"), ("saga", "ReserveInventory"), ("inventory", "InventoryReserved"),
        ("saga", "AuthorizePayment"), ("payments", "PaymentDeclined"), ("saga", "CancelOrder"),
        ("orders", "OrderCancelled"), ("saga", "VoidAuthorization"), ("saga", "ReleaseInventory"),
        ("inventory", "InventoryReleased"), ("saga", "execution SUCCEEDED"),
    ]
    positions = [index(entries, service, what) for service, what in path]
    assert positions == sorted(positions)
    assert index(entries, "notifications", "email SENT to bob@example.com") > index(entries, "orders", "OrderCancelled")
    authorize = entries[index(entries, "saga", "AuthorizePayment")]
    assert authorize["outcome"] == "caught" and authorize["errors"][0]["error"] == "PaymentDeclined"
    assert authorize["detail"].endswith("-> CancelOrder") and authorize["durationMs"] is not None
    assert entries[index(entries, "orders", "OrderCancelled")]["detail"] == "reason PAYMENT_DECLINED"
    assert entries[index(entries, "saga", "execution SUCCEEDED")]["detail"] == "ended in ReleaseInventory"
    assert "inventory: reservation RELEASED (version 2)" in report["notes"]

    table = trace.render_table(trace.build_timeline(order_id, shop_resources, trace.Clients()))
    for service, what in path:
        assert any(service in line and what in line for line in table.splitlines()), (service, what)
    assert "! AuthorizePayment" in table and "PaymentDeclined" in table


def test_an_order_whose_saga_ran_twice_shows_every_execution(
    shop: Runtime, shop_resources: trace.Resources, profile: str
) -> None:
    """A second start of the same order's saga: Standard refuses it (one execution, named by the order); Express
    runs it, and the trace shows both executions from the log group."""
    import boto3
    from botocore.exceptions import ClientError

    deposit(shop, "cy", "100.00")
    order_id = place(shop, "cy", [("SKU-1", 1)])
    shop.settle()
    request = {"stateMachineArn": shop.physical("OrderSagaStateMachine").arn, "name": order_id,
               "input": saga_input(order_id, "cy", [("SKU-1", 1)])}
    try:
        boto3.client("stepfunctions").start_execution(**request)
    except ClientError as error:
        assert profile == "standard" and error.response["Error"]["Code"] == "ExecutionAlreadyExists"
    shop.settle()

    report = timeline_json(order_id, shop_resources)
    entries = report["entries"]
    starts = [entry for entry in entries if entry["what"] == "execution started"]
    confirms = [entry for entry in entries if entry["what"] == "ConfirmOrder"]
    if profile == "standard":
        assert report["execution"] == "SUCCEEDED" and len(starts) == len(confirms) == 1
    else:
        assert report["execution"] == "SUCCEEDED, SUCCEEDED" and len(starts) == len(confirms) == 2
        assert len({start["data"]["executionArn"] for start in starts}) == 2
        assert "saga: 2 Express executions of this order" in " ".join(report["notes"])
    # ... and one order, one capture, one commit, one email whatever ran twice
    for service, what in (("orders", "OrderConfirmed"), ("payments", "PaymentCaptured"),
                          ("inventory", "InventoryCommitted"), ("notifications", "email SENT")):
        index(entries, service, what)


def test_an_express_order_whose_logs_are_gone_is_traced_from_the_services(
    shop: Runtime, shop_resources: trace.Resources, profile: str
) -> None:
    """Express keeps no execution history: when the log group has nothing for the order (expired, not delivered
    yet) the trace says so and still shows every service's part."""
    import boto3

    deposit(shop, "dee", "100.00")
    order_id = place(shop, "dee", [("SKU-1", 1)])
    shop.settle()
    logs, group = boto3.client("logs"), shop.physical("OrderSagaLogs").name
    for stream in logs.describe_log_streams(logGroupName=group)["logStreams"]:
        logs.delete_log_stream(logGroupName=group, logStreamName=stream["logStreamName"])

    report = timeline_json(order_id, shop_resources)
    entries = report["entries"]
    if profile == "standard":  # the history API does not depend on the log group
        assert report["execution"] == "SUCCEEDED" and index(entries, "saga", "ConfirmOrder") >= 0
        return
    assert report["execution"] is None
    assert not [entry for entry in entries if entry["service"] == "saga"]
    assert any(note.startswith(f"saga: no Express execution of {order_id} in log group {group}")
               for note in report["notes"])
    for service, what in (("orders", "OrderPlaced"), ("orders", "OrderConfirmed"), ("payments", "PaymentCaptured"),
                          ("inventory", "InventoryCommitted"), ("notifications", "email SENT")):
        index(entries, service, what)


def test_an_unknown_order_is_a_clear_error(rt: Runtime, resources: trace.Resources) -> None:
    with pytest.raises(trace.OrderNotFound, match="order 5b0e7a52-0000-0000-0000-000000000000 not found"):
        trace.build_timeline("5b0e7a52-0000-0000-0000-000000000000", resources, trace.Clients())


def test_a_missing_table_is_a_clear_error(rt: Runtime, resources: trace.Resources) -> None:
    wrong = trace.Resources(**{**resources.__dict__, "orders_table": "Elsewhere-OrdersTable"})
    with pytest.raises(trace.TraceError, match="table Elsewhere-OrdersTable does not exist"):
        trace.build_timeline("5b0e7a52-0000-0000-0000-000000000000", wrong, trace.Clients())


# ====================================================================================== correlation ids
@contextmanager
def json_log_lines(rt: Runtime, template: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
    """Every Powertools log line of every function, while the block runs, as parsed JSON.

    Each Powertools Logger writes through one handler per service name (a process-wide logging.Logger): the
    handler modules are imported first (as their first invocation would) and those handlers are pointed at a
    buffer, whatever stream an earlier test left them on.
    """
    modules = {resource["Properties"]["Handler"].rpartition(".")[0]
               for resource in template["Resources"].values() if resource["Type"] == "AWS::Lambda::Function"}
    handlers: dict[int, logging.StreamHandler[Any]] = {}
    for name in sorted(modules):
        powertools_logger = getattr(importlib.import_module(name), "logger", None)
        handler = getattr(powertools_logger, "registered_handler", None)
        if isinstance(handler, logging.StreamHandler):
            handlers[id(handler)] = handler
    buffer = io.StringIO()
    previous = {key: handler.setStream(buffer) for key, handler in handlers.items()}
    lines: list[dict[str, Any]] = []
    try:
        yield lines
    finally:
        for key, handler in handlers.items():
            handler.setStream(previous[key])  # type: ignore[arg-type]
        lines += [json.loads(line) for line in buffer.getvalue().splitlines() if line.startswith("{")]


def test_every_log_line_on_an_orders_path_carries_the_order_id_as_correlation_id(
    shop: Runtime, template: dict[str, Any]
) -> None:
    """One order from POST to email: orders API, relay, saga starter, the saga's steps in orders, inventory and
    payments, the projector, notifications, and GET by id. Only this order is in flight, so every line logged
    meanwhile concerns it.

    Offline only, not deployed: the functions of one service share one logging.Logger in this process, and a
    saga step's clear_state could blank the keys of another function of the same service logging at that very
    instant on another thread. Deployed, every function has its own process.
    """
    deposit(shop, "alice", "100.00")
    shop.settle()
    with json_log_lines(shop, template) as lines:
        order_id = place(shop, "alice", [("SKU-1", 1)])
        shop.settle()
        assert order(shop, "alice", order_id)["status"] == "CONFIRMED"
    services = {line["service"] for line in lines}
    assert {"orders", "relay", "inventory", "payments", "notifications"} <= services
    wrong = [line for line in lines if line.get("correlation_id") != order_id]
    assert wrong == [], json.dumps(wrong, indent=1)
    messages = {(line["service"], line["message"]) for line in lines}
    assert ("orders", "order placed") in messages and ("notifications", "email sent") in messages
    assert ("relay", "event published") in messages and ("orders", "saga started") in messages

