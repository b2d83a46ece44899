"""End-to-end fixtures: the synthesized template, run by the offline runtime, driven through the API.

``template`` / ``rt`` are the default (Standard) profile. ``profile`` is parametrized over both workflow types
of the order saga (``standard``, ``express``: ``-c workflow=express``); ``profile_template`` / ``profile_rt``
follow it, so a test that asks for them runs once per profile (tests/e2e/test_order_saga.py does).
"""

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


PROFILES = ("standard", "express")
# The template `make test` synthesized for each profile (see the Makefile's TEST_ENV).
TEMPLATE_VARIABLES = {"standard": "ORDERFLOW_TEMPLATE", "express": "ORDERFLOW_TEMPLATE_EXPRESS"}


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    """The template `make test` synthesized (ORDERFLOW_TEMPLATE), or a fresh synth of app.py."""
    path = os.environ.get(TEMPLATE_VARIABLES["standard"])
    if path:
        return json.loads(Path(path).read_text())
    from offline.synth import synth_template

    return synth_template(ROOT)


@pytest.fixture(scope="session")
def express_template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The Express profile's template (ORDERFLOW_TEMPLATE_EXPRESS), or the app synthesized in-process with
    ``workflow=express`` (cdk-nag runs on it as on every synth), into a temporary folder of the session."""
    path = os.environ.get(TEMPLATE_VARIABLES["express"])
    if path:
        return json.loads(Path(path).read_text())
    from app import STACK_NAME, build_app

    previous = os.environ.get("CDK_OUTDIR")
    os.environ["CDK_OUTDIR"] = str(tmp_path_factory.mktemp("express-synth"))  # the App reads it when made
    try:
        app, _ = build_app({"workflow": "express"})
        return app.synth().get_stack_by_name(STACK_NAME).template  # type: ignore[no-any-return]
    finally:
        if previous is None:
            del os.environ["CDK_OUTDIR"]
        else:
            os.environ["CDK_OUTDIR"] = previous


@pytest.fixture(params=PROFILES)
def profile(request: pytest.FixtureRequest) -> str:
    """The order saga's workflow type: ``standard`` or ``express``."""
    return str(request.param)


@pytest.fixture
def profile_template(profile: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    return request.getfixturevalue("template" if profile == "standard" else "express_template")  # type: ignore[no-any-return]


def running(template: dict[str, Any]) -> Iterator[Runtime]:
    runtime = Runtime(template, code_root=ROOT / "functions")
    runtime.start()
    try:
        yield runtime
    finally:
        runtime.stop()


@pytest.fixture
def rt(template: dict[str, Any]) -> Iterator[Runtime]:
    yield from running(template)


@pytest.fixture
def profile_rt(profile_template: dict[str, Any]) -> Iterator[Runtime]:
    yield from running(profile_template)


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
