"""Count every billable AWS operation an offline runtime performs, in the units AWS bills, without changing it.

    meter = Meter(rt).start()        # rt: a started offline.runtime.Runtime
    ...                              # drive the system: rt.api.request(...), rt.settle()
    usage = meter.stop()             # a Usage: quantities per price key and resource, operations, facts

What is counted, and where (nothing names a function, table or queue: everything is read from what runs):

* API Gateway REST requests: a wrapper around each ``rt.apis`` gateway's ``request`` (per instance, not the
  class); the stage's access log line (its ``AccessLogSetting.Format`` from the template, rendered with the
  request's values) counts as log bytes. Requests the gateway's own authorizer refuses (401) are not billed.
* Lambda: the runtime's observer hooks (``invocation_started`` / ``invocation_finished``, offline/observe.py):
  one request per invocation, duration billed per 1 ms at the function's memory, on its architecture. The time
  this meter itself spends inside an invocation (item sizes of DynamoDB calls) is subtracted. The wall-clock
  duration (what the runtime measures) is billed; the invocation thread's CPU time is kept beside it
  (``functions[...]["cpu_ms"]``, ``cpu_gb_seconds``): wall time on a loaded machine includes waiting for a CPU.
  What the invocation writes to stdout/stderr (Powertools logs and EMF metrics) is captured by a tee on
  ``sys.stdout``, ``sys.stderr`` and the plain logging handlers, and attributed to the invocation through
  ``offline.observe.current()``; Lambda's own START/END/REPORT(/XRAY) lines are added. The trigger of each
  invocation (API, DynamoDB stream, SQS, direct) is read from its event by wrapping moto's
  ``LambdaFunction._invoke_lambda`` (the seam the runtime itself replaced).
* DynamoDB (on demand): a wrapper around each data-plane action of moto's ``DynamoHandler``, i.e. once per API
  call whoever makes it. Item sizes follow DynamoDB's rules (``item_size``); writes bill the larger of the item
  before and after in 1 KB units, reads 4 KB units (half for eventually consistent reads, Query/Scan summed over
  every item read before any FilterExpression), transactions twice, a ConditionCheck like a write of the item
  it checks, conditional writes that fail still consume, and every write maintains the table's secondary
  indexes (a change of an index key is a delete plus a put in the index). Stream reads by Lambda are free.
* SQS: wrappers around moto's ``SQSBackend`` send/receive/delete (the runtime's pollers and EventBridge's
  deliveries call the backend directly), each request in 64 KB chunks of payload. Deletes made by a Lambda
  poller count as one DeleteMessageBatch per received batch, as Lambda does. Empty receives are counted apart:
  on AWS the poller's idle long polls are a fixed cost per queue, not a cost per order.
* EventBridge: a wrapper around ``EventsBackend.put_events``: one event per 64 KB chunk of each accepted
  entry (entry size as EventBridge computes it); events that reach an archive are counted in bytes after the run.
* Step Functions: a wrapper around ``StartExecution`` (which executions this window started); after the run
  the execution histories give Standard state transitions (every state entered, plus every retry) or Express
  requests and duration (64 MB, billed per 100 ms).
* CloudWatch Logs: besides the Lambda output above, every ``PutLogEvents`` into the emulated CloudWatch Logs
  (the runtime writes each execution's log there at the state machine's log level); for a runtime that writes
  none, the execution log is rebuilt from the history at the template's log level.
* SES: the SES backend's sent-message counter (one email per recipient).
* X-Ray: trace roots (API requests on a traced stage, stream-triggered invocations of actively traced
  functions); the sampling rate is a pricing assumption, applied by whoever prices the usage.

Only one Meter may run at a time. Stop it before the runtime (``Runtime.stop`` undoes moto's patches; the meter
leaves alone any attribute that is no longer its own).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime
import functools
import inspect
import json
import logging
import math
import re
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from offline import observe

log = logging.getLogger("offline.metering")

WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096
CHUNK_BYTES = 64 * 1024  # SQS requests and EventBridge events are billed per 64 KB chunk of payload
GB = 1024**3
EXPRESS_MEMORY_MB = 64  # Express workflows are billed in 64 MB chunks; this saga's state is far below one
EXPRESS_BILLING_MS = 100
SQS_BATCH_MAX = 10

# =========================================================================================== unit math (pure)


def number_size(text: str) -> int:
    """Bytes of a DynamoDB number: 1 byte per two significant digits, plus 1 (leading/trailing zeros trimmed)."""
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        return len(str(text)) + 1
    digits = "".join(str(d) for d in value.as_tuple().digits).strip("0")
    return math.ceil(max(len(digits), 1) / 2) + 1


def _binary_size(value: Any) -> int:
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    try:
        return len(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError, TypeError):
        return len(str(value).encode())


def attribute_value_size(value: Mapping[str, Any]) -> int:
    """Bytes of one attribute value (DynamoDB JSON, e.g. ``{"S": "x"}``), without its name."""
    (kind, content), = value.items()
    if kind == "S":
        return len(content.encode())
    if kind == "N":
        return number_size(content)
    if kind == "B":
        return _binary_size(content)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(item.encode()) for item in content)
    if kind == "NS":
        return sum(number_size(item) for item in content)
    if kind == "BS":
        return sum(_binary_size(item) for item in content)
    if kind == "L":  # 3 bytes for the list, 1 per element
        return 3 + sum(1 + attribute_value_size(item) for item in content)
    if kind == "M":
        return 3 + sum(1 + len(name.encode()) + attribute_value_size(item) for name, item in content.items())
    raise ValueError(f"unknown DynamoDB attribute type {kind!r}")


def item_size(item: Mapping[str, Mapping[str, Any]] | None) -> int:
    """Bytes of an item as DynamoDB bills it: the UTF-8 names plus the values of its attributes."""
    if not item:
        return 0
    return sum(len(name.encode()) + attribute_value_size(value) for name, value in item.items())


def write_units(size: int, *, transactional: bool = False) -> int:
    """Write request units of one item write: 1 per started KB (an absent item counts as 1 KB), x2 in a transaction."""
    units = math.ceil(max(size, 1) / WRITE_UNIT_BYTES)
    return units * (2 if transactional else 1)


def read_units(size: int, *, consistent: bool, transactional: bool = False) -> float:
    """Read request units of one read of ``size`` bytes, per started 4 KB: 1 strongly consistent, 0.5 eventually,
    2 transactional."""
    units = math.ceil(max(size, 1) / READ_UNIT_BYTES)
    if transactional:
        return units * 2.0
    return units * (1.0 if consistent else 0.5)


def chunks(size: int, chunk: int = CHUNK_BYTES) -> int:
    """Billed requests (or events) for a payload of ``size`` bytes: one per started 64 KB chunk, at least one."""
    return max(1, math.ceil(size / chunk))


def eventbridge_entry_size(entry: Mapping[str, Any]) -> int:
    """Size of a PutEvents entry as EventBridge meters it: Time (14 bytes), Source, DetailType, Detail, Resources."""
    size = 14 if entry.get("Time") is not None else 0
    for name in ("Source", "DetailType", "Detail"):
        size += len(str(entry.get(name) or "").encode())
    size += sum(len(str(resource).encode()) for resource in entry.get("Resources") or [])
    return size


def sqs_message_size(body: str | bytes, attributes: Mapping[str, Mapping[str, Any]] | None = None) -> int:
    """Payload bytes of one SQS message: the body plus each attribute's name, data type and value."""
    size = len(body.encode() if isinstance(body, str) else body)
    for name, attribute in (attributes or {}).items():
        size += len(name.encode()) + len(str(attribute.get("DataType", attribute.get("data_type", ""))).encode())
        for key in ("StringValue", "string_value"):
            if attribute.get(key) is not None:
                size += len(str(attribute[key]).encode())
        for key in ("BinaryValue", "binary_value"):
            if attribute.get(key) is not None:
                size += _binary_size(attribute[key])
    return size


def lambda_billed(duration_s: float, memory_mb: int) -> tuple[int, float]:
    """(billed milliseconds, GB-seconds) of one invocation: duration rounded up to 1 ms, at the configured memory."""
    billed_ms = max(1, math.ceil(duration_s * 1000 - 1e-9))
    return billed_ms, memory_mb / 1024 * billed_ms / 1000


def express_billed(duration_s: float, memory_mb: int = EXPRESS_MEMORY_MB) -> tuple[int, float]:
    """(billed milliseconds, GB-seconds) of one Express execution: per started 100 ms, memory in 64 MB chunks."""
    billed_ms = max(EXPRESS_BILLING_MS, math.ceil(duration_s * 1000 / EXPRESS_BILLING_MS - 1e-9) * EXPRESS_BILLING_MS)
    memory = math.ceil(max(memory_mb, 1) / EXPRESS_MEMORY_MB) * EXPRESS_MEMORY_MB
    return billed_ms, memory / 1024 * billed_ms / 1000


@dataclass(frozen=True)
class IndexSpec:
    """A secondary index as billing sees it: its key attributes and what it projects."""

    name: str
    keys: tuple[str, ...]  # the index's own key attributes
    table_keys: tuple[str, ...]
    projection: str = "ALL"  # ALL | KEYS_ONLY | INCLUDE
    non_key_attributes: tuple[str, ...] = ()

    def entry(self, item: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """The item's entry in this index, or None when the item lacks an index key (then it is not indexed)."""
        if not item or any(key not in item for key in self.keys):
            return None
        if self.projection == "ALL":
            return dict(item)
        wanted = set(self.keys) | set(self.table_keys)
        if self.projection == "INCLUDE":
            wanted |= set(self.non_key_attributes)
        return {name: value for name, value in item.items() if name in wanted}


def index_writes(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, index: IndexSpec) -> list[int]:
    """Sizes of the index writes that one table write causes (each is billed as a write of that size).

    Not indexed before or after: none. Added: a put. Removed: a delete. Index key changed: a delete and a put.
    Same key: a write of the larger entry if the projected attributes changed, none otherwise.
    """
    old, new = index.entry(before), index.entry(after)
    if old is None and new is None:
        return []
    if old is None:
        return [item_size(new)]
    if new is None:
        return [item_size(old)]
    if any(old[key] != new[key] for key in index.keys):
        return [item_size(old), item_size(new)]
    if old == new:
        return []
    return [max(item_size(old), item_size(new))]


# =========================================================================================== usage


@dataclass
class Usage:
    """What one metering window consumed.

    ``quantities``: (price key, resource) -> quantity in the price key's unit (requests, units, GB-seconds, GB...).
    ``operations``: (service, operation, resource) -> count of API operations (not all billed: see quantities).
    ``functions``: per Lambda function: invocations, memory, architecture, duration and billed ms, log bytes,
    triggers. ``custom_metrics``: distinct EMF metrics seen (namespace, name, dimensions).
    ``facts``: everything else worth reporting (window seconds, executions, empty receives...).
    """

    quantities: dict[tuple[str, str], float] = field(default_factory=dict)
    operations: dict[tuple[str, str, str], float] = field(default_factory=dict)
    functions: dict[str, dict[str, Any]] = field(default_factory=dict)
    custom_metrics: set[tuple[str, str, tuple[tuple[str, str], ...]]] = field(default_factory=set)
    facts: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def combine(cls, usages: Iterable[Usage]) -> Usage:
        """One Usage for several windows (runs split across runtimes): quantities, operations and facts add up."""
        combined = cls()
        quantities: Counter[tuple[str, str]] = Counter()
        operations: Counter[tuple[str, str, str]] = Counter()
        facts: Counter[str] = Counter()
        for usage in usages:
            quantities.update(usage.quantities)
            operations.update(usage.operations)
            facts.update({k: v for k, v in usage.facts.items() if isinstance(v, (int, float))})
            combined.custom_metrics |= usage.custom_metrics
            for name, stats in usage.functions.items():
                into = combined.functions.setdefault(name, {
                    key: value for key, value in stats.items() if key not in _ADDITIVE_FUNCTION_STATS})
                for key in _ADDITIVE_FUNCTION_STATS:
                    if key == "triggers":
                        into["triggers"] = dict(Counter(into.get("triggers") or {}) + Counter(stats.get("triggers")))
                    elif key == "durations_ms":
                        into["durations_ms"] = sorted([*into.get("durations_ms", []), *stats.get("durations_ms", [])])
                    else:
                        into[key] = into.get(key, 0) + stats.get(key, 0)
        for stats in combined.functions.values():
            stats.update(_percentiles(stats.get("durations_ms", [])))
        combined.quantities, combined.operations, combined.facts = dict(quantities), dict(operations), dict(facts)
        return combined

    def total(self, key: str) -> float:
        return sum(quantity for (name, _), quantity in self.quantities.items() if name == key)

    def ops(self, service: str, operation: str | None = None) -> float:
        return sum(count for (svc, op, _), count in self.operations.items()
                   if svc == service and (operation is None or op == operation))

    def to_dict(self) -> dict[str, Any]:
        return {
            "quantities": [{"key": k, "resource": r, "quantity": q} for (k, r), q in sorted(self.quantities.items())],
            "operations": [{"service": s, "operation": o, "resource": r, "count": c}
                           for (s, o, r), c in sorted(self.operations.items())],
            "functions": {name: {k: v for k, v in stats.items() if k != "durations_ms"}
                          for name, stats in self.functions.items()},
            "custom_metrics": [{"namespace": ns, "name": name, "dimensions": dict(dims)}
                               for ns, name, dims in sorted(self.custom_metrics)],
            "facts": self.facts,
        }


_ADDITIVE_FUNCTION_STATS = ("invocations", "errors", "duration_ms", "cpu_ms", "cpu_gb_seconds", "billed_ms",
                            "gb_seconds", "log_bytes",
                            "platform_log_bytes", "meter_overhead_ms", "triggers", "durations_ms")


def _percentiles(durations: list[float]) -> dict[str, float]:
    if not durations:
        return {}
    ordered = sorted(durations)
    p95 = ordered[min(len(ordered) - 1, math.ceil(len(ordered) * 0.95) - 1)]
    return {"p50_ms": ordered[len(ordered) // 2], "p95_ms": p95}


class _Counts:
    """Thread-safe accumulation behind a Usage."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.quantities: Counter[tuple[str, str]] = Counter()
        self.operations: Counter[tuple[str, str, str]] = Counter()
        self.functions: dict[str, dict[str, Any]] = {}
        self.custom_metrics: set[tuple[str, str, tuple[tuple[str, str], ...]]] = set()
        self.facts: Counter[str] = Counter()

    def add(self, key: str, resource: str, quantity: float) -> None:
        if quantity:
            with self.lock:
                self.quantities[(key, resource)] += quantity

    def op(self, service: str, operation: str, resource: str, count: float = 1) -> None:
        with self.lock:
            self.operations[(service, operation, resource)] += count

    def fact(self, name: str, value: float = 1) -> None:
        with self.lock:
            self.facts[name] += value


# =========================================================================================== the meter


class _Tee:
    """Stands in for sys.stdout/sys.stderr: writes go through unchanged; those of an invocation are also counted."""

    def __init__(self, target: Any, meter: Meter) -> None:
        self._target = target
        self._meter = meter

    def write(self, text: str) -> int:
        invocation = observe.current()
        if invocation is not None:
            self._meter._log_write(invocation, text)
        return self._target.write(text)

    def flush(self) -> None:
        self._target.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


_ACTIVE_LOCK = threading.Lock()
_ACTIVE: Meter | None = None

_DYNAMODB_ACTIONS = ("put_item", "update_item", "delete_item", "get_item", "batch_get_item", "batch_write_item",
                     "query", "scan", "transact_get_items", "transact_write_items")
_SQS_ACTIONS = ("send_message", "send_message_batch", "receive_message", "delete_message", "delete_message_batch",
                "change_message_visibility", "change_message_visibility_batch")
_SCHEDULED = ("TaskScheduled", "LambdaFunctionScheduled", "ActivityScheduled")
_FAILURE_EVENT = re.compile(r"(Failed|TimedOut|Aborted)$")
_CONTEXT_VARIABLE = re.compile(r"\$context\.([A-Za-z0-9_.]+)")


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _dynamo_json(item: Any) -> dict[str, Any] | None:
    """A moto Item as DynamoDB JSON (a detached copy), or None."""
    if item is None:
        return None
    return item.to_json()["Attributes"]


def _history_type(event: Mapping[str, Any]) -> str:
    kind = event.get("type")
    return str(getattr(kind, "value", kind))


class Meter:
    """Counts what a started Runtime does between ``start()`` and ``stop()``; see the module docstring."""

    def __init__(self, runtime: Any) -> None:
        self.rt = runtime
        self._counts = _Counts()
        self._patches: list[tuple[Any, str, Any, Any, bool]] = []  # owner, name, original, replacement, had
        self._local = threading.local()
        self._write_lock = threading.RLock()  # before/after images of a write are taken with no other write between
        self._logs: dict[str, list[str]] = defaultdict(list)
        self._overhead: Counter[str] = Counter()  # request id -> seconds this meter spent inside the invocation
        self._triggers: dict[str, str] = {}
        self._cpu_started: dict[str, float] = {}
        self._functions: dict[str, dict[str, Any]] = {}  # function name -> config facts (memory, arch, tracing)
        self._receives: dict[str, dict[str, Any]] = {}  # receipt handle -> poller receive group
        self._receive_groups: list[dict[str, Any]] = []
        self._executions: list[Any] = []
        self._published: list[dict[str, Any]] = []
        self._names: dict[str, str] = {}
        self._api_tracing: dict[int, bool] = {}
        self._access_formats: dict[int, str | None] = {}
        self._state_machine_logging: dict[str, tuple[str, bool]] = {}
        self._log_group_sources: dict[str, str] = {}  # log group name -> usage resource of what writes to it
        self._log_groups_written: set[str] = set()
        self._archive_marks: dict[int, int] = {}
        self._ses_marks: dict[int, int] = {}
        self._storage_before: dict[str, int] = {}
        self._tees: tuple[_Tee, _Tee] | None = None
        self._started_at = 0.0
        self._running = False
        self.usage: Usage | None = None

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Meter:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        if self._running:
            self.stop()

    def start(self) -> Meter:
        global _ACTIVE
        with _ACTIVE_LOCK:
            if _ACTIVE is not None:
                raise RuntimeError("another Meter is running: stop() it first")
            _ACTIVE = self
        try:
            self._read_configuration()
            self._mark_backends()
            self.rt.observe(self)
            self._install_patches()
            self._install_tees()
        except BaseException:
            self._uninstall()
            raise
        self._started_at = time.monotonic()
        self._running = True
        return self

    def stop(self) -> Usage:
        """End the window (call after ``rt.settle()``): read the histories, undo every hook, return the Usage."""
        if not self._running:
            raise RuntimeError("the meter is not running")
        self._running = False
        elapsed = time.monotonic() - self._started_at
        try:
            self._collect_step_functions()
            self._collect_archives()
            self._collect_ses()
            self._collect_storage()
            self._close_receive_groups()
        finally:
            self._uninstall()
        counts = self._counts
        functions = {name: dict(stats) for name, stats in counts.functions.items()}
        for stats in functions.values():
            stats["triggers"] = dict(stats.get("triggers") or {})
            stats["durations_ms"] = sorted(stats.get("durations_ms", []))
            stats.update(_percentiles(stats["durations_ms"]))
        self.usage = Usage(
            quantities=dict(counts.quantities),
            operations=dict(counts.operations),
            functions=functions,
            custom_metrics=set(counts.custom_metrics),
            facts={**dict(counts.facts), "window_seconds": round(elapsed, 3)},
        )
        return self.usage

    @property
    def published_entries(self) -> list[dict[str, Any]]:
        """The PutEvents entries accepted during the window (copies), in order: what a redelivery would send."""
        return [dict(entry) for entry in self._published]

    def _uninstall(self) -> None:
        global _ACTIVE
        try:
            self.rt.observers.remove(self)
            self._uninstall_tees()
            while self._patches:
                owner, name, original, replacement, had = self._patches.pop()
                current = vars(owner).get(name) if isinstance(owner, type) else owner.__dict__.get(name)
                if current is not replacement:
                    continue  # someone (the runtime's stop) already put something else there: leave it
                if had:
                    setattr(owner, name, original)
                else:
                    delattr(owner, name)
        finally:
            with _ACTIVE_LOCK:
                if _ACTIVE is self:
                    _ACTIVE = None

    def _patch(self, owner: Any, name: str, replacement: Any) -> None:
        if isinstance(owner, type):
            had = name in vars(owner)
            original = vars(owner).get(name)
        else:
            had = name in owner.__dict__
            original = owner.__dict__.get(name)
        setattr(owner, name, replacement)
        self._patches.append((owner, name, original, replacement, had))

    # ------------------------------------------------------------------ configuration read once
    def _read_configuration(self) -> None:
        from offline.deploy import readable_name

        for logical_id, physical in (self.rt.resources or {}).items():
            readable = readable_name(logical_id)
            for value in (physical.name, physical.arn, physical.ref):
                if isinstance(value, str) and value:
                    self._names.setdefault(value, readable)
        resources = self.rt.template.resources
        for logical_id, resource in resources.items():
            properties = resource.get("Properties") or {}
            if resource.get("Type") == "AWS::StepFunctions::StateMachine":
                physical = self.rt.resources.get(logical_id)
                config = properties.get("LoggingConfiguration") or {}
                if physical is not None and physical.arn:
                    self._state_machine_logging[physical.arn] = (
                        str(config.get("Level", "OFF")).upper() if config.get("Destinations") else "OFF",
                        bool(config.get("IncludeExecutionData", False)),
                    )
                    for destination in config.get("Destinations") or []:
                        group_arn = (destination.get("CloudWatchLogsLogGroup") or {}).get("LogGroupArn")
                        group = self.rt.resources.get((group_arn or {}).get("Fn::GetAtt", [None])[0]) \
                            if isinstance(group_arn, dict) else None
                        if group is not None:
                            self._log_group_sources[group.name] = f"stepfunctions:{readable_name(logical_id)}"
        for api_id, gateway in (self.rt.apis or {}).items():
            stage = self._stage_properties(api_id, gateway.stage)
            self._api_tracing[id(gateway)] = bool(stage.get("TracingEnabled"))
            self._access_formats[id(gateway)] = (stage.get("AccessLogSetting") or {}).get("Format")

    def _stage_properties(self, api_logical_id: str, stage_name: str) -> dict[str, Any]:
        for resource in self.rt.template.resources.values():
            properties = resource.get("Properties") or {}
            if resource.get("Type") != "AWS::ApiGateway::Stage" or properties.get("StageName") != stage_name:
                continue
            if properties.get("RestApiId") in ({"Ref": api_logical_id}, api_logical_id):
                return properties
        return {}

    def name(self, physical: str | None) -> str:
        """The readable name (logical id without CDK's hash) of a physical name or ARN, else the input."""
        if not physical:
            return "-"
        if physical in self._names:
            return self._names[physical]
        for suffix in (physical.rsplit(":", 1)[-1], physical.rsplit("/", 1)[-1]):
            if suffix in self._names:
                return self._names[suffix]
        prefix = f"{self.rt.stack_name}-"
        tail = physical.rsplit(":", 1)[-1].rsplit("/", 1)[-1]
        return tail[len(prefix):] if tail.startswith(prefix) else tail

    # ------------------------------------------------------------------ observer hooks (offline/observe.py)
    def invocation_started(self, invocation: observe.Invocation) -> None:
        try:
            self._invocation_started(invocation)
        except Exception:
            log.exception("metering failed (the invocation itself is unaffected)")
            self._counts.fact("meter_errors")

    def invocation_finished(self, invocation: observe.Invocation, duration_s: float, error_type: str | None) -> None:
        try:
            self._invocation_finished(invocation, duration_s, error_type)
        except Exception:
            log.exception("metering failed (the invocation itself is unaffected)")
            self._counts.fact("meter_errors")

    def _invocation_started(self, invocation: observe.Invocation) -> None:
        trigger = getattr(self._local, "trigger", None) or ("direct", {})
        self._local.trigger = None
        self._triggers[invocation.request_id] = trigger[0]
        self._cpu_started[invocation.request_id] = time.thread_time()
        config = trigger[1] or self._functions.get(invocation.function_name) or {}
        if config:
            self._functions[invocation.function_name] = config

    def _invocation_finished(self, invocation: observe.Invocation, duration_s: float, error_type: str | None
                             ) -> None:
        counts = self._counts
        name = invocation.function_name
        readable = self.name(name)
        config = self._functions.get(name, {})
        architecture = config.get("architecture", "x86_64")
        tracing = config.get("tracing", False)
        overhead = self._overhead.pop(invocation.request_id, 0.0)
        measured = max(duration_s - overhead, 0.0)
        cpu_started = self._cpu_started.pop(invocation.request_id, None)
        cpu = max(time.thread_time() - cpu_started - overhead, 0.0) if cpu_started is not None else measured
        billed_ms, gb_seconds = lambda_billed(measured, invocation.memory_mb)
        trigger = self._triggers.pop(invocation.request_id, "direct")
        lines = "".join(self._logs.pop(invocation.request_id, []))
        log_bytes = len(lines.encode())
        platform = (self._platform_lines(invocation, measured * 1000, billed_ms, tracing)
                    if self._platform_logged(name) else "")
        counts.add("lambda.request", readable, 1)
        counts.add(f"lambda.{architecture}.gb_second", readable, gb_seconds)
        counts.add("logs.ingested_gb", f"lambda:{readable}", log_bytes / GB)
        counts.add("logs.ingested_gb", f"lambda-platform:{readable}", len(platform.encode()) / GB)
        counts.op("lambda", "Invoke", readable)
        if tracing and trigger == "dynamodb-stream":
            counts.add("xray.trace_roots", f"lambda:{readable}", 1)
        if not self._api_traced_anywhere() and tracing and trigger == "api":
            counts.add("xray.trace_roots", f"lambda:{readable}", 1)
        self._metrics_from_logs(lines)
        with counts.lock:
            stats = counts.functions.setdefault(readable, {
                "invocations": 0, "errors": 0, "memory_mb": invocation.memory_mb, "architecture": architecture,
                "duration_ms": 0.0, "billed_ms": 0, "gb_seconds": 0.0, "log_bytes": 0, "platform_log_bytes": 0,
                "meter_overhead_ms": 0.0, "triggers": Counter(),
            })
            stats["invocations"] += 1
            stats["errors"] += 1 if error_type else 0
            stats["duration_ms"] += measured * 1000
            stats["cpu_ms"] = stats.get("cpu_ms", 0.0) + cpu * 1000
            stats["cpu_gb_seconds"] = stats.get("cpu_gb_seconds", 0.0) + lambda_billed(cpu, invocation.memory_mb)[1]
            stats.setdefault("durations_ms", []).append(measured * 1000)
            stats["billed_ms"] += billed_ms
            stats["gb_seconds"] += gb_seconds
            stats["log_bytes"] += log_bytes
            stats["platform_log_bytes"] += len(platform.encode())
            stats["meter_overhead_ms"] += overhead * 1000
            stats["triggers"][trigger] += 1

    def after_aws_call(self, invocation: observe.Invocation, service: str, operation: str, params: Any,
                       response: Any) -> None:
        if service in ("ses", "sesv2"):
            with self._accounting():
                self._counts.op(service, operation, self.name(invocation.function_name))

    def _platform_logged(self, function_name: str) -> bool:
        """Lambda writes START/END/REPORT unless the function's LoggingConfig sets system logs above INFO."""
        levels = self.__dict__.setdefault("_system_log_levels", {})
        if not levels:
            for logical_id, resource in self.rt.template.resources.items():
                physical = (self.rt.resources or {}).get(logical_id)
                if resource.get("Type") == "AWS::Lambda::Function" and physical is not None:
                    config = (resource.get("Properties") or {}).get("LoggingConfig") or {}
                    levels[physical.name] = str(config.get("SystemLogLevel") or "INFO").upper()
            levels.setdefault("", "INFO")  # computed once
        return levels.get(function_name, "INFO") in ("DEBUG", "INFO")

    def _api_traced_anywhere(self) -> bool:
        return any(self._api_tracing.values())

    @staticmethod
    def _platform_lines(invocation: observe.Invocation, duration_ms: float, billed_ms: int, tracing: bool) -> str:
        """The lines Lambda itself logs for an invocation (text log format)."""
        request_id = invocation.request_id
        report = (f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\tBilled Duration: {billed_ms} ms\t"
                  f"Memory Size: {invocation.memory_mb} MB\tMax Memory Used: {min(invocation.memory_mb, 96)} MB\t\n")
        if tracing:
            report += ("XRAY TraceId: 1-6745a1b2-0123456789abcdef01234567\tSegmentId: 0123456789abcdef\t"
                       "Sampled: true\t\n")
        return f"START RequestId: {request_id} Version: $LATEST\nEND RequestId: {request_id}\n{report}"

    def _log_write(self, invocation: observe.Invocation, text: str) -> None:
        self._logs[invocation.request_id].append(text)

    def _metrics_from_logs(self, text: str) -> None:
        for line in text.splitlines():
            if '"_aws"' not in line:
                continue
            try:
                document = json.loads(line)
                directives = document["_aws"]["CloudWatchMetrics"]
            except (ValueError, KeyError, TypeError):
                continue
            for directive in directives:
                namespace = str(directive.get("Namespace", ""))
                for dimension_set in directive.get("Dimensions") or [[]]:
                    dimensions = tuple((str(d), str(document.get(d))) for d in dimension_set)
                    for metric in directive.get("Metrics") or []:
                        with self._counts.lock:
                            self._counts.custom_metrics.add((namespace, str(metric.get("Name")), dimensions))

    def _add_overhead(self, seconds: float) -> None:
        invocation = observe.current()
        if invocation is not None:
            self._overhead[invocation.request_id] += seconds

    @contextlib.contextmanager
    def _accounting(self) -> Iterator[None]:
        """Around the meter's own work inside a call: its time is not the function's, its errors are not the call's."""
        started = time.perf_counter()
        try:
            yield
        except Exception:
            log.exception("metering failed (the call itself is unaffected)")
            self._counts.fact("meter_errors")
        finally:
            self._add_overhead(time.perf_counter() - started)

    # ------------------------------------------------------------------ patches
    def _install_patches(self) -> None:
        self._patch_lambda()
        self._patch_dynamodb()
        self._patch_sqs()
        self._patch_events()
        self._patch_step_functions()
        self._patch_logs()
        self._patch_gateways()

    def _patch_lambda(self) -> None:
        from moto.awslambda.models import LambdaFunction

        meter = self
        inner = vars(LambdaFunction)["_invoke_lambda"]

        def _invoke_lambda(function: Any, event: Any = None) -> Any:
            tracing = str((function.tracing_config or {}).get("Mode", "")).lower() == "active"
            architectures = list(function.architectures or ["x86_64"])
            meter._local.trigger = (_trigger_of(event), {"architecture": architectures[0], "tracing": tracing})
            try:
                return inner(function, event)
            finally:
                meter._local.trigger = None

        self._patch(LambdaFunction, "_invoke_lambda", _invoke_lambda)

    def _patch_dynamodb(self) -> None:
        from moto.dynamodb.models.table import Table
        from moto.dynamodb.responses import DynamoHandler

        meter = self
        for action in _DYNAMODB_ACTIONS:
            original = vars(DynamoHandler).get(action)
            if original is None:
                continue

            def wrapper(handler: Any, *args: Any, _original: Any = original, _action: str = action, **kwargs: Any
                        ) -> Any:
                return meter._dynamodb_call(_action, handler, lambda: _original(handler, *args, **kwargs))

            wrapper.__name__ = action
            self._patch(DynamoHandler, action, wrapper)

        for method, projection_argument in (("query", "projection_expressions"), ("scan", "projection_expression")):
            original = vars(Table)[method]
            signature = inspect.signature(original)

            def read_set(table: Any, *args: Any, _original: Any = original, _signature: Any = signature,
                         _projection: str = projection_argument, **kwargs: Any) -> Any:
                result = _original(table, *args, **kwargs)
                meter._record_read_set(table, result, _original, _signature, _projection, args, kwargs)
                return result

            read_set.__name__ = method
            self._patch(Table, method, read_set)

    def _patch_sqs(self) -> None:
        from moto.sqs.models import SQSBackend

        meter = self
        for action in _SQS_ACTIONS:
            original = vars(SQSBackend).get(action)
            if original is None:
                continue

            def wrapper(backend: Any, *args: Any, _original: Any = original, _action: str = action, **kwargs: Any
                        ) -> Any:
                return meter._sqs_call(_action, _original, backend, args, kwargs)

            wrapper.__name__ = action
            self._patch(SQSBackend, action, wrapper)

    def _patch_events(self) -> None:
        from moto.events.models import EventsBackend

        meter = self
        original = vars(EventsBackend)["put_events"]

        def put_events(backend: Any, events: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
            results = original(backend, events, *args, **kwargs)
            meter._record_put_events(events, results)
            return results

        self._patch(EventsBackend, "put_events", put_events)

    def _patch_step_functions(self) -> None:
        from moto.stepfunctions.parser.models import StepFunctionsParserBackend

        meter = self
        original = vars(StepFunctionsParserBackend)["start_execution"]
        signature = inspect.signature(original)

        def start_execution(backend: Any, *args: Any, **kwargs: Any) -> Any:
            state_machine, known, resource = None, 0, "-"
            with meter._accounting():
                arn = signature.bind(backend, *args, **kwargs).arguments.get("state_machine_arn")
                resource = meter.name(arn)
                state_machine = backend.describe_state_machine(arn)
                known = len(state_machine.executions)
            try:
                execution = original(backend, *args, **kwargs)
            except Exception as error:
                meter._counts.op("stepfunctions", f"StartExecution ({type(error).__name__})", resource)
                raise
            with meter._accounting():
                if state_machine is not None and len(state_machine.executions) > known:
                    meter._counts.op("stepfunctions", "StartExecution", resource)
                    with meter._counts.lock:
                        meter._executions.append(execution)
                else:
                    meter._counts.op("stepfunctions", "StartExecution (same name and input: existing)", resource)
            return execution

        self._patch(StepFunctionsParserBackend, "start_execution", start_execution)

    def _patch_logs(self) -> None:
        """Log events written into the emulated CloudWatch Logs (the runtime writes Step Functions' there)."""
        from moto.logs.models import LogsBackend

        meter = self
        original = vars(LogsBackend)["put_log_events"]
        signature = inspect.signature(original)

        def put_log_events(backend: Any, *args: Any, **kwargs: Any) -> Any:
            result = original(backend, *args, **kwargs)
            with meter._accounting():
                arguments = signature.bind(backend, *args, **kwargs).arguments
                group = str(arguments.get("log_group_name", ""))
                size = sum(len(str(event.get("message", "")).encode()) for event in arguments.get("log_events") or [])
                meter._log_groups_written.add(group)
                source = meter._log_group_sources.get(group, f"loggroup:{meter.name(group)}")
                meter._counts.add("logs.ingested_gb", source, size / GB)
                meter._counts.op("logs", "PutLogEvents", meter.name(group))
            return result

        self._patch(LogsBackend, "put_log_events", put_log_events)

    def _patch_gateways(self) -> None:
        meter = self
        for gateway in (self.rt.apis or {}).values():
            original = gateway.request

            def request(*args: Any, _gateway: Any = gateway, _original: Any = original, **kwargs: Any) -> Any:
                started = time.monotonic()
                response = _original(*args, **kwargs)
                with meter._accounting():
                    meter._record_api_request(_gateway, args, kwargs, response, time.monotonic() - started)
                return response

            self._patch(gateway, "request", request)

    def _install_tees(self) -> None:
        """Count what invocations print or log, wherever it goes; the bytes themselves go on unchanged.

        ``print`` writes to sys.stdout; loggers write to the stream their handler bound when it was made
        (Powertools binds sys.stdout when a Logger is first made, which may be before this window or in another
        test): every plain ``logging.StreamHandler`` gets a tee around its own stream, until stop().
        """
        tees: dict[int, _Tee] = {}

        def tee(stream: Any) -> _Tee:
            if id(stream) not in tees:
                tees[id(stream)] = _Tee(stream, self)
            return tees[id(stream)]

        for handler in _stream_handlers():
            if type(handler) is logging.StreamHandler and not isinstance(handler.stream, _Tee):
                handler.stream = tee(handler.stream)
        self._tees = (tee(sys.stdout), tee(sys.stderr))
        sys.stdout, sys.stderr = self._tees

    def _uninstall_tees(self) -> None:
        if self._tees is None:
            return
        out, err = self._tees
        for handler in _stream_handlers():  # including handlers made during the window, bound to a tee
            stream = handler.stream
            if isinstance(stream, _Tee) and stream._meter is self:
                handler.stream = stream._target
        if sys.stdout is out:
            sys.stdout = out._target
        if sys.stderr is err:
            sys.stderr = err._target
        self._tees = None

    # ------------------------------------------------------------------ API Gateway
    def _record_api_request(self, gateway: Any, args: tuple[Any, ...], kwargs: dict[str, Any], response: Any,
                            latency_s: float) -> None:
        resource = self.name(gateway.name)
        method = str(args[0] if args else kwargs.get("method", "")).upper()
        path = str(args[1] if len(args) > 1 else kwargs.get("path", ""))
        self._counts.op("apigateway", f"{method} {_route_shape(path)}", resource)
        refused = response.status == 401 and str(response.headers.get("x-amzn-ErrorType", "")).startswith(
            "UnauthorizedException")
        if refused:  # the authorizer refused it: API Gateway does not bill it
            self._counts.fact("api_requests_refused_by_authorizer")
            return
        self._counts.add("apigateway.rest_request", resource, 1)
        if self._api_tracing.get(id(gateway)):
            self._counts.add("xray.trace_roots", f"apigateway:{resource}", 1)
        access_format = self._access_formats.get(id(gateway))
        if access_format:
            headers = args[2] if len(args) > 2 else kwargs.get("headers")
            line = _render_access_log(access_format, method, path, gateway.stage, headers, response, latency_s,
                                      self._api_tracing.get(id(gateway), False))
            self._counts.add("logs.ingested_gb", f"apigateway-access:{resource}", (len(line.encode()) + 1) / GB)

    # ------------------------------------------------------------------ DynamoDB
    def _dynamodb_call(self, action: str, handler: Any, call: Callable[[], Any]) -> Any:
        body = handler.body if isinstance(getattr(handler, "body", None), dict) else {}
        backend = handler.dynamodb_backend
        operation = _camel(action)
        if action in ("get_item", "batch_get_item", "query", "scan", "transact_get_items"):
            self._local.read_bytes = None
            result = call()
            with self._accounting():
                self._bill_read(action, operation, body, backend, result)
            return result
        with self._write_lock:
            writes: list[tuple[str, str, str]] = []
            before: dict[Any, Any] = {}
            with self._accounting():
                writes = self._write_targets(action, body, backend)
                before = {target: _dynamo_json(self._lookup(backend, target[0], target[1])) for target in writes}
            try:
                result = call()
            except Exception as error:
                with self._accounting():
                    self._bill_failed_write(action, operation, error, body, writes, before)
                raise
            with self._accounting():
                after = {target: _dynamo_json(self._lookup(backend, target[0], target[1])) for target in writes}
                self._bill_writes(action, operation, body, backend, writes, before, after)
            return result

    @staticmethod
    def _lookup(backend: Any, table_name: str, key_json: str) -> Any:
        try:
            return backend.get_item(table_name, json.loads(key_json))
        except Exception:  # a validation error the call itself will report
            return None

    def _key_of(self, backend: Any, table_name: str, attributes: Mapping[str, Any]) -> str | None:
        try:
            table = backend.get_table(table_name)
        except Exception:
            return None
        key = {name: attributes[name] for name in (table.hash_key_attr, table.range_key_attr)
               if name and name in attributes}
        return json.dumps(key, sort_keys=True)

    def _write_targets(self, action: str, body: Mapping[str, Any], backend: Any) -> list[tuple[str, str, str]]:
        """(table, key JSON, kind) of every item the call writes or checks; kind is put/update/delete/check."""
        targets: list[tuple[str, str, str]] = []

        def add(table_name: str, attributes: Mapping[str, Any] | None, kind: str) -> None:
            key = self._key_of(backend, table_name, attributes or {})
            if key is not None:
                targets.append((table_name, key, kind))

        if action == "put_item":
            add(body.get("TableName", ""), body.get("Item"), "put")
        elif action == "update_item":
            add(body.get("TableName", ""), body.get("Key"), "update")
        elif action == "delete_item":
            add(body.get("TableName", ""), body.get("Key"), "delete")
        elif action == "batch_write_item":
            for table_name, requests in (body.get("RequestItems") or {}).items():
                for request in requests:
                    if "PutRequest" in request:
                        add(table_name, request["PutRequest"].get("Item"), "put")
                    elif "DeleteRequest" in request:
                        add(table_name, request["DeleteRequest"].get("Key"), "delete")
        elif action == "transact_write_items":
            for entry in body.get("TransactItems") or []:
                for kind, spec in entry.items():
                    attributes = spec.get("Item") if kind == "Put" else spec.get("Key")
                    add(spec.get("TableName", ""), attributes, {"Put": "put", "Update": "update", "Delete": "delete",
                                                                "ConditionCheck": "check"}.get(kind, kind.lower()))
        return [(t, k, kind) for t, k, kind in targets]

    def _indexes(self, backend: Any, table_name: str) -> list[IndexSpec]:
        try:
            table = backend.get_table(table_name)
        except Exception:
            return []
        table_keys = tuple(name for name in (table.hash_key_attr, table.range_key_attr) if name)
        specs = []
        for index in table.all_indexes():
            projection = index.projection or {}
            specs.append(IndexSpec(
                name=index.name, keys=tuple(key["AttributeName"] for key in index.schema), table_keys=table_keys,
                projection=str(projection.get("ProjectionType", "ALL")),
                non_key_attributes=tuple(projection.get("NonKeyAttributes") or ())))
        return specs

    def _bill_writes(self, action: str, operation: str, body: Mapping[str, Any], backend: Any,
                     writes: list[tuple[str, str, str]], before: Mapping[Any, Any], after: Mapping[Any, Any]) -> None:
        transactional = action == "transact_write_items"
        tables = {table for table, _, _ in writes} or {str(body.get("TableName", ""))}
        for table in sorted(tables):
            self._counts.op("dynamodb", operation, self.name(table))
        for target in writes:
            table, _, kind = target
            old, new = before.get(target), after.get(target)
            resource = self.name(table)
            size = item_size(old) if kind == "check" else max(item_size(old), item_size(new))
            self._counts.add("dynamodb.write_request_unit", resource, write_units(size, transactional=transactional))
            if kind == "check":
                continue
            for index in self._indexes(backend, table):
                for index_size in index_writes(old, new, index):
                    self._counts.add("dynamodb.write_request_unit", f"{resource}/{index.name}", write_units(index_size))
                    self._counts.op("dynamodb", "IndexWrite", f"{resource}/{index.name}")
            self._counts.fact("dynamodb_item_writes")

    def _bill_failed_write(self, action: str, operation: str, error: Exception, body: Mapping[str, Any],
                           writes: list[tuple[str, str, str]], before: Mapping[Any, Any]) -> None:
        from moto.dynamodb.exceptions import ConditionalCheckFailed, TransactionCanceledException

        if isinstance(error, ConditionalCheckFailed):
            # The condition was evaluated against the item: the write is billed as if made (the larger of the
            # stored item and the one written), with no index maintenance.
            for target in writes:
                requested = body.get("Item") if target[2] == "put" else None
                size = max(item_size(before.get(target)), item_size(requested))
                self._counts.add("dynamodb.write_request_unit", self.name(target[0]), write_units(size))
            for table in sorted({table for table, _, _ in writes}):
                self._counts.op("dynamodb", f"{operation} (condition failed)", self.name(table))
            return
        if isinstance(error, TransactionCanceledException):
            # Assumed: a cancelled transaction is billed like a committed one on the items as they were (two
            # units per KB per item, the prepare and the release), no index maintenance.
            for target in writes:
                self._counts.add("dynamodb.write_request_unit", self.name(target[0]),
                                 write_units(item_size(before.get(target)), transactional=True))
            for table in sorted({table for table, _, _ in writes}):
                self._counts.op("dynamodb", f"{operation} (cancelled)", self.name(table))
            return
        self._counts.fact("dynamodb_rejected_requests")  # validation errors and the like are not billed

    def _record_read_set(self, table: Any, result: Any, original: Any, signature: Any, projection: str,
                         args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Bytes a Query/Scan read: every item it evaluated, before FilterExpression and projection."""
        with self._accounting():
            bound = signature.bind(table, *args, **kwargs)
            filtered = bound.arguments.get("filter_expression") is not None or bool(bound.arguments.get(projection))
            items = result[0]
            if filtered:  # the same read again without the filter and projection: what DynamoDB read
                bound.arguments["filter_expression"] = None
                bound.arguments[projection] = None
                items = original(*bound.args, **bound.kwargs)[0]
            size = sum(item_size(_dynamo_json(item)) for item in items)
            self._local.read_bytes = (getattr(self._local, "read_bytes", None) or 0) + size

    def _bill_read(self, action: str, operation: str, body: Mapping[str, Any], backend: Any, result: Any) -> None:
        if action in ("query", "scan"):
            table = str(body.get("TableName", ""))
            resource = self.name(table) + (f"/{body['IndexName']}" if body.get("IndexName") else "")
            consistent = bool(body.get("ConsistentRead"))
            size = getattr(self._local, "read_bytes", None) or 0
            self._local.read_bytes = None
            self._counts.op("dynamodb", operation, resource)
            self._counts.add("dynamodb.read_request_unit", resource, read_units(size, consistent=consistent))
            return
        if action == "get_item":
            table = str(body.get("TableName", ""))
            size = item_size(_dynamo_json(self._safe_get(backend, table, body.get("Key"))))
            self._counts.op("dynamodb", operation, self.name(table))
            self._counts.add("dynamodb.read_request_unit", self.name(table),
                             read_units(size, consistent=bool(body.get("ConsistentRead"))))
            return
        if action == "batch_get_item":
            for table, request in (body.get("RequestItems") or {}).items():
                consistent = bool(request.get("ConsistentRead"))
                self._counts.op("dynamodb", operation, self.name(table))
                for key in request.get("Keys") or []:
                    size = item_size(_dynamo_json(self._safe_get(backend, table, key)))
                    self._counts.add("dynamodb.read_request_unit", self.name(table),
                                     read_units(size, consistent=consistent))
            return
        if action == "transact_get_items":
            for entry in body.get("TransactItems") or []:
                spec = entry.get("Get") or {}
                table = str(spec.get("TableName", ""))
                size = item_size(_dynamo_json(self._safe_get(backend, table, spec.get("Key"))))
                self._counts.op("dynamodb", operation, self.name(table))
                self._counts.add("dynamodb.read_request_unit", self.name(table),
                                 read_units(size, consistent=True, transactional=True))

    @staticmethod
    def _safe_get(backend: Any, table: str, key: Any) -> Any:
        try:
            return backend.get_item(table, key)
        except Exception:
            return None

    # ------------------------------------------------------------------ SQS
    def _sqs_call(self, action: str, original: Any, backend: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
                  ) -> Any:
        depth = getattr(self._local, "sqs_depth", 0)
        self._local.sqs_depth = depth + 1
        try:
            result = original(backend, *args, **kwargs)
        finally:
            self._local.sqs_depth = depth
        if depth:  # an inner call of a batch action: the outer call is the request
            return result
        with self._accounting():
            self._bill_sqs(action, original, backend, args, kwargs, result)
        return result

    def _bill_sqs(self, action: str, original: Any, backend: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                  result: Any) -> None:
        arguments = _signature(original).bind(backend, *args, **kwargs).arguments
        queue = self.name(str(arguments.get("queue_name", "")))
        operation = _camel(action)
        by_lambda_poller = observe.current() is None
        counts = self._counts
        if action == "send_message":
            size = sqs_message_size(arguments.get("message_body") or "", arguments.get("message_attributes"))
            counts.op("sqs", operation, queue)
            counts.add("sqs.request", queue, chunks(size))
        elif action == "send_message_batch":
            entries = (arguments.get("entries") or {}).values()
            size = sum(sqs_message_size(e.get("MessageBody", ""), e.get("MessageAttributes")) for e in entries)
            counts.op("sqs", operation, queue)
            counts.add("sqs.request", queue, chunks(size))
        elif action == "receive_message":
            messages = list(result or [])
            if not messages:
                counts.op("sqs", "ReceiveMessage (empty)", queue)
                counts.fact("sqs_empty_receives")
                return
            size = sum(sqs_message_size(m.body, m.message_attributes) for m in messages)
            counts.op("sqs", operation, queue)
            counts.add("sqs.request", queue, chunks(size))
            if by_lambda_poller:
                group = {"queue": queue, "deleted": 0}
                with counts.lock:
                    self._receive_groups.append(group)
                    for message in messages:
                        self._receives[message.receipt_handle] = group
        elif action == "delete_message":
            handle = arguments.get("receipt_handle")
            group = self._receives.pop(handle, None) if by_lambda_poller else None
            if group is not None:  # Lambda deletes what it processed with one DeleteMessageBatch per batch
                with counts.lock:
                    group["deleted"] += 1
                return
            counts.op("sqs", operation, queue)
            counts.add("sqs.request", queue, 1)
        else:  # delete_message_batch, change_message_visibility(_batch): one request each
            counts.op("sqs", operation, queue)
            counts.add("sqs.request", queue, 1)

    def _close_receive_groups(self) -> None:
        for group in self._receive_groups:
            if group["deleted"]:
                batches = math.ceil(group["deleted"] / SQS_BATCH_MAX)
                self._counts.op("sqs", "DeleteMessageBatch (Lambda poller)", group["queue"], batches)
                self._counts.add("sqs.request", group["queue"], batches)
        self._receive_groups.clear()
        self._receives.clear()

    # ------------------------------------------------------------------ EventBridge
    def _record_put_events(self, entries: list[dict[str, Any]], results: list[dict[str, Any]]) -> None:
        with self._accounting():
            buses = set()
            for entry, result in zip(entries, results, strict=False):
                bus = self.name(str(entry.get("EventBusName") or "default"))
                buses.add(bus)
                if "EventId" not in (result or {}):
                    self._counts.fact("eventbridge_rejected_entries")
                    continue
                self._counts.add("eventbridge.custom_event", bus, chunks(eventbridge_entry_size(entry)))
                self._counts.op("events", "PutEvents entry", bus)
                with self._counts.lock:
                    self._published.append(dict(entry))
            for bus in sorted(buses) or ["default"]:
                self._counts.op("events", "PutEvents", bus)

    # ------------------------------------------------------------------ after the run
    def _mark_backends(self) -> None:
        from moto.events.models import events_backends
        from moto.ses.models import ses_backends

        account, region = self.rt.account_id, self.rt.region
        for archive in events_backends[account][region].archives.values():
            self._archive_marks[id(archive)] = len(archive.events)
        backend = ses_backends[account][region]
        self._ses_marks[id(backend)] = int(backend.sent_message_count)
        self._storage_before = self._table_storage()

    def _collect_step_functions(self) -> None:
        counts = self._counts
        for execution in list(self._executions):
            state_machine = getattr(execution, "state_machine", None)
            arn = getattr(state_machine, "arn", None) or execution.exec_arn.rsplit(":", 1)[0].replace(
                ":execution:", ":stateMachine:")
            resource = self.name(arn)
            kind = str(getattr(state_machine, "type", None) or getattr(execution, "sm_type", "STANDARD")).upper()
            try:
                events = list(execution.to_history_output().get("events") or [])
            except Exception:
                log.warning("no history for execution %s", execution.exec_arn, exc_info=True)
                events = []
            transitions, retries = _transitions(events)
            for event in events:
                event_type = _history_type(event)
                if _FAILURE_EVENT.search(event_type):
                    details = next((v for k, v in event.items() if k.endswith("EventDetails")), None) or {}
                    counts.fact(f"{resource} {event_type}: {details.get('error', '?')}")
            counts.fact("executions")
            counts.fact(f"executions_{str(getattr(execution, 'status', '')).rsplit('.', 1)[-1].lower()}")
            counts.op("stepfunctions", "StateTransition", resource, transitions)
            if retries:
                counts.op("stepfunctions", "StateTransition (retry)", resource, retries)
            if kind == "EXPRESS":
                start, stop = execution.start_date, getattr(execution, "stop_date", None) or execution.start_date
                _, gb_seconds = express_billed(max((stop - start).total_seconds(), 0.0))
                counts.add("stepfunctions.express_request", resource, 1)
                counts.add("stepfunctions.express_gb_second", resource, gb_seconds)
            else:
                counts.add("stepfunctions.standard_transition", resource, transitions)
            if any(source == f"stepfunctions:{resource}" and group in self._log_groups_written
                   for group, source in self._log_group_sources.items()):
                continue  # the runtime wrote the execution's log: counted as it was written
            # A runtime that does not write execution logs: what Step Functions would write at the template's level.
            level, include_data = self._state_machine_logging.get(arn, ("OFF", False))
            log_bytes = sum(len(line.encode()) for line in _execution_log_lines(execution.exec_arn, events,
                                                                                  level, include_data))
            counts.add("logs.ingested_gb", f"stepfunctions:{resource}", log_bytes / GB)

    def _collect_archives(self) -> None:
        from moto.events.models import events_backends

        for name, archive in events_backends[self.rt.account_id][self.rt.region].archives.items():
            new = archive.events[self._archive_marks.get(id(archive), 0):]
            size = sum(len(json.dumps(event, default=str).encode()) for event in new)
            self._counts.add("eventbridge.archive_gb", self.name(name), size / GB)
            self._counts.op("events", "ArchivedEvent", self.name(name), len(new))

    def _collect_ses(self) -> None:
        from moto.ses.models import ses_backends

        backend = ses_backends[self.rt.account_id][self.rt.region]
        sent = int(backend.sent_message_count) - self._ses_marks.get(id(backend), 0)
        self._counts.add("ses.email", "ses", sent)

    def _table_storage(self) -> dict[str, int]:
        """Bytes stored per table and index (items + 100 bytes of overhead each), as DynamoDB bills storage."""
        from moto.dynamodb.models import dynamodb_backends

        sizes: dict[str, int] = {}
        backend = dynamodb_backends[self.rt.account_id][self.rt.region]
        for name, table in list(backend.tables.items()):
            items = [_dynamo_json(item) for item in table.all_items()]
            sizes[name] = sum(item_size(item) + 100 for item in items)
            for index in self._indexes(backend, name):
                entries = [index.entry(item) for item in items]
                sizes[f"{name}/{index.name}"] = sum(item_size(e) + 100 for e in entries if e is not None)
        return sizes

    def _collect_storage(self) -> None:
        after = self._table_storage()
        for name, size in after.items():
            grown = size - self._storage_before.get(name, 0)
            if grown:
                table, _, index = name.partition("/")
                self._counts.add("dynamodb.storage_gb_month", self.name(table) + (f"/{index}" if index else ""),
                                 grown / GB)


# =========================================================================================== helpers


@functools.lru_cache(maxsize=64)
def _signature(function: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(function)


def _stream_handlers() -> Iterator[logging.StreamHandler]:
    loggers: list[Any] = [logging.getLogger()]
    loggers += [logger for logger in list(logging.Logger.manager.loggerDict.values())
                if isinstance(logger, logging.Logger)]
    seen: set[int] = set()
    for logger in loggers:
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler) and id(handler) not in seen:
                seen.add(id(handler))
                yield handler


def _trigger_of(event: Any) -> str:
    """What invoked a function, from the shape of its event."""
    if isinstance(event, str):
        with contextlib.suppress(ValueError):
            event = json.loads(event)
    if isinstance(event, Mapping):
        records = event.get("Records")
        if isinstance(records, list) and records and isinstance(records[0], Mapping):
            source = str(records[0].get("eventSource") or records[0].get("EventSource") or "")
            return {"aws:dynamodb": "dynamodb-stream", "aws:sqs": "sqs", "aws:kinesis": "kinesis-stream",
                    "aws:sns": "sns"}.get(source, source or "records")
        if "requestContext" in event and ("httpMethod" in event or "routeKey" in event):
            return "api"
    return "direct"


def _transitions(events: Iterable[Mapping[str, Any]]) -> tuple[int, int]:
    """(state transitions, of which retries) of one execution history: every state entered, plus every retry.

    A retry shows as a task scheduled again inside the same state entry.
    """
    entered = retries = 0
    scheduled_in_state = 0
    for event in events:
        kind = _history_type(event)
        if kind.endswith("StateEntered"):
            entered += 1
            scheduled_in_state = 0
        elif kind in _SCHEDULED:
            if scheduled_in_state:
                retries += 1
            scheduled_in_state += 1
    return entered + retries, retries


def _execution_log_lines(execution_arn: str, events: Iterable[Mapping[str, Any]], level: str, include_data: bool
                         ) -> Iterator[str]:
    """The CloudWatch Logs records Step Functions writes for an execution at a log level (ALL, ERROR, FATAL, OFF)."""
    if level not in ("ALL", "ERROR", "FATAL"):
        return
    for event in events:
        kind = _history_type(event)
        if level == "ERROR" and not _FAILURE_EVENT.search(kind):
            continue
        if level == "FATAL" and not (kind.startswith("Execution") and _FAILURE_EVENT.search(kind)):
            continue
        details: dict[str, Any] = {}
        for name, value in event.items():
            if name.endswith("EventDetails") and isinstance(value, Mapping):
                details = {k: v for k, v in value.items()
                           if include_data or k not in ("input", "output", "inputDetails", "outputDetails")}
        moment = event.get("timestamp")
        if isinstance(moment, datetime.datetime):
            epoch_ms = int(moment.timestamp() * 1000)
        else:
            epoch_ms = int(time.time() * 1000)
        yield json.dumps({
            "id": str(event.get("id", "")), "type": kind, "details": details,
            "previous_event_id": str(event.get("previousEventId", "")), "event_timestamp": str(epoch_ms),
            "execution_arn": execution_arn, "redrive_count": "0",
        }, separators=(",", ":"), default=str)


_ID_SEGMENT = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$|^[0-9]+$", re.IGNORECASE)


def _route_shape(path: str) -> str:
    """A request path with ids replaced by ``{id}`` (for counting operations by route)."""
    raw = path.split("?", 1)[0]
    return "/".join("{id}" if _ID_SEGMENT.match(part) else part for part in raw.split("/")) or "/"


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in pairs:
        if str(key).lower() == name.lower():
            return str(value)
    return None


def _render_access_log(template: str, method: str, path: str, stage: str, headers: Any, response: Any,
                       latency_s: float, traced: bool) -> str:
    """The stage's access log line for one request (values as API Gateway would fill them, ids made up)."""
    token = _header(headers, "Authorization") or ""
    match = re.match(r"Bearer dev:([A-Za-z0-9._-]+)", token)
    values = {
        "requestId": str(uuid.uuid4()),
        "extendedRequestId": "AbCdEfGhIjKlMnO=",
        "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
        "identity.sourceIp": "203.0.113.10",
        "identity.userAgent": _header(headers, "User-Agent") or "-",
        "httpMethod": method,
        "resourcePath": _route_shape(path),
        "path": f"/{stage}{path.split('?', 1)[0]}" if stage else path.split("?", 1)[0],
        "status": str(response.status),
        "responseLength": str(len((response.body or "").encode())),
        "responseLatency": str(max(1, round(latency_s * 1000))),
        "integration.latency": str(max(1, round(latency_s * 1000))),
        "integration.status": str(response.status) if response.status < 500 else "-",
        "error.message": "-" if response.status < 400 else "error",
        "authorizer.claims.sub": match.group(1) if match else "-",
        "xrayTraceId": "1-6745a1b2-0123456789abcdef01234567" if traced else "-",
    }
    return _CONTEXT_VARIABLE.sub(lambda m: values.get(m.group(1), "-"), template)
