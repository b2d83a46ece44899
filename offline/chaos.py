"""Duplicates and reordering on every delivery to a function: at-least-once and out of order, made explicit.

On AWS nothing asynchronous is delivered exactly once or in order: EventBridge and SQS deliver at least once
and in no particular order, a stream batch is retried whole, an Express workflow runs a step at least once, and
a step that timed out can take effect after the steps that followed it. ``DeliveryChaos`` plays all of that on
the offline runtime, for every function the template wires, without knowing any of them:

    chaos = DeliveryChaos(seed=7).install(rt)   # every delivery from now on is disturbed
    ... place orders, rt.settle() ...
    chaos.enabled = False                      # deliveries are left alone again
    chaos.uninstall()

It sits on the one seam every invocation passes (``InProcessLambdas.run_handler``) and tells deliveries apart by
what they carry and who sent them:

* **SQS batches** (an event source mapping on a queue): the first time a message is seen it gets a plan: it is
  delivered 1..``max_copies`` times in all, each delivery either in this batch or late (1..``max_late_pumps``
  pumps later, straight to the function, as a redelivery); the batch is shuffled. A late delivery the function
  fails goes back to the queue, so SQS's own retries and redrive policy take over. A message SQS redelivers
  (after a failure) keeps its plan: it is passed through as it is.
* **DynamoDB stream batches**: a shard keeps its records in order (a guarantee its consumers may rely on), so
  a batch is never shuffled; it is delivered 1..``max_copies`` times in a row (a retried batch), and may be
  replayed once more late. The poller sees the result of the last delivery.
* **Step Functions tasks** (``lambda:invoke`` from an execution) and **asynchronous invocations**
  (``InvocationType=Event``, EventBridge Lambda targets): the function runs 1..``max_copies`` times, at least
  once at once (the execution gets the last result), the other runs late: after a few pumps, or only once
  every execution has finished, i.e. after the steps that followed it, compensations included. A late run's
  result is discarded, as a timed-out attempt's is.
* Anything else (the API gateway, a test invoking a function itself) is left alone.

What it did is counted (``duplicates``: deliveries beyond the first; ``reordered``: deliveries that reached a
function after one that arrived later than them, late ones included; ``disturbed``: duplicates per kind of
delivery and function). Decisions come from ``random.Random(seed)``; which delivery meets which draw depends on
thread timing, so a seed names a kind of run, not a replay of one.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

RunResult = tuple[str, bool, str]  # what InProcessLambdas.run_handler answers: (payload JSON, errored, logs)

SQS = "sqs"
STREAM = "stream"
TASK = "task"
ASYNC = "async"
AT_REST = -1  # a late delivery held until nothing else is left to do (every execution has finished)
IDLE_PAUSE = 0.002  # seconds a pump that found only held deliveries waits (settle() would otherwise spin)


@dataclass
class _Late:
    kind: str
    function_arn: str
    payload: Any
    due_pump: int  # the pump after which it is delivered, or AT_REST


class DeliveryChaos:
    """Duplicate, shuffle and delay every delivery to a function of a running ``Runtime`` (see the module)."""

    def __init__(
        self,
        seed: int = 0,
        *,
        max_copies: int = 5,
        min_copies: int = 1,
        late_probability: float = 0.3,
        max_late_pumps: int = 2,
        functions: Callable[[str], bool] | None = None,
    ) -> None:
        """``max_copies`` / ``min_copies``: the most and the fewest deliveries of one message, batch or step (1: no
        duplicates); ``late_probability``: the chance each delivery is held back; ``max_late_pumps``: how long an
        SQS delivery may be held (keep it below the queues' maxReceiveCount: offline, a failed message is retried
        at the next pump, not after a visibility timeout, so a message waiting for a held one could otherwise be
        dead-lettered sooner than on AWS); ``functions``: which function names to disturb (default: all)."""
        if not 1 <= min_copies <= max_copies:
            raise ValueError("1 <= min_copies <= max_copies (one delivery: no duplicates)")
        self.seed = seed
        self.max_copies = max_copies
        self.min_copies = min_copies
        self.late_probability = late_probability
        self.max_late_pumps = max(1, max_late_pumps)
        self.functions = functions
        self.enabled = True
        self.duplicates = 0
        self.reordered = 0
        self.deliveries = 0
        self.disturbed: Counter[tuple[str, str]] = Counter()  # (kind, function name) -> deliveries beyond the first
        self._random = random.Random(seed)  # noqa: S311 - a test plan, not cryptography
        self._lock = threading.RLock()
        self._planned: set[tuple[str, str]] = set()
        self._late: list[_Late] = []
        self._pumps = 0
        self._rt: Any = None
        self._run: Callable[[Any, Any], RunResult] | None = None  # the runtime's own run_handler
        self._pump_original: Callable[[], bool] | None = None  # the runtime's own pump

    # ------------------------------------------------------------------ installing
    def install(self, rt: Any) -> DeliveryChaos:
        """Disturb ``rt``'s deliveries (a started ``offline.runtime.Runtime``) until ``uninstall``."""
        if self._rt is not None:
            raise RuntimeError("this DeliveryChaos is installed already")
        lambdas = rt.lambdas
        if "run_handler" in vars(lambdas) or "pump" in vars(rt):
            raise RuntimeError("another DeliveryChaos is installed on this runtime")
        self._rt, self._run, self._pump_original = rt, lambdas.run_handler, rt.pump
        # Instance attributes shadow the methods: the runtime's moto patch calls lambdas.run_handler(...), and
        # settle() calls self.pump(), so both find these.
        lambdas.run_handler = self._run_handler
        rt.pump = self._pump
        return self

    def uninstall(self) -> None:
        """Stop disturbing; late deliveries not yet made are dropped (settle first to have them)."""
        if self._rt is None:
            return
        vars(self._rt.lambdas).pop("run_handler", None)
        vars(self._rt).pop("pump", None)
        self._rt = self._run = self._pump_original = None
        with self._lock:
            self._late.clear()

    def reset(self, seed: int) -> None:
        """A fresh plan (forget which deliveries were seen) and fresh counts, staying installed. Settle first:
        deliveries still held back stay held."""
        with self._lock:
            self.seed = seed
            self._random = random.Random(seed)  # noqa: S311
            self._planned.clear()
            self.duplicates = self.reordered = self.deliveries = 0
            self.disturbed.clear()

    def pending(self) -> int:
        with self._lock:
            return len(self._late)

    # ------------------------------------------------------------------ the seam
    def _run_handler(self, function: Any, event: Any) -> RunResult:
        assert self._run is not None
        if not self.enabled or (self.functions is not None and not self.functions(function.function_name)):
            return self._run(function, event)
        kind = _kind(event)
        if kind == SQS:
            return self._sqs(function, event)
        if kind == STREAM:
            return self._stream(function, event)
        kind = _caller()
        if kind in (TASK, ASYNC):
            return self._repeat(function, event, kind)
        return self._run(function, event)

    def _first_time(self, function: Any, identity: str) -> bool:
        key = (function.function_arn, identity)
        with self._lock:
            if key in self._planned:
                return False
            self._planned.add(key)
            return True

    def _copies(self) -> tuple[int, list[int]]:
        """(deliveries now, due pumps of the late ones): min..max_copies in all, each late with late_probability."""
        with self._lock:
            total = self._random.randint(self.min_copies, self.max_copies)
            late = [self._random.randint(1, self.max_late_pumps) for _ in range(total)
                    if self._random.random() < self.late_probability]
            return total - len(late), late

    def _hold(self, kind: str, function: Any, payload: Any, after_pumps: int) -> None:
        with self._lock:
            due = AT_REST if after_pumps == AT_REST else self._pumps + after_pumps
            self._late.append(_Late(kind, function.function_arn, payload, due))

    # ------------------------------------------------------------------ SQS
    def _sqs(self, function: Any, event: dict[str, Any]) -> RunResult:
        assert self._run is not None
        batch: list[tuple[int, dict[str, Any]]] = []  # (arrival index, record)
        for index, record in enumerate(event["Records"]):
            if not self._first_time(function, "sqs:" + str(record.get("body"))):
                batch.append((index, record))  # SQS redelivered it (a failure): its plan is made
                continue
            now, late = self._copies()
            batch += [(index, dict(record)) for _ in range(now)]
            for pumps in late:
                self._hold(SQS, function, dict(record), pumps)
            self._count(duplicates=now + len(late) - 1, deliveries=now, what=(SQS, function.function_name))
        with self._lock:
            self._random.shuffle(batch)
        self._count(reordered=_overtaken(batch))
        if not batch:  # every delivery of every message is late: the poller deletes them, the lane delivers them
            return json.dumps({"batchItemFailures": []}), False, ""
        return self._run(function, {**event, "Records": [record for _, record in batch]})

    # ------------------------------------------------------------------ streams
    def _stream(self, function: Any, event: dict[str, Any]) -> RunResult:
        assert self._run is not None
        records = event["Records"]
        identity = "stream:" + ",".join(str(record.get("eventID")) for record in records)
        if not self._first_time(function, identity):
            return self._run(function, event)
        now, late = self._copies()
        now = max(now, 1)  # the poller needs an answer now
        result = self._run(function, _fresh(event))
        for _ in range(now - 1):
            result = self._run(function, _fresh(event))
        if late:
            self._hold(STREAM, function, _fresh(event), late[0])
        self._count(duplicates=(now - 1 + (1 if late else 0)) * len(records), deliveries=now * len(records),
                    what=(STREAM, function.function_name))
        return result

    # ------------------------------------------------------------------ Step Functions tasks, async invocations
    def _repeat(self, function: Any, event: Any, kind: str) -> RunResult:
        assert self._run is not None
        identity = f"{kind}:" + json.dumps(event, sort_keys=True, default=str)
        if not self._first_time(function, identity):
            return self._run(function, event)  # Step Functions' Retry or Lambda's async retry: its plan is made
        now, late = self._copies()
        if now == 0:  # the caller needs an answer: one of the late ones runs now after all
            now, late = 1, late[1:]
        result = self._run(function, _fresh(event))
        for _ in range(now - 1):
            result = self._run(function, _fresh(event))
        for pumps in late:
            with self._lock:
                at_rest = self._random.random() < 0.5
            self._hold(kind, function, _fresh(event), AT_REST if at_rest else pumps)
        self._count(duplicates=now - 1 + len(late), deliveries=now, what=(kind, function.function_name))
        return result

    # ------------------------------------------------------------------ late deliveries
    def _pump(self) -> bool:
        assert self._pump_original is not None
        progressed = self._pump_original()
        with self._lock:
            self._pumps += 1
            at_rest = not progressed and not _executions_running(self._rt)
            due = [item for item in self._late
                   if (at_rest if item.due_pump == AT_REST else item.due_pump <= self._pumps)]
            for item in due:
                self._late.remove(item)
            waiting = bool(self._late)
        for item in due:
            self._deliver_late(item)
        if waiting and not progressed and not due:
            time.sleep(IDLE_PAUSE)  # only held deliveries are left: let the executions' threads run meanwhile
        return progressed or bool(due) or waiting

    def _deliver_late(self, item: _Late) -> None:
        assert self._run is not None and self._rt is not None
        from moto.awslambda.exceptions import UnknownFunctionException

        try:
            function = self._rt.lambdas.backend.get_function(item.function_arn, None)
        except UnknownFunctionException:
            return
        self._count(reordered=1, deliveries=1)
        if item.kind != SQS:
            self._run(function, item.payload)  # a late duplicate: its result reaches nobody
            return
        record = {**item.payload, "receiptHandle": f"chaos-{uuid.uuid4()}"}
        payload, errored, _ = self._run(function, {"Records": [record]})
        failed = errored
        if not errored:
            try:
                failed = bool((json.loads(payload) or {}).get("batchItemFailures"))
            except (TypeError, ValueError, AttributeError):
                failed = False
        if failed:
            _send_back(record)

    def _count(self, *, duplicates: int = 0, reordered: int = 0, deliveries: int = 0,
               what: tuple[str, str] | None = None) -> None:
        with self._lock:
            if what is not None and duplicates:
                self.disturbed[what] += duplicates
            self.duplicates += duplicates
            self.reordered += reordered
            self.deliveries += deliveries


# ====================================================================================== helpers
def _kind(event: Any) -> str | None:
    if isinstance(event, dict) and isinstance(event.get("Records"), list) and event["Records"]:
        first = event["Records"][0]
        if isinstance(first, dict):
            source = first.get("eventSource")
            if source == "aws:sqs":
                return SQS
            if source == "aws:dynamodb":
                return STREAM
    return None


def _caller() -> str | None:
    """TASK when Step Functions invokes, ASYNC for Lambda's asynchronous queue, else None (API, tests)."""
    frame = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith("moto.stepfunctions"):
            return TASK
        if module == "offline.lambdas" and frame.f_code.co_name == "_run_async":
            return ASYNC
        frame = frame.f_back
    return None


def _fresh(event: Any) -> Any:
    """A copy a handler may change without changing the next delivery."""
    return json.loads(json.dumps(event))


def _overtaken(batch: list[tuple[int, dict[str, Any]]]) -> int:
    """Deliveries placed after a delivery of a message that arrived later than theirs."""
    count, latest = 0, -1
    for index, _ in batch:
        if index < latest:
            count += 1
        latest = max(latest, index)
    return count


def _executions_running(rt: Any) -> bool:
    from offline.stepfunctions import running_executions

    return bool(running_executions(rt.account_id, rt.region))


def _send_back(record: dict[str, Any]) -> None:
    """A late SQS delivery that failed: the message goes back on its queue, SQS's retries take over."""
    from moto.sqs.models import sqs_backends

    _, _, _, region, account, name = str(record["eventSourceARN"]).split(":", 5)
    sqs_backends[account][region].send_message(queue_name=name, message_body=record["body"])
