"""The relay's logic against a fake EventBridge (no boto3): chunking, partial failures, poison records; and the
handler's log lines (one compact line per event, against moto's EventBridge)."""

from __future__ import annotations

import importlib
import io
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import TypeSerializer
from moto import mock_aws

import shared.aws

from relay.logic import MAX_REQUEST_BYTES, entry_size, relay, to_entry
from shared.events import DomainEvent, wrap
from shared.records import EVENT_KIND, envelope_to_attributes

_serializer = TypeSerializer()


class Happened(DomainEvent):
    n: int
    padding: str = ""


def record(
    n: int, padding: str = "", kind: str = EVENT_KIND, seq: int | None = None, time: datetime | None = None
) -> dict[str, Any]:
    envelope = wrap(
        Happened(n=n, padding=padding), source="tests.relay", subject=f"agg-{n}", version=1,
        correlation_id=f"order-{n}", time=time,
    )
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


# What Lambda puts in _X_AMZN_TRACE_ID (the AWS X-Ray developer guide's example, plus Lambda's Lineage field).
TRACE = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a87bd80c:0"


def test_every_entry_carries_the_trace_header_also_when_sent_again() -> None:
    bus = FakeBus(reject=lambda call, entry: "ThrottlingException" if call == 1 and ids([entry])[0] == 2 else None)
    relay([record(n) for n in range(12)], bus, trace_header=TRACE, sleep=lambda s: None)
    sent = [entry for call in bus.calls for entry in call]
    assert len(sent) == 13 and {entry["TraceHeader"] for entry in sent} == {TRACE}
    # the correlation id (the order id) travels in the CloudEvent, whatever the trace says
    assert [json.loads(e["Detail"])["correlationid"] for e in bus.accepted] == [f"order-{n}" for n in range(12) if n != 2] + ["order-2"]


@pytest.mark.parametrize(
    "header",
    [None, "", "Root=not-a-trace-id", "Parent=53995c3f42cd8ad8;Sampled=1", "Root=1-5759e988-bd862e3fe1be46a994272793;" + "x" * 500,
     "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1 with spaces"],
)
def test_no_trace_header_rather_than_an_invalid_one(header: str | None) -> None:
    bus = FakeBus()
    relay([record(0)], bus, trace_header=header, sleep=lambda s: None)
    assert ids(bus.accepted) == [0] and "TraceHeader" not in bus.accepted[0]


def test_the_trace_header_does_not_count_against_the_request_size() -> None:
    # two entries that fill one request to within 10 bytes: a header counted in the size would split them
    base = entry_size(to_entry(record(0)))
    padding = "z" * ((MAX_REQUEST_BYTES - 10) // 2 - base)
    records = [record(0, padding=padding), record(1, padding=padding)]
    assert MAX_REQUEST_BYTES - 10 <= sum(entry_size(to_entry(r)) for r in records) <= MAX_REQUEST_BYTES
    bus = FakeBus()
    relay(records, bus, trace_header=TRACE, sleep=lambda s: None)
    assert [len(c) for c in bus.calls] == [2] and all(e["TraceHeader"] == TRACE for e in bus.calls[0])


def test_publish_lag_is_measured_per_published_event_from_its_own_time() -> None:
    written = datetime(2026, 11, 26, 9, 0, 0, tzinfo=UTC)
    clock = iter([(written + timedelta(seconds=1.5)).timestamp(), (written + timedelta(seconds=4)).timestamp()])
    bus = FakeBus(reject=lambda call, entry: "InternalFailure" if call == 1 and ids([entry])[0] == 1 else None)
    result = relay(
        [record(0, time=written), record(1, time=written + timedelta(seconds=1)), record(2, time=written)],
        bus, trace_header=TRACE, sleep=lambda s: None, clock=lambda: next(clock),
    )
    # 0 and 2 accepted by the first call (1.5 s after their time); 1 by the resend, 4 s after 9:00:00, 3 s after its own
    assert result.publish_lags_ms == [1500.0, 1500.0, 3000.0]
    assert result.published == 3


def test_nothing_published_means_no_lag() -> None:
    bus = FakeBus(reject=lambda call, entry: "InternalFailure")
    result = relay([record(0)], bus, sleep=lambda s: None)
    assert result.publish_lags_ms == [] and result.failed_sequence_numbers == ["1000"]


@dataclass
class Context:
    function_name: str = "relay"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:relay"
    aws_request_id: str = "7d2f3c1e-0000-4c55-9d59-3f1b8f0c7a11"


def test_the_handler_logs_one_compact_line_per_event_with_its_correlation_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """The published event's line is its only trace in the logs: the correlation id (the order id), the event id
    and type, nothing more (CloudWatch Logs bills every byte); a record that was not published says where Lambda
    retries from."""
    monkeypatch.setenv("EVENT_BUS_NAME", "orderflow-bus")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Orderflow")
    published, unreadable = [record(1), record(2)], record(3, kind="snapshot")
    with mock_aws():
        boto3.client("events").create_event_bus(Name="orderflow-bus")
        sys.modules.pop("relay.handler", None)
        shared.aws.client.cache_clear()
        try:
            handler = importlib.import_module("relay.handler")
            stream = io.StringIO()
            previous = handler.logger.registered_handler.setStream(stream)
            try:
                answer = handler.handler({"Records": [*published, unreadable]}, Context())
            finally:
                handler.logger.registered_handler.setStream(previous)
        finally:
            sys.modules.pop("relay.handler", None)
            shared.aws.client.cache_clear()
    assert answer == {"batchItemFailures": [{"itemIdentifier": "1003"}]}
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    event_ids = [r["dynamodb"]["NewImage"]["id"]["S"] for r in (*published, unreadable)]
    own = {"level", "message", "correlation_id", "event_id", "type", "location", "timestamp", "service"}
    context_keys = {"cold_start", "function_name", "function_memory_size", "function_arn", "function_request_id"}
    assert [(line["level"], line["message"], line["correlation_id"], line["event_id"], line["type"])
            for line in lines[:2]] == [("INFO", "event published", f"order-{n}", event_ids[n - 1], "Happened")
                                       for n in (1, 2)]
    assert all(set(line) <= own | context_keys for line in lines[:2]), lines[:2]
    [failed] = lines[2:]
    assert (failed["level"], failed["correlation_id"], failed["event_id"], failed["sequence_number"]) == (
        "ERROR", "order-3", event_ids[2], "1003")
    assert "not an event or outbox item" in failed["error"]
