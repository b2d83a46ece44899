"""Hostile input (issue 5): every route of the template, attacked through the offline API Gateway.

The routes are read from the synthesized template and the request models from the handlers' source
(``api_surface.py``), so a new route, parameter or model is attacked without being listed here. What is sent and
how the answer is judged is in ``hostile.py``: never a 5xx; a 4xx is the API's one JSON error shape and changed
nothing (every table scans the same, no function made a write call); a GET changes nothing at all.

- ``test_hostile_requests_*``: hypothesis, per route: bodies from the route's request model (valid, then broken in
  one or two places, serialised straight or malformed), raw junk, wrong content types, bad and repeated
  Idempotency-Keys, injection strings and noise in the path and the query, and broken tokens.
- Fixed cases every route gets, with the exact answer each must give: bodies over 64 KB and of 6-10 MB and over
  10 MB, 10,000 levels of nesting, invalid UTF-8, repeated keys, NaN, no or the wrong Content-Type; every bad
  Idempotency-Key; bad ``?asOf``/``?version``/``?after``/``?limit``/``?cursor``/``?status`` values; every injection
  string in every path parameter and query value.
- Valid input can be hostile too: orders whose skus, keys and customers are legal but odd run through the whole
  saga and finish.

``make test`` runs 75 examples per route; ``make soak`` (``slow``) 1,500 (ORDERFLOW_SOAK=1: 5,000).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offline.runtime import Runtime
from tests.figures import record
from tests.reliability.api_surface import ApiRoute, api_routes, load_template, sample_body
from tests.reliability.hostile import (
    BAD_IDEMPOTENCY_KEYS,
    HOSTILE_VALID_KEYS,
    INJECTIONS,
    QUERY_NAMES,
    Known,
    Request,
    Target,
    encode_path_value,
    error_shape_problems,
    requests,
)

pytestmark = pytest.mark.reliability

ROUTES = api_routes(load_template())
BODY_ROUTES = [route for route in ROUTES if route.body_model is not None]
GET_ROUTES = [route for route in ROUTES if route.method == "GET"]
EXAMPLES = 75
SOAK_EXAMPLES = 5000 if os.environ.get("ORDERFLOW_SOAK") == "1" else 1500
ADMIN = "Bearer dev:ops:admin"
CUSTOMER = "alice"
JSON = "application/json"
HYPOTHESIS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                         HealthCheck.filter_too_much], print_blob=True)


def route_id(route: ApiRoute) -> str:
    return route.id


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return load_template()  # the one the routes were read from (no second synth)


@pytest.fixture(scope="module")
def seeded(module_rt: Runtime) -> tuple[Target, Known]:
    """A product, a customer with money and two settled orders of theirs: real ids for the attacks to aim at."""
    rt = module_rt
    admin = [("Authorization", ADMIN), ("Content-Type", JSON)]
    ok = rt.api.request("PUT", "/admin/products/SKU-1", headers=admin,
                        body=json.dumps({"name": "Seed", "price": "2.50", "stock": 100_000}))
    assert ok.status == 200, ok.body
    ok = rt.api.request("POST", f"/admin/accounts/{CUSTOMER}/deposits", headers=admin + [("Idempotency-Key", "seed")],
                        body=json.dumps({"amount": "100000.00"}))
    assert ok.status == 201, ok.body
    orders = []
    for n in range(2):
        placed = rt.api.request("POST", "/orders", body=json.dumps({"items": [{"sku": "SKU-1", "quantity": 1}]}),
                                headers=[("Authorization", f"Bearer dev:{CUSTOMER}"), ("Content-Type", JSON),
                                         ("Idempotency-Key", f"seed-{n}")])
        assert placed.status == 202, placed.body
        orders.append(placed.json()["orderId"])
    rt.settle()
    page = rt.api.request("GET", "/orders", headers=[("Authorization", f"Bearer dev:{CUSTOMER}")], query={"limit": 1})
    cursor = page.json()["nextCursor"]
    assert cursor, page.body
    known = Known(values={"orderId": orders, "sku": ["SKU-1"], "customerId": [CUSTOMER]}, cursors=[cursor],
                  customer=CUSTOMER)
    return Target(rt), known


@pytest.fixture(scope="module")
def target(seeded: tuple[Target, Known]) -> Target:
    return seeded[0]


@pytest.fixture(scope="module")
def known(seeded: tuple[Target, Known]) -> Known:
    return seeded[1]


def valid_path(route: ApiRoute, known: Known) -> str:
    """The route's path with each parameter a real id of the seed (or a plausible one for a new parameter)."""
    return route.url({name: encode_path_value(known.values.get(name, ["x-1"])[0]) for name in route.parameters})


SAMPLE = b"<the model's sample body>"


def admin_request(route: ApiRoute, known: Known, *, body: bytes | None = SAMPLE, content_type: str | None = JSON,
                  key: str | None = None, query: dict[str, list[str]] | None = None, path: str | None = None) -> Request:
    """An admin's request to the route, right in every way unless told otherwise (admins may call every route, so
    the request reaches the code behind the authorization check)."""
    headers = [("Authorization", ADMIN)]
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    if key is not None:
        headers.append(("Idempotency-Key", key))
    if body is SAMPLE:
        body = json.dumps(sample_body(route.body_model)).encode() if route.body_model is not None else None
    return Request(route.method, path or valid_path(route, known), headers, body, query)


# ====================================================================================== the surface
def test_the_attack_surface_comes_from_the_template() -> None:
    assert ROUTES, "no API routes in the template"
    for route in ROUTES:
        assert route.handler, f"{route.id} is not a Lambda proxy route: nothing here knows how to attack it"
        if route.method in ("POST", "PUT", "PATCH"):
            assert route.body_model is not None, f"{route.id}: no parse_json_body(..., Model) found in its handler"
            sample_body(route.body_model)  # KeyError: add the model's sample to api_surface.SAMPLE_BODIES
    assert {route.id for route in ROUTES} >= {"POST /orders", "GET /orders/{orderId}", "PUT /admin/products/{sku}"}


# ====================================================================================== odd but valid
ODD_SKUS = ["a", "Z9", "_-_", "a.b-c_d", "x" * 64, "0", "-", "SKU-1"]
ODD_CUSTOMERS = ["_", "-", "a.b", "x" * 64, "0", "null", "admin"]


def test_odd_but_valid_orders_run_through_the_saga_and_finish(target: Target) -> None:
    """Legal values at the edges (one-character and 64-character ids, punctuation-only skus, keys that look like
    JMESPath or SQL, 50 lines, quantity 1000) placed as orders: each is accepted, and once the saga ran each order
    is CONFIRMED or CANCELLED and nothing is left on any queue. (First in the module, so its settle does not also
    run the sagas of every order the fuzzing accepts; after them it would only take longer.)"""
    rt = target.rt
    admin = [("Authorization", ADMIN), ("Content-Type", JSON)]
    for sku in ODD_SKUS[:4]:
        ok = rt.api.request("PUT", f"/admin/products/{encode_path_value(sku)}", headers=admin,
                            body=json.dumps({"name": f"odd {sku}", "price": "0.01", "stock": 5000}))
        assert ok.status == 200, (sku, ok.body)
    placed = []
    bodies = [{"items": [{"sku": sku, "quantity": 1}]} for sku in ODD_SKUS] + [
        {"items": [{"sku": "a", "quantity": 1000}]},
        {"items": [{"sku": f"L{n}", "quantity": 1} for n in range(50)]},
    ]
    for n, body in enumerate(bodies):
        who = ODD_CUSTOMERS[n % len(ODD_CUSTOMERS)]
        key = HOSTILE_VALID_KEYS[n % len(HOSTILE_VALID_KEYS)]
        if n % 2 == 0:
            ok = rt.api.request("POST", f"/admin/accounts/{encode_path_value(who)}/deposits",
                                headers=admin + [("Idempotency-Key", f"odd-{n}")], body=json.dumps({"amount": "50.00"}))
            assert ok.status == 201, (who, ok.body)
        response = target.send(Request("POST", "/orders", [("Authorization", f"Bearer dev:{who}"),
                                                           ("Content-Type", JSON), ("Idempotency-Key", key)],
                                       json.dumps(body).encode()))
        assert response.status == 202, (who, body, response.body)
        placed.append((who, response.json()["orderId"]))
    rt.settle()
    for who, order_id in placed:
        view = rt.api.request("GET", f"/orders/{order_id}", headers=[("Authorization", f"Bearer dev:{who}")])
        assert view.status == 200 and view.json()["status"] in ("CONFIRMED", "CANCELLED"), view.body
    sqs = boto3.client("sqs")
    for item in rt.resources.values():
        if item.type == "AWS::SQS::Queue":
            attributes = sqs.get_queue_attributes(QueueUrl=item.url, AttributeNames=["ApproximateNumberOfMessages"])
            assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "0", f"messages left on {item.logical_id}"
    target.state = target.scan()  # the sagas wrote, as they should: the next request is judged from here


# ====================================================================================== property-based
def _fuzz(target: Target, known: Known, route: ApiRoute, data: st.DataObject) -> None:
    target.send(data.draw(requests(route, known), label="request"))


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
@settings(max_examples=EXAMPLES, **HYPOTHESIS)
@given(data=st.data())
def test_hostile_requests_get_a_clear_4xx_and_change_nothing(target: Target, known: Known, route: ApiRoute,
                                                            data: st.DataObject) -> None:
    _fuzz(target, known, route, data)


@pytest.mark.slow
@pytest.mark.parametrize("route", ROUTES, ids=route_id)
@settings(max_examples=SOAK_EXAMPLES, **HYPOTHESIS)
@given(data=st.data())
def test_hostile_requests_soak(target: Target, known: Known, route: ApiRoute, data: st.DataObject) -> None:
    _fuzz(target, known, route, data)


# ====================================================================================== sizes
MB = 1024 * 1024


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
def test_huge_bodies_are_413_before_anything_runs(target: Target, known: Known, route: ApiRoute) -> None:
    # 6-10 MB: over Lambda's 6 MB invoke payload, so API Gateway answers "Request Too Long" itself (the offline
    # gateway does the same); no function runs.
    for size in (6 * MB + MB // 2, 10 * MB - 1024):
        body = b'{"pad": "' + b"x" * (size - 11) + b'"}'
        response = target.send(admin_request(route, known, body=body))
        assert (response.status, response.json()) == (413, {"message": "Request Too Long"})
    # Over 10 MB, API Gateway's front door answers in plain text (not the API's JSON shape: AWS's own answer).
    request = admin_request(route, known, body=b"x" * (10 * MB + 1))
    response = target.rt.api.request(request.method, request.path, headers=request.headers, body=request.body)
    record("fuzz_cases")
    assert (response.status, response.body) == (413, "HTTP content length exceeded 10485760 bytes.")
    if route.body_model is not None:  # over the API's own 64 KB: the function says so
        body = json.dumps({**sample_body(route.body_model), "pad": "x" * 70_000}).encode()
        response = target.send(admin_request(route, known, body=body, key=uuid.uuid4().hex))
        assert response.status == 413 and "65536 bytes" in response.json()["message"]


# ====================================================================================== bodies
def _malformed(sample: dict[str, Any]) -> dict[str, tuple[bytes | None, str | None, tuple[int, ...]]]:
    """(body, Content-Type, the statuses it may get), each wrong in exactly one way."""
    text = json.dumps(sample)
    first = next(iter(sample))
    return {
        "no content type": (text.encode(), None, (415,)),
        "text/plain": (text.encode(), "text/plain", (415,)),
        "form encoded": (b"items=1", "application/x-www-form-urlencoded", (415,)),
        "json look-alike type": (text.encode(), "application/jsonx", (415,)),
        "no body": (None, JSON, (400,)),
        "blank body": (b" \n\t", JSON, (400,)),
        "not json": (b"{not json", JSON, (400,)),
        "truncated": (text[:-1].encode(), JSON, (400,)),
        "trailing garbage": (text.encode() + b" }", JSON, (400,)),
        "single quotes": (text.replace('"', "'").encode(), JSON, (400,)),
        "byte order mark": (b"\xef\xbb\xbf" + text.encode(), JSON, (400,)),
        "an array": (json.dumps([sample]).encode(), JSON, (400,)),
        "a string": (json.dumps(text).encode(), JSON, (400,)),
        "null": (b"null", JSON, (400,)),
        "10,000 levels of arrays": (b"[" * 10_000 + b"]" * 10_000, JSON, (400,)),
        "10,000 levels of objects": (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, JSON, (400,)),
        # JSON's own nesting is bounded by the interpreter's recursion limit: 900 levels parse or not depending on
        # how deep the stack already is (a 400 then), and the model refuses them when they do
        "900 levels in a field": (json.dumps({**sample, first: "@"}).replace('"@"', "[" * 900 + "]" * 900).encode(),
                                  JSON, (400, 422)),
        "repeated key": (("{" + json.dumps(first) + ": null, " + text[1:]).encode(), JSON, (400,)),
        "repeated key, same value": (("{" + json.dumps(first) + ": " + json.dumps(sample[first]) + ", " + text[1:])
                                     .encode(), JSON, (400,)),
        "NaN": (json.dumps({**sample, first: float("nan")}).encode(), JSON, (400,)),
        "Infinity": (json.dumps({**sample, first: float("inf")}).encode(), JSON, (400,)),
        "a 5000-digit number": (json.dumps({**sample, first: "@"}).replace('"@"', "9" * 5000).encode(), JSON,
                                (400,)),
        "invalid UTF-8": (text[:-1].encode() + b', "\xff\xfe": 1}', JSON, (422,)),
        "a lone surrogate": (json.dumps({**sample, "\ud800": "\udfff"}).encode(), JSON, (422,)),
        "NUL, RTL and emoji in a key": (json.dumps({**sample, "\x00\u202e😀": 1}).encode(), JSON, (422,)),
        "an extra field": (json.dumps({**sample, "unitPrice": "0.01"}).encode(), JSON, (422,)),
        "a field missing": (json.dumps({k: v for k, v in sample.items() if k != first}).encode(), JSON, (422,)),
    }


@pytest.mark.parametrize("route", BODY_ROUTES, ids=route_id)
def test_malformed_bodies_get_the_status_that_says_why(target: Target, known: Known, route: ApiRoute) -> None:
    assert route.body_model is not None
    sample = sample_body(route.body_model)
    key = uuid.uuid4().hex
    for name, (body, content_type, statuses) in _malformed(sample).items():
        response = target.send(admin_request(route, known, body=body, content_type=content_type, key=key))
        assert response.status in statuses, f"{name}: {response.status} {response.body[:300]}"
    # and the same request without the flaw is accepted: each case above was refused for its flaw alone
    accepted = target.send(admin_request(route, known, key=key))
    assert 200 <= accepted.status < 300, accepted.body


MONEY = re.compile(r"^[0-9]+\.[0-9]{2}$")
MALFORMED_MONEY = ["12.505", "-1.00", "+1.00", "1e3", "NaN", "Infinity", "", " 1.00", "1.00 ", "1,00", "１２.５０",
                   "0x10", "1_000.00", ".5", "99999999999999999.99"]


def wrong_values(good: Any) -> list[Any]:
    """Values of another JSON type than ``good``; for money (a decimal string) also the number itself and
    malformed decimal strings; for a whole number also the number as a string or a float, and far out of range."""
    if isinstance(good, str):
        wrong: list[Any] = [12, True, None, [], {}]
        if MONEY.match(good):
            wrong += [float(good), int(float(good)), *MALFORMED_MONEY]
        return wrong
    if isinstance(good, bool):
        return ["true", 1, None]
    if isinstance(good, int):
        return [str(good), float(good), good + 0.5, 10**20, -(10**20), True, None, "12.50", [], {}]
    if isinstance(good, list):
        return [12.5, "x", None, {}, True, []]
    return ["x", 1, None]


@pytest.mark.parametrize("route", BODY_ROUTES, ids=route_id)
def test_every_field_refuses_values_of_the_wrong_kind(target: Target, known: Known, route: ApiRoute) -> None:
    """Each top-level field in turn: money as a float or a malformed string, numbers as strings, wrong types."""
    assert route.body_model is not None
    sample = sample_body(route.body_model)
    for field_name, good in sample.items():
        for value in wrong_values(good):
            body = json.dumps({**sample, field_name: value}).encode()
            response = target.send(admin_request(route, known, body=body, key=uuid.uuid4().hex))
            assert response.status == 422, f"{field_name}={value!r}: {response.status} {response.body[:300]}"


# ====================================================================================== Idempotency-Key
@pytest.mark.parametrize("route", BODY_ROUTES, ids=route_id)
def test_bad_idempotency_keys_are_400(target: Target, known: Known, route: ApiRoute) -> None:
    """Routes that take an Idempotency-Key (they say so when it is missing) refuse every bad one, and a key given
    twice with two values; a key that only looks hostile is just a key."""
    missing = target.send(admin_request(route, known))
    if missing.status != 400 or "Idempotency-Key" not in missing.json()["message"]:
        pytest.skip(f"{route.id} takes no Idempotency-Key ({missing.status})")
    for key in BAD_IDEMPOTENCY_KEYS:
        response = target.send(admin_request(route, known, key=key))
        assert response.status == 400 and "Idempotency-Key" in response.json()["message"], (key, response.body)
    twice = admin_request(route, known, key="one")
    twice.headers.append(("idempotency-key", "two"))
    response = target.send(twice)
    assert response.status == 400 and "Idempotency-Key" in response.json()["message"], response.body
    for key in HOSTILE_VALID_KEYS:
        first = target.send(admin_request(route, known, key=key))
        assert 200 <= first.status < 300, (key, first.body)
        again = target.send(admin_request(route, known, key=key))
        assert (again.status, again.json()) == (first.status, first.json()), key


# ====================================================================================== query strings
BAD_QUERY = {
    "asOf": ["", "yesterday", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-01-01T25:00:00Z",
             "2026-01-01T00:00:00", "2026-01-01 00:00:00 01:00", "0000-01-01T00:00:00Z", "2026-01-01T00:00:60Z",
             "2026-01-01T00:00:00+24:00", "1e9", "1767225600", "' OR 1=1", "2026-01-01T00:00:00Z' OR '1'='1"],
    "version": ["", "0", "-1", "1.0", "1e3", "99999999999", "0x10", " 1", "１", "NaN", "1; DROP TABLE x"],
    "after": ["-1", "x", "1.5", "99999999999", ""],
    "limit": ["0", "-1", "1001", "1e2", "", "ten", "5 ", "10**9"],
    "cursor": ["bogus", "", "%00", "eyJ2IjoxfQ", "A" * 600, "W10", "eyJ2IjoxLCJzIjpudWxsLCJrIjoiLi4vLi4ifQ",
               "eyJ2IjoxLCJzIjpudWxsLCJrIjpbXX0", "!!!!"],
    "status": ["SHIPPED", "", "confirmed", "' OR 1=1", "PENDING,CONFIRMED"],
    "unknown": ["1"],
}


QUERY_REPEATS = {"limit": ["1", "2"], "version": ["1", "1"], "asOf": ["2026-01-01T00:00:00Z"] * 2}


@pytest.mark.parametrize("route", GET_ROUTES, ids=route_id)
def test_bad_query_values_are_400(target: Target, known: Known, route: ApiRoute) -> None:
    """Routes that read a query string (they refuse a parameter they do not know) refuse every bad value, and a
    parameter given twice; the others ignore the query string and still answer, without a 5xx."""
    probe = target.send(admin_request(route, known, query={"unknown": ["1"]}))
    validates = probe.status == 400
    for name, values in BAD_QUERY.items():
        for value in values:
            response = target.send(admin_request(route, known, query={name: [value]}))
            if validates:
                assert response.status == 400, f"?{name}={value!r}: {response.status} {response.body[:300]}"
    for name in QUERY_REPEATS:
        response = target.send(admin_request(route, known, query={name: QUERY_REPEATS[name]}))
        if validates:
            assert response.status == 400, f"?{name} twice: {response.status} {response.body[:300]}"



# ====================================================================================== injections
@pytest.mark.parametrize("route", ROUTES, ids=route_id)
def test_injection_strings_in_the_path_and_the_query(target: Target, known: Known, route: ApiRoute) -> None:
    """Every injection string in every path parameter (the others real ids) and, on a GET, as a query value."""
    for n, injection in enumerate(INJECTIONS):
        for name in route.parameters:
            values = {other: encode_path_value(known.values.get(other, ["x-1"])[0]) for other in route.parameters}
            values[name] = encode_path_value(injection)
            target.send(admin_request(route, known, path=route.url(values), key=uuid.uuid4().hex))
        if route.method == "GET":
            name = QUERY_NAMES[n % len(QUERY_NAMES)]
            target.send(admin_request(route, known, query={name: [injection]}))


def test_error_shape_judge_catches_what_it_must() -> None:
    """The judge itself: a non-JSON, a shapeless or an internal-error body are caught (a judge that cannot fail
    proves nothing)."""

    class Fake:
        def __init__(self, status: int, body: str, content_type: str = JSON) -> None:
            self.status, self.body, self.headers = status, body, {"Content-Type": content_type}

    assert error_shape_problems(Fake(400, '{"message": "bad"}')) == []
    assert error_shape_problems(Fake(422, '{"message": "bad", "errors": [{"field": "a", "problem": "b"}]}')) == []
    assert error_shape_problems(Fake(400, "bad", "text/plain"))
    assert error_shape_problems(Fake(400, '{"error": "bad"}'))
    assert error_shape_problems(Fake(400, '{"message": ""}'))
    assert error_shape_problems(Fake(400, '{"message": "bad", "stack": "..."}'))
    assert error_shape_problems(Fake(400, '{"message": "internal error"}'))
