"""Lambda handler of the payments API. It only wires: parse, authorize, call the service, map errors.

    POST /admin/accounts/{customerId}/deposits   admins; {"amount": "100.00"}; Idempotency-Key header
                                                 -> 201 {"customerId", "balance", "held", "depositId"}
    GET  /admin/accounts/{customerId}            admins -> 200 {"customerId", "balance", "held"}
    GET  /accounts/me                            any customer -> 200 {"customerId", "balance", "held"}
    GET  /admin/accounts/{customerId}/history    admins -> 200 {"customerId", "version", "events", "nextAfter"};
                                                 ?asOf=<RFC 3339> or ?version=N -> the account as it was then
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from decimal import Decimal
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Field

from shared.aws import TRACED_LIBRARIES, client
from shared.event_store import DynamoDBEventStore
from shared.events import EventEnvelope
from shared.history import BadHistoryQuery, page, parse_history_query
from shared.http import HttpError, parse_json_body
from shared.rest import idempotency_key, install_error_handlers, json_response, require_admin, require_caller
from shared.settings import EnvSettings, load_settings
from shared.keys import IDEMPOTENCY_KEY_RULE

from .commands import DepositFunds, DepositRequest
from .domain import DepositConflict
from .queries import account_at, account_state_view, account_view
from .service import PaymentsService, deposit_id_for

logger = Logger(service="payments")
tracer = Tracer(service="payments", patch_modules=TRACED_LIBRARIES)
metrics = Metrics(service="payments")
app = APIGatewayRestResolver()


class PaymentsSettings(EnvSettings):
    payments_table: str = Field(alias="PAYMENTS_TABLE", min_length=1)


settings = load_settings(PaymentsSettings)
_CUSTOMER_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class _PaymentsTable(DynamoDBEventStore):
    """The payments event store, logging and counting each deposit once its append has committed. A replayed
    deposit appends nothing (the account already holds its id), so it is neither logged nor counted twice."""

    def append(self, aggregate_id: str, expected_version: int, events: Sequence[EventEnvelope]) -> None:
        super().append(aggregate_id, expected_version, events)
        for envelope in events:
            if envelope.type == "FundsDeposited":
                metrics.add_metric(name="FundsDeposited", unit=MetricUnit.Count, value=1)
                logger.info("funds deposited", extra={"deposit_id": envelope.data.get("deposit_id")})


@functools.cache
def service() -> PaymentsService:
    return PaymentsService(_PaymentsTable(settings.payments_table, client("dynamodb")))


def deposit_funds(command: DepositFunds) -> dict[str, str]:
    """Credit the account once per (customer, Idempotency-Key), with no idempotency record of its own.

    The deposit id is derived from that pair and the account keeps every deposit id it was credited with
    (snapshots included); its events are appended at the version the account was loaded at (a conditional
    write), so the account itself makes a deposit exactly-once. A replay, however late, or a request that lost
    the race to a concurrent twin, finds the deposit id: the same amount answers as the first request did
    (201, the account as it is now), another amount is DepositConflict (422)."""
    deposit_id = deposit_id_for(command.customer_id, command.idempotency_key)
    account = service().deposit(command.customer_id, deposit_id, Decimal(command.amount))
    return {**account_view(account), "depositId": deposit_id}


def _customer_id(value: str) -> str:
    if not _CUSTOMER_ID.match(value):
        raise HttpError(HTTPStatus.BAD_REQUEST, "customerId must be 1-64 characters of A-Z a-z 0-9 . _ -")
    return value


@app.post("/admin/accounts/<customer_id>/deposits")
@tracer.capture_method
def post_deposit(customer_id: str) -> Response:
    require_admin(app)
    customer_id = _customer_id(customer_id)
    event = app.current_event
    key = idempotency_key(app)
    body = parse_json_body(event.decoded_body, event.headers.get("Content-Type"), DepositRequest)
    try:
        command = DepositFunds(customer_id=customer_id, idempotency_key=key, amount=body.amount)
    except ValueError:
        raise HttpError(
            HTTPStatus.BAD_REQUEST, f"the Idempotency-Key header must be {IDEMPOTENCY_KEY_RULE}"
        ) from None
    logger.append_keys(customer_id=customer_id, idempotency_key=key)
    return json_response(HTTPStatus.CREATED, deposit_funds(command=command))


@app.get("/admin/accounts/<customer_id>")
@tracer.capture_method
def get_account(customer_id: str) -> Response:
    require_admin(app)
    return json_response(HTTPStatus.OK, account_view(service().account(_customer_id(customer_id))))


@app.get("/admin/accounts/<customer_id>/history")
@tracer.capture_method
def get_account_history(customer_id: str) -> Response:
    """The account's events (CloudEvents, oldest first, a page at a time), or with ?asOf= / ?version= the
    account as it was then. An account with no events is empty, as GET /admin/accounts/{customerId} says."""
    require_admin(app)
    customer_id = _customer_id(customer_id)
    logger.append_keys(customer_id=customer_id)
    event = app.current_event
    query = parse_history_query(event.query_string_parameters, event.multi_value_query_string_parameters)
    if not query.wants_state:
        events = service().events(customer_id, query.after, query.page_end)
        shown, next_after = page(events, query.limit)
        version = service().account(customer_id).version
        return json_response(
            HTTPStatus.OK, {"customerId": customer_id, "version": version, "events": shown, "nextAfter": next_after}
        )
    past = account_at(service(), customer_id, version=query.version, as_of=query.as_of)
    if past is None:
        current = service().account(customer_id).version
        raise HttpError(
            HTTPStatus.NOT_FOUND, f"the account of {customer_id} has no version {query.version}: it is at version {current}"
        )
    return json_response(HTTPStatus.OK, account_state_view(past))


@app.get("/accounts/me")
@tracer.capture_method
def get_my_account() -> Response:
    caller = require_caller(app)
    return json_response(HTTPStatus.OK, account_view(service().account(caller.customer_id)))


REUSED = "this Idempotency-Key was already used with a different amount: use a new key for a new deposit"
install_error_handlers(
    app,
    logger,
    metrics,
    subject="account",
    errors={
        BadHistoryQuery: lambda error: HttpError(HTTPStatus.BAD_REQUEST, str(error)),
        DepositConflict: lambda _: HttpError(HTTPStatus.UNPROCESSABLE_ENTITY, REUSED),
    },
)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
