"""The order-flow dashboard, read back from the synthesized template (both workflows).

It must show the order flow (placed, confirmed, cancelled by reason, saga duration, relay lag) and what needs an
operator (every dead-end queue, every function's errors and throttles, the API, every alarm), and every custom
metric on it must be one that some function's code emits under that name and ``service``. The code check here
is static (the source); tests/e2e/test_observability.py checks the same list against the EMF of a real run.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App

from stacks.lambda_defaults import COMMON_ENVIRONMENT
from stacks.orderflow_stack import OrderflowStack
from tests.infra.support import Resources, key, lid, of_type, ref
from tests.infra.test_alarms import dead_end_queues

NAMESPACE = COMMON_ENVIRONMENT["POWERTOOLS_METRICS_NAMESPACE"]
FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"


def dashboard_body(resources: Resources) -> dict[str, Any]:
    """The dashboard's JSON with each CloudFormation intrinsic put back where it stood (as a value, or ``{{i}}``)."""
    [dashboard] = of_type(resources, "AWS::CloudWatch::Dashboard").values()
    body = dashboard["Properties"]["DashboardBody"]
    parts = body["Fn::Join"][1] if isinstance(body, dict) else [body]
    intrinsics = [p for p in parts if not isinstance(p, str)]
    text, n = "", 0
    for part in parts:
        if isinstance(part, str):
            text += part
        else:
            text += f"@@{n}@@"
            n += 1

    def restore(value: Any) -> Any:
        if isinstance(value, str):
            whole = re.fullmatch(r"@@(\d+)@@", value)
            if whole:
                return intrinsics[int(whole.group(1))]
            return re.sub(r"@@(\d+)@@", lambda m: "{" + key(intrinsics[int(m.group(1))]) + "}", value)
        if isinstance(value, list):
            return [restore(v) for v in value]
        if isinstance(value, dict):
            return {k: restore(v) for k, v in value.items()}
        return value

    return restore(json.loads(text))


def widget(body: dict[str, Any], title: str) -> dict[str, Any]:
    [found] = [w["properties"] for w in body["widgets"] if w["properties"].get("title") == title]
    return found


def metrics_of(properties: dict[str, Any]) -> list[tuple[str, str, dict[str, str], str]]:
    """(namespace, name, dimensions, stat) of each metric line; a line repeating '...' fields is resolved."""
    lines = []
    previous: list[Any] = []
    for line in properties.get("metrics", []):
        if isinstance(line[0], dict):  # an expression
            continue
        intrinsic = isinstance(line[-1], dict) and any(k == "Ref" or k.startswith("Fn::") for k in line[-1])
        options = line[-1] if isinstance(line[-1], dict) and not intrinsic else {}
        fields = line[:-1] if options else list(line)
        fields = [previous[i] if f == "." else f for i, f in enumerate(fields)]
        previous = fields
        namespace, name, *dims = fields
        lines.append((namespace, name, {k: v for k, v in zip(dims[::2], dims[1::2], strict=True)}, options.get("stat")))
    return lines


def custom_metrics(body: dict[str, Any]) -> set[tuple[str, str]]:
    """(metric, service) of every metric in our own namespace on the dashboard."""
    found = set()
    for w in body["widgets"]:
        for namespace, name, dims, _ in metrics_of(w["properties"]):
            if namespace == NAMESPACE:
                found.add((name, dims["service"]))
    return found


def emitted_in_code() -> set[tuple[str, str]]:
    """(metric, service) for every metric name literal a function module emits, with that module's Metrics service."""
    found = set()
    for path in FUNCTIONS.rglob("*.py"):
        tree = ast.parse(path.read_text())
        services = {
            kw.value.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Metrics"
            for kw in node.keywords
            if kw.arg == "service" and isinstance(kw.value, ast.Constant)
        }
        names = {
            kw.value.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("add_metric", "single_metric")
            for kw in node.keywords
            if kw.arg == "name" and isinstance(kw.value, ast.Constant)
        }
        found |= {(name, service) for name in names for service in services}
    return found


@pytest.fixture(scope="module", params=["standard", "express"])
def build(
    request: pytest.FixtureRequest, stack: OrderflowStack, resources: Resources,
    express_app_and_stack: tuple[App, OrderflowStack], express_resources: Resources,
) -> tuple[OrderflowStack, Resources, dict[str, Any]]:
    chosen = (stack, resources) if request.param == "standard" else (express_app_and_stack[1], express_resources)
    return chosen[0], chosen[1], dashboard_body(chosen[1])


def test_the_order_flow_is_on_the_dashboard(build: tuple[OrderflowStack, Resources, dict[str, Any]]) -> None:
    stack, _, body = build
    assert custom_metrics(body) == {
        ("OrdersPlaced", "orders"), ("OrdersConfirmed", "orders"), ("OrdersCancelled", "orders"),
        ("CompensationsFailed", "orders"),
        ("PublishLag", "relay"), ("EventsPublished", "relay"), ("EventsNotPublished", "relay"),
    }
    [cancelled] = widget(body, "Orders cancelled, by reason (per 5 min)")["metrics"]
    assert cancelled[0]["expression"] == (
        f"SEARCH('{{{NAMESPACE},reason,service}} MetricName=\"OrdersCancelled\" service=\"orders\"', 'Sum', 300)"
    )
    machine = ref(stack.saga.state_machine)
    duration = metrics_of(widget(body, "Saga duration (ms)"))
    assert duration == [("AWS/States", "ExecutionTime", {"StateMachineArn": machine}, stat) for stat in ("p50", "p99", "Maximum")]
    lag = metrics_of(widget(body, "Relay lag (ms): behind the streams, and event time to bus"))
    assert ("AWS/Lambda", "IteratorAge", {"FunctionName": ref(stack.relay.handler.function)}, "Maximum") in lag
    assert (NAMESPACE, "PublishLag", {"service": "relay"}, "p99") in lag


def test_every_dashboard_metric_is_emitted_by_some_function(build: tuple[OrderflowStack, Resources, dict[str, Any]]) -> None:
    _, _, body = build
    emitted = emitted_in_code()
    missing = custom_metrics(body) - emitted
    assert not missing, f"on the dashboard but emitted by no function: {sorted(missing)}"


def test_what_needs_an_operator_is_all_on_the_dashboard(build: tuple[OrderflowStack, Resources, dict[str, Any]]) -> None:
    _, resources, body = build
    queues = {key(d["QueueName"]) for _, _, d, _ in metrics_of(widget(body, "Messages waiting in dead-letter and on-failure queues"))}
    assert queues == {key({"Fn::GetAtt": [q, "QueueName"]}) for q in dead_end_queues(resources)}
    functions = {key({"Ref": f}) for f in of_type(resources, "AWS::Lambda::Function")}
    for title in ("Lambda errors (per 5 min)", "Lambda throttles (per 5 min)"):
        assert {key(d["FunctionName"]) for _, _, d, _ in metrics_of(widget(body, title))} == functions, title
    api = {name for _, name, _, _ in metrics_of(widget(body, "API errors (per 5 min)"))}
    assert api == {"5XXError", "4XXError"}
    alarms = widget(body, "Alarms")["alarms"]
    assert {key(a) for a in alarms} == {
        key({"Fn::GetAtt": [logical_id, "Arn"]}) for logical_id in of_type(resources, "AWS::CloudWatch::Alarm")
    }


def test_one_dashboard_named_after_the_stack(build: tuple[OrderflowStack, Resources, dict[str, Any]]) -> None:
    stack, resources, _ = build
    [dashboard] = of_type(resources, "AWS::CloudWatch::Dashboard")
    assert dashboard == lid(stack.dashboard.dashboard)
    assert resources[dashboard]["Properties"]["DashboardName"] == "Orderflow-order-flow"
