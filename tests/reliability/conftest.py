"""Shared fixtures of the reliability suite (issue 5): the template, a shop driven through the API, and the checks
that say whether an order came out whole (terminal, every effect exactly once, nothing lost, nothing left over).

``Shop`` plays the operators and the customers: it stocks products, credits accounts and places orders through
the API, as a client that honours the Idempotency-Key contract (a 5xx, or a 409 from a lost concurrency race, is
retried with the same key). ``Shop.verify_order`` returns the violations it finds as sentences (an empty list is a
pass), so a sweep can report every broken case at once.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest

from offline.runtime import Runtime
# The e2e suite's template fixture and runtime lifecycle, shared rather than copied.
from tests.e2e.conftest import BusSpy, admin, customer, running, scan, template  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = ("CONFIRMED", "CANCELLED")
RETRIED_STATUSES = (409, 500, 502, 503, 504)


@pytest.fixture
def rt(template: dict[str, Any]) -> Iterator[Runtime]:  # noqa: F811 (the imported fixture)
    yield from running(template)


@pytest.fixture(scope="module")
def module_rt(template: dict[str, Any]) -> Iterator[Runtime]:  # noqa: F811 (the imported fixture)
    """One runtime for a whole test module: cases use fresh customers and products and settle in between."""
    yield from running(template)


@pytest.fixture(scope="module")
def shop(module_rt: Runtime) -> Shop:
    return Shop(module_rt)


# ====================================================================================== the shop
@dataclass
class Stage:
    """A fresh product and a fresh customer with money, so one case cannot disturb another's figures."""

    sku: str
    customer_id: str
    stock: int = 10
    price: str = "4.00"
    balance: str = "100.00"
    quantity: int = 2

    @property
    def total(self) -> Decimal:
        return Decimal(self.price) * self.quantity

    @property
    def email(self) -> str:
        return f"{self.customer_id}@example.com"


@dataclass
class Placed:
    stage: Stage
    order_id: str
    key: str
    attempts: int  # POST /orders requests the client sent


class Shop:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.spy = BusSpy(rt)
        self._staged: list[Stage] = []
        self._queues = {item.logical_id: item for item in rt.resources.values() if item.type == "AWS::SQS::Queue"}

    # ------------------------------------------------------------------ setting the stage (no faults)
    def stage(self, count: int = 1, **overrides: Any) -> list[Stage]:
        """``count`` fresh (product, customer) pairs, stocked and credited through the API, settled."""
        stages = [Stage(sku=f"SKU-{uuid.uuid4().hex[:10]}", customer_id=f"cust-{uuid.uuid4().hex[:10]}", **overrides)
                  for _ in range(count)]
        for stage in stages:
            self._call("PUT", f"/admin/products/{stage.sku}", admin(),
                       {"name": f"Product {stage.sku}", "price": stage.price, "stock": stage.stock}, (200, 201))
            self._call("POST", f"/admin/accounts/{stage.customer_id}/deposits",
                       {**admin(), "Idempotency-Key": uuid.uuid4().hex}, {"amount": stage.balance}, (200, 201))
        self.rt.settle()
        return stages

    def next_stage(self) -> Stage:
        """One staged pair, staging a few at a time (one settle for several cases)."""
        if not self._staged:
            self._staged = self.stage(8)
        return self._staged.pop()

    def _call(self, method: str, path: str, headers: dict[str, str], body: Any, expect: tuple[int, ...]) -> Any:
        response = self.rt.api.request(method, path, headers={**headers, "Content-Type": "application/json"},
                                       body=json.dumps(body) if body is not None else None)
        assert response.status in expect, f"{method} {path}: {response.status} {response.body}"
        return response.json()

    # ------------------------------------------------------------------ the customer
    def place(self, stage: Stage, *, key: str | None = None, max_attempts: int = 6) -> Placed:
        """POST /orders as a client that retries a 5xx or a 409 with the same Idempotency-Key (the contract).

        Before a retry the runtime settles, which is what waiting a moment does. The API keeps no idempotency
        record (the order id is derived from the caller and the key, and the append is conditional): a retry of a
        request whose invocation died finds the order it appended, or appends it. A 409 only means the request
        lost a concurrency race on the order's stream every time it tried; the same request again succeeds.
        """
        key = key or uuid.uuid4().hex
        body = {"items": [{"sku": stage.sku, "quantity": stage.quantity}]}
        headers = {**customer(stage.customer_id), "Content-Type": "application/json", "Idempotency-Key": key}
        for attempt in range(1, max_attempts + 1):
            response = self.rt.api.request("POST", "/orders", headers=headers, body=json.dumps(body))
            if response.status == 202:
                return Placed(stage, response.json()["orderId"], key, attempt)
            if response.status not in RETRIED_STATUSES:
                raise AssertionError(f"POST /orders answered {response.status}, which a client does not retry: "
                                     f"{response.body}")
            self.rt.settle()
        raise AssertionError(f"POST /orders still failing after {max_attempts} attempts: {response.status} "
                             f"{response.body}")

    def sqs_consumers(self) -> set[str]:
        """Names of the functions an SQS event source mapping invokes."""
        backend = self.rt.lambdas.backend
        arns = {m.function_arn for m in backend._event_source_mappings.values()
                if m.event_source_arn.split(":")[2] == "sqs"}
        return {backend.get_function(arn, None).function_name for arn in arns}

    def after_fault(self, invocation: Any) -> None:
        """What the time between a failed delivery and its redelivery does to the leases of the failed invocation.

        SQS gives a failed message back only after its visibility timeout, which AWS requires to be at least the
        function's timeout; by then any in-progress idempotency record the invocation left (its expiry is the
        invocation's deadline) has expired. Offline the poller redelivers at once, so the function's leases are
        expired here. Stream and Step Functions retries come sooner on AWS too: their leases are left alone.
        """
        if invocation.function_name in self.sqs_consumers():
            self.expire_in_progress(package=invocation.handler.split(".", 1)[0])

    def expire_in_progress(self, package: str | None = None) -> None:
        """Time passes for the idempotency records left in progress by a dead invocation (its redelivery waits
        out the function's timeout): their in-progress expiry moves to the past, nothing else changes. ``package``
        keeps to the records of that code (Powertools keys are ``<function>.<module>.<callable>#<hash>``)."""
        ddb = boto3.client("dynamodb")
        past = str(int(time.time() * 1000) - 1)
        for table in self.rt.resources.values():
            if table.type != "AWS::DynamoDB::Table" or "Idempotency" not in table.logical_id:
                continue
            for item in scan(table.name):
                key = item["id"].get("S", "")
                if package is not None and f".{package}." not in key and not key.startswith(f"{package}."):
                    continue
                if item.get("status", {}).get("S") == "INPROGRESS" and "in_progress_expiration" in item:
                    ddb.update_item(TableName=table.name, Key={"id": item["id"]},
                                    UpdateExpression="SET in_progress_expiration = :past",
                                    ExpressionAttributeValues={":past": {"N": past}})

    # ------------------------------------------------------------------ reading what happened
    def order(self, placed: Placed) -> dict[str, Any]:
        return self._call("GET", f"/orders/{placed.order_id}", customer(placed.stage.customer_id), None, (200,))

    def product(self, sku: str) -> dict[str, Any]:
        return self._call("GET", f"/admin/products/{sku}", admin(), None, (200,))

    def account(self, customer_id: str) -> dict[str, Any]:
        return self._call("GET", "/accounts/me", customer(customer_id), None, (200,))

    def listed(self, customer_id: str) -> list[dict[str, Any]]:
        return self._call("GET", "/orders", customer(customer_id), None, (200,))["orders"]

    def emails_to(self, address: str) -> list[Any]:
        from moto.ses.models import ses_backends

        backend = ses_backends[self.rt.account_id][self.rt.region]
        return [m for m in backend.sent_messages
                if address in (getattr(m, "destinations", None) or {}).get("ToAddresses", [])]

    def committed_events(self) -> list[dict[str, Any]]:
        """Every event and outbox item in every table (what the relay must publish), as plain dicts."""
        from boto3.dynamodb.types import TypeDeserializer

        deserializer = TypeDeserializer()
        items = []
        for item in self.rt.resources.values():
            if item.type != "AWS::DynamoDB::Table" or not getattr(item, "stream_arn", None):
                continue  # an outbox is a table with a stream
            for raw in scan(item.name):
                if raw.get("kind", {}).get("S") in ("event", "outbox") and "id" in raw and "type" in raw:
                    plain = {k: deserializer.deserialize(v) for k, v in raw.items()}
                    plain["table"] = item.logical_id
                    items.append(plain)
        return items

    def executions(self, order_id: str) -> list[dict[str, Any]] | None:
        """The executions named ``order_id`` of every Standard state machine (the saga names its execution by the
        order); None when there is no Standard state machine (an Express execution cannot be described)."""
        sfn = boto3.client("stepfunctions")
        found: list[dict[str, Any]] = []
        standard = False
        for item in self.rt.resources.values():
            if item.type != "AWS::StepFunctions::StateMachine":
                continue
            if sfn.describe_state_machine(stateMachineArn=item.arn).get("type", "STANDARD") != "STANDARD":
                continue
            standard = True
            arn = item.arn.replace(":stateMachine:", ":execution:") + f":{order_id}"
            try:
                found.append(sfn.describe_execution(executionArn=arn))
            except sfn.exceptions.ExecutionDoesNotExist:
                continue
        return found if standard else None

    def purge_queues(self) -> None:
        """Empty every queue of the template, so what one case left cannot be blamed on the next (received and
        deleted: SQS allows one PurgeQueue a minute per queue)."""
        for logical_id, depth in self.queue_depths().items():
            if depth:
                self.drain_queue(logical_id)

    def drain_queue(self, logical_id_prefix: str) -> list[dict[str, Any]]:
        """Receive and delete every message on the queue; their bodies (JSON when they are)."""
        sqs = boto3.client("sqs")
        url = self.rt.physical(logical_id_prefix).url
        bodies = []
        while True:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return bodies
            for message in messages:
                try:
                    bodies.append(json.loads(message["Body"]))
                except ValueError:
                    bodies.append({"raw": message["Body"]})
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    def queue_depths(self) -> dict[str, int]:
        """Messages (visible, in flight or delayed) on every queue of the template, by logical id."""
        sqs = boto3.client("sqs")
        depths = {}
        names = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                 "ApproximateNumberOfMessagesDelayed")
        for logical_id, queue in self._queues.items():
            attributes = sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=list(names))["Attributes"]
            depths[logical_id] = sum(int(attributes.get(name, 0)) for name in names)
        return depths

    # ------------------------------------------------------------------ the checks
    def verify_order(self, placed: Placed, *, allow_needs_attention: bool = False,
                     ignore_queues: tuple[str, ...] = ()) -> list[str]:
        """Everything that must hold once the runtime settled after one order; the violations found, as sentences.

        ``ignore_queues``: logical-id prefixes of queues a test expects messages on (a poison message's DLQ).
        """
        stage, order_id = placed.stage, placed.order_id
        problems: list[str] = []
        view = self.order(placed)
        status = view["status"]
        terminal = TERMINAL + (("NEEDS_ATTENTION",) if allow_needs_attention else ())
        if status not in terminal:
            problems.append(f"order {order_id} is {status} ({view.get('reason')}), not terminal")

        # Effects, exactly once: the stock, the money, the email.
        product = self.product(stage.sku)
        account = self.account(stage.customer_id)
        figures = (product["available"], product["reserved"], product["sold"])
        if status == "CONFIRMED":
            want = (stage.stock - stage.quantity, 0, stage.quantity)
            balance = Decimal(stage.balance) - stage.total
        else:
            want = (stage.stock, 0, 0)
            balance = Decimal(stage.balance)
        if status in TERMINAL and figures != want:
            problems.append(f"stock of {stage.sku} is available/reserved/sold={figures}, want {want} for a "
                            f"{status} order")
        if status in TERMINAL and (Decimal(account["balance"]), Decimal(account["held"])) != (balance, 0):
            problems.append(f"account {stage.customer_id} has balance {account['balance']} held {account['held']}, "
                            f"want {balance:.2f} held 0.00 for a {status} order")
        emails = self.emails_to(stage.email)
        if status in TERMINAL and len(emails) != 1:
            problems.append(f"{len(emails)} emails to {stage.email}, want exactly 1")
        elif emails and status.lower() not in str(getattr(emails[0], "subject", "")).lower():
            problems.append(f"the email says {getattr(emails[0], 'subject', '?')!r} but the order is {status}")

        # Every committed event reached the bus; no event of this order was committed twice.
        committed = self.committed_events()
        seen = {event["detail"].get("id") for event in self.spy.drain()}
        unpublished = [f"{e['type']} {e['id']} ({e['table']})" for e in committed if e["id"] not in seen]
        if unpublished:
            problems.append(f"committed but never on the bus: {', '.join(unpublished[:5])}")
        mine = Counter((e["table"], e["type"]) for e in committed if _concerns(e, order_id))
        doubled = sorted(f"{kind} x{n} ({table})" for (table, kind), n in mine.items() if n > 1)
        if doubled:
            problems.append(f"events of order {order_id} committed more than once: {', '.join(doubled)}")

        # One saga, finished; the read model agrees; nothing left on any queue.
        executions = self.executions(order_id)
        if executions is None:
            pass  # an Express saga: what it did is checked through its effects above
        elif len(executions) != 1:
            problems.append(f"{len(executions)} saga executions named {order_id}, want 1")
        elif executions[0]["status"] != "SUCCEEDED" and not (allow_needs_attention and status == "NEEDS_ATTENTION"):
            problems.append(f"saga execution {order_id} is {executions[0]['status']} "
                            f"({executions[0].get('error')}: {str(executions[0].get('cause'))[:200]})")
        listed = [o for o in self.listed(stage.customer_id) if o["orderId"] == order_id]
        if [o["status"] for o in listed] != [status]:
            problems.append(f"the order list shows {[o['status'] for o in listed]} for {order_id}, want [{status!r}]")
        left = {name: depth for name, depth in self.queue_depths().items()
                if depth and not name.startswith(ignore_queues)}
        if left:
            problems.append(f"messages left on queues: {left}")
        return problems


def _concerns(event: dict[str, Any], order_id: str) -> bool:
    if event.get("subject") == order_id or event.get("pk") == order_id:
        return True
    try:
        return json.loads(event.get("data") or "{}").get("order_id") == order_id
    except (TypeError, ValueError):
        return False
