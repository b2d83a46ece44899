"""The projections table, and the only code that touches it (the projector, the list query and the rebuild).

One table, one item per order per generation, and one pointer item:

- ``pk = "pointer"``: ``active`` (the generation the list reads), ``building`` (the generation a rebuild is
  filling, if one runs) and ``revision`` (bumped by every change of the pointer).
- ``pk = "g<N>#order#<orderId>"``: the order's summary in generation N, with its position (``version``), and the
  keys of two indexes, both sorted by ``list_key = "<placedAt>#<orderId>"`` (RFC 3339 in UTC sorts as text):
  ``byCustomer`` on ``customer_key = "g<N>#<customerId>"`` and ``byCustomerStatus`` on
  ``customer_status_key = "g<N>#<customerId>#<status>"``.

Why a second index for the status filter, not a FilterExpression: DynamoDB applies a filter after ``Limit``, so a
filtered page reads (and bills) every order of the customer until it finds enough matches, and can come back
empty with a cursor. Keyed by customer and status, a page reads exactly its rows. The price is a second index
write per event, and two when the status changes (the row moves between index partitions).

Both indexes project every attribute, and that costs no extra index write: each event changes attributes a page
shows (status, total, reason, updatedAt, version), so a narrower projection still rewrites the entry. A keys-only
``byCustomer`` would skip its write for every event after an order's first (one write unit per order), by making
every page a Query plus a BatchGetItem of its rows (about ten read units for a page of 20 instead of one or two):
a loss once a customer reads about one page per order. One index for both lists (merging the four status
partitions) would skip ``byCustomer`` altogether, but an order changing status could then be missing from an
unfiltered page for a moment. Neither is taken.

Every write of a summary is one ``PutItem`` conditional on its position (``version``) being the one the writer read
(on the summary not existing yet for an order's first event): so two deliveries of events of the same order cannot
both apply, one of them finds the position moved. One write unit per event and generation, plus the indexes'.

The write does not check the pointer: a ``ConditionCheck`` on it would make every write a ``TransactWriteItems``,
four write units instead of one. What it would guarantee, that no projector holding a pointer from before a rebuild
started writes the old generation only, comes from a bound on how old a projector's pointer can be: the projector
reads the pointer when an invocation starts (service.Projector.refresh: one read unit per batch) and Lambda ends an
invocation at its function's timeout, so no summary is written with a pointer older than
``PROJECTOR_POINTER_MAX_AGE_SECONDS``. The rebuild waits that long (and a margin) after it moves the pointer before
it relies on every projector knowing (offline/rebuild.py has the protocol).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from shared.event_store import from_dynamo, to_dynamo

from .summary import OrderSummary

POINTER_PK = "pointer"
FIRST_GENERATION = 1
BY_CUSTOMER = "byCustomer"
BY_CUSTOMER_STATUS = "byCustomerStatus"
# The list reads the active generation from the pointer, trusted for this long. A rebuild waits longer than this
# after it flips the pointer before it deletes the old generation (offline/rebuild.py).
LIST_POINTER_TTL_SECONDS = 5.0
# The projector function's timeout (stacks/projections.py; tests/infra checks the two agree). The projector reads the
# pointer when an invocation starts and Lambda ends the invocation at its timeout: no summary is written with a
# pointer read longer ago than that.
PROJECTOR_TIMEOUT_SECONDS = 30
PROJECTOR_POINTER_MAX_AGE_SECONDS = float(PROJECTOR_TIMEOUT_SECONDS)


@dataclass(frozen=True)
class Pointer:
    active: int
    building: int | None
    revision: int  # 0: there is no pointer item yet (generation 1 is active)

    def generations(self) -> tuple[int, ...]:
        """Where the projector writes: the active generation, and the one being rebuilt while a rebuild runs."""
        return (self.active,) if self.building is None else (self.active, self.building)


INITIAL_POINTER = Pointer(active=FIRST_GENERATION, building=None, revision=0)


class PositionMoved(Exception):
    """Another writer changed the summary since it was read: read it again."""


class PointerMoved(Exception):
    """The pointer changed since it was read (another rebuild started or finished)."""


def prefix(generation: int) -> str:
    return f"g{generation}#"


def view_key(generation: int, order_id: str) -> str:
    return f"{prefix(generation)}order#{order_id}"


def list_key(placed_at: str, order_id: str) -> str:
    return f"{placed_at}#{order_id}"


def _index_key(generation: int, customer_id: str, status: str | None) -> tuple[str, str]:
    if status is None:
        return "customer_key", f"{prefix(generation)}{customer_id}"
    return "customer_status_key", f"{prefix(generation)}{customer_id}#{status}"


def _item(generation: int, view: OrderSummary) -> dict[str, Any]:
    return {
        "pk": view_key(generation, view.order_id),
        "generation": generation,
        "customer_key": _index_key(generation, view.customer_id, None)[1],
        "customer_status_key": _index_key(generation, view.customer_id, view.status)[1],
        "list_key": list_key(view.placed_at, view.order_id),
        "order_id": view.order_id,
        "customer_id": view.customer_id,
        "status": view.status,
        "total": view.total,
        "reason": view.reason,
        "item_count": view.item_count,
        "placed_at": view.placed_at,
        "updated_at": view.updated_at,
        "version": view.version,
    }


def _view(item: dict[str, Any]) -> OrderSummary:
    return OrderSummary(
        order_id=item["order_id"],
        customer_id=item["customer_id"],
        status=item["status"],
        total=item.get("total"),
        reason=item.get("reason"),
        item_count=int(item["item_count"]),
        placed_at=item["placed_at"],
        updated_at=item["updated_at"],
        version=int(item["version"]),
    )


class ProjectionStore:
    def __init__(self, table_name: str, client: Any) -> None:
        self.table = table_name
        self._client = client

    # ------------------------------------------------------------------ the pointer
    def pointer(self) -> Pointer:
        found = self._client.get_item(TableName=self.table, Key=to_dynamo({"pk": POINTER_PK}), ConsistentRead=True)
        if "Item" not in found:
            return INITIAL_POINTER
        item = from_dynamo(found["Item"])
        building = item.get("building")
        return Pointer(active=int(item["active"]), building=None if building is None else int(building),
                       revision=int(item["revision"]))

    def move_pointer(self, read: Pointer, active: int, building: int | None) -> Pointer:
        """Set the pointer if it is still ``read``; PointerMoved otherwise."""
        moved = Pointer(active=active, building=building, revision=read.revision + 1)
        item = {"pk": POINTER_PK, "active": active, "revision": moved.revision}
        if building is not None:
            item["building"] = building
        if read.revision == 0:
            condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        else:
            condition = {"ConditionExpression": "revision = :revision",
                         "ExpressionAttributeValues": to_dynamo({":revision": read.revision})}
        try:
            self._client.put_item(TableName=self.table, Item=to_dynamo(item), **condition)
        except self._client.exceptions.ConditionalCheckFailedException:
            raise PointerMoved() from None
        return moved

    # ------------------------------------------------------------------ summaries
    def view(self, generation: int, order_id: str) -> OrderSummary | None:
        found = self._client.get_item(
            TableName=self.table, Key=to_dynamo({"pk": view_key(generation, order_id)}), ConsistentRead=True
        )
        return _view(from_dynamo(found["Item"])) if "Item" in found else None

    def put_view(self, generation: int, view: OrderSummary, expected_position: int) -> None:
        """Write the summary with its new position if its position is still ``expected_position`` (0: no summary
        yet); PositionMoved otherwise."""
        if expected_position == 0:
            condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        else:
            condition = {
                "ConditionExpression": "version = :position",
                "ExpressionAttributeValues": to_dynamo({":position": expected_position}),
            }
        try:
            self._client.put_item(TableName=self.table, Item=to_dynamo(_item(generation, view)), **condition)
        except self._client.exceptions.ConditionalCheckFailedException:
            raise PositionMoved() from None

    def list_views(
        self, generation: int, customer_id: str, status: str | None, limit: int, after: str | None
    ) -> tuple[list[OrderSummary], str | None]:
        """A page of the customer's summaries, newest first, after the ``list_key`` ``after``; and the last
        ``list_key`` of the page when DynamoDB says there may be more."""
        attribute, value = _index_key(generation, customer_id, status)
        query: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": BY_CUSTOMER if status is None else BY_CUSTOMER_STATUS,
            "KeyConditionExpression": "#key = :key",
            "ExpressionAttributeNames": {"#key": attribute},
            "ExpressionAttributeValues": to_dynamo({":key": value}),
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if after is not None:
            order_id = after.rsplit("#", 1)[1]
            query["ExclusiveStartKey"] = to_dynamo(
                {"pk": view_key(generation, order_id), attribute: value, "list_key": after}
            )
        page = self._client.query(**query)
        views = [_view(from_dynamo(item)) for item in page.get("Items", [])]
        last = page.get("LastEvaluatedKey")
        return views, (from_dynamo(last)["list_key"] if last else None)

    # ------------------------------------------------------------------ whole generations (the rebuild)
    def views_of(self, generation: int) -> Iterator[OrderSummary]:
        for item in self._scan(prefix(generation)):
            yield _view(item)

    def delete_generation(self, generation: int) -> int:
        keys = [{"pk": item["pk"]} for item in self._scan(prefix(generation))]
        for start in range(0, len(keys), 25):
            requests = [{"DeleteRequest": {"Key": to_dynamo(key)}} for key in keys[start : start + 25]]
            while requests:
                answer = self._client.batch_write_item(RequestItems={self.table: requests})
                requests = answer.get("UnprocessedItems", {}).get(self.table, [])
        return len(keys)

    def _scan(self, key_prefix: str) -> Iterator[dict[str, Any]]:
        scan: dict[str, Any] = {
            "TableName": self.table,
            "FilterExpression": "begins_with(pk, :prefix)",
            "ExpressionAttributeValues": to_dynamo({":prefix": key_prefix}),
        }
        while True:
            page = self._client.scan(**scan)
            for item in page.get("Items", []):
                yield from_dynamo(item)
            if "LastEvaluatedKey" not in page:
                return
            scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]
