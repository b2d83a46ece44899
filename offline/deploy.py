"""Create a template's resources in moto, in dependency order.

Each supported resource type has a small creator that calls moto through boto3 (so validation is moto's API
validation) and returns a ``Physical``: the values ``Ref`` and ``Fn::GetAtt`` give. Other types (IAM policies,
permissions, Cognito, alarms, custom resources, CDK metadata...) are not emulated: they get placeholder values
so references to them still resolve, and are listed once in a debug summary.

Physical names come from the stack name and the logical id without CDK's 8-character hash
(``Orderflow-OrdersTable``) unless the template names the resource itself.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.exceptions import ClientError

from offline.errors import TemplateError
from offline.lambdas import InProcessLambdas
from offline.template import Template, cfn_string

log = logging.getLogger("offline.deploy")

_CDK_HASH = re.compile(r"^(?P<base>.*[^0-9A-F])[0-9A-F]{8}$")
_SHORT_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


@dataclass
class Physical:
    """What was created for one logical id (or the placeholder values of a type that is not emulated)."""

    logical_id: str
    type: str
    name: str
    ref: Any
    arn: str | None = None
    url: str | None = None
    stream_arn: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    created: bool = True

    def get_att(self, attribute: str) -> Any:
        if attribute in self.attributes:
            return self.attributes[attribute]
        if not self.created:
            return f"{self.name}-{attribute}"
        known = ", ".join(sorted(self.attributes)) or "none"
        raise TemplateError(f"Fn::GetAtt {self.logical_id}.{attribute}: not available offline (known: {known})")


def readable_name(logical_id: str) -> str:
    """The logical id without the 8 upper-case hex characters CDK appends."""
    match = _CDK_HASH.match(logical_id)
    return match.group("base") if match else logical_id


def short_id(seed: str, length: int = 10) -> str:
    """A deterministic id like the ones API Gateway makes up (``a1b2c3d4e5``)."""
    digest = hashlib.sha256(seed.encode()).digest()
    return "".join(_SHORT_ID_ALPHABET[byte % len(_SHORT_ID_ALPHABET)] for byte in digest[:length])


def _dummy_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("offline.txt", "The offline runtime runs the handler from its code root.\n")
    return buffer.getvalue()


_DUMMY_ZIP = _dummy_zip()

Creator = Callable[["Deployer", str, dict[str, Any]], Physical]


class Deployer:
    """Creates the resources of one template; also the ``ResourceLookup`` its intrinsics resolve against."""

    def __init__(self, template: Template, *, lambdas: InProcessLambdas) -> None:
        self.template = template
        self.lambdas = lambdas
        self.resources: dict[str, Physical] = {}
        self.skipped: dict[str, list[str]] = {}
        self.function_environments: dict[str, dict[str, str]] = {}  # function logical id -> variables
        self.api_parts: dict[str, list[tuple[str, dict[str, Any]]]] = {}  # API Gateway type -> (id, props)
        self._clients: dict[str, Any] = {}
        self._session = boto3.session.Session(region_name=template.region)
        self._roles: dict[str, str] = {}
        self._readable = self._plan_readable_names()

    # ------------------------------------------------------------------ ResourceLookup
    def ref(self, logical_id: str) -> Any:
        return self._physical(logical_id).ref

    def get_att(self, logical_id: str, attribute: str) -> Any:
        return self._physical(logical_id).get_att(attribute)

    def _physical(self, logical_id: str) -> Physical:
        if logical_id in self.resources:
            return self.resources[logical_id]
        if not self.template.is_enabled(logical_id):
            raise TemplateError(f"{logical_id} is referenced but its condition is false")
        raise TemplateError(f"{logical_id} is referenced before it exists (missing DependsOn?)")

    # ------------------------------------------------------------------ naming
    def _plan_readable_names(self) -> dict[str, str]:
        readable = {logical_id: readable_name(logical_id) for logical_id in self.template.resources}
        counts: dict[str, int] = {}
        for name in readable.values():
            counts[name] = counts.get(name, 0) + 1
        return {lid: (name if counts[name] == 1 else lid) for lid, name in readable.items()}

    def name(self, logical_id: str, max_length: int, suffix: str = "") -> str:
        """``<stack>-<readable logical id><suffix>``, shortened with a hash when too long."""
        name = f"{self.template.stack_name}-{self._readable[logical_id]}"
        if len(name) + len(suffix) > max_length:
            digest = hashlib.sha256(logical_id.encode()).hexdigest()[:8]
            name = f"{name[: max_length - len(suffix) - 9]}-{digest}"
        return name + suffix

    # ------------------------------------------------------------------ deploying
    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._session.client(service)
        return self._clients[service]

    def deploy(self) -> None:
        for logical_id in self.template.creation_order():
            if not self.template.is_enabled(logical_id):
                continue
            resource = self.template.resources[logical_id]
            resource_type = str(resource.get("Type"))
            creator = CREATORS.get(resource_type)
            if creator is None:
                self._skip(logical_id, resource_type)
                continue
            properties = self.template.resolve(resource.get("Properties") or {}, self)
            try:
                physical = creator(self, logical_id, properties)
            except ClientError as error:
                raise TemplateError(f"creating {logical_id} ({resource_type}) failed: {error}") from error
            self.resources[logical_id] = physical
            log.debug("created %s %s -> %s", resource_type, logical_id, physical.name)
        if self.skipped:
            log.debug("not emulated offline (skipped): %s", "; ".join(
                f"{kind} x{len(ids)}" for kind, ids in sorted(self.skipped.items())))

    def _skip(self, logical_id: str, resource_type: str) -> None:
        self.skipped.setdefault(resource_type, []).append(logical_id)
        self.resources[logical_id] = self.placeholder(logical_id, resource_type)

    def placeholder(self, logical_id: str, resource_type: str, ref: Any = None, **attributes: Any) -> Physical:
        name = self.name(logical_id, 128)
        parts = resource_type.split("::")
        service = parts[1].lower() if len(parts) == 3 else "cloudformation"
        arn = f"arn:aws:{service}:{self.template.region}:{self.template.account_id}:{parts[-1].lower()}/{name}"
        return Physical(logical_id, resource_type, name, ref=name if ref is None else ref, arn=arn,
                        attributes={"Arn": arn, **attributes}, created=False)

    def ensure_role(self, role_arn: Any) -> str:
        """The ARN of an IAM role that exists in moto (moto's Lambda and Step Functions insist on one)."""
        if not isinstance(role_arn, str) or not role_arn.startswith("arn:aws:iam::") or ":role/" not in role_arn:
            role_arn = f"arn:aws:iam::{self.template.account_id}:role/{self.template.stack_name}-offline-role"
        if role_arn in self._roles:
            return self._roles[role_arn]
        path_and_name = role_arn.split(":role", 1)[1]
        path, _, name = path_and_name.rpartition("/")
        iam = self.client("iam")
        try:
            arn = iam.get_role(RoleName=name)["Role"]["Arn"]
        except iam.exceptions.NoSuchEntityException:
            arn = iam.create_role(RoleName=name, Path=(path or "") + "/", AssumeRolePolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": []}))["Role"]["Arn"]
        self._roles[role_arn] = arn
        return arn


# ====================================================================================== creators
def _ints(properties: dict[str, Any], *names: str) -> dict[str, int]:
    return {name: int(properties[name]) for name in names if name in properties}


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _create_table(d: Deployer, logical_id: str, p: dict[str, Any], resource_type: str) -> Physical:
    name = p.get("TableName") or d.name(logical_id, 255)
    provisioned = p.get("BillingMode", "PROVISIONED") == "PROVISIONED" and "ProvisionedThroughput" in p
    args: dict[str, Any] = {
        "TableName": name,
        "KeySchema": p["KeySchema"],
        "AttributeDefinitions": p.get("AttributeDefinitions") or [],
    }
    if provisioned:
        args["ProvisionedThroughput"] = _ints(p["ProvisionedThroughput"], "ReadCapacityUnits", "WriteCapacityUnits")
    else:
        args["BillingMode"] = "PAY_PER_REQUEST"
    indexes = []
    for index in p.get("GlobalSecondaryIndexes") or []:
        item = {key: index[key] for key in ("IndexName", "KeySchema", "Projection") if key in index}
        if provisioned:
            item["ProvisionedThroughput"] = _ints(
                index.get("ProvisionedThroughput") or p["ProvisionedThroughput"],
                "ReadCapacityUnits", "WriteCapacityUnits")
        indexes.append(item)
    if indexes:
        args["GlobalSecondaryIndexes"] = indexes
    local = [{key: index[key] for key in ("IndexName", "KeySchema", "Projection") if key in index}
             for index in p.get("LocalSecondaryIndexes") or []]
    if local:
        args["LocalSecondaryIndexes"] = local
    stream = p.get("StreamSpecification") or {}
    if stream.get("StreamViewType"):
        args["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    ddb = d.client("dynamodb")
    table = ddb.create_table(**args)["TableDescription"]
    ttl = p.get("TimeToLiveSpecification") or {}
    if ttl.get("Enabled") in (True, "true") and ttl.get("AttributeName"):
        ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={
            "Enabled": True, "AttributeName": ttl["AttributeName"]})
    pitr = p.get("PointInTimeRecoverySpecification") or {}
    replicas = p.get("Replicas") or []
    if replicas:
        pitr = replicas[0].get("PointInTimeRecoverySpecification") or pitr
    if pitr.get("PointInTimeRecoveryEnabled") in (True, "true"):
        ddb.update_continuous_backups(TableName=name, PointInTimeRecoverySpecification={
            "PointInTimeRecoveryEnabled": True})
    stream_arn = table.get("LatestStreamArn")
    attributes = {"Arn": table["TableArn"]}
    if stream_arn:
        attributes["StreamArn"] = stream_arn
    return Physical(logical_id, resource_type, name, ref=name, arn=table["TableArn"], stream_arn=stream_arn,
                    attributes=attributes)


def create_table(d: Deployer, logical_id: str, p: dict[str, Any]) -> Physical:
    return _create_table(d, logical_id, p, "AWS::DynamoDB::Table")


def create_global_table(d: Deployer, logical_id: str, p: dict[str, Any]) -> Physical:
    return _create_table(d, logical_id, p, "AWS::DynamoDB::GlobalTable")


_QUEUE_ATTRIBUTES = (
    "DelaySeconds", "MaximumMessageSize", "MessageRetentionPeriod", "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout", "KmsMasterKeyId", "KmsDataKeyReusePeriodSeconds", "SqsManagedSseEnabled",
    "ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit", "FifoQueue",
)


def create_queue(d: Deployer, logical_id: str, p: dict[str, Any]) -> Physical:
    fifo = cfn_string(p.get("FifoQueue", False)) == "true"
    name = p.get("QueueName") or d.name(logical_id, 80, ".fifo" if fifo else "")
    attributes = {key: cfn_string(p[key]) for key in _QUEUE_ATTRIBUTES if key in p}
    for key in ("RedrivePolicy", "RedriveAllowPolicy"):
        if key in p:
            attributes[key] = _json_text(p[key])
    url = d.client("sqs").create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = f"arn:aws:sqs:{d.template.region}:{d.template.account_id}:{name}"
    return Physical(logical_id, "AWS::SQS::Queue", name, ref=url, arn=arn, url=url,
                    attributes={"Arn": arn, "QueueName": name, "QueueUrl": url})


def create_topic(d: Deployer, logical_id: str, p: dict[str, Any]) -> Physical:
    fifo = cfn_string(p.get("FifoTopic", False)) == "true"
    name = p.get("TopicName") or d.name(logical_id, 256, ".fifo" if fifo else "")
    attributes = {key: cfn_string(p[key]) for key in ("FifoTopic", "ContentBasedDeduplication", "DisplayName")
                  if key in p}
    sns = d.client("sns")
    arn = sns.create_topic(Name=name, Attributes=attributes)["TopicArn"]
    for subscription in p.get("Subscription") or []:
        sns.subscribe(TopicArn=arn, Protocol=subscription["Protocol"], Endpoint=subscription["Endpoint"])
    return Physical(logical_id, "AWS::SNS::Topic", name, ref=arn, arn=arn,
                    attributes={"TopicArn": arn, "TopicName": name})


def create_subscription(d: Deployer, logical_id: str, p: dict[str, Any]) -> Physical:
    attributes = {}
    for key in ("RawMessageDelivery", "FilterPolicyScope"):
        if key in p:
            attributes[key] = cfn_string(p[key])
    for key in ("FilterPolicy", "RedrivePolicy"):
        if key in p:
            attributes[key] = _json_text(p[key])
    arn = d.client("sns").subscribe(TopicArn=p["TopicArn"], Protocol=p["Protocol"], Endpoint=p.get("Endpoint", ""),
                                    Attributes=attributes, ReturnSubscriptionArn=True)["SubscriptionArn"]
    return Physical(logical_id, "AWS::SNS::Subscription", arn, ref=arn, arn=arn, attributes={"Arn": arn})


def create_event_bus(d: Deployer, logical_id: str, p: dict[str, Any]) -> Physical:
    name = p.get("Name") or d.name(logical_id, 256)
    events = d.client("events")
    if name == "default":
        arn = events.describe_event_bus(Name="default")["Arn"]
    else:
        args = {"Name": name}
        if p.get("Description"):
            args["Description"] = p["Description"]
        arn = events.create_event_bus(**args)["EventBusArn"]
    return Physical(logical_id, "AWS::Events::EventBus", name, ref=name, arn=arn,
                    attributes={"Arn": arn, "Name": name})


def create_archive(d: Deployer, logical_id: str, p: dict[str, Any]) -> Physical:
    name = p.get("ArchiveName") or d.name(logical_id, 48)
    args: dict[str, Any] = {"ArchiveName": name, "EventSourceArn": p["SourceArn"]}
    if p.get("Description"):
        args["Description"] = p["Description"]
    if p.get("EventPattern"):
        args["EventPattern"] = _json_text(p["EventPattern"])
    if "RetentionDays" in p:
        args["RetentionDays"] = int(p["RetentionDays"])
    try:
        arn = d.client("events").create_archive(**args)["ArchiveArn"]
    except (ClientError, NotImplementedError) as error:
        log.info("EventBridge archive %s not created offline: %s", logical_id, error)
        return d.placeholder(logical_id, "AWS::Events::Archive", ArchiveName=name)
    return Physical(logical_id, "AWS::Events::Archive", name, ref=name, arn=arn,
                    attributes={"Arn": arn, "ArchiveName": name})


_TARGET_KEYS = (
    "Id", "Arn", "RoleArn", "Input", "InputPath", "InputTransformer", "KinesisParameters", "RunCommandParameters",
    "EcsParameters", "BatchParameters", "SqsParameters", "HttpParameters", "RedshiftDataParameters",
    "SageMakerPipelineParameters", "DeadLetterConfig", "RetryPolicy", "AppSyncParameters",
)


def create_rule(d: Deployer, logical_id: str, p: dict[str, Any]) -> Physical:
    name = p.get("Name") or d.name(logical_id, 64)
    bus = p.get("EventBusName") or "default"
    bus_name = bus.split("/")[-1] if bus.startswith("arn:") else bus
    args: dict[str, Any] = {"Name": name, "EventBusName": bus, "State": p.get("State", "ENABLED")}
    for key in ("Description", "RoleArn", "ScheduleExpression"):
        if p.get(key):
            args[key] = p[key]
    if p.get("EventPattern"):
        args["EventPattern"] = _json_text(p["EventPattern"])
    if p.get("ScheduleExpression"):
        log.info("rule %s has a schedule (%s): scheduled rules do not fire offline", logical_id,
                 p["ScheduleExpression"])
    events = d.client("events")
    arn = events.put_rule(**args)["RuleArn"]
    targets = [{key: target[key] for key in _TARGET_KEYS if key in target} for target in p.get("Targets") or []]
    for target in targets:
        if "RetryPolicy" in target:
            target["RetryPolicy"] = _ints(target["RetryPolicy"], "MaximumRetryAttempts", "MaximumEventAgeInSeconds")
    if targets:
        events.put_targets(Rule=name, EventBusName=bus, Targets=targets)
    ref = name if bus_name == "default" else f"{bus_name}|{name}"
    return Physical(logical_id, "AWS::Events::Rule", name, ref=ref, arn=arn, attributes={"Arn": arn})


def create_role(d: Deployer, logical_id: str, p: dict[str, Any]) -> Physical:
    name = p.get("RoleName") or d.name(logical_id, 64)
    args: dict[str, Any] = {
        "RoleName": name,
        "Path": p.get("Path", "/"),
        "AssumeRolePolicyDocument": _json_text(p.get("AssumeRolePolicyDocument") or {}),
    }
    if p.get("Description"):
        args["Description"] = p["Description"]
    role = d.client("iam").create_role(**args)["Role"]
    d._roles[role["Arn"]] = role["Arn"]
    return Physical(logical_id, "AWS::IAM::Role", name, ref=name, arn=role["Arn"],
                    attributes={"Arn": role["Arn"], "RoleId": role["RoleId"]})


def create_function(d: Deployer, logical_id: str, p: dict[str, Any]) -> Physical:
    name = p.get("FunctionName") or d.name(logical_id, 64)
    if p.get("PackageType") == "Image":
        raise TemplateError(f"{logical_id}: container image functions cannot run in-process offline")
    if not p.get("Handler"):
        raise TemplateError(f"{logical_id}: a function needs a Handler")
    variables = {key: cfn_string(value) for key, value in ((p.get("Environment") or {}).get("Variables") or {}).items()}
    args: dict[str, Any] = {
        "FunctionName": name,
        "Runtime": p.get("Runtime", "python3.13"),
        "Role": d.ensure_role(p.get("Role")),
        "Handler": p["Handler"],
        "Code": {"ZipFile": _DUMMY_ZIP},
        "Timeout": int(p.get("Timeout", 3)),
        "MemorySize": int(p.get("MemorySize", 128)),
        "Environment": {"Variables": variables},
    }
    for key in ("Description", "Architectures", "TracingConfig", "EphemeralStorage"):
        if p.get(key):
            args[key] = p[key]
    arn = d.client("lambda").create_function(**args)["FunctionArn"]
    dead_letter = (p.get("DeadLetterConfig") or {}).get("TargetArn")
    if dead_letter:
        d.lambdas.dead_letter_targets[arn] = dead_letter
    d.function_environments[logical_id] = variables
    return Physical(logical_id, "AWS::Lambda::Function", name, ref=name, arn=arn, attributes={"Arn": arn})


_MAPPING_KEYS = (
    "EventSourceArn", "FunctionName", "BatchSize", "BisectBatchOnFunctionError", "DestinationConfig", "Enabled",
    "FilterCriteria", "FunctionResponseTypes", "MaximumBatchingWindowInSeconds", "MaximumRecordAgeInSeconds",
    "MaximumRetryAttempts", "ParallelizationFactor", "StartingPosition", "StartingPositionTimestamp",
    "TumblingWindowInSeconds", "ScalingConfig",
)
_MAPPING_INTS = ("BatchSize", "MaximumBatchingWindowInSeconds", "MaximumRecordAgeInSeconds", "MaximumRetryAttempts",
                 "ParallelizationFactor", "TumblingWindowInSeconds")


def create_event_source_mapping(d: Deployer, logical_id: str, p: dict[str, Any]) -> Physical:
    args = {key: p[key] for key in _MAPPING_KEYS if key in p}
    args.update(_ints(p, *_MAPPING_INTS))
    for key in ("BisectBatchOnFunctionError", "Enabled"):
        if key in args:
            args[key] = cfn_string(args[key]) == "true"
    mapping = d.client("lambda").create_event_source_mapping(**args)
    uuid = mapping["UUID"]
    arn = mapping.get("EventSourceMappingArn")
    return Physical(logical_id, "AWS::Lambda::EventSourceMapping", uuid, ref=uuid, arn=arn,
                    attributes={"Id": uuid, "EventSourceMappingArn": arn})


def create_event_invoke_config(d: Deployer, logical_id: str, p: dict[str, Any]) -> Physical:
    args: dict[str, Any] = {"FunctionName": p["FunctionName"]}
    args.update(_ints(p, "MaximumRetryAttempts", "MaximumEventAgeInSeconds"))
    if p.get("DestinationConfig"):
        args["DestinationConfig"] = p["DestinationConfig"]
    d.client("lambda").put_function_event_invoke_config(**args)
    return Physical(logical_id, "AWS::Lambda::EventInvokeConfig", d.name(logical_id, 128),
                    ref=d.name(logical_id, 128))


def create_state_machine(d: Deployer, logical_id: str, p: dict[str, Any]) -> Physical:
    name = p.get("StateMachineName") or d.name(logical_id, 80)
    if "DefinitionString" in p:
        definition = p["DefinitionString"]
    elif "Definition" in p:
        definition = json.dumps(p["Definition"])
    else:
        raise TemplateError(
            f"{logical_id}: the definition is not in the template (DefinitionS3Location?): use "
            "DefinitionBody.from_string so the offline runtime can read it")
    for key, value in (p.get("DefinitionSubstitutions") or {}).items():
        definition = definition.replace("${" + key + "}", cfn_string(value))
    args: dict[str, Any] = {"name": name, "definition": definition, "roleArn": d.ensure_role(p.get("RoleArn")),
                            "type": p.get("StateMachineType", "STANDARD")}
    logging_configuration = _logging_configuration(p.get("LoggingConfiguration"))
    if logging_configuration:
        # Executions write their history events to the log group (offline/stepfunctions.py): for an Express
        # workflow that is the only record of what it did.
        args["loggingConfiguration"] = logging_configuration
    machine = d.client("stepfunctions").create_state_machine(**args)
    arn = machine["stateMachineArn"]
    return Physical(logical_id, "AWS::StepFunctions::StateMachine", name, ref=arn, arn=arn,
                    attributes={"Arn": arn, "Name": name})


def _logging_configuration(p: Any) -> dict[str, Any] | None:
    """AWS::StepFunctions::StateMachine LoggingConfiguration -> the API's loggingConfiguration."""
    if not isinstance(p, dict) or str(p.get("Level", "OFF")) == "OFF":
        return None
    destinations = [
        {"cloudWatchLogsLogGroup": {"logGroupArn": destination["CloudWatchLogsLogGroup"]["LogGroupArn"]}}
        for destination in p.get("Destinations") or []
        if isinstance((destination.get("CloudWatchLogsLogGroup") or {}).get("LogGroupArn"), str)
    ]
    return {"level": str(p["Level"]), "includeExecutionData": cfn_string(p.get("IncludeExecutionData", False)) == "true",
            "destinations": destinations}


def create_log_group(d: Deployer, logical_id: str, p: dict[str, Any]) -> Physical:
    name = p.get("LogGroupName") or d.name(logical_id, 512)
    logs = d.client("logs")
    logs.create_log_group(logGroupName=name)
    if "RetentionInDays" in p:
        logs.put_retention_policy(logGroupName=name, retentionInDays=int(p["RetentionInDays"]))
    arn = f"arn:aws:logs:{d.template.region}:{d.template.account_id}:log-group:{name}:*"
    return Physical(logical_id, "AWS::Logs::LogGroup", name, ref=name, arn=arn, attributes={"Arn": arn})


def create_email_identity(d: Deployer, logical_id: str, p: dict[str, Any]) -> Physical:
    identity = p["EmailIdentity"]
    d.client("sesv2").create_email_identity(EmailIdentity=identity)
    return Physical(logical_id, "AWS::SES::EmailIdentity", identity, ref=identity)


def create_parameter(d: Deployer, logical_id: str, p: dict[str, Any]) -> Physical:
    name = p.get("Name") or d.name(logical_id, 1011)
    args = {"Name": name, "Value": cfn_string(p["Value"]), "Type": p.get("Type", "String")}
    if p.get("Description"):
        args["Description"] = p["Description"]
    d.client("ssm").put_parameter(**args)
    return Physical(logical_id, "AWS::SSM::Parameter", name, ref=name, attributes={"Type": args["Type"],
                                                                                  "Value": args["Value"]})


def api_gateway_part(resource_type: str) -> Creator:
    """API Gateway resources are not created in moto: the gateway builds its routes from them."""

    def record(d: Deployer, logical_id: str, p: dict[str, Any]) -> Physical:
        d.api_parts.setdefault(resource_type, []).append((logical_id, p))
        identifier = short_id(logical_id)
        if resource_type == "AWS::ApiGateway::RestApi":
            return Physical(logical_id, resource_type, p.get("Name") or d.name(logical_id, 128), ref=identifier,
                            attributes={"RootResourceId": short_id(logical_id + "/root"), "RestApiId": identifier})
        if resource_type == "AWS::ApiGateway::Stage":
            return Physical(logical_id, resource_type, p["StageName"], ref=p["StageName"])
        return Physical(logical_id, resource_type, identifier, ref=identifier,
                        attributes={"ResourceId": identifier, "AuthorizerId": identifier,
                                    "DeploymentId": identifier, "MethodId": identifier})

    return record


CREATORS: dict[str, Creator] = {
    "AWS::DynamoDB::Table": create_table,
    "AWS::DynamoDB::GlobalTable": create_global_table,
    "AWS::SQS::Queue": create_queue,
    "AWS::SNS::Topic": create_topic,
    "AWS::SNS::Subscription": create_subscription,
    "AWS::Events::EventBus": create_event_bus,
    "AWS::Events::Archive": create_archive,
    "AWS::Events::Rule": create_rule,
    "AWS::IAM::Role": create_role,
    "AWS::Lambda::Function": create_function,
    "AWS::Lambda::EventSourceMapping": create_event_source_mapping,
    "AWS::Lambda::EventInvokeConfig": create_event_invoke_config,
    "AWS::StepFunctions::StateMachine": create_state_machine,
    "AWS::Logs::LogGroup": create_log_group,
    "AWS::SES::EmailIdentity": create_email_identity,
    "AWS::SSM::Parameter": create_parameter,
    **{
        kind: api_gateway_part(kind)
        for kind in (
            "AWS::ApiGateway::RestApi", "AWS::ApiGateway::Resource", "AWS::ApiGateway::Method",
            "AWS::ApiGateway::Authorizer", "AWS::ApiGateway::Stage", "AWS::ApiGateway::Deployment",
        )
    },
}
