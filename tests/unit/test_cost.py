"""The unit math of the cost model: DynamoDB item sizes and request units, chunking, billing rounding, pricing.

Numbers come from AWS's documented rules (DynamoDB item sizes and formats; read/write capacity consumption;
SQS and EventBridge 64 KB chunks; Lambda 1 ms and Express 100 ms / 64 MB billing), written out by hand.
"""

from __future__ import annotations

import base64
import json
import math
from collections import Counter

import pytest

from benchmarks import cost
from offline.metering import (
    IndexSpec,
    Usage,
    _execution_log_lines,
    _transitions,
    _trigger_of,
    attribute_value_size,
    chunks,
    eventbridge_entry_size,
    express_billed,
    index_writes,
    item_size,
    lambda_billed,
    number_size,
    read_units,
    sqs_message_size,
    write_units,
)

# ------------------------------------------------------------------------------------------ item sizes


@pytest.mark.parametrize(("text", "size"), [
    ("0", 2), ("7", 2), ("12", 2), ("123", 3), ("12.50", 3), ("-12.5", 3), ("1000000", 2), ("0.0001", 2),
    ("123456789", 6), ("1E+3", 2),
])
def test_a_number_takes_a_byte_per_two_significant_digits_plus_one(text: str, size: int) -> None:
    assert number_size(text) == size


def test_attribute_sizes_follow_dynamodb_rules() -> None:
    assert attribute_value_size({"S": "héllo"}) == 6  # UTF-8 bytes
    assert attribute_value_size({"B": base64.b64encode(b"\x01\x02\x03").decode()}) == 3  # raw bytes, not base64
    assert attribute_value_size({"B": b"\x01\x02\x03\x04"}) == 4
    assert attribute_value_size({"BOOL": True}) == 1
    assert attribute_value_size({"NULL": True}) == 1
    assert attribute_value_size({"SS": ["ab", "c"]}) == 3
    assert attribute_value_size({"NS": ["1", "12345"]}) == 2 + 4
    # List/Map: 3 bytes, plus 1 byte per element (and the element's name inside a map).
    assert attribute_value_size({"L": []}) == 3
    assert attribute_value_size({"L": [{"S": "a"}, {"N": "1"}]}) == 3 + (1 + 1) + (1 + 2)
    assert attribute_value_size({"M": {"ab": {"S": "xyz"}}}) == 3 + 1 + 2 + 3
    nested = {"M": {"lines": {"L": [{"M": {"sku": {"S": "SKU-1"}, "q": {"N": "2"}}}]}}}
    inner = 3 + (1 + 3 + 5) + (1 + 1 + 2)
    assert attribute_value_size(nested) == 3 + 1 + 5 + (3 + 1 + inner)
    with pytest.raises(ValueError, match="unknown"):
        attribute_value_size({"X": 1})


def test_an_item_is_its_names_plus_its_values() -> None:
    item = {"pk": {"S": "order#1"}, "total": {"N": "25.00"}, "ok": {"BOOL": False}}
    assert item_size(item) == (2 + 7) + (5 + 2) + (2 + 1)
    assert item_size(None) == 0
    assert item_size({}) == 0


# ------------------------------------------------------------------------------------------ request units


@pytest.mark.parametrize(("size", "transactional", "units"), [
    (0, False, 1), (1, False, 1), (1024, False, 1), (1025, False, 2), (3000, False, 3),
    (500, True, 2), (3000, True, 6),
])
def test_writes_are_billed_per_started_kilobyte_twice_in_a_transaction(size: int, transactional: bool,
                                                                       units: int) -> None:
    assert write_units(size, transactional=transactional) == units


@pytest.mark.parametrize(("size", "consistent", "transactional", "units"), [
    (0, False, False, 0.5), (0, True, False, 1.0), (4096, True, False, 1.0), (4097, True, False, 2.0),
    (8192, False, False, 1.0), (3500, True, True, 2.0), (8192, False, True, 4.0),
])
def test_reads_are_billed_per_started_4kb_half_when_eventually_consistent(size: int, consistent: bool,
                                                                          transactional: bool, units: float) -> None:
    assert read_units(size, consistent=consistent, transactional=transactional) == units


GSI = IndexSpec(name="byOwner", keys=("owner", "at"), table_keys=("pk",), projection="KEYS_ONLY")
GSI_ALL = IndexSpec(name="byOwnerAll", keys=("owner",), table_keys=("pk",), projection="ALL")
GSI_INCLUDE = IndexSpec(name="byOwnerTotal", keys=("owner",), table_keys=("pk",), projection="INCLUDE",
                        non_key_attributes=("total",))


def _item(**attributes: str) -> dict[str, dict[str, str]]:
    return {name: {"S": value} for name, value in attributes.items()}


def test_index_writes_an_item_that_enters_leaves_or_moves() -> None:
    old = _item(pk="1", owner="ann", at="t1", note="x" * 100)
    moved = _item(pk="1", owner="bob", at="t1", note="x" * 100)
    keys_only_size = item_size(_item(pk="1", owner="ann", at="t1"))
    assert index_writes(None, old, GSI) == [keys_only_size]  # added: one put
    assert index_writes(old, None, GSI) == [keys_only_size]  # deleted: one delete
    assert index_writes(old, moved, GSI) == [keys_only_size, keys_only_size]  # key changed: delete + put
    assert index_writes(_item(pk="1"), _item(pk="1", note="y"), GSI) == []  # never indexed (no key)
    assert index_writes(old, {**old, "owner": {"S": "ann"}}, GSI) == []  # nothing the index holds changed


def test_index_writes_a_changed_projection_once_and_ignores_what_it_does_not_project() -> None:
    before = _item(pk="1", owner="ann", total="10", note="a")
    after_total = _item(pk="1", owner="ann", total="12", note="a")
    after_note = _item(pk="1", owner="ann", total="10", note="b")
    assert index_writes(before, after_total, GSI_ALL) == [max(item_size(before), item_size(after_total))]
    assert index_writes(before, after_note, GSI_ALL) == [item_size(after_note)]
    assert index_writes(before, after_total, GSI_INCLUDE) == [item_size(_item(pk="1", owner="ann", total="12"))]
    assert index_writes(before, after_note, GSI_INCLUDE) == []  # note is not projected
    assert GSI_INCLUDE.entry(before) == _item(pk="1", owner="ann", total="10")


# ------------------------------------------------------------------------------------------ chunks, billing


@pytest.mark.parametrize(("size", "billed"), [(0, 1), (1, 1), (65536, 1), (65537, 2), (256 * 1024, 4)])
def test_sqs_and_eventbridge_bill_per_started_64kb_chunk(size: int, billed: int) -> None:
    assert chunks(size) == billed


def test_payload_sizes_of_a_putevents_entry_and_an_sqs_message() -> None:
    entry = {"Source": "orderflow.orders", "DetailType": "OrderPlaced", "Detail": '{"a":1}',
             "Resources": ["arn:x"], "EventBusName": "not counted"}
    assert eventbridge_entry_size(entry) == 16 + 11 + 7 + 5
    assert eventbridge_entry_size({**entry, "Time": "2026-11-26T00:00:00Z"}) == 16 + 11 + 7 + 5 + 14
    attributes = {"kind": {"DataType": "String", "StringValue": "abc"}}
    assert sqs_message_size("héllo", attributes) == 6 + (4 + 6 + 3)


def test_lambda_bills_per_started_millisecond_at_the_configured_memory() -> None:
    assert lambda_billed(0.0121, 256) == (13, pytest.approx(0.25 * 0.013))
    assert lambda_billed(0.0, 512) == (1, pytest.approx(0.5 * 0.001))
    assert lambda_billed(1.0, 1024) == (1000, pytest.approx(1.0))


def test_express_bills_per_started_100_ms_in_64_mb_chunks() -> None:
    assert express_billed(0.0) == (100, pytest.approx(64 / 1024 * 0.1))
    assert express_billed(0.25) == (300, pytest.approx(64 / 1024 * 0.3))
    assert express_billed(0.25, memory_mb=100) == (300, pytest.approx(128 / 1024 * 0.3))


def test_standard_transitions_count_each_state_entered_and_each_retry() -> None:
    history = [{"type": t} for t in (
        "ExecutionStarted", "TaskStateEntered", "TaskScheduled", "TaskFailed", "TaskScheduled", "TaskSucceeded",
        "TaskStateExited", "ChoiceStateEntered", "ChoiceStateExited", "TaskStateEntered", "LambdaFunctionScheduled",
        "LambdaFunctionSucceeded", "SucceedStateEntered", "ExecutionSucceeded")]
    assert _transitions(history) == (4 + 1, 1)


def test_execution_logs_follow_the_log_level_and_execution_data_setting() -> None:
    history = [
        {"id": 1, "previousEventId": 0, "type": "ExecutionStarted",
         "executionStartedEventDetails": {"input": '{"orderId":"x"}', "roleArn": "arn:role"}},
        {"id": 2, "previousEventId": 1, "type": "TaskFailed", "taskFailedEventDetails": {"error": "E", "cause": "c"}},
        {"id": 3, "previousEventId": 2, "type": "ExecutionFailed", "executionFailedEventDetails": {"error": "E"}},
    ]
    everything = list(_execution_log_lines("arn:exec", history, "ALL", True))
    assert len(everything) == 3 and '"input":' in everything[0]
    assert '"input":' not in next(iter(_execution_log_lines("arn:exec", history, "ALL", False)))
    assert [json.loads(line)["type"] for line in _execution_log_lines("arn:exec", history, "ERROR", True)] == [
        "TaskFailed", "ExecutionFailed"]
    assert [json.loads(line)["type"] for line in _execution_log_lines("arn:exec", history, "FATAL", True)] == [
        "ExecutionFailed"]
    assert list(_execution_log_lines("arn:exec", history, "OFF", True)) == []


def test_the_trigger_of_an_invocation_is_read_from_its_event() -> None:
    assert _trigger_of({"Records": [{"eventSource": "aws:dynamodb"}]}) == "dynamodb-stream"
    assert _trigger_of({"Records": [{"eventSource": "aws:sqs"}]}) == "sqs"
    assert _trigger_of({"requestContext": {}, "httpMethod": "GET"}) == "api"
    assert _trigger_of('{"action": "reserve"}') == "direct"
    assert _trigger_of("{}") == "direct"


# ------------------------------------------------------------------------------------------ pricing

PRICES = {"prices": {
    "dynamodb.write_request_unit": {"service": "DynamoDB", "item": "WRU", "unit": "WRU", "usd": 0.625e-6},
    "dynamodb.read_request_unit": {"service": "DynamoDB", "item": "RRU", "unit": "RRU", "usd": 0.125e-6},
    "ses.email": {"service": "SES", "item": "emails", "unit": "email", "usd": 0.0001},
    "logs.ingested_gb": {"service": "CloudWatch Logs", "item": "ingestion", "unit": "GB", "usd": 0.5},
    "xray.trace_recorded": {"service": "X-Ray", "item": "traces", "unit": "trace", "usd": 5e-6},
    "lambda.arm64.gb_second": {"service": "Lambda", "item": "compute", "unit": "GB-second", "usd": 1.33334e-5},
    "dynamodb.storage_gb_month": {"service": "DynamoDB", "item": "storage", "unit": "GB-month", "usd": 0.25},
}}


def test_usage_is_priced_per_million_orders_per_line_and_resource() -> None:
    usage = Usage(quantities={
        ("dynamodb.write_request_unit", "OrdersTable"): 10, ("dynamodb.write_request_unit", "Projections/byX"): 6,
        ("dynamodb.read_request_unit", "OrdersTable"): 3.5, ("ses.email", "ses"): 2,
        ("logs.ingested_gb", "lambda:Relay"): 2 / 1024**2, ("logs.ingested_gb", "stepfunctions:Saga"): 1 / 1024**2,
        ("xray.trace_roots", "lambda:Relay"): 40, ("dynamodb.storage_gb_month", "OrdersTable"): 1.0,
    })
    lines = {line.key: line for line in cost.price_usage(usage, 2, PRICES, xray_sampling=0.05)}
    assert lines["dynamodb.write_request_unit"].per_order == 8
    assert lines["dynamodb.write_request_unit"].usd_per_million == pytest.approx(8 * 0.625)
    assert lines["dynamodb.write_request_unit"].resources == pytest.approx(
        {"OrdersTable": 3.125, "Projections/byX": 1.875})
    assert lines["dynamodb.read_request_unit"].usd_per_million == pytest.approx(1.75 * 0.125)
    assert lines["ses.email"].usd_per_million == pytest.approx(100.0)
    assert lines["logs.ingested_gb:lambda"].usd_per_million == pytest.approx(0.5 / 1024**2 * 1e6)
    assert lines["logs.ingested_gb:stepfunctions"].usd_per_million == pytest.approx(0.25 / 1024**2 * 1e6)
    assert lines["xray.trace_recorded"].per_order == pytest.approx(40 * 0.05 / 2)
    assert "dynamodb.storage_gb_month" not in lines  # a monthly cost of what is kept, not a per-order one
    all_lines = list(lines.values())
    assert cost.total(all_lines) - cost.total(all_lines, exclude=["ses.email"]) == pytest.approx(100.0)


def test_lambda_compute_can_be_priced_on_cpu_time() -> None:
    usage = Usage(quantities={("lambda.arm64.gb_second", "Relay"): 2.0},
                  functions={"Relay": {"cpu_gb_seconds": 0.5}})
    wall = cost.price_usage(usage, 1, PRICES)[0]
    cpu = cost.price_usage(usage, 1, PRICES, lambda_duration="cpu")[0]
    assert wall.usd_per_million == pytest.approx(4 * cpu.usd_per_million)


def test_usage_without_a_price_is_an_error_not_a_zero() -> None:
    with pytest.raises(KeyError, match="sqs.request"):
        cost.price_usage(Usage(quantities={("sqs.request", "Q"): 1}), 1, PRICES)


def test_the_repository_price_table_prices_every_metered_key_with_a_source() -> None:
    prices = cost.load_prices()
    assert prices["region"] == "us-east-1" and prices["checked"]
    metered = {"apigateway.rest_request", "lambda.request", "lambda.arm64.gb_second", "lambda.x86_64.gb_second",
               "dynamodb.write_request_unit", "dynamodb.read_request_unit", "dynamodb.storage_gb_month",
               "eventbridge.custom_event", "eventbridge.archive_gb", "stepfunctions.standard_transition",
               "stepfunctions.express_request", "stepfunctions.express_gb_second", "sqs.request", "ses.email",
               "logs.ingested_gb", "xray.trace_recorded", "cloudwatch.custom_metric_month",
               "cloudwatch.alarm_month", "kms.key_month"}
    assert metered <= set(prices["prices"])
    for key, price in prices["prices"].items():
        assert price["source"].startswith("https://aws.amazon.com/"), key
        assert price["usd"] > 0, key
    # The figures the issue quotes, as checked.
    assert prices["prices"]["dynamodb.write_request_unit"]["usd"] * 1e6 == pytest.approx(0.625)
    assert prices["prices"]["stepfunctions.standard_transition"]["usd"] * 1e3 == pytest.approx(0.025)
    assert prices["prices"]["ses.email"]["usd"] * 1e3 == pytest.approx(0.10)


def test_usages_of_several_windows_add_up() -> None:
    first = Usage(quantities={("ses.email", "ses"): 1}, operations={("ses", "SendEmail", "N"): 1},
                  functions={"F": {"invocations": 2, "duration_ms": 10.0, "memory_mb": 256, "triggers": {"sqs": 2},
                                   "durations_ms": [4.0, 6.0]}},
                  custom_metrics={("ns", "m", ())}, facts={"executions": 1})
    second = Usage(quantities={("ses.email", "ses"): 2}, operations={("ses", "SendEmail", "N"): 2},
                   functions={"F": {"invocations": 1, "duration_ms": 30.0, "memory_mb": 256, "triggers": {"api": 1},
                                    "durations_ms": [30.0]}},
                   custom_metrics={("ns", "n", ())}, facts={"executions": 2})
    both = Usage.combine([first, second])
    assert both.quantities == {("ses.email", "ses"): 3}
    assert both.operations == {("ses", "SendEmail", "N"): 3}
    assert both.functions["F"]["invocations"] == 3 and both.functions["F"]["duration_ms"] == 40.0
    assert both.functions["F"]["triggers"] == {"sqs": 2, "api": 1}
    assert both.functions["F"]["p50_ms"] == 6.0 and both.functions["F"]["memory_mb"] == 256
    assert both.custom_metrics == {("ns", "m", ()), ("ns", "n", ())}
    assert both.facts == {"executions": 3}


# ------------------------------------------------------------------------------------------ workload


def test_the_workload_is_reproducible_and_has_the_configured_mix() -> None:
    mix = cost.Workload(orders=40, declined=0.1, out_of_stock=0.05, duplicates=0.1, seed=3)
    orders = cost.plan(mix)
    assert orders == cost.plan(mix)
    assert orders != cost.plan(cost.Workload(orders=40, declined=0.1, out_of_stock=0.05, duplicates=0.1, seed=4))
    kinds = Counter(order.kind for order in orders)
    assert kinds == {"ok": 34, "declined": 4, "out_of_stock": 2}
    assert sum(order.replay for order in orders) == 4
    assert all("-poor-" in o.customer for o in orders if o.kind == "declined")
    assert all("-rich-" in o.customer for o in orders if o.kind != "declined")
    assert all(o.lines[-1][0] == cost.EMPTY_PRODUCT[0] for o in orders if o.kind == "out_of_stock")
    assert all(o.lines[-1][0] != cost.EMPTY_PRODUCT[0] for o in orders if o.kind != "out_of_stock")
    assert len({order.key for order in orders}) == 40
    per_customer = Counter(order.customer for order in orders)
    assert max(per_customer.values()) <= mix.orders_per_customer
    happy = cost.plan(mix.happy())
    assert {order.kind for order in happy} == {"ok"} and not any(order.replay for order in happy)


def test_targets_are_printed_against_their_thresholds_with_and_without_ses() -> None:
    usage = Usage(quantities={("ses.email", "ses"): 10, ("dynamodb.write_request_unit", "T"): 100})
    result = cost.RunResult(profile="express", run="happy", workload=cost.Workload(orders=10), usage=usage,
                            outcomes={"ok:CONFIRMED": 10}, api_replays=0, redelivered_events=0, seconds=1.0)
    report = cost.profile_report("express", "t.json", {"happy": result}, cost.load_prices(), {"Resources": {}}, 0.05)
    targets = {target["target"].rsplit(", ", 1)[1]: target for target in report["targets"]}
    assert targets["including SES"]["value"] == pytest.approx(100 + 6.25)  # $0.10/1,000 emails, $0.625/1M WRU
    assert targets["including SES"]["verdict"] == "FAIL"
    assert targets["excluding SES"]["value"] == pytest.approx(6.25)
    assert targets["excluding SES"]["verdict"] == "PASS"
    assert targets["excluding SES"]["threshold"] == cost.TARGETS["express"] == 20.0
    assert cost.TARGETS["standard"] == 140.0


def test_fixed_monthly_costs_are_read_from_the_template() -> None:
    template = {"Resources": {
        "A": {"Type": "AWS::CloudWatch::Alarm"}, "B": {"Type": "AWS::CloudWatch::Alarm"},
        "K": {"Type": "AWS::KMS::Key"},
        "M1": {"Type": "AWS::ApiGateway::Method", "Properties": {"HttpMethod": "GET"}},
        "M2": {"Type": "AWS::ApiGateway::Method", "Properties": {"HttpMethod": "OPTIONS"}},
        "S": {"Type": "AWS::ApiGateway::Stage", "Properties": {"MethodSettings": [{"MetricsEnabled": True}]}},
        "E": {"Type": "AWS::Lambda::EventSourceMapping",
              "Properties": {"EventSourceArn": {"Fn::GetAtt": ["InboxQueue", "Arn"]}}},
        "InboxQueue": {"Type": "AWS::SQS::Queue"},
        "F": {"Type": "AWS::Lambda::EventSourceMapping",
              "Properties": {"EventSourceArn": {"Fn::GetAtt": ["Table", "StreamArn"]}}},
        "Table": {"Type": "AWS::DynamoDB::Table"},
    }}
    prices = cost.load_prices()
    usage = Usage(quantities={("dynamodb.storage_gb_month", "T"): 2e-6}, custom_metrics={("ns", "m", ())})
    items = {item["item"].split(" (")[0]: item for item in cost.fixed_monthly(template, [usage], prices,
                                                                                 {"happy": []}, {"happy": 2})}
    assert items["CloudWatch alarms"]["usd_per_month"] == pytest.approx(0.2)
    assert items["KMS customer managed keys"]["quantity"] == 1
    assert items["API Gateway detailed metrics"]["quantity"] == cost.APIGATEWAY_METRICS_PER_METHOD
    assert items["CloudWatch custom metrics from EMF"]["quantity"] == 1
    assert items["SQS idle long polls of Lambda's pollers"]["quantity"] == cost.SQS_IDLE_RECEIVES_PER_QUEUE_MONTH
    storage = next(item for key, item in items.items() if key.startswith("DynamoDB storage"))
    assert storage["quantity"] == pytest.approx(1.0) and math.isclose(storage["usd_per_month"], 0.25)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(SystemExit):
        cost.parse_args(["--template", "t", "--declined", "1.5"])
    with pytest.raises(SystemExit):
        cost.parse_args(["--template", "t", "--declined", "0.7", "--out-of-stock", "0.5"])
    with pytest.raises(SystemExit):
        cost.parse_args(["--template", "t", "--runs", "sad"])
    args = cost.parse_args(["--template", "t", "--runs", "mix"])
    assert args.runs == ["mix"] and args.orders == 100
