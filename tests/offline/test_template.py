"""Intrinsic functions, parameters, conditions and dependency order; names and references after deployment."""

from __future__ import annotations

import os
from typing import Any

import boto3
import pytest

from offline.errors import TemplateError
from offline.template import NO_VALUE, SSM_PLACEHOLDER_PREFIX, Template
from tests.offline.support import function, queue, table, template


class Lookup:
    def ref(self, logical_id: str) -> Any:
        return f"ref-of-{logical_id}"

    def get_att(self, logical_id: str, attribute: str) -> Any:
        return f"{logical_id}.{attribute}"


BODY: dict[str, Any] = {
    "Parameters": {
        "Stage": {"Type": "String", "Default": "dev"},
        "Layer": {"Type": "AWS::SSM::Parameter::Value<String>", "Default": "/aws/service/powertools/x"},
        "Zones": {"Type": "CommaDelimitedList", "Default": "a, b"},
        "Size": {"Type": "Number", "Default": 3},
    },
    "Mappings": {"Sizes": {"dev": {"memory": 128}, "prod": {"memory": 1024}}},
    "Conditions": {
        "IsProd": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]},
        "IsDev": {"Fn::Not": [{"Condition": "IsProd"}]},
        "DevInUsEast": {"Fn::And": [{"Condition": "IsDev"}, {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]}]},
        "Either": {"Fn::Or": [{"Condition": "IsProd"}, {"Condition": "DevInUsEast"}]},
    },
    "Resources": {
        "Table": {"Type": "AWS::DynamoDB::Table", "Properties": {}},
        "Fn": {"Type": "AWS::Lambda::Function", "Properties": {"Role": {"Fn::GetAtt": ["Role", "Arn"]}},
               "DependsOn": "Queue"},
        "Role": {"Type": "AWS::IAM::Role", "Properties": {}},
        "Queue": {"Type": "AWS::SQS::Queue", "Properties": {"Name": {"Fn::Sub": "${Table}-${Table.Arn}"}}},
        "ProdOnly": {"Type": "AWS::SQS::Queue", "Condition": "IsProd"},
    },
}


@pytest.fixture
def tpl() -> Template:
    return Template(BODY, stack_name="Stack", region="us-east-1")


@pytest.mark.parametrize(("expression", "expected"), [
    ({"Ref": "Stage"}, "dev"),
    ({"Ref": "Size"}, "3"),
    ({"Ref": "Zones"}, ["a", "b"]),
    ({"Ref": "Layer"}, SSM_PLACEHOLDER_PREFIX + "/aws/service/powertools/x"),
    ({"Ref": "AWS::Region"}, "us-east-1"),
    ({"Ref": "AWS::AccountId"}, "123456789012"),
    ({"Ref": "AWS::Partition"}, "aws"),
    ({"Ref": "AWS::StackName"}, "Stack"),
    ({"Ref": "AWS::URLSuffix"}, "amazonaws.com"),
    ({"Ref": "Table"}, "ref-of-Table"),
    ({"Fn::GetAtt": ["Table", "StreamArn"]}, "Table.StreamArn"),
    ({"Fn::GetAtt": "Table.Arn"}, "Table.Arn"),
    ({"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":x/", {"Ref": "Table"}]]}, "arn:aws:x/ref-of-Table"),
    ({"Fn::Join": [",", {"Ref": "Zones"}]}, "a,b"),
    ({"Fn::Sub": "${AWS::StackName}-${Table}-${Table.Arn}-${!Literal}"}, "Stack-ref-of-Table-Table.Arn-${Literal}"),
    ({"Fn::Sub": ["${A}/${Stage}", {"A": {"Ref": "Table"}}]}, "ref-of-Table/dev"),
    ({"Fn::Select": [1, {"Fn::Split": [":", "arn:aws:sqs"]}]}, "aws"),
    ({"Fn::Select": ["0", ["x", "y"]]}, "x"),
    ({"Fn::If": ["IsProd", "big", "small"]}, "small"),
    ({"Fn::If": ["Either", "yes", "no"]}, "yes"),
    ({"Fn::FindInMap": ["Sizes", {"Ref": "Stage"}, "memory"]}, 128),
    ({"Fn::GetAZs": ""}, ["us-east-1a", "us-east-1b", "us-east-1c"]),
    ({"Fn::Base64": "hi"}, "aGk="),
    ({"Fn::ToJsonString": {"a": [1, True]}}, '{"a":[1,true]}'),
    ({"k": {"Fn::If": ["IsProd", "x", {"Ref": "AWS::NoValue"}]}, "l": [1, {"Ref": "AWS::NoValue"}]}, {"l": [1]}),
])
def test_intrinsics(tpl: Template, expression: Any, expected: Any) -> None:
    assert tpl.resolve(expression, Lookup()) == expected


def test_conditions_and_enabled_resources(tpl: Template) -> None:
    assert (tpl.condition("IsProd"), tpl.condition("IsDev"), tpl.condition("DevInUsEast")) == (False, True, True)
    assert not tpl.is_enabled("ProdOnly") and tpl.is_enabled("Queue")
    assert tpl.resolve({"Ref": "AWS::NoValue"}) is NO_VALUE


def test_parameter_values_can_be_given() -> None:
    tpl = Template(BODY, stack_name="S", region="eu-west-1", parameters={"Stage": "prod", "Layer": "arn:layer"})
    assert tpl.condition("IsProd") and not tpl.condition("DevInUsEast")
    assert tpl.resolve({"Ref": "Layer"}) == "arn:layer"
    assert tpl.resolve({"Fn::GetAZs": ""})[0] == "eu-west-1a"
    with pytest.raises(TemplateError, match="does not declare"):
        Template(BODY, stack_name="S", region="us-east-1", parameters={"Nope": "x"})


def test_creation_order_follows_references_and_depends_on(tpl: Template) -> None:
    order = tpl.creation_order()
    assert order.index("Table") < order.index("Queue") < order.index("Fn")
    assert order.index("Role") < order.index("Fn")
    assert tpl.dependencies("Fn") == {"Role", "Queue"}


def test_cycles_and_unknown_references_are_errors() -> None:
    cyclic = Template({"Resources": {
        "A": {"Type": "X", "Properties": {"P": {"Ref": "B"}}},
        "B": {"Type": "X", "Properties": {"P": {"Fn::GetAtt": ["A", "Arn"]}}},
    }}, stack_name="S", region="us-east-1")
    with pytest.raises(TemplateError, match="circular"):
        cyclic.creation_order()
    with pytest.raises(TemplateError, match="neither a parameter nor a resource"):
        cyclic.resolve({"Ref": "Missing"}, Lookup())
    with pytest.raises(TemplateError, match="ImportValue"):
        cyclic.resolve({"Fn::ImportValue": "Other-Export"}, Lookup())


def test_deployment_resolves_references_to_local_names(run: Any) -> None:
    body = template(
        OrdersTable1F8332C7=table(),
        OrdersTableABCDEF12=table(stream=None),  # same readable name: both keep their full logical id
        JobsQueue77DD6BC5=queue(VisibilityTimeout=5),
        NamedQueue=queue(QueueName="explicit-name"),
        Api1A1A1A1A=function("h.handler", env={
            "TABLE": {"Ref": "OrdersTable1F8332C7"},
            "STREAM": {"Fn::GetAtt": ["OrdersTable1F8332C7", "StreamArn"]},
            "QUEUE_URL": {"Ref": "JobsQueue77DD6BC5"},
            "QUEUE_ARN": {"Fn::GetAtt": ["JobsQueue77DD6BC5", "Arn"]},
            "POOL": {"Ref": "UserPool1B2C3D4E"},
            "FLAG": True,
        }),
        UserPool1B2C3D4E={"Type": "AWS::Cognito::UserPool", "Properties": {}},
        PolicyA={"Type": "AWS::IAM::Policy", "Properties": {"PolicyDocument": {"Fn::ImportValue": "never-resolved"}}},
    )
    rt = run(body)
    orders = rt.physical("OrdersTable1F8332C7")
    assert orders.name == "Test-OrdersTable1F8332C7"
    assert rt.physical("JobsQueue").name == "Test-JobsQueue"
    assert rt.physical("NamedQueue").name == "explicit-name"
    env = rt.environment
    assert env["TABLE"] == orders.name and env["STREAM"] == orders.stream_arn
    assert env["QUEUE_URL"] == rt.physical("JobsQueue").url
    assert env["QUEUE_ARN"] == "arn:aws:sqs:us-east-1:123456789012:Test-JobsQueue"
    assert env["FLAG"] == "true" and env["POOL"] == "Test-UserPool"
    assert os.environ["TABLE"] == orders.name  # the union of the environments is in os.environ
    assert rt.skipped == {"AWS::Cognito::UserPool": ["UserPool1B2C3D4E"], "AWS::IAM::Policy": ["PolicyA"]}
    config = boto3.client("lambda").get_function_configuration(FunctionName="Test-Api")
    assert config["Environment"]["Variables"]["TABLE"] == orders.name
    assert (config["MemorySize"], config["Timeout"], config["Handler"]) == (256, 30, "h.handler")
    description = boto3.client("dynamodb").describe_table(TableName=orders.name)["Table"]
    assert description["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    with pytest.raises(KeyError, match="ambiguous"):
        rt.physical("OrdersTable")


def test_stop_restores_the_environment(run: Any) -> None:
    os.environ.pop("ONLY_IN_RUNTIME", None)
    rt = run(template(Fn=function("h.handler", env={"ONLY_IN_RUNTIME": "1"})))
    assert os.environ["ONLY_IN_RUNTIME"] == "1"
    rt.stop()
    assert "ONLY_IN_RUNTIME" not in os.environ
    rt.stop()  # idempotent
