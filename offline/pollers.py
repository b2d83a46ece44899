"""Event source mappings with Lambda's semantics: DynamoDB stream pollers and SQS pollers.

moto's own triggers run inside the write (or SendMessage) and drop records when the handler fails; the runtime
neutralises them (see lambdas.py) and polls instead. Pollers are driven by ``pump()`` (``Runtime.settle()`` in
tests, a background thread in serve mode); each call does at most one invocation per mapping.

Stream mappings (per shard: a read position plus the batch in flight and the halves left by bisection):

* records are read in order; FilterCriteria (EventBridge pattern syntax, moto's matcher) drop records, which
  count as processed; up to BatchSize matching records make a batch;
* success (or an empty ``batchItemFailures``) checkpoints after the batch;
* with ReportBatchItemFailures, failures reported by sequence number checkpoint before the lowest one and the
  retry starts there: with BisectBatchOnFunctionError only the rest of that batch is retried, without it the
  retry batch is read afresh from that record. An invalid report (empty, null or unknown itemIdentifier)
  fails the whole batch;
* a function error with BisectBatchOnFunctionError splits the batch in halves, retried one after the other
  (splitting does not count as a retry); otherwise the batch is retried;
* MaximumRetryAttempts and MaximumRecordAgeInSeconds bound the retries; then the batch's metadata goes to the
  OnFailure destination (invocation record with DDBStreamBatchInfo) and the poller moves past it, so a poison
  record never blocks the records after it. With infinite retries (-1, the default) Lambda blocks the shard
  until the record expires: offline, after ``infinite_retry_limit`` quick attempts the batch is retried only
  every ``blocked_retry_seconds`` (so ``settle()`` can return) and a warning says the shard is blocked.

SQS mappings: receive up to BatchSize messages, drop (delete) messages FilterCriteria rejects, invoke with
the SQS event shape, delete what succeeded, make failed messages visible again at once; the queue's
RedrivePolicy (moto's) moves them to the dead-letter queue after maxReceiveCount receives.
"""

from __future__ import annotations

import calendar
import datetime
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from moto.dynamodb.models import dynamodb_backends
from moto.events.models import EventPattern
from moto.sqs.models import sqs_backends

from offline import destinations
from offline.lambdas import InProcessLambdas, InvokeResult

log = logging.getLogger("offline.pollers")


def _now() -> float:
    """The clock of stream pollers: record ages and retry times (tests move it forward)."""
    return time.time()


def compile_filters(filter_criteria: dict[str, Any] | None) -> list[EventPattern]:
    patterns = []
    for item in (filter_criteria or {}).get("Filters") or []:
        pattern = item.get("Pattern")
        if pattern:
            patterns.append(EventPattern.load(pattern if isinstance(pattern, str) else json.dumps(pattern)))
    return patterns


def matches(patterns: list[EventPattern], record: dict[str, Any]) -> bool:
    """No filters: everything matches; otherwise any one filter (they are ORed, like Lambda's)."""
    return not patterns or any(pattern.matches_event(record) for pattern in patterns)


def _parse_batch_failures(result: InvokeResult, identifiers: list[str]) -> tuple[str, int | None]:
    """('ok'|'partial'|'failed', index of the first failed item) from a ReportBatchItemFailures response."""
    if result.function_error:
        return "failed", None
    try:
        response = result.json()
    except ValueError:
        return "ok", None
    if not isinstance(response, dict):
        return "ok", None
    failures = response.get("batchItemFailures")
    if not failures:
        return "ok", None
    if not isinstance(failures, list):
        return "failed", None
    positions = []
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not isinstance(identifier, str) or identifier not in identifiers:
            return "failed", None  # empty, null, misnamed or unknown identifier: the whole batch failed
        positions.append(identifiers.index(identifier))
    return "partial", min(positions)


# ====================================================================================== DynamoDB streams
@dataclass
class _StreamBatch:
    records: list[tuple[int, dict[str, Any]]]  # (position in the shard, Lambda record)
    failures: int = 0  # failed attempts counted against MaximumRetryAttempts
    invokes: int = 0
    not_before: float = 0.0
    last_result: InvokeResult | None = None
    blocked_warned: bool = False


@dataclass
class _Shard:
    position: int  # next record not yet read into a batch
    batch: _StreamBatch | None = None
    halves: deque[_StreamBatch] = field(default_factory=deque)


class StreamPoller:
    def __init__(
        self,
        *,
        mapping_uuid: str,
        lambdas: InProcessLambdas,
        retry_delay: Callable[[int], float],
        infinite_retry_limit: int,
        blocked_retry_seconds: float,
    ) -> None:
        self.mapping_uuid = mapping_uuid
        self.lambdas = lambdas
        self.retry_delay = retry_delay
        self.infinite_retry_limit = infinite_retry_limit
        self.blocked_retry_seconds = blocked_retry_seconds
        self._shards: dict[str, _Shard] = {}  # by shard id
        mapping = self._mapping()
        _, shard = self._source(mapping) if mapping else (None, None)
        if shard is not None and (mapping.starting_position or "TRIM_HORIZON") == "LATEST":
            self._shards[self._key(shard)] = _Shard(position=len(shard.items))

    # -- moto state
    def _mapping(self) -> Any:
        return self.lambdas.backend.get_event_source_mapping(self.mapping_uuid)

    def _source(self, mapping: Any) -> tuple[Any, Any]:
        arn = mapping.event_source_arn  # arn:aws:dynamodb:region:account:table/NAME/stream/LABEL
        _, _, _, region, account, resource = arn.split(":", 5)
        parts = resource.split("/")
        table = dynamodb_backends[account][region].tables.get(parts[1]) if len(parts) >= 4 else None
        if table is None or table.stream_shard is None or table.latest_stream_label != parts[3]:
            return None, None
        return table, table.stream_shard

    @staticmethod
    def _key(shard: Any) -> str:
        # The shard id, not the Python object: moto may hold the same shard in another object (a table restored
        # from a copy); a new stream (re-enabled, or a table recreated) has another label and another mapping ARN.
        return str(shard.id)

    # -- pumping
    def pump(self) -> bool:
        mapping = self._mapping()
        if mapping is None or not mapping.enabled:
            return False
        _, shard = self._source(mapping)
        if shard is None:
            return False
        state = self._shards.setdefault(self._key(shard), _Shard(position=0))
        progressed = False
        if state.batch is None:
            if state.halves:
                state.batch = state.halves.popleft()
            else:
                before = state.position
                state.batch = self._read(mapping, shard, state, [])
                progressed = state.position != before
                if state.batch is None:
                    return progressed
        batch = state.batch
        if batch.not_before > _now():
            return progressed
        return self._process(mapping, shard, state, batch) or progressed

    def _read(self, mapping: Any, shard: Any, state: _Shard, start: list[tuple[int, dict[str, Any]]]
              ) -> _StreamBatch | None:
        """Read matching records from the shard after ``start`` up to BatchSize; filtered records are skipped."""
        patterns = compile_filters(mapping.filter_criteria)
        records = list(start)
        while len(records) < int(mapping.batch_size) and state.position < len(shard.items):
            record = self._lambda_record(shard.items[state.position], mapping)
            if matches(patterns, record):
                records.append((state.position, record))
            state.position += 1
        return _StreamBatch(records=records) if records else None

    def _lambda_record(self, stream_record: Any, mapping: Any) -> dict[str, Any]:
        raw = stream_record.record
        dynamodb = dict(raw["dynamodb"])
        created = dynamodb.get("ApproximateCreationDateTime")
        if isinstance(created, datetime.datetime):
            dynamodb["ApproximateCreationDateTime"] = _epoch(created)
        return {
            "eventID": raw["eventID"],
            "eventName": raw["eventName"],
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": mapping.region,
            "dynamodb": dynamodb,
            "eventSourceARN": mapping.event_source_arn,
        }

    def _process(self, mapping: Any, shard: Any, state: _Shard, batch: _StreamBatch) -> bool:
        max_age = _int_or(mapping.max_record_age, -1)
        if max_age >= 0:
            now = _now()
            expired = [item for item in batch.records
                       if now - item[1]["dynamodb"].get("ApproximateCreationDateTime", now) > max_age]
            if expired:
                self._on_failure(mapping, shard, expired, batch, "RecordAgeExceeded")
                batch.records = [item for item in batch.records if item not in expired]
                if not batch.records:
                    state.batch = None
                    return True
        identifiers = [record["dynamodb"]["SequenceNumber"] for _, record in batch.records]
        result = self.lambdas.invoke(mapping.function_arn, {"Records": [record for _, record in batch.records]})
        batch.invokes += 1
        batch.last_result = result
        reports = "ReportBatchItemFailures" in (mapping.function_response_types or [])
        if reports:
            outcome, first_failed = _parse_batch_failures(result, identifiers)
        else:
            outcome, first_failed = ("failed" if result.function_error else "ok"), None
        if outcome == "ok":
            state.batch = None
            return True
        bisect = bool(mapping.bisect_on_error)
        if outcome == "failed" and bisect and len(batch.records) > 1:
            middle = len(batch.records) // 2
            first = _StreamBatch(records=batch.records[:middle], failures=batch.failures, invokes=batch.invokes,
                                 last_result=result)
            second = _StreamBatch(records=batch.records[middle:], failures=batch.failures, invokes=batch.invokes,
                                  last_result=result)
            state.batch = first
            state.halves.appendleft(second)
            return True
        if outcome == "partial":
            assert first_failed is not None
            batch.records = batch.records[first_failed:]  # the records before it are checkpointed
        batch.failures += 1
        max_retries = _int_or(mapping.max_retry_attempts, -1)
        if 0 <= max_retries < batch.failures:
            self._on_failure(mapping, shard, batch.records, batch, "RetryAttemptsExhausted")
            state.batch = None
            return True
        if outcome == "partial" and not bisect:
            # Retry from the failed record with a batch read afresh (it may take in newer records).
            refill = _Shard(position=batch.records[-1][0] + 1)
            fresh = self._read(mapping, shard, refill, batch.records)
            assert fresh is not None
            state.position = max(state.position, refill.position)
            fresh.failures, fresh.invokes, fresh.last_result = batch.failures, batch.invokes, result
            batch = state.batch = fresh
        return self._schedule_retry(mapping, batch)

    def _schedule_retry(self, mapping: Any, batch: _StreamBatch) -> bool:
        max_retries = _int_or(mapping.max_retry_attempts, -1)
        if max_retries < 0 and batch.failures >= self.infinite_retry_limit:
            if not batch.blocked_warned:
                batch.blocked_warned = True
                log.warning(
                    "event source mapping %s: the batch at sequence number %s failed %d times and "
                    "MaximumRetryAttempts is infinite: the shard is blocked until the record expires "
                    "(retrying every %.0f s)", mapping.uuid, batch.records[0][1]["dynamodb"]["SequenceNumber"],
                    batch.failures, self.blocked_retry_seconds)
            batch.not_before = _now() + self.blocked_retry_seconds
            return True
        batch.not_before = _now() + self.retry_delay(batch.failures)
        return True

    def _on_failure(self, mapping: Any, shard: Any, records: list[tuple[int, dict[str, Any]]],
                    batch: _StreamBatch, condition: str) -> None:
        first, last = records[0][1]["dynamodb"], records[-1][1]["dynamodb"]
        log.warning("event source mapping %s: giving up on %d record(s) %s..%s (%s)", mapping.uuid, len(records),
                    first["SequenceNumber"], last["SequenceNumber"], condition)
        destination = ((mapping.destination_config or {}).get("OnFailure") or {}).get("Destination")
        if not destination:
            return
        response_context: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
        if batch.last_result is not None and batch.last_result.function_error:
            response_context["functionError"] = batch.last_result.function_error
        record = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": mapping.function_arn,
                "condition": condition,
                "approximateInvokeCount": batch.invokes,
            },
            "responseContext": response_context,
            "version": "1.0",
            "timestamp": destinations.utc_timestamp(),
            "DDBStreamBatchInfo": {
                "shardId": shard.id,
                "startSequenceNumber": first["SequenceNumber"],
                "endSequenceNumber": last["SequenceNumber"],
                "approximateArrivalOfFirstRecord": destinations.utc_timestamp(
                    first.get("ApproximateCreationDateTime"), millis=True),
                "approximateArrivalOfLastRecord": destinations.utc_timestamp(
                    last.get("ApproximateCreationDateTime"), millis=True),
                "batchSize": len(records),
                "streamArn": mapping.event_source_arn,
            },
        }
        try:
            destinations.send(destination, json.dumps(record), invoke_async=self.lambdas.invoke_async)
        except Exception:
            log.exception("event source mapping %s: could not send to the on-failure destination %s",
                          mapping.uuid, destination)


# ====================================================================================== SQS
class SqsPoller:
    def __init__(self, *, mapping_uuid: str, lambdas: InProcessLambdas, infinite_retry_limit: int) -> None:
        self.mapping_uuid = mapping_uuid
        self.lambdas = lambdas
        self.infinite_retry_limit = infinite_retry_limit
        self._warned: set[str] = set()

    def _mapping(self) -> Any:
        return self.lambdas.backend.get_event_source_mapping(self.mapping_uuid)

    @staticmethod
    def _queue(mapping: Any) -> tuple[Any, Any]:
        _, _, _, region, account, name = mapping.event_source_arn.split(":", 5)
        backend = sqs_backends[account][region]
        return backend, backend.queues.get(name)

    def pump(self) -> bool:
        mapping = self._mapping()
        if mapping is None or not mapping.enabled:
            return False
        backend, queue = self._queue(mapping)
        if queue is None:
            return False
        messages = backend.receive_message(
            queue.name, int(mapping.batch_size), 0, int(queue.visibility_timeout or 30), ["All"]
        )
        if not messages:
            return False
        patterns = compile_filters(mapping.filter_criteria)
        records, handles = [], {}
        for message in messages:
            record = self._record(message, mapping, queue)
            if matches(patterns, _filterable(record)):
                records.append(record)
                handles[record["messageId"]] = message.receipt_handle
            else:  # Lambda deletes messages its filters reject
                backend.delete_message(queue.name, message.receipt_handle)
        if not records:
            return True
        result = self.lambdas.invoke(mapping.function_arn, {"Records": records})
        if "ReportBatchItemFailures" in (mapping.function_response_types or []):
            outcome, _ = _parse_batch_failures(result, list(handles))
        else:
            outcome = "failed" if result.function_error else "ok"
        if outcome == "ok":
            failed: set[str] = set()
        elif outcome == "failed":
            failed = set(handles)
        else:
            response = result.json()
            failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        for message_id, handle in handles.items():
            if message_id in failed:
                self._retry_soon(queue, handle, message_id)
            else:
                backend.delete_message(queue.name, handle)
        return True

    def _retry_soon(self, queue: Any, receipt_handle: str, message_id: str) -> None:
        """Make a failed message visible again now, unless it has failed too often with nowhere to go."""
        for message in queue._messages:
            if message.had_receipt_handle(receipt_handle):
                if queue.dead_letter_queue is None and message.approximate_receive_count >= self.infinite_retry_limit:
                    if message_id not in self._warned:
                        self._warned.add(message_id)
                        log.warning("SQS message %s on %s failed %d times and the queue has no redrive policy: "
                                    "it comes back after the visibility timeout, as on AWS", message_id,
                                    queue.name, message.approximate_receive_count)
                    return
                message.visible_at = 0
                return

    def _record(self, message: Any, mapping: Any, queue: Any) -> dict[str, Any]:
        attributes = {
            "ApproximateReceiveCount": str(message.approximate_receive_count),
            "SentTimestamp": str(message.sent_timestamp),
            "SenderId": str(message.sender_id),
            "ApproximateFirstReceiveTimestamp": str(message.approximate_first_receive_timestamp),
        }
        if queue.fifo_queue:
            attributes["SequenceNumber"] = str(message.sequence_number)
            attributes["MessageGroupId"] = str(message.group_id)
            attributes["MessageDeduplicationId"] = str(message.deduplication_id)
        trace = (message.system_attributes or {}).get("AWSTraceHeader")
        if trace:
            attributes["AWSTraceHeader"] = trace.get("StringValue") if isinstance(trace, dict) else str(trace)
        record: dict[str, Any] = {
            "messageId": message.id,
            "receiptHandle": message.receipt_handle,
            "body": message.body,
            "attributes": attributes,
            "messageAttributes": {
                name: _lambda_message_attribute(value) for name, value in message.message_attributes.items()
            },
            "md5OfBody": message.body_md5,
            "eventSource": "aws:sqs",
            "eventSourceARN": mapping.event_source_arn,
            "awsRegion": mapping.region,
        }
        if message.message_attributes:
            record["md5OfMessageAttributes"] = message.attribute_md5
        return record


def _lambda_message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    converted: dict[str, Any] = {"stringListValues": [], "binaryListValues": [], "dataType": value.get("DataType")}
    if "StringValue" in value:
        converted["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        binary = value["BinaryValue"]
        converted["binaryValue"] = binary.decode() if isinstance(binary, bytes) else binary
    return converted


def _filterable(record: dict[str, Any]) -> dict[str, Any]:
    """Lambda filters SQS records on the body's JSON fields when the body is a JSON object."""
    try:
        body = json.loads(record["body"])
    except ValueError:
        return record
    return {**record, "body": body} if isinstance(body, dict) else record


def _epoch(moment: datetime.datetime) -> int:
    if moment.tzinfo is not None:
        return int(moment.timestamp())
    return calendar.timegm(moment.utctimetuple())  # moto keeps naive UTC datetimes


def _int_or(value: Any, default: int) -> int:
    return default if value is None else int(value)
