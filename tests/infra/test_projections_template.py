"""Issue 4 in the template: the order list's table and indexes, its projector's inbox, its route, least privilege.

(The inbox's rule, queue, DLQ, mapping and alarm are also checked with the other inboxes in test_saga_template.py.)
"""

from __future__ import annotations

from orders.events import CATALOG
from projections import store
from stacks.orderflow_stack import OrderflowStack
from stacks.projections import BY_CUSTOMER, BY_CUSTOMER_STATUS, ORDER_EVENTS
from tests.infra.support import (
    LOG_WRITE,
    SQS_CONSUME,
    XRAY,
    Resources,
    allow,
    get_att,
    grants,
    key,
    lid,
    of_type,
    ref,
    route_table,
)


def test_the_table_has_one_key_and_two_indexes_sorted_by_placed_time(
    stack: OrderflowStack, resources: Resources
) -> None:
    table = resources[lid(stack.projections.table)]
    props = table["Properties"]
    assert props["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    indexes = {index["IndexName"]: index for index in props["GlobalSecondaryIndexes"]}
    assert set(indexes) == {BY_CUSTOMER, BY_CUSTOMER_STATUS} == {store.BY_CUSTOMER, store.BY_CUSTOMER_STATUS}
    for name, partition in ((BY_CUSTOMER, "customer_key"), (BY_CUSTOMER_STATUS, "customer_status_key")):
        assert indexes[name]["KeySchema"] == [
            {"AttributeName": partition, "KeyType": "HASH"},
            {"AttributeName": "list_key", "KeyType": "RANGE"},
        ]
        assert indexes[name]["Projection"] == {"ProjectionType": "ALL"}
    assert "StreamSpecification" not in props  # nothing reads its changes
    assert table["DeletionPolicy"] == "Retain" and props["BillingMode"] == "PAY_PER_REQUEST"


def test_the_inbox_takes_every_order_event() -> None:
    assert sorted(ORDER_EVENTS) == CATALOG.names()


def test_get_orders_is_the_query_function_behind_the_authorizer(stack: OrderflowStack, resources: Resources) -> None:
    route = route_table(resources, lid(stack.api.rest_api))["GET", "/orders"]
    assert route["AuthorizationType"] == "COGNITO_USER_POOLS"
    assert route["AuthorizerId"] == ref(stack.api.authorizer)
    assert get_att(stack.projections.query.function, "Arn") in route["Integration"]["Uri"]["Fn::Join"][1]


def test_projector_and_query_may_only_do_their_own_work(stack: OrderflowStack, resources: Resources) -> None:
    projections = stack.projections
    arn = get_att(projections.table, "Arn")

    def own(function) -> set[tuple[str, str]]:  # noqa: ANN001
        return allow(LOG_WRITE, get_att(function.log_group, "Arn")) | allow(XRAY, "*")

    # One conditional PutItem per summary: no transaction, so no ConditionCheckItem (projections/store.py).
    assert grants(resources, lid(projections.projector.role)) == own(projections.projector) | allow(
        ("dynamodb:GetItem", "dynamodb:PutItem"), arn
    ) | allow(SQS_CONSUME, get_att(projections.inbox.queue, "Arn"))
    index = lambda name: {"Fn::Join": ["", [arn, f"/index/{name}"]]}  # noqa: E731
    assert grants(resources, lid(projections.query.role)) == own(projections.query) | allow(
        ("dynamodb:GetItem",), arn
    ) | allow(("dynamodb:Query",), index(BY_CUSTOMER)) | allow(("dynamodb:Query",), index(BY_CUSTOMER_STATUS))


def test_a_message_in_the_projector_dlq_raises_the_alarm(stack: OrderflowStack, resources: Resources) -> None:
    queue_name = key(get_att(stack.projections.inbox.dlq, "QueueName"))
    watching = [
        alarm for alarm in of_type(resources, "AWS::CloudWatch::Alarm").values()
        if key(alarm["Properties"].get("Dimensions", [{"Value": None}])[0]["Value"]) == queue_name
    ]
    assert len(watching) == 1
    assert watching[0]["Properties"]["AlarmActions"] == [ref(stack.alarms.topic)]


def test_the_projector_timeout_is_the_pointer_age_the_rebuild_waits_out(
    stack: OrderflowStack, resources: Resources
) -> None:
    """A projector invocation writes with the pointer it read when it started, and Lambda ends it at this timeout:
    offline/rebuild.py waits this long (and a margin) after moving the pointer. A longer timeout here with the old
    wait there would let a write with an old pointer land after the rebuild stopped waiting for it."""
    function = resources[lid(stack.projections.projector.function)]
    assert function["Properties"]["Timeout"] == store.PROJECTOR_TIMEOUT_SECONDS
    assert store.PROJECTOR_POINTER_MAX_AGE_SECONDS >= store.PROJECTOR_TIMEOUT_SECONDS
