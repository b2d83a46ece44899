"""The "Orderflow" stack: one construct per capability, wired together."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from stacks.alarms import Alarms
from stacks.api import Api
from stacks.dashboard import OrderFlowDashboard
from stacks.event_bus import EventBus
from stacks.inventory_service import InventoryService
from stacks.notifications import Notifications
from stacks.order_saga import OrderSaga
from stacks.orders_service import OrdersService
from stacks.outbox_relay import OutboxRelay
from stacks.payments_service import PaymentsService
from stacks.projections import Projections
from stacks.snapshots import Snapshots

WORKFLOWS = ("standard", "express")
DEFAULT_SENDER_EMAIL = "orders@example.com"


class OrderflowStack(Stack):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        workflow: str = "standard",
        sender_email: str = DEFAULT_SENDER_EMAIL,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id, description="orderflow: event-driven orders on AWS serverless", **kwargs)
        if workflow not in WORKFLOWS:
            raise ValueError(f"workflow must be one of {WORKFLOWS}, not {workflow!r}")
        if sender_email.count("@") != 1 or sender_email.startswith("@") or sender_email.endswith("@"):
            raise ValueError(f"senderEmail must be an email address, not {sender_email!r}")
        self.workflow = workflow  # the order saga: a Standard or an Express state machine

        self.events = EventBus(self, "Events")
        self.orders = OrdersService(self, "Orders")
        self.inventory = InventoryService(self, "Inventory", bus=self.events.bus)
        self.payments = PaymentsService(self, "Payments", bus=self.events.bus)

        self.relay = OutboxRelay(self, "Relay", bus=self.events.bus)
        self.relay.add_source("Orders", self.orders.table)
        self.relay.add_source("Inventory", self.inventory.table, kinds=("outbox",))
        self.relay.add_source("Payments", self.payments.table)
        self.snapshots = Snapshots(self, "Snapshots", orders_table=self.orders.table, payments_table=self.payments.table)

        saga_tasks = {
            "InventorySagaFunction": self.inventory.saga.function,
            "PaymentsSagaFunction": self.payments.saga.function,
            "OrdersSagaFunction": self.orders.saga.function,
        }
        self.saga = OrderSaga(
            self,
            "OrderSaga",
            workflow=workflow,
            bus=self.events.bus,
            participants=saga_tasks,
        )
        self.notifications = Notifications(
            self,
            "Notifications",
            bus=self.events.bus,
            sender_email=sender_email,
            idempotency_table=self.orders.idempotency_table,
        )

        self.api = Api(self, "Api")
        self.api.add_routes(OrdersService.routes, self.orders.api.function)
        self.api.add_routes(InventoryService.routes, self.inventory.api.function)
        self.api.add_routes(PaymentsService.routes, self.payments.api.function)

        # The saga, the compensations and the failure queues' runbook lines are given here; every other queue that
        # holds failures, every function, stream consumer and API is found by Alarms itself (stacks/alarms.py).
        self.alarms = Alarms(self, "Alarms")
        self.alarms.add_state_machine("OrderSaga", self.saga.state_machine, tasks=saga_tasks.values())
        self.alarms.add_compensation_failures(service="orders")
        self.alarms.add_queue_not_empty(
            "RelayFailures", self.relay.failure_queue, "The outbox relay gave up on a batch of stream records"
        )
        self.alarms.add_queue_not_empty(
            "OrderSagaInboxDlq", self.saga.inbox.dlq, "An OrderPlaced event did not start its saga"
        )
        self.alarms.add_queue_not_empty(
            "NotificationsInboxDlq", self.notifications.inbox.dlq, "An order outcome was not notified"
        )
        self.alarms.add_queue_not_empty(
            "CaptureInboxDlq", self.payments.capture_inbox.dlq, "A confirmed order's payment was not captured"
        )
        self.alarms.add_queue_not_empty(
            "CommitInboxDlq", self.inventory.commit_inbox.dlq, "A confirmed order's stock was not committed"
        )
        self.projections = Projections(self, "Projections", bus=self.events.bus, api=self.api, alarms=self.alarms)
        self.alarms.add_queue_not_empty(
            "SnapshotterFailures", self.snapshots.failure_queue, "The snapshotter gave up on a batch of stream records"
        )
        self.dashboard = OrderFlowDashboard(
            self, "Dashboard", state_machine=self.saga.state_machine, relay=self.relay.handler.function, alarms=self.alarms
        )

        CfnOutput(self, "ApiUrl", value=self.api.url)
        CfnOutput(self, "EventBusName", value=self.events.bus.event_bus_name)
        CfnOutput(self, "OrdersTableName", value=self.orders.table.table_name)
        CfnOutput(self, "InventoryTableName", value=self.inventory.table.table_name)
        CfnOutput(self, "PaymentsTableName", value=self.payments.table.table_name)
        CfnOutput(self, "NotificationsTableName", value=self.notifications.table.table_name)
        CfnOutput(self, "OrderSagaArn", value=self.saga.state_machine.state_machine_arn)
        CfnOutput(self, "AlarmTopicArn", value=self.alarms.topic.topic_arn)
        CfnOutput(self, "UserPoolId", value=self.api.user_pool.user_pool_id)
        CfnOutput(self, "UserPoolClientId", value=self.api.user_pool_client.user_pool_client_id)
        CfnOutput(self, "RelayFailureQueueUrl", value=self.relay.failure_queue.queue_url)
