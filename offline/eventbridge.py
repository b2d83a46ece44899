"""EventBridge rule targets with EventBridge's semantics.

moto's ``Rule.send_to_targets`` delivers only to SQS, logs, archives, buses and API destinations and raises
``NotImplementedError`` for Lambda and Step Functions targets, which also aborts delivery to the rules after it.
It also ignores ``Input``/``InputPath`` and drops ``account`` from the event. The replacement:

* builds the event exactly as EventBridge sends it (version, id, detail-type, source, account, time, region,
  resources, detail) and applies ``Input``, ``InputPath`` or ``InputTransformer`` per target;
* Lambda targets: an asynchronous invocation (queued, run by ``pump()``; function errors are then Lambda's
  business: its async retries, destinations and dead-letter queue);
* Step Functions targets: ``StartExecution`` with a generated name (as EventBridge does);
* SQS and SNS targets: sent at once through moto's backends (what moto does natively for SQS);
* other target types: moto's own delivery, one target at a time, so one failure cannot stop the others;
* a target that cannot be reached is retried per its ``RetryPolicy`` (capped locally) and then sent to its
  ``DeadLetterConfig`` queue, with the attributes EventBridge adds.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from moto.events.models import Rule
from moto.utilities.arns import parse_arn

from offline import destinations
from offline.lambdas import InProcessLambdas
from offline.patches import Patcher

log = logging.getLogger("offline.events")

DEFAULT_TARGET_RETRIES = 185
DEFAULT_TARGET_MAX_EVENT_AGE = 86400
# Delivery failures offline are deterministic (a missing function or queue): retrying 185 times helps nobody.
LOCAL_TARGET_RETRY_CAP = 3

_ENABLED_STATES = ("ENABLED", "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS")
_OWN_SERVICES = ("lambda", "states", "sqs", "sns")
_PLACEHOLDER = re.compile(r"<([^<>\s\"]+)>")


def event_for_targets(original: dict[str, Any]) -> dict[str, Any]:
    """The event as EventBridge hands it to a target (moto keeps ``time`` as epoch seconds internally)."""
    moment = original.get("time")
    event: dict[str, Any] = {
        "version": original.get("version", "0"),
        "id": original.get("id"),
        "detail-type": original.get("detail-type"),
        "source": original.get("source"),
        "account": original.get("account"),
        "time": destinations.utc_timestamp(float(moment), millis=False)
        if isinstance(moment, (int, float))
        else moment,
        "region": original.get("region"),
        "resources": list(original.get("resources") or []),
        "detail": copy.deepcopy(original.get("detail", {})),
    }
    if "replay-name" in original:
        event["replay-name"] = original["replay-name"]
    return event


@functools.lru_cache(maxsize=256)
def _compiled_path(path: str) -> Any:
    from jsonpath_ng.ext import parse

    return parse(path)


def json_path(document: Any, path: str) -> Any:
    """The first value at ``path`` (EventBridge JSONPath), or None."""
    matches = _compiled_path(path).find(document)
    return matches[0].value if matches else None


def transform_input(transformer: dict[str, Any], event: dict[str, Any], rule_arn: str, rule_name: str,
                    ingestion_time: Any = None) -> str:
    """Apply an InputTransformer; returns the text the target receives.

    A placeholder inside a JSON string is replaced by the raw value (escaped); outside strings by its JSON.
    A template that is not JSON-shaped (plain text) gets raw values everywhere.
    """
    values: dict[str, Any] = {
        name: json_path(event, path) for name, path in (transformer.get("InputPathsMap") or {}).items()
    }
    values.setdefault("aws.events.rule-arn", rule_arn)
    values.setdefault("aws.events.rule-name", rule_name)
    values.setdefault("aws.events.event", event)
    values.setdefault("aws.events.event.json", event)
    values.setdefault("aws.events.event.ingestion-time", ingestion_time or event.get("time"))
    template = str(transformer.get("InputTemplate", ""))
    plain_text = not template.lstrip().startswith(("{", "[", '"'))
    out: list[str] = []
    in_string = plain_text
    index = 0
    while index < len(template):
        char = template[index]
        if not plain_text and char == "\\" and in_string:
            out.append(template[index:index + 2])
            index += 2
            continue
        if not plain_text and char == '"':
            in_string = not in_string
        elif char == "<":
            match = _PLACEHOLDER.match(template, index)
            if match and match.group(1) in values:
                value = values[match.group(1)]
                out.append(_inside_string(value) if in_string else json.dumps(value))
                index = match.end()
                continue
        out.append(char)
        index += 1
    return "".join(out)


def _inside_string(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value)
    return json.dumps(text)[1:-1]


def target_input(target: dict[str, Any], event: dict[str, Any], rule_arn: str, rule_name: str,
                 ingestion_time: Any = None) -> str:
    """The text a target receives: Input, InputPath, InputTransformer or the whole event."""
    if target.get("Input") is not None:
        return str(target["Input"])
    if target.get("InputPath"):
        return json.dumps(json_path(event, target["InputPath"]))
    if target.get("InputTransformer"):
        return transform_input(target["InputTransformer"], event, rule_arn, rule_name, ingestion_time)
    return json.dumps(event)


def _as_json_text(text: str) -> str:
    try:
        json.loads(text)
        return text
    except ValueError:
        return json.dumps(text)


@dataclass
class _Delivery:
    rule_arn: str
    rule_name: str
    target: dict[str, Any]
    event: dict[str, Any]
    payload: str
    created: float = field(default_factory=time.time)
    failures: int = 0
    not_before: float = 0.0


class EventBridgeTargets:
    def __init__(
        self,
        *,
        lambdas: InProcessLambdas,
        retry_delay: Callable[[int], float] = lambda attempt: 0.0,
        retry_cap: int = LOCAL_TARGET_RETRY_CAP,
    ) -> None:
        self.lambdas = lambdas
        self.retry_delay = retry_delay
        self.retry_cap = retry_cap
        self._retries: deque[_Delivery] = deque()
        self._lock = threading.Lock()
        self._warned: set[str] = set()

    def install(self, patcher: Patcher) -> None:
        targets = self
        native = vars(Rule)["send_to_targets"]

        def send_to_targets(rule: Rule, original_event: Any, transform_input: bool = True) -> None:
            targets.send_to_targets(rule, original_event, transform_input, native)

        patcher.patch(Rule, "send_to_targets", send_to_targets)

    # ------------------------------------------------------------------ delivery
    def send_to_targets(self, rule: Rule, original_event: Any, transform: bool, native: Callable[..., None]) -> None:
        if rule.state not in _ENABLED_STATES or not rule.event_pattern.matches_event(original_event):
            return
        event = event_for_targets(original_event)
        for target in list(rule.targets):
            service = parse_arn(target["Arn"]).service
            if rule.managed_by or service not in _OWN_SERVICES:
                self._native(rule, target, original_event, transform, native)
                continue
            payload = target_input(target, event, rule.arn, rule.name, original_event.get("ingestion-time"))
            self._attempt(_Delivery(rule.arn, rule.name, dict(target), event, payload))

    def _native(self, rule: Rule, target: dict[str, Any], event: Any, transform: bool, native: Callable[..., None]
                ) -> None:
        single = copy.copy(rule)
        single.targets = [target]
        try:
            native(single, copy.deepcopy(event), transform)
        except NotImplementedError:
            service = parse_arn(target["Arn"]).service
            if service not in self._warned:
                self._warned.add(service)
                log.warning("EventBridge targets of type %s are not delivered offline (%s)", service, target["Arn"])
        except Exception:
            log.exception("EventBridge could not deliver to %s", target["Arn"])

    def _attempt(self, delivery: _Delivery) -> None:
        try:
            self._deliver(delivery)
        except Exception as error:
            self._failed(delivery, error)

    def _deliver(self, delivery: _Delivery) -> None:
        target, arn = delivery.target, delivery.target["Arn"]
        parsed = parse_arn(arn)
        if parsed.service == "lambda":
            if not self.lambdas.exists(arn):
                raise LookupError(f"Function not found: {arn}")
            self.lambdas.invoke_async(arn, _as_json_text(delivery.payload))
        elif parsed.service == "states":
            from moto.stepfunctions.responses import get_backend

            get_backend(parsed.account, parsed.region).start_execution(
                state_machine_arn=arn, name=str(uuid.uuid4()), execution_input=_as_json_text(delivery.payload)
            )
        elif parsed.service == "sqs":
            from moto.sqs.models import sqs_backends

            group_id = (target.get("SqsParameters") or {}).get("MessageGroupId")
            sqs_backends[parsed.account][parsed.region].send_message(
                queue_name=parsed.resource_id,
                message_body=delivery.payload,
                group_id=group_id,
                deduplication_id=delivery.event["id"] if group_id else None,
            )
        elif parsed.service == "sns":
            from moto.sns.models import sns_backends

            sns_backends[parsed.account][parsed.region].publish(message=delivery.payload, arn=arn)
        else:  # pragma: no cover - filtered by send_to_targets
            raise ValueError(f"unsupported target {arn}")

    def _failed(self, delivery: _Delivery, error: Exception) -> None:
        delivery.failures += 1
        policy = delivery.target.get("RetryPolicy") or {}
        max_retries = min(int(policy.get("MaximumRetryAttempts", DEFAULT_TARGET_RETRIES)), self.retry_cap)
        max_age = int(policy.get("MaximumEventAgeInSeconds", DEFAULT_TARGET_MAX_EVENT_AGE))
        age = time.time() - delivery.created
        if delivery.failures <= max_retries and age <= max_age:
            delivery.not_before = time.time() + self.retry_delay(delivery.failures)
            with self._lock:
                self._retries.append(delivery)
            return
        condition = "MaximumRetryAttemptsExhausted" if delivery.failures > max_retries else "MaximumEventAgeExceeded"
        dead_letter = (delivery.target.get("DeadLetterConfig") or {}).get("Arn")
        log.warning("EventBridge gave up on target %s of %s after %d attempt(s): %s", delivery.target["Arn"],
                    delivery.rule_name, delivery.failures, error)
        if not dead_letter:
            return
        attributes = {
            "RULE_ARN": delivery.rule_arn,
            "TARGET_ARN": delivery.target["Arn"],
            "ERROR_CODE": type(error).__name__,
            "ERROR_MESSAGE": str(error)[:1024],
            "EXHAUSTED_RETRY_CONDITION": condition,
            "RETRY_ATTEMPTS": delivery.failures - 1,
        }
        try:
            destinations.send(dead_letter, json.dumps(delivery.event), invoke_async=self.lambdas.invoke_async,
                              attributes=attributes)
        except Exception:
            log.exception("could not send to the dead-letter queue %s", dead_letter)

    # ------------------------------------------------------------------ retries
    def pending(self) -> int:
        with self._lock:
            return len(self._retries)

    def pump(self) -> bool:
        now = time.time()
        with self._lock:
            due = [item for item in self._retries if item.not_before <= now]
            for item in due:
                self._retries.remove(item)
        for item in due:
            self._attempt(item)
        return bool(due)
