"""The projector's use case: fold one order event into every generation the pointer names.

Used by the projector function (events from the bus) and by the rebuild (events read back from the event store),
so a rebuilt summary is made by exactly the code that makes the live one.
"""

from __future__ import annotations

from shared.events import EventEnvelope

from .store import Pointer, PointerMoved, PositionMoved, ProjectionStore
from .views import Outcome, OutOfOrder, classify, evolve, position

ATTEMPTS = 10  # lost races with another delivery of the same order, or pointers moving under a gap


class Projector:
    """Holds the pointer it read last. The projector function calls ``refresh`` when an invocation starts, so every
    write of an invocation uses a pointer read when it started (store.PROJECTOR_POINTER_MAX_AGE_SECONDS: the bound a
    rebuild relies on); never with a clock of its own, which a frozen execution environment may stop."""

    def __init__(self, store: ProjectionStore) -> None:
        self.store = store
        self._pointer: Pointer | None = None

    def refresh(self) -> Pointer:
        self._pointer = self.store.pointer()
        return self._pointer

    def pointer(self) -> Pointer:
        return self._pointer if self._pointer is not None else self.refresh()

    def apply(self, envelope: EventEnvelope) -> dict[int, Outcome]:
        """The outcome per generation the pointer names. Raises OutOfOrder when the event is ahead of one."""
        pointer = self.pointer()
        for _attempt in range(ATTEMPTS):
            try:
                return {g: self.apply_to(g, envelope) for g in pointer.generations()}
            except OutOfOrder:
                # A gap is only real in a generation the pointer still names: an old pointer may name one that a
                # rebuild has deleted (where every event looks like a gap) and writes nothing that would tell.
                fresh = self.refresh()
                if fresh == pointer:
                    raise
                pointer = fresh
        raise PointerMoved()

    def apply_to(self, generation: int, envelope: EventEnvelope) -> Outcome:
        """Fold the event into one generation if it is the next version there. A gap raises OutOfOrder: the caller
        must deliver the event again later, never drop it."""
        for _attempt in range(ATTEMPTS):
            view = self.store.view(generation, envelope.subject)
            outcome = classify(view, envelope.version)
            if outcome is Outcome.DUPLICATE:
                return outcome
            if outcome is Outcome.GAP:
                raise OutOfOrder(envelope, position(view), generation)
            try:
                self.store.put_view(generation, evolve(view, envelope), expected_position=position(view))
            except PositionMoved:
                continue  # another delivery wrote this order meanwhile: look again (now likely a duplicate)
            return outcome
        raise PositionMoved()
