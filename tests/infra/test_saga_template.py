"""Issue 3 in the template: the order saga (both workflows), the event inboxes and their DLQs, notifications with
SES, the participants' least-privilege grants, and the alarms. Issue 6: the saga's happy path is three states
ending at the pivot; capture and commit are choreography (inboxes of the payments and inventory services).

Uses the session's synthesized apps (tests/infra/conftest.py): the default ("standard") and ``workflow=express``.
"""

from __future__ import annotations

import ast
import builtins
import json
import re
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk.assertions import Match, Template

from app import build_app
from stacks.event_inbox import EventInbox
from stacks.lambda_defaults import PythonFunction
from stacks.order_saga import DEFINITION_FILE
from stacks.orderflow_stack import OrderflowStack
from stacks.projections import ORDER_EVENTS
from tests.infra.support import (
    LOG_WRITE,
    SQS_CONSUME,
    XRAY,
    Resources,
    allow,
    get_att,
    granted_roles,
    grants,
    key,
    lid,
    of_type,
    ref,
)

DEFINITION = json.loads(DEFINITION_FILE.read_text())
SUBSTITUTIONS = ("InventorySagaFunction", "PaymentsSagaFunction", "OrdersSagaFunction")


def participants(stack: OrderflowStack) -> dict[str, PythonFunction]:
    return {
        "InventorySagaFunction": stack.inventory.saga,
        "PaymentsSagaFunction": stack.payments.saga,
        "OrdersSagaFunction": stack.orders.saga,
    }


def inboxes(stack: OrderflowStack) -> dict[str, tuple[EventInbox, PythonFunction, list[str]]]:
    """name -> (inbox, its consumer, the detail-types its rule matches)."""
    return {
        "saga": (stack.saga.inbox, stack.saga.starter, ["OrderPlaced"]),
        "notifications": (stack.notifications.inbox, stack.notifications.handler, ["OrderConfirmed", "OrderCancelled"]),
        "projections": (stack.projections.inbox, stack.projections.projector, list(ORDER_EVENTS)),
        "capture": (stack.payments.capture_inbox, stack.payments.capturer, ["OrderConfirmed"]),
        "commit": (stack.inventory.commit_inbox, stack.inventory.committer, ["OrderConfirmed"]),
    }


INBOXES = ["saga", "notifications", "projections", "capture", "commit"]


@pytest.fixture(scope="module", params=["standard", "express"])
def workflow_build(request: pytest.FixtureRequest) -> tuple[str, OrderflowStack, Resources]:
    """(workflow, stack, resources) of the session's app for each workflow; each synthesized only when needed."""
    prefix = "" if request.param == "standard" else "express_"
    app_and_stack: tuple[App, OrderflowStack] = request.getfixturevalue(f"{prefix}app_and_stack")
    return request.param, app_and_stack[1], request.getfixturevalue(f"{prefix}resources")


# ---------------------------------------------------------------------------------------------- state machine


def test_state_machine_type_logging_tracing_and_definition(
    workflow_build: tuple[str, OrderflowStack, Resources],
) -> None:
    workflow, stack, resources = workflow_build
    machines = of_type(resources, "AWS::StepFunctions::StateMachine")
    assert list(machines) == [lid(stack.saga.state_machine)]
    props = next(iter(machines.values()))["Properties"]

    assert props["StateMachineType"] == workflow.upper()
    assert props["LoggingConfiguration"] == {
        # Standard keeps its history in Step Functions: the log has the errors; Express has only its log.
        "Level": "ERROR" if workflow == "standard" else "ALL",
        "IncludeExecutionData": True,
        "Destinations": [{"CloudWatchLogsLogGroup": {"LogGroupArn": get_att(stack.saga.log_group, "Arn")}}],
    }
    assert props["TracingConfiguration"] == {"Enabled": True}
    # Inline (from_string), never an S3 location: the offline runtime executes this very definition.
    assert "DefinitionS3Location" not in props and "Definition" not in props
    assert json.loads(props["DefinitionString"]) == DEFINITION
    assert props["DefinitionSubstitutions"] == {
        name: get_att(function.function, "Arn") for name, function in participants(stack).items()
    }
    assert props["RoleArn"] == get_att(stack.saga.state_machine.role, "Arn")


def test_every_placeholder_of_the_definition_is_substituted() -> None:
    placeholders = set(re.findall(r"\$\{(\w+)\}", DEFINITION_FILE.read_text()))
    assert placeholders == set(SUBSTITUTIONS)
    for name, state in DEFINITION["States"].items():
        if state["Type"] == "Task":
            assert state["Resource"] == "arn:aws:states:::lambda:invoke", name
            assert re.fullmatch(r"\$\{\w+\}", state["Parameters"]["FunctionName"]), name


def happy_path(definition: dict[str, Any]) -> list[str]:
    """The states an execution enters when every task succeeds: StartAt, then each Next, up to the End."""
    names, name = [], definition["StartAt"]
    while True:
        names.append(name)
        state = definition["States"][name]
        if state.get("End") or state["Type"] in ("Succeed", "Fail"):
            return names
        name = state["Next"]


def test_the_happy_path_is_three_state_transitions_ending_at_the_pivot() -> None:
    # Standard bills every state entered: reserve, authorize, confirm; nothing after the pivot in the workflow.
    assert happy_path(DEFINITION) == ["ReserveInventory", "AuthorizePayment", "ConfirmOrder"]
    confirm = DEFINITION["States"]["ConfirmOrder"]
    assert confirm["End"] is True and confirm["Parameters"]["Payload"] == {
        "action": "confirm", "orderId.$": "$.orderId", "lines.$": "$.reservation.lines",
        "total.$": "$.reservation.total"}
    assert DEFINITION["States"]["AuthorizePayment"]["Parameters"]["Payload"]["amount.$"] == "$.reservation.total"
    actions = {state["Parameters"]["Payload"]["action"] for state in DEFINITION["States"].values()
               if state["Type"] == "Task"}
    assert actions == {"reserve", "authorize", "confirm", "cancel", "void", "release", "flag"}  # no price/capture/commit


def test_every_compensation_path_starts_by_cancelling_the_order() -> None:
    """Void and release run only after a cancel step decided the order (the aggregate excludes confirm-and-cancel);
    a cancel that finds the order confirmed compensates nothing."""
    states = DEFINITION["States"]
    cancels = {"CancelOrder", "CancelUnpaidOrder"}
    for name in ("ReserveInventory", "AuthorizePayment", "ConfirmOrder"):
        targets = {catch["Next"] for catch in states[name]["Catch"]}
        assert targets <= cancels and targets, name
        assert states[name]["Catch"][-1]["ErrorEquals"] == ["States.ALL"], name
    assert {c["Next"] for c in states["ReserveInventory"]["Catch"]} == {"CancelUnpaidOrder"}  # nothing was authorized
    assert states["CancelOrder"]["Next"] == "VoidAuthorization" and states["CancelUnpaidOrder"]["Next"] == "ReleaseInventory"
    assert states["VoidAuthorization"]["Next"] == "ReleaseInventory" and states["ReleaseInventory"]["End"] is True
    for cancel in cancels:
        first, rest = states[cancel]["Catch"][0], states[cancel]["Catch"][1:]
        assert first == {"ErrorEquals": ["AlreadyConfirmed"], "ResultPath": "$.failure", "Next": "ConfirmedAfterAll"}
        assert rest == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "FlagNeedsAttention"}]
    assert states["ConfirmedAfterAll"]["Type"] == "Succeed"
    referrers = {name for name, state in states.items() if state.get("Next") in ("VoidAuthorization", "ReleaseInventory")}
    assert referrers == {"CancelOrder", "CancelUnpaidOrder", "VoidAuthorization"}
    assert states["FlagNeedsAttention"]["Next"] == "SagaNeedsAttention" and states["SagaNeedsAttention"]["Type"] == "Fail"


# The package of each participant (functions/<package>/): its exception class names are the Step Functions errors.
PACKAGES = {"InventorySagaFunction": "inventory", "PaymentsSagaFunction": "payments", "OrdersSagaFunction": "orders"}
# Errors that are transient by design, whatever service raises them: never in a "do not retry" list.
TRANSIENT_BY_DESIGN = {"ConcurrencyError", "Runtime.ExitError", "Sandbox.Timedout", "Lambda.Unknown", "States.Timeout",
                       "Lambda.ServiceException", "Lambda.TooManyRequestsException"}


def tasks() -> dict[str, dict[str, Any]]:
    return {name: state for name, state in DEFINITION["States"].items() if state["Type"] == "Task"}


def exception_classes(package: str) -> set[str]:
    """The exception classes defined in functions/<package>/ and functions/shared/ (read, not imported)."""
    bases: dict[str, list[str]] = {}
    for folder in (package, "shared"):
        for source in sorted((DEFINITION_FILE.parents[1] / "functions" / folder).glob("*.py")):
            for node in ast.walk(ast.parse(source.read_text())):
                if isinstance(node, ast.ClassDef):
                    bases.setdefault(node.name, []).extend(
                        b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases)

    def is_exception(name: str, seen: frozenset[str] = frozenset()) -> bool:
        builtin = getattr(builtins, name, None)
        if isinstance(builtin, type) and issubclass(builtin, BaseException):
            return True
        return name not in seen and any(is_exception(base, seen | {name}) for base in bases.get(name, []))

    return {name for name in bases if is_exception(name)}


def never_retried(state: dict[str, Any]) -> set[str]:
    return set(state["Retry"][0]["ErrorEquals"])


def test_every_task_retries_every_error_but_its_business_ones_with_jitter() -> None:
    """A handler's exception reaches Step Functions under its class name (a throttle the handler met is
    ProvisionedThroughputExceededException, ThrottlingException, ClientError...), a crash as Runtime.ExitError: no
    list of transient names can be complete, so each task lists what it must NOT retry and retries the rest."""
    for name, state in tasks().items():
        assert state["TimeoutSeconds"] == 30, name
        first, last = state["Retry"]  # exactly two retriers; AWS and moto take the first whose ErrorEquals matches
        assert first == {"ErrorEquals": first["ErrorEquals"], "MaxAttempts": 0}, name
        assert "States.ALL" not in first["ErrorEquals"] and first["ErrorEquals"], name
        assert last["ErrorEquals"] == ["States.ALL"], name  # alone, and in the last retrier (the ASL spec)
        assert 1 <= last["MaxAttempts"] <= 5 and last["JitterStrategy"] == "FULL", name
        assert last["IntervalSeconds"] >= 1 and last["BackoffRate"] > 1 and last["MaxDelaySeconds"] >= 1, name
        assert state["Catch"] and state["Catch"][-1]["ErrorEquals"] == ["States.ALL"], name


@pytest.mark.parametrize("name", sorted(tasks()))
def test_what_a_task_never_retries_is_an_error_its_participant_raises(name: str) -> None:
    """Every name in the "do not retry" list is an exception class of the service the task invokes (a typo would
    silently retry a business error); nothing transient is in it; and every business error the task catches by
    name is in it (a declined payment is not tried again)."""
    state = tasks()[name]
    package = PACKAGES[state["Parameters"]["FunctionName"][2:-1]]
    assert never_retried(state) <= exception_classes(package), (name, never_retried(state) - exception_classes(package))
    assert not never_retried(state) & TRANSIENT_BY_DESIGN, name
    assert "InvalidRequest" in never_retried(state), name  # a malformed payload never becomes valid
    caught = {error for catch in state["Catch"] for error in catch["ErrorEquals"]} - {"States.ALL"}
    assert caught <= never_retried(state), name


def test_the_business_errors_each_step_ends_in_are_never_retried() -> None:
    states = DEFINITION["States"]
    assert {"OutOfStock", "UnknownProduct", "ReservationCancelled"} <= never_retried(states["ReserveInventory"])
    assert {"PaymentDeclined", "AuthorizationCancelled"} <= never_retried(states["AuthorizePayment"])
    assert "InvalidTransition" in never_retried(states["ConfirmOrder"])  # e.g. cancelled by a duplicate execution
    for cancel in ("CancelOrder", "CancelUnpaidOrder"):
        assert {"AlreadyConfirmed", "InvalidTransition"} <= never_retried(states[cancel])
    assert "PaymentAlreadyCaptured" in never_retried(states["VoidAuthorization"])
    assert "InvalidTransition" in never_retried(states["ReleaseInventory"])  # released after a commit


# ------------------------------------------------------------------------------------------ the time budget
EXPRESS_CAP = 300  # seconds: an Express execution is stopped after five minutes
FAST_ATTEMPT = 4  # seconds an attempt that fails fast may take (a throttle once the SDK gave up, a crash, a 5xx)


def retry_plan(state: dict[str, Any]) -> tuple[int, float]:
    """(attempts, the longest total wait between them) of a task whose error every attempt is retried."""
    retrier = state["Retry"][-1]
    waits = [min(retrier["IntervalSeconds"] * retrier["BackoffRate"] ** k, retrier["MaxDelaySeconds"])
             for k in range(retrier["MaxAttempts"])]
    return retrier["MaxAttempts"] + 1, sum(waits)  # full jitter waits a random time up to each of these


def task_paths(name: str | None = None) -> list[list[str]]:
    """Every path through the definition (Next and every Catch), as the tasks it runs."""
    states = DEFINITION["States"]
    state = states[name or DEFINITION["StartAt"]]
    here = [name or DEFINITION["StartAt"]] if state["Type"] == "Task" else []
    following = {state["Next"]} if "Next" in state else set()
    following |= {catch["Next"] for catch in state.get("Catch", [])}
    ends = [here] if state.get("End") or state["Type"] in ("Succeed", "Fail") else []
    return ends + [here + rest for after in sorted(following) for rest in task_paths(after)]


def test_the_retries_fit_the_workflow_time_budget(stack: OrderflowStack, resources: Resources) -> None:
    """TimeoutSeconds ends the execution without compensating (alarmed: ExecutionsTimedOut), so the retries of the
    longest path must end before it: every step retried to its last attempt, each attempt failing fast; or one
    forward step and one compensation whose every attempt runs to the function's timeout (an outage)."""
    budget = DEFINITION["TimeoutSeconds"]
    assert budget <= EXPRESS_CAP
    timeout = max(resources[lid(function.function)]["Properties"]["Timeout"] for function in participants(stack).values())
    forward = set(happy_path(DEFINITION))
    paths = task_paths()
    assert max(map(len, paths)) == 7  # reserve, authorize, confirm, cancel, void, release, flag
    for path in paths:
        plans = {name: retry_plan(DEFINITION["States"][name]) for name in path}
        all_fast = sum(attempts * FAST_ATTEMPT + waits for attempts, waits in plans.values())
        assert all_fast <= budget, (path, all_fast)
        slow = {name: attempts * timeout + waits for name, (attempts, waits) in plans.items()}
        for step in forward & set(path):
            for compensation in set(path) - forward:
                outage = slow[step] + slow[compensation] + FAST_ATTEMPT * (len(path) - 2)
                assert outage <= budget, (path, step, compensation, outage)
    assert retry_plan(DEFINITION["States"]["ReserveInventory"]) == (4, 7)  # what the definition's Comment says
    assert retry_plan(DEFINITION["States"]["CancelOrder"]) == (6, 31)


def test_saga_functions_time_out_before_their_tasks(stack: OrderflowStack, resources: Resources) -> None:
    # A function's own timeout must end a slow step before the task's TimeoutSeconds does.
    by_name = participants(stack)
    for name, state in DEFINITION["States"].items():
        if state["Type"] != "Task":
            continue
        function = by_name[state["Parameters"]["FunctionName"][2:-1]]
        timeout = resources[lid(function.function)]["Properties"]["Timeout"]
        assert timeout < state["TimeoutSeconds"], (name, timeout)


def test_state_machine_log_group(stack: OrderflowStack, resources: Resources) -> None:
    log_group = resources[lid(stack.saga.log_group)]
    assert log_group["Properties"] == {
        "LogGroupName": "/aws/vendedlogs/states/Orderflow-OrderSaga",
        "RetentionInDays": 30,
    }


def test_state_machine_may_only_invoke_the_three_saga_functions(
    workflow_build: tuple[str, OrderflowStack, Resources],
) -> None:
    _, stack, resources = workflow_build
    log_delivery = (
        "logs:CreateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:DescribeLogGroups",
        "logs:DescribeResourcePolicies",
        "logs:GetLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:UpdateLogDelivery",
    )
    invoke: set[tuple[str, str]] = set()
    for function in participants(stack).values():
        invoke |= allow(("lambda:InvokeFunction",), get_att(function.function, "Arn"))
    assert grants(resources, lid(stack.saga.state_machine.role)) == (
        allow(log_delivery, "*")
        | allow((*XRAY, "xray:GetSamplingRules", "xray:GetSamplingTargets"), "*")
        | invoke
    )
    role = resources[lid(stack.saga.state_machine.role)]["Properties"]
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert (trust["Action"], trust["Principal"]) == ("sts:AssumeRole", {"Service": "states.amazonaws.com"})
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}  # no confused deputy


def test_only_the_starter_may_start_executions(stack: OrderflowStack, resources: Resources) -> None:
    starts = {
        role
        for role in granted_roles(resources)
        if any(action.startswith("states:") for action, _ in grants(resources, role))
    }
    assert starts == {lid(stack.saga.starter.role)}


# ---------------------------------------------------------------------------------------------- rules and inboxes


@pytest.mark.parametrize("name", INBOXES)
def test_rule_matches_order_events_and_targets_the_inbox_with_a_dlq(
    stack: OrderflowStack, resources: Resources, name: str
) -> None:
    inbox, _, detail_types = inboxes(stack)[name]
    props = resources[lid(inbox.rule)]["Properties"]
    assert props["EventBusName"] == ref(stack.events.bus)
    assert props["State"] == "ENABLED"
    assert props["EventPattern"] == {"source": ["orderflow.orders"], "detail-type": detail_types}
    [target] = props["Targets"]
    assert {k: v for k, v in target.items() if k != "Id"} == {
        "Arn": get_att(inbox.queue, "Arn"),
        "DeadLetterConfig": {"Arn": get_att(inbox.dlq, "Arn")},
        "RetryPolicy": {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400},
    }


def test_the_only_rules_are_the_inboxes(stack: OrderflowStack, resources: Resources) -> None:
    assert set(of_type(resources, "AWS::Events::Rule")) == {lid(i.rule) for i, _, _ in inboxes(stack).values()}


@pytest.mark.parametrize("name", INBOXES)
def test_inbox_queue_redrives_to_its_dlq(stack: OrderflowStack, resources: Resources, name: str) -> None:
    inbox, consumer, _ = inboxes(stack)[name]
    timeout = resources[lid(consumer.function)]["Properties"]["Timeout"]
    assert resources[lid(inbox.queue)]["Properties"] == {
        "MessageRetentionPeriod": 4 * 24 * 3600,
        "VisibilityTimeout": 6 * timeout,
        "SqsManagedSseEnabled": True,
        "RedrivePolicy": {"deadLetterTargetArn": get_att(inbox.dlq, "Arn"), "maxReceiveCount": 5},
    }
    assert resources[lid(inbox.dlq)]["Properties"] == {
        "MessageRetentionPeriod": 14 * 24 * 3600,
        "SqsManagedSseEnabled": True,
    }


@pytest.mark.parametrize("name", INBOXES)
def test_only_the_rule_may_send_to_the_inbox_and_its_dlq(
    stack: OrderflowStack, template: Template, name: str
) -> None:
    inbox, _, _ = inboxes(stack)[name]
    from_the_rule = {"ArnEquals": {"aws:SourceArn": get_att(inbox.rule, "Arn")}}
    for queue, actions in ((inbox.queue, ["sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SendMessage"]),
                           (inbox.dlq, "sqs:SendMessage")):
        template.has_resource_properties(
            "AWS::SQS::QueuePolicy",
            {
                "Queues": [ref(queue)],
                "PolicyDocument": {
                    "Statement": [
                        Match.object_like({"Effect": "Deny", "Action": "sqs:*", "Principal": {"AWS": "*"},
                                           "Condition": {"Bool": {"aws:SecureTransport": "false"}}}),
                        Match.object_like({"Effect": "Allow", "Action": actions,
                                           "Principal": {"Service": "events.amazonaws.com"},
                                           "Resource": get_att(queue, "Arn"), "Condition": from_the_rule}),
                    ]
                },
            },
        )


def test_every_queue_is_encrypted_and_tls_only(resources: Resources) -> None:
    queues = of_type(resources, "AWS::SQS::Queue")
    assert len(queues) == 12  # the relay's and the snapshotters' on-failure queues, five inboxes and their DLQs
    tls_only = set()
    for policy in of_type(resources, "AWS::SQS::QueuePolicy").values():
        props = policy["Properties"]
        if {"Effect": "Deny", "Action": "sqs:*", "Principal": {"AWS": "*"},
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            "Resource": {"Fn::GetAtt": [props["Queues"][0]["Ref"], "Arn"]}} in props["PolicyDocument"]["Statement"]:
            tls_only.add(props["Queues"][0]["Ref"])
    assert tls_only == set(queues)
    for logical_id, queue in queues.items():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True, logical_id


def test_sqs_event_sources_report_batch_item_failures(stack: OrderflowStack, resources: Resources) -> None:
    mappings = {
        k: v["Properties"]
        for k, v in of_type(resources, "AWS::Lambda::EventSourceMapping").items()
        if "StartingPosition" not in v["Properties"]  # the relay's stream mappings are checked elsewhere
    }
    expected = {
        lid(inbox.mapping): {
            "FunctionName": ref(consumer.function),
            "EventSourceArn": get_att(inbox.queue, "Arn"),
            "BatchSize": 10,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        }
        for inbox, consumer, _ in inboxes(stack).values()
    }
    assert mappings == expected


# ---------------------------------------------------------------------------------------------- notifications


def test_sender_identity_comes_from_context(stack: OrderflowStack, resources: Resources) -> None:
    assert resources[lid(stack.notifications.sender)]["Properties"] == {"EmailIdentity": "orders@example.com"}
    _, other = build_app(context={"senderEmail": "shop@example.org"})  # constructs only, no synth
    identity = other.notifications.sender.node.default_child
    assert Stack.of(other).resolve(identity.email_identity) == "shop@example.org"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="senderEmail"):
        build_app(context={"senderEmail": "not-an-address"})


def test_notifications_table_keeps_only_records(stack: OrderflowStack, resources: Resources) -> None:
    props = resources[lid(stack.notifications.table)]["Properties"]
    assert props["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert props["AttributeDefinitions"] == [{"AttributeName": "pk", "AttributeType": "S"}]
    assert "StreamSpecification" not in props


def identity_arn(stack: OrderflowStack) -> dict[str, Any]:
    return {
        "Fn::Join": [
            "",
            [
                "arn:", {"Ref": "AWS::Partition"}, ":ses:", {"Ref": "AWS::Region"}, ":", {"Ref": "AWS::AccountId"},
                ":identity/", ref(stack.notifications.sender),
            ],
        ]
    }


def test_ses_send_is_granted_on_the_sender_identity_only(stack: OrderflowStack, resources: Resources) -> None:
    sends = {
        (role, resource)
        for role in granted_roles(resources)
        for action, resource in grants(resources, role)
        if action.startswith("ses:")
    }
    assert sends == {(lid(stack.notifications.handler.role), key(identity_arn(stack)))}


# ---------------------------------------------------------------------------------------------- grants


def own(function: PythonFunction) -> set[tuple[str, str]]:
    """What every function has: writing its own log group, and X-Ray."""
    return allow(LOG_WRITE, get_att(function.log_group, "Arn")) | allow(XRAY, "*")


EVENT_STORE = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query")  # conditional puts only: no ConditionCheckItem
IDEMPOTENCY = ("dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")


def expected_grants(stack: OrderflowStack) -> dict[PythonFunction, set[tuple[str, str]]]:
    inventory, payments, orders = stack.inventory, stack.payments, stack.orders
    saga, notifications = stack.saga, stack.notifications
    return {
        # State-based inventory: TransactWriteItems of Puts and Updates; the saga reads in one BatchGetItem.
        inventory.api: allow(("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"),
                             get_att(inventory.table, "Arn")),
        inventory.saga: allow(("dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"),
                              get_att(inventory.table, "Arn")),
        # Event-sourced payments: append-only, like the orders table.
        payments.api: allow(EVENT_STORE, get_att(payments.table, "Arn")),  # deposits: conditional appends, no record
        payments.saga: allow(EVENT_STORE, get_att(payments.table, "Arn")),
        # After the pivot, by choreography: each consumer reads its own service's table and its own inbox.
        payments.capturer: allow(EVENT_STORE, get_att(payments.table, "Arn"))
        | allow(SQS_CONSUME, get_att(payments.capture_inbox.queue, "Arn")),
        inventory.committer: allow(("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"),
                                   get_att(inventory.table, "Arn"))
        | allow(SQS_CONSUME, get_att(inventory.commit_inbox.queue, "Arn")),
        orders.saga: allow(EVENT_STORE, get_att(orders.table, "Arn")),
        saga.starter: allow(("states:StartExecution",), ref(saga.state_machine))
        | allow(SQS_CONSUME, get_att(saga.inbox.queue, "Arn")),
        notifications.handler: allow(("dynamodb:PutItem",), get_att(notifications.table, "Arn"))
        | allow(IDEMPOTENCY, get_att(orders.idempotency_table, "Arn"))
        | allow(("ses:SendEmail",), identity_arn(stack))
        | allow(SQS_CONSUME, get_att(notifications.inbox.queue, "Arn")),
    }


@pytest.mark.parametrize(
    "function", ["inventory.api", "inventory.saga", "inventory.committer", "payments.api", "payments.saga",
                 "payments.capturer", "orders.saga", "saga.starter", "notifications.handler"],
)
def test_each_function_may_only_use_its_own_resources(
    stack: OrderflowStack, resources: Resources, function: str
) -> None:
    service, name = function.split(".")
    target: PythonFunction = getattr(getattr(stack, service), name)
    assert grants(resources, lid(target.role)) == own(target) | expected_grants(stack)[target]


def test_no_function_reaches_another_services_table(stack: OrderflowStack, resources: Resources) -> None:
    tables = {
        stack.orders.table: "orders", stack.inventory.table: "inventory", stack.payments.table: "payments",
        stack.notifications.table: "notifications", stack.projections.table: "projections",
    }
    owners = {
        "orders": [stack.orders.api, stack.orders.saga, stack.snapshots.orders],
        "inventory": [stack.inventory.api, stack.inventory.saga, stack.inventory.committer],
        "payments": [stack.payments.api, stack.payments.saga, stack.payments.capturer, stack.snapshots.payments],
        "notifications": [stack.notifications.handler],
        "projections": [stack.projections.projector, stack.projections.query],
    }
    for table, service in tables.items():
        arn = key(get_att(table, "Arn"))
        with_data_access = {
            role
            for role in granted_roles(resources)
            if any(resource == arn for _, resource in grants(resources, role))
        }
        assert with_data_access == {lid(function.role) for function in owners[service]}, service


# ---------------------------------------------------------------------------------------------- alarms


def test_alarm_topic_is_encrypted_and_tls_only(stack: OrderflowStack, template: Template, resources: Resources) -> None:
    alarms = stack.alarms
    assert resources[lid(alarms.topic)]["Properties"]["KmsMasterKeyId"] == get_att(alarms.key, "Arn")
    key_props = resources[lid(alarms.key)]["Properties"]
    assert key_props["EnableKeyRotation"] is True
    assert {
        "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
        "Effect": "Allow",
        "Principal": {"Service": "cloudwatch.amazonaws.com"},
        "Resource": "*",
    } in key_props["KeyPolicy"]["Statement"]
    template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "Topics": [ref(alarms.topic)],
            "PolicyDocument": {
                "Statement": [
                    Match.object_like({"Effect": "Deny", "Action": "sns:Publish", "Principal": "*",
                                       "Condition": {"Bool": {"aws:SecureTransport": "false"}}}),
                    Match.object_like({"Effect": "Allow", "Action": "sns:Publish",
                                       "Principal": {"Service": "cloudwatch.amazonaws.com"},
                                       "Resource": ref(alarms.topic)}),
                ]
            },
        },
    )


def test_alarms_watch_the_saga_and_every_dead_letter_queue(stack: OrderflowStack, resources: Resources) -> None:
    # the saga's and the queues' alarms (tests/infra/test_alarms.py checks every alarm)
    alarms = {
        logical_id: alarm for logical_id, alarm in of_type(resources, "AWS::CloudWatch::Alarm").items()
        if alarm["Properties"].get("Namespace") in ("AWS/States", "AWS/SQS")
    }
    watched = set()
    for logical_id, alarm in alarms.items():
        props = alarm["Properties"]
        assert props["AlarmActions"] == [ref(stack.alarms.topic)], logical_id
        assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold" and props["Threshold"] == 1
        assert props["EvaluationPeriods"] == 1 and props["TreatMissingData"] == "notBreaching"
        [dimension] = props["Dimensions"]
        watched.add((props["Namespace"], props["MetricName"], props["Statistic"], key(dimension["Value"])))
    machine = key(ref(stack.saga.state_machine))
    queues = (stack.relay.failure_queue, stack.saga.inbox.dlq, stack.notifications.inbox.dlq,
              stack.projections.inbox.dlq, stack.snapshots.failure_queue, stack.payments.capture_inbox.dlq,
              stack.inventory.commit_inbox.dlq)
    assert watched == {
        ("AWS/States", "ExecutionsFailed", "Sum", machine),
        ("AWS/States", "ExecutionsTimedOut", "Sum", machine),
        ("AWS/States", "ExecutionsAborted", "Sum", machine),
        *(
            ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum", key(get_att(queue, "QueueName")))
            for queue in queues
        ),
    }
    assert len(alarms) == len(watched)
