"""The REST API (API Gateway v1) in front of the in-process functions.

Routes come from the template's ``AWS::ApiGateway::RestApi/Resource/Method`` (and Authorizer, Stage).
A request is matched like API Gateway does (literal path parts before ``{param}`` before ``{proxy+}``),
authorised, turned into the REST proxy event (v1), sent through moto's Lambda Invoke, and the proxy response
turned back into HTTP. API Gateway's own answers are reproduced: 403 ``Missing Authentication Token`` for a
route or method that does not exist, 401 ``Unauthorized`` from the authorizer, 502 ``Internal server error``
for a function error or a malformed proxy response, 413 for a request over API Gateway's 10 MB payload quota
(before routing, a plain-text answer as API Gateway's front door gives) or whose proxy event is over Lambda's 6 MB
synchronous-invoke payload quota (API Gateway's ``Request Too Long``; the function is not invoked).

A body is passed to the function as API Gateway passes it: as text (``isBase64Encoded`` false; bytes that are not
UTF-8 become U+FFFD), unless its Content-Type is one of the RestApi's ``BinaryMediaTypes``, then base64-encoded.

The local authorizer stands in for Cognito on every ``COGNITO_USER_POOLS`` method: ``Bearer dev:<id>`` gives
the claims ``{"sub": "<id>", "email": "<id>@example.com"}``, ``Bearer dev:<name>:admin`` adds
``"cognito:groups": "admins"``; ids match ``[A-Za-z0-9._-]{1,64}``; anything else is a 401 and the function is
not invoked.
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from offline.lambdas import InProcessLambdas, InvokeResult

log = logging.getLogger("offline.gateway")

_DEV_TOKEN = re.compile(r"Bearer dev:([A-Za-z0-9._-]{1,64})(:admin)?")
_FUNCTION_IN_URI = re.compile(r"/functions/(arn:[^/]+)/invocations")
_PROXY_KEYS = {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"}
# API Gateway REST: the request payload quota (not adjustable); Lambda: the synchronous Invoke payload quota.
MAX_REQUEST_BYTES = 10 * 1024 * 1024
MAX_INVOKE_PAYLOAD_BYTES = 6 * 1024 * 1024


class Headers(dict[str, str]):
    """A plain dict of header names to values whose lookups ignore the case of the name."""

    def _key(self, name: str) -> str | None:
        if dict.__contains__(self, name):
            return name
        lowered = name.lower()
        return next((key for key in self if key.lower() == lowered), None)

    def __getitem__(self, name: str) -> str:
        key = self._key(name)
        if key is None:
            raise KeyError(name)
        return dict.__getitem__(self, key)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._key(name) is not None

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        key = self._key(name)
        return default if key is None else dict.__getitem__(self, key)


@dataclass
class Response:
    status: int
    headers: Headers
    body: str
    raw: bytes = b""
    header_list: list[tuple[str, str]] = field(default_factory=list)  # every value, for the HTTP server

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Route:
    resource_path: str
    method: str
    resource_id: str
    authorization: str
    identity_header: str | None
    integration: Mapping[str, Any]


def _segments(path: str) -> list[str]:
    return [part for part in path.split("/") if part]


class _Node:
    def __init__(self, path: str) -> None:
        self.path = path
        self.literal: dict[str, _Node] = {}
        self.param: tuple[str, _Node] | None = None
        self.greedy: tuple[str, _Node] | None = None
        self.methods: dict[str, Route] = {}
        self.resource_id = ""

    def child(self, part: str, path: str) -> _Node:
        if part.startswith("{") and part.endswith("+}"):
            if self.greedy is None:
                self.greedy = (part[1:-2], _Node(path))
            return self.greedy[1]
        if part.startswith("{") and part.endswith("}"):
            if self.param is None:
                self.param = (part[1:-1], _Node(path))
            return self.param[1]
        return self.literal.setdefault(part, _Node(path))

    def match(self, parts: list[str], params: dict[str, str]) -> _Node | None:
        if not parts:
            return self
        head, rest = parts[0], parts[1:]
        if head in self.literal:
            found = self.literal[head].match(rest, params)
            if found is not None:
                return found
        if self.param is not None:
            name, node = self.param
            found = node.match(rest, params)
            if found is not None:
                params[name] = head
                return found
        if self.greedy is not None:
            name, node = self.greedy
            params[name] = "/".join(parts)
            return node
        return None


class Gateway:
    """One REST API: ``request()`` calls the router directly; ``wsgi_app()`` serves it over HTTP."""

    def __init__(self, *, name: str, api_id: str, stage: str, routes: list[Route], lambdas: InProcessLambdas,
                 account_id: str, region: str, binary_media_types: Iterable[str] = ()) -> None:
        self.name = name
        # CloudFormation escapes the slash of a media type as "~1" (image~1png); both forms are accepted.
        self.binary_media_types = tuple(str(item).replace("~1", "/").lower() for item in binary_media_types)
        self.api_id = api_id
        self.stage = stage
        self.routes = routes
        self.lambdas = lambdas
        self.account_id = account_id
        self.region = region
        self._root = _Node("/")
        self._warned: set[str] = set()
        for route in routes:
            node = self._root
            path = ""
            for part in _segments(route.resource_path):
                path += "/" + part
                node = node.child(part, path)
            node.methods[route.method] = route
            node.resource_id = route.resource_id

    # ------------------------------------------------------------------ the router
    def request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        body: str | bytes | dict[str, Any] | list[Any] | None = None,
        query: Mapping[str, Any] | None = None,
        *,
        source_ip: str = "127.0.0.1",
    ) -> Response:
        request_id = str(uuid.uuid4())
        method = method.upper()
        raw_path, _, query_string = path.partition("?")
        raw_path = unquote(raw_path) or "/"
        header_pairs = list(headers.items() if isinstance(headers, Mapping) else headers or [])
        query_pairs = parse_qsl(query_string, keep_blank_values=True)
        for key, value in (query or {}).items():
            query_pairs.extend((key, str(item)) for item in (value if isinstance(value, (list, tuple)) else [value]))
        if _payload_size(body) > MAX_REQUEST_BYTES:
            return _make_response(413, [("Content-Type", "text; charset=utf-8")],
                                  f"HTTP content length exceeded {MAX_REQUEST_BYTES} bytes.".encode(), request_id)
        text, is_base64 = self._body(body, header_pairs)

        found = self._match(method, raw_path)
        if found is None:
            return _error(403, "Missing Authentication Token", "MissingAuthenticationTokenException", request_id)
        route, params, raw_path = found
        claims = None
        if route.authorization == "COGNITO_USER_POOLS":
            claims = _dev_claims(_header(header_pairs, route.identity_header or "Authorization"))
            if claims is None:
                return _error(401, "Unauthorized", "UnauthorizedException", request_id)
        elif route.authorization not in ("NONE", "", None) and route.authorization not in self._warned:
            self._warned.add(route.authorization)
            log.warning("AuthorizationType %s is not enforced offline", route.authorization)

        integration = route.integration
        kind = str(integration.get("Type", "")).upper()
        if kind == "MOCK":
            return _mock_response(integration, request_id)
        function_arn = self._function_arn(integration)
        if kind != "AWS_PROXY" or function_arn is None:
            log.error("%s %s: integration type %s is not supported offline", method, route.resource_path, kind)
            return _error(500, "Internal server error", "InternalServerErrorException", request_id)
        event = self._event(method, raw_path, route, params, header_pairs, query_pairs, text, is_base64, claims,
                            request_id, source_ip)
        payload = json.dumps(event)
        # Lambda counts the UTF-8 bytes of the event; \uXXXX escapes are never shorter than those bytes.
        if len(payload) > MAX_INVOKE_PAYLOAD_BYTES and len(
                json.dumps(event, ensure_ascii=False).encode("utf-8", "surrogatepass")) > MAX_INVOKE_PAYLOAD_BYTES:
            return _error(413, "Request Too Long", "BadRequestException", request_id)
        try:
            result = self.lambdas.invoke(function_arn, payload)
        except Exception:
            log.exception("%s %s: invoking %s failed", method, route.resource_path, function_arn)
            return _error(500, "Internal server error", "InternalServerErrorException", request_id)
        response = _proxy_response(result, request_id)
        if response is None:
            if result.function_error is None:
                log.error("%s %s: malformed Lambda proxy response: %s", method, route.resource_path,
                          result.payload[:500])
            return _error(502, "Internal server error", "InternalServerErrorException", request_id)
        return response

    def _match(self, method: str, path: str) -> tuple[Route, dict[str, str], str] | None:
        """The route, its path parameters and the path without the stage (what the event's ``path`` is)."""
        candidates = [path]
        stage_prefix = f"/{self.stage}"
        if self.stage and (path == stage_prefix or path.startswith(stage_prefix + "/")):
            candidates.append(path[len(stage_prefix):] or "/")  # also accept the deployed URL's /<stage> prefix
        for candidate in candidates:
            params: dict[str, str] = {}
            node = self._root.match(_segments(candidate), params)
            if node is None:
                continue
            route = node.methods.get(method) or node.methods.get("ANY")
            if route is not None:
                return route, params, candidate
        return None

    @staticmethod
    def _function_arn(integration: Mapping[str, Any]) -> str | None:
        match = _FUNCTION_IN_URI.search(str(integration.get("Uri", "")))
        return match.group(1) if match else None

    def _body(self, body: Any, header_pairs: list[tuple[str, str]]) -> tuple[str | None, bool]:
        if body is None:
            return None, False
        if isinstance(body, (dict, list)):
            if _header(header_pairs, "Content-Type") is None:
                header_pairs.append(("Content-Type", "application/json"))
            return json.dumps(body), False
        if self._is_binary(_header(header_pairs, "Content-Type")):
            raw = body if isinstance(body, bytes) else str(body).encode("utf-8", "surrogatepass")
            return base64.b64encode(raw).decode(), True
        if isinstance(body, bytes):
            return body.decode("utf-8", errors="replace"), False
        return str(body), False

    def _is_binary(self, content_type: str | None) -> bool:
        """Whether API Gateway would base64-encode a request body of this Content-Type (its binaryMediaTypes)."""
        if not self.binary_media_types or content_type is None:
            return False
        media_type = content_type.split(";", 1)[0].strip().lower()
        return any(pattern in ("*/*", media_type) or (pattern.endswith("/*") and media_type.startswith(pattern[:-1]))
                   for pattern in self.binary_media_types)

    def _event(self, method: str, path: str, route: Route, params: dict[str, str], header_pairs: list[tuple[str, str]],
               query_pairs: list[tuple[str, str]], body: str | None, is_base64: bool, claims: dict[str, str] | None,
               request_id: str, source_ip: str) -> dict[str, Any]:
        defaults = [("Host", f"{self.api_id}.execute-api.{self.region}.amazonaws.com"),
                    ("X-Forwarded-For", source_ip), ("X-Forwarded-Port", "443"), ("X-Forwarded-Proto", "https")]
        pairs = list(header_pairs) + [(key, value) for key, value in defaults if _header(header_pairs, key) is None]
        multi_headers: dict[str, list[str]] = {}
        for key, value in pairs:
            multi_headers.setdefault(key, []).append(str(value))
        multi_query: dict[str, list[str]] = {}
        for key, value in query_pairs:
            multi_query.setdefault(key, []).append(value)
        now = datetime.datetime.now(datetime.timezone.utc)
        context: dict[str, Any] = {
            "resourceId": route.resource_id,
            "resourcePath": route.resource_path,
            "httpMethod": method,
            "extendedRequestId": request_id,
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "path": f"/{self.stage}{path}" if self.stage else path,
            "accountId": self.account_id,
            "protocol": "HTTP/1.1",
            "stage": self.stage,
            "domainPrefix": self.api_id,
            "requestTimeEpoch": int(time.time() * 1000),
            "requestId": request_id,
            "identity": {
                "cognitoIdentityPoolId": None, "accountId": None, "cognitoIdentityId": None, "caller": None,
                "sourceIp": source_ip, "principalOrgId": None, "accessKey": None, "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None, "userArn": None,
                "userAgent": _header(pairs, "User-Agent"), "user": None,
            },
            "domainName": f"{self.api_id}.execute-api.{self.region}.amazonaws.com",
            "apiId": self.api_id,
        }
        if claims is not None:
            context["authorizer"] = {"claims": claims}
        return {
            "resource": route.resource_path,
            "path": path,
            "httpMethod": method,
            "headers": {key: values[-1] for key, values in multi_headers.items()} or None,
            "multiValueHeaders": multi_headers or None,
            "queryStringParameters": {key: values[-1] for key, values in multi_query.items()} or None,
            "multiValueQueryStringParameters": multi_query or None,
            "pathParameters": params or None,
            "stageVariables": None,
            "requestContext": context,
            "body": body,
            "isBase64Encoded": is_base64,
        }

    # ------------------------------------------------------------------ serving over HTTP
    def wsgi_app(self) -> Any:
        from werkzeug.wrappers import Request
        from werkzeug.wrappers import Response as HttpResponse

        gateway = self

        def app(environ: dict[str, Any], start_response: Any) -> Any:
            request = Request(environ)
            query = {key: request.args.getlist(key) for key in request.args}
            response = gateway.request(
                request.method, request.path, headers=list(request.headers.items()),
                body=request.get_data() or None, query=query, source_ip=request.remote_addr or "127.0.0.1")
            http = HttpResponse(response.raw, status=response.status)
            http.headers.clear()
            for key, value in response.header_list:
                if key.lower() != "content-length":
                    http.headers.add(key, value)
            return http(environ, start_response)

        return app


# ====================================================================================== helpers
def _header(pairs: Iterable[tuple[str, str]], name: str) -> str | None:
    lowered = name.lower()
    found = None
    for key, value in pairs:
        if key.lower() == lowered:
            found = value
    return found


def _payload_size(body: Any) -> int:
    if body is None:
        return 0
    if isinstance(body, bytes):
        return len(body)
    if isinstance(body, (dict, list)):
        return len(json.dumps(body))
    return len(str(body).encode("utf-8", "surrogatepass"))


def _dev_claims(value: str | None) -> dict[str, str] | None:
    match = _DEV_TOKEN.fullmatch(value or "")
    if match is None:
        return None
    # Cognito ID tokens carry the user's verified email; a dev identity gets one on the reserved example.com
    # domain, so the notifications service has an address to send to (SES is moto's, nothing leaves).
    claims = {"sub": match.group(1), "email": f"{match.group(1)}@example.com"}
    if match.group(2):
        claims["cognito:groups"] = "admins"
    return claims


def _make_response(status: int, header_list: list[tuple[str, str]], raw: bytes, request_id: str) -> Response:
    if _header(header_list, "Content-Type") is None:
        header_list.append(("Content-Type", "application/json"))
    header_list.append(("x-amzn-RequestId", request_id))
    merged: dict[str, list[str]] = {}
    for key, value in header_list:
        merged.setdefault(key, []).append(value)
    headers = Headers({key: ", ".join(values) for key, values in merged.items()})
    return Response(status=status, headers=headers, body=raw.decode("utf-8", errors="replace"), raw=raw,
                    header_list=header_list)


def _error(status: int, message: str, error_type: str, request_id: str) -> Response:
    raw = json.dumps({"message": message}).encode()
    return _make_response(status, [("Content-Type", "application/json"), ("x-amzn-ErrorType", error_type)], raw,
                          request_id)


def _proxy_response(result: InvokeResult, request_id: str) -> Response | None:
    """The HTTP response of a Lambda proxy result, or None when API Gateway would answer 502."""
    if result.function_error is not None:
        return None
    try:
        data = json.loads(result.payload)
    except ValueError:
        return None
    if not isinstance(data, dict) or set(data) - _PROXY_KEYS:
        return None
    try:
        status = int(data["statusCode"])
    except (KeyError, TypeError, ValueError):
        return None
    if not 100 <= status <= 599:
        return None
    headers, multi, body = data.get("headers") or {}, data.get("multiValueHeaders") or {}, data.get("body")
    if not isinstance(headers, dict) or not isinstance(multi, dict) or not (body is None or isinstance(body, str)):
        return None
    if not all(isinstance(values, list) for values in multi.values()):
        return None
    header_list = [(key, _header_value(value)) for key, values in multi.items() for value in values]
    seen = {key.lower() for key in multi}
    header_list += [(key, _header_value(value)) for key, value in headers.items() if key.lower() not in seen]
    if data.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(body or "", validate=True)
        except ValueError:
            return None
    else:
        raw = (body or "").encode()
    return _make_response(status, header_list, raw, request_id)


def _header_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _mock_response(integration: Mapping[str, Any], request_id: str) -> Response:
    responses = integration.get("IntegrationResponses") or [{"StatusCode": "200"}]
    chosen = next((item for item in responses if not item.get("SelectionPattern")), responses[0])
    header_list = [
        (key.rsplit(".", 1)[-1], str(value).strip("'"))
        for key, value in (chosen.get("ResponseParameters") or {}).items()
        if key.startswith("method.response.header.")
    ]
    body = (chosen.get("ResponseTemplates") or {}).get("application/json", "")
    return _make_response(int(chosen.get("StatusCode", 200)), header_list, str(body).encode(), request_id)


# ====================================================================================== from the template
def build_gateways(
    parts: Mapping[str, list[tuple[str, dict[str, Any]]]],
    resources: Mapping[str, Any],
    *,
    lambdas: InProcessLambdas,
    account_id: str,
    region: str,
) -> dict[str, Gateway]:
    """One Gateway per RestApi (keyed by logical id) from the API Gateway resources the deployer recorded."""
    apis = {resources[lid].ref: (lid, props) for lid, props in parts.get("AWS::ApiGateway::RestApi", [])}
    roots = {resources[lid].attributes["RootResourceId"]: resources[lid].ref for lid, _ in
             parts.get("AWS::ApiGateway::RestApi", [])}
    for lid, props in parts.get("AWS::ApiGateway::RestApi", []):
        if props.get("Body") or props.get("BodyS3Location"):
            log.warning("RestApi %s is defined by an OpenAPI body: its routes are not served offline", lid)
    nodes = {resources[lid].ref: (props["ParentId"], props["PathPart"]) for lid, props in
             parts.get("AWS::ApiGateway::Resource", [])}

    def path_of(resource_id: str) -> str:
        if resource_id in roots:
            return "/"
        if resource_id not in nodes:
            raise KeyError(resource_id)
        parent, part = nodes[resource_id]
        parent_path = path_of(parent)
        return (parent_path.rstrip("/") + "/" + part) if parent_path != "/" else "/" + part

    authorizers = {resources[lid].ref: props for lid, props in parts.get("AWS::ApiGateway::Authorizer", [])}
    stages: dict[str, str] = {}
    for _, props in parts.get("AWS::ApiGateway::Stage", []):
        stages.setdefault(props.get("RestApiId"), props["StageName"])
    for _, props in parts.get("AWS::ApiGateway::Deployment", []):
        if props.get("StageName"):
            stages.setdefault(props.get("RestApiId"), props["StageName"])
    routes: dict[str, list[Route]] = {api_id: [] for api_id in apis}
    for lid, props in parts.get("AWS::ApiGateway::Method", []):
        api_id = props.get("RestApiId")
        try:
            resource_path = path_of(props["ResourceId"])
        except KeyError:
            log.warning("method %s is on an unknown resource; not routed", lid)
            continue
        authorizer = authorizers.get(props.get("AuthorizerId"), {})
        identity = str(authorizer.get("IdentitySource", "method.request.header.Authorization"))
        routes.setdefault(api_id, []).append(Route(
            resource_path=resource_path,
            method=str(props["HttpMethod"]).upper(),
            resource_id=str(props["ResourceId"]),
            authorization=str(props.get("AuthorizationType", "NONE")).upper(),
            identity_header=identity.split(".")[-1] if identity.startswith("method.request.header.") else None,
            integration=props.get("Integration") or {},
        ))
    gateways = {}
    for api_id, (lid, props) in apis.items():
        gateways[lid] = Gateway(name=str(props.get("Name") or lid), api_id=str(api_id),
                                stage=stages.get(api_id, "prod"), routes=routes.get(api_id, []), lambdas=lambdas,
                                account_id=account_id, region=region,
                                binary_media_types=props.get("BinaryMediaTypes") or ())
    return gateways
