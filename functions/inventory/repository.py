"""The inventory table: the only module that knows its layout and talks to DynamoDB.

Key design (one table, env INVENTORY_TABLE; pk (S) HASH + sk (S) RANGE; stream NEW_IMAGE; TTL "expires_at"):

    item         pk                      sk                 kind          attributes
    product      PRODUCT#<sku>           PRODUCT            product       sku, name, price ("12.50", a decimal
                                                                          string), available, reserved, sold,
                                                                          revision (numbers), created_at, updated_at
    reservation  RESERVATION#<orderId>   RESERVATION        reservation   order_id, status (RESERVED | RELEASED |
                                                                          COMMITTED), version, tombstone, lines
                                                                          [{sku, quantity, unit_price}], total,
                                                                          created_at, updated_at
    outbox       <its owner's pk>        OUTBOX#<sequence>  outbox        the envelope (shared.records), expires_at
                                                                          (epoch seconds, now + 7 days: the TTL)

Why this way:
- Every item is reached by its key: GetItem / BatchGetItem, no index and no scan on any path.
- An outbox item lives in the partition of what it is about (the product for ProductUpdated, the order's
  reservation for InventoryReserved/Released/Committed) under ``OUTBOX#<sequence>``, the sequence being the
  product's revision or the reservation's version. The put is conditional on the item not existing, so an
  event can be written once only: a second guard for exactly-once beside the state conditions. Querying
  ``pk = RESERVATION#<orderId>`` shows an order's reservation and everything it published (until the TTL).
- The stream carries every item; the relay's filter keeps INSERTs with ``kind = outbox``; TTL deletes arrive
  as REMOVEs and are ignored. Reservations have no TTL: they are the saga steps' idempotency records.

Writes: every change is ONE TransactWriteItems of the state change and its outbox item.
- Stock moves are updates of ``available``/``reserved``/``sold`` by the domain's deltas, conditional on the
  product existing and on every count that decreases staying >= 0 (``available >= :qty``). A reserve also
  requires the price it quoted to be unchanged. ``ReturnValuesOnConditionCheckFailure = ALL_OLD`` gives
  back the failing product, so the cancellation reasons say which line failed and why: no item ->
  UnknownProduct, a short count -> OutOfStock, a moved price -> StaleState (decide again).
- A reservation is created with ``attribute_not_exists(pk)`` and moved on with ``status = :expected``.
- An admin's product change requires the revision it read (optimistic concurrency).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from shared.event_store import from_dynamo, to_dynamo
from shared.events import EventEnvelope, rfc3339, utcnow
from shared.records import OUTBOX_KIND, envelope_to_attributes

from .domain import (
    RESERVE,
    OutOfStock,
    PricedLine,
    Product,
    ProductChange,
    Reservation,
    ReservationChange,
    ReservationStatus,
    StockMove,
    UnknownProduct,
    money,
)

PRODUCT_KIND = "product"
RESERVATION_KIND = "reservation"
OUTBOX_TTL = timedelta(days=7)
MAX_BATCH_GET_ATTEMPTS = 5
# Cancellation reasons that say "not now" rather than "not so": the service reads, decides and writes again.
TRANSIENT_CODES = frozenset({"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})


class StaleState(Exception):
    """The state a decision was based on changed before the write: read again and decide again."""


class WriteConflict(Exception):
    """DynamoDB said "not now": another transaction was writing the same items (TransactionConflict), or it
    throttled. Transient: the service backs off and tries again."""


class InconsistentInventory(RuntimeError):
    """A write found the table in a state no sequence of inventory operations can produce. Never retried away."""


def product_key(sku: str) -> dict[str, str]:
    return {"pk": f"PRODUCT#{sku}", "sk": "PRODUCT"}


def reservation_key(order_id: str) -> dict[str, str]:
    return {"pk": f"RESERVATION#{order_id}", "sk": "RESERVATION"}


def outbox_sk(envelope: EventEnvelope) -> str:
    return f"OUTBOX#{envelope.sequence}"


def product_from_item(item: dict[str, Any]) -> Product:
    return Product(
        sku=item["sku"],
        name=item["name"],
        price=Decimal(item["price"]),
        available=int(item["available"]),
        reserved=int(item["reserved"]),
        sold=int(item["sold"]),
        revision=int(item["revision"]),
    )


def reservation_from_item(item: dict[str, Any]) -> Reservation:
    return Reservation(
        order_id=item["order_id"],
        status=ReservationStatus(item["status"]),
        lines=tuple(
            PricedLine(sku=l["sku"], quantity=int(l["quantity"]), unit_price=Decimal(l["unit_price"]))
            for l in item["lines"]
        ),
        version=int(item["version"]),
        tombstone=bool(item.get("tombstone", False)),
    )


@dataclass(frozen=True)
class _Role:
    """What one action of a transaction is, to read its cancellation reason."""

    kind: str  # "state" | "stock" | "outbox"
    move: StockMove | None = None


class InventoryTable:
    def __init__(self, table_name: str, client: Any, now: Callable[[], datetime] = utcnow) -> None:
        self._table = table_name
        self._client = client
        self._now = now

    # --- reads (all strongly consistent: every decision is made on the latest committed state) ---

    def product(self, sku: str) -> Product | None:
        item = self._get(product_key(sku))
        return product_from_item(item) if item else None

    def reservation(self, order_id: str) -> Reservation | None:
        item = self._get(reservation_key(order_id))
        return reservation_from_item(item) if item else None

    def reservation_and_products(
        self, order_id: str, skus: Iterable[str]
    ) -> tuple[Reservation | None, dict[str, Product]]:
        """The order's reservation and the existing products among ``skus``, in one BatchGetItem."""
        keys = [to_dynamo(reservation_key(order_id))] + [to_dynamo(product_key(sku)) for sku in skus]
        request: dict[str, Any] = {self._table: {"Keys": keys, "ConsistentRead": True}}
        reservation: Reservation | None = None
        products: dict[str, Product] = {}
        for _attempt in range(MAX_BATCH_GET_ATTEMPTS):
            page = self._client.batch_get_item(RequestItems=request)
            for raw in page.get("Responses", {}).get(self._table, []):
                item = from_dynamo(raw)
                if item["kind"] == RESERVATION_KIND:
                    reservation = reservation_from_item(item)
                elif item["kind"] == PRODUCT_KIND:
                    product = product_from_item(item)
                    products[product.sku] = product
            request = page.get("UnprocessedKeys") or {}
            if not request:
                return reservation, products
        raise WriteConflict("BatchGetItem kept leaving keys unprocessed (throttled)")

    def _get(self, key: dict[str, str]) -> dict[str, Any] | None:
        response = self._client.get_item(TableName=self._table, Key=to_dynamo(key), ConsistentRead=True)
        return from_dynamo(response["Item"]) if "Item" in response else None

    # --- writes ---

    def write_reservation(self, change: ReservationChange, envelope: EventEnvelope | None) -> None:
        """The reservation's new state, its stock moves and its outbox item, all or nothing."""
        now = self._now()
        reservation = change.after
        actions: list[dict[str, Any]] = [self._reservation_action(change, now)]
        roles = [_Role("state")]
        for move in change.moves:
            actions.append(self._stock_action(move, change.quoted_prices.get(move.sku), now))
            roles.append(_Role("stock", move))
        if envelope is not None:
            actions.append(self._outbox_put(reservation_key(reservation.order_id)["pk"], envelope, now))
            roles.append(_Role("outbox"))
        self._transact(actions, roles)

    def write_product(self, change: ProductChange, envelope: EventEnvelope) -> None:
        """The product's new name, price and available count, and its ProductUpdated outbox item."""
        now = self._now()
        product = change.after
        key = product_key(product.sku)
        if change.expected_revision is None:
            state: dict[str, Any] = {
                "Put": {
                    "TableName": self._table,
                    "Item": to_dynamo(
                        {
                            **key,
                            "kind": PRODUCT_KIND,
                            "sku": product.sku,
                            "name": product.name,
                            "price": money(product.price),
                            "available": product.available,
                            "reserved": product.reserved,
                            "sold": product.sold,
                            "revision": product.revision,
                            "created_at": rfc3339(now),
                            "updated_at": rfc3339(now),
                        }
                    ),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
        else:
            # reserved and sold are not written: they belong to the orders in flight and the orders sold.
            state = {
                "Update": {
                    "TableName": self._table,
                    "Key": to_dynamo(key),
                    "UpdateExpression": "SET #name = :name, #price = :price, #available = :available, "
                    "#revision = :revision, #updated_at = :now",
                    "ConditionExpression": "#revision = :expected",
                    "ExpressionAttributeNames": _names("name", "price", "available", "revision", "updated_at"),
                    "ExpressionAttributeValues": to_dynamo(
                        {
                            ":name": product.name,
                            ":price": money(product.price),
                            ":available": product.available,
                            ":revision": product.revision,
                            ":expected": change.expected_revision,
                            ":now": rfc3339(now),
                        }
                    ),
                }
            }
        self._transact([state, self._outbox_put(key["pk"], envelope, now)], [_Role("state"), _Role("outbox")])

    def _reservation_action(self, change: ReservationChange, now: datetime) -> dict[str, Any]:
        reservation = change.after
        key = reservation_key(reservation.order_id)
        if change.expected_status is None:
            item = {
                **key,
                "kind": RESERVATION_KIND,
                "order_id": reservation.order_id,
                "status": reservation.status.value,
                "version": reservation.version,
                "tombstone": reservation.tombstone,
                "lines": [
                    {"sku": l.sku, "quantity": l.quantity, "unit_price": money(l.unit_price)} for l in reservation.lines
                ],
                "total": money(reservation.total),
                "created_at": rfc3339(now),
                "updated_at": rfc3339(now),
            }
            return {
                "Put": {
                    "TableName": self._table,
                    "Item": to_dynamo(item),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
        return {
            "Update": {
                "TableName": self._table,
                "Key": to_dynamo(key),
                "UpdateExpression": "SET #status = :status, #version = :version, #updated_at = :now",
                "ConditionExpression": "#status = :expected",
                "ExpressionAttributeNames": _names("status", "version", "updated_at"),
                "ExpressionAttributeValues": to_dynamo(
                    {
                        ":status": reservation.status.value,
                        ":version": reservation.version,
                        ":expected": change.expected_status.value,
                        ":now": rfc3339(now),
                    }
                ),
            }
        }

    def _stock_action(self, move: StockMove, quoted_price: Decimal | None, now: datetime) -> dict[str, Any]:
        deltas = move.deltas()
        sets = [f"#{count} = #{count} + :{count}" for count in deltas] + [
            "#revision = #revision + :one",
            "#updated_at = :now",
        ]
        # No count may go below zero, whatever else runs concurrently: each decrease is a condition of the write.
        conditions = ["attribute_exists(pk)"] + [
            f"#{count} >= :need_{count}" for count, delta in deltas.items() if delta < 0
        ]
        values: dict[str, Any] = {f":{count}": delta for count, delta in deltas.items()}
        values |= {f":need_{count}": -delta for count, delta in deltas.items() if delta < 0}
        values |= {":one": 1, ":now": rfc3339(now)}
        names = _names(*deltas, "revision", "updated_at")
        if quoted_price is not None:
            conditions.append("#price = :price")
            values[":price"] = money(quoted_price)
            names |= _names("price")
        return {
            "Update": {
                "TableName": self._table,
                "Key": to_dynamo(product_key(move.sku)),
                "UpdateExpression": "SET " + ", ".join(sets),
                "ConditionExpression": " AND ".join(conditions),
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": to_dynamo(values),
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }

    def _outbox_put(self, pk: str, envelope: EventEnvelope, now: datetime) -> dict[str, Any]:
        item = {
            "pk": pk,
            "sk": outbox_sk(envelope),
            "kind": OUTBOX_KIND,
            **envelope_to_attributes(envelope),
            "expires_at": int((now + OUTBOX_TTL).timestamp()),
        }
        return {
            "Put": {
                "TableName": self._table,
                "Item": to_dynamo(item),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }

    def _transact(self, actions: list[dict[str, Any]], roles: Sequence[_Role]) -> None:
        try:
            self._client.transact_write_items(TransactItems=actions)
        except self._client.exceptions.TransactionCanceledException as error:
            reasons = error.response.get("CancellationReasons") or []
            _raise_for(reasons, roles)
            raise


def _raise_for(reasons: Sequence[dict[str, Any]], roles: Sequence[_Role]) -> None:
    """Turn a cancelled transaction's reasons (one per action, in order) into what they mean for the caller."""
    codes = {reason.get("Code") for reason in reasons}
    if codes & TRANSIENT_CODES:
        raise WriteConflict(f"transient: {', '.join(sorted(c for c in codes & TRANSIENT_CODES))}")
    failed = [
        (role, reason)
        for role, reason in zip(roles, reasons, strict=False)
        if reason.get("Code") == "ConditionalCheckFailed"
    ]
    if any(role.kind == "state" for role, _ in failed):
        # The reservation or product is not in the state the decision was made on: it wins over stock errors
        # (a concurrent duplicate reserve must answer the stored reservation, not OutOfStock).
        raise StaleState("the item changed since it was read")
    unknown: list[str] = []
    shortages: dict[str, tuple[int, int]] = {}
    stale = False
    for role, reason in failed:
        if role.kind == "outbox":
            raise InconsistentInventory("an outbox item with this sequence exists already")
        if role.kind != "stock" or role.move is None:
            continue
        move = role.move
        if "Item" not in reason:  # ALL_OLD gives no item: there is no such product
            if move.move != RESERVE:
                raise InconsistentInventory(f"{move.sku} is gone but a reservation holds {move.quantity} of it")
            unknown.append(move.sku)
            continue
        product = product_from_item(from_dynamo(reason["Item"]))
        counts = {"available": product.available, "reserved": product.reserved, "sold": product.sold}
        short = {count: counts[count] for count, delta in move.deltas().items() if counts[count] < -delta}
        if not short:
            stale = True  # the price moved since it was quoted
        elif set(short) == {"available"}:
            shortages[move.sku] = (move.quantity, product.available)
        else:
            raise InconsistentInventory(f"{move.sku} has {short} but the reservation holds {move.quantity}")
    if unknown:
        raise UnknownProduct(unknown)
    if shortages:
        raise OutOfStock(shortages)
    if stale:
        raise StaleState("a product's price changed since it was quoted")


def _names(*attributes: str) -> dict[str, str]:
    return {f"#{name}": name for name in attributes}
