"""The duplicates harness can fail (test_duplicates.py): a consumer it was never told about is disturbed too, and one
that is not idempotent is caught. In a module of its own because it needs its own runtime (a template with two
test-only consumers, tests/reliability/tally_consumers.py), and only one runtime runs in a process at a time.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import boto3
import pytest

from offline.chaos import DeliveryChaos
from offline.runtime import Runtime
from tests.figures import record
from tests.reliability import test_duplicates as dup

pytestmark = pytest.mark.reliability

# A shop with every outcome: confirmed (two orders of one customer, so their payments interleave), declined,
# out of stock, unknown product.
EVERY_OUTCOME = dup.Shape(
    products=(("2.50", dup.AMPLE), ("4.00", dup.AMPLE), ("7.25", 0)),
    funded=(True, False),
    orders=((0, ((0, 2), (1, 1))), (0, ((0, 1),)), (1, ((1, 1),)), (0, ((2, 1),)), (0, ((0, 1), (-1, 1)))),
)


def with_tally_consumers(template: dict[str, Any]) -> dict[str, Any]:
    """The template plus a rule sending every orderflow event to two queues, consumed by tally_consumers.naive and
    tally_consumers.careful, which count deliveries in a table of their own."""
    patched = dup.with_snapshot_intervals(template)
    resources = patched["Resources"]
    bus = next(lid for lid, r in resources.items() if r["Type"] == "AWS::Events::EventBus")
    # The tally functions copy a function of the template (runtime, memory, role, timeout), with their own handler.
    model = next(r for r in resources.values() if r["Type"] == "AWS::Lambda::Function"
                 and r["Properties"].get("Handler", "").startswith("notifications."))
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


def disturbable_functions(rt: Runtime) -> dict[str, set[str]]:
    """The functions something delivers to, by kind: event source mappings (SQS, streams) and state machine tasks."""
    lambda_client, sfn = boto3.client("lambda"), boto3.client("stepfunctions")
    wanted: dict[str, set[str]] = {"sqs": set(), "stream": set(), "task": set()}
    for mapping in lambda_client.list_event_source_mappings()["EventSourceMappings"]:
        kind = "sqs" if ":sqs:" in mapping["EventSourceArn"] else "stream"
        wanted[kind].add(mapping["FunctionArn"].split(":")[6])
    for resource in rt.resources.values():
        if resource.type == "AWS::StepFunctions::StateMachine":
            definition = sfn.describe_state_machine(stateMachineArn=resource.arn)["definition"]
            wanted["task"] |= set(re.findall(r"arn:aws:lambda:[^:]+:\d+:function:([A-Za-z0-9_-]+)", definition))
    return wanted


def test_the_harness_finds_a_consumer_that_counts_duplicates_and_passes_one_that_does_not(
    template: dict[str, Any],
) -> None:
    """Each delivery at least twice. Two consumers the harness was never told about are disturbed like every other
    function the template delivers to (every SQS consumer, stream consumer and saga step); the naive consumer's
    table differs from its once-in-order state (the harness would fail it), the careful one's does not, nor does
    any table of orderflow's own."""
    rt = Runtime(with_tally_consumers(template), code_root=dup.ROOT / "functions")
    rt.start()
    chaos = DeliveryChaos(seed=5, min_copies=2).install(rt)
    try:
        chaos.enabled = False
        baseline = dup.run_shape(rt, EVERY_OUTCOME, dup.namespace("b"))
        chaos.enabled = True
        chaotic = dup.run_shape(rt, EVERY_OUTCOME, dup.namespace("c"))
        chaos.enabled = False
        delivered_to = disturbable_functions(rt)
    finally:
        chaos.uninstall()
        rt.stop()
    record("scenarios")
    record("duplicates_delivered", chaos.duplicates)
    record("reordered_deliveries", chaos.reordered)
    assert not baseline.problems and not chaotic.problems, "\n".join(baseline.problems + chaotic.problems)
    assert {("sqs", "Orderflow-TallyNaiveFunction"), ("sqs", "Orderflow-TallyCarefulFunction")} <= set(chaos.disturbed)
    disturbed = {kind: {name for (k, name) in chaos.disturbed if k == kind} for kind in ("sqs", "stream", "task")}
    untouched = {kind: sorted(names - disturbed[kind]) for kind, names in delivered_to.items()}
    assert not any(untouched.values()), f"functions that met no duplicate: {untouched}"
    assert chaos.reordered > 0
    found = dup.differences(baseline, chaotic)
    assert len(found) == 1 and found[0].startswith("TallyTable:"), "\n".join(found)
    assert "naive#" in found[0] and "careful#" not in found[0], found[0]
