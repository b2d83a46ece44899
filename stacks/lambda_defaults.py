"""The one way orderflow makes a Python Lambda function, so every function gets the same defaults.

python3.13 on arm64, explicit memory and timeout, X-Ray active, its own log group with retention, the
Powertools layer, and the whole ``functions/`` folder as code (handler strings are relative to it).

Each function also gets its own role with no AWS managed policy: the only logging permission is writing to
its own log group. Everything else is granted by the construct that owns the resource.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_ssm as ssm
from constructs import Construct

FUNCTIONS_DIR = Path(__file__).resolve().parent.parent / "functions"
ASSET_EXCLUDES = ["__pycache__", "*.pyc", "tests"]

RUNTIME = lambda_.Runtime.PYTHON_3_13
ARCHITECTURE = lambda_.Architecture.ARM_64
LOG_RETENTION = logs.RetentionDays.ONE_MONTH
# The timeout of every function a state machine task invokes: under the order saga's 30 s task timeout
# (statemachines/order_saga.asl.json), so a slow step ends as the function's own timeout (a Lambda error the
# task retries) before the task's States.Timeout. tests/infra checks it against the definition.
SAGA_STEP_TIMEOUT = Duration.seconds(20)

# Public parameter that AWS publishes per runtime, architecture and version. Resolved by CloudFormation at
# deploy time (a template parameter), so synth needs no AWS account.
POWERTOOLS_LAYER_PARAMETER = "/aws/service/powertools/python/arm64/python3.13/3.37.0"

RUNTIME_PINNED = (
    "The runtime is pinned to python3.13 on purpose: the Powertools layer is published per runtime "
    "(/aws/service/powertools/python/arm64/python3.13/3.37.0) and the code is tested on 3.11-3.13; moving to "
    "python3.14 is a deliberate upgrade of layer, runtime and tests together."
)
# A function's dead-letter queue (DeadLetterConfig) and EventInvokeConfig destinations only ever see asynchronous
# invocations. No orderflow function has one: each is invoked synchronously, and its failures are kept where its
# caller retries them: the client (API Gateway proxy), the saga's Retry/Catch (Step Functions lambda:invoke,
# RequestResponse), the source queue's redrive policy to its DLQ (SQS event source mappings), or the mapping's
# on-failure queue (DynamoDB stream mappings). tests/infra/test_security.py fails if a function gets an
# asynchronous invoker (a permission for EventBridge, SNS, S3..., a rule target, an async task), and then the
# function needs an on-failure destination instead of this acknowledgement.
SYNCHRONOUS_ONLY = (
    "Invoked synchronously only (API Gateway proxy, Step Functions RequestResponse task, SQS or DynamoDB stream "
    "event source mapping): Lambda never uses a function's DLQ for those, failures stay with the caller (client, "
    "saga retries, the source queue's DLQ, the mapping's on-failure queue). tests/infra/test_security.py fails if "
    "a function gains an asynchronous invoker."
)

# Every function gets these with the same values. The offline runtime merges all functions' environments
# into one process environment, so a key must mean the same thing everywhere. No POWERTOOLS_SERVICE_NAME:
# the code names its own service.
COMMON_ENVIRONMENT: Mapping[str, str] = {
    "POWERTOOLS_METRICS_NAMESPACE": "Orderflow",
    "LOG_LEVEL": "INFO",
}


class PythonFunction(Construct):
    """A Lambda function with its role and log group as siblings: ``Function``, ``Role``, ``LogGroup``."""

    function: lambda_.Function
    role: iam.Role
    log_group: logs.LogGroup

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        handler: str,
        description: str,
        memory_size: int,
        timeout: Duration,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(scope, id)
        clashes = sorted(k for k in (environment or {}) if k in COMMON_ENVIRONMENT)
        if clashes:
            raise ValueError(f"{self.node.path}: {clashes} are set for every function in COMMON_ENVIRONMENT")

        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            retention=LOG_RETENTION,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Execution role of {self.node.path}",
        )
        self.log_group.grant_write(self.role)

        self.function = lambda_.Function(
            self,
            "Function",
            description=description,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=handler,
            code=lambda_.Code.from_asset(str(FUNCTIONS_DIR), exclude=ASSET_EXCLUDES),
            memory_size=memory_size,
            timeout=timeout,
            role=self.role,
            log_group=self.log_group,
            # JSON platform logs at WARN: Lambda's START/END/REPORT lines (about 40% of the bytes a quick
            # invocation logs, billed per GB ingested) are dropped; the same figures are CloudWatch metrics
            # (Duration, Errors, Throttles) and X-Ray segments. Application logs stay at INFO (Powertools JSON).
            logging_format=lambda_.LoggingFormat.JSON,
            system_log_level_v2=lambda_.SystemLogLevel.WARN,
            application_log_level_v2=lambda_.ApplicationLogLevel.INFO,
            tracing=lambda_.Tracing.ACTIVE,
            layers=[powertools_layer(self)],
            environment={**COMMON_ENVIRONMENT, **(environment or {})},
        )

        # Acknowledged on this role's own default policy (where tracing puts the statement), nowhere wider.
        Validations.of(self.default_policy).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason=(
                    "tracing=ACTIVE adds xray:PutTraceSegments and xray:PutTelemetryRecords on '*': X-Ray "
                    "supports no resource-level permissions for them (IAM service authorization reference). "
                    "tests/infra pins every '*' statement to actions that cannot be scoped."
                ),
            )
        )
        Validations.of(self.function).acknowledge(
            Acknowledgment(id="AwsSolutions-L1", reason=RUNTIME_PINNED),
            Acknowledgment(id="Serverless-LambdaLatestVersion", reason=RUNTIME_PINNED),
            Acknowledgment(id="Serverless-LambdaDLQ", reason=SYNCHRONOUS_ONLY),
        )

    @property
    def default_policy(self) -> iam.Policy:
        """The role's default policy, where grants and the tracing statement land."""
        return self.role.node.find_child("DefaultPolicy")  # type: ignore[return-value]


def powertools_layer(scope: Construct) -> lambda_.ILayerVersion:
    """The Powertools layer, made once per stack (one template parameter, shared by every function)."""
    stack = Stack.of(scope)
    existing = stack.node.try_find_child("PowertoolsLayer")
    if existing is not None:
        return existing  # type: ignore[return-value]
    arn = ssm.StringParameter.value_for_string_parameter(stack, POWERTOOLS_LAYER_PARAMETER)
    return lambda_.LayerVersion.from_layer_version_arn(stack, "PowertoolsLayer", arn)
