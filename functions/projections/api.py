"""Lambda handler of the order list: ``GET /orders?status=&limit=&cursor=``, the caller's own orders, newest first.

It only wires: parse the query (queries.py), find the active generation, read a page (store.py), answer.
"""

from __future__ import annotations

import functools
import time
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field

from shared.aws import TRACED_LIBRARIES, client
from shared.http import HttpError
from shared.rest import install_error_handlers, json_response, require_caller
from shared.settings import EnvSettings, load_settings

from .queries import BadQuery, encode_cursor, parse_list_orders
from .store import LIST_POINTER_TTL_SECONDS, Pointer, ProjectionStore

logger = Logger(service="projections")
tracer = Tracer(service="projections", patch_modules=TRACED_LIBRARIES)
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
        # Wall time: a frozen execution environment may stop the monotonic clock, and a pointer cached before a long
        # freeze would then look fresh after the rebuild deleted the generation it names.
        now = time.time()
        if self._value is None or now - self._value[0] > self._ttl:
            self._value = (now, store().pointer())
        return self._value[1]

    def clear(self) -> None:
        self._value = None


pointer_cache = PointerCache(LIST_POINTER_TTL_SECONDS)


@app.get("/orders")
@tracer.capture_method
def list_orders() -> Response:
    caller = require_caller(app)
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
    return json_response(HTTPStatus.OK, body)


install_error_handlers(app, logger, metrics, subject="order list")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
