"""How long loading an aggregate takes at 100, 1,000 and 10,000 events, with and without snapshots.

    make bench          (or: .venv/bin/python benchmarks/bench_event_store.py [--runs 5])

A customer account (the aggregate whose history grows without end: every deposit and order payment is an
event) in DynamoDB emulated by moto in-process, loaded through PaymentsService.account, the path every command
and query takes. Three ways:
- full replay: no snapshot, every event read and folded (what loading cost before snapshots);
- snapshot, no tail: the snapshotter has just snapshotted the newest version;
- snapshot + 99: the worst case at the default interval of 100 (the next snapshot is one event away).

It is a benchmark, not a test: it prints a table and asserts nothing about time. moto is much slower per item
than DynamoDB (it answers a 1 MB Query page in seconds, DynamoDB in tens of milliseconds), so read the figures
as relative: what grows with the history and what stays flat. The history is seeded with the items append
writes, 25 to a BatchWriteItem call (append puts each event with a conditional PutItem of its own: ten thousand
calls, about three times as long to seed, and seeding is not what is measured).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "functions"), str(ROOT)]
os.environ.update(
    {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
    }
)
for _name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
    os.environ.pop(_name, None)

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402

from payments import domain  # noqa: E402
from payments.events import SOURCE, FundsDeposited  # noqa: E402
from payments.service import PaymentsService  # noqa: E402
from payments.snapshot import ACCOUNT_SNAPSHOTS  # noqa: E402
from shared.event_store import SNAPSHOT_SK, DynamoDBEventStore, to_dynamo  # noqa: E402
from shared.events import EventEnvelope, wrap  # noqa: E402
from shared.records import EVENT_KIND, envelope_to_attributes  # noqa: E402

TABLE = "bench-events"
SIZES = (100, 1_000, 10_000)
TAIL = 99  # the worst case at the default interval of 100 (stacks/snapshots.py)


class CountingClient:
    def __init__(self, client: Any) -> None:
        self._client = client
        self.items = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def get_item(self, **kwargs: Any) -> dict[str, Any]:
        response = self._client.get_item(**kwargs)
        self.items += 1 if "Item" in response else 0
        return response

    def query(self, **kwargs: Any) -> dict[str, Any]:
        response = self._client.query(**kwargs)
        self.items += len(response.get("Items", []))
        return response


def history(customer_id: str, count: int) -> list[EventEnvelope]:
    aggregate_id = domain.account_id(customer_id)
    return [
        wrap(FundsDeposited(deposit_id=str(uuid.uuid4()), amount="1.25"), source=SOURCE, subject=aggregate_id, version=n)
        for n in range(1, count + 1)
    ]


def seed(client: Any, aggregate_id: str, envelopes: list[EventEnvelope]) -> None:
    for start in range(0, len(envelopes), 25):
        items = [
            {"pk": aggregate_id, "sk": e.sequence, "kind": EVENT_KIND, **envelope_to_attributes(e)}
            for e in envelopes[start : start + 25]
        ]
        client.batch_write_item(RequestItems={TABLE: [{"PutRequest": {"Item": to_dynamo(i)}} for i in items]})


def snapshot(store: DynamoDBEventStore, aggregate_id: str, envelopes: list[EventEnvelope]) -> None:
    state = ACCOUNT_SNAPSHOTS.fold(ACCOUNT_SNAPSHOTS.initial(aggregate_id), envelopes)
    store.save_snapshot(ACCOUNT_SNAPSHOTS.snapshot_of(aggregate_id, state))


def time_load(client: Any, customer_id: str, runs: int, expected_version: int) -> tuple[float, int]:
    """Median milliseconds of PaymentsService.account over ``runs`` loads, and the items one load reads."""
    counting = CountingClient(client)
    service = PaymentsService(DynamoDBEventStore(TABLE, counting))
    timings = []
    for _ in range(runs):
        counting.items = 0
        started = time.perf_counter()
        account = service.account(customer_id)
        timings.append((time.perf_counter() - started) * 1000)
        assert account.version == expected_version
    return statistics.median(timings), counting.items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="loads timed per cell (the median is shown)")
    args = parser.parse_args()

    rows = []
    with mock_aws():
        client = boto3.client("dynamodb")
        client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        store = DynamoDBEventStore(TABLE, client)
        for size in SIZES:
            customer_id = f"bench-{size}"
            aggregate_id = domain.account_id(customer_id)
            envelopes = history(customer_id, size)
            seed(client, aggregate_id, envelopes)
            runs = args.runs if size < 10_000 else max(1, min(args.runs, 3))
            full = time_load(client, customer_id, runs, size)
            snapshot(store, aggregate_id, envelopes[: size - TAIL])
            with_tail = time_load(client, customer_id, args.runs, size)
            client.delete_item(TableName=TABLE, Key=to_dynamo({"pk": aggregate_id, "sk": SNAPSHOT_SK}))
            snapshot(store, aggregate_id, envelopes)
            no_tail = time_load(client, customer_id, args.runs, size)
            stored = client.get_item(TableName=TABLE, Key=to_dynamo({"pk": aggregate_id, "sk": SNAPSHOT_SK}))["Item"]
            snapshot_bytes = len(stored["state"].get("B", b"")) or len(stored["state"].get("S", "").encode())
            rows.append((size, full, no_tail, with_tail, snapshot_bytes))

    print(f"Loading a customer account (PaymentsService.account), DynamoDB in moto, median of {args.runs} loads")
    print("(10,000 without a snapshot: median of at most 3). Items = what DynamoDB returned for one load.\n")
    header = ("events", "full replay", "snapshot, no tail", f"snapshot + {TAIL} events", "snapshot size")
    print(f"{header[0]:>8} | {header[1]:>22} | {header[2]:>22} | {header[3]:>22} | {header[4]:>13}")
    print(f"{'-' * 8}-+-{'-' * 22}-+-{'-' * 22}-+-{'-' * 22}-+-{'-' * 13}")
    for size, full, no_tail, with_tail, snapshot_bytes in rows:
        cells = [f"{ms:9.1f} ms {items:>6} it" for ms, items in (full, no_tail, with_tail)]
        print(f"{size:>8,} | {cells[0]:>22} | {cells[1]:>22} | {cells[2]:>22} | {snapshot_bytes / 1024:>10.1f} KB")


if __name__ == "__main__":
    main()
