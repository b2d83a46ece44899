"""Authorization (issue 5), over every route the synthesized template deploys (read from it: a new route is covered
without being listed here).

- No token or a bad one (missing, empty, another scheme, malformed, a dev token with characters no id has, an
  unsigned JWT): 401 from the authorizer, no function runs, nothing is written. Only GET /health is public.
- A customer on every admin route: 403, whether or not what they name exists, nothing written; the same request
  from an admin succeeds, so the refusal is the identity's alone.
- Another customer's order is indistinguishable from a missing one on every route that names an order (with every
  history query): the same status, the same body but for the id they sent, the same headers but for the request id.
- Lists and accounts are the caller's own: another customer's list filters, pages and cursors show none of the
  owner's orders, and no answer to the intruder carries anything of the owner's that the intruder did not send.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from offline.runtime import Runtime
from tests.reliability.api_surface import ROOT, ApiRoute, api_routes, load_template, sample_body
from tests.reliability.hostile import Request, Target

ROUTES = api_routes(load_template())
PROTECTED = [route for route in ROUTES if not route.is_public]
ADMIN_ROUTES = [route for route in ROUTES if route.is_admin]
CUSTOMER_ROUTES = [route for route in PROTECTED if not route.is_admin]
ORDER_ROUTES = [route for route in ROUTES if "orderId" in route.parameters]
OWNER, INTRUDER = "alice", "mallory"
JSON = "application/json"

BAD_TOKENS = [
    None, "", " ", "Bearer", "Bearer ", "Bearer dev:", "bearer dev:alice", "BEARER dev:alice", "Basic dev:alice",
    "Basic YWxpY2U6cGFzc3dvcmQ=", "Token dev:alice", "dev:alice", "alice", "Bearer alice", "Bearer dev:al ice",
    "Bearer dev:alice;admin", "Bearer dev:alice:root", "Bearer dev:alice:ADMIN", "Bearer dev:alice:admin:x",
    "Bearer dev:alice:", "Bearer dev:" + "x" * 65, "Bearer dev:alice\x00", "Bearer dev:alice\r\nX-Admin: true",
    "Bearer dev:ａｌｉｃｅ", "Bearer dev:alice ", " Bearer dev:alice", "Bearer  dev:alice", "Bearer dev:alice/..",
    "Bearer dev:../admin", "Bearer dev:*", "Bearer dev:alice,ops:admin",
    # an unsigned JWT ("alg": "none") naming alice as an admin
    "Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsImNvZ25pdG86Z3JvdXBzIjoiYWRtaW5zIn0.",
]


def route_id(route: ApiRoute) -> str:
    return route.id


def bearer(name: str) -> str:
    return f"Bearer dev:{name}"


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return load_template()  # the one the routes were read from (no second synth)


class Invocations:
    """An observer counting the functions that ran."""

    def __init__(self) -> None:
        self.count = 0

    def invocation_started(self, invocation: Any) -> None:
        self.count += 1


class World:
    """alice with money and two settled orders; mallory and other customers with nothing; one product."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        admin = [("Authorization", bearer("ops:admin")), ("Content-Type", JSON)]
        assert rt.api.request("PUT", "/admin/products/SKU-1", headers=admin,
                              body=json.dumps({"name": "Beans", "price": "2.50", "stock": 1000})).status == 200
        assert rt.api.request("POST", f"/admin/accounts/{OWNER}/deposits", headers=admin + [("Idempotency-Key", "d1")],
                              body=json.dumps({"amount": "777.00"})).status == 201
        self.orders = []
        for n in range(2):
            placed = rt.api.request("POST", "/orders", headers=[("Authorization", bearer(OWNER)), ("Content-Type", JSON),
                                                                ("Idempotency-Key", f"k{n}")],
                                    body=json.dumps({"items": [{"sku": "SKU-1", "quantity": n + 1}]}))
            assert placed.status == 202, placed.body
            self.orders.append(placed.json()["orderId"])
        rt.settle()
        self.target = Target(rt, figure=None)
        self.invocations = rt.observe(Invocations())
        first = rt.api.request("GET", "/orders", headers=[("Authorization", bearer(OWNER))], query={"limit": "1"})
        self.cursor = first.json()["nextCursor"]
        assert self.cursor and len(first.json()["orders"]) == 1
        # What belongs to alice and must never reach anyone else (unless they sent it themselves).
        self.secrets = [*self.orders, f"{OWNER}@example.com", "777.00", self.cursor]

    def values(self, **overrides: str) -> dict[str, str]:
        return {"orderId": self.orders[0], "sku": "SKU-1", "customerId": OWNER, **overrides}

    def request(self, route: ApiRoute, authorization: str | None, *, query: dict[str, Any] | None = None,
                **values: str) -> Request:
        """A request to the route that is right in every way but, perhaps, the caller."""
        headers = [("Content-Type", JSON), ("Idempotency-Key", uuid.uuid4().hex)]
        if authorization is not None:
            headers.append(("Authorization", authorization))
        body = json.dumps(sample_body(route.body_model)).encode() if route.body_model is not None else None
        path = route.url({name: self.values(**values).get(name, "x-1") for name in route.parameters})
        return Request(route.method, path, headers, body, {k: [str(v)] for k, v in (query or {}).items()} or None)

    def send(self, request: Request) -> Any:
        """Send it; a refusal is judged as hostile input is (the API's error shape, nothing written)."""
        return self.target.send(request)


@pytest.fixture(scope="module")
def world(template: dict[str, Any]) -> Iterator[World]:
    runtime = Runtime(template, code_root=ROOT / "functions")
    runtime.start()
    try:
        yield World(runtime)
    finally:
        runtime.stop()


# ====================================================================================== the surface
def test_every_route_needs_a_token_except_the_health_check() -> None:
    assert {route.id for route in ROUTES if route.is_public} == {"GET /health"}
    assert {route.authorization for route in PROTECTED} == {"COGNITO_USER_POOLS"}
    assert ADMIN_ROUTES and CUSTOMER_ROUTES and ORDER_ROUTES


# ====================================================================================== no token, bad token
@pytest.mark.parametrize("route", PROTECTED, ids=route_id)
def test_no_token_or_a_bad_one_is_401_and_runs_nothing(world: World, route: ApiRoute) -> None:
    for token in BAD_TOKENS:
        before = world.invocations.count
        response = world.send(world.request(route, token))
        assert (response.status, response.json()) == (401, {"message": "Unauthorized"}), repr(token)
        assert world.invocations.count == before, f"{token!r}: a function ran for a request the authorizer refused"
    # a good token in the wrong place is no token
    for header in ("X-Authorization", "Authorization-Token", "Cookie"):
        request = world.request(route, None)
        request.headers.append((header, bearer(OWNER)))
        assert world.send(request).status == 401, header
    request = world.request(route, None, query={"access_token": bearer(OWNER), "token": f"dev:{OWNER}"})
    assert world.send(request).status == 401


def test_the_public_route_ignores_tokens(world: World) -> None:
    for route in (route for route in ROUTES if route.is_public):
        for token in [None, bearer(OWNER), *BAD_TOKENS[:8]]:
            assert world.send(world.request(route, token)).status == 200, (route.id, token)


# ====================================================================================== customers on admin routes
@pytest.mark.parametrize("route", ADMIN_ROUTES, ids=route_id)
def test_a_customer_is_refused_on_every_admin_route_whether_or_not_the_target_exists(world: World,
                                                                                      route: ApiRoute) -> None:
    refusals = set()
    for who in (OWNER, INTRUDER, "admin", "admins", "ops"):  # customers, whatever their name says
        for values in (world.values(), world.values(sku="NO-SUCH-SKU", customerId="nobody")):
            response = world.send(world.request(route, bearer(who), **values))
            assert response.status == 403, (who, values, response.body)
            refusals.add(response.body)
    assert len(refusals) == 1, f"the refusals differ (existence leaks): {refusals}"
    # the same request from an admin goes through: the refusal was the identity's alone
    response = world.send(world.request(route, bearer("ops:admin")))
    assert 200 <= response.status < 300, response.body


@pytest.mark.parametrize("route", CUSTOMER_ROUTES, ids=route_id)
def test_customers_may_use_the_customer_routes(world: World, route: ApiRoute) -> None:
    before = world.invocations.count
    response = world.send(world.request(route, bearer(OWNER)))
    assert 200 <= response.status < 300, response.body
    assert world.invocations.count > before  # the counter that says "nothing ran" above does see what runs


# ====================================================================================== another customer's order
def _history_queries() -> list[dict[str, str]]:
    now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    return [{}, {"version": "1"}, {"version": "2"}, {"asOf": now}, {"asOf": "2000-01-01T00:00:00Z"},
            {"after": "0", "limit": "1"}, {"limit": "1000"}]


def _comparable(response: Any, order_id: str) -> tuple[int, str, dict[str, str]]:
    headers = {name.lower(): value for name, value in response.headers.items() if name.lower() != "x-amzn-requestid"}
    return response.status, response.body.replace(order_id, "<id>"), headers


@pytest.mark.parametrize("route", ORDER_ROUTES, ids=route_id)
@pytest.mark.parametrize("intruder", [INTRUDER, "bob", "alice2", "ALICE"])
def test_another_customers_order_is_indistinguishable_from_a_missing_one(world: World, route: ApiRoute,
                                                                         intruder: str) -> None:
    missing = str(uuid.uuid4())
    for query in _history_queries():
        for order_id in world.orders:
            foreign = world.send(world.request(route, bearer(intruder), query=query, orderId=order_id))
            absent = world.send(world.request(route, bearer(intruder), query=query, orderId=missing))
            assert foreign.status == 404, (query, foreign.body)
            assert _comparable(foreign, order_id) == _comparable(absent, missing), query
            # the owner and an admin get the same answer, the order itself (or, as of a time before it existed, the
            # history's own 404 "did not exist yet", which only those who may read the order ever see)
            owned = world.send(world.request(route, bearer(OWNER), query=query, orderId=order_id))
            seen = world.send(world.request(route, bearer("ops:admin"), query=query, orderId=order_id))
            assert (owned.status, owned.json()) == (seen.status, seen.json()), query
            assert owned.status == 200 or "did not exist yet" in owned.json()["message"], (query, owned.body)


# ====================================================================================== lists and accounts
def _forged_cursor(world: World) -> str:
    """A cursor that names a position at alice's newest order (the partition always comes from the token)."""
    raw = json.loads(base64.urlsafe_b64decode(world.cursor + "=" * (-len(world.cursor) % 4)))
    return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")


def test_the_order_list_is_only_ever_the_callers_own(world: World) -> None:
    empty = {"orders": [], "nextCursor": None}
    queries: list[dict[str, str]] = [{}, {"limit": "100"}, {"cursor": world.cursor}, {"cursor": _forged_cursor(world)}]
    queries += [{"status": status} for status in ("PENDING", "CONFIRMED", "CANCELLED", "NEEDS_ATTENTION")]
    listing = next(route for route in ROUTES if route.id == "GET /orders")
    for query in queries:
        for intruder in (INTRUDER, "bob"):
            response = world.send(world.request(listing, bearer(intruder), query=query))
            assert (response.status, response.json()) == (200, empty), (intruder, query, response.body)
    mine = world.send(world.request(listing, bearer(OWNER), query={"limit": "100"})).json()
    assert sorted(order["orderId"] for order in mine["orders"]) == sorted(world.orders)


def test_my_account_is_mine(world: World) -> None:
    route = next(route for route in ROUTES if route.id == "GET /accounts/me")
    assert world.send(world.request(route, bearer(INTRUDER))).json() == {"customerId": INTRUDER, "balance": "0.00",
                                                                          "held": "0.00"}
    assert world.send(world.request(route, bearer(OWNER))).json()["customerId"] == OWNER


@pytest.mark.parametrize("route", PROTECTED, ids=route_id)
def test_nothing_of_the_owners_reaches_an_intruder(world: World, route: ApiRoute) -> None:
    """The intruder aims every route at alice's things (her orders, her account, her cursor): whatever comes back
    carries nothing of hers they did not send themselves."""
    for order_id in world.orders:
        for query in ({}, {"cursor": world.cursor}, {"version": "1"}):
            request = world.request(route, bearer(INTRUDER), query=query, orderId=order_id)
            response = world.send(request)
            sent = request.path + json.dumps(request.query or {}) + (request.body or b"").decode()
            leaked = [secret for secret in world.secrets if secret in response.body and secret not in sent]
            assert not leaked, f"{route.id} {query}: {response.status} {response.body[:300]} carries {leaked}"
