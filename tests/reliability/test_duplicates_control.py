"""The duplicates harness can fail (test_duplicates.py): a consumer it was never told about is disturbed too, and one
that is not idempotent is caught. In a module of its own because it needs its own runtime (a template with two
test-only consumers, tests/reliability/tally_consumers.py), and only one runtime runs in a process at a time.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from offline.chaos import DeliveryChaos
from offline.runtime import Runtime
from tests.figures import record
from tests.reliability import test_duplicates as dup

pytestmark = pytest.mark.reliability


def with_tally_consumers(template: dict[str, Any]) -> dict[str, Any]:
    """The template plus a rule sending every orderflow event to two queues, consumed by tally_consumers.naive and
    tally_consumers.careful, which count deliveries in a table of their own."""
    patched = dup.with_snapshot_intervals(template)
    resources = patched["Resources"]
    bus = next(lid for lid, r in resources.items() if r["Type"] == "AWS::Events::EventBus")
    model = next(r for r in resources.values()
                 if r["Type"] == "AWS::Lambda::Function" and r["Properties"].get("Handler") == "notifications.handler.handler")
    resources["TallyTable"] = {"Type": "AWS::DynamoDB::Table", "Properties": {
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}], "BillingMode": "PAY_PER_REQUEST"}}
    targets = []
    for name in ("naive", "careful"):
        queue, function = f"Tally{name.title()}Queue", f"Tally{name.title()}Function"
        resources[queue] = {"Type": "AWS::SQS::Queue", "Properties": {"VisibilityTimeout": 180}}
        properties = copy.deepcopy(model["Properties"])
        properties.update(Handler=f"tests.reliability.tally_consumers.{name}",
                          Environment={"Variables": {"TALLY_TABLE": {"Ref": "TallyTable"}}})
        properties.pop("LoggingConfig", None)
        resources[function] = {"Type": "AWS::Lambda::Function", "Properties": properties}
        resources[f"Tally{name.title()}Mapping"] = {"Type": "AWS::Lambda::EventSourceMapping", "Properties": {
            "BatchSize": 10, "EventSourceArn": {"Fn::GetAtt": [queue, "Arn"]}, "FunctionName": {"Ref": function},
            "FunctionResponseTypes": ["ReportBatchItemFailures"]}}
        targets.append({"Arn": {"Fn::GetAtt": [queue, "Arn"]}, "Id": name})
    resources["TallyRule"] = {"Type": "AWS::Events::Rule", "Properties": {
        "EventBusName": {"Ref": bus}, "EventPattern": {"source": [{"prefix": "orderflow."}]}, "State": "ENABLED",
        "Targets": targets}}
    return patched


def test_the_harness_finds_a_consumer_that_counts_duplicates_and_passes_one_that_does_not(
    template: dict[str, Any],
) -> None:
    """Two consumers the harness was never told about: the naive one's table differs from its once-in-order state
    (the harness would fail it), the careful one's does not."""
    rt = Runtime(with_tally_consumers(template), code_root=dup.ROOT / "functions")
    rt.start()
    chaos = DeliveryChaos(seed=5, min_copies=2).install(rt)
    try:
        chaos.enabled = False
        baseline = dup.run_shape(rt, dup.EVERY_OUTCOME, dup.namespace("b"))
        chaos.enabled = True
        chaotic = dup.run_shape(rt, dup.EVERY_OUTCOME, dup.namespace("c"))
        chaos.enabled = False
    finally:
        chaos.uninstall()
        rt.stop()
    record("scenarios")
    record("duplicates_delivered", chaos.duplicates)
    record("reordered_deliveries", chaos.reordered)
    assert not baseline.problems and not chaotic.problems, "\n".join(baseline.problems + chaotic.problems)
    assert {("sqs", "Orderflow-TallyNaiveFunction"), ("sqs", "Orderflow-TallyCarefulFunction")} <= set(chaos.disturbed)
    found = dup.differences(baseline, chaotic)
    assert len(found) == 1 and found[0].startswith("TallyTable:"), "\n".join(found)
    assert "naive#" in found[0] and "careful#" not in found[0], found[0]
