"""Reversible attribute patches on moto's classes and modules (they are process-wide while a runtime runs)."""

from __future__ import annotations

import threading
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
