"""DynamoDB tables the way orderflow makes them, and the IAM actions that each way of using one needs.

Every service owns its table and grants its own functions on it; no function is granted another service's table
(the one exception is the system's single idempotency table, which is Powertools' and keyed per function).
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

# An outbox item (or an event, which is its own outbox item) expires this attribute's epoch seconds after it is
# written, so a state-based table does not keep every message it ever published.
OUTBOX_TTL_ATTRIBUTE = "expires_at"

# The event store is append-only, and IAM says so: the function can put new items (always conditional: one
# PutItem per event, or a TransactWriteItems of conditional Puts for several, which IAM authorizes as PutItem) and
# read, but never update or delete an event. No ConditionCheckItem: no append checks an item it does not write
# (functions/shared/event_store.py).
EVENT_STORE_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
)
# What Powertools' DynamoDBPersistenceLayer calls.
IDEMPOTENCY_ACTIONS = (
    "dynamodb:DeleteItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
)


def data_table(scope: Construct, id: str, **props: object) -> dynamodb.Table:
    """On-demand, point-in-time recovery, retained on stack deletion (tables hold data). Generated name."""
    return dynamodb.Table(
        scope,
        id,
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        removal_policy=RemovalPolicy.RETAIN,
        **props,  # type: ignore[arg-type]
    )


def outbox_table(scope: Construct, id: str) -> dynamodb.Table:
    """A ``data_table`` whose stream is an outbox: pk/sk strings, NEW_IMAGE stream, TTL on ``expires_at``.

    The outbox relay reads the stream (``OutboxRelay.add_source``); TTL deletes reach it as REMOVEs, which its
    filter drops.
    """
    return data_table(
        scope,
        id,
        partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
        sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
        stream=dynamodb.StreamViewType.NEW_IMAGE,
        time_to_live_attribute=OUTBOX_TTL_ATTRIBUTE,
    )
