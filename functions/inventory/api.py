"""Lambda handler of the inventory's admin API. It only wires: authorize, parse, call the service, map errors.

    PUT /admin/products/{sku}  {"name": "...", "price": "12.50", "stock": 10}  -> 200 the product view
        Sets the product. ``stock`` is the new AVAILABLE count (units that can be reserved): units reserved
        for orders in flight and units sold are kept as they are. The same body twice leaves the same state
        and publishes ProductUpdated once (nothing changed the second time), so no Idempotency-Key is needed.
    GET /admin/products/{sku}  -> 200 {"sku", "name", "price", "available", "reserved", "sold"}, 404 if none

Admins only: no verified identity is 401, a caller outside the "admins" group is 403. Errors are
``{"message": ...}`` with the same statuses as the orders API.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.aws import TRACED_LIBRARIES
from shared.http import HttpError, parse_json_body
from shared.rest import install_error_handlers, json_response, require_admin

from .commands import SKU_PATTERN, SetProductRequest
from .queries import product_view
from .wiring import service

logger = Logger(service="inventory")
tracer = Tracer(service="inventory", patch_modules=TRACED_LIBRARIES)
metrics = Metrics(service="inventory")
app = APIGatewayRestResolver()

_SKU = re.compile(SKU_PATTERN)


@app.put("/admin/products/<sku>")
@tracer.capture_method
def put_product(sku: str) -> Response:
    caller = require_admin(app, "only admins may manage products")
    if not _SKU.match(sku):
        raise HttpError(HTTPStatus.BAD_REQUEST, "the sku must be 1-64 characters of A-Z, a-z, 0-9, '.', '_' or '-'")
    event = app.current_event
    body = parse_json_body(event.decoded_body, event.headers.get("Content-Type"), SetProductRequest)
    logger.append_keys(sku=sku, admin=caller.customer_id)
    product, changed = service().set_product(
        sku, body.name, body.price_amount, body.stock, correlation_id=event.request_context.request_id
    )
    if changed:
        metrics.add_metric(name="ProductsUpdated", unit=MetricUnit.Count, value=1)
    logger.info("product set" if changed else "product unchanged", extra={"changed": changed})
    return json_response(HTTPStatus.OK, product_view(product))


@app.get("/admin/products/<sku>")
@tracer.capture_method
def get_product(sku: str) -> Response:
    require_admin(app, "only admins may manage products")
    product = service().product(sku) if _SKU.match(sku) else None
    if product is None:
        raise HttpError(HTTPStatus.NOT_FOUND, f"product {sku} not found")
    return json_response(HTTPStatus.OK, product_view(product))


install_error_handlers(app, logger, metrics, subject="product")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
