"""Two test-only consumers of every orderflow event, added to a copy of the template by test_duplicates.py to show
that the duplicates harness covers a consumer it was never told about, and that it fails when a consumer is not
idempotent. Both count deliveries per CloudEvents id in TALLY_TABLE:

* ``naive`` adds 1 per delivery (what a consumer that forgets duplicates does): its counts grow under chaos;
* ``careful`` records each event id once (a conditional put): its items are the same however often it is fed.
"""

from __future__ import annotations

import json
import os
from typing import Any

import boto3


def _event_ids(event: dict[str, Any]) -> list[str]:
    return [json.loads(record["body"])["detail"]["id"] for record in event.get("Records", [])]


def naive(event: dict[str, Any], context: Any) -> dict[str, Any]:
    client = boto3.client("dynamodb")
    for event_id in _event_ids(event):
        client.update_item(TableName=os.environ["TALLY_TABLE"], Key={"pk": {"S": f"naive#{event_id}"}},
                           UpdateExpression="ADD deliveries :one", ExpressionAttributeValues={":one": {"N": "1"}})
    return {"batchItemFailures": []}


def careful(event: dict[str, Any], context: Any) -> dict[str, Any]:
    client = boto3.client("dynamodb")
    for event_id in _event_ids(event):
        try:
            client.put_item(TableName=os.environ["TALLY_TABLE"],
                            Item={"pk": {"S": f"careful#{event_id}"}, "deliveries": {"N": "1"}},
                            ConditionExpression="attribute_not_exists(pk)")
        except client.exceptions.ConditionalCheckFailedException:
            pass  # seen before: a duplicate
    return {"batchItemFailures": []}
