"""Helpers of the template tests: find resources through their constructs, read grants and routes."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import CfnElement, Stack
from constructs import IConstruct

Resources = dict[str, dict[str, Any]]

XRAY = ("xray:PutTelemetryRecords", "xray:PutTraceSegments")
LOG_WRITE = ("logs:CreateLogStream", "logs:PutLogEvents")
SQS_CONSUME = (
    "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "sqs:ReceiveMessage",
)


def lid(construct: IConstruct) -> str:
    """Logical id of a construct's CloudFormation resource (its default child for an L2)."""
    element = construct if isinstance(construct, CfnElement) else construct.node.default_child
    assert isinstance(element, CfnElement), f"{construct.node.path} has no CloudFormation resource"
    return Stack.of(element).resolve(element.logical_id)


def ref(construct: IConstruct) -> dict[str, str]:
    return {"Ref": lid(construct)}


def get_att(construct: IConstruct, attribute: str) -> dict[str, list[str]]:
    return {"Fn::GetAtt": [lid(construct), attribute]}


def of_type(resources: Resources, type_: str) -> Resources:
    return {k: v for k, v in resources.items() if v["Type"] == type_}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def key(resource: Any) -> str:
    return json.dumps(resource, sort_keys=True)


def grants(resources: Resources, role_logical_id: str) -> set[tuple[str, str]]:
    """Every (action, resource) the role is allowed, from every policy attached to it."""
    role = resources[role_logical_id]["Properties"]
    assert "ManagedPolicyArns" not in role and "Policies" not in role, "no managed or inline policies on roles"
    allowed: set[tuple[str, str]] = set()
    for policy in of_type(resources, "AWS::IAM::Policy").values():
        props = policy["Properties"]
        if {"Ref": role_logical_id} not in props.get("Roles", []):
            continue
        for statement in props["PolicyDocument"]["Statement"]:
            assert statement["Effect"] == "Allow" and "Condition" not in statement, statement
            for action in as_list(statement["Action"]):
                for resource in as_list(statement["Resource"]):
                    allowed.add((action, key(resource)))
    return allowed


def granted_roles(resources: Resources) -> list[str]:
    """Every role whose permissions come from grants only (all but API Gateway's logging role, which uses the
    AWS managed policy; test_template.py pins that exception)."""
    return [k for k, v in of_type(resources, "AWS::IAM::Role").items() if "ManagedPolicyArns" not in v["Properties"]]


def allow(actions: tuple[str, ...], resource: Any) -> set[tuple[str, str]]:
    return {(action, key(resource)) for action in actions}


def route_table(resources: Resources, rest_api_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(method, path) -> the method's properties, with paths rebuilt from the Resource tree."""
    parts = {k: v["Properties"] for k, v in of_type(resources, "AWS::ApiGateway::Resource").items()}

    def path(resource_ref: dict[str, Any]) -> str:
        if resource_ref == {"Fn::GetAtt": [rest_api_id, "RootResourceId"]}:
            return ""
        resource = parts[resource_ref["Ref"]]
        return path(resource["ParentId"]) + "/" + resource["PathPart"]

    return {
        (m["Properties"]["HttpMethod"], path(m["Properties"]["ResourceId"]) or "/"): m["Properties"]
        for m in of_type(resources, "AWS::ApiGateway::Method").values()
    }


def describe(report: Any) -> list[str]:
    """A cdk-nag validation report's violations, one line each."""
    return [
        f"{violation.rule_name} at {resource.construct_path}: {violation.description}"
        for violation in report.violations
        for resource in violation.violating_resources
    ]
