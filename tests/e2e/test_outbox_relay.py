"""The outbox relay under failure: partial PutEvents failures and a poison record."""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import pytest
from moto.events.models import EventsBackend

from offline.runtime import Runtime

from .conftest import BusSpy, customer

ITEMS = {"items": [{"sku": "SKU-1", "quantity": 1}]}


def place(rt: Runtime, n: int) -> str:
    response = rt.api.request(
        "POST",
        "/orders",
        headers={**customer(f"c{n}"), "Content-Type": "application/json", "Idempotency-Key": f"k-{n}"},
        body=json.dumps(ITEMS),
    )
    assert response.status == 202, response.body
    return response.json()["orderId"]


class FlakyPutEvents:
    """Make EventBridge reject chosen OrderPlaced entries (by order id) the first `times` times they are sent."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, failing: set[str], times: int, code: str = "InternalFailure") -> None:
        self.failing, self.times, self.code = failing, times, code
        self.sent: dict[str, int] = {}
        original = EventsBackend.put_events

        def put_events(backend: EventsBackend, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
            results: list[dict[str, Any] | None] = []
            passing = []
            for event in events:
                if event.get("DetailType") != "OrderPlaced":  # the saga's own events pass untouched
                    results.append(None)
                    passing.append(event)
                    continue
                subject = json.loads(event["Detail"]).get("subject", "")
                self.sent[subject] = self.sent.get(subject, 0) + 1
                if subject in self.failing and self.sent[subject] <= self.times:
                    results.append({"ErrorCode": self.code, "ErrorMessage": "injected by the test"})
                else:
                    results.append(None)
                    passing.append(event)
            delivered = iter(original(backend, passing) if passing else [])
            return [r if r is not None else next(delivered) for r in results]

        monkeypatch.setattr(EventsBackend, "put_events", put_events)


def test_each_committed_event_reaches_the_bus_once_when_putevents_fails_some_entries(
    rt: Runtime, spy: BusSpy, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [place(rt, n) for n in range(12)]
    flaky = FlakyPutEvents(monkeypatch, failing={ids[1], ids[7], ids[11]}, times=1)
    rt.settle()
    delivered = spy.drain(only="OrderPlaced")
    assert sorted(e["detail"]["subject"] for e in delivered) == sorted(ids)  # every event, exactly once
    assert flaky.sent[ids[1]] == 2 and flaky.sent[ids[0]] == 1  # only the rejected entries were sent again
    assert _failure_messages(rt) == []


def test_throttling_of_every_entry_is_retried_without_loss(rt: Runtime, spy: BusSpy, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [place(rt, n) for n in range(3)]
    FlakyPutEvents(monkeypatch, failing=set(ids), times=2, code="ThrottlingException")
    rt.settle()
    assert sorted(e["detail"]["subject"] for e in spy.drain(only="OrderPlaced")) == sorted(ids)


def test_a_record_that_always_fails_goes_to_the_on_failure_queue_and_the_records_after_it_are_published(
    rt: Runtime, spy: BusSpy
) -> None:
    before = place(rt, 1)
    # A damaged event item (no envelope) committed between two good ones: it can never be published.
    table = rt.physical("OrdersTable").name
    boto3.client("dynamodb").put_item(
        TableName=table, Item={"pk": {"S": "poison"}, "sk": {"S": "0000000001"}, "kind": {"S": "event"}, "type": {"S": "Broken"}}
    )
    after = [place(rt, n) for n in range(2, 5)]
    rt.settle()

    delivered = spy.drain(only="OrderPlaced")
    # Every good record is published; the ones retried behind the poison record may be published again
    # (at-least-once: Lambda retries a stream batch from its first failed record), and consumers
    # deduplicate on the CloudEvents id, so what counts is the set of distinct events.
    assert {e["detail"]["subject"] for e in delivered} == {before, *after}
    assert len({e["detail"]["id"] for e in delivered}) == 4
    [failure] = _failure_messages(rt)
    info = failure["DDBStreamBatchInfo"]
    assert info["streamArn"] == rt.physical("OrdersTable").stream_arn
    assert info["batchSize"] >= 1
    poison_seq = _sequence_of(rt, "poison")
    assert int(info["startSequenceNumber"]) <= int(poison_seq) <= int(info["endSequenceNumber"])

    # the shard is not blocked: a later order still flows
    late = place(rt, 9)
    rt.settle()
    assert [e["detail"]["subject"] for e in spy.drain(only="OrderPlaced")][-1] == late


def _failure_messages(rt: Runtime) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    url = rt.physical("RelayOnFailureQueue").url
    bodies = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return bodies
        for m in messages:
            bodies.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def _sequence_of(rt: Runtime, pk: str) -> str:
    streams = boto3.client("dynamodbstreams")
    arn = rt.physical("OrdersTable").stream_arn
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = streams.get_records(ShardIterator=iterator, Limit=1000)["Records"]
    return next(r["dynamodb"]["SequenceNumber"] for r in records if r["dynamodb"]["Keys"]["pk"]["S"] == pk)


def test_unique_event_ids(rt: Runtime, spy: BusSpy) -> None:
    for n in range(5):
        place(rt, n)
    rt.settle()
    ids = [e["detail"]["id"] for e in spy.drain(only="OrderPlaced")]
    assert len(ids) == 5 == len(set(ids)) and all(uuid.UUID(i) for i in ids)


# What Lambda puts in _X_AMZN_TRACE_ID for an invocation (the AWS X-Ray developer guide's example header).
TRACE = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


class PutEventsEntries:
    """Observes the relay's PutEvents calls: every entry it sent, as sent."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def before_aws_call(self, invocation: Any, service: str, operation: str, params: dict[str, Any]) -> None:
        if invocation.handler == "relay.handler.handler" and (service, operation) == ("events", "PutEvents"):
            self.entries += json.loads(params["body"])["Entries"]  # the request as it goes on the wire


def test_each_entry_carries_the_relays_trace_header_and_each_event_its_order_id(
    rt: Runtime, spy: BusSpy, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Offline, no one sets the variable per invocation as Lambda does: set for the whole run, it stands for it.
    monkeypatch.setenv("_X_AMZN_TRACE_ID", TRACE)
    sent = rt.observe(PutEventsEntries())
    ids = [place(rt, n) for n in range(3)]
    rt.settle()
    placed = [e for e in sent.entries if e["DetailType"] == "OrderPlaced"]
    assert sorted(json.loads(e["Detail"])["subject"] for e in placed) == sorted(ids)
    assert sent.entries and {e.get("TraceHeader") for e in sent.entries} == {TRACE}  # every entry, every type
    delivered = spy.drain(only="OrderPlaced")
    assert sorted((e["detail"]["subject"], e["detail"]["correlationid"]) for e in delivered) == sorted((i, i) for i in ids)


def test_without_a_trace_context_entries_carry_no_trace_header(rt: Runtime, spy: BusSpy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)
    sent = rt.observe(PutEventsEntries())
    order_id = place(rt, 1)
    rt.settle()
    assert sent.entries and all("TraceHeader" not in e for e in sent.entries)
    assert [e["detail"]["subject"] for e in spy.drain(only="OrderPlaced")] == [order_id]
