"""Both Step Functions workflow types with AWS's semantics offline (offline/stepfunctions.py): Standard dedupes
starts by name and keeps a history; Express starts every time, keeps no history, and is only in its log group."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from offline import stepfunctions

from .support import function, template

ASL = {
    "StartAt": "Count",
    "States": {
        "Count": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                  "Parameters": {"FunctionName": "${CountArn}", "Payload.$": "$"}, "ResultPath": None, "End": True},
    },
}
LOGS = {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": "/aws/vendedlogs/states/Test-Saga",
                                                      "RetentionInDays": 30}}


def machine(workflow: str, *, logged: bool = True) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "DefinitionString": json.dumps(ASL),
        "DefinitionSubstitutions": {"CountArn": {"Fn::GetAtt": ["Count", "Arn"]}},
        "RoleArn": {"Fn::GetAtt": ["Role1A2B3C4D", "Arn"]},
        "StateMachineType": workflow,
    }
    if logged:
        properties["LoggingConfiguration"] = {
            "Destinations": [{"CloudWatchLogsLogGroup": {"LogGroupArn": {"Fn::GetAtt": ["Logs", "Arn"]}}}],
            "IncludeExecutionData": True, "Level": "ALL"}
    return {"Type": "AWS::StepFunctions::StateMachine", "Properties": properties, "DependsOn": ["Logs", "Count"]}


@pytest.fixture
def counted(code: Any) -> Any:
    code("h_count", """
        CALLS = []

        def handler(event, context):
            CALLS.append(event["order"])
            return {"ok": True}
    """)
    return code


def log_records(group: str) -> list[dict[str, Any]]:
    events = boto3.client("logs").filter_log_events(logGroupName=group)["events"]
    return [json.loads(event["message"]) for event in events]


def test_express_starts_every_time_whatever_the_name_and_keeps_no_history(run: Any, counted: Any) -> None:
    rt = run(template(Count=function("h_count.handler"), Logs=LOGS, Saga=machine("EXPRESS")))
    import h_count  # after the runtime put the code root on sys.path

    sfn, arn = boto3.client("stepfunctions"), rt.physical("Saga").arn
    first = sfn.start_execution(stateMachineArn=arn, name="o-1", input=json.dumps({"order": "o-1"}))["executionArn"]
    second = sfn.start_execution(stateMachineArn=arn, name="o-1", input=json.dumps({"order": "o-1"}))["executionArn"]
    rt.settle(timeout=10)

    assert first != second and h_count.CALLS == ["o-1", "o-1"]  # not idempotent: the saga's steps must be
    for execution_arn in (first, second):
        parts = execution_arn.split(":")
        assert parts[5:8] == ["express", "Test-Saga", "o-1"] and len(parts) == 9
    runs = stepfunctions.executions(rt.account_id, rt.region, arn)
    assert [(e.execution_arn, e.status) for e in runs] == [(first, "SUCCEEDED"), (second, "SUCCEEDED")]
    with pytest.raises(ClientError, match="StateMachineTypeNotSupported"):
        sfn.list_executions(stateMachineArn=arn)
    for call in (sfn.describe_execution, sfn.get_execution_history):
        with pytest.raises(ClientError, match="InvalidArn"):
            call(executionArn=first)
    # What they did is in the log group, as Step Functions writes it.
    records = log_records("/aws/vendedlogs/states/Test-Saga")
    assert {record["execution_arn"] for record in records} == {first, second}
    one = sorted((r for r in records if r["execution_arn"] == first), key=lambda r: int(r["id"]))
    assert [r["type"] for r in one] == ["ExecutionStarted", "TaskStateEntered", "TaskScheduled", "TaskStarted",
                                        "TaskSucceeded", "TaskStateExited", "ExecutionSucceeded"]
    assert set(one[0]) == {"id", "type", "details", "previous_event_id", "event_timestamp", "execution_arn",
                           "redrive_count"}
    assert json.loads(one[0]["details"]["input"]) == {"order": "o-1"}  # IncludeExecutionData
    assert one[1]["details"]["name"] == "Count" and one[0]["event_timestamp"].isdigit()


def test_standard_dedupes_starts_by_name_and_keeps_its_history(run: Any, counted: Any) -> None:
    rt = run(template(Count=function("h_count.handler"), Logs=LOGS, Saga=machine("STANDARD")))
    import h_count

    sfn, arn = boto3.client("stepfunctions"), rt.physical("Saga").arn
    request = {"stateMachineArn": arn, "name": "o-1", "input": json.dumps({"order": "o-1"})}
    execution_arn = sfn.start_execution(**request)["executionArn"]
    rt.settle(timeout=10)
    with pytest.raises(ClientError, match="ExecutionAlreadyExists"):
        sfn.start_execution(**request)
    with pytest.raises(ClientError, match="ExecutionAlreadyExists"):
        sfn.start_execution(**{**request, "input": json.dumps({"order": "other"})})
    rt.settle(timeout=10)

    assert h_count.CALLS == ["o-1"]
    assert execution_arn == "arn:aws:states:us-east-1:123456789012:execution:Test-Saga:o-1"
    [listed] = sfn.list_executions(stateMachineArn=arn)["executions"]
    assert (listed["executionArn"], listed["status"]) == (execution_arn, "SUCCEEDED")
    history = sfn.get_execution_history(executionArn=execution_arn)["events"]
    assert [e["type"] for e in history if e["type"].endswith("StateEntered")] == ["TaskStateEntered"]
    # Standard executions are logged too (the same configuration), and their log matches their history.
    records = log_records("/aws/vendedlogs/states/Test-Saga")
    assert [r["type"] for r in sorted(records, key=lambda r: int(r["id"]))] == [e["type"] for e in history]


def test_without_a_logging_configuration_nothing_is_logged_and_executions_still_run(run: Any, counted: Any) -> None:
    rt = run(template(Count=function("h_count.handler"), Logs=LOGS, Saga=machine("EXPRESS", logged=False)))
    import h_count

    arn = rt.physical("Saga").arn
    boto3.client("stepfunctions").start_execution(stateMachineArn=arn, name="o-9", input=json.dumps({"order": "o-9"}))
    rt.settle(timeout=10)
    assert h_count.CALLS == ["o-9"]
    assert [e.status for e in stepfunctions.executions(rt.account_id, rt.region, arn)] == ["SUCCEEDED"]
    assert log_records("/aws/vendedlogs/states/Test-Saga") == []


def test_a_log_that_cannot_be_written_does_not_fail_the_execution(run: Any, counted: Any) -> None:
    rt = run(template(Count=function("h_count.handler"), Logs=LOGS, Saga=machine("EXPRESS")))
    boto3.client("logs").delete_log_group(logGroupName="/aws/vendedlogs/states/Test-Saga")
    arn = rt.physical("Saga").arn
    boto3.client("stepfunctions").start_execution(stateMachineArn=arn, name="o-2", input=json.dumps({"order": "o-2"}))
    rt.settle(timeout=10)
    assert [e.status for e in stepfunctions.executions(rt.account_id, rt.region, arn)] == ["SUCCEEDED"]
