"""The app synthesized once per test session and workflow (with cdk-nag, as `cdk synth` does).

Resources are found through their constructs (``stack.orders.table``...), never through logical-id hashes.
"""

from __future__ import annotations

import pytest
from aws_cdk import App
from aws_cdk.assertions import Template

from app import build_app
from stacks.orderflow_stack import OrderflowStack
from tests.infra.support import Resources


@pytest.fixture(scope="session")
def app_and_stack() -> tuple[App, OrderflowStack]:
    """The default app: cdk.json's context (workflow "standard")."""
    return build_app()


@pytest.fixture(scope="session")
def stack(app_and_stack: tuple[App, OrderflowStack]) -> OrderflowStack:
    return app_and_stack[1]


@pytest.fixture(scope="session")
def template(stack: OrderflowStack) -> Template:
    # Synthesizes the whole app with cdk-nag registered: an unacknowledged finding already fails here.
    return Template.from_stack(stack)


@pytest.fixture(scope="session")
def resources(template: Template) -> Resources:
    return template.to_json()["Resources"]


@pytest.fixture(scope="session")
def express_app_and_stack() -> tuple[App, OrderflowStack]:
    """The same app with ``-c workflow=express``."""
    return build_app(context={"workflow": "express"})


@pytest.fixture(scope="session")
def express_resources(express_app_and_stack: tuple[App, OrderflowStack]) -> Resources:
    return Template.from_stack(express_app_and_stack[1]).to_json()["Resources"]
