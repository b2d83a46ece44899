"""Relay a batch of stream records to the bus: nothing committed is lost, a poison record blocks nothing.

- Each record's new image is an event item (event store) or an outbox item (state-based services); the
  envelope in it becomes one PutEvents entry: Source = CloudEvents source, DetailType = type, Detail = the
  whole envelope, Time = the event's time.
- Entries go out in chunks of at most 10 entries and 256 KB. Only the entries EventBridge rejected are sent
  again, a few times with backoff; so within one invocation an event reaches the bus once.
- Records that still fail (or cannot be read at all) are returned as batch item failures. Lambda retries
  from the first of them; every record the relay could publish was published anyway, so when a poison record
  exhausts its retries and goes to the on-failure queue, the records behind it are already on the bus.
- Each entry carries the X-Ray trace header it is given (``TraceHeader``): EventBridge passes it to the targets,
  so the trace goes on past the bus. A stream record holds no trace context of the writer, so the relay passes
  its own invocation's. The correlation id (the order id) travels in the CloudEvent itself.
- For each event published, its publish lag: how long after the event's own time it was accepted by the bus.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from shared.records import PUBLISHABLE_KINDS, envelope_from_attributes

from .publisher import Publisher

MAX_ENTRIES_PER_CALL = 10
MAX_REQUEST_BYTES = 256 * 1024
_TIME_BYTES = 14  # what EventBridge counts for an entry's Time field
# An X-Ray trace header (X-Amzn-Trace-Id): "Root=1-<8 hex>-<24 hex>" and more fields; PutEvents takes up to 500
# characters. X-Ray drops an invalid one without failing the event, but the relay sends none rather than junk.
_TRACE_HEADER = re.compile(r"^(?=.*(?:^|;)Root=1-[0-9a-f]{8}-[0-9a-f]{24}(?:;|$))[\x21-\x7e]{1,500}$")

_deserializer = TypeDeserializer()


@dataclass
class RelayResult:
    published: int = 0
    failed_sequence_numbers: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # sequence number -> why
    publish_lags_ms: list[float] = field(default_factory=list)  # per event published: accepted - event time

    def batch_item_failures(self) -> dict[str, list[dict[str, str]]]:
        return {"batchItemFailures": [{"itemIdentifier": seq} for seq in self.failed_sequence_numbers]}


def entry_size(entry: dict[str, Any]) -> int:
    size = _TIME_BYTES if "Time" in entry else 0
    for name in ("Source", "DetailType", "Detail"):
        size += len(entry[name].encode("utf-8"))
    return size + sum(len(r.encode("utf-8")) for r in entry.get("Resources", []))


def valid_trace_header(value: str | None) -> str | None:
    """``value`` if it is an X-Ray trace header PutEvents accepts, else None."""
    return value if value and _TRACE_HEADER.match(value) else None


def to_entry(record: dict[str, Any], trace_header: str | None = None) -> dict[str, Any]:
    image = record["dynamodb"]["NewImage"]
    item = {key: _deserializer.deserialize(value) for key, value in image.items()}
    if item.get("kind") not in PUBLISHABLE_KINDS:
        raise ValueError(f"item kind {item.get('kind')!r} is not an event or outbox item")
    envelope = envelope_from_attributes(item)
    detail = json.dumps(envelope.to_wire(), separators=(",", ":"))
    entry = {"Source": envelope.source, "DetailType": envelope.type, "Detail": detail, "Time": envelope.time}
    if trace_header:
        entry["TraceHeader"] = trace_header  # not counted in the entry size
    if entry_size(entry) > MAX_REQUEST_BYTES:
        raise ValueError(f"event {envelope.id} is {entry_size(entry)} bytes, over EventBridge's 256 KB")
    return entry


def _chunks(indexed: list[tuple[int, dict[str, Any]]]) -> list[list[tuple[int, dict[str, Any]]]]:
    chunks: list[list[tuple[int, dict[str, Any]]]] = []
    current: list[tuple[int, dict[str, Any]]] = []
    size = 0
    for index, entry in indexed:
        entry_bytes = entry_size(entry)
        if current and (len(current) == MAX_ENTRIES_PER_CALL or size + entry_bytes > MAX_REQUEST_BYTES):
            chunks.append(current)
            current, size = [], 0
        current.append((index, entry))
        size += entry_bytes
    if current:
        chunks.append(current)
    return chunks


def relay(
    records: Sequence[dict[str, Any]],
    publisher: Publisher,
    *,
    trace_header: str | None = None,
    attempts: int = 3,
    backoff_seconds: float = 0.05,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> RelayResult:
    """Publish ``records``; ``trace_header`` (the relay's X-Ray trace context) goes on every entry if valid."""
    result = RelayResult()
    pending: list[tuple[int, dict[str, Any]]] = []
    failed: dict[int, str] = {}
    header = valid_trace_header(trace_header)
    for index, record in enumerate(records):
        try:
            pending.append((index, to_entry(record, header)))
        except (KeyError, TypeError, ValueError) as error:
            failed[index] = f"unreadable record: {error}"

    for attempt in range(attempts):
        if not pending:
            break
        if attempt:
            sleep(backoff_seconds * 2 ** (attempt - 1))
        retry: list[tuple[int, dict[str, Any]]] = []
        for chunk in _chunks(pending):
            try:
                outcomes = publisher.put([entry for _, entry in chunk])
            except Exception as error:  # noqa: BLE001 - a failed call fails its entries, never the batch
                outcomes = [f"{type(error).__name__}: {error}"] * len(chunk)
            accepted_at = clock()
            for (index, entry), outcome in zip(chunk, outcomes, strict=True):
                if outcome is None:
                    result.published += 1
                    result.publish_lags_ms.append(max(0.0, (accepted_at - entry["Time"].timestamp()) * 1000))
                    failed.pop(index, None)
                else:
                    failed[index] = outcome
                    retry.append((index, entry))
        pending = retry

    for index in sorted(failed):
        sequence_number = records[index]["dynamodb"]["SequenceNumber"]
        result.failed_sequence_numbers.append(sequence_number)
        result.errors[sequence_number] = failed[index]
    return result
