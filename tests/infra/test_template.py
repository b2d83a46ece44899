"""The synthesized "Orderflow" template: what the contract promises, least privilege, and cdk-nag clean.

The app is synthesized once per session (tests/infra/conftest.py, with cdk-nag, as `cdk synth` does). Resources
are found through their constructs (``stack.orders.table``...), never through logical-id hashes. The issue 3
resources (saga, inboxes, notifications, alarms) are checked in test_saga_template.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from aws_cdk import App, Stack, Validations
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from aws_cdk.assertions import Annotations, Match, Template
from constructs import IConstruct

from app import NAG_PACKS, build_app
from stacks.lambda_defaults import ASSET_EXCLUDES, POWERTOOLS_LAYER_PARAMETER, PythonFunction
from stacks.orderflow_stack import OrderflowStack
from tests.infra.support import (
    LOG_WRITE,
    XRAY,
    Resources,
    allow,
    as_list,
    describe,
    get_att,
    grants,
    key,
    lid,
    of_type,
    ref,
    route_table,
)

# ---------------------------------------------------------------------------------------------- relay


def stream_mappings(resources: Resources, stack: OrderflowStack) -> Resources:
    """The relay's stream mappings (the snapshotters' are checked in test_snapshots_template.py)."""
    mappings = of_type(resources, "AWS::Lambda::EventSourceMapping")
    relay = ref(stack.relay.handler.function)
    return {
        k: v for k, v in mappings.items()
        if "StartingPosition" in v["Properties"] and v["Properties"]["FunctionName"] == relay
    }


@pytest.mark.parametrize(("source", "kind"), [("Orders", "event"), ("Inventory", "outbox"), ("Payments", "event")])
def test_relay_event_source_mapping(stack: OrderflowStack, resources: Resources, source: str, kind: str) -> None:
    mappings = stream_mappings(resources, stack)
    sources = ("Orders", "Inventory", "Payments")
    assert set(mappings) == {lid(stack.relay.node.find_child(f"{name}Stream")) for name in sources}
    props = dict(mappings[lid(stack.relay.node.find_child(f"{source}Stream"))]["Properties"])
    table = {"Orders": stack.orders, "Inventory": stack.inventory, "Payments": stack.payments}[source].table

    pattern = props.pop("FilterCriteria")
    assert [json.loads(f["Pattern"]) for f in pattern["Filters"]] == [
        {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"kind": {"S": [kind]}}}}
    ]
    assert props == {
        "FunctionName": ref(stack.relay.handler.function),
        "EventSourceArn": get_att(table, "StreamArn"),
        "StartingPosition": "TRIM_HORIZON",
        "BatchSize": 100,
        "MaximumBatchingWindowInSeconds": 1,
        "BisectBatchOnFunctionError": True,
        "MaximumRetryAttempts": 10,
        "MaximumRecordAgeInSeconds": 86400,
        "ParallelizationFactor": 1,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "DestinationConfig": {"OnFailure": {"Destination": get_att(stack.relay.failure_queue, "Arn")}},
    }


def test_relay_on_failure_queue(stack: OrderflowStack, template: Template, resources: Resources) -> None:
    queue = stack.relay.failure_queue
    assert resources[lid(queue)]["Properties"] == {
        "MessageRetentionPeriod": 14 * 24 * 3600,
        "SqsManagedSseEnabled": True,
    }
    template.has_resource_properties(
        "AWS::SQS::QueuePolicy",
        {
            "Queues": [ref(queue)],
            "PolicyDocument": {
                "Statement": [
                    {
                        "Effect": "Deny",
                        "Action": "sqs:*",
                        "Principal": {"AWS": "*"},
                        "Resource": get_att(queue, "Arn"),
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    }
                ]
            },
        },
    )


def test_relay_takes_more_sources_with_the_same_settings() -> None:
    from aws_cdk import aws_dynamodb as dynamodb
    from aws_cdk import aws_events as events

    from stacks.outbox_relay import OutboxRelay

    scratch = Stack(App(), "Scratch")
    relay = OutboxRelay(scratch, "Relay", bus=events.EventBus(scratch, "Bus"))
    tables = {}
    for name in ("Orders", "Inventory"):
        tables[name] = dynamodb.Table(
            scratch, name, partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            stream=dynamodb.StreamViewType.NEW_IMAGE,
        )
    relay.add_source("Orders", tables["Orders"])
    relay.add_source("Inventory", tables["Inventory"], kinds=("outbox",))
    resources = Template.from_stack(scratch).to_json()["Resources"]

    mappings = {k: v["Properties"] for k, v in of_type(resources, "AWS::Lambda::EventSourceMapping").items()}
    orders_id, inventory_id = (lid(relay.node.find_child(f"{name}Stream")) for name in ("Orders", "Inventory"))
    assert set(mappings) == {orders_id, inventory_id}
    inventory = mappings[inventory_id]
    assert inventory["EventSourceArn"] == get_att(tables["Inventory"], "StreamArn")
    assert json.loads(inventory["FilterCriteria"]["Filters"][0]["Pattern"])["dynamodb"] == {
        "NewImage": {"kind": {"S": ["outbox"]}}
    }
    per_source = ("EventSourceArn", "FilterCriteria")
    settings = [{k: v for k, v in m.items() if k not in per_source} for m in mappings.values()]
    assert settings[0] == settings[1]
    allowed = grants(resources, lid(relay.handler.role))
    for table in tables.values():
        assert ("dynamodb:GetRecords", key(get_att(table, "StreamArn"))) in allowed
    assert len(of_type(resources, "AWS::IAM::Policy")) == 2  # the default policy and one ListStreams policy


# ---------------------------------------------------------------------------------------------- grants


def test_orders_function_may_only_use_its_event_store(stack: OrderflowStack, resources: Resources) -> None:
    # No idempotency table: placing an order is exactly-once by its conditional append (functions/orders/api.py).
    api = stack.orders.api
    assert grants(resources, lid(api.role)) == (
        allow(LOG_WRITE, get_att(api.log_group, "Arn"))
        | allow(XRAY, "*")
        # Append-only event store: no UpdateItem, no DeleteItem.
        | allow(
            ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"),
            get_att(stack.orders.table, "Arn"),
        )
    )


def test_relay_may_only_read_the_stream_put_to_the_bus_and_fail_to_its_queue(
    stack: OrderflowStack, resources: Resources
) -> None:
    relay = stack.relay.handler
    streams: set[tuple[str, str]] = set()
    for table in (stack.orders.table, stack.inventory.table, stack.payments.table):
        streams |= allow(
            ("dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"),
            get_att(table, "StreamArn"),
        )
    assert grants(resources, lid(relay.role)) == (
        allow(LOG_WRITE, get_att(relay.log_group, "Arn"))
        | allow(XRAY, "*")
        | allow(("events:PutEvents",), get_att(stack.events.bus, "Arn"))
        | streams
        | allow(("dynamodb:ListStreams",), "*")
        | allow(
            ("sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SendMessage"),
            get_att(stack.relay.failure_queue, "Arn"),
        )
    )


def test_the_stream_mapping_waits_for_all_its_permissions(stack: OrderflowStack, resources: Resources) -> None:
    # The function (hence its mapping) already waits for its default policy; ListStreams lives in its own policy.
    for source in ("Orders", "Inventory", "Payments"):
        mapping = resources[lid(stack.relay.node.find_child(f"{source}Stream"))]
        assert lid(stack.relay.node.find_child("StreamDiscovery")) in mapping["DependsOn"]
    function = resources[lid(stack.relay.handler.function)]
    assert lid(stack.relay.handler.default_policy) in function["DependsOn"]


# What CDK adds for Step Functions logging (vended-log delivery) and X-Ray on the state machine's role.
STATE_MACHINE_UNSCOPABLE = {
    "logs:CreateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:DescribeLogGroups",
    "logs:DescribeResourcePolicies",
    "logs:GetLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:UpdateLogDelivery",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    *XRAY,
}


def test_wildcard_resources_are_only_the_unscopable_actions(stack: OrderflowStack, resources: Resources) -> None:
    state_machine_role = ref(stack.saga.state_machine.role)
    stream_readers = [[ref(stack.relay.handler.role)]] + [
        [ref(f.role)] for f in (stack.snapshots.orders, stack.snapshots.payments)
    ]
    for logical_id, policy in of_type(resources, "AWS::IAM::Policy").items():
        roles = policy["Properties"]["Roles"]
        unscopable = set(XRAY)
        if roles in stream_readers:
            unscopable.add("dynamodb:ListStreams")
        if roles == [state_machine_role]:
            unscopable = STATE_MACHINE_UNSCOPABLE
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = set(as_list(statement["Action"]))
            assert not any("*" in action for action in actions), (logical_id, statement)
            if "*" in as_list(statement["Resource"]):
                assert actions <= unscopable, (logical_id, statement)
            # No "<arn>:*" or "<arn>/*" either (grant_invoke adds one for versions and aliases).
            assert not re.search(r'[:/]\*"', json.dumps(statement["Resource"])), (logical_id, statement)


def test_only_the_api_gateway_logging_role_uses_a_managed_policy(
    stack: OrderflowStack, resources: Resources
) -> None:
    with_managed = {
        k: v["Properties"]["ManagedPolicyArns"]
        for k, v in of_type(resources, "AWS::IAM::Role").items()
        if "ManagedPolicyArns" in v["Properties"]
    }
    cloud_watch_role = stack.api.rest_api.node.find_child("CloudWatchRole")
    assert list(with_managed) == [lid(cloud_watch_role)]
    assert "AmazonAPIGatewayPushToCloudWatchLogs" in json.dumps(with_managed)


# ---------------------------------------------------------------------------------------------- API


def expected_routes(stack: OrderflowStack) -> dict[tuple[str, str], lambda_.IFunction]:
    return {
        ("GET", "/health"): stack.orders.api.function,
        ("POST", "/orders"): stack.orders.api.function,
        ("GET", "/orders"): stack.projections.query.function,
        ("GET", "/orders/{orderId}"): stack.orders.api.function,
        ("GET", "/orders/{orderId}/history"): stack.orders.api.function,
        ("PUT", "/admin/products/{sku}"): stack.inventory.api.function,
        ("GET", "/admin/products/{sku}"): stack.inventory.api.function,
        ("POST", "/admin/accounts/{customerId}/deposits"): stack.payments.api.function,
        ("GET", "/admin/accounts/{customerId}"): stack.payments.api.function,
        ("GET", "/admin/accounts/{customerId}/history"): stack.payments.api.function,
        ("GET", "/accounts/me"): stack.payments.api.function,
    }


def test_authorizer_on_every_route_but_health(stack: OrderflowStack, resources: Resources) -> None:
    routes = route_table(resources, lid(stack.api.rest_api))
    expected = expected_routes(stack)
    assert set(routes) == set(expected)
    for (method, path), props in routes.items():
        assert props["Integration"]["Type"] == "AWS_PROXY"
        assert props["Integration"]["IntegrationHttpMethod"] == "POST"
        assert get_att(expected[method, path], "Arn") in props["Integration"]["Uri"]["Fn::Join"][1], (method, path)
        if path == "/health":
            assert props["AuthorizationType"] == "NONE" and "AuthorizerId" not in props
        else:
            assert props["AuthorizationType"] == "COGNITO_USER_POOLS", (method, path)
            assert props["AuthorizerId"] == ref(stack.api.authorizer), (method, path)


def test_cognito_authorizer_users_and_admins(
    stack: OrderflowStack, template: Template, resources: Resources
) -> None:
    template.resource_count_is("AWS::ApiGateway::Authorizer", 1)
    template.has_resource_properties(
        "AWS::ApiGateway::Authorizer",
        {
            "Type": "COGNITO_USER_POOLS",
            "RestApiId": ref(stack.api.rest_api),
            "IdentitySource": "method.request.header.Authorization",
            "ProviderARNs": [get_att(stack.api.user_pool, "Arn")],
        },
    )
    template.has_resource_properties(
        "AWS::Cognito::UserPoolGroup", {"GroupName": "admins", "UserPoolId": ref(stack.api.user_pool)}
    )
    client = resources[lid(stack.api.user_pool_client)]["Properties"]
    assert client["GenerateSecret"] is False and client["PreventUserExistenceErrors"] == "ENABLED"
    pool = resources[lid(stack.api.user_pool)]
    assert pool["DeletionPolicy"] == "Retain"
    assert pool["Properties"]["Policies"]["PasswordPolicy"]["MinimumLength"] >= 12


def test_invoke_permissions_are_scoped_to_each_method(stack: OrderflowStack, resources: Resources) -> None:
    # One per route (no test-invoke permissions), each for the prod stage and that method and path only, on the
    # function that serves the route: "/GET/orders/*" for GET /orders/{orderId}.
    expected = {
        f"/{method}" + re.sub(r"\{\w+\}", "*", path): get_att(function, "Arn")
        for (method, path), function in expected_routes(stack).items()
    }
    found = {}
    for permission in of_type(resources, "AWS::Lambda::Permission").values():
        props = permission["Properties"]
        assert props["Principal"] == "apigateway.amazonaws.com"
        source = props["SourceArn"]["Fn::Join"][1]
        assert ref(stack.api.rest_api.deployment_stage) in source
        assert source[-1] not in found, source[-1]
        found[source[-1]] = props["FunctionName"]
    assert found == expected


def test_prod_stage_logs_traces_throttles_and_measures(stack: OrderflowStack, resources: Resources) -> None:
    stage = resources[lid(stack.api.rest_api.deployment_stage)]["Properties"]
    assert stage["StageName"] == "prod"
    assert stage["TracingEnabled"] is True
    access = stage["AccessLogSetting"]
    assert ref(stack.api.access_logs) in access["DestinationArn"]["Fn::Join"][1]
    # Who (sub, ip), what (method, resource), the outcome (status, why the gateway refused, latency), and the ids
    # that find the request in the function's logs and in X-Ray.
    assert {
        "requestId", "sub", "ip", "httpMethod", "resourcePath", "status", "errorType", "latencyMs",
        "integrationLatencyMs", "xrayTraceId",
    } <= set(json.loads(access["Format"]))
    settings = {(s["HttpMethod"], s["ResourcePath"]): s for s in stage["MethodSettings"]}
    # Every entry (a method's replaces the stage-wide one for it) logs errors only, never bodies, with metrics.
    for setting in settings.values():
        assert (setting["LoggingLevel"], setting["DataTraceEnabled"], setting["MetricsEnabled"]) == ("ERROR", False, True)
    throttles = {key: (s["ThrottlingRateLimit"], s["ThrottlingBurstLimit"]) for key, s in settings.items()}
    assert throttles.pop(("*", "/*")) == (100, 200)
    assert throttles == {
        ("GET", "/~1health"): (10, 20),  # public
        ("POST", "/~1orders"): (50, 100),  # a customer write: starts a saga
        ("PUT", "/~1admin~1products~1{sku}"): (20, 40),  # admin
        ("GET", "/~1admin~1products~1{sku}"): (20, 40),
        ("POST", "/~1admin~1accounts~1{customerId}~1deposits"): (20, 40),
        ("GET", "/~1admin~1accounts~1{customerId}"): (20, 40),
        ("GET", "/~1admin~1accounts~1{customerId}~1history"): (20, 40),
    }
    assert len(settings) == len(stage["MethodSettings"])  # one entry per method


# ---------------------------------------------------------------------------------------------- data


def test_tables_on_demand_with_pitr_retained(stack: OrderflowStack, resources: Resources) -> None:
    tables = of_type(resources, "AWS::DynamoDB::Table")
    assert set(tables) == {
        lid(table)
        for table in (
            stack.orders.table,
            stack.orders.idempotency_table,
            stack.inventory.table,
            stack.payments.table,
            stack.notifications.table,
            stack.projections.table,
        )
    }
    for table in tables.values():
        props = table["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
        assert "TableName" not in props


@pytest.mark.parametrize("service", ["orders", "inventory", "payments"])
def test_outbox_tables_have_a_stream_and_a_ttl(stack: OrderflowStack, resources: Resources, service: str) -> None:
    props = resources[lid(getattr(stack, service).table)]["Properties"]
    assert props["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert props["AttributeDefinitions"] == [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "S"},
    ]
    assert props["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def test_idempotency_table_has_powertools_defaults(stack: OrderflowStack, resources: Resources) -> None:
    props = resources[lid(stack.orders.idempotency_table)]["Properties"]
    assert props["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert "StreamSpecification" not in props  # nothing reads its changes


def test_bus_and_its_archive(stack: OrderflowStack, template: Template) -> None:
    template.resource_count_is("AWS::Events::EventBus", 1)
    template.has_resource_properties(
        "AWS::Events::Archive",
        {"SourceArn": get_att(stack.events.bus, "Arn"), "RetentionDays": 30, "ArchiveName": Match.absent()},
    )


# ---------------------------------------------------------------------------------------------- functions


def all_functions(stack: OrderflowStack) -> list[lambda_.Function]:
    """Every function made the one way (stacks/lambda_defaults.PythonFunction), wherever it sits in the stack."""
    return [c.function for c in stack.node.find_all() if isinstance(c, PythonFunction)]


def test_functions_share_the_defaults(stack: OrderflowStack, resources: Resources, template: Template) -> None:
    functions = of_type(resources, "AWS::Lambda::Function")
    # Exactly ours: no CDK helper functions (log retention, custom resources, auto-delete).
    assert set(functions) == {lid(function) for function in all_functions(stack)}
    layer_parameter = template.to_json()["Parameters"]
    for logical_id, function in functions.items():
        props = function["Properties"]
        assert props["Runtime"] == "python3.13", logical_id
        assert props["Architectures"] == ["arm64"], logical_id
        assert props["TracingConfig"] == {"Mode": "Active"}, logical_id
        assert isinstance(props["MemorySize"], int) and isinstance(props["Timeout"], int), logical_id
        [layer] = props["Layers"]
        assert layer_parameter[layer["Ref"]] == {
            "Type": "AWS::SSM::Parameter::Value<String>",
            "Default": POWERTOOLS_LAYER_PARAMETER,
        }
        log_group = resources[props["LoggingConfig"]["LogGroup"]["Ref"]]
        assert log_group["Type"] == "AWS::Logs::LogGroup"
        # JSON logs; Lambda's START/END/REPORT lines dropped (WARN), the application's INFO lines kept.
        assert {k: v for k, v in props["LoggingConfig"].items() if k != "LogGroup"} == {
            "LogFormat": "JSON", "SystemLogLevel": "WARN", "ApplicationLogLevel": "INFO"}, logical_id
        assert "POWERTOOLS_SERVICE_NAME" not in props["Environment"]["Variables"]


COMMON = {"POWERTOOLS_METRICS_NAMESPACE": "Orderflow", "LOG_LEVEL": "INFO"}


def test_function_handlers_and_environment(stack: OrderflowStack, resources: Resources) -> None:
    expected = {
        stack.orders.api: ("orders.api.handler", {"ORDERS_TABLE": ref(stack.orders.table)}),
        stack.orders.saga: ("orders.saga.handler", {"ORDERS_TABLE": ref(stack.orders.table)}),
        stack.inventory.api: ("inventory.api.handler", {"INVENTORY_TABLE": ref(stack.inventory.table)}),
        stack.inventory.saga: ("inventory.saga.handler", {"INVENTORY_TABLE": ref(stack.inventory.table)}),
        stack.payments.api: ("payments.api.handler", {"PAYMENTS_TABLE": ref(stack.payments.table)}),
        stack.payments.saga: ("payments.saga.handler", {"PAYMENTS_TABLE": ref(stack.payments.table)}),
        stack.payments.capturer: ("payments.capture_on_confirmed.handler", {"PAYMENTS_TABLE": ref(stack.payments.table)}),
        stack.inventory.committer: ("inventory.commit_on_confirmed.handler", {"INVENTORY_TABLE": ref(stack.inventory.table)}),
        stack.relay.handler: ("relay.handler.handler", {"EVENT_BUS_NAME": ref(stack.events.bus)}),
        stack.saga.starter: ("orders.starter.handler", {"ORDER_SAGA_ARN": ref(stack.saga.state_machine)}),
        stack.notifications.handler: ("notifications.handler.handler", {
            "NOTIFICATIONS_TABLE": ref(stack.notifications.table),
            # The system's one idempotency table; only notifications uses it (Powertools, per event id).
            "IDEMPOTENCY_TABLE": ref(stack.orders.idempotency_table),
            "SENDER_EMAIL": ref(stack.notifications.sender),
        }),
        stack.projections.projector: ("projections.projector.handler", {"PROJECTIONS_TABLE": ref(stack.projections.table)}),
        stack.projections.query: ("projections.api.handler", {"PROJECTIONS_TABLE": ref(stack.projections.table)}),
        stack.snapshots.orders: ("snapshots.orders.handler", {
            "ORDERS_TABLE": ref(stack.orders.table), "ORDER_SNAPSHOT_INTERVAL": "10",
        }),
        stack.snapshots.payments: ("snapshots.payments.handler", {
            "PAYMENTS_TABLE": ref(stack.payments.table), "ACCOUNT_SNAPSHOT_INTERVAL": "100",
        }),
    }
    assert len(expected) == len(all_functions(stack))
    for function, (handler, environment) in expected.items():
        props = resources[lid(function.function)]["Properties"]
        assert props["Handler"] == handler, function.node.path
        assert props["Environment"]["Variables"] == {**environment, **COMMON}, function.node.path


def test_an_environment_key_means_the_same_in_every_function(resources: Resources) -> None:
    # The offline runtime puts every function's environment into one process environment.
    seen: dict[str, Any] = {}
    for function in of_type(resources, "AWS::Lambda::Function").values():
        for name, value in function["Properties"]["Environment"]["Variables"].items():
            assert seen.setdefault(name, value) == value, name


def test_log_groups_have_retention_and_generated_names(stack: OrderflowStack, resources: Resources) -> None:
    log_groups = of_type(resources, "AWS::Logs::LogGroup")
    assert len(log_groups) == len(all_functions(stack)) + 2  # the functions', the API's access log, the saga's
    for logical_id, log_group in log_groups.items():
        assert log_group["Properties"]["RetentionInDays"] == 30, logical_id
        if logical_id == lid(stack.saga.log_group):
            # Step Functions' vended logs: the one named log group (see stacks/order_saga.py).
            assert log_group["Properties"]["LogGroupName"] == "/aws/vendedlogs/states/Orderflow-OrderSaga"
        else:
            assert "LogGroupName" not in log_group["Properties"], logical_id


def test_plain_cloudformation_only(resources: Resources) -> None:
    types = {resource["Type"] for resource in resources.values()}
    assert not {t for t in types if t.startswith("Custom::") or t == "AWS::CloudFormation::CustomResource"}
    assert "AWS::CDK::Metadata" not in types
    queues = of_type(resources, "AWS::SQS::Queue").values()
    assert all("QueueName" not in q["Properties"] for q in queues)


def test_code_asset_leaves_out_caches_and_tests(tmp_path: Any) -> None:
    code_dir = tmp_path / "functions"
    for name in ("orders/api.py", "orders/__pycache__/api.cpython-313.pyc", "stray.pyc", "tests/test_x.py",
                 "orders/tests/test_y.py"):
        (code_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (code_dir / name).write_text("")
    app = App(outdir=str(tmp_path / "out"))
    scratch = Stack(app, "Scratch")
    lambda_.Function(scratch, "F", runtime=lambda_.Runtime.PYTHON_3_13, handler="orders.api.handler",
                     code=lambda_.Code.from_asset(str(code_dir), exclude=ASSET_EXCLUDES))
    app.synth()
    [asset] = (tmp_path / "out").glob("asset.*")
    assert sorted(str(p.relative_to(asset)) for p in asset.rglob("*")) == ["orders", "orders/api.py"]


# ---------------------------------------------------------------------------------------------- outputs


def test_outputs(stack: OrderflowStack, template: Template) -> None:
    outputs = {name: output["Value"] for name, output in template.to_json()["Outputs"].items()}
    api_url = outputs.pop("ApiUrl")
    assert ref(stack.api.rest_api) in api_url["Fn::Join"][1]
    assert outputs == {
        "EventBusName": ref(stack.events.bus),
        "OrdersTableName": ref(stack.orders.table),
        "InventoryTableName": ref(stack.inventory.table),
        "PaymentsTableName": ref(stack.payments.table),
        "NotificationsTableName": ref(stack.notifications.table),
        "OrderSagaArn": ref(stack.saga.state_machine),
        "AlarmTopicArn": ref(stack.alarms.topic),
        "UserPoolId": ref(stack.api.user_pool),
        "UserPoolClientId": ref(stack.api.user_pool_client),
        "RelayFailureQueueUrl": ref(stack.relay.failure_queue),
    }


def test_workflow_context_is_checked() -> None:
    with pytest.raises(ValueError, match="workflow"):
        build_app(context={"workflow": "sometimes"})


# ---------------------------------------------------------------------------------------------- cdk-nag


def test_cdk_nag_finds_nothing_unacknowledged(
    app_and_stack: tuple[App, OrderflowStack], express_app_and_stack: tuple[App, OrderflowStack]
) -> None:
    for app, _ in (app_and_stack, express_app_and_stack):
        for pack in NAG_PACKS:
            assert describe(pack().validate_scope(app)) == [], pack.__name__


def test_no_nag_annotations(stack: OrderflowStack, template: Template) -> None:
    # cdk-nag v2 reported as annotations; v3 reports to the validation report (checked above). This keeps the
    # check the README names, and also fails on any other error CDK attaches to the stack.
    annotations = Annotations.from_stack(stack)
    nag = Match.string_like_regexp("(AwsSolutions|Serverless)-.*")
    assert annotations.find_error("*", nag) == []
    assert annotations.find_warning("*", nag) == []
    assert annotations.find_error("*", Match.any_value()) == []


def test_synth_fails_on_an_unacknowledged_finding() -> None:
    app, stack = build_app()
    sqs.Queue(stack, "QueueWithoutDlq", enforce_ssl=True)
    with pytest.raises(Exception) as failed:
        app.synth()
    # Both packs run in the synth: the queue has no DLQ for either.
    assert "AwsSolutions-SQS3" in str(failed.value) and "Serverless-SQSRedrivePolicy" in str(failed.value)


def acknowledgements(root: IConstruct) -> Iterator[tuple[IConstruct, str, str]]:
    for construct in root.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                for rule_id, reason in entry.data.items():
                    yield construct, re.sub(r"^annotation::", "", rule_id, flags=re.IGNORECASE), reason


def test_every_acknowledgement_is_narrow_and_explained(app_and_stack: tuple[App, OrderflowStack]) -> None:
    found = list(acknowledgements(app_and_stack[0]))
    assert found, "expected the acknowledgements this stack needs"
    for construct, rule_id, reason in found:
        where = f"{rule_id} at {construct.node.path}"
        assert not isinstance(construct, (App, Stack)), f"{where}: acknowledge on the construct, not stack-wide"
        if rule_id.startswith(("AwsSolutions-IAM4", "AwsSolutions-IAM5")):
            assert re.search(r"\[(Action|Resource|Policy)::.+\]$", rule_id), f"{where}: name the finding"
        assert len(reason) >= 100 and len(reason.split()) >= 15, f"{where}: reason too thin: {reason!r}"


@pytest.fixture(scope="module")
def unacknowledged() -> Iterator[tuple[App, list[tuple[str, str]]]]:
    """The same app built with every acknowledgement recorded instead of applied."""
    recorded: list[tuple[str, str]] = []
    real_of = Validations.of

    class Recorder:
        def __init__(self, scope: IConstruct) -> None:
            self._scope, self._real = scope, real_of(scope)

        def acknowledge(self, *rules: Any) -> None:
            recorded.extend((self._scope.node.path, rule.id) for rule in rules)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._real, name)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Validations, "of", staticmethod(Recorder))
        app, _ = build_app()
    yield app, recorded


def test_every_acknowledgement_is_still_needed(unacknowledged: tuple[App, list[tuple[str, str]]]) -> None:
    app, recorded = unacknowledged
    findings = {
        (violation.rule_name, resource.construct_path)
        for pack in NAG_PACKS
        for violation in pack().validate_scope(app).violations
        for resource in violation.violating_resources
    }
    def covers(acknowledged: tuple[str, str], finding: tuple[str, str]) -> bool:
        (path, rule_id), (rule, found) = acknowledged, finding
        return rule == rule_id and (found == path or found.startswith(path + "/"))

    for ack in recorded:
        assert any(covers(ack, finding) for finding in findings), f"stale acknowledgement {ack}"
    # And conversely: every finding is acknowledged on its resource or an ancestor.
    for finding in findings:
        assert any(covers(ack, finding) for ack in recorded), f"unacknowledged finding {finding}"
