"""``orderflow rebuild-projections``: replay the order event store into a fresh order list and swap to it.

    python -m offline rebuild-projections --endpoint-url http://127.0.0.1:4566   # against make local
    python -m offline rebuild-projections --stack-name Orderflow                # a real account (your credentials)

The swap protocol (functions/projections/store.py has the layout). Summaries live under a generation (``g<N>#``);
one pointer item names the ``active`` generation, the one being ``building``, and a ``revision``:

1. Start: move the pointer (conditional on its revision) to ``building = B``, B = one past any generation in use
   (a generation left by a crashed rebuild is abandoned, never reused: the model is fresh).
2. Wait until every projector knows: the projector reads the pointer when an invocation starts and an invocation
   ends at its function's timeout, so once ``PROJECTOR_POINTER_MAX_AGE_SECONDS`` (and a margin for a write still in
   flight) have passed, every summary write folds its event into both A and B. Writes made meanwhile with the old
   pointer (A only) are of events already committed, which the replay reads.
3. Replay: every order in the event store, its events in version order, through the projector's own code
   (Projector.apply_to) into B; then the order's events after the last one replayed, again, until there are none.
   Events the projector folds into B meanwhile meet the same conditional writes: a duplicate is ignored, and one
   ahead of the replay is refused as a gap and delivered again later. So both writers converge on the event store:
   an event committed after the replay's last read of its order is delivered after step 2, so into B too.
   The pointer is read again after each order: another rebuild that took over stops this one at once.
4. Flip: the pointer (still at the revision of step 1) becomes ``active = B``.
5. Wait out the list's pointer cache (projections.store.LIST_POINTER_TTL_SECONDS) and the projectors' (the same
   bound as in step 2), then delete A and any abandoned generation. Until then a list request may still read A: a
   few seconds of a slightly stale page, never a hole; and no projector writes A once it is deleted.

This wait replaces a check of the pointer's revision in every summary write (a transaction: four write units per
event instead of one), which gave the same guarantee without waiting.

Race left, stated: a projector delivery that failed as a gap in B goes back to SQS; were the rebuild to take
longer than the inbox's redrive (5 receives x the visibility timeout), that delivery would land in the DLQ and
alarm; the rebuilt order is still right (the replay re-reads the order after its last write).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FUNCTIONS_DIR = Path(__file__).resolve().parents[1] / "functions"
# Beyond the bounds the functions keep (the list's pointer cache, the projector's timeout): for a write still in
# flight when a projector's invocation ends.
GRACE_MARGIN_SECONDS = 10.0


def _functions_code() -> None:
    """The projections code is the Lambda functions' code, imported as they import it (only when a rebuild runs)."""
    if str(FUNCTIONS_DIR) not in sys.path:
        sys.path.append(str(FUNCTIONS_DIR))


class RebuildError(RuntimeError):
    pass


@dataclass
class RebuildReport:
    previous: int
    generation: int
    orders: int = 0
    events: int = 0
    deleted: dict[int, int] = field(default_factory=dict)


def order_ids(client: Any, orders_table: str) -> Iterator[str]:
    """Every order in the event store: the aggregates whose first event is an order event (one scan)."""
    _functions_code()
    from orders.events import SOURCE as ORDERS_SOURCE
    from shared.event_store import from_dynamo, to_dynamo
    from shared.events import format_version
    from shared.records import EVENT_KIND

    scan: dict[str, Any] = {
        "TableName": orders_table,
        "FilterExpression": "sk = :first AND kind = :event AND #source = :orders",
        "ExpressionAttributeNames": {"#source": "source"},
        "ExpressionAttributeValues": to_dynamo({":first": format_version(1), ":event": EVENT_KIND,
                                                ":orders": ORDERS_SOURCE}),
        "ProjectionExpression": "pk",
    }
    while True:
        page = client.scan(**scan)
        for item in page.get("Items", []):
            yield from_dynamo(item)["pk"]
        if "LastEvaluatedKey" not in page:
            return
        scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def rebuild(
    *,
    client: Any,
    orders_table: str,
    projections_table: str,
    grace_seconds: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    say: Callable[[str], None] = lambda _: None,
) -> RebuildReport:
    """Replay ``orders_table`` into a fresh generation of ``projections_table`` and swap to it (see the module).
    ``grace_seconds`` (default: ``default_grace_seconds()``) is the wait after the start, before the replay, and
    the wait between the swap and the delete."""
    _functions_code()
    from projections.service import Projector
    from projections.store import PointerMoved, ProjectionStore
    from shared.event_store import DynamoDBEventStore

    store = ProjectionStore(projections_table, client)
    events = DynamoDBEventStore(orders_table, client)
    projector = Projector(store)

    # 1. a fresh generation, named by the pointer
    read = store.pointer()
    abandoned = read.building
    building = max(read.active, read.building or 0) + 1
    try:
        pointer = store.move_pointer(read, active=read.active, building=building)
    except PointerMoved:
        raise RebuildError("the pointer changed while the rebuild started (another rebuild?): run it again") from None
    report = RebuildReport(previous=read.active, generation=building)
    say(f"building generation {building} (active: {read.active}"
        + (f"; abandoning the unfinished generation {abandoned}" if abandoned else "") + ")")
    grace = default_grace_seconds() if grace_seconds is None else grace_seconds

    # 2. until every projector has read the pointer that names it
    say(f"waiting {grace:g} s until every projector writes generation {building} too")
    sleep(grace)

    # 3. replay every order into it, with the projector's own code
    for order_id in order_ids(client, orders_table):
        last = 0
        while True:
            tail = events.load(order_id, after_version=last)
            if not tail:
                break
            for envelope in tail:
                projector.apply_to(building, envelope)
                report.events += 1
            last = tail[-1].version
        report.orders += 1
        if store.pointer() != pointer:
            raise RebuildError(f"the pointer moved during the replay (another rebuild took over generation {building})")
    say(f"replayed {report.events} events of {report.orders} orders")

    # 4. flip
    try:
        store.move_pointer(pointer, active=building, building=None)
    except PointerMoved:
        raise RebuildError("the pointer moved before the flip (another rebuild took over): nothing swapped") from None
    say(f"generation {building} is active")

    # 5. let cached pointers expire, then drop the old generation (and an abandoned one)
    say(f"waiting {grace:g} s until no list reads and no projector writes generation {read.active}")
    sleep(grace)
    for old in sorted({read.active, abandoned} - {None, building}):
        report.deleted[old] = store.delete_generation(old)  # type: ignore[arg-type]
        say(f"deleted generation {old} ({report.deleted[old]} summaries)")
    return report


def default_grace_seconds() -> float:
    """How long after a pointer move every reader and writer of the projections has read it: the longest a list's
    cached pointer or a projector's is used (projections/store.py), and a margin."""
    _functions_code()
    from projections.store import LIST_POINTER_TTL_SECONDS, PROJECTOR_POINTER_MAX_AGE_SECONDS

    return max(LIST_POINTER_TTL_SECONDS, PROJECTOR_POINTER_MAX_AGE_SECONDS) + GRACE_MARGIN_SECONDS


# ---------------------------------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint-url", default=None,
                        help="AWS endpoint, e.g. http://127.0.0.1:4566 for make local (default: the real AWS)")
    parser.add_argument("--region", default=None, help="default: your AWS configuration's (us-east-1 locally)")
    parser.add_argument("--stack-name", default="Orderflow", help="the stack whose tables to use")
    parser.add_argument("--orders-table", default=None, help="the event store (default: found from the stack)")
    parser.add_argument("--projections-table", default=None, help="the read model (default: found from the stack)")
    parser.add_argument("--grace-seconds", type=float, default=None,
                        help="wait this long after the start before replaying, and after the swap before deleting "
                             "the old generation (default: the projector's timeout and a margin, 40 s); "
                             "less is safe only when no order events are being projected")


def _tables(session: Any, endpoint: str | None, stack: str) -> dict[str, str]:
    """Logical name (``OrdersTable``, ``ProjectionsTable``) -> physical name, from CloudFormation, or locally from
    the runtime's naming (``<stack>-<logical id without CDK's hash>``)."""
    from botocore.exceptions import ClientError

    from offline.deploy import readable_name

    try:
        resources = session.client("cloudformation", endpoint_url=endpoint).describe_stack_resources(StackName=stack)
        found = {readable_name(r["LogicalResourceId"]): r["PhysicalResourceId"]
                 for r in resources["StackResources"] if r["ResourceType"] == "AWS::DynamoDB::Table"}
        if found:
            return found
    except ClientError:  # no such stack here (make local deploys no CloudFormation stack): the runtime's names
        pass
    names = session.client("dynamodb", endpoint_url=endpoint).list_tables().get("TableNames", [])
    return {name.removeprefix(f"{stack}-"): name for name in names if name.startswith(f"{stack}-")}


def run(args: argparse.Namespace) -> int:
    import boto3

    session = boto3.Session(region_name=args.region or ("us-east-1" if args.endpoint_url else None))
    if args.endpoint_url and session.get_credentials() is None:
        session = boto3.Session(aws_access_key_id="local", aws_secret_access_key="local",
                                region_name=session.region_name)
    orders, projections = args.orders_table, args.projections_table
    if orders is None or projections is None:
        found = _tables(session, args.endpoint_url, args.stack_name)
        orders = orders or found.get("OrdersTable")
        projections = projections or found.get("ProjectionsTable")
        if orders is None or projections is None:
            print(f"cannot find the orders and projections tables of stack {args.stack_name}: "
                  "give --orders-table and --projections-table", file=sys.stderr)
            return 2
    print(f"rebuilding {projections} from {orders}")
    try:
        report = rebuild(client=session.client("dynamodb", endpoint_url=args.endpoint_url), orders_table=orders,
                         projections_table=projections, grace_seconds=args.grace_seconds,
                         say=lambda line: print(f"  {line}", flush=True))
    except RebuildError as error:
        print(f"rebuild failed: {error}", file=sys.stderr)
        return 1
    print(f"done: generation {report.generation} replaced {report.previous} "
          f"({report.orders} orders, {report.events} events)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="orderflow rebuild-projections", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
