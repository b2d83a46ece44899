"""Snapshots end to end: the snapshotter, fed by the real stream mappings of the synthesized template, writes
snapshots of orders and accounts as the saga runs; loading uses them; a stale-schema snapshot is ignored.

The template's intervals are lowered (2 for orders, 3 for accounts) in a copy of it, the way an operator would
change the snapshotter's environment: a real order's history then crosses them.
"""

from __future__ import annotations

import copy
import json
import uuid
from decimal import Decimal
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from offline.runtime import Runtime
from orders.snapshot import ORDER_SNAPSHOTS
from payments.snapshot import ACCOUNT_SNAPSHOTS
from shared.event_store import from_dynamo, to_dynamo

from .conftest import ROOT, BusSpy, scan
from .test_order_saga import account, deposit, order, place, put_product

INTERVALS = {"ORDER_SNAPSHOT_INTERVAL": "2", "ACCOUNT_SNAPSHOT_INTERVAL": "3"}


@pytest.fixture
def rt_small(template: dict[str, Any]) -> Iterator[Runtime]:
    changed = copy.deepcopy(template)
    found = 0
    for resource in changed["Resources"].values():
        variables = resource.get("Properties", {}).get("Environment", {}).get("Variables", {})
        if resource["Type"] == "AWS::Lambda::Function" and set(INTERVALS) & set(variables):
            variables.update({k: v for k, v in INTERVALS.items() if k in variables})
            found += 1
    assert found == 2, "the two snapshotters (orders, payments) have the snapshot intervals"
    runtime = Runtime(changed, code_root=ROOT / "functions")
    runtime.start()
    try:
        yield runtime
    finally:
        runtime.stop()


def snapshot_item(table: str, aggregate_id: str) -> dict[str, Any] | None:
    item = boto3.client("dynamodb").get_item(
        TableName=table, Key={"pk": {"S": aggregate_id}, "sk": {"S": "snapshot"}}, ConsistentRead=True
    ).get("Item")
    return None if item is None else from_dynamo(item)


def overwrite(table: str, item: dict[str, Any], **changes: Any) -> None:
    boto3.client("dynamodb").put_item(TableName=table, Item=to_dynamo({**item, **changes}))


def test_the_saga_leaves_snapshots_that_loading_uses(rt_small: Runtime) -> None:
    rt = rt_small
    spy = BusSpy(rt)
    sku, customer_id = f"SKU-{uuid.uuid4().hex[:6]}", f"cust-{uuid.uuid4().hex[:6]}"
    put_product(rt, sku, "12.50", 10)
    for _ in range(3):
        deposit(rt, customer_id, "20.00")
    rt.settle()
    order_id = place(rt, customer_id, [(sku, 2)])
    rt.settle()

    assert order(rt, customer_id, order_id)["status"] == "CONFIRMED"
    assert account(rt, customer_id)["balance"] == "35.00"
    orders_table, payments_table = rt.physical("OrdersTable").name, rt.physical("PaymentsTable").name

    # The order: placed, priced, confirmed (3 events); snapshotted once it was 2 or more past nothing.
    order_snapshot = snapshot_item(orders_table, order_id)
    assert order_snapshot is not None
    assert (order_snapshot["kind"], order_snapshot["aggregate_type"], order_snapshot["schema_version"]) == (
        "snapshot", "order", ORDER_SNAPSHOTS.schema_version,
    )
    assert 2 <= order_snapshot["version"] <= 3
    # The account: 3 deposits, the authorization and the capture (5 events); snapshotted at 3 or later.
    account_snapshot = snapshot_item(payments_table, f"account#{customer_id}")
    assert account_snapshot is not None and account_snapshot["aggregate_type"] == "account"
    assert 3 <= account_snapshot["version"] <= 5

    # Snapshots are never published: every event on the bus is an event with a version.
    published = spy.drain()
    assert published and all(e["detail"]["sequence"].isdigit() for e in published)
    assert {item["kind"]["S"] for item in scan(orders_table) + scan(payments_table)} == {"event", "snapshot"}

    # Loading uses the snapshot: a (deliberately) edited snapshot of the current schema shows through ...
    state = json.loads(account_snapshot["state"])
    lied = {**state, "balance": str(Decimal(state["balance"]) + 1000)}
    overwrite(payments_table, account_snapshot, state=json.dumps(lied))
    assert account(rt, customer_id)["balance"] == "1035.00"
    # ... and one of another schema version is ignored: the account is its events again.
    overwrite(payments_table, account_snapshot, state=json.dumps(lied), schema_version=99)
    assert account(rt, customer_id)["balance"] == "35.00"

    state = json.loads(order_snapshot["state"])
    lied = {**state, "lines": [{**line, "quantity": 7} for line in state["lines"]]}  # no later event sets lines
    overwrite(orders_table, order_snapshot, state=json.dumps(lied))
    assert order(rt, customer_id, order_id)["items"][0]["quantity"] == 7
    overwrite(orders_table, order_snapshot, state=json.dumps(lied), schema_version=99)
    assert order(rt, customer_id, order_id)["items"][0]["quantity"] == 2


def test_the_snapshotter_rebuilds_a_stale_snapshot_when_the_account_moves_on(rt_small: Runtime) -> None:
    rt = rt_small
    customer_id = f"cust-{uuid.uuid4().hex[:6]}"
    for _ in range(3):
        deposit(rt, customer_id, "10.00")
    rt.settle()
    payments_table = rt.physical("PaymentsTable").name
    stale = snapshot_item(payments_table, f"account#{customer_id}")
    assert stale is not None and stale["version"] == 3
    overwrite(payments_table, stale, schema_version=ACCOUNT_SNAPSHOTS.schema_version - 1 or 0)  # older code's

    for _ in range(3):
        deposit(rt, customer_id, "10.00")
    rt.settle()
    rebuilt = snapshot_item(payments_table, f"account#{customer_id}")
    assert rebuilt is not None
    assert (rebuilt["schema_version"], rebuilt["version"]) == (ACCOUNT_SNAPSHOTS.schema_version, 6)
    assert json.loads(rebuilt["state"])["balance"] == "60.00"
    assert account(rt, customer_id)["balance"] == "60.00"
