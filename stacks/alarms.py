"""Operational alarms, all notifying one SNS topic that operators subscribe to (its ARN is a stack output).

What is alarmed: a saga execution that failed (a compensation or a step after the pivot failed after its
retries: the order is NEEDS_ATTENTION), timed out or was aborted; and any message in a dead-letter queue or
the relay's on-failure queue (an event nobody handled). Missing data is "not breaching": quiet is fine.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

PERIOD = Duration.minutes(5)
CLOUDWATCH = iam.ServicePrincipal("cloudwatch.amazonaws.com")


class Alarms(Construct):
    """``Topic`` (SSE with its own ``TopicKey``, TLS only); one ``cloudwatch.Alarm`` per id passed to the
    ``add_*`` methods, as a child of this construct.
    """

    def __init__(self, scope: Construct, id: str) -> None:
        super().__init__(scope, id)
        # CloudWatch can publish to an encrypted topic only if the key lets it use the key, which the AWS managed
        # key alias/aws/sns never does: a customer managed key, rotated yearly, for this topic only.
        self.key = kms.Key(
            self,
            "TopicKey",
            description="Encrypts the orderflow alarm topic",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,  # encrypts only notifications in flight, nothing at rest
        )
        self.key.grant(CLOUDWATCH, "kms:Decrypt", "kms:GenerateDataKey*")
        self.topic = sns.Topic(self, "Topic", display_name="orderflow alarms", master_key=self.key, enforce_ssl=True)
        # A topic policy replaces SNS's default one (which lets the account publish): allow this account's
        # and region's alarms explicitly.
        stack = Stack.of(self)
        alarms_here = f"arn:{stack.partition}:cloudwatch:{stack.region}:{stack.account}:alarm:*"
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarms",
                principals=[CLOUDWATCH],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "ArnLike": {"aws:SourceArn": alarms_here},
                    "StringEquals": {"aws:SourceAccount": stack.account},
                },
            )
        )
        self._action = actions.SnsAction(self.topic)

    def add_state_machine(self, id: str, state_machine: sfn.StateMachine) -> list[cloudwatch.Alarm]:
        """``<id>ExecutionsFailed``, ``<id>ExecutionsTimedOut``, ``<id>ExecutionsAborted``: any one in 5 minutes."""
        metrics = {
            "ExecutionsFailed": state_machine.metric_failed,
            "ExecutionsTimedOut": state_machine.metric_timed_out,
            "ExecutionsAborted": state_machine.metric_aborted,
        }
        return [
            self._alarm(
                f"{id}{name}",
                metric(period=PERIOD, statistic=cloudwatch.Stats.SUM),
                f"{id}: an execution ended {name.removeprefix('Executions')}; its order may need attention",
            )
            for name, metric in metrics.items()
        ]

    def add_queue_not_empty(self, id: str, queue: sqs.IQueue, what: str) -> cloudwatch.Alarm:
        """``<id>``: a message is visible in ``queue`` (a DLQ or an on-failure queue: nothing should be there)."""
        return self._alarm(
            id,
            queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic=cloudwatch.Stats.MAXIMUM),
            f"{what}: inspect the messages, fix the cause, then redrive them",
        )

    def _alarm(self, id: str, metric: cloudwatch.IMetric, description: str) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            id,
            metric=metric,
            alarm_description=description,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            threshold=1,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(self._action)
        return alarm
