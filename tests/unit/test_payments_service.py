"""The payments service over both event stores (in memory and DynamoDB on moto), concurrency included."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.dynamodb.models import DynamoDBBackend

from payments.domain import (
    AuthorizationCancelled,
    PaymentAlreadyCaptured,
    PaymentDeclined,
    PaymentNotAuthorized,
    PaymentStatus,
)
from payments.service import PaymentsService, deposit_id_for
from shared.event_store import ConcurrencyError, DynamoDBEventStore, EventStore, InMemoryEventStore

D = Decimal


def create_event_table(client: Any, name: str) -> None:
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


@pytest.fixture
def serialized_moto_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's DynamoDB backend has no lock: two threads' transactions can interleave their condition checks
    and writes, which real DynamoDB never does. One lock around its write paths makes each write atomic.
    Reentrant: moto's transact_write_items applies its items through put_item/update_item."""
    lock = threading.RLock()
    for name in ("transact_write_items", "put_item", "update_item"):
        original = getattr(DynamoDBBackend, name)

        def locked(self: DynamoDBBackend, *args: Any, __original: Callable[..., Any] = original, **kwargs: Any) -> Any:
            with lock:
                return __original(self, *args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, functools.wraps(original)(locked))


@pytest.fixture(params=["memory", "dynamodb"])
def store(request: pytest.FixtureRequest, serialized_moto_writes: None) -> Iterator[EventStore]:
    if request.param == "memory":
        yield InMemoryEventStore()
        return
    with mock_aws():
        client = boto3.client("dynamodb")
        create_event_table(client, "payments")
        yield DynamoDBEventStore("payments", client)


@pytest.fixture
def service(store: EventStore) -> PaymentsService:
    return PaymentsService(store, pause=lambda attempt: None)


def test_an_account_without_events_is_empty(service: PaymentsService) -> None:
    account = service.account("c-1")
    assert (account.balance, account.held, account.version) == (D("0"), D("0"), 0)


def test_deposit_authorize_capture_are_recorded_with_their_ids(service: PaymentsService, store: EventStore) -> None:
    service.deposit("c-1", "d-1", D("100.00"))
    payment = service.authorize("c-1", "o-1", D("25.00"))
    assert (payment.status, payment.amount) == (PaymentStatus.AUTHORIZED, D("25.00"))
    assert service.capture("c-1", "o-1") is True
    assert service.account("c-1").payments["o-1"].status is PaymentStatus.CAPTURED
    account = service.account("c-1")
    assert (account.balance, account.held) == (D("75.00"), D("0.00"))

    history = store.load("account#c-1")
    assert [(e.type, e.data) for e in history] == [
        ("FundsDeposited", {"deposit_id": "d-1", "amount": "100.00"}),
        ("PaymentAuthorized", {"order_id": "o-1", "amount": "25.00"}),
        ("PaymentCaptured", {"order_id": "o-1", "amount": "25.00"}),
    ]
    assert {e.source for e in history} == {"orderflow.payments"}
    assert {e.subject for e in history} == {"account#c-1"}
    assert [e.correlationid for e in history] == ["account#c-1", "o-1", "o-1"]


def test_every_step_is_idempotent(service: PaymentsService, store: EventStore) -> None:
    service.deposit("c-1", "d-1", D("100"))
    service.deposit("c-1", "d-1", D("100"))
    assert service.authorize("c-1", "o-1", D("40")) == service.authorize("c-1", "o-1", D("40"))
    assert service.capture("c-1", "o-1") is True
    assert service.capture("c-1", "o-1") is False  # captured already (a redelivered OrderConfirmed): nothing written
    service.authorize("c-1", "o-2", D("10"))
    assert service.void("c-1", "o-2") is True
    assert service.void("c-1", "o-2") is True  # the same answer, nothing written
    assert [e.type for e in store.load("account#c-1")] == [
        "FundsDeposited",
        "PaymentAuthorized",
        "PaymentCaptured",
        "PaymentAuthorized",
        "AuthorizationVoided",
    ]
    account = service.account("c-1")
    assert (account.balance, account.held) == (D("60"), D("0"))


def test_a_decline_is_recorded_once_and_raised_every_time(service: PaymentsService, store: EventStore) -> None:
    service.deposit("c-1", "d-1", D("10"))
    for _ in range(2):
        with pytest.raises(PaymentDeclined):
            service.authorize("c-1", "o-1", D("10.01"))
    assert [(e.type, e.correlationid) for e in store.load("account#c-1")] == [
        ("FundsDeposited", "account#c-1"),
        ("PaymentDeclined", "o-1"),
    ]
    assert store.load("account#c-1")[-1].data == {"order_id": "o-1", "amount": "10.01", "reason": "INSUFFICIENT_FUNDS"}
    assert service.void("c-1", "o-1") is False
    assert service.account("c-1").held == D("0")


def test_a_void_that_overtakes_its_authorize_refuses_it(service: PaymentsService, store: EventStore) -> None:
    service.deposit("c-1", "d-1", D("100"))
    assert service.void("c-1", "o-1") is False
    assert service.void("c-1", "o-1") is False
    with pytest.raises(AuthorizationCancelled):
        service.authorize("c-1", "o-1", D("10"))
    assert [e.type for e in store.load("account#c-1")] == ["FundsDeposited", "AuthorizationVoided"]
    assert service.account("c-1").held == D("0")


def test_capture_without_a_hold_and_void_after_capture_are_refused(service: PaymentsService) -> None:
    service.deposit("c-1", "d-1", D("100"))
    with pytest.raises(PaymentNotAuthorized):
        service.capture("c-1", "o-1")
    service.authorize("c-1", "o-2", D("5"))
    service.capture("c-1", "o-2")
    with pytest.raises(PaymentAlreadyCaptured):
        service.void("c-1", "o-2")


def test_accounts_are_independent(service: PaymentsService) -> None:
    service.deposit("c-1", "d-1", D("100"))
    with pytest.raises(PaymentDeclined):
        service.authorize("c-2", "o-1", D("1"))
    assert service.account("c-1").balance == D("100")


def test_deposit_ids_are_per_customer_and_key() -> None:
    assert deposit_id_for("c-1", "k") == deposit_id_for("c-1", "k")
    assert len({deposit_id_for("c-1", "k"), deposit_id_for("c-2", "k"), deposit_id_for("c-1", "k2")}) == 3


def race(count: int, action: Callable[[int], Any]) -> list[Any]:
    """Run ``action(i)`` in ``count`` threads released together; the results (or raised exceptions)."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = action(i)
        except Exception as error:  # noqa: BLE001 - the test inspects it
            results[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_two_concurrent_authorizations_over_the_balance_exactly_one_wins(service: PaymentsService, store: EventStore) -> None:
    service.deposit("c-1", "d-1", D("100"))
    results = race(2, lambda i: service.authorize("c-1", f"o-{i}", D("60")))
    assert sorted(type(r).__name__ for r in results) == ["OrderPayment", "PaymentDeclined"]
    account = service.account("c-1")
    assert (account.balance, account.held, account.available) == (D("100"), D("60"), D("40"))
    assert sorted(e.type for e in store.load("account#c-1")) == ["FundsDeposited", "PaymentAuthorized", "PaymentDeclined"]


def test_the_same_authorization_run_concurrently_holds_once(service: PaymentsService, store: EventStore) -> None:
    service.deposit("c-1", "d-1", D("100"))
    results = race(4, lambda i: service.authorize("c-1", "o-1", D("30")))
    assert all(r.status is PaymentStatus.AUTHORIZED and r.amount == D("30") for r in results), results
    assert service.account("c-1").held == D("30")
    assert [e.type for e in store.load("account#c-1")] == ["FundsDeposited", "PaymentAuthorized"]


def test_a_concurrent_void_and_authorize_leave_nothing_held(service: PaymentsService) -> None:
    service.deposit("c-1", "d-1", D("100"))
    results = race(2, lambda i: service.void("c-1", "o-1") if i else service.authorize("c-1", "o-1", D("30")))
    # Whichever came first, the order ends voided and holds nothing.
    assert isinstance(results[0], AuthorizationCancelled) or results[0].status is PaymentStatus.AUTHORIZED
    assert service.account("c-1").held == D("0")


def test_many_racing_authorizations_never_overdraw(store: EventStore) -> None:
    service = PaymentsService(store, attempts=50, pause=lambda attempt: None)
    service.deposit("c-1", "d-1", D("100"))
    results = race(8, lambda i: service.authorize("c-1", f"o-{i}", D("30")))
    assert sum(1 for r in results if isinstance(r, PaymentDeclined)) == 5
    assert service.account("c-1").held == D("90")


def test_the_attempts_run_out_with_a_concurrency_error() -> None:
    class AlwaysStale(InMemoryEventStore):
        def append(self, aggregate_id: str, expected_version: int, events: Any) -> None:
            raise ConcurrencyError(aggregate_id, expected_version)

    pauses: list[int] = []
    service = PaymentsService(AlwaysStale(), attempts=3, pause=pauses.append)
    with pytest.raises(ConcurrencyError):
        service.deposit("c-1", "d-1", D("1"))
    assert pauses == [1, 2]
