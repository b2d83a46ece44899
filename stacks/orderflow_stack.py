"""The "Orderflow" stack: one construct per capability, wired together."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from stacks.api import Api
from stacks.event_bus import EventBus
from stacks.orders_service import OrdersService
from stacks.outbox_relay import OutboxRelay

WORKFLOWS = ("standard", "express")


class OrderflowStack(Stack):
    def __init__(self, scope: Construct, id: str, *, workflow: str = "standard", **kwargs: Any) -> None:
        super().__init__(scope, id, description="orderflow: event-driven orders on AWS serverless", **kwargs)
        if workflow not in WORKFLOWS:
            raise ValueError(f"workflow must be one of {WORKFLOWS}, not {workflow!r}")
        self.workflow = workflow  # Standard or Express order saga; used from the saga issue on

        self.events = EventBus(self, "Events")
        self.orders = OrdersService(self, "Orders")

        self.relay = OutboxRelay(self, "Relay", bus=self.events.bus)
        self.relay.add_source("Orders", self.orders.table)

        self.api = Api(self, "Api")
        self.api.add_routes(OrdersService.routes, self.orders.api.function)

        CfnOutput(self, "ApiUrl", value=self.api.url)
        CfnOutput(self, "EventBusName", value=self.events.bus.event_bus_name)
        CfnOutput(self, "OrdersTableName", value=self.orders.table.table_name)
        CfnOutput(self, "UserPoolId", value=self.api.user_pool.user_pool_id)
        CfnOutput(self, "UserPoolClientId", value=self.api.user_pool_client.user_pool_client_id)
        CfnOutput(self, "RelayFailureQueueUrl", value=self.relay.failure_queue.queue_url)
