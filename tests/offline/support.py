"""Builders for tiny hand-written templates and helpers to read what handlers and queues saw."""

from __future__ import annotations

import importlib
import json
from typing import Any

ROLE = {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}}}


def function(handler: str, env: dict[str, Any] | None = None, **properties: Any) -> dict[str, Any]:
    """An AWS::Lambda::Function the way CDK writes it (asset code, role from the template)."""
    return {
        "Type": "AWS::Lambda::Function",
        "Properties": {
            "Code": {"S3Bucket": {"Fn::Sub": "cdk-assets-${AWS::AccountId}-${AWS::Region}"}, "S3Key": "x.zip"},
            "Handler": handler,
            "Runtime": "python3.13",
            "Role": {"Fn::GetAtt": ["Role1A2B3C4D", "Arn"]},
            "MemorySize": 256,
            "Timeout": 30,
            "Environment": {"Variables": env or {}},
            **properties,
        },
        "DependsOn": ["Role1A2B3C4D"],
    }


def table(stream: str | None = "NEW_IMAGE", **properties: Any) -> dict[str, Any]:
    props: dict[str, Any] = {
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "BillingMode": "PAY_PER_REQUEST",
        **properties,
    }
    if stream:
        props["StreamSpecification"] = {"StreamViewType": stream}
    return {"Type": "AWS::DynamoDB::Table", "Properties": props}


def queue(**properties: Any) -> dict[str, Any]:
    return {"Type": "AWS::SQS::Queue", "Properties": properties}


def template(**resources: dict[str, Any]) -> dict[str, Any]:
    return {"Resources": {"Role1A2B3C4D": ROLE, **resources}}


def module(name: str) -> Any:
    """A handler module as the runtime imports it (to read what it recorded); the runtime must be started."""
    return importlib.import_module(name)


class Handler:
    """A handler module, imported when first used (after the runtime put its code root on sys.path)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(module(self._name), attribute)


def messages(sqs: Any, url: str, wait: int = 0) -> list[dict[str, Any]]:
    """Every message on a queue (received once, not deleted)."""
    found: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
                                    VisibilityTimeout=300, WaitTimeSeconds=wait).get("Messages", [])
        if not batch:
            return found
        found.extend(batch)


def bodies(sqs: Any, url: str) -> list[Any]:
    return [json.loads(message["Body"]) for message in messages(sqs, url)]
