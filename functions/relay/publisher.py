"""Publishing entries to EventBridge behind a small port, so the relay's logic is tested with a fake.

``put`` sends at most 10 entries and answers, per entry, None (accepted) or an error code. It never
decides what to retry: the relay does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class Publisher(Protocol):
    def put(self, entries: Sequence[dict[str, Any]]) -> list[str | None]: ...


class EventBridgePublisher:
    def __init__(self, bus_name: str, client: Any) -> None:
        self._bus = bus_name
        self._client = client

    def put(self, entries: Sequence[dict[str, Any]]) -> list[str | None]:
        response = self._client.put_events(Entries=[{**entry, "EventBusName": self._bus} for entry in entries])
        results = response.get("Entries", [])
        if len(results) != len(entries):
            # EventBridge answers one result per entry, in order; anything else means we cannot tell which
            # entries landed, so treat every one as failed (a retry only risks duplicates, never loss).
            return ["MalformedResponse"] * len(entries)
        if not response.get("FailedEntryCount"):
            return [None] * len(entries)
        return [None if "EventId" in r else (r.get("ErrorCode") or "UnknownError") for r in results]
