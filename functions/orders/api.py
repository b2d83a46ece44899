"""Lambda handler of the order API. It only wires: parse, authorize, call the service, map errors."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field, ValidationError

from shared.aws import TRACED_LIBRARIES, client
from shared.event_store import DynamoDBEventStore
from shared.events import DomainEvent, rfc3339
from shared.history import BadHistoryQuery, page, parse_history_query
from shared.http import HttpError, parse_json_body
from shared.identity import Caller
from shared.rest import idempotency_key, install_error_handlers, json_response, require_caller
from shared.settings import EnvSettings, load_settings
from shared.keys import IDEMPOTENCY_KEY_RULE

from .commands import PlaceOrder, PlaceOrderRequest
from .domain import Order
from .events import OrderPlaced
from .queries import order_at, order_view
from .service import IdempotencyKeyReused, OrderService, order_id_for

logger = Logger(service="orders")
tracer = Tracer(service="orders", patch_modules=TRACED_LIBRARIES)
metrics = Metrics(service="orders")
app = APIGatewayRestResolver()


class OrdersSettings(EnvSettings):
    orders_table: str = Field(alias="ORDERS_TABLE", min_length=1)


settings = load_settings(OrdersSettings)
_ORDER_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _appended(events: Sequence[DomainEvent]) -> None:
    """Told by the service only when its append committed: a replayed request is neither logged nor counted."""
    for event in events:
        if isinstance(event, OrderPlaced):
            metrics.add_metric(name="OrdersPlaced", unit=MetricUnit.Count, value=1)
            logger.info("order placed", extra={"order_id": event.order_id, "lines": len(event.lines)})


@functools.cache
def service() -> OrderService:
    return OrderService(DynamoDBEventStore(settings.orders_table, client("dynamodb")), on_appended=_appended)


def place_order(command: PlaceOrder) -> dict[str, str]:
    """Place the order once per (customer, Idempotency-Key), with no idempotency record of its own.

    The order id is derived from that pair and OrderPlaced is appended only at version 1 (a conditional write),
    so the event store itself makes placing exactly-once. A replay, however late, or a request that lost the
    race to a concurrent twin, loads the order instead: the same items answer as the first request did (202,
    the order's current status), other items are IdempotencyKeyReused (422)."""
    order = service().place(command)
    return {"orderId": order.order_id, "status": order.status.value}


@app.get("/health")
def health() -> Response:
    return json_response(HTTPStatus.OK, {"status": "ok"})


@app.post("/orders")
@tracer.capture_method
def post_order() -> Response:
    caller = require_caller(app)
    event = app.current_event
    key = idempotency_key(app)
    body = parse_json_body(event.decoded_body, event.headers.get("Content-Type"), PlaceOrderRequest)
    try:
        command = PlaceOrder(
            customer_id=caller.customer_id, idempotency_key=key, items=body.items, contact_email=caller.email
        )
    except ValidationError as error:
        fields = {str(detail["loc"][0]) for detail in error.errors() if detail.get("loc")}
        if "idempotency_key" in fields:
            message = f"the Idempotency-Key header must be {IDEMPOTENCY_KEY_RULE}"
        elif "contact_email" in fields:
            message = "the email claim of the caller's token is not a usable address (at most 254 characters)"
        else:
            message = "the caller's identity cannot place an order"
        raise HttpError(HTTPStatus.BAD_REQUEST, message) from None
    logger.append_keys(idempotency_key=key)
    logger.set_correlation_id(order_id_for(caller.customer_id, key))  # every line from here on is about it
    return json_response(HTTPStatus.ACCEPTED, place_order(command=command))


@app.get("/orders/<order_id>")
@tracer.capture_method
def get_order(order_id: str) -> Response:
    caller = require_caller(app)
    logger.append_keys(order_id=order_id)
    logger.set_correlation_id(order_id)
    return json_response(HTTPStatus.OK, order_view(_readable_order(order_id, caller)))


def _readable_order(order_id: str, caller: Caller) -> Order:
    """The order as it is now, if the caller may read it. Another customer's order answers exactly like a
    missing one: nothing tells them it exists. Time travel checks this on the current state too."""
    order = service().load(order_id) if _ORDER_ID.match(order_id) else None
    if order is None or (order.customer_id != caller.customer_id and not caller.is_admin):
        raise HttpError(HTTPStatus.NOT_FOUND, f"order {order_id} not found")
    return order


@app.get("/orders/<order_id>/history")
@tracer.capture_method
def get_order_history(order_id: str) -> Response:
    """The order's events (CloudEvents, oldest first, a page at a time), or with ?asOf= / ?version= its state
    as it was then (the same view as GET /orders/{orderId})."""
    caller = require_caller(app)
    logger.append_keys(order_id=order_id)
    logger.set_correlation_id(order_id)
    event = app.current_event
    query = parse_history_query(event.query_string_parameters, event.multi_value_query_string_parameters)
    order = _readable_order(order_id, caller)
    if not query.wants_state:
        events = service().events(order_id, query.after, query.page_end)
        shown, next_after = page(events, query.limit)
        return json_response(HTTPStatus.OK, {"orderId": order_id, "version": order.version, "events": shown, "nextAfter": next_after})
    past = order_at(service(), order_id, version=query.version, as_of=query.as_of)
    if past is None and query.as_of is not None:
        raise HttpError(HTTPStatus.NOT_FOUND, f"order {order_id} did not exist yet at {rfc3339(query.as_of)}")
    if past is None:
        raise HttpError(HTTPStatus.NOT_FOUND, f"order {order_id} has no version {query.version}: it is at version {order.version}")
    return json_response(HTTPStatus.OK, order_view(past))


REUSED = (
    "this Idempotency-Key was already used with a different request body: use a new key for a new order"
)
install_error_handlers(
    app,
    logger,
    metrics,
    subject="order",
    errors={
        BadHistoryQuery: lambda error: HttpError(HTTPStatus.BAD_REQUEST, str(error)),
        IdempotencyKeyReused: lambda _: HttpError(HTTPStatus.UNPROCESSABLE_ENTITY, REUSED),
    },
)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
