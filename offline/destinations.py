"""Send a message to a destination ARN (SQS queue, SNS topic, Lambda function, EventBridge bus).

Used for event source mapping on-failure destinations, Lambda async destinations and dead-letter queues,
and EventBridge target dead-letter queues. Talks to moto's backends directly (no HTTP round trip).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Mapping
from typing import Any

from moto.utilities.arns import parse_arn

# Lambda async destinations of type "Lambda function" are invoked asynchronously: the runtime plugs its
# async invoker in here.
AsyncInvoke = Callable[[str, str], None]


def utc_timestamp(epoch: float | None = None, *, millis: bool = True) -> str:
    """``2024-05-01T12:00:00.123Z`` (or without the milliseconds)."""
    moment = (
        datetime.datetime.now(datetime.timezone.utc)
        if epoch is None
        else datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)
    )
    if millis:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def send(
    arn: str,
    body: str,
    *,
    invoke_async: AsyncInvoke,
    attributes: Mapping[str, str] | None = None,
    detail_type: str = "Lambda Function Invocation Result - Failure",
) -> None:
    """Deliver ``body`` to ``arn``; raises when the destination does not exist or the type is unsupported."""
    target = parse_arn(arn)
    if target.service == "sqs":
        from moto.sqs.models import sqs_backends

        message_attributes = {
            name: {"DataType": "Number" if _is_number(value) else "String", "StringValue": str(value)}
            for name, value in (attributes or {}).items()
        }
        sqs_backends[target.account][target.region].send_message(
            queue_name=target.resource_id, message_body=body, message_attributes=message_attributes or None
        )
    elif target.service == "sns":
        from moto.sns.models import sns_backends

        # moto keeps SNS attributes as {"Type": ..., "Value": ...} (the shape its responses layer produces)
        sns_attributes: dict[str, Any] = {
            name: {"Type": "String", "Value": str(value)} for name, value in (attributes or {}).items()
        }
        sns_backends[target.account][target.region].publish(
            message=body, arn=arn, message_attributes=sns_attributes or None
        )
    elif target.service == "lambda":
        invoke_async(arn, body)
    elif target.service == "events" and target.resource_type == "event-bus":
        from moto.events.models import events_backends

        events_backends[target.account][target.region].put_events(
            [{"Source": "lambda", "DetailType": detail_type, "Detail": body, "EventBusName": arn}]
        )
    else:
        raise ValueError(f"destination type not supported offline: {arn}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
