"""The order flow on one CloudWatch dashboard: what came in, how it ended, how long it took, what is stuck.

Rows, top to bottom:
1. Orders: placed, confirmed and cancelled; cancelled by reason (a SEARCH over the ``reason`` dimension, so a reason
   added later shows up without a change here); the saga's duration and outcomes.
2. The outbox relay: how far behind its streams it runs (IteratorAge) and how old an event is when it reaches
   the bus (``PublishLag``: publish time minus the event's own time), and events published or not.
3. What needs an operator: messages in every dead-letter and on-failure queue, Lambda errors and throttles of
   every function, the API's 5xx and 4xx, and the state of every alarm.

Row 3 is filled in when the stack is synthesized (an aspect, after the alarms' own walk), from the same
``discover`` walk the alarms use, so a queue or function added later appears without an edit here. Every
custom metric is one some function emits with Powertools Metrics (namespace POWERTOOLS_METRICS_NAMESPACE,
dimension ``service``); tests/e2e/test_observability.py checks that against a real run.
"""

from __future__ import annotations

import jsii
from aws_cdk import AspectPriority, Aspects, Duration, IAspect, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct, IConstruct

from stacks.alarms import METRICS_NAMESPACE, PERIOD, Alarms, discover, readable, service_metric

WIDTH = 24  # the dashboard grid is 24 columns wide
HEIGHT = 6
# Where each business metric comes from (the Powertools ``service`` of the emitting function).
ORDERS = "orders"
RELAY = "relay"
CANCELLED_BY_REASON = (
    f"SEARCH('{{{METRICS_NAMESPACE},reason,service}} MetricName=\"OrdersCancelled\" service=\"{ORDERS}\"', "
    f"'Sum', {int(PERIOD.to_seconds())})"
)


@jsii.implements(IAspect)
class _AddOperatorRow:
    def __init__(self, dashboard: OrderFlowDashboard) -> None:
        self._dashboard = dashboard

    def visit(self, node: IConstruct) -> None:
        if node.node.path == self._dashboard.node.path:
            self._dashboard.add_operator_row()


class OrderFlowDashboard(Construct):
    """``Dashboard``: one CloudWatch dashboard named after the stack."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        state_machine: sfn.IStateMachine,
        relay: lambda_.IFunction,
        alarms: Alarms,
    ) -> None:
        super().__init__(scope, id)
        self._alarms = alarms
        self._done = False
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{Stack.of(self).stack_name}-order-flow",
            default_interval=Duration.hours(3),
        )
        third = WIDTH // 3
        self.dashboard.add_widgets(
            cloudwatch.TextWidget(
                markdown=(
                    "## The order flow\n"
                    "An order is placed (orders API), its saga reserves, prices, authorizes, captures and confirms, "
                    "or cancels with a reason. Every committed event goes table stream → relay → bus. Alarms go to "
                    "the stack's AlarmTopicArn; each alarm's description is its runbook."
                ),
                width=WIDTH,
                height=2,
            )
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Orders placed, confirmed, cancelled (per 5 min)",
                left=[
                    service_metric("OrdersPlaced", ORDERS, "Sum").with_(label="placed"),
                    service_metric("OrdersConfirmed", ORDERS, "Sum").with_(label="confirmed"),
                    service_metric("OrdersCancelled", ORDERS, "Sum").with_(label="cancelled"),
                ],
                width=third,
                height=HEIGHT,
            ),
            cloudwatch.GraphWidget(
                title="Orders cancelled, by reason (per 5 min)",
                left=[cloudwatch.MathExpression(expression=CANCELLED_BY_REASON, label="", period=PERIOD)],
                stacked=True,
                width=third,
                height=HEIGHT,
            ),
            cloudwatch.GraphWidget(
                title="Saga outcomes (per 5 min)",
                left=[
                    state_machine.metric_succeeded(statistic="Sum", period=PERIOD, label="succeeded"),
                    state_machine.metric_failed(statistic="Sum", period=PERIOD, label="failed"),
                    state_machine.metric_timed_out(statistic="Sum", period=PERIOD, label="timed out"),
                    service_metric("CompensationsFailed", ORDERS, "Sum").with_(label="compensation failed"),
                ],
                width=third,
                height=HEIGHT,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Saga duration (ms)",
                left=[
                    state_machine.metric_time(statistic=stat, period=PERIOD, label=stat)
                    for stat in ("p50", "p99", "Maximum")
                ],
                width=third,
                height=HEIGHT,
            ),
            cloudwatch.GraphWidget(
                title="Relay lag (ms): behind the streams, and event time to bus",
                left=[
                    relay.metric("IteratorAge", statistic="Maximum", period=Duration.minutes(1), label="iterator age (max)"),
                    service_metric("PublishLag", RELAY, "p99", period=Duration.minutes(1)).with_(label="publish lag p99"),
                    service_metric("PublishLag", RELAY, "Maximum", period=Duration.minutes(1)).with_(
                        label="publish lag (max)"
                    ),
                ],
                width=third,
                height=HEIGHT,
            ),
            cloudwatch.GraphWidget(
                title="Events to the bus (per 5 min)",
                left=[
                    service_metric("EventsPublished", RELAY, "Sum").with_(label="published"),
                    service_metric("EventsNotPublished", RELAY, "Sum").with_(label="not published (retried)"),
                ],
                width=third,
                height=HEIGHT,
            ),
        )
        Aspects.of(self).add(_AddOperatorRow(self), priority=AspectPriority.MUTATING + 100)

    def add_operator_row(self) -> None:
        """Dead ends, errors, throttles, the API and the alarms: everything found in the stack (runs once)."""
        if self._done:
            return
        self._done = True
        found = discover(Stack.of(self))
        quarter = WIDTH // 4
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Messages waiting in dead-letter and on-failure queues",
                left=[
                    dead_end.queue.metric_approximate_number_of_messages_visible(
                        statistic="Maximum", period=PERIOD, label=readable(dead_end.queue)
                    )
                    for dead_end in found.dead_ends
                ],
                width=quarter,
                height=HEIGHT,
            ),
            cloudwatch.GraphWidget(
                title="Lambda errors (per 5 min)",
                left=[f.metric_errors(statistic="Sum", period=PERIOD, label=readable(f)) for f in found.functions],
                width=quarter,
                height=HEIGHT,
            ),
            cloudwatch.GraphWidget(
                title="Lambda throttles (per 5 min)",
                left=[f.metric_throttles(statistic="Sum", period=PERIOD, label=readable(f)) for f in found.functions],
                width=quarter,
                height=HEIGHT,
            ),
            cloudwatch.GraphWidget(
                title="API errors (per 5 min)",
                left=[
                    metric
                    for api in found.rest_apis
                    for metric in (
                        api.metric_server_error(statistic="Sum", period=PERIOD, label=f"{readable(api)} 5xx"),
                        api.metric_client_error(statistic="Sum", period=PERIOD, label=f"{readable(api)} 4xx"),
                    )
                ],
                width=quarter,
                height=HEIGHT,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(
                title="Alarms",
                alarms=list(self._alarms.alarms),
                width=WIDTH,
                height=HEIGHT,
            )
        )
