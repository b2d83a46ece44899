"""Lambda handler of the order list: ``GET /orders?status=&limit=&cursor=``, the caller's own orders, newest first.

It only wires: parse the query (queries.py), find the active generation, read a page (store.py), answer.
"""

from __future__ import annotations

import functools
import time
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field

from shared.aws import client
from shared.http import HttpError
from shared.identity import caller_from_claims
from shared.settings import EnvSettings, load_settings

from .queries import BadQuery, encode_cursor, parse_list_orders
from .store import LIST_POINTER_TTL_SECONDS, Pointer, ProjectionStore

logger = Logger(service="projections")
tracer = Tracer(service="projections")
metrics = Metrics(service="projections")
app = APIGatewayRestResolver()


class QuerySettings(EnvSettings):
    table: str = Field(alias="PROJECTIONS_TABLE", min_length=1)


settings = load_settings(QuerySettings)


@functools.cache
def store() -> ProjectionStore:
    return ProjectionStore(settings.table, client("dynamodb"))


class PointerCache:
    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._value: tuple[float, Pointer] | None = None

    def get(self) -> Pointer:
        now = time.monotonic()
        if self._value is None or now - self._value[0] > self._ttl:
            self._value = (now, store().pointer())
        return self._value[1]

    def clear(self) -> None:
        self._value = None


pointer_cache = PointerCache(LIST_POINTER_TTL_SECONDS)


@app.get("/orders")
@tracer.capture_method
def list_orders() -> Response:
    caller = caller_from_claims(app.current_event.request_context.authorizer.claims)
    if caller is None:
        raise HttpError(HTTPStatus.UNAUTHORIZED, "Unauthorized")
    try:
        query = parse_list_orders(app.current_event.multi_value_query_string_parameters)
    except BadQuery as error:
        raise HttpError(HTTPStatus.BAD_REQUEST, str(error)) from None
    generation = pointer_cache.get().active
    views, last = store().list_views(generation, caller.customer_id, query.status, query.limit, query.after)
    metrics.add_metric(name="OrderListPages", unit=MetricUnit.Count, value=1)
    body = {
        "orders": [view.to_api() for view in views],
        "nextCursor": encode_cursor(query.status, last) if last is not None else None,
    }
    return Response(status_code=HTTPStatus.OK, content_type=content_types.APPLICATION_JSON, body=body)


@app.exception_handler(HttpError)
def _http_error(error: HttpError) -> Response:
    return Response(status_code=error.status, content_type=content_types.APPLICATION_JSON, body=error.body())


@app.exception_handler(Exception)
def _unexpected(error: Exception) -> Response:
    logger.exception("unhandled error")
    metrics.add_metric(name="UnhandledErrors", unit=MetricUnit.Count, value=1)
    request_id = app.current_event.request_context.request_id
    return _http_error(HttpError(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error", requestId=request_id))


@app.not_found
def _not_found(_: Exception) -> Response:
    return _http_error(HttpError(HTTPStatus.NOT_FOUND, "no such route"))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
