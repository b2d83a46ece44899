"""The public HTTP API: REST API with a Cognito user pool authorizer, and the users it knows.

Routes are data (``Route``): a service lists its routes, the stack hands them to ``Api.add_routes`` with the
function that serves them. Every route requires a Cognito token unless it says why it is public.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.lambda_defaults import LOG_RETENTION

STAGE_NAME = "prod"
ADMINS_GROUP = "admins"
STAGE_LOGGING_LEVEL = apigw.MethodLoggingLevel.ERROR


@dataclass(frozen=True)
class Throttle:
    """A token bucket: ``rate`` requests per second steady state, ``burst`` at once. API Gateway REST applies a
    stage's or a method's limit to all callers together (a per-client limit needs usage plans and API keys, which
    a public API with Cognito tokens does not hand out); over it, the caller gets 429 before any function runs."""

    rate: int
    burst: int


# The stage-wide default for every method, and tighter limits on the routes that cost most or that anyone can
# call, so those cannot use up the budget of the rest (throttle_for picks one per route):
STAGE_THROTTLE = Throttle(rate=100, burst=200)
# Unauthenticated (GET /health): a probe needs a few requests a minute; a flood of it is never legitimate.
PUBLIC_THROTTLE = Throttle(rate=10, burst=20)
# Operators' routes: a handful of people, and a deposit or a stock change is a write.
ADMIN_THROTTLE = Throttle(rate=20, burst=40)
# A customer write starts work downstream (POST /orders: an event, a saga execution, ~6 invocations).
WRITE_THROTTLE = Throttle(rate=50, burst=100)

# Request size. API Gateway REST has no setting that caps the body below its own hard 10 MB, at the stage or a
# method, and a Lambda proxy request is capped at 6 MB by Lambda's payload limit. What orderflow does:
# - every API function rejects a body over 64 KB before parsing it (functions/shared/http.py, MAX_BODY_BYTES:
#   413 in the API's error shape, nothing written), and the method throttles above bound how many such requests
#   can reach a function per second, so an oversized-body flood costs at most rate x 6 MB of function input;
# - not a request validator with a JSON Schema model: a schema constrains structure (maxItems, maxLength), never
#   bytes (whitespace pads any body), it would be a second copy of the pydantic models answering another error
#   shape, and it does not run offline (see the AwsSolutions-APIG2 acknowledgement);
# - the control that does cap bytes before the function is AWS WAF: a web ACL on this stage with a size
#   constraint on the body (64 KB inspection limit, oversize handling MATCH -> block), next to the managed rule
#   groups and a rate-based rule per IP. It costs per ACL, rule and request, and is an account decision (see the
#   AwsSolutions-APIG3 acknowledgement): attach it with wafv2.CfnWebACLAssociation on rest_api.deployment_stage.

# One JSON line per request (cdk-nag Serverless-APIGWStructuredLogging): who (sub: the token's subject, empty on
# public routes; ip), what (method, resource, path), the outcome (status, errorType such as THROTTLED,
# UNAUTHORIZED or REQUEST_TOO_LARGE, and the function's own status and latency), and the ids to find the request
# in the function's logs and in X-Ray.
ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "extendedRequestId": "$context.extendedRequestId",
        "requestTime": "$context.requestTime",
        "ip": "$context.identity.sourceIp",
        "userAgent": "$context.identity.userAgent",
        "httpMethod": "$context.httpMethod",
        "resourcePath": "$context.resourcePath",
        "path": "$context.path",
        "status": "$context.status",
        "responseLength": "$context.responseLength",
        "latencyMs": "$context.responseLatency",
        "integrationLatencyMs": "$context.integration.latency",
        "integrationStatus": "$context.integration.status",
        "errorMessage": "$context.error.message",
        "errorType": "$context.error.responseType",
        "integrationError": "$context.integrationErrorMessage",
        "sub": "$context.authorizer.claims.sub",
        "xrayTraceId": "$context.xrayTraceId",
    },
    separators=(",", ":"),
)


@dataclass(frozen=True)
class Route:
    """``method`` ``path`` (e.g. ``/orders/{orderId}``). Public only with a written reason."""

    method: str
    path: str
    public_reason: str | None = None


def throttle_for(route: Route) -> Throttle | None:
    """The route's own limit, or None for the stage default: public, then admin, then write routes."""
    if route.public_reason is not None:
        return PUBLIC_THROTTLE
    if route.path == "/admin" or route.path.startswith("/admin/"):
        return ADMIN_THROTTLE
    if route.method in ("POST", "PUT", "PATCH", "DELETE"):
        return WRITE_THROTTLE
    return None


def method_setting(http_method: str, resource_path: str, throttle: Throttle) -> dict[str, Any]:
    """One MethodSettings entry. A method's entry replaces the stage-wide one for that method, so every entry
    repeats the stage's logging, metrics and data-trace settings."""
    return {
        "HttpMethod": http_method,
        "ResourcePath": resource_path,
        "LoggingLevel": STAGE_LOGGING_LEVEL.value,
        "DataTraceEnabled": False,  # never log request/response bodies (tokens, customer data)
        "MetricsEnabled": True,
        "ThrottlingRateLimit": throttle.rate,
        "ThrottlingBurstLimit": throttle.burst,
    }


def method_settings_path(path: str) -> str:
    """A resource path the way a stage's MethodSettings name it: "/~1orders~1{orderId}" for /orders/{orderId}."""
    return "/" + path.replace("/", "~1") if path != "/" else "/"


class Api(Construct):
    """``Users`` (user pool), ``AppClient``, ``AdminsGroup``, ``RestApi`` (stage "prod"), ``Authorizer``,
    ``AccessLogs``.
    """

    def __init__(self, scope: Construct, id: str) -> None:
        super().__init__(scope, id)
        self._add_users()
        self._add_rest_api()
        self.authorizer = apigw.CognitoUserPoolsAuthorizer(
            self, "Authorizer", cognito_user_pools=[self.user_pool]
        )
        self._integrations: dict[str, apigw.LambdaIntegration] = {}

    @property
    def url(self) -> str:
        return self.rest_api.url

    def add_routes(self, routes: Iterable[Route], handler: lambda_.IFunction) -> None:
        for route in routes:
            self.add_route(route, handler)

    def add_route(self, route: Route, handler: lambda_.IFunction) -> apigw.Method:
        resource = self.rest_api.root.resource_for_path(route.path)
        integration = self._integration(handler)
        throttle = throttle_for(route)
        if throttle is not None:
            self._throttle_method(route, throttle)
        if route.public_reason is None:
            return resource.add_method(
                route.method,
                integration,
                authorization_type=apigw.AuthorizationType.COGNITO,
                authorizer=self.authorizer,
            )
        method = resource.add_method(route.method, integration, authorization_type=apigw.AuthorizationType.NONE)
        for rule in ("AwsSolutions-APIG4", "AwsSolutions-COG4"):
            Validations.of(method).acknowledge(Acknowledgment(id=rule, reason=route.public_reason))
        return method

    def _throttle_method(self, route: Route, throttle: Throttle) -> None:
        # Routes are added after the stage exists (CDK's method_options are constructor-only): the stage's
        # MethodSettings are rewritten with one more entry per throttled route. The stage-wide entry is the
        # same as the one deploy_options renders, which cdk-nag (APIGWDefaultThrottling) reads.
        self._method_settings.append(method_setting(route.method, method_settings_path(route.path), throttle))
        stage = self.rest_api.deployment_stage.node.default_child
        assert isinstance(stage, apigw.CfnStage)
        stage.add_property_override("MethodSettings", self._method_settings)

    def _integration(self, handler: lambda_.IFunction) -> apigw.LambdaIntegration:
        key = handler.node.path
        if key not in self._integrations:
            # Lambda proxy; the invoke permission is scoped to each method and stage (no test-invoke grant).
            self._integrations[key] = apigw.LambdaIntegration(handler, allow_test_invoke=False)
        return self._integrations[key]

    def _add_users(self) -> None:
        # Customers and admins; the customer id is the token's sub, admins are in the "admins" group.
        # Accounts are created by an admin for now (no self sign-up until a sign-up flow is designed).
        self.user_pool = cognito.UserPool(
            self,
            "Users",
            self_sign_up_enabled=False,
            sign_in_aliases=cognito.SignInAliases(email=True),
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            password_policy=cognito.PasswordPolicy(
                min_length=12,
                require_lowercase=True,
                require_uppercase=True,
                require_digits=True,
                require_symbols=True,
                temp_password_validity=Duration.days(3),
            ),
            mfa=cognito.Mfa.OPTIONAL,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            feature_plan=cognito.FeaturePlan.ESSENTIALS,
            removal_policy=RemovalPolicy.RETAIN,  # user accounts are data
        )
        pool = self.user_pool.node.default_child
        Validations.of(pool).acknowledge(  # type: ignore[arg-type]
            Acknowledgment(
                id="AwsSolutions-COG2",
                reason=(
                    "MFA is OPTIONAL with TOTP only (no SMS role, no SMS cost or toll-fraud exposure): every user "
                    "can enroll, but forcing a second factor on every shopper is a product decision this issue "
                    "does not take; accounts are admin-created only (no self sign-up) in the meantime."
                ),
            ),
            Acknowledgment(
                id="AwsSolutions-COG8",
                reason=(
                    "Threat protection needs the Cognito Plus feature plan (per-MAU surcharge); the pool uses "
                    "Essentials until the account owner opts in. Compensating controls: strong password "
                    "policy, optional TOTP MFA, user existence errors suppressed, stage throttling."
                ),
            ),
        )
        self.user_pool_client = cognito.UserPoolClient(
            self,
            "AppClient",
            user_pool=self.user_pool,
            auth_flows=cognito.AuthFlow(user_srp=True),
            generate_secret=False,  # public client (browser/CLI); SRP never sends the password
            prevent_user_existence_errors=True,
        )
        self.admins_group = cognito.UserPoolGroup(
            self,
            "AdminsGroup",
            user_pool=self.user_pool,
            group_name=ADMINS_GROUP,  # the code checks this name in the token's cognito:groups
            description="orderflow administrators: may read any customer's orders",
        )

    def _add_rest_api(self) -> None:
        self.access_logs = logs.LogGroup(
            self, "AccessLogs", retention=LOG_RETENTION, removal_policy=RemovalPolicy.DESTROY
        )
        self.rest_api = apigw.RestApi(
            self,
            "RestApi",
            rest_api_name=f"{Stack.of(self).stack_name}-api",
            description="orderflow public API",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # Stage logging needs the region-wide API Gateway account setting "CloudWatch log role ARN".
            # cloud_watch_role=True creates that role and an AWS::ApiGateway::Account that sets it: a
            # per-account-and-region singleton, so the last stack to deploy one wins. RETAIN keeps the role
            # when this stack is deleted, so other APIs in the account keep logging. In an account whose
            # platform team already manages the setting, turn this off.
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            deploy_options=apigw.StageOptions(
                stage_name=STAGE_NAME,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.custom(ACCESS_LOG_FORMAT),
                tracing_enabled=True,
                metrics_enabled=True,
                logging_level=STAGE_LOGGING_LEVEL,
                data_trace_enabled=False,  # never log request/response bodies (tokens, customer data)
                throttling_rate_limit=STAGE_THROTTLE.rate,
                throttling_burst_limit=STAGE_THROTTLE.burst,
            ),
        )
        self._method_settings = [method_setting("*", "/*", STAGE_THROTTLE)]
        # The stack has its own ApiUrl output; drop the one RestApi adds by itself.
        self.rest_api.node.try_remove_child("Endpoint")

        Validations.of(self.rest_api.node.find_child("CloudWatchRole")).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AmazonAPIGatewayPushToCloudWatchLogs]",
                reason=(
                    "This role is assumed only by apigateway.amazonaws.com for the account-level logging "
                    "setting; API Gateway creates and writes log groups of every API in the region, so the "
                    "AWS-maintained policy documented for this role is the correct scope."
                ),
            )
        )
        Validations.of(self.rest_api.node.default_child).acknowledge(  # type: ignore[arg-type]
            Acknowledgment(
                id="AwsSolutions-APIG2",
                reason=(
                    "Every request goes to its service's API function, which validates path parameters, headers "
                    "and bodies with pydantic (extra fields forbidden, size limits) and answers JSON 4xx saying "
                    "what is wrong; a gateway validator would answer a different error shape and not run "
                    "offline, so validation stays in one place."
                ),
            )
        )
        Validations.of(self.rest_api.deployment_stage.node.default_child).acknowledge(  # type: ignore[arg-type]
            Acknowledgment(
                id="AwsSolutions-APIG3",
                reason=(
                    "No WAFv2 web ACL yet: every route but /health needs a Cognito token and the stage is "
                    "throttled; a web ACL (managed rule groups, rate rules) has a monthly cost and is an "
                    "account-level decision, to attach with wafv2.CfnWebACLAssociation on this stage."
                ),
            )
        )
