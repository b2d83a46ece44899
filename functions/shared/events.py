"""Domain events and their wire form, the CloudEvents 1.0 envelope.

A domain event is a pydantic model named in the past tense (``OrderPlaced``). It says what happened and
nothing about transport. When an aggregate appends it, it is wrapped once in an ``EventEnvelope`` whose
``id`` is a fresh UUID: that id travels with the event everywhere (stream, bus, queues) and is the key
every consumer deduplicates on. EventBridge's own event id changes per PutEvents entry and is never used.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
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

    # The schema version of this event type's ``data``. Bump it when the shape changes and register an upcaster
    # from the previous version in the catalog (EventCatalog.upcaster): stored events are never rewritten.
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


Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class EventCatalog:
    """Maps event type names to their models, so stored or received envelopes become typed events again.

    Schema evolution: a stored event is never rewritten. When a type's ``data`` changes shape, its model's
    ``schema_version`` goes up by one and an upcaster from the previous version is registered here; reading
    an older event runs its chain (v1 -> v2 -> ... -> current) in memory. ``upcast`` and ``decode`` are the one
    place that happens, so every reader (services, time travel, consumers of the bus) sees the current shape.
    """

    def __init__(self, *event_types: type[DomainEvent]) -> None:
        self._types: dict[str, type[DomainEvent]] = {}
        self._upcasters: dict[str, dict[int, Upcaster]] = {}
        for event_type in event_types:
            self.register(event_type)

    def register(self, event_type: type[DomainEvent]) -> type[DomainEvent]:
        name = event_type.event_type()
        if name in self._types:
            raise ValueError(f"event type {name} is registered twice")
        if event_type.schema_version < 1:
            raise ValueError(f"{name}.schema_version must be >= 1, not {event_type.schema_version}")
        self._types[name] = event_type
        self._upcasters[name] = {}
        return event_type

    def upcaster(self, event_type: type[DomainEvent], from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register the function that turns ``data`` of ``from_version`` into ``from_version + 1`` (a decorator).

        An upcaster is pure: it gets a copy of the old ``data`` and returns the new one.
        """

        def register(function: Upcaster) -> Upcaster:
            name = event_type.event_type()
            if self._types.get(name) is not event_type:
                raise ValueError(f"event type {name} is not registered in this catalog")
            if not 1 <= from_version < event_type.schema_version:
                raise ValueError(
                    f"{name} is at schema version {event_type.schema_version}: "
                    f"an upcaster from version {from_version} cannot be part of its chain"
                )
            if from_version in self._upcasters[name]:
                raise ValueError(f"{name} has two upcasters from version {from_version}")
            self._upcasters[name][from_version] = function
            return function

        return register

    def missing_upcasters(self) -> list[str]:
        """Links missing from the chains (``"OrderPlaced v1 -> v2"``): a complete catalog answers []."""
        return [
            f"{name} v{version} -> v{version + 1}"
            for name, model in sorted(self._types.items())
            for version in range(1, model.schema_version)
            if version not in self._upcasters[name]
        ]

    def __contains__(self, name: str) -> bool:
        return name in self._types

    def names(self) -> list[str]:
        return sorted(self._types)

    def schema_version(self, name: str) -> int:
        return self._model(name).schema_version

    def upcast(self, envelope: EventEnvelope) -> EventEnvelope:
        """The envelope with its ``data`` in the current schema version (the same envelope when it already is).

        Raises SchemaVersionError for a version newer than this code knows (or a broken chain), and
        UnknownEventType for a type the catalog does not have.
        """
        model = self._model(envelope.type)
        stored, current = int(envelope.dataversion), model.schema_version
        if stored == current:
            return envelope
        if stored > current:
            raise SchemaVersionError(
                f"{envelope.type} event {envelope.id} has data version {stored}, newer than the {current} this code "
                "knows: deploy the code that reads it before the code that writes it"
            )
        if stored < 1:
            raise SchemaVersionError(f"{envelope.type} event {envelope.id} has data version {stored}: versions start at 1")
        data = copy.deepcopy(envelope.data)
        for version in range(stored, current):
            try:
                step = self._upcasters[envelope.type][version]
            except KeyError:
                raise SchemaVersionError(
                    f"{envelope.type} event {envelope.id} is at data version {stored} and there is no upcaster "
                    f"from version {version} to {version + 1}"
                ) from None
            data = step(data)
        return envelope.model_copy(update={"data": data, "dataversion": str(current)})

    def decode(self, envelope: EventEnvelope) -> DomainEvent:
        """The typed event, upcast to the current schema version first."""
        current = self.upcast(envelope)
        return self._model(current.type).model_validate(current.data)

    def _model(self, name: str) -> type[DomainEvent]:
        try:
            return self._types[name]
        except KeyError:
            raise UnknownEventType(name) from None


class SchemaVersionError(ValueError):
    """A stored or received event whose data version this code cannot bring to the current one."""


class UnknownEventType(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown event type {name!r}")
        self.name = name
