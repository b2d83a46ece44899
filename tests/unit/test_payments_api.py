"""The payments API handler, called with API Gateway proxy events, against moto tables made by hand."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import patch

import boto3
import pytest
from moto import mock_aws  # before the handler module: its boto3 clients must be made after moto is imported

os.environ.setdefault("PAYMENTS_TABLE", "payments")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Orderflow")

from payments import api  # noqa: E402
from payments.service import deposit_id_for  # noqa: E402

ADMIN = {"sub": "ops-1", "cognito:groups": "admins"}

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


@dataclass
class FakeContext:
    function_name: str = "payments-api"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:payments-api"
    aws_request_id: str = "req-1"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def proxy_event(
    method: str,
    path: str,
    *,
    claims: dict[str, str] | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An API Gateway REST proxy event as the Cognito authorizer hands it to the function."""
    if body is not None and not isinstance(body, str):
        body = json.dumps(body)
    all_headers = {"content-type": "application/json", **(headers or {})}
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "multiValueHeaders": {k: [v] for k, v in all_headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": method,
            "path": f"/prod{path}",
            "stage": "prod",
            "requestId": str(uuid.uuid4()),
            "authorizer": {"claims": claims} if claims else {},
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": body,
        "isBase64Encoded": False,
    }


def call(method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    response = api.handler(proxy_event(method, path, **kwargs), FakeContext())
    return response["statusCode"], json.loads(response["body"])


def deposit(customer: str, amount: Any, key: str = "k-1", claims: dict[str, str] | None = ADMIN) -> tuple[int, dict[str, Any]]:
    return call(
        "POST",
        f"/admin/accounts/{customer}/deposits",
        claims=claims,
        body={"amount": amount},
        headers={"Idempotency-Key": key},
    )


@pytest.fixture(autouse=True)
def tables() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb")
        client.create_table(
            TableName=api.settings.payments_table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


WRITES = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"}


def record_dynamodb_calls() -> list[str]:
    """The DynamoDB operations the handler's client makes from now on, in order."""
    calls: list[str] = []
    api.client("dynamodb").meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))
    return calls


def account_events(client: Any, customer: str) -> list[dict[str, Any]]:
    items = client.query(
        TableName=api.settings.payments_table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"account#{customer}"}},
    )["Items"]
    return [{"type": i["type"]["S"], "data": json.loads(i["data"]["S"])} for i in items]


def test_a_deposit_credits_the_account_once_per_key(tables: Any) -> None:
    status, body = deposit("c-1", "100.00")
    assert status == 201
    assert body == {"customerId": "c-1", "balance": "100.00", "held": "0.00", "depositId": deposit_id_for("c-1", "k-1")}
    assert deposit("c-1", "100.00") == (201, body)  # a replay answers the same and deposits nothing
    assert deposit("c-1", "100") == (201, body)  # the same amount, written another way
    status, second = deposit("c-1", "0.5", key="k-2")
    assert status == 201 and second["balance"] == "100.50"
    assert [e["data"] for e in account_events(tables, "c-1")] == [
        {"deposit_id": deposit_id_for("c-1", "k-1"), "amount": "100.00"},
        {"deposit_id": deposit_id_for("c-1", "k-2"), "amount": "0.50"},
    ]


def test_the_same_key_with_another_amount_is_422() -> None:
    deposit("c-1", "100.00")
    status, body = deposit("c-1", "90.00")
    assert status == 422 and "Idempotency-Key" in body["message"]


def test_keys_are_per_customer() -> None:
    assert deposit("c-1", "10.00")[1]["depositId"] != deposit("c-2", "10.00")[1]["depositId"]


def test_a_replay_long_after_is_still_a_no_op_and_the_account_remembers_the_amount(tables: Any) -> None:
    """No idempotency record, so nothing expires: the account's own deposit ids make every replay a no-op."""
    deposit("c-1", "100.00")
    deposit("c-1", "5.00", key="k-2")
    later = datetime.now(UTC) + timedelta(days=400)
    with patch("time.time", return_value=later.timestamp()):
        status, body = deposit("c-1", "100.00")
        assert status == 201 and body == {
            "customerId": "c-1", "balance": "105.00", "held": "0.00", "depositId": deposit_id_for("c-1", "k-1")
        }  # the account as it is now
        status, body = deposit("c-1", "99.00")  # the account itself remembers the amount
        assert status == 422 and "Idempotency-Key" in body["message"]
    assert [e["type"] for e in account_events(tables, "c-1")] == ["FundsDeposited", "FundsDeposited"]
    assert tables.list_tables()["TableNames"] == [api.settings.payments_table]  # no other table was needed


def test_a_replay_writes_nothing(tables: Any) -> None:
    deposit("c-1", "100.00")
    calls = record_dynamodb_calls()
    assert deposit("c-1", "100.00")[0] == 201
    assert deposit("c-1", "90.00")[0] == 422
    assert calls and not any(operation in WRITES for operation in calls), calls


def test_a_first_deposit_makes_one_write(tables: Any) -> None:
    calls = record_dynamodb_calls()
    assert deposit("c-1", "100.00")[0] == 201
    assert [operation for operation in calls if operation in WRITES] == ["PutItem"]


def twin_runs_before_the_first_append(monkeypatch: Any, twin: Any) -> list[Any]:
    """Make the first append wait while ``twin`` (another request) runs to its end: the race a request loses
    when its twin, in another execution environment, appends between its load and its append."""
    answers: list[Any] = []
    append = api.DynamoDBEventStore.append
    started = False

    def twin_first(store: Any, *args: Any, **kwargs: Any) -> None:
        nonlocal started
        if not started:
            started = True
            answers.append(twin())
        append(store, *args, **kwargs)

    monkeypatch.setattr(api.DynamoDBEventStore, "append", twin_first)
    return answers


def test_two_identical_requests_racing_deposit_once_and_both_answer_201(tables: Any, monkeypatch: Any) -> None:
    """The twin arrives after this request loaded the account and before it appended: this request's append
    loses (a ConcurrencyError), it loads again, finds the deposit id and answers as the twin did."""
    answers = twin_runs_before_the_first_append(monkeypatch, lambda: deposit("c-1", "100.00"))
    calls = record_dynamodb_calls()
    first = deposit("c-1", "100.00")
    expected = {"customerId": "c-1", "balance": "100.00", "held": "0.00", "depositId": deposit_id_for("c-1", "k-1")}
    assert answers == [(201, expected)] and first == (201, expected)
    assert calls.count("PutItem") == 2  # the twin's, and this request's that lost
    assert len(account_events(tables, "c-1")) == 1


def test_a_racing_twin_with_another_amount_is_422(tables: Any, monkeypatch: Any) -> None:
    answers = twin_runs_before_the_first_append(monkeypatch, lambda: deposit("c-1", "100.00"))
    status, body = deposit("c-1", "90.00")
    assert answers[0][0] == 201 and status == 422 and "Idempotency-Key" in body["message"]
    assert [e["data"]["amount"] for e in account_events(tables, "c-1")] == ["100.00"]


def test_deposits_are_for_admins_only() -> None:
    status, body = deposit("c-1", "10.00", claims={"sub": "c-1"})
    assert status == 403 and body["message"]
    status, body = deposit("c-1", "10.00", claims=None)
    assert (status, body) == (401, {"message": "Unauthorized"})
    assert call("GET", "/admin/accounts/c-1", claims={"sub": "c-1"})[0] == 403
    assert call("GET", "/admin/accounts/c-1")[0] == 401
    assert call("GET", "/accounts/me")[0] == 401


def test_the_idempotency_key_header_is_case_insensitive() -> None:
    status, body = call("POST", "/admin/accounts/c-1/deposits", claims=ADMIN, body={"amount": "1.00"}, headers={"idempotency-key": "k-1"})
    assert status == 201 and body["depositId"] == deposit_id_for("c-1", "k-1")


def test_the_idempotency_key_is_required() -> None:
    status, body = call("POST", "/admin/accounts/c-1/deposits", claims=ADMIN, body={"amount": "1.00"})
    assert status == 400 and "Idempotency-Key" in body["message"]
    status, _ = deposit("c-1", "1.00", key="with space")
    assert status == 400
    status, _ = deposit("c-1", "1.00", key="k" * 129)
    assert status == 400


@pytest.mark.parametrize(
    "amount",
    ["0", "0.00", "-1.00", "1.001", "1000000.01", "1e3", "NaN", " 1.00", "1,00", "01.00", "", 100, 100.0, None, True],
)
def test_bad_amounts_are_422(tables: Any, amount: Any) -> None:
    status, body = deposit("c-1", amount)
    assert status == 422, body
    assert body["message"] == "the request body is invalid" and body["errors"][0]["field"] == "amount"
    assert account_events(tables, "c-1") == []


def test_the_largest_deposit_is_accepted() -> None:
    assert deposit("c-1", "1000000")[1]["balance"] == "1000000.00"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"amount": "1.00", "currency": "EUR"}, 422),
        ({}, 422),
        ("[1]", 400),
        ("not json", 400),
        ("", 400),
    ],
)
def test_bad_bodies_are_refused(tables: Any, body: Any, status: int) -> None:
    got, answer = call("POST", "/admin/accounts/c-1/deposits", claims=ADMIN, body=body, headers={"Idempotency-Key": "k"})
    assert got == status and answer["message"]
    assert account_events(tables, "c-1") == []


def test_a_bad_customer_id_in_the_path_is_400() -> None:
    assert deposit("bad!id", "1.00")[0] == 400
    assert call("GET", "/admin/accounts/" + "x" * 65, claims=ADMIN)[0] == 400


def test_a_customer_sees_their_own_account_and_an_empty_one_is_zero() -> None:
    assert call("GET", "/accounts/me", claims={"sub": "c-9"}) == (
        200,
        {"customerId": "c-9", "balance": "0.00", "held": "0.00"},
    )
    deposit("c-9", "12.50")
    assert call("GET", "/accounts/me", claims={"sub": "c-9"}) == (
        200,
        {"customerId": "c-9", "balance": "12.50", "held": "0.00"},
    )
    assert call("GET", "/accounts/me", claims={"sub": "c-8"})[1]["balance"] == "0.00"


def test_admins_see_any_account() -> None:
    deposit("c-1", "3.00")
    assert call("GET", "/admin/accounts/c-1", claims=ADMIN) == (
        200,
        {"customerId": "c-1", "balance": "3.00", "held": "0.00"},
    )
    assert call("GET", "/admin/accounts/nobody", claims=ADMIN)[1] == {"customerId": "nobody", "balance": "0.00", "held": "0.00"}


def test_unknown_routes_are_404() -> None:
    assert deposit("bad#id", "1.00")[0] == 404  # not a path segment the route matches
    assert call("GET", "/admin/accounts", claims=ADMIN)[0] == 404
    assert call("DELETE", "/accounts/me", claims=ADMIN)[0] == 404
