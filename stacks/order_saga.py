"""The order saga: the Step Functions state machine of statemachines/order_saga.asl.json and what starts it.

OrderPlaced on the bus -> rule -> inbox queue -> starter function -> StartExecution named by the order id.
After the pivot (ConfirmOrder) the saga is done: payments capture and inventory commits on OrderConfirmed, each
from its own inbox (stacks/payments_service.py, stacks/inventory_service.py).

Standard (the default) or Express (``-c workflow=express``): the same definition. Express is at-least-once and
does not deduplicate executions by name; every step is idempotent on (order id, step) and the order aggregate
decides confirm-or-cancel atomically, so a second execution of the same order changes nothing.
The definition is kept inline in the template (``DefinitionBody.from_string``, not ``from_file``, which
uploads it as an S3 asset): the offline runtime executes the very definition the template holds.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.event_inbox import EventInbox
from stacks.lambda_defaults import LOG_RETENTION, PythonFunction

DEFINITION_FILE = Path(__file__).resolve().parent.parent / "statemachines" / "order_saga.asl.json"
WORKFLOW_TYPES = {"standard": sfn.StateMachineType.STANDARD, "express": sfn.StateMachineType.EXPRESS}
# What the execution log keeps. A Standard execution has its full history in Step Functions (GetExecutionHistory,
# 90 days), so its log keeps the errors only; an Express execution has no history at all, so its log keeps every
# event with its data: it is the only record (offline/trace.py reads it). ALL with data is about 10 KB per
# execution of the happy path, which CloudWatch Logs bills per GB ingested.
LOG_LEVELS = {"standard": sfn.LogLevel.ERROR, "express": sfn.LogLevel.ALL}
ORDERS_SOURCE = "orderflow.orders"


class OrderSaga(Construct):
    """``StateMachine`` (its ``Role`` is made by CDK), ``Logs`` (its execution log group), ``Starter`` (the
    function that starts executions), ``Inbox`` (OrderPlaced -> queue with DLQ -> ``Starter``).

    ``participants`` maps the definition's substitution names (``${InventorySagaFunction}``...) to the
    functions the tasks invoke; the state machine may invoke exactly those.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        workflow: str,
        bus: events.IEventBus,
        participants: dict[str, lambda_.IFunction],
    ) -> None:
        super().__init__(scope, id)
        if workflow not in WORKFLOW_TYPES:
            raise ValueError(f"workflow must be one of {sorted(WORKFLOW_TYPES)}, not {workflow!r}")

        # Step Functions writes through CloudWatch Logs' vended-log delivery; under /aws/vendedlogs/ it does
        # not add every log group to the account's one CloudWatch Logs resource policy (a 5,120-character
        # limit that fills up after a few dozen log-enabled resources). The name is the stack's, so unique.
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/aws/vendedlogs/states/{Stack.of(self).stack_name}-{id}",
            retention=LOG_RETENTION,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            comment="orderflow order saga: reserve, authorize, confirm (the pivot); on failure cancel, void, "
            "release",
            state_machine_type=WORKFLOW_TYPES[workflow],
            definition_body=sfn.DefinitionBody.from_string(DEFINITION_FILE.read_text()),
            definition_substitutions={name: function.function_arn for name, function in participants.items()},
            logs=sfn.LogOptions(destination=self.log_group, level=LOG_LEVELS[workflow], include_execution_data=True),
            tracing_enabled=True,
        )
        if LOG_LEVELS[workflow] is not sfn.LogLevel.ALL:
            Validations.of(self.state_machine).acknowledge(
                Acknowledgment(
                    id="AwsSolutions-SF1",
                    reason=(
                        "A Standard workflow keeps every event of every execution in Step Functions itself "
                        "(GetExecutionHistory, 90 days after it closes; the order trace reads it there), so its "
                        "CloudWatch log keeps the errors only (level ERROR, with execution data). Logging ALL would "
                        "copy the history into CloudWatch Logs at about 10 KB per order. The Express profile, which "
                        "has no history, logs ALL."
                    ),
                )
            )
        # The tasks invoke the unqualified ARNs, so no version/alias wildcard (grant_invoke would add "<arn>:*").
        self.state_machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"],
                resources=[function.function_arn for function in participants.values()],
            )
        )
        Validations.of(self.state_machine.role.node.find_child("DefaultPolicy")).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason=(
                    "What CDK adds for logging and tracing, on this state machine's role only: the CloudWatch "
                    "Logs vended-log delivery actions (logs:CreateLogDelivery, GetLogDelivery, "
                    "UpdateLogDelivery, DeleteLogDelivery, ListLogDeliveries, PutResourcePolicy, "
                    "DescribeResourcePolicies, DescribeLogGroups) and X-Ray's PutTraceSegments, "
                    "PutTelemetryRecords, GetSamplingRules and GetSamplingTargets support no resource-level "
                    "permissions (IAM service authorization reference; Step Functions logging guide). "
                    "tests/infra pins every '*' statement to these actions."
                ),
            )
        )

        self.starter = PythonFunction(
            self,
            "Starter",
            handler="orders.starter.handler",
            description="Order saga starter: OrderPlaced (SQS batches) -> StartExecution named by the order id",
            memory_size=256,
            timeout=Duration.seconds(30),
            environment={"ORDER_SAGA_ARN": self.state_machine.state_machine_arn},
        )
        self.state_machine.grant_start_execution(self.starter.function)
        self.inbox = EventInbox(
            self,
            "Inbox",
            bus=bus,
            source=ORDERS_SOURCE,
            detail_types=("OrderPlaced",),
            consumer=self.starter,
            description="OrderPlaced to the order saga starter's inbox",
        )
