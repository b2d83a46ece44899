"""An append-only event store with optimistic concurrency, on DynamoDB and in memory.

Layout (DynamoDB): ``pk`` = aggregate id, ``sk`` = zero-padded version, ``kind`` = "event", plus the
envelope's attributes. Every event is put on the condition that its version does not exist yet: one event is one
conditional ``PutItem`` (one write unit), N events one ``TransactWriteItems`` of N conditional puts (all or nothing).
So two writers that read the same version cannot both win: the loser gets ``ConcurrencyError``. The committed
items are the outbox: the table's stream carries them to the relay, one INSERT per event, whichever call wrote it.

``expected_version`` is the version the caller loaded. Nothing else is checked at write time, on purpose: a check
that version V exists (a ``ConditionCheck``, which also makes a single put a transaction: four write units instead
of one) could only fail for a caller that passes a version it never read, because a loaded version exists and
events are never deleted (no function is granted UpdateItem or DeleteItem on an event store, and event items carry
no TTL attribute). A stream with a gap, which only such a bug can make, refuses to load (``StreamGap``) rather than
fold a history with a hole in it.

Beside the events, one item per aggregate may hold a snapshot (see shared/snapshots.py): ``sk`` = "snapshot",
which sorts after every zero-padded version ("s" > "9") so the events' ``BETWEEN`` range never reaches it,
``kind`` = "snapshot" (the relay's stream filter takes only "event" items, so it is never published), the
aggregate type, the snapshot's schema version, the version it was taken at and the state as JSON: a string, or
zlib-compressed bytes when the JSON is large. A snapshot is only a cache: a put replaces an older version (or
an older schema) and never a newer one, and the item can be deleted at any time without losing anything.

Both implementations pass the same contract suites (tests/unit/test_event_store_contract.py, and
tests/unit/test_snapshots_store.py for the snapshots).
"""

from __future__ import annotations

import json
import threading
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Protocol

from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer

from .events import EventEnvelope, format_version
from .records import EVENT_KIND, envelope_from_attributes, envelope_to_attributes

MAX_EVENTS_PER_APPEND = 100  # TransactWriteItems takes 100 actions

SNAPSHOT_KIND = "snapshot"  # a snapshot item: never published (the relay takes kind "event" only)
SNAPSHOT_SK = "snapshot"  # sorts after every zero-padded version: outside any event Query's range
# The state JSON is compressed above this size (uncompressed it stays readable in the console), and a snapshot
# whose stored state is still larger is refused: a DynamoDB item is at most 400 KB, keys and attributes included.
SNAPSHOT_COMPRESS_ABOVE_BYTES = 32 * 1024
SNAPSHOT_MAX_STATE_BYTES = 380 * 1024


class ConcurrencyError(Exception):
    """Another writer appended to this aggregate since it was read: reload and decide again."""

    def __init__(self, aggregate_id: str, expected_version: int) -> None:
        super().__init__(
            f"aggregate {aggregate_id!r} is no longer at version {expected_version}: another writer got there first"
        )
        self.aggregate_id = aggregate_id
        self.expected_version = expected_version


class StreamGap(RuntimeError):
    """The stored stream skips a version: an append was made after a version its caller never loaded (a bug).
    Loading refuses it rather than fold a history with a hole in it."""

    def __init__(self, aggregate_id: str, expected: int, found: int) -> None:
        super().__init__(f"aggregate {aggregate_id!r} has no version {expected}: the next stored event is {found}")
        self.aggregate_id = aggregate_id
        self.expected = expected
        self.found = found


class SnapshotTooLarge(ValueError):
    """The state does not fit in one item even compressed: the aggregate is loaded by full replay instead."""


@dataclass(frozen=True)
class Snapshot:
    """An aggregate's state at ``version``, as the JSON-ready dict its ``schema_version`` of the encoding made."""

    aggregate_id: str
    aggregate_type: str
    schema_version: int
    version: int
    state: Mapping[str, Any]

    def __post_init__(self) -> None:
        if self.version < 1:
            raise ValueError("a snapshot is taken after at least one event")
        if self.schema_version < 1:
            raise ValueError("a snapshot schema version starts at 1")


class EventStore(Protocol):
    def append(self, aggregate_id: str, expected_version: int, events: Sequence[EventEnvelope]) -> None:
        """Append events after ``expected_version`` (0 for a new aggregate; otherwise a version the caller loaded),
        all or nothing. ``ConcurrencyError`` when one of their versions is already taken."""

    def load(self, aggregate_id: str, after_version: int = 0, up_to_version: int | None = None) -> list[EventEnvelope]:
        """The aggregate's events with after_version < version <= up_to_version, oldest first, without a gap
        (``StreamGap`` otherwise)."""

    def load_snapshot(self, aggregate_id: str) -> Snapshot | None:
        """The aggregate's snapshot as stored (whatever its schema version), or None."""

    def save_snapshot(self, snapshot: Snapshot, *, replacing: tuple[int, int] | None = None) -> bool:
        """Store the snapshot unless one of a newer schema, or of the same schema at the same or a newer
        version, is there (see ``_replaces``). ``replacing`` = (schema version, version) of a stored snapshot
        the caller read and found unusable (damaged): that one is replaced whatever its version.

        True when it was written. Raises ``SnapshotTooLarge`` when the state cannot be stored.
        """


def _replaces(new: Snapshot, old: Snapshot | None, replacing: tuple[int, int] | None = None) -> bool:
    """A snapshot replaces one of an older schema, or an older version of its own schema; never a newer one
    (unless it is the very snapshot the caller found unusable)."""
    if old is None or old.schema_version < new.schema_version:
        return True
    if replacing is not None and (old.schema_version, old.version) == replacing:
        return True
    return old.schema_version == new.schema_version and old.version < new.version


def _contiguous(aggregate_id: str, after_version: int, events: list[EventEnvelope]) -> list[EventEnvelope]:
    for expected, envelope in enumerate(events, start=after_version + 1):
        if envelope.version != expected:
            raise StreamGap(aggregate_id, expected, envelope.version)
    return events


def _check_append(aggregate_id: str, expected_version: int, events: Sequence[EventEnvelope]) -> None:
    if expected_version < 0:
        raise ValueError("expected_version must be >= 0")
    if not events:
        raise ValueError("nothing to append")
    if len(events) > MAX_EVENTS_PER_APPEND:
        raise ValueError(f"at most {MAX_EVENTS_PER_APPEND} events can be appended at once")
    for offset, envelope in enumerate(events, start=1):
        if envelope.subject != aggregate_id:
            raise ValueError(f"event {envelope.id} is about {envelope.subject!r}, not {aggregate_id!r}")
        if envelope.version != expected_version + offset:
            raise ValueError(
                f"event {envelope.id} carries version {envelope.version}, expected {expected_version + offset}"
            )


class InMemoryEventStore:
    """The same contract in memory: for domain tests and as the reference implementation."""

    def __init__(self) -> None:
        self._streams: dict[str, list[EventEnvelope]] = {}
        self._snapshots: dict[str, Snapshot] = {}
        self._lock = threading.Lock()

    def append(self, aggregate_id: str, expected_version: int, events: Sequence[EventEnvelope]) -> None:
        _check_append(aggregate_id, expected_version, events)
        with self._lock:
            stream = self._streams.setdefault(aggregate_id, [])
            # As DynamoDB's conditional puts: refused when a version is taken, and nothing more is checked.
            taken = {e.version for e in stream}
            if any(e.version in taken for e in events):
                raise ConcurrencyError(aggregate_id, expected_version)
            stream.extend(events)
            stream.sort(key=lambda e: e.version)  # as a Query returns them (only a caller bug appends out of order)

    def load(self, aggregate_id: str, after_version: int = 0, up_to_version: int | None = None) -> list[EventEnvelope]:
        with self._lock:
            stream = list(self._streams.get(aggregate_id, ()))
        return _contiguous(aggregate_id, after_version, [
            e for e in stream if e.version > after_version and (up_to_version is None or e.version <= up_to_version)
        ])

    def load_snapshot(self, aggregate_id: str) -> Snapshot | None:
        with self._lock:
            return self._snapshots.get(aggregate_id)

    def save_snapshot(self, snapshot: Snapshot, *, replacing: tuple[int, int] | None = None) -> bool:
        # Kept as DynamoDB would give it back: through JSON, with the same size limit.
        stored = replace(snapshot, state=_decode_state(_encode_state(snapshot.state)))
        with self._lock:
            if not _replaces(stored, self._snapshots.get(snapshot.aggregate_id), replacing):
                return False
            self._snapshots[snapshot.aggregate_id] = stored
            return True


def _encode_state(state: Mapping[str, Any]) -> str | bytes:
    text = json.dumps(state, separators=(",", ":"), sort_keys=True)
    if len(text.encode("utf-8")) <= SNAPSHOT_COMPRESS_ABOVE_BYTES:
        return text
    packed = zlib.compress(text.encode("utf-8"), 9)
    if len(packed) > SNAPSHOT_MAX_STATE_BYTES:
        raise SnapshotTooLarge(f"the state is {len(packed)} bytes compressed, over {SNAPSHOT_MAX_STATE_BYTES}")
    return packed


def _whole_number(value: Any) -> int:
    """A DynamoDB number (N) that is a whole number; anything else is damage."""
    if not isinstance(value, Decimal) or value != value.to_integral_value():
        raise TypeError(f"{value!r} is not a whole number")
    return int(value)


def _decode_state(stored: Any) -> dict[str, Any]:
    if isinstance(stored, Binary):
        stored = stored.value
    text = zlib.decompress(stored).decode("utf-8") if isinstance(stored, bytes) else stored
    state = json.loads(text)
    if not isinstance(state, dict):
        raise ValueError("a snapshot's state is a JSON object")
    return state


_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def to_dynamo(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _serializer.serialize(value) for key, value in item.items()}


def from_dynamo(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _deserializer.deserialize(value) for key, value in item.items()}


class DynamoDBEventStore:
    def __init__(self, table_name: str, client: Any) -> None:
        self._table = table_name
        self._client = client

    def append(self, aggregate_id: str, expected_version: int, events: Sequence[EventEnvelope]) -> None:
        _check_append(aggregate_id, expected_version, events)
        puts = [
            {
                "TableName": self._table,
                "Item": to_dynamo({"pk": aggregate_id, "sk": e.sequence, "kind": EVENT_KIND, **envelope_to_attributes(e)}),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
            for e in events
        ]
        errors = self._client.exceptions
        if len(puts) == 1:
            try:
                self._client.put_item(**puts[0])
            # ConditionalCheckFailed: the version is taken. TransactionConflict: a transaction (another writer's
            # multi-event append) is writing that item right now. Both mean "someone else won": reload and retry.
            except (errors.ConditionalCheckFailedException, errors.TransactionConflictException) as error:
                raise ConcurrencyError(aggregate_id, expected_version) from error
            return
        try:  # several events: all or none of them
            self._client.transact_write_items(TransactItems=[{"Put": put} for put in puts])
        except errors.TransactionCanceledException as error:
            # The same two reasons, from a transaction: a version is taken, or another transaction holds an item.
            reasons = [r.get("Code") for r in error.response.get("CancellationReasons", [])]
            if any(code in ("ConditionalCheckFailed", "TransactionConflict") for code in reasons):
                raise ConcurrencyError(aggregate_id, expected_version) from error
            raise

    def load(self, aggregate_id: str, after_version: int = 0, up_to_version: int | None = None) -> list[EventEnvelope]:
        upper = format_version(up_to_version) if up_to_version is not None else "9" * len(format_version(0))
        if up_to_version is not None and up_to_version <= after_version:
            return []
        query: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :lo AND :hi",
            "ExpressionAttributeValues": to_dynamo(
                {":pk": aggregate_id, ":lo": format_version(after_version + 1), ":hi": upper}
            ),
            "ConsistentRead": True,
        }
        events: list[EventEnvelope] = []
        while True:
            page = self._client.query(**query)
            for raw in page.get("Items", []):
                item = from_dynamo(raw)
                if item.get("kind") == EVENT_KIND:
                    events.append(envelope_from_attributes(item))
            if "LastEvaluatedKey" not in page:
                return _contiguous(aggregate_id, after_version, events)
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def load_snapshot(self, aggregate_id: str) -> Snapshot | None:
        """One consistent GetItem. It is a cache, never trusted: an item whose numbers cannot be read is no
        snapshot, and a state that cannot be read comes back empty (no aggregate decodes it: it is ignored)."""
        response = self._client.get_item(
            TableName=self._table, Key=to_dynamo({"pk": aggregate_id, "sk": SNAPSHOT_SK}), ConsistentRead=True
        )
        if "Item" not in response:
            return None
        item = from_dynamo(response["Item"])
        try:
            state = _decode_state(item.get("state"))
        except (TypeError, ValueError, zlib.error):
            state = {}
        try:
            return Snapshot(
                aggregate_id=aggregate_id,
                aggregate_type=str(item.get("aggregate_type", "")),
                schema_version=_whole_number(item["schema_version"]),
                version=_whole_number(item["version"]),
                state=state,
            )
        except (KeyError, TypeError, ValueError):
            return None

    def save_snapshot(self, snapshot: Snapshot, *, replacing: tuple[int, int] | None = None) -> bool:
        item = {
            "pk": snapshot.aggregate_id,
            "sk": SNAPSHOT_SK,
            "kind": SNAPSHOT_KIND,
            "aggregate_type": snapshot.aggregate_type,
            "schema_version": snapshot.schema_version,
            "version": snapshot.version,
            "state": _encode_state(snapshot.state),
        }
        try:
            self._client.put_item(
                TableName=self._table,
                Item=to_dynamo(item),
                # The same rule as _replaces, atomically (and a damaged item, whose numbers are not numbers, is
                # replaced too: it reads as no snapshot).
                ConditionExpression=(
                    "attribute_not_exists(pk) OR NOT attribute_type(#v, :n) OR NOT attribute_type(schema_version, :n)"
                    " OR schema_version < :schema OR (schema_version = :schema AND #v < :v)"
                    " OR (schema_version = :old_schema AND #v = :old_v)"
                ),
                ExpressionAttributeNames={"#v": "version"},
                ExpressionAttributeValues=to_dynamo(
                    {
                        ":v": snapshot.version,
                        ":schema": snapshot.schema_version,
                        ":n": "N",
                        # Nothing matches -1: without ``replacing`` the last clause is always false.
                        ":old_schema": replacing[0] if replacing else -1,
                        ":old_v": replacing[1] if replacing else -1,
                    }
                ),
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True
