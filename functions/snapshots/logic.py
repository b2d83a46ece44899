"""Snapshot the aggregates a batch of stream records touched (DynamoDB stream INSERTs of event items).

Per aggregate in the batch only its newest version counts: ``take_snapshot`` reads the stored snapshot and
stops there unless the aggregate is ``interval`` events past it; then it loads snapshot + tail, folds, and
writes the new snapshot with a condition that never replaces a newer one. So a duplicate or replayed record
writes nothing new, and two snapshotters racing on one aggregate leave the newer snapshot.

A record that is not an event item of a known table is skipped (the mapping's filter already drops them).
When snapshotting an aggregate fails, the first record of that aggregate is reported as the batch item failure:
Lambda retries the batch from there (bisecting, up to the retry cap, then the on-failure queue), and the
aggregates after it that were snapshotted already are no-ops the second time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.event_store import EventStore
from shared.snapshots import Snapshotting, Taken, take_snapshot

_VERSION_SK = re.compile(r"^[0-9]{10}$")


@dataclass(frozen=True)
class Source:
    """One event store table the snapshotter reads: its aggregates' type and snapshot interval."""

    store: EventStore
    snapshotting: Snapshotting[Any]
    interval: int


@dataclass(frozen=True)
class Touched:
    table: str
    aggregate_id: str
    version: int  # the newest version seen in the batch
    first_record: str  # sequence number of its first record in the batch
    correlation_id: str  # of its newest event (the order id on an order's path)


@dataclass(frozen=True)
class Result:
    touched: Touched
    taken: Taken | None = None
    error: Exception | None = None


@dataclass
class BatchResult:
    results: list[Result] = field(default_factory=list)
    skipped: int = 0  # records that are not event items of a known table

    def batch_item_failures(self) -> dict[str, list[dict[str, str]]]:
        failed = [r.touched.first_record for r in self.results if r.error is not None]
        return {"batchItemFailures": [{"itemIdentifier": seq} for seq in failed[:1]]}


def table_of(stream_arn: str) -> str:
    """arn:aws:dynamodb:<region>:<account>:table/<name>/stream/<label> -> <name>."""
    resource = stream_arn.split(":", 5)[-1]
    parts = resource.split("/")
    if len(parts) < 2 or parts[0] != "table":
        raise ValueError(f"{stream_arn!r} is not a DynamoDB stream ARN")
    return parts[1]


def touched_aggregates(records: Sequence[dict[str, Any]], tables: set[str]) -> tuple[list[Touched], int]:
    """The aggregates the records touched, in the order they first appear, and how many records were skipped."""
    touched: dict[tuple[str, str], Touched] = {}
    skipped = 0
    for record in records:
        try:
            table = table_of(record["eventSourceARN"])
            keys = record["dynamodb"]["Keys"]
            aggregate_id, sk = keys["pk"]["S"], keys["sk"]["S"]
            image = record["dynamodb"].get("NewImage", {})
            is_event = record.get("eventName") == "INSERT" and image.get("kind", {}).get("S") == "event"
            sequence_number = record["dynamodb"]["SequenceNumber"]
        except (KeyError, TypeError, ValueError):
            skipped += 1
            continue
        if table not in tables or not is_event or not _VERSION_SK.match(sk):
            skipped += 1
            continue
        version = int(sk)
        correlation_id = image.get("correlationid", {}).get("S") or aggregate_id
        previous = touched.get((table, aggregate_id))
        if previous is None:
            touched[(table, aggregate_id)] = Touched(table, aggregate_id, version, sequence_number, correlation_id)
        elif version > previous.version:
            touched[(table, aggregate_id)] = Touched(
                table, aggregate_id, version, previous.first_record, correlation_id
            )
    return list(touched.values()), skipped


def snapshot_batch(
    records: Sequence[dict[str, Any]],
    sources: Mapping[str, Source],
    on_result: Callable[[Result], None] = lambda _result: None,
) -> BatchResult:
    """Snapshot every aggregate the records touched that is due; ``on_result`` sees each outcome as it happens."""
    touched, skipped = touched_aggregates(records, set(sources))
    batch = BatchResult(skipped=skipped)
    for aggregate in touched:
        source = sources[aggregate.table]
        try:
            taken = take_snapshot(
                source.store,
                aggregate.aggregate_id,
                source.snapshotting,
                interval=source.interval,
                seen_version=aggregate.version,
            )
            result = Result(aggregate, taken=taken)
        except Exception as error:  # noqa: BLE001 - reported as a batch item failure, retried by Lambda
            result = Result(aggregate, error=error)
        batch.results.append(result)
        on_result(result)
    return batch
