"""The inventory's rules, pure: no AWS."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inventory.domain import (
    COMMIT,
    RELEASE,
    RESERVE,
    InvalidRequest,
    InvalidTransition,
    Line,
    Move,
    OutOfStock,
    Product,
    Reservation,
    ReservationCancelled,
    ReservationNotFound,
    ReservationStatus,
    StockMove,
    UnknownProduct,
    decide_commit,
    decide_release,
    decide_reserve,
    decide_set_product,
    repeat_reserve,
)
from inventory.events import InventoryReserved, ProductUpdated


def product(sku: str, price: str = "12.50", available: int = 10, reserved: int = 0, sold: int = 0) -> Product:
    return Product(sku, f"product {sku}", Decimal(price), available, reserved, sold, revision=1)


def test_every_move_conserves_stock() -> None:
    for move in (RESERVE, RELEASE, COMMIT):
        assert move.available + move.reserved + move.sold == 0
    with pytest.raises(ValueError):
        Move(available=-1, reserved=0, sold=0)


@given(st.sampled_from([RESERVE, RELEASE, COMMIT]), st.integers(min_value=1, max_value=1000))
def test_a_stock_move_only_shifts_units(move: Move, quantity: int) -> None:
    deltas = StockMove("A", quantity, move).deltas()
    assert sum(deltas.values()) == 0 and all(delta != 0 for delta in deltas.values())


def test_reserve_prices_every_line_and_totals_them() -> None:
    products = {"A": product("A", "12.50"), "B": product("B", "0.99")}
    change = decide_reserve("o-1", [Line("A", 2), Line("B", 3)], products)
    assert change.after.total == Decimal("27.97")
    assert change.expected_status is None
    assert [(m.sku, m.quantity, m.move) for m in change.moves] == [("A", 2, RESERVE), ("B", 3, RESERVE)]
    assert change.quoted_prices == {"A": Decimal("12.50"), "B": Decimal("0.99")}
    assert isinstance(change.event, InventoryReserved)
    assert change.event.model_dump(mode="json") == {
        "order_id": "o-1",
        "lines": [
            {"sku": "A", "quantity": 2, "unit_price": "12.50"},
            {"sku": "B", "quantity": 3, "unit_price": "0.99"},
        ],
        "total": "27.97",
    }


def test_reserve_names_every_unknown_product_before_any_shortage() -> None:
    with pytest.raises(UnknownProduct, match="unknown products: X, Y") as error:
        decide_reserve("o-1", [Line("X", 1), Line("A", 99), Line("Y", 1)], {"A": product("A")})
    assert error.value.skus == ("X", "Y")


def test_reserve_names_every_short_line() -> None:
    with pytest.raises(OutOfStock, match=r"A \(11 wanted, 10 available\), B \(2 wanted, 1 available\)") as error:
        decide_reserve(
            "o-1",
            [Line("A", 11), Line("B", 2), Line("C", 1)],
            {s: product(s, available=a) for s, a in [("A", 10), ("B", 1), ("C", 1)]},
        )
    assert error.value.skus == ("A", "B")


def test_a_repeated_reserve_answers_the_stored_reservation() -> None:
    stored = decide_reserve("o-1", [Line("A", 2), Line("B", 1)], {"A": product("A"), "B": product("B")}).after
    assert repeat_reserve(stored, [Line("B", 1), Line("A", 2)]) is stored
    with pytest.raises(InvalidRequest):
        repeat_reserve(stored, [Line("A", 2)])


def test_release_before_reserve_is_a_tombstone_that_cancels_the_late_reserve() -> None:
    change = decide_release("o-1", None)
    assert change is not None and change.event is None and change.moves == ()
    assert change.after.tombstone and change.after.status is ReservationStatus.RELEASED
    with pytest.raises(ReservationCancelled):
        repeat_reserve(change.after, [Line("A", 1)])


def test_release_and_commit_move_the_reserved_units_once() -> None:
    reserved = Reservation(
        "o-1", ReservationStatus.RESERVED, decide_reserve("o-1", [Line("A", 2)], {"A": product("A")}).after.lines, 1
    )
    release = decide_release("o-1", reserved)
    commit = decide_commit("o-1", reserved)
    assert release is not None and commit is not None
    assert (release.expected_status, release.after.status, release.after.version) == (
        ReservationStatus.RESERVED,
        ReservationStatus.RELEASED,
        2,
    )
    assert (commit.expected_status, commit.after.status, commit.after.version) == (
        ReservationStatus.RESERVED,
        ReservationStatus.COMMITTED,
        2,
    )
    assert [m.move for m in release.moves] == [RELEASE] and [m.move for m in commit.moves] == [COMMIT]
    assert decide_release("o-1", release.after) is None
    assert decide_commit("o-1", commit.after) is None
    with pytest.raises(InvalidTransition):
        decide_commit("o-1", release.after)
    with pytest.raises(InvalidTransition):
        decide_release("o-1", commit.after)
    with pytest.raises(ReservationNotFound):
        decide_commit("o-1", None)


def test_setting_a_product_changes_the_available_count_only() -> None:
    current = product("A", "12.50", available=4, reserved=3, sold=2)
    change = decide_set_product("A", "Widget", Decimal("9.5"), 20, current)
    assert change is not None and change.expected_revision == 1
    assert (change.after.available, change.after.reserved, change.after.sold, change.after.revision) == (20, 3, 2, 2)
    assert change.event == ProductUpdated(sku="A", name="Widget", price="9.50", available=20, reserved=3, sold=2)
    assert decide_set_product("A", "product A", Decimal("12.5"), 4, current) is None  # nothing changed


def test_a_new_product_starts_with_nothing_reserved_or_sold() -> None:
    change = decide_set_product("A", "Widget", Decimal("1"), 0, None)
    assert change is not None and change.expected_revision is None
    assert (change.after.price, change.after.available, change.after.reserved, change.after.sold) == (
        Decimal("1.00"),
        0,
        0,
        0,
    )


@pytest.mark.parametrize(
    ("price", "stock"), [(Decimal("0"), 1), (Decimal("-1"), 1), (Decimal("1.001"), 1), (Decimal("1"), -1)]
)
def test_setting_a_product_refuses_impossible_values(price: Decimal, stock: int) -> None:
    with pytest.raises(InvalidRequest):
        decide_set_product("A", "Widget", price, stock, None)
