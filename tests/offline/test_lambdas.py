"""In-process Lambda: the context, the runtime's error shape, async invocations, one environment for all."""

from __future__ import annotations

import json
import threading
import types
from typing import Any

import boto3
import pytest

import offline.lambdas
from offline.errors import EnvironmentConflictError
from offline.runtime import Runtime
from tests.offline.support import bodies, function, messages, module, queue, template


def invoke(name: str, payload: Any, **kwargs: Any) -> tuple[dict[str, Any], Any]:
    response = boto3.client("lambda").invoke(FunctionName=name, Payload=json.dumps(payload), **kwargs)
    return response, json.loads(response["Payload"].read() or b"null")


def test_handler_runs_in_process_with_a_lambda_context(run: Any, code: Any) -> None:
    code("h_ctx", """
        import os

        def handler(event, context):
            return {"name": context.function_name, "memory": context.memory_limit_in_mb,
                    "arn": context.invoked_function_arn, "request_id": context.aws_request_id,
                    "remaining": context.get_remaining_time_in_millis(), "event": event,
                    "greeting": os.environ["GREETING"], "version": context.function_version}
    """)
    run(template(Fn=function("h_ctx.handler", env={"GREETING": "hi"}, Timeout=7, MemorySize=512)))
    response, payload = invoke("Test-Fn", {"a": 1})
    assert response["StatusCode"] == 200 and "FunctionError" not in response
    assert payload["name"] == "Test-Fn" and payload["memory"] == "512" and payload["version"] == "$LATEST"
    assert payload["arn"] == "arn:aws:lambda:us-east-1:123456789012:function:Test-Fn"
    assert 6000 < payload["remaining"] <= 7000
    assert payload["event"] == {"a": 1} and payload["greeting"] == "hi" and payload["request_id"]


def test_errors_have_the_lambda_runtime_shape(run: Any, code: Any) -> None:
    code("h_err", """
        class PaymentDeclined(Exception):
            pass

        def handler(event, context):
            raise PaymentDeclined(f"card refused for {event['amount']}")

        def unserialisable(event, context):
            return {1, 2}
    """)
    run(template(
        Raises=function("h_err.handler"),
        NoModule=function("h_missing.handler"),
        NoHandler=function("h_err.nope"),
        BadResult=function("h_err.unserialisable"),
    ))
    response, payload = invoke("Test-Raises", {"amount": 7})
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "PaymentDeclined" and payload["errorMessage"] == "card refused for 7"
    assert any("h_err.py" in frame and "raise PaymentDeclined" in frame for frame in payload["stackTrace"])
    assert not any("offline" in frame for frame in payload["stackTrace"])
    assert invoke("Test-NoModule", {})[1]["errorType"] == "Runtime.ImportModuleError"
    assert invoke("Test-NoHandler", {})[1]["errorType"] == "Runtime.HandlerNotFound"
    assert invoke("Test-BadResult", {})[1]["errorType"] == "Runtime.MarshalError"


def test_a_handler_that_overruns_its_timeout_fails_like_lambda(run: Any, code: Any, monkeypatch: Any) -> None:
    code("h_slow", """
        DONE = []

        def handler(event, context):
            DONE.append(True)
            return "finished too late"
    """)
    run(template(Fn=function("h_slow.handler", Timeout=2)))
    real = offline.lambdas.time.time
    monkeypatch.setattr(offline.lambdas, "time", types.SimpleNamespace(
        time=lambda: real() + (5 if module("h_slow").DONE else 0)))
    response, payload = invoke("Test-Fn", {})
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Sandbox.Timedout" and "timed out after 2.00 seconds" in payload["errorMessage"]


def test_step_functions_sees_the_error_type_as_the_error_name(run: Any, code: Any) -> None:
    code("h_pay", """
        class PaymentDeclined(Exception):
            pass

        CALLS = []

        def charge(event, context):
            CALLS.append(event)
            if event["amount"] > 100:
                raise PaymentDeclined("too much")
            return {"charged": event["amount"]}
    """)
    asl = {
        "StartAt": "Wait",
        "States": {
            "Wait": {"Type": "Wait", "Seconds": 3600, "Next": "Charge"},
            "Charge": {
                "Type": "Task", "Resource": "${ChargeArn}", "ResultPath": "$.payment",
                "Retry": [{"ErrorEquals": ["States.Timeout"], "IntervalSeconds": 60, "MaxAttempts": 2}],
                "Catch": [{"ErrorEquals": ["PaymentDeclined"], "ResultPath": "$.error", "Next": "Declined"}],
                "Next": "Done",
            },
            "Declined": {"Type": "Fail", "Error": "OrderDeclined", "Cause": "payment declined"},
            "Done": {"Type": "Succeed"},
        },
    }
    rt = run(template(
        Charge=function("h_pay.charge"),
        Saga={"Type": "AWS::StepFunctions::StateMachine", "Properties": {
            "DefinitionString": json.dumps(asl),
            "DefinitionSubstitutions": {"ChargeArn": {"Fn::GetAtt": ["Charge", "Arn"]}},
            "RoleArn": {"Fn::GetAtt": ["Role1A2B3C4D", "Arn"]},
        }},
    ))
    sfn = boto3.client("stepfunctions")
    machine = rt.physical("Saga").arn
    ok = sfn.start_execution(stateMachineArn=machine, name="o1", input=json.dumps({"amount": 5}))["executionArn"]
    declined = sfn.start_execution(stateMachineArn=machine, name="o2", input=json.dumps({"amount": 500}))
    rt.settle(timeout=10)  # the one-hour Wait state takes no time (fast=True)
    assert sfn.describe_execution(executionArn=ok)["status"] == "SUCCEEDED"
    failed = sfn.describe_execution(executionArn=declined["executionArn"])
    assert (failed["status"], failed["error"]) == ("FAILED", "OrderDeclined")
    history = sfn.get_execution_history(executionArn=declined["executionArn"])["events"]
    caught = [event["lambdaFunctionFailedEventDetails"] for event in history
              if event["type"] == "LambdaFunctionFailed"]
    assert caught[0]["error"] == "PaymentDeclined"
    assert json.loads(caught[0]["cause"])["errorMessage"] == "too much"


def test_async_invocations_run_on_settle_with_retries_and_destinations(run: Any, code: Any) -> None:
    code("h_async", """
        CALLS = []

        def ok(event, context):
            CALLS.append(("ok", event))

        REQUEST_IDS = []

        def fails(event, context):
            CALLS.append(("fails", event))
            REQUEST_IDS.append(context.aws_request_id)
            raise ValueError("nope")
    """)
    rt = run(template(
        Ok=function("h_async.ok"),
        Fails=function("h_async.fails", DeadLetterConfig={"TargetArn": {"Fn::GetAtt": ["Dlq", "Arn"]}}),
        FailsConfig={"Type": "AWS::Lambda::EventInvokeConfig", "Properties": {
            "FunctionName": {"Ref": "Fails"}, "Qualifier": "$LATEST", "MaximumRetryAttempts": 1,
            "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": ["Failures", "Arn"]}}},
        }},
        Dlq=queue(),
        Failures=queue(),
    ))
    response, _ = invoke("Test-Ok", {"n": 1}, InvocationType="Event")
    assert response["StatusCode"] == 202
    invoke("Test-Fails", {"n": 2}, InvocationType="Event")
    assert module("h_async").CALLS == []  # asynchronous: nothing ran yet
    rt.settle()
    assert module("h_async").CALLS == [("ok", {"n": 1}), ("fails", {"n": 2}), ("fails", {"n": 2})]
    sqs = boto3.client("sqs")
    [record] = bodies(sqs, rt.physical("Failures").url)
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert module("h_async").REQUEST_IDS == [record["requestContext"]["requestId"]] * 2  # retries keep the id
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert record["requestContext"]["functionArn"].endswith(":function:Test-Fails:$LATEST")
    assert record["requestPayload"] == {"n": 2} and record["responsePayload"]["errorType"] == "ValueError"
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    [dead] = messages(sqs, rt.physical("Dlq").url)
    assert json.loads(dead["Body"]) == {"n": 2}
    assert dead["MessageAttributes"]["ErrorMessage"]["StringValue"] == "nope"


def test_overlapping_invocations_run_one_at_a_time(run: Any, code: Any) -> None:
    code("h_busy", """
        import threading, time
        LOCK = threading.Lock()
        STATE = {"now": 0, "max": 0}

        def handler(event, context):
            with LOCK:
                STATE["now"] += 1
                STATE["max"] = max(STATE["max"], STATE["now"])
            time.sleep(0.02)
            with LOCK:
                STATE["now"] -= 1
            return event["i"]
    """)
    rt = run(template(Fn=function("h_busy.handler")))
    results: list[Any] = []
    threads = [threading.Thread(target=lambda i=i: results.append(rt.lambdas.invoke(rt.physical("Fn").arn,
                                                                                     {"i": i}).json()))
               for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == list(range(6))
    assert module("h_busy").STATE["max"] == 1


def test_two_functions_may_not_give_one_variable_two_values(code: Any) -> None:
    body = template(A=function("h.a", env={"TABLE": "one", "SAME": "x"}),
                    B=function("h.b", env={"TABLE": "two", "SAME": "x"}))
    runtime = Runtime(body, code.root)
    with pytest.raises(EnvironmentConflictError, match="TABLE is 'one' in A but 'two' in B"):
        runtime.start()
    # the failed start cleaned up after itself: another runtime can start
    with Runtime(template(A=function("h.a", env={"TABLE": "one"})), code.root) as other:
        assert other.environment == {"TABLE": "one"}
