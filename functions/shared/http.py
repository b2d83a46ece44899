"""Helpers every API function uses: one error type mapped to one JSON shape, and strict body parsing."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

MAX_BODY_BYTES = 64 * 1024

Model = TypeVar("Model", bound=BaseModel)


class HttpError(Exception):
    """An error the client caused or must know about; rendered as ``{"message": ..., **details}``."""

    def __init__(self, status: HTTPStatus, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details

    def body(self) -> str:
        return json.dumps({"message": self.message, **self.details})


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "body"


def validation_errors(error: ValidationError) -> list[dict[str, str]]:
    return [{"field": _location(e["loc"]), "problem": e["msg"]} for e in error.errors(include_url=False)]


class _NotJson(ValueError):
    """What the strict JSON reader refuses beyond the syntax: a repeated key, NaN or Infinity."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Parsers disagree on a repeated key (the first wins here, the last there), so a body that says two things
    # is refused rather than read one way by one component and the other way by the next.
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise _NotJson(f"the request body has the key {key!r} more than once: send each key once")
        document[key] = value
    return document


def _constant(name: str) -> Any:
    raise _NotJson(f"the request body is not valid JSON: {name} is not a JSON number")


def parse_json_body(body: str | None, content_type: str | None, model: type[Model]) -> Model:
    """Parse and validate a JSON request body, or raise the HttpError that says what is wrong.

    Strict JSON (RFC 8259): no NaN or Infinity, no repeated keys; the media type must be application/json
    (a body without a Content-Type is refused too: nothing says it is JSON).
    """
    if content_type is None and body is not None and body.strip():
        raise HttpError(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "the request has no Content-Type: send the body as application/json"
        )
    if content_type is not None:
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            raise HttpError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"Content-Type must be application/json, not {media_type!r}")
    if body is None or not body.strip():
        raise HttpError(HTTPStatus.BAD_REQUEST, "the request body is empty: send a JSON object")
    if len(body.encode("utf-8", "surrogatepass")) > MAX_BODY_BYTES:
        raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the request body is over {MAX_BODY_BYTES} bytes")
    try:
        document = json.loads(body, object_pairs_hook=_object, parse_constant=_constant)
    except _NotJson as error:
        raise HttpError(HTTPStatus.BAD_REQUEST, str(error)) from None
    except (ValueError, RecursionError):
        raise HttpError(HTTPStatus.BAD_REQUEST, "the request body is not valid JSON") from None
    if not isinstance(document, dict):
        raise HttpError(HTTPStatus.BAD_REQUEST, "the request body must be a JSON object")
    try:
        return model.model_validate(document)
    except ValidationError as error:
        raise HttpError(
            HTTPStatus.UNPROCESSABLE_ENTITY, "the request body is invalid", errors=validation_errors(error)
        ) from None
