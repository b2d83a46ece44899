"""Least privilege, read from the synthesized templates (Standard and Express): every role, every (action, resource).

Nothing here lists today's grants. What a role may do is derived from what the template says its owner uses, so
a function added tomorrow is held to the same rules without anyone editing this file:

- a function may write its own log group; touch the resources its environment names (a Ref or GetAtt of a
  table, bus, state machine, queue, email identity...), with the actions that kind of resource allows; consume
  the queue or read the stream its event source mappings read; and send to its mappings' on-failure queues;
- a state machine may invoke (or touch) what its definition substitutions name;
- ``*`` as a resource only for the actions in WILDCARD_ACTIONS, each with the reason AWS allows nothing narrower,
  and only for the owners that need them; never ``*`` in an action; no managed or inline policies, except the
  roles in OTHER_ROLES;
- a function touches the items of one service's table at most (its own), besides SHARED_TABLES.

``violations`` does the checking; the last tests feed it broken templates, so it is known to catch each case.
"""

from __future__ import annotations

import copy
import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from tests.infra.support import Resources, as_list, of_type

# ------------------------------------------------------------------------------------------- the policy

# The only actions ever allowed on Resource "*", each because its service offers no narrower resource.
WILDCARD_ACTIONS = {
    "xray:PutTraceSegments": "X-Ray has no resource-level permissions for sending traces (tracing=ACTIVE adds it)",
    "xray:PutTelemetryRecords": "X-Ray has no resource-level permissions for telemetry (tracing=ACTIVE adds it)",
    "xray:GetSamplingRules": "X-Ray sampling rules are account-wide; Step Functions tracing reads them",
    "xray:GetSamplingTargets": "X-Ray sampling targets are account-wide; Step Functions tracing reads them",
    "dynamodb:ListStreams": (
        "ListStreams has no resource-level permissions; Lambda's stream poller calls it "
        "(reading a stream is granted on that stream's ARN)"
    ),
    # Step Functions logging goes through CloudWatch Logs vended-log delivery, whose actions take no resource.
    **{
        f"logs:{action}": "CloudWatch Logs vended-log delivery (Step Functions logging) takes no resource ARN"
        for action in (
            "CreateLogDelivery", "GetLogDelivery", "UpdateLogDelivery", "DeleteLogDelivery", "ListLogDeliveries",
            "PutResourcePolicy", "DescribeResourcePolicies", "DescribeLogGroups",
        )
    },
}
TRACE_WRITE = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
TRACE_SAMPLING = {"xray:GetSamplingRules", "xray:GetSamplingTargets"}
LOG_DELIVERY = {action for action in WILDCARD_ACTIONS if action.startswith("logs:")}

LOG_WRITE = {"logs:CreateLogStream", "logs:PutLogEvents"}
# Item-level data actions only: no control plane (CreateTable, UpdateTable, DeleteTable...), and no Scan, which
# reads every customer's items (add it here with the reason if a function ever must).
TABLE_ITEM_ACTIONS = {
    "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem", "dynamodb:DeleteItem",
    "dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem",
}
INDEX_ACTIONS = {"dynamodb:Query"}
STREAM_READ = {"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"}
SQS_CONSUME = {
    "sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl",
    "sqs:ReceiveMessage",
}
SQS_SEND = {"sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SendMessage"}

# What a role may do on a resource its owner names (environment variable, definition substitution), by the
# resource's type, and the form the resource takes in a policy ("{Arn}": its GetAtt Arn, "{Ref}": its Ref).
SES_IDENTITY_ARN = "arn:{AWS::Partition}:ses:{AWS::Region}:{AWS::AccountId}:identity/{Ref}"
NAMED: dict[str, dict[str, set[str]]] = {
    "AWS::DynamoDB::Table": {"{Arn}": TABLE_ITEM_ACTIONS},  # + its indexes, by name (see needs())
    "AWS::Events::EventBus": {"{Arn}": {"events:PutEvents"}},
    "AWS::StepFunctions::StateMachine": {"{Ref}": {"states:StartExecution"}},
    "AWS::SQS::Queue": {"{Arn}": SQS_SEND},
    "AWS::SNS::Topic": {"{Ref}": {"sns:Publish"}},
    "AWS::SES::EmailIdentity": {SES_IDENTITY_ARN: {"ses:SendEmail", "ses:SendRawEmail"}},
    "AWS::Lambda::Function": {"{Arn}": {"lambda:InvokeFunction"}},
}

# Tables a function may use besides its own service's table, by the environment variable that names them.
SHARED_TABLES = {
    "IDEMPOTENCY_TABLE": (
        "the system's one Powertools idempotency table: records are keyed by function name and idempotency key, "
        "so functions of different services never read each other's records"
    ),
}

# Roles that belong to neither a function nor a state machine, by how to recognize them, and why they are fine.
OTHER_ROLES: dict[str, tuple[Callable[[dict[str, Any]], bool], str]] = {
    "API Gateway account logging role": (
        lambda role: _assumed_by(role) == {"apigateway.amazonaws.com"}
        and json.dumps(role.get("ManagedPolicyArns")).count("AmazonAPIGatewayPushToCloudWatchLogs") == 1
        and len(role.get("ManagedPolicyArns", [])) == 1
        and "Policies" not in role,
        "the region-wide API Gateway logging setting needs a role API Gateway assumes; the AWS managed "
        "AmazonAPIGatewayPushToCloudWatchLogs policy is the one documented for it (cdk-nag IAM4 acknowledged in "
        "stacks/api.py)",
    ),
}

PSEUDO_PARAMETERS = {"AWS::Partition", "AWS::Region", "AWS::AccountId", "AWS::URLSuffix", "AWS::StackName"}


# ------------------------------------------------------------------------------------------- reading


Target = tuple[str | None, str]  # (logical id the expression points at, the expression with it as a placeholder)


def target(expression: Any) -> Target:
    """``("OrdersTable", "{Arn}")`` for ``{"Fn::GetAtt": ["OrdersTable", "Arn"]}``; ``(None, "*")`` for ``*``."""
    if isinstance(expression, str):
        return None, expression
    if isinstance(expression, dict) and len(expression) == 1:
        [(function, argument)] = expression.items()
        if function == "Ref":
            return (None, f"{{{argument}}}") if argument in PSEUDO_PARAMETERS else (argument, "{Ref}")
        if function == "Fn::GetAtt":
            logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            return logical_id, f"{{{attribute}}}"
        if function == "Fn::Join" and argument[0] == "":
            parts = [target(part) for part in argument[1]]
            ids = {logical_id for logical_id, _ in parts if logical_id is not None}
            if len(ids) <= 1:
                return (ids.pop() if ids else None), "".join(text for _, text in parts)
    raise AssertionError(f"a resource expression this test does not understand: {json.dumps(expression)}")


def _assumed_by(role: dict[str, Any]) -> set[str]:
    return {
        service
        for statement in role["AssumeRolePolicyDocument"]["Statement"]
        for service in as_list(statement.get("Principal", {}).get("Service", []))
    }


def role_grants(resources: Resources, role_id: str) -> tuple[list[str], set[tuple[str, Target]]]:
    """Problems with the role's policies, and every (action, target) it is allowed."""
    problems = []
    role = resources[role_id]["Properties"]
    for key in ("ManagedPolicyArns", "Policies"):
        if key in role:
            problems.append(f"{role_id}: {key} on a role (grants only, each in a policy this test reads)")
    allowed: set[tuple[str, Target]] = set()
    for policy_id, policy in of_type(resources, "AWS::IAM::Policy").items():
        if {"Ref": role_id} not in policy["Properties"].get("Roles", []):
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement.get("Effect") != "Allow" or "Condition" in statement or "NotAction" in statement:
                problems.append(f"{policy_id}: only unconditional Allow statements are expected: {statement}")
                continue
            if "NotResource" in statement:
                problems.append(f"{policy_id}: NotResource allows everything else: {statement}")
                continue
            for action in as_list(statement["Action"]):
                for resource in as_list(statement["Resource"]):
                    allowed.add((action, target(resource)))
    return problems, allowed


def references(value: Any) -> set[str]:
    """Logical ids a property value refers to (Ref, GetAtt), at any depth."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str) and inner not in PSEUDO_PARAMETERS:
                found.add(inner)
            elif key == "Fn::GetAtt":
                found.add(inner[0] if isinstance(inner, list) else inner.split(".", 1)[0])
            else:
                found |= references(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= references(inner)
    return found


# ------------------------------------------------------------------------------------------- expectations


Needs = dict[Target, set[str]]


def named(resources: Resources, logical_ids: Iterable[str]) -> Needs:
    """What a role may do on the resources its owner names."""
    needs: Needs = defaultdict(set)
    for logical_id in logical_ids:
        resource = resources.get(logical_id)
        if resource is None:
            continue  # a parameter (the Powertools layer) or a condition, not a resource
        for form, actions in NAMED.get(resource["Type"], {}).items():
            needs[logical_id, form] |= actions
        if resource["Type"] == "AWS::DynamoDB::Table":
            props = resource["Properties"]
            for index in props.get("GlobalSecondaryIndexes", []) + props.get("LocalSecondaryIndexes", []):
                needs[logical_id, "{Arn}/index/" + index["IndexName"]] |= INDEX_ACTIONS
    return needs


def function_needs(resources: Resources, function_id: str) -> Needs:
    props = resources[function_id]["Properties"]
    variables = props.get("Environment", {}).get("Variables", {})
    needs = named(resources, references(variables))
    log_group = props.get("LoggingConfig", {}).get("LogGroup")
    if log_group is not None:
        needs[target(log_group)[0], "{Arn}"] |= LOG_WRITE
    if props.get("TracingConfig", {}).get("Mode") == "Active":
        needs[None, "*"] |= TRACE_WRITE
    dead_letter = props.get("DeadLetterConfig", {}).get("TargetArn")
    if dead_letter is not None:
        needs[target(dead_letter)] |= SQS_SEND
    for mapping in of_type(resources, "AWS::Lambda::EventSourceMapping").values():
        m = mapping["Properties"]
        if references(m["FunctionName"]) != {function_id}:
            continue
        source, form = target(m["EventSourceArn"])
        source_type = resources[source]["Type"] if source in resources else None
        if source_type == "AWS::SQS::Queue" and form == "{Arn}":
            needs[source, form] |= SQS_CONSUME
        elif source_type == "AWS::DynamoDB::Table" and form == "{StreamArn}":
            needs[source, form] |= STREAM_READ
            needs[None, "*"] |= {"dynamodb:ListStreams"}
        destination = m.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        if destination is not None:
            needs[target(destination)] |= SQS_SEND
    return needs


def state_machine_needs(resources: Resources, machine_id: str) -> Needs:
    props = resources[machine_id]["Properties"]
    needs = named(resources, references(props.get("DefinitionSubstitutions", {})))
    if props.get("LoggingConfiguration"):
        needs[None, "*"] |= LOG_DELIVERY
    if props.get("TracingConfiguration", {}).get("Enabled"):
        needs[None, "*"] |= TRACE_WRITE | TRACE_SAMPLING
    return needs


def owners(resources: Resources) -> dict[str, tuple[str, Needs]]:
    """role logical id -> (its owner's logical id, what the owner needs)."""
    found: dict[str, tuple[str, Needs]] = {}
    for kind, key, needs_of in (
        ("AWS::Lambda::Function", "Role", function_needs),
        ("AWS::StepFunctions::StateMachine", "RoleArn", state_machine_needs),
    ):
        for owner_id, owner in of_type(resources, kind).items():
            role_id, _ = target(owner["Properties"][key])
            assert role_id not in found, f"{role_id} is shared by {found[role_id][0]} and {owner_id}: one role each"
            found[role_id] = (owner_id, needs_of(resources, owner_id))
    return found


# ------------------------------------------------------------------------------------------- checking


def violations(resources: Resources) -> list[str]:
    problems: list[str] = []
    roles = owners(resources)
    for role_id, role in of_type(resources, "AWS::IAM::Role").items():
        if role_id in roles:
            continue
        if not any(recognize(role["Properties"]) for recognize, _ in OTHER_ROLES.values()):
            problems.append(f"{role_id}: a role of no function or state machine, and not in OTHER_ROLES")

    for role_id, (owner_id, needs) in roles.items():
        role_problems, allowed = role_grants(resources, role_id)
        problems += role_problems
        item_tables: set[str] = set()
        for action, (logical_id, form) in sorted(allowed, key=str):
            where = f"{owner_id} ({role_id}): {action} on {logical_id or ''}{form}"
            if "*" in action:
                problems.append(f"{where}: a wildcard action")
            elif action not in needs.get((logical_id, form), set()):
                problems.append(f"{where}: not what it uses (its environment, mappings or definition)")
            elif form == "*" and action not in WILDCARD_ACTIONS:
                problems.append(f"{where}: '*' for an action that can be scoped")
            if logical_id is not None and form == "{Arn}" and action in TABLE_ITEM_ACTIONS:
                if resources.get(logical_id, {}).get("Type") == "AWS::DynamoDB::Table":
                    item_tables.add(logical_id)
        if resources[owner_id]["Type"] == "AWS::Lambda::Function":
            variables = resources[owner_id]["Properties"].get("Environment", {}).get("Variables", {})
            shared = {ref for name in SHARED_TABLES if name in variables for ref in references(variables[name])}
            own = item_tables - shared
            if len(own) > 1:
                problems.append(f"{owner_id}: touches the items of {sorted(own)}: one service's table at most")
    return problems


# ------------------------------------------------------------------------------------------- tests


@pytest.fixture(params=["standard", "express"])
def any_resources(request: pytest.FixtureRequest) -> Resources:
    return request.getfixturevalue("resources" if request.param == "standard" else "express_resources")


def test_every_role_has_only_what_its_owner_uses(any_resources: Resources) -> None:
    assert violations(any_resources) == []


def test_the_rules_cover_every_function_and_state_machine(any_resources: Resources) -> None:
    roles = owners(any_resources)
    functions = of_type(any_resources, "AWS::Lambda::Function")
    machines = of_type(any_resources, "AWS::StepFunctions::StateMachine")
    assert {owner for owner, _ in roles.values()} == set(functions) | set(machines)
    assert functions and machines


def test_wildcard_resources_are_only_for_the_owners_that_need_them(any_resources: Resources) -> None:
    # X-Ray for everyone traced; ListStreams for stream consumers only; log delivery for state machines only.
    for role_id, (owner_id, needs) in owners(any_resources).items():
        _, allowed = role_grants(any_resources, role_id)
        wildcard = {action for action, (_, form) in allowed if form == "*"}
        assert wildcard <= set(WILDCARD_ACTIONS), owner_id
        assert wildcard <= needs.get((None, "*"), set()), owner_id


def test_every_exception_says_why() -> None:
    for reason in [*WILDCARD_ACTIONS.values(), *SHARED_TABLES.values(), *(r for _, r in OTHER_ROLES.values())]:
        assert len(reason.split()) >= 8, reason


# The checker itself, on broken copies of the Standard template: each kind of excess is found.


def _policy_of(resources: Resources, function_id: str) -> dict[str, Any]:
    role_id, _ = target(resources[function_id]["Properties"]["Role"])
    for policy in of_type(resources, "AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            return policy
    raise AssertionError(f"{function_id} has no policy")


def _function_naming(resources: Resources, variable: str, but_not: str = "") -> str:
    for logical_id, function in of_type(resources, "AWS::Lambda::Function").items():
        variables = function["Properties"]["Environment"]["Variables"]
        if variable in variables and but_not not in variables:
            return logical_id
    raise AssertionError(f"no function has {variable}")


def _table_named(resources: Resources, variable: str) -> str:
    function = resources[_function_naming(resources, variable)]
    [table] = references(function["Properties"]["Environment"]["Variables"][variable])
    return table


def _with_statement(resources: Resources, function_id: str, action: Any, resource: Any) -> Resources:
    broken = copy.deepcopy(resources)
    _policy_of(broken, function_id)["Properties"]["PolicyDocument"]["Statement"].append(
        {"Effect": "Allow", "Action": action, "Resource": resource}
    )
    return broken


def test_the_checker_finds_another_services_table(resources: Resources) -> None:
    function = _function_naming(resources, "ORDERS_TABLE", but_not="PAYMENTS_TABLE")
    payments = _table_named(resources, "PAYMENTS_TABLE")
    broken = _with_statement(resources, function, "dynamodb:GetItem", {"Fn::GetAtt": [payments, "Arn"]})
    assert any("not what it uses" in problem for problem in violations(broken))


def test_the_checker_finds_a_scan_a_wildcard_action_and_a_wildcard_resource(resources: Resources) -> None:
    function = _function_naming(resources, "ORDERS_TABLE", but_not="PAYMENTS_TABLE")
    orders = _table_named(resources, "ORDERS_TABLE")
    for action, resource, expected in (
        ("dynamodb:Scan", {"Fn::GetAtt": [orders, "Arn"]}, "not what it uses"),
        ("dynamodb:*", {"Fn::GetAtt": [orders, "Arn"]}, "a wildcard action"),
        ("dynamodb:GetItem", "*", "not what it uses"),
        ("dynamodb:GetItem", {"Fn::Join": ["", [{"Fn::GetAtt": [orders, "Arn"]}, "/index/*"]]}, "not what it uses"),
    ):
        problems = violations(_with_statement(resources, function, action, resource))
        assert any(expected in problem for problem in problems), (action, resource, problems)


def test_the_checker_finds_two_service_tables_in_one_function(resources: Resources) -> None:
    # Even when the environment names both (so each grant alone is "used"), one function may not span services.
    broken = copy.deepcopy(resources)
    function = _function_naming(broken, "ORDERS_TABLE", but_not="PAYMENTS_TABLE")
    payments = _table_named(broken, "PAYMENTS_TABLE")
    broken[function]["Properties"]["Environment"]["Variables"]["PAYMENTS_TABLE"] = {"Ref": payments}
    _policy_of(broken, function)["Properties"]["PolicyDocument"]["Statement"].append(
        {"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": {"Fn::GetAtt": [payments, "Arn"]}}
    )
    assert any("one service's table at most" in problem for problem in violations(broken))


def test_the_checker_finds_managed_policies_and_unknown_roles(resources: Resources) -> None:
    broken = copy.deepcopy(resources)
    role_id, _ = target(broken[_function_naming(broken, "ORDERS_TABLE")]["Properties"]["Role"])
    broken[role_id]["Properties"]["ManagedPolicyArns"] = ["arn:aws:iam::aws:policy/AdministratorAccess"]
    broken["StrayRole"] = {
        "Type": "AWS::IAM::Role",
        "Properties": {"AssumeRolePolicyDocument": {"Statement": [{"Principal": {"Service": "ec2.amazonaws.com"}}]}},
    }
    problems = violations(broken)
    assert any("ManagedPolicyArns on a role" in problem for problem in problems)
    assert any(problem.startswith("StrayRole:") for problem in problems)
