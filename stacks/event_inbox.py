"""An inbox of events from the bus for one consumer: rule -> SQS queue (with a DLQ) -> Lambda, partial batches.

The queue sits between the rule and the function so that a failing consumer retries from the queue at its own
pace, and what it cannot handle lands in the DLQ instead of being dropped by EventBridge's retries.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Acknowledgment, Duration, Validations
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.lambda_defaults import PythonFunction

MAX_RECEIVE_COUNT = 5  # a message the consumer failed 5 times goes to the DLQ
QUEUE_RETENTION = Duration.days(4)
DLQ_RETENTION = Duration.days(14)  # the SQS maximum: two weeks for an operator to look and redrive
# AWS's guidance for Lambda SQS sources: visibility timeout at least 6 x the function timeout, so a message
# is not received again while a throttled or retried invocation of the first receive still runs.
VISIBILITY_FACTOR = 6
BATCH_SIZE = 10
# EventBridge -> SQS fails only while the queue is unavailable, throttled or misconfigured: keep trying for a
# day (EventBridge's maximums), then the event goes to the DLQ with the error in its attributes.
TARGET_RETRY_ATTEMPTS = 185
TARGET_MAX_EVENT_AGE = Duration.days(1)


class EventInbox(Construct):
    """``Dlq``; ``Queue`` (SSE, TLS only, redrives to ``Dlq`` after 5 receives); ``Rule`` on the bus (events it
    cannot deliver go to ``Dlq`` too); ``Consumer``: the consumer's event source mapping (batches of 10,
    ReportBatchItemFailures), with permission to consume this queue only.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        bus: events.IEventBus,
        source: str,
        detail_types: Sequence[str],
        consumer: PythonFunction,
        description: str,
    ) -> None:
        super().__init__(scope, id)
        timeout = consumer.function.timeout or Duration.seconds(3)
        self.dlq = sqs.Queue(
            self,
            "Dlq",
            retention_period=DLQ_RETENTION,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )
        Validations.of(self.dlq.node.default_child).acknowledge(  # type: ignore[arg-type]
            Acknowledgment(
                id="Serverless-SQSRedrivePolicy",
                reason=(
                    "This queue is itself the dead-letter queue of the inbox queue and of the rule's target; a "
                    "message here is alarmed and waits 14 days for an operator to fix the cause and redrive it, a "
                    "queue behind it would only hide it."
                ),
            )
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            retention_period=QUEUE_RETENTION,
            visibility_timeout=Duration.seconds(timeout.to_seconds() * VISIBILITY_FACTOR),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dlq, max_receive_count=MAX_RECEIVE_COUNT),
        )
        # The target's own DLQ and retry policy; CDK adds the queue policies that let this rule (only) send.
        self.rule = events.Rule(
            self,
            "Rule",
            event_bus=bus,
            description=description,
            event_pattern=events.EventPattern(source=[source], detail_type=list(detail_types)),
            targets=[
                targets.SqsQueue(
                    self.queue,
                    dead_letter_queue=self.dlq,
                    retry_attempts=TARGET_RETRY_ATTEMPTS,
                    max_event_age=TARGET_MAX_EVENT_AGE,
                )
            ],
        )
        self.queue.grant_consume_messages(consumer.function)
        self.mapping = lambda_.EventSourceMapping(
            self,
            "Consumer",
            target=consumer.function,
            event_source_arn=self.queue.queue_arn,
            batch_size=BATCH_SIZE,
            report_batch_item_failures=True,
        )
        Validations.of(self.mapping).acknowledge(
            Acknowledgment(
                id="Serverless-LambdaEventSourceMappingDestination",
                reason=(
                    "Lambda takes an on-failure destination only on stream and Kafka event source mappings "
                    "(Kinesis, DynamoDB, MSK, self-managed Kafka); for an SQS source the failure path is the "
                    "queue's redrive policy: after 5 failed receives a message moves to this inbox's Dlq."
                ),
            )
        )
