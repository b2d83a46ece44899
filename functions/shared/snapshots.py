"""Snapshots: a rebuildable cache of an event-sourced aggregate, so loading it stays flat as its history grows.

Loading an aggregate is its newest usable snapshot (one consistent GetItem) plus the events after it (one
Query), folded from there. A snapshot is usable only when it was written for this aggregate type with the
schema version the code encodes today: any other is ignored (the aggregate is replayed from its first event)
and rebuilt by the snapshotter, never trusted. Deleting every snapshot loses nothing.

Snapshots are taken off the hot path: the snapshotter Lambda (functions/snapshots) reads the tables' streams
and calls ``take_snapshot`` for each aggregate it sees, which writes a new snapshot when the aggregate has moved
``interval`` events past its last usable one. Commands never write snapshots.

Each aggregate type describes itself with a ``Snapshotting`` (orders/snapshot.py, payments/snapshot.py): how to
start, how to apply one stored event, and how to encode and decode its state. Bump its ``schema_version``
whenever the encoded state changes shape or meaning (including when an event upcaster changes what a fold
produces): every stored snapshot is then ignored and rebuilt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

from .event_store import EventStore, Snapshot, SnapshotTooLarge
from .events import EventEnvelope

S = TypeVar("S")


@dataclass(frozen=True)
class Snapshotting(Generic[S]):
    """What the snapshot machinery needs to know about one aggregate type whose state is ``S``."""

    aggregate_type: str  # written into the snapshot item; "order", "account"
    schema_version: int  # of the encoded state
    initial: Callable[[str], S]  # the state before the first event, from the aggregate id
    apply: Callable[[S, EventEnvelope], S]  # one stored event (decoded, upcast) applied to a state
    version_of: Callable[[S], int]  # 0 for the initial state
    encode: Callable[[S], dict[str, Any]]  # JSON-ready: str, int, bool, None, lists and dicts only
    decode: Callable[[dict[str, Any]], S]  # raises (KeyError, TypeError, ValueError) on what it cannot read

    def fold(self, state: S, events: Iterable[EventEnvelope]) -> S:
        for envelope in events:
            state = self.apply(state, envelope)
        return state

    def snapshot_of(self, aggregate_id: str, state: S) -> Snapshot:
        return Snapshot(
            aggregate_id=aggregate_id,
            aggregate_type=self.aggregate_type,
            schema_version=self.schema_version,
            version=self.version_of(state),
            state=self.encode(state),
        )


@dataclass(frozen=True)
class Loaded(Generic[S]):
    state: S
    snapshot_version: int  # 0 when the aggregate was replayed from its first event
    events_read: int  # the tail after the snapshot
    ignored: str | None = None  # why a stored snapshot was not used


def restore(snapshotting: Snapshotting[S], snapshot: Snapshot | None) -> tuple[S | None, str | None]:
    """The state a stored snapshot holds, or (None, why not) when it must not be used."""
    if snapshot is None:
        return None, None
    if snapshot.aggregate_type != snapshotting.aggregate_type:
        return None, f"aggregate type {snapshot.aggregate_type!r} is not {snapshotting.aggregate_type!r}"
    if snapshot.schema_version != snapshotting.schema_version:
        return None, f"schema version {snapshot.schema_version} is not {snapshotting.schema_version}"
    try:
        state = snapshotting.decode(dict(snapshot.state))
    except (KeyError, TypeError, ValueError, ArithmeticError) as error:
        return None, f"the state cannot be decoded: {error}"
    if snapshotting.version_of(state) != snapshot.version:
        return None, f"the state is at version {snapshotting.version_of(state)}, the item says {snapshot.version}"
    return state, None


def load(store: EventStore, aggregate_id: str, snapshotting: Snapshotting[S]) -> Loaded[S]:
    """The aggregate as its events say: newest usable snapshot + the events after it, or a full replay."""
    state, ignored = restore(snapshotting, store.load_snapshot(aggregate_id))
    if state is None:
        state, after = snapshotting.initial(aggregate_id), 0
    else:
        after = snapshotting.version_of(state)
    tail = store.load(aggregate_id, after_version=after)
    return Loaded(snapshotting.fold(state, tail), snapshot_version=after, events_read=len(tail), ignored=ignored)


class Outcome(StrEnum):
    WRITTEN = "WRITTEN"
    NOT_DUE = "NOT_DUE"  # fewer than ``interval`` events since the usable snapshot: nothing read but the snapshot
    SUPERSEDED = "SUPERSEDED"  # a snapshot at the same or a newer version is already stored
    TOO_LARGE = "TOO_LARGE"  # the state does not fit in an item: the aggregate keeps loading by full replay


@dataclass(frozen=True)
class Taken:
    outcome: Outcome
    version: int  # of the stored or written snapshot (0: none usable)
    ignored: str | None = None


def take_snapshot(
    store: EventStore, aggregate_id: str, snapshotting: Snapshotting[S], *, interval: int, seen_version: int
) -> Taken:
    """Snapshot the aggregate if it is ``interval`` or more events past its usable snapshot. Idempotent.

    ``seen_version`` is the newest version the caller saw (the stream record's): when it is within the interval
    of the stored snapshot, only the snapshot was read. Otherwise the aggregate is loaded (snapshot + tail),
    and the snapshot is written at the version it reached, unless one as new is already there.
    """
    if interval < 1:
        raise ValueError("the snapshot interval is at least 1")
    stored = store.load_snapshot(aggregate_id)
    base, ignored = restore(snapshotting, stored)
    base_version = 0 if base is None else snapshotting.version_of(base)
    # A stored snapshot found unusable is replaced whatever its version, unless newer code wrote it.
    replacing = None
    if ignored is not None and stored is not None and stored.schema_version <= snapshotting.schema_version:
        replacing = (stored.schema_version, stored.version)
    if seen_version - base_version < interval:
        return Taken(Outcome.NOT_DUE, base_version, ignored)
    start = snapshotting.initial(aggregate_id) if base is None else base
    state = snapshotting.fold(start, store.load(aggregate_id, after_version=base_version))
    version = snapshotting.version_of(state)
    if version - base_version < interval:
        return Taken(Outcome.NOT_DUE, base_version, ignored)
    try:
        written = store.save_snapshot(snapshotting.snapshot_of(aggregate_id, state), replacing=replacing)
    except SnapshotTooLarge:
        return Taken(Outcome.TOO_LARGE, base_version, ignored)
    return Taken(Outcome.WRITTEN if written else Outcome.SUPERSEDED, version, ignored)
