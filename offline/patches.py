"""Reversible attribute patches on moto's classes and modules (they are process-wide while a runtime runs)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, MutableMapping
from typing import Any

_ACTIVE_LOCK = threading.Lock()
_ACTIVE_OWNER: object | None = None


def claim(owner: object) -> None:
    """Only one runtime may patch moto at a time: the patches are on classes, not instances."""
    global _ACTIVE_OWNER
    with _ACTIVE_LOCK:
        if _ACTIVE_OWNER is not None and _ACTIVE_OWNER is not owner:
            raise RuntimeError("another offline Runtime is running in this process: stop() it first")
        _ACTIVE_OWNER = owner


def release(owner: object) -> None:
    global _ACTIVE_OWNER
    with _ACTIVE_LOCK:
        if _ACTIVE_OWNER is owner:
            _ACTIVE_OWNER = None


class Patcher:
    """Replaces attributes and puts the originals back, last patched first."""

    def __init__(self) -> None:
        self._undo: list[tuple[Any, str, Any, bool]] = []

    def patch(self, owner: Any, name: str, replacement: Any) -> Any:
        had = name in vars(owner) if isinstance(owner, type) else hasattr(owner, name)
        original = vars(owner).get(name) if isinstance(owner, type) else getattr(owner, name, None)
        self._undo.append((owner, name, original, had))
        setattr(owner, name, replacement)
        return original

    def undo(self) -> None:
        while self._undo:
            owner, name, original, had = self._undo.pop()
            if had:
                setattr(owner, name, original)
            else:
                delattr(owner, name)


# moto's DynamoDB backend has no lock: a TransactWriteItems checks its conditions and then writes item by
# item, so two threads can both pass a condition, and a reader can see half a transaction. DynamoDB itself is
# atomic per item and per transaction; one re-entrant lock around every data operation gives moto the same
# guarantee (re-entrant because transact_write_items calls put_item/update_item itself).
DYNAMODB_DATA_OPERATIONS = (
    "put_item",
    "update_item",
    "delete_item",
    "get_item",
    "query",
    "scan",
    "batch_write_item",
    "batch_get_item",
    "transact_write_items",
    "transact_get_items",
)


def serialize_dynamodb(patcher: Patcher) -> None:
    from moto.dynamodb.models import DynamoDBBackend

    atomic_transactions(patcher)  # first: the lock below wraps the journaled TransactWriteItems
    lock = threading.RLock()
    for name in DYNAMODB_DATA_OPERATIONS:
        original = getattr(DynamoDBBackend, name, None)
        if original is None:
            continue

        def locked(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return _original(self, *args, **kwargs)

        locked.__name__ = name
        patcher.patch(DynamoDBBackend, name, locked)


# moto's TransactWriteItems (5.2.5) backs up every table it touches with copy.deepcopy (items and the whole stream
# history), applies the items one by one, and on cancellation puts the copies in place of the tables. So every
# transaction cost more as a table grew, and a cancelled one replaced the table's stream shard by another object
# (pollers that followed the object read the stream again from the start). It also wrote a stream record per
# internal write, two INSERTs for an Update that creates its item, and left the items before a malformed one
# written. The replacement below keeps moto's algorithm and answers (same checks in the same order, the same
# CancellationReasons and exceptions) but journals only the items it touches, holds the stream records back until
# the transaction commits, one per item, and undoes everything on any failure. The tables and their shards stay
# the same objects. moto ignores ClientRequestToken, and so does this.
def atomic_transactions(patcher: Patcher) -> None:
    from moto.dynamodb.models import DynamoDBBackend

    patcher.patch(DynamoDBBackend, "transact_write_items", _transact_write_items)


class _Transaction:
    """The items one TransactWriteItems touched (to undo them) and the stream records it wrote (to publish them)."""

    def __init__(self) -> None:
        self._undo: list[Any] = []
        self._shards: list[Any] = []
        self._records: dict[tuple[int, Any, Any], list[Any]] = {}  # (shard, hash, range) -> [shard, old, new]

    def remember(self, backend: Any, table_name: str, key: dict[str, Any], op_type: str) -> None:
        """Journal the item ``key`` as it is before ``op_type`` writes it; hold back its table's stream records."""
        import copy

        table = backend.get_table(table_name)
        hash_value, range_value = backend.get_keys_value(table, key)
        before = table.get_item(hash_value, range_value)
        if before is not None and op_type == "Update":
            before = copy.deepcopy(before)  # an Update changes the stored item in place; a Put or Delete replaces it

        def undo() -> None:
            if table.has_range_key:
                if before is None:
                    table.items[hash_value].pop(range_value, None)
                else:
                    table.items[hash_value][range_value] = before
            elif before is None:
                table.items.pop(hash_value, None)
            else:
                table.items[hash_value] = before

        self._undo.append(undo)
        self._hold_stream(table.stream_shard)

    def _hold_stream(self, shard: Any) -> None:
        if shard is None or any(held is shard for held in self._shards):
            return

        def add(old: Any, new: Any) -> None:
            item = old if old is not None else new
            entry = self._records.setdefault((id(shard), item.hash_key, item.range_key), [shard, old, new])
            entry[2] = new  # the item as the transaction leaves it; the old image as the transaction found it

        shard.add = add  # an instance attribute: hides StreamShard.add for this shard until release
        self._shards.append(shard)

    def _release(self) -> None:
        for shard in self._shards:
            vars(shard).pop("add", None)
        self._shards.clear()

    def rollback(self) -> None:
        self._release()
        self._records.clear()
        while self._undo:
            self._undo.pop()()

    def commit(self) -> None:
        self._release()
        self._undo.clear()
        for shard, old, new in self._records.values():
            shard.add(old, new)  # a MODIFY made by an Update on an item it created is still its INSERT
        self._records.clear()


def _transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
    """moto's DynamoDBBackend.transact_write_items (5.2.5) with a journal of the touched items instead of deep
    copies of the tables; stream records are written only when the transaction commits, one per item."""
    from moto.dynamodb.exceptions import (
        ConditionalCheckFailed,
        MockValidationException,
        MultipleTransactionsException,
        TooManyTransactionsException,
        TransactionCanceledException,
        TransactWriteSingleOpException,
    )
    from moto.dynamodb.models import get_filter_expression

    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    transaction = _Transaction()
    target_items: set[tuple[str, str]] = set()

    def check_unicity(table_name: str, key: dict[str, Any]) -> None:
        item = (str(table_name), str(dict(sorted(key.items()))))
        if item in target_items:
            raise MultipleTransactionsException()
        target_items.add(item)

    errors: list[tuple[str | None, str | None, dict[str, Any] | None]] = []  # (Code, Message, Item) per action
    try:
        for item in transact_items:
            original_item: dict[str, Any] | None = None
            if len(list(item.keys())) > 1:
                raise TransactWriteSingleOpException
            try:
                op_type, op = next(iter(item.items()))
                if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                    raise ValueError("Unsupported transaction operation")
                table_name = op["TableName"]
                condition_expression = op.get("ConditionExpression")
                expression_attribute_names = op.get("ExpressionAttributeNames")
                expression_attribute_values = op.get("ExpressionAttributeValues")
                if op_type == "Put":
                    attrs = op["Item"]
                    table = self.get_table(table_name)
                    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                    if table.range_key_attr is not None:
                        key[table.range_key_attr] = attrs[table.range_key_attr]
                else:
                    key = op["Key"]
                check_unicity(table_name, key)
                current = self.get_item(table_name, key)
                if condition_expression is not None:
                    condition_op = get_filter_expression(
                        condition_expression, expression_attribute_names, expression_attribute_values)
                    if not condition_op.expr(current):
                        if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                            original_item = current.to_json()["Attributes"]
                        raise ConditionalCheckFailed(item=original_item)
                if op_type != "ConditionCheck":
                    transaction.remember(self, table_name, key, op_type)
                if op_type == "Put":
                    self.put_item(table_name, op["Item"], condition_expression=condition_expression,
                                  expression_attribute_names=expression_attribute_names,
                                  expression_attribute_values=expression_attribute_values)
                elif op_type == "Delete":
                    self.delete_item(table_name, key, condition_expression=condition_expression,
                                     expression_attribute_names=expression_attribute_names,
                                     expression_attribute_values=expression_attribute_values)
                elif op_type == "Update":
                    self.update_item(table_name, key, update_expression=op["UpdateExpression"],
                                     condition_expression=condition_expression,
                                     expression_attribute_names=expression_attribute_names,
                                     expression_attribute_values=expression_attribute_values)
                errors.append((None, None, None))
            except (MultipleTransactionsException, MockValidationException):
                raise
            except ConditionalCheckFailed as error:
                errors.append(("ConditionalCheckFailed", str(error.message), original_item))
            except Exception as error:  # noqa: BLE001 - moto reports any other failure as the action's reason
                errors.append((type(error).__name__, str(error), original_item))
        if any(code is not None for code, _, _ in errors):
            raise TransactionCanceledException(errors)
    except BaseException:
        transaction.rollback()
        raise
    transaction.commit()


class _PerFunction(MutableMapping):
    """A dict per function (the one whose invocation or init runs on this thread), standing where Powertools keeps
    one process-wide dict: on Lambda every function has its own process, here they share one."""

    def __init__(self) -> None:
        self._by_function: dict[str | None, dict[str, Any]] = {}
        self._guard = threading.Lock()

    def _own(self) -> dict[str, Any]:
        from offline.observe import current

        invocation = current()
        key = invocation.function_name if invocation is not None else None
        with self._guard:
            return self._by_function.setdefault(key, {})

    def __getitem__(self, key: str) -> Any:
        return self._own()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._own()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._own()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._own()))

    def __len__(self) -> int:
        return len(self._own())

    def clear(self) -> None:
        self._own().clear()


def isolate_powertools_metrics(patcher: Patcher) -> None:
    """Powertools Metrics shares its metric, dimension and metadata dicts across every ``Metrics()`` of the process
    (class attributes), and ``log_metrics`` flushes and clears them. In one runtime process the functions run
    concurrently, so one function's flush could publish another's metrics under its own service dimension, or
    clear them before they were published. One set per function, as each Lambda function has its own process.
    Must run before any function module is imported (a ``Metrics()`` binds the dicts when it is made)."""
    from aws_lambda_powertools.metrics.metrics import Metrics

    for name in ("_metrics", "_dimensions", "_metadata", "_default_dimensions"):
        patcher.patch(Metrics, name, _PerFunction())
