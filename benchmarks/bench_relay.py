"""PutEvents calls per event when the outbox relay drains a burst of events.

    make bench          (or: .venv/bin/python benchmarks/bench_relay.py [--events 1000] [--batch-size 100])

A burst of synthetic DynamoDB stream records (event items built the way the event store writes them:
shared.events.wrap + shared.records.envelope_to_attributes, as tests/unit/test_relay_logic.py does) is cut into
batches of the event source mapping's size (100, stacks/outbox_relay.py) and each batch goes through
relay.logic.relay with a counting fake publisher that accepts every entry. Target: at most 0.11 PutEvents calls
per event (full batches of 10 entries = 0.10). Smaller batches are shown too: they are what a trickle of
events, or a batching window that closes before 100 records arrive, costs.

It is a benchmark, not a test: it prints PASS/FAIL and a summary line, and exits 0 either way.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "functions")]

from boto3.dynamodb.types import TypeSerializer  # noqa: E402

from relay.logic import relay  # noqa: E402
from shared.events import DomainEvent, wrap  # noqa: E402
from shared.records import EVENT_KIND, envelope_to_attributes  # noqa: E402

TARGET = 0.11
_serializer = TypeSerializer()


class OrderThingHappened(DomainEvent):
    n: int
    order_id: str
    amount: str


def record(n: int) -> dict[str, Any]:
    aggregate = f"order-{n // 4}"  # a few events per aggregate, like an order's saga
    envelope = wrap(
        OrderThingHappened(n=n, order_id=aggregate, amount="12.50"),
        source="bench.relay",
        subject=aggregate,
        version=n % 4 + 1,
    )
    item = {
        "pk": aggregate,
        "sk": envelope.sequence,
        "kind": EVENT_KIND,
        **envelope_to_attributes(envelope),
    }
    return {
        "eventID": str(n),
        "eventName": "INSERT",
        "dynamodb": {
            "SequenceNumber": str(10_000 + n),
            "NewImage": {k: _serializer.serialize(v) for k, v in item.items()},
        },
    }


class CountingPublisher:
    def __init__(self) -> None:
        self.calls = 0
        self.entries = 0

    def put(self, entries: Sequence[dict[str, Any]]) -> list[str | None]:
        self.calls += 1
        self.entries += len(entries)
        return [None] * len(entries)


def run(records: list[dict[str, Any]], batch_size: int) -> tuple[int, int, int]:
    """(PutEvents calls, entries published, invocations) for the burst cut into batches of ``batch_size``."""
    publisher = CountingPublisher()
    published = 0
    invocations = 0
    for start in range(0, len(records), batch_size):
        result = relay(
            records[start : start + batch_size], publisher, sleep=lambda seconds: None
        )
        assert not result.failed_sequence_numbers, result.errors
        published += result.published
        invocations += 1
    assert published == publisher.entries == len(records)
    return publisher.calls, published, invocations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000, help="events in the burst")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=100,
        help="records per invocation (the ESM batch size)",
    )
    args = parser.parse_args()

    records = [record(n) for n in range(args.events)]
    print(
        f"Outbox relay, a burst of {args.events:,} events, counting fake PutEvents (every entry accepted)"
    )
    print(
        f"Target: <= {TARGET:g} PutEvents calls per event at the ESM batch size ({args.batch_size}).\n"
    )
    print(
        f"{'batch size':>10} | {'invocations':>11} | {'PutEvents':>9} | {'calls/event':>11} | result"
    )
    print(f"{'-' * 10}-+-{'-' * 11}-+-{'-' * 9}-+-{'-' * 11}-+-------")
    headline = None
    for batch_size in sorted({args.batch_size, 1, 5, 10, 25}, reverse=True):
        calls, published, invocations = run(records, batch_size)
        per_event = calls / published
        verdict = "PASS" if per_event <= TARGET else "FAIL"
        note = verdict if batch_size == args.batch_size else f"({verdict})"
        print(
            f"{batch_size:>10} | {invocations:>11,} | {calls:>9,} | {per_event:>11.3f} | {note}"
        )
        if batch_size == args.batch_size:
            headline = (calls, published, per_event, verdict)
    assert headline is not None
    calls, published, per_event, verdict = headline
    print(
        f"\n(rows in parentheses are informative: ceil(batch/10)/batch calls per event, e.g. "
        f"{math.ceil(25 / 10) / 25:.2f} at 25)"
    )
    print(
        f"SUMMARY relay: {calls:,} PutEvents calls for {published:,} events in batches of {args.batch_size} = "
        f"{per_event:.3f} calls/event, target <= {TARGET:g}: {verdict}"
    )


if __name__ == "__main__":
    main()
