"""Domain events and their wire form, the CloudEvents 1.0 envelope.

A domain event is a pydantic model named in the past tense (``OrderPlaced``). It says what happened and
nothing about transport. When an aggregate appends it, it is wrapped once in an ``EventEnvelope`` whose
``id`` is a fresh UUID: that id travels with the event everywhere (stream, bus, queues) and is the key
every consumer deduplicates on. EventBridge's own event id changes per PutEvents entry and is never used.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer

SPEC_VERSION = "1.0"
VERSION_DIGITS = 10  # zero-padded aggregate versions sort lexicographically (DynamoDB sort key, CloudEvents sequence)


def format_version(version: int) -> str:
    if not 0 <= version < 10**VERSION_DIGITS:
        raise ValueError(f"version {version} is out of range")
    return f"{version:0{VERSION_DIGITS}d}"


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds and a Z, the form every event time is written in."""
    if moment.tzinfo is None:
        raise ValueError("naive datetimes are not allowed: give a timezone")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class DomainEvent(BaseModel):
    """Base of every domain event. Subclasses are immutable and reject unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The schema version of this event type's ``data``. Bump it when the shape changes and add an upcaster.
    schema_version: ClassVar[int] = 1

    @classmethod
    def event_type(cls) -> str:
        return cls.__name__


class EventEnvelope(BaseModel):
    """A CloudEvents 1.0 envelope (JSON format) with orderflow's extension attributes.

    Extension attributes (CloudEvents names are lower-case alphanumerics):
    - ``dataversion``: the schema version of ``data``.
    - ``sequence``: the aggregate version this event created, zero-padded (the CloudEvents sequence extension).
    - ``correlationid``: the id that ties one business flow together across services (the order id).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    specversion: Literal["1.0"] = SPEC_VERSION
    id: str
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    time: datetime
    subject: str = Field(min_length=1)
    datacontenttype: Literal["application/json"] = "application/json"
    dataversion: str = Field(pattern=r"^[0-9]+$")
    sequence: str = Field(pattern=r"^[0-9]{10}$")
    correlationid: str = Field(min_length=1)
    data: dict[str, Any]

    @field_serializer("time")
    def _serialize_time(self, value: datetime) -> str:
        return rfc3339(value)

    @property
    def version(self) -> int:
        return int(self.sequence)

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict that goes on the bus (EventBridge ``Detail``)."""
        return self.model_dump(mode="json")


def wrap(
    event: DomainEvent,
    *,
    source: str,
    subject: str,
    version: int,
    correlation_id: str | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
) -> EventEnvelope:
    """Wrap a domain event for appending: this is where its id is made, once."""
    return EventEnvelope(
        id=event_id or str(uuid.uuid4()),
        source=source,
        type=event.event_type(),
        time=time or utcnow(),
        subject=subject,
        dataversion=str(event.schema_version),
        sequence=format_version(version),
        correlationid=correlation_id or subject,
        data=event.model_dump(mode="json"),
    )


class EventCatalog:
    """Maps event type names to their models, so stored or received envelopes become typed events again."""

    def __init__(self, *event_types: type[DomainEvent]) -> None:
        self._types: dict[str, type[DomainEvent]] = {}
        for event_type in event_types:
            self.register(event_type)

    def register(self, event_type: type[DomainEvent]) -> type[DomainEvent]:
        name = event_type.event_type()
        if name in self._types:
            raise ValueError(f"event type {name} is registered twice")
        self._types[name] = event_type
        return event_type

    def __contains__(self, name: str) -> bool:
        return name in self._types

    def names(self) -> list[str]:
        return sorted(self._types)

    def decode(self, envelope: EventEnvelope) -> DomainEvent:
        try:
            model = self._types[envelope.type]
        except KeyError:
            raise UnknownEventType(envelope.type) from None
        if int(envelope.dataversion) != model.schema_version:
            raise ValueError(
                f"{envelope.type} data version {envelope.dataversion} is not {model.schema_version}: upcast it first"
            )
        return model.model_validate(envelope.data)


class UnknownEventType(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown event type {name!r}")
        self.name = name
