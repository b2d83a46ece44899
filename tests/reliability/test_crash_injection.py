"""Crash injection at every AWS call of every function an order runs through (issue 5).

A baseline order, watched by ``offline.faults.CallRecorder``, says which functions the order path runs (the API,
the relay, the saga starter, each saga step, the consumers of the outcome, notifications, projections,
snapshots: whatever the template wires today) and the AWS calls each makes. Then, for every function F and every
call k it made, the same order runs again with one fault at F's call k, in two modes:

* ``error``: the call fails with a transient AWS error (throttling, capacity, a 5xx), as the handler sees it once
  the SDK gave up retrying; nothing took effect;
* ``kill``: the call succeeds, then the invocation dies before the handler returns.

The runtime's retries and redeliveries play out (``settle``); a fault in the API is the client's to retry, with the
same Idempotency-Key (the contract). Then ``Shop.verify_order``: the order is CONFIRMED or CANCELLED, the stock, the
money and the email moved exactly once (or not at all for a cancelled order), every committed event is on the bus,
no event of the order was committed twice, one saga execution succeeded, the read model agrees and no message is
left on any queue (inboxes, DLQs, on-failure queues).

``make test`` runs, for each function and each distinct shape of its invocations, both modes at every call that
writes (a failed read is an early failure, the same as the failed write after it); ``make soak`` (``slow``) runs
every (function, call, mode) of the order, several orders at once with a fault in each, and two faults per order.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from offline.faults import CallRecorder, FaultInjector, Mode, Record, transient_error
from tests.figures import record

from .conftest import Placed, Shop

pytestmark = pytest.mark.reliability

SOAK = os.environ.get("ORDERFLOW_SOAK") == "1"


READS = ("Get", "BatchGet", "Query", "Scan", "Describe", "List")


@dataclass(frozen=True)
class Case:
    function: str  # the function's name (Orderflow-OrdersSagaFunction)
    call: int  # its k-th AWS call in the order's run, counted across its invocations
    service: str
    operation: str
    mode: Mode

    def __str__(self) -> str:
        short = self.function.split("-", 1)[-1]
        return f"{self.mode.value} {short} call {self.call} ({self.service}.{self.operation})"

    @property
    def writes(self) -> bool:
        return not self.operation.startswith(READS)


@dataclass(frozen=True)
class KnownBug:
    """A broken guarantee found and reported, reproduced by an xfail(strict=True) test of its own.

    ``applies(case)`` says which cases can show it and ``symptom(problem)`` which violations it accounts for; a
    case whose every violation is explained is an expected failure of the sweep, anything else still fails it.
    """

    reason: str
    applies: Callable[[Case], bool]
    symptom: Callable[[str], bool]

    def explains(self, case: Case, problem: str) -> bool:
        return self.applies(case) and self.symptom(problem)


EMAIL_TWICE = (
    "an email can go out twice: an invocation that dies after SES accepted the email (or whose write of the "
    "result fails after it) leaves the idempotency record in progress; SQS redelivers after the visibility "
    "timeout, the record has expired by then, and the redelivery sends again. SES takes no idempotency key, so "
    "functions/notifications/handler.py can only narrow the window (it documents the limit)"
)


def _after_the_send(case: Case) -> bool:
    after_send = (case.mode is Mode.KILL and case.operation in ("SendEmail", "SendRawEmail")) or (
        case.mode is Mode.ERROR and case.service == "dynamodb" and case.operation == "UpdateItem")
    return "Notifications" in case.function and after_send


KNOWN_BUGS: tuple[KnownBug, ...] = (
    KnownBug(EMAIL_TWICE, _after_the_send, lambda problem: problem.startswith("2 emails to")),
)


def without_known_bugs(cases: list[Case]) -> list[Case]:
    return [case for case in cases if not any(bug.applies(case) for bug in KNOWN_BUGS)]


def all_cases(invocations: list[Record]) -> list[Case]:
    """Every (function, call, mode) of the baseline: an error at each call, a crash after each call that took effect."""
    cases, counts = [], {}
    for invocation in invocations:
        for call in invocation.calls:
            k = counts[invocation.function_name] = counts.get(invocation.function_name, 0) + 1
            cases.append(Case(invocation.function_name, k, call.service, call.operation, Mode.ERROR))
            if call.ok:
                cases.append(Case(invocation.function_name, k, call.service, call.operation, Mode.KILL))
    return sorted(cases, key=lambda case: (case.mode.value, case.function, case.call))


def quick_cases(invocations: list[Record]) -> list[Case]:
    """The writes of the first invocation of each shape (the writes it makes) of each function, in both modes."""
    shapes: set[tuple[str, tuple[str, ...]]] = set()
    firsts: set[tuple[str, int]] = set()
    counts: dict[str, int] = {}
    for invocation in invocations:
        shape = (invocation.function_name,
                 tuple(call.operation for call in invocation.calls if not call.operation.startswith(READS)))
        for _ in invocation.calls:
            k = counts[invocation.function_name] = counts.get(invocation.function_name, 0) + 1
            if shape not in shapes:
                firsts.add((invocation.function_name, k))
        shapes.add(shape)
    return [case for case in all_cases(invocations) if (case.function, case.call) in firsts and case.writes]


@dataclass
class Baseline:
    placed: Placed
    invocations: list[Record]


@pytest.fixture(scope="module")
def baseline(baseline_run: Baseline) -> list[Record]:
    return baseline_run.invocations


@pytest.fixture(scope="module")
def baseline_run(shop: Shop) -> Baseline:
    """One order with no fault: the functions it runs and the AWS calls each makes, in order."""
    stage = shop.next_stage()
    recorder = shop.rt.observe(CallRecorder())
    try:
        placed = shop.place(stage)
        shop.rt.settle()
    finally:
        shop.rt.observers.remove(recorder)
    assert shop.verify_order(placed) == []
    assert shop.order(placed)["status"] == "CONFIRMED"
    assert recorder.failed_invocations() == [], "the baseline must run clean"
    recorder.calls_by_function()  # marks calls that never answered as failed
    names = {invocation.function_name for invocation in recorder.invocations}
    assert any("Api" in name for name in names) and len(names) >= 5, f"the order ran too little: {sorted(names)}"
    return Baseline(placed, recorder.invocations)


def run_case(shop: Shop, case: Case, *, tries: int = 3) -> tuple[Placed, FaultInjector, list[str]]:
    """One order with the case's fault, settled and verified.

    How many calls a function makes can vary from run to run (the stream pollers batch whatever records are there
    when they read): when the function made fewer than k calls this time, the order is placed again (``tries``).
    """
    for _ in range(tries):
        stage = shop.next_stage()
        injector = FaultInjector(case.function, case.call, case.mode, after_fault=shop.after_fault)
        shop.rt.observe(injector)
        try:
            placed = shop.place(stage)
            shop.rt.settle(timeout=60)
        finally:
            shop.rt.observers.remove(injector)
        problems = shop.verify_order(placed)
        if problems:
            shop.purge_queues()
        record("scenarios")
        record("faults_injected", len(injector.fired))
        if injector.fired or problems:
            return placed, injector, problems
    pytest.skip(f"{case.function} made fewer than {case.call} AWS calls in {tries} runs: the case did not occur")


def check_case(shop: Shop, case: Case) -> None:
    started = time.monotonic()
    placed, _, problems = run_case(shop, case)
    where = f"{case} (order {placed.order_id}, {placed.attempts} POST attempt(s), {time.monotonic() - started:.1f} s)"
    unexplained = [p for p in problems if not any(bug.explains(case, p) for bug in KNOWN_BUGS)]
    assert unexplained == [], f"{where}: " + "; ".join(unexplained)
    if problems:
        reasons = {bug.reason for bug in KNOWN_BUGS for p in problems if bug.explains(case, p)}
        pytest.xfail(f"{where}: known bug: {' / '.join(sorted(reasons))}")


def sweep(shop: Shop, cases: list[Case], subtests: Any) -> None:
    assert cases, "no case to run: the baseline found no AWS call"
    for case in cases:
        with subtests.test(msg=str(case)):
            check_case(shop, case)


@pytest.mark.parametrize("mode", [Mode.ERROR, Mode.KILL], ids=lambda mode: mode.value)
def test_one_fault_at_each_write_of_the_order_path(shop: Shop, baseline: list[Record], mode: Mode,
                                                    subtests: Any) -> None:
    sweep(shop, [case for case in quick_cases(baseline) if case.mode is mode], subtests)


def test_an_injected_error_is_the_exception_the_handlers_client_raises() -> None:
    """A handler that catches ``client.exceptions.X`` (or reads the error code) sees what the SDK would raise."""
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    error = transient_error("dynamodb", "TransactWriteItems", "ProvisionedThroughputExceededException")
    assert isinstance(error, ddb.exceptions.ProvisionedThroughputExceededException)
    assert error.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    assert error.operation_name == "TransactWriteItems"
    unmodeled = transient_error("events", "PutEvents", "ThrottlingException")
    assert isinstance(unmodeled, ClientError) and unmodeled.response["Error"]["Code"] == "ThrottlingException"


def test_the_quick_sweep_covers_every_function_of_the_order_path(baseline: list[Record]) -> None:
    """Every function the order ran is in the quick sweep, in both modes, if it writes at all."""
    writers = {inv.function_name for inv in baseline
               if any(not call.operation.startswith(READS) for call in inv.calls)}
    covered = {(case.function, case.mode) for case in quick_cases(baseline)}
    assert {(name, mode) for name in writers for mode in Mode} <= covered
    assert len(writers) >= 5


# ====================================================================================== known bugs, reproduced
def saga_task_functions(shop: Shop, invocations: list[Record]) -> list[str]:
    """The functions a state machine of the template invokes (its definition's function references), in the order
    the baseline order ran them."""
    referenced: set[str] = set()
    for resource in shop.rt.template.resources.values():
        if resource.get("Type") != "AWS::StepFunctions::StateMachine":
            continue
        text = json.dumps(resource.get("Properties") or {})
        for logical_id, item in shop.rt.resources.items():
            if item.type == "AWS::Lambda::Function" and f'"{logical_id}"' in text:
                referenced.add(item.name)
    return list(dict.fromkeys(inv.function_name for inv in invocations if inv.function_name in referenced))


def test_one_transient_fault_in_a_forward_saga_step_does_not_cancel_the_order(
    shop: Shop, baseline: list[Record]
) -> None:
    """A transient AWS error in each saga task, and a crash of the first, are retried, not compensated.

    A handler that meets a throttle fails with the exception's class name (ProvisionedThroughputExceededException,
    ThrottlingException, ClientError) and a crashed invocation with Runtime.ExitError: the forward steps retry every
    error but the business ones their participant raises by design (statemachines/order_saga.asl.json), so one
    fault never cancels an order (it was CANCELLED with TECHNICAL_FAILURE when they retried only Lambda service
    errors). A crash after the step's write is the unknown outcome: the retry finds the step done (every step is
    idempotent on (order id, step))."""
    tasks = saga_task_functions(shop, baseline)
    if not tasks:
        pytest.fail("the baseline order ran no saga task")
    cases = [Case(name, 1, "?", "?", Mode.ERROR) for name in tasks]
    for name in tasks:
        first_write = next((case for case in all_cases(baseline)
                            if case.function == name and case.mode is Mode.KILL and case.writes), None)
        assert first_write is not None, f"{name} wrote nothing in the baseline order"
        cases.append(first_write)
    cancelled = []
    for case in cases:
        placed, _, problems = run_case(shop, case)
        assert problems == [], f"{case}: " + "; ".join(problems)
        view = shop.order(placed)
        if view["status"] != "CONFIRMED":
            cancelled.append(f"{case}: {view['status']} ({view['reason']})")
    assert cancelled == []


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=EMAIL_TWICE)
def test_a_crash_after_the_email_was_accepted_sends_no_second_email(shop: Shop, baseline: list[Record]) -> None:
    [case] = [case for case in all_cases(baseline)
              if case.mode is Mode.KILL and case.service in ("ses", "sesv2") and case.operation.startswith("Send")][:1]
    placed, _, problems = run_case(shop, case)
    unrelated = [p for p in problems if not p.startswith("2 emails to")]
    if unrelated:
        pytest.fail(f"{case}: " + "; ".join(unrelated))
    assert problems == []


# ====================================================================================== soak
@pytest.mark.slow
@pytest.mark.parametrize("mode", [Mode.ERROR, Mode.KILL], ids=lambda mode: mode.value)
def test_one_fault_at_every_aws_call_of_the_order_path(shop: Shop, baseline: list[Record], mode: Mode,
                                                        subtests: Any) -> None:
    sweep(shop, [case for case in all_cases(baseline) if case.mode is mode], subtests)


@pytest.mark.slow
def test_concurrent_orders_each_with_a_fault(shop: Shop, baseline: list[Record]) -> None:
    """Several orders at once, a fault armed in several functions: every order still comes out whole."""
    rng = random.Random(int(os.environ.get("ORDERFLOW_SEED", "5")))
    rounds = 6 if SOAK else 2
    width = 8 if SOAK else 4
    cases = without_known_bugs(all_cases(baseline))
    for _ in range(rounds):
        chosen = rng.sample(cases, k=min(width, len(cases)))
        stages = shop.stage(width)
        injectors = [shop.rt.observe(FaultInjector(c.function, c.call, c.mode, after_fault=shop.after_fault))
                     for c in chosen]
        placed: list[Placed] = []
        lock = threading.Lock()

        def buy(stage: Any) -> None:
            order = shop.place(stage)
            with lock:
                placed.append(order)

        threads = [threading.Thread(target=buy, args=(stage,)) for stage in stages]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            shop.rt.settle(timeout=120)
        finally:
            for injector in injectors:
                shop.rt.observers.remove(injector)
        record("scenarios")
        record("faults_injected", sum(len(injector.fired) for injector in injectors))
        assert len(placed) == width
        problems = [p for order in placed for p in shop.verify_order(order)]
        assert problems == [], f"faults {[str(c) for c in chosen]}: " + "; ".join(problems)


@pytest.mark.slow
def test_two_faults_in_one_order(shop: Shop, baseline: list[Record]) -> None:
    """Two faults in different functions of the same order (a crash and a throttle, say)."""
    rng = random.Random(int(os.environ.get("ORDERFLOW_SEED", "11")))
    cases = without_known_bugs(all_cases(baseline))
    for _ in range(24 if SOAK else 6):
        first, second = rng.sample(cases, k=2)
        stage = shop.next_stage()
        injectors = [shop.rt.observe(FaultInjector(c.function, c.call, c.mode, after_fault=shop.after_fault))
                     for c in (first, second)]
        try:
            placed = shop.place(stage)
            shop.rt.settle(timeout=60)
        finally:
            for injector in injectors:
                shop.rt.observers.remove(injector)
        record("scenarios")
        record("faults_injected", sum(len(injector.fired) for injector in injectors))
        problems = shop.verify_order(placed)
        assert problems == [], f"faults {first} + {second}: " + "; ".join(problems)
