"""Security properties of the synthesized templates that back the scanners' skips and cdk-nag's acknowledgements.

A skipped checkov check or an acknowledged cdk-nag rule says "this is fine because ..."; the tests here check the
"because" on the template, for every resource of the kind, so it stays true when resources are added. The
scanner configuration files are checked too: every skip and ignore has its reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stacks.api import ADMIN_THROTTLE, PUBLIC_THROTTLE, STAGE_THROTTLE, WRITE_THROTTLE, Route, throttle_for
from tests.infra.support import Resources, of_type
from tests.infra.test_least_privilege import references, target

ROOT = Path(__file__).resolve().parents[2]
# Who may invoke a function and still get its result back (synchronous): the caller sees and retries failures.
SYNCHRONOUS_INVOKERS = {"apigateway.amazonaws.com"}


@pytest.fixture(params=["standard", "express"])
def any_resources(request: pytest.FixtureRequest) -> Resources:
    return request.getfixturevalue("resources" if request.param == "standard" else "express_resources")


# ------------------------------------------------------------------------------------ failure destinations


def states(definition: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every state of an ASL definition, inside Parallel branches and Map processors too."""
    for state in definition.get("States", {}).values():
        yield state
        for branch in state.get("Branches", []):
            yield from states(branch)
        for key in ("ItemProcessor", "Iterator"):
            if key in state:
                yield from states(state[key])


def asynchronously_invoked(resources: Resources) -> dict[str, str]:
    """function logical id -> what invokes it asynchronously (its result is nobody's to retry)."""
    functions = set(of_type(resources, "AWS::Lambda::Function"))
    found: dict[str, str] = {}
    for logical_id, permission in of_type(resources, "AWS::Lambda::Permission").items():
        props = permission["Properties"]
        if props["Principal"] not in SYNCHRONOUS_INVOKERS:
            for function in references(props["FunctionName"]) & functions:
                found[function] = f"{props['Principal']} ({logical_id})"
    for logical_id, rule in of_type(resources, "AWS::Events::Rule").items():
        for rule_target in rule["Properties"].get("Targets", []):
            for function in references(rule_target["Arn"]) & functions:
                found[function] = f"EventBridge rule {logical_id}"
    for logical_id, subscription in of_type(resources, "AWS::SNS::Subscription").items():
        if subscription["Properties"].get("Protocol") == "lambda":
            for function in references(subscription["Properties"]["Endpoint"]) & functions:
                found[function] = f"SNS subscription {logical_id}"
    for logical_id, machine in of_type(resources, "AWS::StepFunctions::StateMachine").items():
        props = machine["Properties"]
        definition = json.loads(props["DefinitionString"])
        substitutions = props.get("DefinitionSubstitutions", {})
        for state in states(definition):
            resource = state.get("Resource", "")
            if state.get("Type") != "Task" or not resource.startswith("arn:aws:states:::lambda:invoke"):
                continue
            # A callback task (.waitForTaskToken) invokes the function asynchronously, as InvocationType Event does.
            if resource.endswith(".waitForTaskToken") or state.get("Parameters", {}).get("InvocationType") == "Event":
                name = re.fullmatch(r"\$\{(\w+)\}", str(state.get("Parameters", {}).get("FunctionName", "")))
                invoked = references(substitutions.get(name.group(1))) if name else functions
                for function in invoked & functions:
                    found[function] = f"state machine {logical_id} (asynchronous task)"
    return found


def test_no_function_is_invoked_asynchronously(any_resources: Resources) -> None:
    # What the acknowledgement of Serverless-LambdaDLQ (stacks/lambda_defaults.py) and the skip of CKV_AWS_116
    # (.checkov.yaml) rest on: no function needs a DLQ, because every invoker gets the result and keeps failures.
    asynchronous = asynchronously_invoked(any_resources)
    without_destination = {
        function: invoker
        for function, invoker in asynchronous.items()
        if "DeadLetterConfig" not in any_resources[function]["Properties"]
        and not any(
            references(config["Properties"]["FunctionName"]) == {function}
            and config["Properties"].get("DestinationConfig", {}).get("OnFailure")
            for config in of_type(any_resources, "AWS::Lambda::EventInvokeConfig").values()
        )
    }
    assert without_destination == {}, "an asynchronously invoked function needs an on-failure destination"
    assert asynchronous == {}, "a function is invoked asynchronously: revisit the Serverless-LambdaDLQ acknowledgement"


def test_the_async_check_sees_asynchronous_invokers(resources: Resources) -> None:
    # The check above would notice: an EventBridge rule targeting a function, an SNS permission, an async task.
    function = next(iter(of_type(resources, "AWS::Lambda::Function")))
    broken = json.loads(json.dumps(resources))
    broken["DirectRule"] = {
        "Type": "AWS::Events::Rule",
        "Properties": {"Targets": [{"Arn": {"Fn::GetAtt": [function, "Arn"]}, "Id": "T"}]},
    }
    assert function in asynchronously_invoked(broken)
    broken = json.loads(json.dumps(resources))
    broken["SnsPermission"] = {
        "Type": "AWS::Lambda::Permission",
        "Properties": {"Principal": "sns.amazonaws.com", "FunctionName": {"Ref": function}},
    }
    assert function in asynchronously_invoked(broken)
    broken = json.loads(json.dumps(resources))
    [(machine_id, machine)] = of_type(broken, "AWS::StepFunctions::StateMachine").items()
    definition = json.loads(machine["Properties"]["DefinitionString"])
    task = next(s for s in states(definition) if s.get("Resource", "").startswith("arn:aws:states:::lambda:invoke"))
    task["Parameters"]["InvocationType"] = "Event"
    machine["Properties"]["DefinitionString"] = json.dumps(definition)
    assert asynchronously_invoked(broken), machine_id


def test_every_sqs_event_source_redrives_to_a_dlq(any_resources: Resources) -> None:
    # Lambda takes no on-failure destination on SQS mappings (the Serverless-LambdaEventSourceMappingDestination
    # acknowledgement in stacks/event_inbox.py): the queue's redrive policy is the failure path.
    queues = of_type(any_resources, "AWS::SQS::Queue")
    sqs_mappings = 0
    for logical_id, mapping in of_type(any_resources, "AWS::Lambda::EventSourceMapping").items():
        props = mapping["Properties"]
        source, form = target(props["EventSourceArn"])
        if source in queues:
            sqs_mappings += 1
            redrive = queues[source]["Properties"].get("RedrivePolicy")
            assert redrive is not None, f"{logical_id}: its queue {source} has no redrive policy"
            dlq, _ = target(redrive["deadLetterTargetArn"])
            assert dlq in queues and 1 <= redrive["maxReceiveCount"] <= 10, logical_id
            assert props.get("FunctionResponseTypes") == ["ReportBatchItemFailures"], logical_id
        else:
            # Streams: bisect, a retry cap, a maximum record age and an on-failure queue.
            assert form == "{StreamArn}", logical_id
            assert props["BisectBatchOnFunctionError"] is True, logical_id
            assert 0 <= props["MaximumRetryAttempts"] <= 10, logical_id
            assert props["MaximumRecordAgeInSeconds"] <= 86400, logical_id
            destination, _ = target(props["DestinationConfig"]["OnFailure"]["Destination"])
            assert destination in queues, logical_id
    assert sqs_mappings >= 3


def test_every_rule_target_has_a_dlq_and_a_retry_policy(any_resources: Resources) -> None:
    queues = of_type(any_resources, "AWS::SQS::Queue")
    rules = of_type(any_resources, "AWS::Events::Rule")
    assert rules
    for logical_id, rule in rules.items():
        for rule_target in rule["Properties"]["Targets"]:
            dlq, _ = target(rule_target["DeadLetterConfig"]["Arn"])
            assert dlq in queues, logical_id
            assert rule_target["RetryPolicy"]["MaximumEventAgeInSeconds"] >= 3600, logical_id


# ------------------------------------------------------------------------------------ encryption, transport


def test_every_queue_is_encrypted_and_tls_only(any_resources: Resources) -> None:
    # What the skip of CKV_AWS_27 (.checkov.yaml) rests on: SQS managed SSE (or a KMS key) on every queue, and a
    # queue policy that denies any request not made over TLS.
    tls_only = set()
    for policy in of_type(any_resources, "AWS::SQS::QueuePolicy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement == {
                "Action": "sqs:*",
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                "Effect": "Deny",
                "Principal": {"AWS": "*"},
                "Resource": statement["Resource"],
            }:
                tls_only |= {target(queue)[0] for queue in policy["Properties"]["Queues"]}
    queues = of_type(any_resources, "AWS::SQS::Queue")
    assert queues
    for logical_id, queue in queues.items():
        props = queue["Properties"]
        assert props.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in props, logical_id
        assert logical_id in tls_only, logical_id


def test_service_principals_are_tied_to_their_source(any_resources: Resources) -> None:
    # A queue or topic policy that lets a service (EventBridge, CloudWatch) send names which rule or alarm may.
    policies = {
        **of_type(any_resources, "AWS::SQS::QueuePolicy"),
        **of_type(any_resources, "AWS::SNS::TopicPolicy"),
    }
    for logical_id, policy in policies.items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Allow" and "Service" in statement.get("Principal", {}):
                conditions = json.dumps(statement.get("Condition", {}))
                assert "aws:SourceArn" in conditions, (logical_id, statement)


def test_lambda_permissions_are_for_one_api_stage_and_method(any_resources: Resources) -> None:
    for logical_id, permission in of_type(any_resources, "AWS::Lambda::Permission").items():
        props = permission["Properties"]
        assert props["Principal"] in SYNCHRONOUS_INVOKERS, logical_id
        assert props["Action"] == "lambda:InvokeFunction", logical_id
        source = json.dumps(props["SourceArn"])
        assert "execute-api" in source and '"/*/' not in source, (logical_id, source)


# ------------------------------------------------------------------------------------ API


def _stage(resources: Resources) -> dict[str, Any]:
    [stage] = of_type(resources, "AWS::ApiGateway::Stage").values()
    return stage["Properties"]


def _path(resources: Resources, resource_id: Any) -> str:
    """``/orders/{orderId}`` for a method's ResourceId."""
    logical_id, form = target(resource_id)
    if form == "{RootResourceId}":
        return ""
    resource = resources[logical_id]["Properties"]
    return _path(resources, resource["ParentId"]) + "/" + resource["PathPart"]


def test_every_method_is_throttled_at_most_at_the_stage_rate(any_resources: Resources) -> None:
    settings = {(s["HttpMethod"], s["ResourcePath"]): s for s in _stage(any_resources)["MethodSettings"]}
    stage_wide = settings[("*", "/*")]
    assert (stage_wide["ThrottlingRateLimit"], stage_wide["ThrottlingBurstLimit"]) == (
        STAGE_THROTTLE.rate,
        STAGE_THROTTLE.burst,
    )
    for method in of_type(any_resources, "AWS::ApiGateway::Method").values():
        props = method["Properties"]
        if props["HttpMethod"] == "OPTIONS":
            continue
        path = _path(any_resources, props["ResourceId"])
        route = Route(props["HttpMethod"], path, "public" if props["AuthorizationType"] == "NONE" else None)
        setting = settings.get((props["HttpMethod"], "/" + path.replace("/", "~1")), stage_wide)
        expected = throttle_for(route) or STAGE_THROTTLE
        assert (setting["ThrottlingRateLimit"], setting["ThrottlingBurstLimit"]) == (expected.rate, expected.burst)
        assert setting["ThrottlingRateLimit"] <= STAGE_THROTTLE.rate, path
        assert setting["DataTraceEnabled"] is False, path  # bodies and tokens never reach the execution log
        if props["AuthorizationType"] == "NONE":
            assert setting["ThrottlingRateLimit"] <= PUBLIC_THROTTLE.rate, path


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        (Route("GET", "/health", public_reason="probe"), PUBLIC_THROTTLE),
        (Route("POST", "/orders"), WRITE_THROTTLE),
        (Route("GET", "/orders"), None),
        (Route("GET", "/orders/{orderId}"), None),
        (Route("GET", "/admin/products/{sku}"), ADMIN_THROTTLE),
        (Route("PUT", "/admin/products/{sku}"), ADMIN_THROTTLE),
        (Route("GET", "/administrators"), None),  # a prefix, not the /admin tree
    ],
)
def test_throttle_for(route: Route, expected: Any) -> None:
    assert throttle_for(route) == expected


def test_access_log_is_one_json_object_per_request(any_resources: Resources) -> None:
    access = _stage(any_resources)["AccessLogSetting"]
    fields = json.loads(access["Format"])
    assert all(isinstance(value, str) and value.startswith("$context.") for value in fields.values())
    assert {"requestId", "sub", "status", "latencyMs", "errorType"} <= set(fields)


# ------------------------------------------------------------------------------------ scanner configuration


def commented_entries(path: Path, entry: str) -> dict[str, str]:
    """entry -> the comment block right above it, for every list item matching ``entry`` in a YAML file."""
    found: dict[str, str] = {}
    comment: list[str] = []
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("# "))
        elif re.fullmatch(rf"-\s*({entry})", stripped):
            item = stripped.lstrip("- ").strip()
            assert item not in found, f"{path.name}: {item} listed twice"
            found[item] = " ".join(comment)
            comment = []
        else:
            comment = []
    return found


@pytest.mark.parametrize(("name", "entry"), [(".checkov.yaml", r"CKV2?_AWS_\d+"), (".cfnlintrc", r"[EWI]\d{4}")])
def test_every_skipped_check_has_its_reason(name: str, entry: str) -> None:
    skipped = commented_entries(ROOT / name, entry)
    assert skipped, f"{name} skips nothing: then drop the list"
    for item, reason in skipped.items():
        assert item in reason, f"{name}: the comment above {item} should name it"
        assert len(reason.split()) >= 20, f"{name}: {item} needs its reason, not a label: {reason!r}"


def test_scanners_are_pinned() -> None:
    requirements = [
        line.strip()
        for line in (ROOT / "requirements-scan.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {line.split("==")[0] for line in requirements} == {"checkov", "cfn-lint"}
    assert all(re.fullmatch(r"[\w-]+==\d+(\.\d+)+", line) for line in requirements), requirements
    node_tools = json.loads((ROOT / "package.json").read_text())["devDependencies"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", node_tools["asl-validator"]), node_tools
