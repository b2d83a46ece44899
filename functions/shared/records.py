"""How an event envelope is laid out as a DynamoDB item, for the event store and the outbox alike.

The relay reads these items back from the table's stream, so the layout is written and read here only.
``data`` is kept as a JSON string: it round-trips exactly (no float/Decimal conversion), whatever its shape.
"""

from __future__ import annotations

import json
from typing import Any

from .events import EventEnvelope

EVENT_KIND = "event"  # an appended event of an event-sourced aggregate: the item IS the outbox row
OUTBOX_KIND = "outbox"  # an integration event written beside a state change (state-based services)
PUBLISHABLE_KINDS = frozenset({EVENT_KIND, OUTBOX_KIND})

_ENVELOPE_FIELDS = (
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "subject",
    "datacontenttype",
    "dataversion",
    "sequence",
    "correlationid",
)


def envelope_to_attributes(envelope: EventEnvelope) -> dict[str, str]:
    wire = envelope.to_wire()
    attributes = {name: wire[name] for name in _ENVELOPE_FIELDS}
    attributes["data"] = json.dumps(wire["data"], separators=(",", ":"), sort_keys=True)
    return attributes


def envelope_from_attributes(item: dict[str, Any]) -> EventEnvelope:
    """Rebuild the envelope from an item (plain Python values). Raises ValueError/KeyError on a damaged item."""
    fields = {name: item[name] for name in _ENVELOPE_FIELDS}
    return EventEnvelope.model_validate({**fields, "data": json.loads(item["data"])})
