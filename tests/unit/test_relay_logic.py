"""The relay's logic against a fake EventBridge (no boto3): chunking, partial failures, poison records."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from boto3.dynamodb.types import TypeSerializer

from relay.logic import MAX_REQUEST_BYTES, relay
from shared.events import DomainEvent, wrap
from shared.records import EVENT_KIND, envelope_to_attributes

_serializer = TypeSerializer()


class Happened(DomainEvent):
    n: int
    padding: str = ""


def record(n: int, padding: str = "", kind: str = EVENT_KIND, seq: int | None = None) -> dict[str, Any]:
    envelope = wrap(Happened(n=n, padding=padding), source="tests.relay", subject=f"agg-{n}", version=1)
    item = {"pk": f"agg-{n}", "sk": envelope.sequence, "kind": kind, **envelope_to_attributes(envelope)}
    return {
        "eventID": str(n),
        "eventName": "INSERT",
        "dynamodb": {
            "SequenceNumber": str(seq if seq is not None else 1000 + n),
            "NewImage": {k: _serializer.serialize(v) for k, v in item.items()},
        },
    }


class FakeBus:
    """Accepts entries like PutEvents; `reject` decides per call and entry which ones fail."""

    def __init__(self, reject=lambda call, entry: None) -> None:  # noqa: ANN001
        self.calls: list[list[dict[str, Any]]] = []
        self.accepted: list[dict[str, Any]] = []
        self._reject = reject

    def put(self, entries: Sequence[dict[str, Any]]) -> list[str | None]:
        assert 1 <= len(entries) <= 10
        assert sum(len(e["Detail"]) + len(e["Source"]) + len(e["DetailType"]) for e in entries) <= MAX_REQUEST_BYTES
        self.calls.append(list(entries))
        outcomes = [self._reject(len(self.calls), entry) for entry in entries]
        self.accepted += [e for e, o in zip(entries, outcomes, strict=True) if o is None]
        return outcomes


def ids(entries: list[dict[str, Any]]) -> list[int]:
    return [json.loads(e["Detail"])["data"]["n"] for e in entries]


def test_every_event_is_published_once_in_chunks_of_ten() -> None:
    bus = FakeBus()
    result = relay([record(n) for n in range(25)], bus, sleep=lambda s: None)
    assert [len(c) for c in bus.calls] == [10, 10, 5]
    assert ids(bus.accepted) == list(range(25))
    assert result.published == 25 and result.failed_sequence_numbers == []


def test_entries_carry_the_whole_cloudevent() -> None:
    bus = FakeBus()
    relay([record(7)], bus, sleep=lambda s: None)
    entry = bus.accepted[0]
    detail = json.loads(entry["Detail"])
    assert entry["Source"] == "tests.relay" == detail["source"]
    assert entry["DetailType"] == "Happened" == detail["type"]
    assert detail["specversion"] == "1.0" and detail["subject"] == "agg-7" and detail["data"] == {"n": 7, "padding": ""}


def test_only_rejected_entries_are_sent_again() -> None:
    # the first call rejects two entries; the retry carries exactly those two
    bus = FakeBus(reject=lambda call, entry: "ThrottlingException" if call == 1 and ids([entry])[0] in (2, 5) else None)
    result = relay([record(n) for n in range(8)], bus, sleep=lambda s: None)
    assert ids(bus.calls[1]) == [2, 5]
    assert sorted(ids(bus.accepted)) == list(range(8))  # each exactly once
    assert result.failed_sequence_numbers == []


def test_entries_that_keep_failing_become_batch_item_failures_and_the_rest_are_published() -> None:
    bus = FakeBus(reject=lambda call, entry: "InternalFailure" if ids([entry])[0] == 3 else None)
    records = [record(n) for n in range(6)]
    result = relay(records, bus, attempts=3, sleep=lambda s: None)
    assert sorted(ids(bus.accepted)) == [0, 1, 2, 4, 5]
    assert result.batch_item_failures() == {"batchItemFailures": [{"itemIdentifier": "1003"}]}
    assert len(bus.calls) == 3  # the first try and two retries of the one entry


def test_a_call_that_raises_fails_its_entries_not_the_batch() -> None:
    class Broken(FakeBus):
        def put(self, entries):  # noqa: ANN001, ANN202
            if len(self.calls) == 0:
                self.calls.append(list(entries))
                raise ConnectionError("network down")
            return super().put(entries)

    bus = Broken()
    result = relay([record(n) for n in range(3)], bus, sleep=lambda s: None)
    assert sorted(ids(bus.accepted)) == [0, 1, 2] and result.failed_sequence_numbers == []


def test_unreadable_and_oversized_records_fail_alone() -> None:
    broken = record(1)
    del broken["dynamodb"]["NewImage"]["type"]
    huge = record(2, padding="x" * (MAX_REQUEST_BYTES + 1))
    not_an_event = record(3, kind="snapshot")
    bus = FakeBus()
    result = relay([record(0), broken, huge, not_an_event, record(4)], bus, sleep=lambda s: None)
    assert ids(bus.accepted) == [0, 4]
    assert result.failed_sequence_numbers == ["1001", "1002", "1003"]


def test_large_entries_are_split_by_size() -> None:
    bus = FakeBus()
    relay([record(n, padding="y" * 100_000) for n in range(4)], bus, sleep=lambda s: None)
    assert [len(c) for c in bus.calls] == [2, 2]


def test_backoff_grows_between_attempts() -> None:
    waits: list[float] = []
    bus = FakeBus(reject=lambda call, entry: "ThrottlingException")
    relay([record(0)], bus, attempts=4, backoff_seconds=0.1, sleep=waits.append)
    assert waits == [0.1, 0.2, 0.4]
