"""Issue 4 end to end: the order list (GET /orders) built by the projector from the bus, and its rebuild.

Orders are placed through the API and run through the real saga; the list is read through the API.
"""

from __future__ import annotations

import sys
from typing import Any

import boto3
import pytest

from offline.runtime import Runtime

from .conftest import customer, scan
from .test_order_saga import deposit, order, place, put_product


def orders_page(rt: Runtime, who: str, **query: Any) -> dict[str, Any]:
    response = rt.api.request("GET", "/orders", headers=customer(who), query=query)
    assert response.status == 200, response.body
    return response.json()


def everything(rt: Runtime, who: str, **query: Any) -> list[dict[str, Any]]:
    found, cursor = [], None
    while True:
        page = orders_page(rt, who, **query, **({"cursor": cursor} if cursor else {}))
        found += page["orders"]
        cursor = page["nextCursor"]
        if cursor is None:
            return found


def shop(rt: Runtime) -> dict[str, list[str]]:
    """alice: two confirmed orders and one declined (her money runs out), then one more pending; bob: one."""
    put_product(rt, "SKU-P", "10.00", 100)
    deposit(rt, "alice", "45.00")
    deposit(rt, "bob", "100.00")
    placed: dict[str, list[str]] = {"alice": [], "bob": []}
    for who, quantity in (("alice", 2), ("bob", 1), ("alice", 2), ("alice", 3)):
        placed[who].append(place(rt, who, [("SKU-P", quantity)]))
        rt.settle()
    return placed


def list_pointer_cache_expired() -> None:
    """What the list's pointer cache does by itself a few seconds later (the runtime shares this process)."""
    sys.modules["projections.api"].pointer_cache.clear()


def test_the_list_shows_own_orders_newest_first_with_status_and_pages(rt: Runtime) -> None:
    placed = shop(rt)
    alice = everything(rt, "alice")
    assert [o["orderId"] for o in alice] == placed["alice"][::-1]
    for summary in alice:  # the read model agrees with the event-sourced order
        full = order(rt, "alice", summary["orderId"])
        assert {k: summary[k] for k in ("orderId", "customerId", "status", "total", "reason", "version")} == {
            k: full[k] for k in ("orderId", "customerId", "status", "total", "reason", "version")
        }
        assert summary["itemCount"] == len(full["items"])
        assert summary["placedAt"] <= summary["updatedAt"]
    assert [o["status"] for o in alice] == ["CANCELLED", "CONFIRMED", "CONFIRMED"]
    assert alice[0]["reason"] == "PAYMENT_DECLINED"

    first = orders_page(rt, "alice", limit=2)
    assert [o["orderId"] for o in first["orders"]] == placed["alice"][:0:-1] and first["nextCursor"]
    second = orders_page(rt, "alice", limit=2, cursor=first["nextCursor"])
    assert [o["orderId"] for o in second["orders"]] == placed["alice"][:1] and second["nextCursor"] is None

    confirmed = everything(rt, "alice", status="CONFIRMED", limit=1)
    assert [o["orderId"] for o in confirmed] == placed["alice"][1::-1]
    assert orders_page(rt, "alice", status="PENDING") == {"orders": [], "nextCursor": None}
    assert [o["orderId"] for o in everything(rt, "bob")] == placed["bob"]
    assert orders_page(rt, "mallory") == {"orders": [], "nextCursor": None}


@pytest.mark.parametrize("query", [
    {"limit": "0"}, {"limit": "101"}, {"limit": "twenty"}, {"status": "SHIPPED"}, {"status": "confirmed"},
    {"cursor": "not-a-cursor"}, {"cursor": "eyJ2IjoxfQ"}, {"limit": ["1", "2"]}, {"order": "asc"},
])
def test_bad_parameters_are_a_400_that_says_why(rt: Runtime, query: dict[str, Any]) -> None:
    response = rt.api.request("GET", "/orders", headers=customer("alice"), query=query)
    assert response.status == 400, response.body
    assert set(response.json()) == {"message"} and response.json()["message"]


def test_a_cursor_is_for_its_own_status_filter_and_the_list_needs_a_token(rt: Runtime) -> None:
    shop(rt)
    cursor = orders_page(rt, "alice", limit=1)["nextCursor"]
    response = rt.api.request("GET", "/orders", headers=customer("alice"), query={"cursor": cursor,
                                                                                   "status": "CONFIRMED"})
    assert response.status == 400 and "status" in response.json()["message"]
    assert rt.api.request("GET", "/orders").status == 401


def test_the_rebuild_equals_the_live_view(rt: Runtime) -> None:
    from offline.rebuild import main as rebuild_command

    placed = shop(rt)
    table = rt.physical("ProjectionsTable").name
    live = {who: everything(rt, who) for who in placed}
    live_items = scan(table)

    assert rebuild_command(["--grace-seconds", "0"]) == 0  # finds the tables by the runtime's names
    list_pointer_cache_expired()

    assert {who: everything(rt, who) for who in placed} == live
    rebuilt_items = scan(table)

    def without_generation(items: list[dict[str, Any]], generation: int) -> list[dict[str, Any]]:
        prefix = f"g{generation}#"
        return sorted(
            ({k: ({"S": v["S"].removeprefix(prefix)} if "S" in v else v) for k, v in item.items() if k != "generation"}
             for item in items if item["pk"]["S"].startswith(prefix)),
            key=lambda item: item["pk"]["S"],
        )

    assert without_generation(rebuilt_items, 2) == without_generation(live_items, 1)
    assert not [item for item in rebuilt_items if item["pk"]["S"].startswith("g1#")]  # the old one is gone
    pointer = boto3.client("dynamodb").get_item(TableName=table, Key={"pk": {"S": "pointer"}})["Item"]
    assert pointer["active"] == {"N": "2"} and "building" not in pointer

    # The projector writes the new generation from now on.
    new = place(rt, "bob", [("SKU-P", 1)])
    rt.settle()
    assert [o["orderId"] for o in everything(rt, "bob")] == [new, *placed["bob"]]
    assert everything(rt, "bob")[0]["status"] == "CONFIRMED"
