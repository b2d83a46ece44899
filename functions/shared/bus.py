"""Reading orderflow events back off the bus, as delivered by EventBridge (directly or through SQS)."""

from __future__ import annotations

import json
from typing import Any

from .events import EventEnvelope


def envelope_from_eventbridge(event: dict[str, Any] | str) -> EventEnvelope:
    """The CloudEvents envelope inside an EventBridge event (``detail``); raises ValueError if there is none."""
    document = json.loads(event) if isinstance(event, str) else event
    if not isinstance(document, dict) or not isinstance(document.get("detail"), dict):
        raise ValueError("not an EventBridge event with a detail object")
    return EventEnvelope.model_validate(document["detail"])
