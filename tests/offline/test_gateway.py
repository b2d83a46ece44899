"""The REST API: routes from the template, the proxy event, the local authorizer, API Gateway's own errors."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.offline.support import function, template

HANDLER = """
    import base64, json

    def echo(event, context):
        return {"statusCode": 200, "headers": {"Content-Type": "application/json", "X-Echo": "1"},
                "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]}, "body": json.dumps(event)}

    def crash(event, context):
        raise RuntimeError("boom")

    def malformed(event, context):
        return {"statusCode": 200, "body": {"not": "a string"}}

    def binary(event, context):
        return {"statusCode": 201, "isBase64Encoded": True, "headers": {"Content-Type": "image/png"},
                "body": base64.b64encode(b"\\x89PNG").decode()}
"""


def uri(function_id: str) -> dict[str, Any]:
    return {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":apigateway:", {"Ref": "AWS::Region"},
                              ":lambda:path/2015-03-31/functions/", {"Fn::GetAtt": [function_id, "Arn"]},
                              "/invocations"]]}


def resource(parent: str | None, part: str) -> dict[str, Any]:
    parent_id = {"Fn::GetAtt": ["Api", "RootResourceId"]} if parent is None else {"Ref": parent}
    return {"Type": "AWS::ApiGateway::Resource",
            "Properties": {"ParentId": parent_id, "PathPart": part, "RestApiId": {"Ref": "Api"}}}


def method(resource_id: str | None, verb: str, function_id: str, auth: str = "NONE") -> dict[str, Any]:
    properties: dict[str, Any] = {
        "HttpMethod": verb, "AuthorizationType": auth, "RestApiId": {"Ref": "Api"},
        "ResourceId": {"Fn::GetAtt": ["Api", "RootResourceId"]} if resource_id is None else {"Ref": resource_id},
        "Integration": {"Type": "AWS_PROXY", "IntegrationHttpMethod": "POST", "Uri": uri(function_id)},
    }
    if auth == "COGNITO_USER_POOLS":
        properties["AuthorizerId"] = {"Ref": "Authorizer"}
    return {"Type": "AWS::ApiGateway::Method", "Properties": properties}


@pytest.fixture
def api(run: Any, code: Any) -> Any:
    code("h_api", HANDLER)
    rt = run(template(
        Echo=function("h_api.echo"), Crash=function("h_api.crash"), Malformed=function("h_api.malformed"),
        Binary=function("h_api.binary"),
        Api={"Type": "AWS::ApiGateway::RestApi", "Properties": {"Name": "test-api",
                                                               "BinaryMediaTypes": ["application~1octet-stream"]}},
        Users={"Type": "AWS::Cognito::UserPool", "Properties": {}},
        Authorizer={"Type": "AWS::ApiGateway::Authorizer", "Properties": {
            "Type": "COGNITO_USER_POOLS", "RestApiId": {"Ref": "Api"},
            "IdentitySource": "method.request.header.Authorization",
            "ProviderARNs": [{"Fn::GetAtt": ["Users", "Arn"]}]}},
        Health=resource(None, "health"), HealthGet=method("Health", "GET", "Echo"),
        Orders=resource(None, "orders"), OrdersPost=method("Orders", "POST", "Echo", "COGNITO_USER_POOLS"),
        Order=resource("Orders", "{orderId}"), OrderGet=method("Order", "GET", "Echo", "COGNITO_USER_POOLS"),
        OrderSpecial=resource("Orders", "special"), OrderSpecialGet=method("OrderSpecial", "GET", "Echo"),
        OrdersOptions={"Type": "AWS::ApiGateway::Method", "Properties": {
            "HttpMethod": "OPTIONS", "AuthorizationType": "NONE", "RestApiId": {"Ref": "Api"},
            "ResourceId": {"Ref": "Orders"}, "Integration": {"Type": "MOCK", "IntegrationResponses": [{
                "StatusCode": "204",
                "ResponseParameters": {"method.response.header.Access-Control-Allow-Origin": "'*'"}}]}}},
        Files=resource(None, "files"), Proxy=resource("Files", "{proxy+}"), ProxyAny=method("Proxy", "ANY", "Echo"),
        Boom=resource(None, "boom"), BoomGet=method("Boom", "GET", "Crash"),
        Bad=resource(None, "bad"), BadGet=method("Bad", "GET", "Malformed"),
        Png=resource(None, "png"), PngGet=method("Png", "GET", "Binary"),
        Deployment={"Type": "AWS::ApiGateway::Deployment", "Properties": {"RestApiId": {"Ref": "Api"}},
                    "DependsOn": ["HealthGet", "OrdersPost", "OrderGet"]},
        Stage={"Type": "AWS::ApiGateway::Stage", "Properties": {
            "RestApiId": {"Ref": "Api"}, "DeploymentId": {"Ref": "Deployment"}, "StageName": "prod"}},
    ))
    return rt.api


def test_routes_path_parameters_and_the_proxy_event(api: Any) -> None:
    response = api.request("GET", "/orders/o-42?x=1&x=2&y=", headers={"Authorization": "Bearer dev:c1",
                                                                       "Accept": "application/json"})
    assert response.status == 200 and response.headers["x-echo"] == "1"
    assert response.headers["set-cookie"] == "a=1, b=2"
    event = response.json()
    assert (event["resource"], event["path"], event["httpMethod"]) == ("/orders/{orderId}", "/orders/o-42", "GET")
    assert event["pathParameters"] == {"orderId": "o-42"}
    assert event["queryStringParameters"] == {"x": "2", "y": ""}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"], "y": [""]}
    assert event["headers"]["Accept"] == "application/json"
    assert event["multiValueHeaders"]["Authorization"] == ["Bearer dev:c1"]
    assert event["body"] is None and event["isBase64Encoded"] is False and event["stageVariables"] is None
    context = event["requestContext"]
    assert (context["stage"], context["resourcePath"], context["httpMethod"]) == ("prod", "/orders/{orderId}", "GET")
    assert context["path"] == "/prod/orders/o-42" and context["requestId"]
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert context["authorizer"] == {"claims": {"sub": "c1", "email": "c1@example.com"}}
    assert response.headers["x-amzn-RequestId"] == context["requestId"]
    # a literal path part wins over a parameter; the deployed URL's /prod prefix is accepted too
    assert api.request("GET", "/orders/special").json()["resource"] == "/orders/special"
    staged = api.request("GET", "/prod/health").json()
    assert (staged["resource"], staged["path"], staged["requestContext"]["path"]) == ("/health", "/health",
                                                                                       "/prod/health")
    assert api.request("DELETE", "/files/a/b.txt").json()["pathParameters"] == {"proxy": "a/b.txt"}


def test_bodies_go_through_as_api_gateway_sends_them(api: Any) -> None:
    admin = {"authorization": "Bearer dev:ops:admin"}
    event = api.request("POST", "/orders", headers=admin, body={"items": []}).json()
    assert json.loads(event["body"]) == {"items": []} and event["headers"]["Content-Type"] == "application/json"
    assert event["requestContext"]["authorizer"]["claims"] == {"sub": "ops", "email": "ops@example.com",
                                                              "cognito:groups": "admins"}
    # Text unless the Content-Type is one of the API's binary media types: bytes that are not UTF-8 are replaced.
    event = api.request("POST", "/orders", headers=admin, body=b"\xff\x00").json()
    assert (event["body"], event["isBase64Encoded"]) == ("\ufffd\x00", False)
    binary = {**admin, "Content-Type": "application/octet-stream"}
    event = api.request("POST", "/orders", headers=binary, body=b"\xff\x00").json()
    assert event["isBase64Encoded"] and base64.b64decode(event["body"]) == b"\xff\x00"
    response = api.request("GET", "/png")
    assert (response.status, response.raw, response.headers["Content-Type"]) == (201, b"\x89PNG", "image/png")


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/nope"), ("GET", "/"), ("DELETE", "/orders/o1"), ("GET", "/orders"), ("POST", "/health"),
])
def test_unknown_routes_and_methods_are_403(api: Any, method: str, path: str) -> None:
    response = api.request(method, path, headers={"Authorization": "Bearer dev:c1"})
    assert response.status == 403 and response.json() == {"message": "Missing Authentication Token"}


@pytest.mark.parametrize("authorization", [
    None, "", "Bearer", "Bearer dev:", "bearer dev:c1", "Bearer c1", "Basic dev:c1", "Bearer dev:c 1",
    "Bearer dev:c1:root", "Bearer dev:" + "x" * 65, "Bearer dev:c1:admin:x",
])
def test_the_local_authorizer_answers_401(api: Any, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = api.request("GET", "/orders/o1", headers=headers)
    assert response.status == 401 and response.json() == {"message": "Unauthorized"}


def test_function_errors_and_malformed_responses_are_502(api: Any) -> None:
    for path in ("/boom", "/bad"):
        response = api.request("GET", path)
        assert response.status == 502 and response.json() == {"message": "Internal server error"}


def test_mock_integrations_answer_from_the_template(api: Any) -> None:
    response = api.request("OPTIONS", "/orders")
    assert response.status == 204 and response.headers["Access-Control-Allow-Origin"] == "*"


def test_payloads_over_api_gateways_and_lambdas_quotas_are_413(api: Any) -> None:
    admin = {"Authorization": "Bearer dev:ops:admin", "Content-Type": "application/json"}
    # Over Lambda's 6 MB invoke payload: API Gateway's "Request Too Long", the function is not invoked.
    response = api.request("POST", "/orders", headers=admin, body=b"x" * (6 * 1024 * 1024))
    assert response.status == 413 and response.json() == {"message": "Request Too Long"}
    # Over API Gateway's own 10 MB: refused at the front door, before routing or the authorizer.
    for path in ("/orders", "/nope"):
        response = api.request("POST", path, body=b"x" * (10 * 1024 * 1024 + 1))
        assert response.status == 413 and response.body == "HTTP content length exceeded 10485760 bytes."
    # Under both: the function gets it (the echo answers with the event, which holds the body).
    event = api.request("POST", "/orders", headers=admin, body=b"y" * (5 * 1024 * 1024)).json()
    assert len(event["body"]) == 5 * 1024 * 1024
