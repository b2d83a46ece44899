"""The one custom EventBridge bus every service publishes its integration events to, plus its archive."""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_events as events
from constructs import Construct

ARCHIVE_RETENTION = Duration.days(30)


class EventBus(Construct):
    """``Bus``: the custom bus (CDK generates its name; consumers get it wired, never typed).
    ``Archive``: every event on the bus for 30 days, so a consumer can be replayed after a bug fix.
    """

    def __init__(self, scope: Construct, id: str) -> None:
        super().__init__(scope, id)
        self.bus = events.EventBus(self, "Bus", description="orderflow integration events (CloudEvents in Detail)")
        # Created beside the bus (not bus.archive()) so the archive's logical id does not share the bus's prefix.
        self.archive = events.Archive(
            self,
            "Archive",
            source_event_bus=self.bus,
            # An archive needs a pattern; "this account" matches every event put on the bus.
            event_pattern=events.EventPattern(account=[Stack.of(self).account]),
            retention=ARCHIVE_RETENTION,
            description="All orderflow events, for replay",
        )
