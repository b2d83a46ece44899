"""What every REST handler shares: JSON responses, the caller from the authorizer, and one error mapping.

Every API function answers errors in one shape, ``{"message": ..., **details}``; ``install_error_handlers``
registers that mapping on a Powertools resolver once, with the service's own exceptions added by the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.metrics import MetricUnit
from .keys import IDEMPOTENCY_KEY_RULE

from .event_store import ConcurrencyError
from .http import HttpError
from .identity import Caller, caller_from_claims


def json_response(status: HTTPStatus, body: Any) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


def require_caller(app: APIGatewayRestResolver) -> Caller:
    """The verified caller, or 401 (the authorizer should have refused already: defence in depth)."""
    caller = caller_from_claims(app.current_event.request_context.authorizer.claims)
    if caller is None:
        raise HttpError(HTTPStatus.UNAUTHORIZED, "Unauthorized")
    return caller


def require_admin(app: APIGatewayRestResolver, refusal: str = "only admins may do this") -> Caller:
    caller = require_caller(app)
    if not caller.is_admin:
        raise HttpError(HTTPStatus.FORBIDDEN, refusal)
    return caller


IDEMPOTENCY_KEY = "Idempotency-Key"


def idempotency_key(app: APIGatewayRestResolver) -> str:
    """The request's Idempotency-Key header as sent (its form is the command model's to check), or 400 when it is
    missing or sent more than once with different values: which one would the request mean?"""
    event = app.current_event
    wanted = IDEMPOTENCY_KEY.lower()
    # The raw event: Powertools' case-insensitive view keeps one of "Idempotency-Key" and "idempotency-key".
    values = {value for name, values in (event.raw_event.get("multiValueHeaders") or {}).items()
              if name.lower() == wanted for value in values or ()}
    if len(values) > 1:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"give one {IDEMPOTENCY_KEY} header, not {len(values)} different ones")
    key = event.headers.get(IDEMPOTENCY_KEY)  # Powertools v3 headers are case-insensitive
    if key is None:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"the {IDEMPOTENCY_KEY} header is required ({IDEMPOTENCY_KEY_RULE})")
    return key


def install_error_handlers(
    app: APIGatewayRestResolver,
    logger: Logger,
    metrics: Metrics,
    *,
    subject: str,
    errors: Mapping[type[Exception], Callable[[Exception], HttpError]] | None = None,
) -> None:
    """Map errors to answers: HttpError as it says; the service's own ``errors``; a lost optimistic-concurrency
    race 409 (retry); an unknown route 404; anything else a logged 500 with the request id (never a stack
    trace). No API function uses Powertools idempotency (their conditional appends make writes exactly-once), so
    there is no "still in progress" answer."""

    def render(error: HttpError) -> Response:
        return Response(status_code=error.status, content_type=content_types.APPLICATION_JSON, body=error.body())

    app.exception_handler(HttpError)(render)

    for exception_type, to_http in (errors or {}).items():
        app.exception_handler(exception_type)(lambda error, _to_http=to_http: render(_to_http(error)))

    @app.exception_handler(ConcurrencyError)
    def _concurrency(_: ConcurrencyError) -> Response:
        return render(HttpError(HTTPStatus.CONFLICT, f"the {subject} changed while this request ran: retry"))

    @app.exception_handler(Exception)
    def _unexpected(_: Exception) -> Response:
        logger.exception("unhandled error")
        metrics.add_metric(name="UnhandledErrors", unit=MetricUnit.Count, value=1)
        request_id = app.current_event.request_context.request_id
        return render(HttpError(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error", requestId=request_id))

    @app.not_found
    def _not_found(_: Exception) -> Response:
        return render(HttpError(HTTPStatus.NOT_FOUND, "no such route"))
