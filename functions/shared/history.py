"""Time travel over an event-sourced aggregate: what its history query means and how a point in it is found.

``GET .../history`` answers the aggregate's events (oldest first, upcast to the current schema) a page at a
time (``?after=<version>&limit=<n>``); with ``?asOf=<RFC 3339 time>`` or ``?version=<n>`` it answers the state
as it was at that point instead:

- ``version=N``: the state right after the event that made version N.
- ``asOf=T``: the state after every event whose time is <= T. Event times come from the clocks of the
  functions that appended them, so they are not guaranteed to rise with the version: the answer is the
  longest run of events from the first whose times are all <= T, a state that really existed.

Pure: no I/O. The API handlers parse with ``parse_history_query`` and map ``BadHistoryQuery`` to a 400.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .events import EventEnvelope

DEFAULT_PAGE = 100
MAX_PAGE = 1000
MAX_VERSION = 10**10 - 1  # the largest version the store can hold (ten zero-padded digits)

# RFC 3339 date-time (section 5.6): full date, "T" (or "t" / a space), full time with seconds, a zone.
_RFC3339 = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<fraction>\d+))?(?P<zone>[Zz]|[+-]\d{2}:\d{2})$"
)
_PLUS_AS_SPACE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)? \d{2}:\d{2}$")
_DIGITS = re.compile(r"^[0-9]{1,10}$")
_PARAMETERS = ("asOf", "version", "after", "limit")


class BadHistoryQuery(ValueError):
    """The query string asks for something that has no meaning; the message says what to send instead."""


@dataclass(frozen=True)
class HistoryQuery:
    """Either a point (``as_of`` or ``version``, never both) or a page of events (``after``, ``limit``)."""

    as_of: datetime | None = None
    version: int | None = None
    after: int = 0
    limit: int = DEFAULT_PAGE

    @property
    def wants_state(self) -> bool:
        return self.as_of is not None or self.version is not None

    @property
    def page_end(self) -> int:
        """The last version to read for a page: one past ``limit``, to know whether another page follows."""
        return min(self.after + self.limit + 1, MAX_VERSION)


def parse_rfc3339(text: str) -> datetime:
    """A timezone-aware datetime from an RFC 3339 date-time, or BadHistoryQuery saying why not.

    Fractions finer than a microsecond are cut (event times have microseconds), which keeps "<=" exact.
    """
    match = _RFC3339.match(text)
    if match is None:
        hint = (
            " (a '+' in a URL query string means a space: write the offset as %2B01:00, or use Z)"
            if _PLUS_AS_SPACE.match(text)
            else ""
        )
        raise BadHistoryQuery(f"asOf must be an RFC 3339 date-time such as 2026-11-26T09:00:00Z, not {text!r}{hint}")
    fraction = (match["fraction"] or "")[:6].ljust(6, "0")
    zone = "+00:00" if match["zone"] in ("Z", "z") else match["zone"]
    try:
        return datetime.fromisoformat(f"{match['date']}T{match['time']}.{fraction}{zone}")
    except ValueError:
        raise BadHistoryQuery(f"asOf {text!r} is not a real date and time") from None


def _integer(name: str, text: str, minimum: int, maximum: int) -> int:
    if not _DIGITS.match(text) or not minimum <= int(text) <= maximum:
        raise BadHistoryQuery(f"{name} must be a whole number from {minimum} to {maximum}, not {text!r}")
    return int(text)


def parse_history_query(
    single: Mapping[str, str] | None, multi: Mapping[str, Sequence[str]] | None = None
) -> HistoryQuery:
    """Read ``queryStringParameters`` (and the multi-value form, to refuse repeats) into a HistoryQuery."""
    params = dict(single or {})
    unknown = sorted(set(params) - set(_PARAMETERS))
    if unknown:
        raise BadHistoryQuery(
            f"unknown query parameter {unknown[0]!r}: history takes asOf or version (a past state), "
            "or after and limit (a page of events)"
        )
    for name, values in (multi or {}).items():
        if len(values) > 1:
            raise BadHistoryQuery(f"give {name} once, not {len(values)} times")
    if "asOf" in params and "version" in params:
        raise BadHistoryQuery("give asOf or version, not both: each names one point in the history")
    if ("asOf" in params or "version" in params) and ("after" in params or "limit" in params):
        raise BadHistoryQuery("after and limit page through the events; they mean nothing with asOf or version")
    return HistoryQuery(
        as_of=parse_rfc3339(params["asOf"]) if "asOf" in params else None,
        version=_integer("version", params["version"], 1, MAX_VERSION) if "version" in params else None,
        after=_integer("after", params["after"], 0, MAX_VERSION) if "after" in params else 0,
        limit=_integer("limit", params["limit"], 1, MAX_PAGE) if "limit" in params else DEFAULT_PAGE,
    )


def until(events: Iterable[EventEnvelope], as_of: datetime) -> list[EventEnvelope]:
    """The events from the first up to (not including) the first one stamped after ``as_of``."""
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    prefix: list[EventEnvelope] = []
    for envelope in events:
        if envelope.time > as_of:
            break
        prefix.append(envelope)
    return prefix


def events_at(
    load: Callable[[int | None], list[EventEnvelope]], *, version: int | None = None, as_of: datetime | None = None
) -> list[EventEnvelope] | None:
    """The aggregate's events up to a point (exactly one of ``version``, ``as_of``), oldest first.

    ``load(up_to_version)`` reads the aggregate's events from its first (None: to its last). The answer is
    None when the aggregate never reached ``version``, [] when nothing had happened to it by ``as_of``.
    The events come from the event store, never from a snapshot: a snapshot caches the newest state only.
    """
    if (version is None) == (as_of is None):
        raise ValueError("give exactly one of version and as_of")
    if version is not None:
        events = load(version)
        return events if events and events[-1].version == version else None
    assert as_of is not None
    return until(load(None), as_of)


def page(events: Sequence[EventEnvelope], limit: int) -> tuple[list[dict[str, Any]], int | None]:
    """Up to ``limit`` events as the history answers them, and the ``after`` of the next page (None: no more).

    Give it ``limit + 1`` events when there are that many, so it can tell whether another page exists.
    """
    shown = list(events[:limit])
    return [event_view(e) for e in shown], (shown[-1].version if len(events) > limit else None)


def event_view(envelope: EventEnvelope) -> dict[str, Any]:
    """One event as the history answers it: the CloudEvents 1.0 envelope (JSON format)."""
    return envelope.to_wire()

