"""An append-only event store with optimistic concurrency, on DynamoDB and in memory.

Layout (DynamoDB): ``pk`` = aggregate id, ``sk`` = zero-padded version, ``kind`` = "event", plus the
envelope's attributes. Appending N events is one ``TransactWriteItems``: every put is conditional on the
item not existing, and when the writer expects version V > 0 a condition check also requires version V to
exist. So two writers that read the same version cannot both win (the loser gets ``ConcurrencyError``), and
nobody can append with a gap. The committed items are the outbox: the table's stream carries them to the relay.

Both implementations pass the same contract suite (tests/unit/test_event_store_contract.py).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from .events import EventEnvelope, format_version
from .records import EVENT_KIND, envelope_from_attributes, envelope_to_attributes

MAX_EVENTS_PER_APPEND = 99  # TransactWriteItems takes 100 actions; one may be the version check


class ConcurrencyError(Exception):
    """Another writer appended to this aggregate since it was read: reload and decide again."""

    def __init__(self, aggregate_id: str, expected_version: int) -> None:
        super().__init__(
            f"aggregate {aggregate_id!r} is no longer at version {expected_version}: another writer got there first"
        )
        self.aggregate_id = aggregate_id
        self.expected_version = expected_version


class EventStore(Protocol):
    def append(self, aggregate_id: str, expected_version: int, events: Sequence[EventEnvelope]) -> None:
        """Append events after ``expected_version`` (0 for a new aggregate), all or nothing."""

    def load(self, aggregate_id: str, after_version: int = 0, up_to_version: int | None = None) -> list[EventEnvelope]:
        """The aggregate's events with after_version < version <= up_to_version, oldest first."""


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
        self._lock = threading.Lock()

    def append(self, aggregate_id: str, expected_version: int, events: Sequence[EventEnvelope]) -> None:
        _check_append(aggregate_id, expected_version, events)
        with self._lock:
            stream = self._streams.setdefault(aggregate_id, [])
            if len(stream) != expected_version:
                raise ConcurrencyError(aggregate_id, expected_version)
            stream.extend(events)

    def load(self, aggregate_id: str, after_version: int = 0, up_to_version: int | None = None) -> list[EventEnvelope]:
        with self._lock:
            stream = list(self._streams.get(aggregate_id, ()))
        return [e for e in stream if e.version > after_version and (up_to_version is None or e.version <= up_to_version)]


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
        actions: list[dict[str, Any]] = []
        if expected_version > 0:
            actions.append(
                {
                    "ConditionCheck": {
                        "TableName": self._table,
                        "Key": to_dynamo({"pk": aggregate_id, "sk": format_version(expected_version)}),
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                }
            )
        for envelope in events:
            item = {"pk": aggregate_id, "sk": envelope.sequence, "kind": EVENT_KIND, **envelope_to_attributes(envelope)}
            actions.append(
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": to_dynamo(item),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            )
        try:
            self._client.transact_write_items(TransactItems=actions)
        except self._client.exceptions.TransactionCanceledException as error:
            reasons = [r.get("Code") for r in error.response.get("CancellationReasons", [])]
            # ConditionalCheckFailed: the version moved on (or never existed). TransactionConflict: another
            # transaction is writing the same items right now. Both mean "someone else won": reload and retry.
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
                return events
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
