"""What the handlers load at cold start: only what they use (benchmarks/bench_cold_start.py measures the time).

- Every Powertools ``Tracer`` patches only ``TRACED_LIBRARIES`` (botocore): its default patches every library the
  X-Ray SDK supports, importing requests, httplib, sqlite3 and the database drivers' hooks for nothing.
- The list query (projections.api) reads summaries only: it must not load the order events and their models,
  which only the projector folds.
- No API function uses Powertools idempotency, so none loads it (shared/rest.py maps no idempotency error).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from orders.domain import OrderStatus
from projections.summary import STATUSES

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"


def tracer_calls() -> list[tuple[str, ast.Call]]:
    calls = []
    for path in sorted(FUNCTIONS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Tracer":
                calls.append((f"{path.relative_to(FUNCTIONS)}:{node.lineno}", node))
    return calls


def test_every_tracer_patches_only_the_traced_libraries() -> None:
    calls = tracer_calls()
    assert len(calls) >= 10  # every handler module has one: the scan found them
    for where, call in calls:
        patch = {k.arg: k.value for k in call.keywords}.get("patch_modules")
        assert isinstance(patch, ast.Name) and patch.id == "TRACED_LIBRARIES", where


def loaded_by(modules: list[str], **environment: str) -> set[str]:
    """The modules a fresh interpreter holds after importing ``modules`` (functions/ on the path, like Lambda)."""
    script = f"import importlib, json, sys\nfor m in {modules!r}: importlib.import_module(m)\nprint(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(FUNCTIONS), **environment}
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=FUNCTIONS, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


IDEMPOTENCY = "aws_lambda_powertools.utilities.idempotency"


def test_the_list_query_loads_no_order_events_and_no_idempotency() -> None:
    loaded = loaded_by(["projections.api"], PROJECTIONS_TABLE="projections")
    assert "projections.summary" in loaded  # what it answers with
    assert not {m for m in loaded if m == "orders" or m.startswith(("orders.", "projections.views", IDEMPOTENCY))}


def test_no_other_api_function_loads_powertools_idempotency() -> None:
    apis = ["orders.api", "payments.api", "inventory.api"]  # one interpreter for the three: a cold start each is slow
    loaded = loaded_by(apis, ORDERS_TABLE="orders", PAYMENTS_TABLE="payments", INVENTORY_TABLE="inventory")
    assert set(apis) <= loaded
    assert not {m for m in loaded if m.startswith(IDEMPOTENCY)}


def test_the_summary_statuses_are_the_order_statuses() -> None:
    # The list filters by these; they are the order aggregate's, kept apart so the query does not import it.
    assert set(STATUSES) == {status.value for status in OrderStatus}
