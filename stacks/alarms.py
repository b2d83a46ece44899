"""Operational alarms, all notifying one SNS topic that operators subscribe to (its ARN is a stack output).

What is alarmed. Most of it is found by walking the stack when it is synthesized (an aspect, after every
construct exists), so a queue or function added later is covered without anyone remembering its alarm:

- any message in a dead-letter queue or an on-failure destination: every queue named as one by a queue's
  redrive policy, an EventBridge rule target, an event source mapping, a function or its async config; and
  every queue that no function reads (nothing would ever take a message out of it);
- every Lambda function's Errors and Throttles;
- the IteratorAge of every function fed by a stream event source mapping (relay, snapshotters);
- every REST API's 5XXError;
- every state machine's failed, timed-out and aborted executions.

The stack adds what cannot be found: the order saga with the functions its tasks invoke (their typed business
errors, OutOfStock or PaymentDeclined, are Lambda errors too, so theirs is an error-rate alarm) and the orders
service's ``CompensationsFailed`` metric. Something given explicitly keeps its own id and runbook line; the walk
covers everything else with a generic one. Every description says what happened and what to do first.

Missing data is "not breaching" everywhere: a quiet system is a healthy one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jsii
from aws_cdk import AspectPriority, Aspects, Duration, IAspect, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct, IConstruct

from stacks.lambda_defaults import COMMON_ENVIRONMENT

PERIOD = Duration.minutes(5)
CLOUDWATCH = iam.ServicePrincipal("cloudwatch.amazonaws.com")
# Where the functions' Powertools metrics go (POWERTOOLS_METRICS_NAMESPACE of every function).
METRICS_NAMESPACE = COMMON_ENVIRONMENT["POWERTOOLS_METRICS_NAMESPACE"]

# A stream consumer this far behind its stream, minute after minute for ITERATOR_AGE_MINUTES, is stuck (a batch
# failing and retrying) or too slow: its batching window is 1-10 s, so a healthy one is seconds behind.
ITERATOR_AGE_THRESHOLD = Duration.minutes(1)
ITERATOR_AGE_MINUTES = 5
# A saga task function's error rate (%) that is more than business as usual, held for ERROR_RATE_PERIODS periods
# of at least ERROR_RATE_MIN_INVOCATIONS invocations each.
TASK_ERROR_RATE_PERCENT = 50
ERROR_RATE_PERIODS = 3
ERROR_RATE_MIN_INVOCATIONS = 10

_RUNBOOK_DLQ = (
    "Runbook: read the messages (aws sqs receive-message; an EventBridge delivery failure carries ERROR_CODE and "
    "ERROR_MESSAGE attributes), fix the cause, then move them back (aws sqs start-message-move-task). Consumers "
    "deduplicate by event id, so a redrive is safe."
)
_RUNBOOK_ON_FAILURE = (
    "Runbook: each message names the stream shard and the sequence-number range Lambda gave up on. The events "
    "themselves are still in their table (event items never expire); find the cause in the function's log "
    "(level ERROR), fix it, then publish those events again (consumers deduplicate by event id)."
)
_RUNBOOK_LOGS = (
    "Runbook: CloudWatch Logs Insights on the function's log group, filter level = \"ERROR\"; each line's "
    "correlation_id is the order id, and `orderflow trace <orderId>` shows where that order stands."
)


@dataclass
class DeadEnd:
    """A queue whose messages nothing processes: ``what`` says whose failures (or which leftovers) it holds."""

    queue: sqs.Queue
    what: str
    runbook: str


@dataclass
class Operated:
    """What the stack runs that operators watch, found by walking a scope (``discover``)."""

    functions: list[lambda_.Function] = field(default_factory=list)
    stream_consumers: list[lambda_.Function] = field(default_factory=list)
    dead_ends: list[DeadEnd] = field(default_factory=list)
    rest_apis: list[apigw.RestApiBase] = field(default_factory=list)
    state_machines: list[sfn.StateMachine] = field(default_factory=list)


def readable(construct: IConstruct) -> str:
    """``Orders/Api`` for ``Orderflow/Orders/Api/Function``: its path in the stack, without L2 plumbing."""
    stack_path = Stack.of(construct).node.path
    parts = construct.node.path.removeprefix(stack_path).strip("/").split("/")
    while len(parts) > 1 and parts[-1] in ("Function", "Resource", "Default", "StateMachine"):
        parts.pop()
    return "/".join(parts)


def alarm_name_part(construct: IConstruct) -> str:
    """``OrdersApi`` for ``Orders/Api``: a construct id part made of the readable path."""
    return re.sub(r"[^A-Za-z0-9]", "", readable(construct))


def _dead_letter_arns(value: Any) -> Iterator[Any]:
    """The ARNs a resolved L1 property names as a dead-letter or on-failure destination, at any depth."""
    if isinstance(value, list):
        for item in value:
            yield from _dead_letter_arns(item)
    elif isinstance(value, dict):
        for key, inner in value.items():
            if key == "deadLetterTargetArn":  # SQS and SNS redrive policies
                yield inner
            elif key == "deadLetterConfig" and isinstance(inner, dict):  # rule targets (arn), functions (targetArn)
                yield from (inner[k] for k in ("arn", "targetArn") if k in inner)
            elif key == "onFailure" and isinstance(inner, dict) and "destination" in inner:  # mappings, async config
                yield inner["destination"]
            else:
                yield from _dead_letter_arns(inner)


def _key(stack: Stack, value: Any) -> str:
    return json.dumps(stack.resolve(value), sort_keys=True)


def discover(scope: Construct) -> Operated:
    """Walk ``scope`` and return what it runs: functions, stream consumers, dead ends, REST APIs, state machines."""
    stack = Stack.of(scope)
    everything = scope.node.find_all()
    queues = {_key(stack, c.queue_arn): c for c in everything if isinstance(c, sqs.Queue)}
    functions = [c for c in everything if isinstance(c, lambda_.Function)]
    by_name = {_key(stack, f.function_name): f for f in functions}
    by_arn = {_key(stack, f.function_arn): f for f in functions}

    def function_of(name_or_arn: Any) -> lambda_.Function | None:
        key = _key(stack, name_or_arn)
        return by_name.get(key) or by_arn.get(key)

    found = Operated(functions=functions)
    dead: dict[str, DeadEnd] = {}
    read: set[str] = set()
    for c in everything:
        if isinstance(c, lambda_.CfnEventSourceMapping):
            consumer = function_of(c.function_name)
            read.add(_key(stack, c.event_source_arn))
            if c.starting_position is not None and consumer is not None and consumer not in found.stream_consumers:
                found.stream_consumers.append(consumer)  # a stream (DynamoDB, Kinesis): it has an iterator age
            whose = f"the on-failure destination of {readable(consumer) if consumer else readable(c)}'s event source mapping"
            references = [(arn, whose, _RUNBOOK_ON_FAILURE) for arn in _dead_letter_arns(stack.resolve(c.destination_config))]
        elif isinstance(c, sqs.CfnQueue):
            source = f"the dead-letter queue of {readable(c)}"
            references = [(arn, source, _RUNBOOK_DLQ) for arn in _dead_letter_arns(stack.resolve(c.redrive_policy))]
        elif isinstance(c, sns.CfnSubscription):
            source = f"the dead-letter queue of the SNS subscription {readable(c)}"
            references = [(arn, source, _RUNBOOK_DLQ) for arn in _dead_letter_arns(stack.resolve(c.redrive_policy))]
        elif isinstance(c, events.CfnRule):
            source = f"the dead-letter queue of the targets of the EventBridge rule {readable(c)}"
            references = [(arn, source, _RUNBOOK_DLQ) for arn in _dead_letter_arns(stack.resolve(c.targets))]
        elif isinstance(c, lambda_.CfnFunction):
            source = f"the dead-letter queue of {readable(c)}'s asynchronous invocations"
            references = [(arn, source, _RUNBOOK_DLQ) for arn in _dead_letter_arns(stack.resolve(c.dead_letter_config))]
        elif isinstance(c, lambda_.CfnEventInvokeConfig):
            source = f"the on-failure destination of {readable(c)}'s asynchronous invocations"
            references = [(arn, source, _RUNBOOK_DLQ) for arn in _dead_letter_arns(stack.resolve(c.destination_config))]
        else:
            continue
        for arn, what, runbook in references:
            queue = queues.get(json.dumps(arn, sort_keys=True))
            if queue is not None and queue.node.path not in dead:
                dead[queue.node.path] = DeadEnd(queue, what, runbook)
    for key, queue in queues.items():
        if key not in read and queue.node.path not in dead:
            dead[queue.node.path] = DeadEnd(queue, "a queue that no function reads", _RUNBOOK_DLQ)
    found.dead_ends = [dead[path] for path in sorted(dead)]
    found.rest_apis = [c for c in everything if isinstance(c, apigw.RestApiBase)]
    found.state_machines = [c for c in everything if isinstance(c, sfn.StateMachine)]
    return found


@jsii.implements(IAspect)
class _CoverWhatIsLeft:
    """Calls ``Alarms.cover_the_rest`` once, when synthesis visits the ``Alarms`` construct (all constructs exist)."""

    def __init__(self, alarms: Alarms) -> None:
        self._alarms = alarms

    def visit(self, node: IConstruct) -> None:
        if node.node.path == self._alarms.node.path:
            self._alarms.cover_the_rest()


class Alarms(Construct):
    """``Topic`` (SSE with its own ``TopicKey``, TLS only); one ``cloudwatch.Alarm`` per watched thing, as a child
    of this construct (ids: the ``add_*`` methods' ids, or the readable path of what is watched plus the metric).
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
        self.alarms: list[cloudwatch.Alarm] = []
        self._covered: set[tuple[str, str]] = set()  # (construct path, what is watched on it)
        self._named_queues: dict[str, tuple[str, sqs.IQueue, str]] = {}  # path -> (alarm id, queue, what)
        self._task_functions: set[str] = set()
        self._done = False
        Aspects.of(self).add(_CoverWhatIsLeft(self), priority=AspectPriority.MUTATING)

    # ------------------------------------------------------------------ given by the stack
    def add_state_machine(
        self, id: str, state_machine: sfn.StateMachine, *, tasks: Iterable[lambda_.IFunction] = ()
    ) -> list[cloudwatch.Alarm]:
        """``<id>ExecutionsFailed``, ``<id>ExecutionsTimedOut``, ``<id>ExecutionsAborted``: any one in 5 minutes.

        ``tasks``: the functions its tasks invoke. They raise typed business errors the state machine catches, so
        their Errors alarm watches the error rate instead of any error.
        """
        self._task_functions.update(function.node.path for function in tasks)
        self._covered.add((state_machine.node.path, "executions"))
        metrics = {
            "ExecutionsFailed": state_machine.metric_failed,
            "ExecutionsTimedOut": state_machine.metric_timed_out,
            "ExecutionsAborted": state_machine.metric_aborted,
        }
        return [
            self._alarm(
                f"{id}{name}",
                metric(period=PERIOD, statistic=cloudwatch.Stats.SUM),
                f"{id}: an execution ended {name.removeprefix('Executions')}; its order may need attention. Runbook: "
                "the execution is named by the order id; `orderflow trace <orderId>` shows the steps and the "
                "error, the order's status says whether it is NEEDS_ATTENTION.",
            )
            for name, metric in metrics.items()
        ]

    def add_queue_not_empty(self, id: str, queue: sqs.IQueue, what: str) -> None:
        """``<id>``: a message is visible in ``queue`` (a DLQ or an on-failure queue: nothing should be there).

        ``what`` opens the description; the runbook that follows fits the queue's role (a DLQ is redriven, an
        on-failure queue of a stream only names records), so the alarm is made in ``cover_the_rest``.
        """
        self._named_queues[queue.node.path] = (id, queue, what)

    def add_compensation_failures(self, *, service: str) -> cloudwatch.Alarm:
        """``CompensationsFailed``: any count of ``service``'s CompensationsFailed metric in 5 minutes."""
        return self._alarm(
            "CompensationsFailed",
            service_metric("CompensationsFailed", service, "Sum"),
            "A saga compensation (void, release or cancel) still failed after its retries: the order is "
            "NEEDS_ATTENTION and its execution failed with CompensationFailed. Runbook: `orderflow trace <orderId>` "
            "(the execution's name) shows which step failed and why; finish that compensation by hand (void the "
            "hold, release the reservation), then cancel the order.",
        )

    # ------------------------------------------------------------------ found by walking the stack
    def cover_the_rest(self) -> None:
        """Alarm on everything ``discover`` finds in the stack that no ``add_*`` call covered (runs once)."""
        if self._done:
            return
        self._done = True
        found = discover(Stack.of(self))
        dead_ends = {dead_end.queue.node.path: dead_end for dead_end in found.dead_ends}
        for path, (id, queue, what) in self._named_queues.items():  # given, whether or not the walk found them
            dead_end = dead_ends.get(path)
            self._queue_alarm(id, queue, f"{what}. {dead_end.runbook if dead_end else _RUNBOOK_DLQ}")
        for path, dead_end in dead_ends.items():
            if path not in self._named_queues:
                self._queue_alarm(
                    f"{alarm_name_part(dead_end.queue)}NotEmpty",
                    dead_end.queue,
                    f"A message is waiting in {readable(dead_end.queue)}, {dead_end.what}: something was not "
                    f"processed. {dead_end.runbook}",
                )
        for function in found.functions:
            self._function_alarms(function)
        for function in found.stream_consumers:
            self._iterator_age_alarm(function)
        for api in found.rest_apis:
            if (api.node.path, "5xx") not in self._covered:
                self._covered.add((api.node.path, "5xx"))
                self._alarm(
                    f"{alarm_name_part(api)}5xx",
                    api.metric_server_error(period=PERIOD, statistic=cloudwatch.Stats.SUM),
                    f"{readable(api)} answered 5xx. Every API function maps domain errors to 4xx, so a 5xx is a "
                    "defect, a function error or timeout, or an outage. Runbook: the stage's access log has the "
                    "requestId and status; the function's log line with that request id has the error. Clients "
                    "may retry with the same Idempotency-Key safely.",
                )
        for state_machine in found.state_machines:
            if (state_machine.node.path, "executions") not in self._covered:
                self.add_state_machine(alarm_name_part(state_machine), state_machine)

    def _function_alarms(self, function: lambda_.Function) -> None:
        path = function.node.path
        name, where = alarm_name_part(function), readable(function)
        if (path, "errors") not in self._covered:
            self._covered.add((path, "errors"))
            if path in self._task_functions:
                errors = function.metric_errors(period=PERIOD, statistic=cloudwatch.Stats.SUM)
                invocations = function.metric_invocations(period=PERIOD, statistic=cloudwatch.Stats.SUM)
                rate = cloudwatch.MathExpression(
                    expression=f"IF(invocations >= {ERROR_RATE_MIN_INVOCATIONS}, 100 * errors / invocations, 0)",
                    using_metrics={"errors": errors, "invocations": invocations},
                    label=f"{where} error rate (%)",
                    period=PERIOD,
                )
                self._alarm(
                    f"{name}ErrorRate",
                    rate,
                    f"Over {TASK_ERROR_RATE_PERCENT}% of the invocations of {where} (a saga task) failed for "
                    f"{ERROR_RATE_PERIODS * 5} minutes. Its typed business errors (OutOfStock, PaymentDeclined...) "
                    "are caught by the saga and count here too, but not at this rate. " + _RUNBOOK_LOGS,
                    threshold=TASK_ERROR_RATE_PERCENT,
                    evaluation_periods=ERROR_RATE_PERIODS,
                )
            else:
                self._alarm(
                    f"{name}Errors",
                    function.metric_errors(period=PERIOD, statistic=cloudwatch.Stats.SUM),
                    f"{where} failed an invocation (an unhandled error or a timeout: handled failures are "
                    "partial batch failures or 4xx answers, not errors). " + _RUNBOOK_LOGS,
                )
        if (path, "throttles") not in self._covered:
            self._covered.add((path, "throttles"))
            self._alarm(
                f"{name}Throttles",
                function.metric_throttles(period=PERIOD, statistic=cloudwatch.Stats.SUM),
                f"{where} was throttled: the account's concurrency (or the function's reserved concurrency) ran "
                "out. Queues and streams retry by themselves; API callers got an error. Runbook: compare "
                "ConcurrentExecutions per function, find the one that surged, raise the account quota or cap the "
                "noisy function with reserved concurrency.",
            )

    def _queue_alarm(self, id: str, queue: sqs.IQueue, description: str) -> None:
        self._alarm(
            id,
            queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic=cloudwatch.Stats.MAXIMUM),
            description,
        )

    def _iterator_age_alarm(self, function: lambda_.Function) -> None:
        if (function.node.path, "iterator age") in self._covered:
            return
        self._covered.add((function.node.path, "iterator age"))
        where = readable(function)
        self._alarm(
            f"{alarm_name_part(function)}IteratorAge",
            function.metric("IteratorAge", period=Duration.minutes(1), statistic=cloudwatch.Stats.MAXIMUM),
            f"{where} has been more than {int(ITERATOR_AGE_THRESHOLD.to_seconds())} s behind its DynamoDB stream "
            f"for {ITERATOR_AGE_MINUTES} minutes: what it does for each committed event (publish, snapshot) is "
            "late. Runbook: look at its Errors and its log for a batch that keeps failing (it is retried 10 times, "
            "bisected, then sent to the on-failure queue); records older than a day leave the stream, so act "
            "before then.",
            threshold=ITERATOR_AGE_THRESHOLD.to_milliseconds(),
            evaluation_periods=ITERATOR_AGE_MINUTES,
        )

    def _alarm(
        self,
        id: str,
        metric: cloudwatch.IMetric,
        description: str,
        *,
        threshold: float = 1,
        evaluation_periods: int = 1,
    ) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            id,
            metric=metric,
            alarm_description=description,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            threshold=threshold,
            evaluation_periods=evaluation_periods,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(self._action)
        self.alarms.append(alarm)
        return alarm


def service_metric(name: str, service: str, statistic: str, *, period: Duration = PERIOD, **dimensions: str) -> cloudwatch.Metric:
    """A metric a function emits with Powertools Metrics: namespace ``METRICS_NAMESPACE``, dimension ``service``."""
    return cloudwatch.Metric(
        namespace=METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={"service": service, **dimensions},
        statistic=statistic,
        period=period,
    )
