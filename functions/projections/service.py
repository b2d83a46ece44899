"""The projector's use case: fold one order event into every generation the pointer names.

Used by the projector function (events from the bus) and by the rebuild (events read back from the event store),
so a rebuilt summary is made by exactly the code that makes the live one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from shared.events import EventEnvelope

from .store import Pointer, PointerMoved, PositionMoved, ProjectionStore
from .views import Outcome, OutOfOrder, classify, evolve, position

ATTEMPTS = 10  # lost races with another delivery of the same order, or with a pointer change


class Projector:
    """``pointer_ttl`` seconds is how long the pointer is trusted without reading it; a write that finds it moved
    reads it again at once, so a stale pointer costs one failed write, never a wrong one."""

    def __init__(self, store: ProjectionStore, *, pointer_ttl: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self._ttl = pointer_ttl
        self._clock = clock
        self._pointer: Pointer | None = None
        self._read_at = 0.0

    def pointer(self, fresh: bool = False) -> Pointer:
        if fresh or self._pointer is None or self._clock() - self._read_at > self._ttl:
            self._pointer = self.store.pointer()
            self._read_at = self._clock()
        return self._pointer

    def apply(self, envelope: EventEnvelope) -> dict[int, Outcome]:
        """The outcome per generation written. Raises OutOfOrder when the event is ahead of a generation."""
        for attempt in range(ATTEMPTS):
            pointer = self.pointer(fresh=attempt > 0)
            try:
                return {g: self.apply_to(pointer, g, envelope) for g in pointer.generations()}
            except PointerMoved:
                continue
            except OutOfOrder:
                # A gap is only real in a generation the pointer still names: a stale pointer may name one that a
                # rebuild has deleted (where every event looks like a gap) and writes nothing that would tell.
                if self.pointer(fresh=True) == pointer:
                    raise
        raise PointerMoved()

    def apply_to(self, pointer: Pointer, generation: int, envelope: EventEnvelope) -> Outcome:
        """Fold the event into one generation if it is the next version there (PointerMoved if ``pointer`` is
        stale). A gap raises OutOfOrder: the caller must deliver the event again later, never drop it."""
        for _attempt in range(ATTEMPTS):
            view = self.store.view(generation, envelope.subject)
            outcome = classify(view, envelope.version)
            if outcome is Outcome.DUPLICATE:
                return outcome
            if outcome is Outcome.GAP:
                raise OutOfOrder(envelope, position(view), generation)
            try:
                self.store.put_view(pointer, generation, evolve(view, envelope), expected_position=position(view))
            except PositionMoved:
                continue  # another delivery wrote this order meanwhile: look again (now likely a duplicate)
            return outcome
        raise PositionMoved()
