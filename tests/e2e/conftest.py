"""End-to-end fixtures: the synthesized template, run by the offline runtime, driven through the API."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from offline.runtime import Runtime

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    """The template `make test` synthesized (ORDERFLOW_TEMPLATE), or a fresh synth of app.py."""
    path = os.environ.get("ORDERFLOW_TEMPLATE")
    if path:
        return json.loads(Path(path).read_text())
    from offline.synth import synth_template

    return synth_template(ROOT)


@pytest.fixture
def rt(template: dict[str, Any]) -> Iterator[Runtime]:
    runtime = Runtime(template, code_root=ROOT / "functions")
    runtime.start()
    try:
        yield runtime
    finally:
        runtime.stop()


def customer(name: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer dev:{name or 'cust-' + uuid.uuid4().hex[:8]}"}


def admin(name: str = "ops") -> dict[str, str]:
    return {"Authorization": f"Bearer dev:{name}:admin"}


class BusSpy:
    """A test-only rule that copies every orderflow event on the bus to a queue, to see what was published."""

    def __init__(self, rt: Runtime) -> None:
        self._sqs = boto3.client("sqs")
        events = boto3.client("events")
        bus = rt.physical("EventsBus").name
        self._url = self._sqs.create_queue(QueueName=f"spy-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        arn = self._sqs.get_queue_attributes(QueueUrl=self._url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="test-spy", EventBusName=bus, EventPattern=json.dumps({"source": [{"prefix": "orderflow."}]}))
        events.put_targets(Rule="test-spy", EventBusName=bus, Targets=[{"Id": "spy", "Arn": arn}])
        self.seen: list[dict[str, Any]] = []

    def drain(self, only: str | None = None) -> list[dict[str, Any]]:
        """Every event delivered so far (EventBridge shape), in arrival order; `only` keeps one detail-type."""
        while True:
            messages = self._sqs.receive_message(QueueUrl=self._url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return [e for e in self.seen if only is None or e["detail-type"] == only]
            for message in messages:
                self.seen.append(json.loads(message["Body"]))
                self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def spy(rt: Runtime) -> BusSpy:
    return BusSpy(rt)


def scan(table_name: str) -> list[dict[str, Any]]:
    client = boto3.client("dynamodb")
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table_name}
    while True:
        page = client.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
