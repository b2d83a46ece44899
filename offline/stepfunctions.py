"""Step Functions under moto: instant Wait states and Retry intervals (``fast``), and running executions.

moto executes ASL (``mock_aws(config={"stepfunctions": {"execute_state_machine": True}})``) in background
threads; Wait states and Retry intervals really sleep.
"""

from __future__ import annotations

import types
from typing import Any

from offline.patches import Patcher


def make_fast(patcher: Patcher) -> None:
    """Wait states end at once and Retry intervals do not sleep (the retries themselves still happen)."""
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction

    def no_wait(self: Any, env: Any, wait_seconds: int) -> None:
        return None

    patcher.patch(WaitFunction, "_wait_interval", no_wait)
    # retrier_decl calls time.sleep(interval) through its module-level ``time``: give it one that does not sleep.
    patcher.patch(retrier_decl, "time", types.SimpleNamespace(sleep=lambda seconds: None))


def running_executions(account_id: str, region: str) -> list[Any]:
    from moto.stepfunctions.parser.api import ExecutionStatus
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    backend = stepfunctions_parser_backends[account_id][region]
    return list(backend._get_executions(ExecutionStatus.RUNNING))
