"""What both snapshotter functions share: Powertools, and handling one stream batch with logs and metrics.

Each service snapshots its own event store with a function of its own (snapshots.orders, snapshots.payments),
so no function reads another service's table. Snapshot intervals (events between two snapshots of one
aggregate) come from the environment, set in stacks/snapshots.py: ORDER_SNAPSHOT_INTERVAL and
ACCOUNT_SNAPSHOT_INTERVAL.

Logs: an aggregate is due once every ``interval`` events, so almost every record finds nothing to do; that
outcome (NOT_DUE) and the batch summary log at DEBUG. A snapshot written or superseded logs at INFO, one too
large, an ignored stored snapshot, skipped records and failures at WARNING or ERROR, each line with the
aggregate's correlation id (the order id on an order's path). The metrics are emitted whatever the level.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from shared.aws import TRACED_LIBRARIES
from shared.snapshots import Outcome

from .logic import Result, Source, snapshot_batch

logger = Logger(service="snapshots")
tracer = Tracer(service="snapshots", patch_modules=TRACED_LIBRARIES)
metrics = Metrics(service="snapshots")

_METRICS = {Outcome.WRITTEN: "SnapshotsWritten", Outcome.TOO_LARGE: "SnapshotsTooLarge"}


def _report(result: Result) -> None:
    touched = result.touched
    logger.set_correlation_id(touched.correlation_id)  # the order id on an order's path
    where = {"aggregate_id": touched.aggregate_id, "version": touched.version}
    if result.error is not None:
        metrics.add_metric(name="SnapshotsFailed", unit=MetricUnit.Count, value=1)
        logger.error("snapshot failed; Lambda retries from this aggregate", extra={**where, "error": repr(result.error)})
        return
    assert result.taken is not None
    taken = result.taken
    if taken.ignored:
        metrics.add_metric(name="SnapshotsIgnored", unit=MetricUnit.Count, value=1)
        logger.warning("stored snapshot ignored", extra={**where, "reason": taken.ignored})
    if taken.outcome in _METRICS:
        metrics.add_metric(name=_METRICS[taken.outcome], unit=MetricUnit.Count, value=1)
    log = {Outcome.TOO_LARGE: logger.warning, Outcome.NOT_DUE: logger.debug}.get(taken.outcome, logger.info)
    log("snapshot", extra={**where, "outcome": taken.outcome.value, "snapshot_version": taken.version})


def handle(event: dict[str, Any], sources: Mapping[str, Source]) -> dict[str, Any]:
    records = event.get("Records", [])
    batch = snapshot_batch(records, sources, on_result=_report)
    logger.set_correlation_id(None)
    if batch.skipped:
        logger.warning("records skipped: not event INSERTs of this function's table", extra={"skipped": batch.skipped})
    logger.debug("batch done", extra={"records": len(records), "aggregates": len(batch.results)})
    return batch.batch_item_failures()
