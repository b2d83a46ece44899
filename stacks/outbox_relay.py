"""The outbox relay: DynamoDB streams of outbox tables -> one Lambda -> the event bus.

One relay function serves every table whose stream is an outbox: call ``add_source`` per table. Each source
gets the same event source mapping settings, and its failures land in the same on-failure queue.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Acknowledgment, Duration, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.lambda_defaults import PythonFunction

# Event source mapping settings, the same for every source table.
BATCH_SIZE = 100
MAX_BATCHING_WINDOW = Duration.seconds(1)
RETRY_ATTEMPTS = 10
MAX_RECORD_AGE = Duration.days(1)
PARALLELIZATION_FACTOR = 1  # > 1 would publish one aggregate's events out of order
FAILURE_RETENTION = Duration.days(14)
# What Lambda's stream poller needs on each source stream (plus ListStreams, see _stream_discovery).
STREAM_READ_ACTIONS = ("dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator")


def outbox_filter(kinds: Sequence[str]) -> dict[str, object]:
    """Only INSERTs of outbox items: TTL expiries (REMOVE) and other item kinds never reach the function."""
    return {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"kind": {"S": list(kinds)}}}}


def on_failure_queue(scope: Construct, whose: str) -> sqs.Queue:
    """``OnFailureQueue``: the on-failure destination of stream event source mappings (SSE, TLS only, 14 days).

    It is itself a dead-letter queue, so cdk-nag's SQS3 and Serverless-SQSRedrivePolicy (a DLQ for the queue) are
    acknowledged with ``whose`` failures it holds and why a DLQ behind it would only hide them.
    """
    queue = sqs.Queue(
        scope,
        "OnFailureQueue",
        retention_period=FAILURE_RETENTION,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
    )
    reason = f"This queue is itself the dead-letter destination (DestinationConfig.OnFailure) of {whose}"
    Validations.of(queue.node.default_child).acknowledge(  # type: ignore[arg-type]
        Acknowledgment(id="AwsSolutions-SQS3", reason=reason),
        Acknowledgment(id="Serverless-SQSRedrivePolicy", reason=reason),
    )
    return queue


def stream_mapping(
    scope: Construct,
    id: str,
    function: lambda_.IFunction,
    table: dynamodb.ITable,
    *,
    kinds: Sequence[str],
    on_failure: lambda_.IEventSourceDlq,
    batch_size: int,
    max_batching_window: Duration,
) -> lambda_.EventSourceMapping:
    """A stream event source mapping with the settings every stream consumer here shares: INSERTs of the given
    item kinds only, bisect on error, a retry cap, a maximum record age, one shard poller per shard (order per
    aggregate kept), partial batch failures and an on-failure destination. Grants reading that stream only."""
    mapping = lambda_.EventSourceMapping(
        scope,
        id,
        target=function,
        event_source_arn=table.table_stream_arn,
        starting_position=lambda_.StartingPosition.TRIM_HORIZON,
        batch_size=batch_size,
        max_batching_window=max_batching_window,
        bisect_batch_on_error=True,
        retry_attempts=RETRY_ATTEMPTS,
        max_record_age=MAX_RECORD_AGE,
        parallelization_factor=PARALLELIZATION_FACTOR,
        report_batch_item_failures=True,
        filters=[lambda_.FilterCriteria.filter(outbox_filter(kinds))],
        on_failure=on_failure,  # grants sqs:SendMessage on the failure queue
    )
    table.grant_stream(function, *STREAM_READ_ACTIONS)  # that stream only, no table data access
    return mapping


def stream_discovery_policy(scope: Construct, role: iam.IRole | None) -> iam.Policy:
    """``StreamDiscovery``: dynamodb:ListStreams in a policy of its own, so its '*' is acknowledged for nothing
    else (reading a stream is granted per source table on that stream's ARN)."""
    policy = iam.Policy(
        scope,
        "StreamDiscovery",
        roles=[role] if role is not None else [],
        statements=[iam.PolicyStatement(actions=["dynamodb:ListStreams"], resources=["*"])],
    )
    Validations.of(policy).acknowledge(
        Acknowledgment(
            id="AwsSolutions-IAM5[Resource::*]",
            reason=(
                "dynamodb:ListStreams supports no resource-level permissions (IAM service authorization "
                "reference: DynamoDB) and is part of what Lambda's stream event source mapping needs (see "
                "AWSLambdaDynamoDBExecutionRole); it only lists stream ARNs, reading a stream is granted "
                "per source table on that stream's ARN."
            ),
        )
    )
    return policy


class OutboxRelay(Construct):
    """``Handler`` (the relay function), ``OnFailureQueue`` (on-failure destination), ``<id>Stream`` per source."""

    def __init__(self, scope: Construct, id: str, *, bus: events.IEventBus) -> None:
        super().__init__(scope, id)
        # Gets the metadata of batches Lambda gave up on (retries or record age exhausted); the records themselves
        # are read back from the stream by sequence number. SSE with SQS-managed keys, TLS only.
        self.failure_queue = on_failure_queue(
            self,
            "the relay's stream event source mappings; nothing consumes it automatically, so a DLQ behind it "
            "would only hide records an operator must inspect and redrive.",
        )

        self.handler = PythonFunction(
            self,
            "Handler",
            handler="relay.handler.handler",
            description="Outbox relay: stream INSERTs of event items -> EventBridge PutEvents",
            # A batch of 100 records is 10 PutEvents calls plus resends of failed entries.
            memory_size=256,
            timeout=Duration.seconds(60),
            environment={"EVENT_BUS_NAME": bus.event_bus_name},
        )
        bus.grant_put_events_to(self.handler.function)
        self._on_failure = sources.SqsDlq(self.failure_queue)

    def add_source(
        self, id: str, table: dynamodb.ITable, *, kinds: Sequence[str] = ("event",)
    ) -> lambda_.EventSourceMapping:
        """Relay INSERTs of items whose ``kind`` is in ``kinds`` from ``table``'s stream to the bus."""
        if table.table_stream_arn is None:
            raise ValueError(f"{table.node.path} has no stream to relay")
        mapping = stream_mapping(
            self,
            f"{id}Stream",
            self.handler.function,
            table,
            kinds=kinds,
            on_failure=self._on_failure,
            batch_size=BATCH_SIZE,
            max_batching_window=MAX_BATCHING_WINDOW,
        )
        mapping.node.add_dependency(self._stream_discovery())
        return mapping

    def _stream_discovery(self) -> iam.Policy:
        existing = self.node.try_find_child("StreamDiscovery")
        if existing is not None:
            return existing  # type: ignore[return-value]
        return stream_discovery_policy(self, self.handler.role)
