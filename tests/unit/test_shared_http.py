"""The request body reader every API function uses (functions/shared/http.py) and the Idempotency-Key header
reader (functions/shared/rest.py): strict JSON, one error per flaw, the status that says which."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from pydantic import BaseModel, ConfigDict

from shared.http import MAX_BODY_BYTES, HttpError, parse_json_body
from shared.rest import idempotency_key


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str
    count: int


JSON = "application/json"


def refusal(body: str | None, content_type: str | None = JSON) -> tuple[int, str]:
    with pytest.raises(HttpError) as raised:
        parse_json_body(body, content_type, Body)
    return raised.value.status, raised.value.message


def test_a_good_body_is_the_model() -> None:
    assert parse_json_body('{"name": "a", "count": 1}', "application/json; charset=utf-8", Body) == Body(name="a", count=1)
    assert parse_json_body('{"name": "a", "count": 1}', "Application/JSON", Body).count == 1


@pytest.mark.parametrize(
    ("body", "content_type", "status", "says"),
    [
        ('{"name": "a", "count": 1}', None, HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "no Content-Type"),
        ('{"name": "a", "count": 1}', "text/plain", HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "not 'text/plain'"),
        (None, None, HTTPStatus.BAD_REQUEST, "empty"),
        ("  ", JSON, HTTPStatus.BAD_REQUEST, "empty"),
        ('{"name": "' + "x" * MAX_BODY_BYTES + '"}', JSON, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "over 65536 bytes"),
        ('{"name": "a", "count": 1', JSON, HTTPStatus.BAD_REQUEST, "not valid JSON"),
        ("[" * 10_000 + "]" * 10_000, JSON, HTTPStatus.BAD_REQUEST, "not valid JSON"),
        ('{"name": "a", "name": "b", "count": 1}', JSON, HTTPStatus.BAD_REQUEST, "key 'name' more than once"),
        ('{"name": "a", "count": 1, "x": {"y": 1, "y": 1}}', JSON, HTTPStatus.BAD_REQUEST, "key 'y' more than once"),
        ('{"name": "a", "count": NaN}', JSON, HTTPStatus.BAD_REQUEST, "NaN is not a JSON number"),
        ('{"name": "a", "count": -Infinity}', JSON, HTTPStatus.BAD_REQUEST, "-Infinity is not a JSON number"),
        ('["name", "count"]', JSON, HTTPStatus.BAD_REQUEST, "must be a JSON object"),
        ('{"name": "a", "count": "1"}', JSON, HTTPStatus.UNPROCESSABLE_ENTITY, "invalid"),
    ],
)
def test_each_flaw_gets_its_status_and_says_what_it_is(body: str | None, content_type: str | None, status: int,
                                                       says: str) -> None:
    got, message = refusal(body, content_type)
    assert got == status and says in message


def test_a_body_of_lone_surrogates_is_measured_not_crashed_on() -> None:
    assert refusal('"\ud800' * MAX_BODY_BYTES, JSON)[0] == HTTPStatus.REQUEST_ENTITY_TOO_LARGE


def key_of(multi_value_headers: dict[str, list[str]]) -> str:
    app = APIGatewayRestResolver()
    headers = {name: values[-1] for name, values in multi_value_headers.items()}
    event: dict[str, Any] = {"httpMethod": "POST", "path": "/x", "resource": "/x", "headers": headers,
                             "multiValueHeaders": multi_value_headers, "requestContext": {"stage": "prod"}, "body": None}
    answer: dict[str, str] = {}

    @app.post("/x")
    def post() -> dict[str, str]:
        answer["key"] = idempotency_key(app)
        return answer

    @app.exception_handler(HttpError)
    def refused(error: HttpError) -> Response:
        answer["refused"] = error.message
        return Response(status_code=error.status, body=error.body())

    app.resolve(event, {})
    return answer["key"] if "key" in answer else "refused: " + answer["refused"]


def test_the_idempotency_key_is_read_once_whatever_its_case() -> None:
    assert key_of({"Idempotency-Key": ["k-1"]}) == "k-1"
    assert key_of({"idempotency-key": ["k-1"]}) == "k-1"
    assert key_of({"Idempotency-Key": ["k-1", "k-1"]}) == "k-1"  # the same value twice means one key
    assert key_of({}) == "refused: the Idempotency-Key header is required (1-128 visible ASCII characters, no commas)"
    assert key_of({"Idempotency-Key": ["a", "b"]}) == "refused: give one Idempotency-Key header, not 2 different ones"
    assert key_of({"Idempotency-Key": ["a"], "idempotency-key": ["b"]}).startswith("refused: give one")
    assert json.dumps(key_of({"Idempotency-Key": [""]})) == '""'  # present but empty: the command model refuses it
