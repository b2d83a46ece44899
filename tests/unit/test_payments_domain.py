"""The account aggregate, pure: decisions, evolution, idempotency per (order, action), and its invariants."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payments import domain
from payments.domain import (
    Account,
    AuthorizationCancelled,
    AuthorizationConflict,
    DepositConflict,
    InvalidAmount,
    PaymentAlreadyCaptured,
    PaymentDeclined,
    PaymentError,
    PaymentNotAuthorized,
    PaymentStatus,
)
from payments.events import (
    AuthorizationVoided,
    FundsDeposited,
    PaymentAuthorized,
    PaymentCaptured,
)
from payments.events import PaymentDeclined as PaymentDeclinedEvent
from shared.events import DomainEvent

D = Decimal


def apply(account: Account, events: list[DomainEvent]) -> Account:
    for event in events:
        account = domain.evolve(account, event, account.version + 1)
    return account


def funded(amount: str = "100.00") -> Account:
    return apply(Account("c-1"), domain.decide_deposit(Account("c-1"), "d-1", D(amount)))


def test_a_new_account_is_empty() -> None:
    account = Account("c-1")
    assert (account.balance, account.held, account.available, account.version) == (D("0"), D("0"), D("0"), 0)


def test_deposits_raise_the_balance_once_per_deposit_id() -> None:
    account = funded("100")
    assert account.balance == D("100.00") and account.version == 1
    assert domain.decide_deposit(account, "d-1", D("100.00")) == []
    with pytest.raises(DepositConflict):
        domain.decide_deposit(account, "d-1", D("50.00"))
    account = apply(account, domain.decide_deposit(account, "d-2", D("0.01")))
    assert account.balance == D("100.01")


def test_authorize_holds_and_capture_moves_the_hold_out_of_the_balance() -> None:
    account = funded()
    events = domain.decide_authorize(account, "o-1", D("30.00"))
    assert events == [PaymentAuthorized(order_id="o-1", amount="30.00")]
    account = apply(account, events)
    assert (account.balance, account.held, account.available) == (D("100"), D("30"), D("70"))
    assert domain.authorization(account, "o-1").status is PaymentStatus.AUTHORIZED

    captured = domain.decide_capture(account, "o-1")
    assert captured == [PaymentCaptured(order_id="o-1", amount="30.00")]
    account = apply(account, captured)
    assert (account.balance, account.held, account.available) == (D("70"), D("0"), D("70"))


def test_void_releases_the_hold() -> None:
    account = apply(funded(), [PaymentAuthorized(order_id="o-1", amount="30.00")])
    events = domain.decide_void(account, "o-1")
    assert events == [AuthorizationVoided(order_id="o-1")]
    account = apply(account, events)
    assert (account.balance, account.held) == (D("100"), D("0"))
    assert domain.hold_released(account, "o-1") is True


def test_authorizing_more_than_available_is_declined_and_recorded() -> None:
    account = apply(funded(), [PaymentAuthorized(order_id="o-1", amount="80.00")])
    events = domain.decide_authorize(account, "o-2", D("20.01"))
    assert events == [PaymentDeclinedEvent(order_id="o-2", amount="20.01", reason="INSUFFICIENT_FUNDS")]
    account = apply(account, events)
    with pytest.raises(PaymentDeclined):
        domain.authorization(account, "o-2")
    assert account.held == D("80")  # nothing held for the declined order
    # exactly the available amount is fine
    assert domain.decide_authorize(account, "o-3", D("20.00")) == [PaymentAuthorized(order_id="o-3", amount="20.00")]


def test_an_empty_account_declines() -> None:
    events = domain.decide_authorize(Account("c-1"), "o-1", D("0.01"))
    assert [type(e) for e in events] == [PaymentDeclinedEvent]


def test_repeated_authorize_decides_nothing_and_answers_the_same() -> None:
    account = apply(funded(), [PaymentAuthorized(order_id="o-1", amount="30.00")])
    assert domain.decide_authorize(account, "o-1", D("30")) == []
    assert domain.authorization(account, "o-1").amount == D("30.00")
    with pytest.raises(AuthorizationConflict):
        domain.decide_authorize(account, "o-1", D("31"))
    account = apply(account, [PaymentCaptured(order_id="o-1", amount="30.00")])
    assert domain.decide_authorize(account, "o-1", D("30")) == []  # a late retry after capture
    assert domain.authorization(account, "o-1").status is PaymentStatus.CAPTURED


def test_a_declined_order_is_declined_again_without_a_second_event() -> None:
    account = apply(Account("c-1"), [PaymentDeclinedEvent(order_id="o-1", amount="5.00", reason="INSUFFICIENT_FUNDS")])
    account = apply(account, [FundsDeposited(deposit_id="d-1", amount="100.00")])  # money arrives later
    assert domain.decide_authorize(account, "o-1", D("5.00")) == []
    with pytest.raises(PaymentDeclined):
        domain.authorization(account, "o-1")


def test_capture_is_idempotent_and_needs_a_hold() -> None:
    account = apply(funded(), [PaymentAuthorized(order_id="o-1", amount="30.00"), PaymentCaptured(order_id="o-1", amount="30.00")])
    assert domain.decide_capture(account, "o-1") == []
    with pytest.raises(PaymentNotAuthorized):
        domain.decide_capture(account, "unknown")
    voided = apply(funded(), [PaymentAuthorized(order_id="o-2", amount="1.00"), AuthorizationVoided(order_id="o-2")])
    with pytest.raises(PaymentNotAuthorized):
        domain.decide_capture(voided, "o-2")


def test_void_is_idempotent_and_refuses_a_captured_payment() -> None:
    account = apply(funded(), [PaymentAuthorized(order_id="o-1", amount="30.00"), AuthorizationVoided(order_id="o-1")])
    assert domain.decide_void(account, "o-1") == []
    assert domain.hold_released(account, "o-1") is True
    declined = apply(Account("c-1"), [PaymentDeclinedEvent(order_id="o-1", amount="5.00", reason="INSUFFICIENT_FUNDS")])
    assert domain.decide_void(declined, "o-1") == []
    assert domain.hold_released(declined, "o-1") is False
    captured = apply(funded(), [PaymentAuthorized(order_id="o-1", amount="30.00"), PaymentCaptured(order_id="o-1", amount="30.00")])
    with pytest.raises(PaymentAlreadyCaptured):
        domain.decide_void(captured, "o-1")


def test_a_void_before_the_authorize_leaves_a_tombstone_that_refuses_it() -> None:
    account = funded()
    events = domain.decide_void(account, "o-1")
    assert events == [AuthorizationVoided(order_id="o-1")]
    account = apply(account, events)
    assert domain.hold_released(account, "o-1") is False
    assert domain.decide_void(account, "o-1") == []  # a repeated void: nothing more
    assert domain.decide_authorize(account, "o-1", D("10")) == []
    with pytest.raises(AuthorizationCancelled):
        domain.authorization(account, "o-1")
    assert account.held == D("0")


def test_an_authorize_after_a_void_of_the_hold_is_refused() -> None:
    account = apply(funded(), [PaymentAuthorized(order_id="o-1", amount="30.00"), AuthorizationVoided(order_id="o-1")])
    assert domain.decide_authorize(account, "o-1", D("30")) == []
    with pytest.raises(AuthorizationCancelled):
        domain.authorization(account, "o-1")


@pytest.mark.parametrize("amount", ["0", "0.00", "-1", "1.001", "NaN", "Infinity", "abc", "1e20", 1.5, 2, True, None])
def test_bad_amounts_are_refused(amount: object) -> None:
    with pytest.raises(InvalidAmount):
        domain.to_amount(amount)  # type: ignore[arg-type]
    if isinstance(amount, str):
        with pytest.raises(InvalidAmount):
            domain.decide_authorize(funded(), "o-1", amount)  # type: ignore[arg-type]


def test_amounts_are_normalized_to_cents() -> None:
    assert domain.to_amount("12.5") == D("12.50") and str(domain.to_amount("7")) == "7.00"
    assert domain.money(D("3")) == "3.00"


@pytest.mark.parametrize(
    "history",
    [
        [PaymentCaptured(order_id="o-1", amount="1.00")],
        [AuthorizationVoided(order_id="o-1"), AuthorizationVoided(order_id="o-1")],
        [FundsDeposited(deposit_id="d", amount="1.00"), FundsDeposited(deposit_id="d", amount="1.00")],
        [PaymentAuthorized(order_id="o-1", amount="1.00"), PaymentAuthorized(order_id="o-1", amount="1.00")],
        [PaymentAuthorized(order_id="o-1", amount="1.00"), PaymentCaptured(order_id="o-1", amount="2.00")],
    ],
)
def test_a_history_the_decisions_cannot_produce_is_refused(history: list[DomainEvent]) -> None:
    with pytest.raises(ValueError):
        apply(Account("c-1"), history)


def test_events_must_come_in_version_order() -> None:
    with pytest.raises(ValueError):
        domain.evolve(Account("c-1"), FundsDeposited(deposit_id="d", amount="1.00"), 2)


# --- properties ----------------------------------------------------------------------------------------

ORDERS = [f"o-{n}" for n in range(5)]
amounts = st.decimals(min_value=D("0.01"), max_value=D("200.00"), places=2, allow_nan=False, allow_infinity=False)
commands = st.one_of(
    st.tuples(st.just("deposit"), st.sampled_from([f"d-{n}" for n in range(4)]), amounts),
    st.tuples(st.just("authorize"), st.sampled_from(ORDERS), amounts),
    st.tuples(st.just("capture"), st.sampled_from(ORDERS), st.none()),
    st.tuples(st.just("void"), st.sampled_from(ORDERS), st.none()),
)


def decide(account: Account, command: tuple[str, str, Decimal | None]) -> list[DomainEvent]:
    action, key, amount = command
    match action:
        case "deposit":
            return domain.decide_deposit(account, key, amount)  # type: ignore[arg-type]
        case "authorize":
            return domain.decide_authorize(account, key, amount)  # type: ignore[arg-type]
        case "capture":
            return domain.decide_capture(account, key)
        case _:
            return domain.decide_void(account, key)


@settings(max_examples=300, deadline=None)
@given(st.lists(commands, max_size=40))
def test_invariants_hold_for_any_sequence_of_commands(sequence: list[tuple[str, str, Decimal | None]]) -> None:
    account = Account("c-1")
    history: list[DomainEvent] = []
    for command in sequence:
        try:
            events = decide(account, command)
        except PaymentError:
            continue  # refused: nothing is written
        assert len(events) <= 1
        account = apply(account, events)
        history.extend(events)

        assert account.held >= 0 and account.balance >= 0 and account.available >= 0
        held = sum((p.amount for p in account.payments.values() if p.status is PaymentStatus.AUTHORIZED), D("0"))
        deposited = sum(account.deposits.values(), D("0"))
        captured = sum((p.amount for p in account.payments.values() if p.status is PaymentStatus.CAPTURED), D("0"))
        assert account.held == held
        assert account.balance == deposited - captured

        # Asking again for what just happened decides nothing (idempotent per (order, action)).
        try:
            assert decide(account, command) == []
        except PaymentError:
            pass  # e.g. a capture after a void: refused again, still nothing written

    assert account.version == len(history)
    replayed = domain.replay("c-1", ((event, n) for n, event in enumerate(history, 1)))
    assert replayed == account
    assert domain.replay("c-1", ((event, n) for n, event in enumerate(history, 1))) == replayed


@settings(max_examples=200, deadline=None)
@given(st.lists(amounts, min_size=1, max_size=10), st.lists(amounts, min_size=1, max_size=10))
def test_holds_never_exceed_the_balance(deposits: list[Decimal], orders: list[Decimal]) -> None:
    account = Account("c-1")
    for n, amount in enumerate(deposits):
        account = apply(account, domain.decide_deposit(account, f"d-{n}", amount))
    authorized = D("0")
    for n, amount in enumerate(orders):
        account = apply(account, domain.decide_authorize(account, f"o-{n}", amount))
        if account.payments[f"o-{n}"].status is PaymentStatus.AUTHORIZED:
            authorized += amount
    assert authorized == account.held <= sum(deposits, D("0")) == account.balance
