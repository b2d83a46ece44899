"""Powertools Metrics keeps one process-wide set of metrics; offline, every function gets its own, as on Lambda."""

from __future__ import annotations

import json
import threading
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

from offline.observe import Invocation, _current
from offline.patches import Patcher, isolate_powertools_metrics


def invocation(name: str) -> Invocation:
    return Invocation(function_name=name, function_arn=f"arn:{name}", handler="h.handler", memory_mb=128,
                      request_id=f"{name}-1")


def test_two_functions_flushing_at_once_publish_only_their_own_metrics(capsys: Any) -> None:
    patcher = Patcher()
    isolate_powertools_metrics(patcher)
    try:
        added, flush = threading.Barrier(2), threading.Barrier(2)

        def run(function: str, service: str, metric: str) -> None:
            token = _current.set(invocation(function))
            try:
                metrics = Metrics(service=service, namespace="Test")
                metrics.add_metric(name=metric, unit=MetricUnit.Count, value=1)
                added.wait()  # both functions hold a metric before either flushes
                flush.wait()
                metrics.flush_metrics()
            finally:
                _current.reset(token)

        threads = [threading.Thread(target=run, args=("fn-a", "orders", "OrdersConfirmed")),
                   threading.Thread(target=run, args=("fn-b", "relay", "EventsPublished"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        patcher.undo()
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    published = {(blob["service"], name) for blob in blobs
                 for directive in blob["_aws"]["CloudWatchMetrics"] for name in (m["Name"] for m in directive["Metrics"])}
    assert published == {("orders", "OrdersConfirmed"), ("relay", "EventsPublished")}
    assert Metrics._metrics == {} and isinstance(Metrics._metrics, dict)  # undone: Powertools' own dict again
