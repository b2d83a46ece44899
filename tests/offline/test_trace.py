"""offline.trace without a runtime: where the names come from, how a saga history reads, how it renders, and
what the command says when it cannot trace."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from offline import trace
from offline.__main__ import main

T0 = datetime(2026, 11, 26, 9, 0, 0, tzinfo=UTC)

TEMPLATE = {
    "Resources": {
        "OrdersTable1F8332C7": {"Type": "AWS::DynamoDB::Table", "Properties": {}},
        "InventoryTable40A3050B": {"Type": "AWS::DynamoDB::Table", "Properties": {"TableName": "named-by-hand"}},
        "PaymentsTable9E001CC6": {"Type": "AWS::DynamoDB::Table", "Properties": {}},
        "NotificationsTable024CBB72": {"Type": "AWS::DynamoDB::Table", "Properties": {}},
        "OrderSagaStateMachine15260A25": {"Type": "AWS::StepFunctions::StateMachine", "Properties": {}},
        "OrdersTableReplica0ABCDEF1": {"Type": "AWS::DynamoDB::Table", "Properties": {}},
    }
}


def test_local_names_are_the_offline_runtimes_names() -> None:
    resources = trace.local_resources(TEMPLATE, stack_name="Shop", region="eu-west-1")
    assert resources == trace.Resources(
        orders_table="Shop-OrdersTable", inventory_table="named-by-hand", payments_table="Shop-PaymentsTable",
        notifications_table="Shop-NotificationsTable",
        state_machine_arn="arn:aws:states:eu-west-1:123456789012:stateMachine:Shop-OrderSagaStateMachine")


def test_a_template_without_the_saga_is_not_orderflows() -> None:
    body = {"Resources": {k: v for k, v in TEMPLATE["Resources"].items() if "Saga" not in k}}
    with pytest.raises(trace.TraceError, match="the template has no OrderSagaStateMachine"):
        trace.local_resources(body, stack_name="Shop", region="us-east-1")


class FakeCloudFormation:
    def __init__(self, pages: list[list[dict[str, str]]]) -> None:
        self.pages = pages
        self.asked: list[str] = []

    def get_paginator(self, operation: str) -> FakeCloudFormation:
        assert operation == "list_stack_resources"
        return self

    def paginate(self, StackName: str) -> list[dict[str, Any]]:  # noqa: N803 - boto3's name
        self.asked.append(StackName)
        return [{"StackResourceSummaries": page} for page in self.pages]


def test_deployed_names_come_from_the_stacks_resources_over_every_page() -> None:
    def summary(logical_id: str, kind: str, physical: str) -> dict[str, str]:
        return {"LogicalResourceId": logical_id, "ResourceType": kind, "PhysicalResourceId": physical}

    table = "AWS::DynamoDB::Table"
    cloudformation = FakeCloudFormation([
        [summary("OrdersTable1F8332C7", table, "Orderflow-OrdersTable1F8332C7-XYZ"),
         summary("OrdersApiFunction4EFA4FB8", "AWS::Lambda::Function", "fn"),
         summary("InventoryTable40A3050B", table, "inv")],
        [summary("PaymentsTable9E001CC6", table, "pay"), summary("NotificationsTable024CBB72", table, "note"),
         summary("OrderSagaStateMachine15260A25", "AWS::StepFunctions::StateMachine", "arn:aws:states:x:1:stateMachine:s")],
    ])
    resources = trace.cloudformation_resources("Orderflow", cloudformation)
    assert cloudformation.asked == ["Orderflow"]
    assert resources.orders_table == "Orderflow-OrdersTable1F8332C7-XYZ"
    assert resources.state_machine_arn == "arn:aws:states:x:1:stateMachine:s"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def entered(name: str, seconds: float, kind: str = "Task") -> dict[str, Any]:
    return {"type": f"{kind}StateEntered", "timestamp": at(seconds), "stateEnteredEventDetails": {"name": name}}


def exited(name: str, seconds: float, kind: str = "Task") -> dict[str, Any]:
    return {"type": f"{kind}StateExited", "timestamp": at(seconds), "stateExitedEventDetails": {"name": name}}


def scheduled(seconds: float, function: str = "Fn") -> dict[str, Any]:
    parameters = json.dumps({"FunctionName": f"arn:aws:lambda:us-east-1:1:function:{function}", "Payload": {}})
    return {"type": "TaskScheduled", "timestamp": at(seconds), "taskScheduledEventDetails": {"parameters": parameters}}


def failed(seconds: float, error: str, message: str) -> dict[str, Any]:
    cause = json.dumps({"errorMessage": message, "errorType": error, "stackTrace": []})
    return {"type": "TaskFailed", "timestamp": at(seconds), "taskFailedEventDetails": {"error": error, "cause": cause}}


def succeeded(seconds: float) -> dict[str, Any]:
    return {"type": "TaskSucceeded", "timestamp": at(seconds), "taskSucceededEventDetails": {}}


def test_a_saga_history_becomes_steps_with_attempts_errors_and_durations() -> None:
    timeline = trace.Timeline(order_id="o-1", execution_status="SUCCEEDED")
    terminal = trace._state_entries(timeline, [
        entered("Reserve", 0.0), scheduled(0.001, "InventorySaga"), failed(0.010, "ConcurrencyError", "lost a race"),
        scheduled(0.020, "InventorySaga"), succeeded(0.030), exited("Reserve", 0.031),
        entered("Authorize", 0.031), scheduled(0.032), failed(0.040, "PaymentDeclined", "insufficient funds"),
        exited("Authorize", 0.041), entered("Void", 0.041), scheduled(0.042), succeeded(0.050), exited("Void", 0.050),
        entered("Cancelled", 0.050, "Succeed"), exited("Cancelled", 0.050, "Succeed"),
    ])
    assert terminal == "Cancelled"
    steps = {entry.what: entry for entry in timeline.entries}
    assert list(steps) == ["Reserve", "Authorize", "Void"]
    reserve = steps["Reserve"]
    assert (reserve.outcome, reserve.attempts, reserve.duration_ms) == ("retried", 2, 31)
    assert reserve.errors[0]["error"] == "ConcurrencyError" and reserve.data["function"] == "InventorySaga"
    assert "lost a race" in reserve.detail
    authorize = steps["Authorize"]
    assert authorize.outcome == "caught" and authorize.detail == "PaymentDeclined: insufficient funds -> Void"
    assert (steps["Void"].outcome, steps["Void"].duration_ms) == ("ok", 9)


def test_a_step_that_failed_the_execution_and_one_still_running() -> None:
    timeline = trace.Timeline(order_id="o-1", execution_status="FAILED")
    trace._state_entries(timeline, [entered("Flag", 0), scheduled(0.001), failed(0.002, "States.Timeout", "")])
    [flag] = timeline.entries
    assert (flag.outcome, flag.duration_ms, flag.detail) == ("failed", None, "States.Timeout")
    running = trace.Timeline(order_id="o-2", execution_status="RUNNING")
    trace._state_entries(running, [entered("Reserve", 0), scheduled(0.001)])
    assert running.entries[0].outcome == "running"


def sample() -> trace.Timeline:
    timeline = trace.Timeline(order_id="o-1", customer_id="alice", execution_status="SUCCEEDED")
    timeline.entries += [
        trace.Entry(time=at(0.5), service="saga", kind="step", what="ReserveInventory", duration_ms=12, attempts=1),
        trace.Entry(time=at(0), service="orders", kind="event", what="OrderPlaced", detail="SKU-1 x2"),
        trace.Entry(time=None, service="notifications", kind="notification", what="email SENDING", outcome="running"),
        trace.Entry(time=at(0.7), service="saga", kind="step", what="AuthorizePayment", outcome="caught",
                    detail="PaymentDeclined -> VoidAuthorization", duration_ms=3, attempts=1),
    ]
    timeline.notes.append("inventory: reservation RELEASED (version 2)")
    return timeline


def test_the_table_is_in_time_order_with_elapsed_times_and_colour_only_when_asked() -> None:
    plain = trace.render_table(sample())
    lines = plain.splitlines()
    assert lines[0] == "order o-1  customer alice  saga SUCCEEDED  2026-11-26 (UTC)"
    assert lines[1].split() == ["TIME", "+ELAPSED", "SERVICE", "WHAT", "TOOK", "DETAIL"]
    assert [line.split()[0] for line in lines[2:6]] == ["09:00:00.000", "09:00:00.500", "09:00:00.700", "-"]
    assert "+0.500s" in lines[3] and "12 ms" in lines[3]
    assert "! AuthorizePayment" in lines[4] and lines[-1] == "note: inventory: reservation RELEASED (version 2)"
    assert "\033[" not in plain
    coloured = trace.render_table(sample(), color=True)
    assert "\033[31m! AuthorizePayment" in coloured and "\033[34morders" in coloured


def test_json_is_the_same_timeline_in_time_order() -> None:
    document = sample().to_json()
    assert [entry["what"] for entry in document["entries"]] == [
        "OrderPlaced", "ReserveInventory", "AuthorizePayment", "email SENDING"]
    assert document["entries"][0]["time"] == "2026-11-26T09:00:00.000000Z"
    assert json.loads(json.dumps(document)) == document


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("flags", "environment", "coloured"), [
    ([], {}, True), (["--no-color"], {}, False), ([], {"NO_COLOR": "1"}, False)])
def test_colour_follows_the_terminal_and_no_color(
    monkeypatch: pytest.MonkeyPatch, flags: list[str], environment: dict[str, str], coloured: bool
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(trace, "local_resources", lambda *a, **k: None)
    monkeypatch.setattr(trace, "build_timeline", lambda *a, **k: sample())
    monkeypatch.setattr(trace, "_read_template", lambda path: {})
    out = Tty()
    parser_args = ["o-1", "--endpoint-url", "http://127.0.0.1:4566", *flags]
    import argparse

    parser = argparse.ArgumentParser()
    trace.add_arguments(parser)
    assert trace.run(parser.parse_args(parser_args), out=out, err=io.StringIO()) == 0
    assert ("\033[" in out.getvalue()) is coloured
    piped = io.StringIO()  # not a terminal: never colour
    assert trace.run(parser.parse_args(parser_args), out=piped, err=io.StringIO()) == 0
    assert "\033[" not in piped.getvalue()


def test_an_unknown_order_exits_1_with_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def not_found(order_id: str, *_: Any) -> trace.Timeline:
        raise trace.OrderNotFound(f"order {order_id} not found: no events in table T and no execution of S")

    monkeypatch.setattr(trace, "build_timeline", not_found)
    assert main(["trace", "nope", "--endpoint-url", "http://127.0.0.1:4566"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "orderflow trace: order nope not found: no events in table T and no execution of S\n"


def test_a_missing_template_exits_1_with_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "Orderflow.template.json"
    assert main(["trace", "o-1", "--endpoint-url", "http://127.0.0.1:4566", "--template", str(missing)]) == 1
    assert capsys.readouterr().err == f"orderflow trace: no template at {missing}: run `make synth` (or give --template)\n"


def test_the_console_script_is_the_same_command() -> None:
    from offline import cli

    assert cli.main is main
